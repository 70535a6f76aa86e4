"""The notebooks: committed without outputs, and executed top to bottom with nbclient.

The kernel is this interpreter (``sys.executable``), registered in a temporary Jupyter path, so
a fresh CI virtual environment runs the notebooks with its own packages whatever ``python`` on
PATH is. Each notebook runs in a temporary working directory (``NEX_NOTEBOOK_OUT``) so its
exported files never land in the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "nex-interp-test"


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_quick_start.ipynb", "02_neuron_analysis.ipynb", "03_ranking_and_transfer.ipynb"]


def test_notebooks_are_stripped():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "strip_notebooks.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_strip_removes_outputs_and_is_idempotent(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import strip_notebooks
    finally:
        sys.path.pop(0)
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": 3, "id": "a", "metadata": {"execution": {"x": 1}, "tags": ["t"]},
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}], "source": "print('hi')"},
            {"cell_type": "markdown", "id": "b", "metadata": {}, "source": "# T"},
        ],
        "metadata": {"language_info": {"name": "python", "version": "3.11.7"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    assert strip_notebooks.main(["--check", str(path)]) == 1
    assert strip_notebooks.main([str(path)]) == 0
    once = path.read_text()
    clean = json.loads(once)
    assert clean["cells"][0]["outputs"] == [] and clean["cells"][0]["execution_count"] is None
    assert clean["cells"][0]["metadata"] == {"tags": ["t"]} and clean["cells"][1]["source"] == "# T"
    assert clean["metadata"]["language_info"] == {"name": "python"}
    assert strip_notebooks.main(["--check", str(path)]) == 0
    assert strip_notebooks.main([str(path)]) == 0 and path.read_text() == once


@pytest.fixture(scope="module")
def venv_kernel(tmp_path_factory):
    """A kernelspec that starts this interpreter's ipykernel, in a private JUPYTER_PATH."""
    pytest.importorskip("nbclient", reason="notebook tests need the 'notebooks' extra (nbclient, ipykernel)")
    pytest.importorskip("ipykernel", reason="notebook tests need the 'notebooks' extra (nbclient, ipykernel)")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "nex-interp (test venv)",
                "language": "python",
            }
        )
    )
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "OMP_NUM_THREADS", "MPLBACKEND")}
    os.environ["JUPYTER_PATH"] = str(root)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.pop("MPLBACKEND", None)
    yield KERNEL
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _zoo_missing() -> str | None:
    """Why the zoo cannot be used (the notebooks run on it), or None."""
    from nex_interp.errors import ModelError
    from nex_interp.zoo import ZOO_MODELS, zoo_model_dir

    try:
        for name in ZOO_MODELS:
            zoo_model_dir(name)
    except ModelError as e:
        return str(e)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, venv_kernel, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    reason = _zoo_missing()
    if reason:
        pytest.skip(f"the notebooks run on the zoo: {reason}")

    monkeypatch.setenv("NEX_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=venv_kernel, timeout=240, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    # every notebook shows at least one figure and writes its outputs with provenance
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{path.name} displayed no figure"
    written = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert any(n.endswith(".provenance.json") for n in written), written
