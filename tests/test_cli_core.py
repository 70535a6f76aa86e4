"""nex train / score / run / table on the reference example and on small written caches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cache_factory import EXPECTED, REFERENCE_CACHE, REFERENCE_WEIGHTS, make_responses, write_cache
import nex_interp.core  # noqa: F401 -- a core that does not import fails these tests (never skips them)
from nex_interp.cli import main
from nex_interp.keys import KeyScheme
from nex_interp.weights_io import load_weights

EXP = json.loads(EXPECTED.read_text())
TOL = EXP["tolerance"]["gmf_abs"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_run_reproduces_reference_self_calibration(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, err = _run(capsys, "run", REFERENCE_CACHE, "-o", out)
    assert rc == 0, err
    assert "NEX score 0.9868" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["provenance.json", "scores.csv", "summary.json", "weights.npz", "weights.npz.provenance.json"]
    summary = json.loads((out / "summary.json").read_text())
    exp = EXP["self_calibrated"]
    assert summary["n_responses"] == 1 and summary["n_scored_responses"] == 1
    assert summary["nex_score"] == pytest.approx(exp["nex_score"], abs=TOL)
    assert summary["log_gap"] == pytest.approx(-np.log10(1 - summary["nex_score"]), rel=1e-9)
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["response", "gmf", "n_rows", "n_tokens"]
    assert scores.loc[0, "gmf"] == pytest.approx(exp["response_gmf"][0], abs=TOL)
    assert (scores.loc[0, "n_rows"], scores.loc[0, "n_tokens"]) == (83, 2646)
    w = load_weights(out / "weights.npz")
    assert len(w) >= exp["nonzero_weights"]
    assert int((w.weight > 0).sum()) == exp["positive_weights"] and int((w.weight < 0).sum()) == exp["negative_weights"]
    assert w.meta["params"] == {"rho": 0.95, "min_run": 2, "max_responses": None}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command"] == "nex run" and prov["inputs"]["cache"] == str(REFERENCE_CACHE)


def test_score_with_archived_reference_weights(tmp_path, capsys):
    out = tmp_path / "s"
    rc, stdout, err = _run(capsys, "score", REFERENCE_CACHE, "--weights", REFERENCE_WEIGHTS, "-o", out, "--log-gap")
    assert rc == 0, err
    exp = EXP["archived_weights"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nex_score"] == pytest.approx(exp["nex_score"], abs=TOL)
    assert summary["log_gap"] == pytest.approx(exp["log_gap"], abs=1e-3)
    assert "log gap 2.77" in stdout
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["response", "gmf", "n_rows", "n_tokens", "log_gap"]
    assert scores.loc[0, "log_gap"] == pytest.approx(exp["log_gap"], abs=1e-3)


def test_train_then_score_equals_run(tmp_path, capsys):
    cache = write_cache(tmp_path / "c", make_responses(12, seed=21, n_layers=4, d_mlp=16))
    assert _run(capsys, "train", cache, "-o", tmp_path / "w.npz", "--rho", "0.9")[0] == 0
    assert (tmp_path / "w.npz.provenance.json").exists()
    assert _run(capsys, "score", cache, "--weights", tmp_path / "w.npz", "-o", tmp_path / "s")[0] == 0
    assert _run(capsys, "run", cache, "-o", tmp_path / "r", "--rho", "0.9")[0] == 0
    a, b = pd.read_csv(tmp_path / "s" / "scores.csv"), pd.read_csv(tmp_path / "r" / "scores.csv")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["response", "id", "gmf", "n_rows", "n_tokens"]
    assert list(a["id"]) == [f"r{i}" for i in range(12)]
    c = __import__("nex_interp.cache.reader", fromlist=["open_cache"]).open_cache(cache)
    srp, trp = np.asarray(c.sample_row_ptr), np.asarray(c.token_row_ptr)
    np.testing.assert_array_equal(a["n_rows"], np.diff(srp))
    np.testing.assert_array_equal(a["n_tokens"], trp[srp[1:]] - trp[srp[:-1]])
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["n_responses"] == 12 and summary["n_scored_responses"] == int(a["gmf"].notna().sum())


def test_outputs_replace_only_their_own_kind(tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(capsys, "run", REFERENCE_CACHE, "-o", out)[0] == 0
    first = (out / "summary.json").read_text()
    assert _run(capsys, "score", REFERENCE_CACHE, "--weights", REFERENCE_WEIGHTS, "-o", out)[0] == 0  # a nex output: replaced
    assert not (out / "weights.npz").exists() and (out / "summary.json").read_text() != first
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, _, err = _run(capsys, "run", REFERENCE_CACHE, "-o", mine)
    assert rc == 2 and "holds other files" in err and (mine / "notes.txt").read_text() == "keep me"
    rc, _, err = _run(capsys, "run", REFERENCE_CACHE, "-o", REFERENCE_CACHE.parent)
    assert rc == 2 and "holds the input" in err


def test_wide_cache_refuses_ref22_weights(tmp_path, capsys):
    scheme = KeyScheme("wide", 80, 128)
    cache = write_cache(tmp_path / "w", make_responses(3, seed=22, scheme=scheme, n_layers=80, d_mlp=128), scheme=scheme)
    rc, _, err = _run(capsys, "score", cache, "--weights", REFERENCE_WEIGHTS, "-o", tmp_path / "s")
    assert rc == 2 and "key scheme" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("ext, fmt", [("csv", None), ("md", None), ("tex", None), ("out", "parquet")])
def test_table_command(tmp_path, capsys, ext, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"t.{ext}"
    argv = ["table", REFERENCE_WEIGHTS, "-o", out, "--top", "25"] + (["--format", fmt] if fmt else [])
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    assert "wrote 25 of 108551 neurons" in stdout
    prov = json.loads(Path(str(out) + ".provenance.json").read_text())
    assert prov["command"] == "nex table" and prov["config"]["top"] == 25
    if ext == "csv":
        df = pd.read_csv(out)
        assert len(df) == 25 and list(df.columns) == ["layer", "unit", "weight", "effective_mass", "redundant_mass", "class", "rank"]
    elif fmt == "parquet":
        assert len(pd.read_parquet(out)) == 25
    else:
        assert len([ln for ln in out.read_text().splitlines() if ln.startswith(("|", "1", "2", "3"))]) >= 25


def test_core_commands_do_not_import_torch(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from nex_interp.cli import main
        assert main(["run", {str(REFERENCE_CACHE)!r}, "-o", {str(tmp_path / 'run')!r}]) == 0
        assert main(["score", {str(REFERENCE_CACHE)!r}, "--weights", {str(REFERENCE_WEIGHTS)!r}, "-o", {str(tmp_path / 's')!r}]) == 0
        assert main(["train", {str(REFERENCE_CACHE)!r}, "-o", {str(tmp_path / 'w.npz')!r}]) == 0
        assert main(["table", {str(tmp_path / 'w.npz')!r}, "-o", {str(tmp_path / 't.md')!r}]) == 0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "transformer_lens"))
        print("HEAVY", heavy)
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_no_scorable_response_gives_null_score(tmp_path, capsys):
    from nex_interp.cache.writer import CacheWriter

    w = CacheWriter(tmp_path / "c", KeyScheme.ref22(), {"model": "m"})
    w.add_response([], np.zeros(0, np.uint32), np.zeros(0, np.float32), {"id": "a"})
    w.close()
    rc, stdout, err = _run(capsys, "run", tmp_path / "c", "-o", tmp_path / "r")
    assert rc == 0, err
    assert "NEX score n/a" in stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["nex_score"] is None and summary["log_gap"] is None and summary["n_scored_responses"] == 0
    assert pd.read_csv(tmp_path / "r" / "scores.csv")["gmf"].isna().all()


def test_the_command_table_names_each_commands_module():
    """`nex COMMAND` builds only COMMANDS[COMMAND]'s module: the table must say what each module registers."""
    import argparse
    import importlib

    from nex_interp.cli import COMMAND_MODULES, COMMANDS

    found = {}
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"nex_interp.cli.{name}").register(sub)
        found.update({command: name for command in sub.choices})
    assert found == COMMANDS


def test_a_single_command_loads_only_its_group():
    import subprocess
    import sys

    # command-group modules only: helpers the groups share (nex_interp.cli.nex_params) may load
    check = ("import sys\nfrom nex_interp.cli import build_parser, COMMANDS, COMMAND_MODULES\nbuild_parser(COMMANDS['run'])\n"
             "print(sorted(m for m in sys.modules if m.rpartition('.')[2] in COMMAND_MODULES))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "['nex_interp.cli.core_cmds']"


def test_importing_the_cli_leaves_garbage_collection_on():
    """Only main() pauses the collector (while it builds the parser); an importer keeps it."""
    check = ("import gc\nimport nex_interp.cli as cli\nassert gc.isenabled()\n"
             "try:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass\nprint(gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("True")
