"""The README's Python flow (model name -> cache -> weights and scores -> neuron table -> an
ablation's effect on accuracy) runs as written, on the bundled zoo, and says what it claims."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- snippet: {marker} -->\n```python\n(.*?)```", text, re.S)
    assert m, f"README has no python block after '<!-- snippet: {marker} -->'"
    return m.group(1)


@pytest.mark.slow
def test_readme_flow_runs(tmp_path):
    code = readme_block("flow")
    assert len([l for l in code.splitlines() if l.strip()]) <= 14  # "about ten lines"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "gmf" in out and "effective_mass" in out  # the scores frame and the neuron table were printed
    m = re.search(r"accuracy (\d\.\d+) -> (\d\.\d+) with the 32 top effective neurons ablated", out)
    assert m, out[-2000:]
    before, after = map(float, m.groups())
    assert 0.0 <= after <= 1.0 and 0.0 <= before <= 1.0  # the shipped zoo's searches are at chance (docs/zoo.md)
    cache = tmp_path / "quick" / "cache"
    assert (cache / "manifest.json").is_file() and (cache / "provenance.json").is_file()


def test_import_nex_interp_is_light_and_names_resolve():
    """`import nex_interp` loads no torch and no submodule; every public name resolves."""
    code = (
        "import sys, nex_interp as nex\n"
        "assert 'torch' not in sys.modules and 'nex_interp.core' not in sys.modules\n"
        "names = [n for n in nex.__all__ if n != '__version__']\n"
        "for n in names: assert callable(getattr(nex, n)), n\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 25


def test_public_names_are_the_library_functions():
    import nex_interp as nex
    from nex_interp.cache.reader import open_cache
    from nex_interp.core import learn_weights
    from nex_interp.scores import score_table

    assert nex.open is open_cache and nex.learn is learn_weights and nex.score is score_table
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nex.nope  # noqa: B018


def test_readme_core_snippet_prints_the_reference_score():
    code = readme_block("core")
    done = subprocess.run([sys.executable, "-c", code], cwd=README.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) == pytest.approx(0.986839, abs=1e-6)
