"""Every kind of bad input to the core commands: one line naming the file and the problem,
exit status 2, no traceback, and no output (not even a temporary file) left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cache_factory import REFERENCE_WEIGHTS, copy_reference, make_responses, write_cache
import nex_interp.core  # noqa: F401 -- a core that does not import fails these tests (never skips them)
from nex_interp.cli import main


def _ptr(path: Path, fn) -> None:
    p = np.fromfile(path, dtype=np.int64)
    fn(p)
    p.tofile(path)


def _chop(path: Path, n: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-n])


def _garble_manifest(cache: Path) -> Path:
    (cache / "manifest.json").write_text("{")
    return cache


def _decrease(p):
    p[10] = p[9] - 1


def _past_end(p):
    p[-1] = p[-1] + 1000


# name -> (make a bad cache under tmp (returns its path), file named in the message, problem words)
CACHES = {
    "wrong path": (lambda t: t / "no-such-cache", "no-such-cache", "does not exist"),
    "empty directory": (lambda t: (t / "empty").mkdir() or t / "empty", "empty", "empty directory"),
    "missing file": (lambda t: (copy_reference(t / "c") / "rows/w_sum.float16").unlink() or t / "c", "rows/w_sum.float16", "is missing"),
    "truncated file": (lambda t: _chop(write_cache(t / "c", make_responses(3, seed=31)) / "base/keys.uint32", 4) or t / "c", "base/keys.uint32", "truncated"),
    "odd byte count": (lambda t: open(copy_reference(t / "c") / "rows/keys.uint32", "ab").write(b"\1\2") and t / "c", "rows/keys.uint32", "not a whole number"),
    "non-monotonic pointer": (lambda t: _ptr(copy_reference(t / "c") / "rows/row_ptr.int64", _decrease) or t / "c", "rows/row_ptr.int64", "decreases at entry 10"),
    "out-of-range pointer": (lambda t: _ptr(copy_reference(t / "c") / "base/row_ptr.int64", _past_end) or t / "c", "base/row_ptr.int64", "points past the end"),
    "corrupt manifest": (lambda t: _garble_manifest(write_cache(t / "c", make_responses(2, seed=32))), "manifest.json", "not valid JSON"),
}


def _leftovers(parent: Path, before: set[str]) -> set[str]:
    return {p.name for p in parent.iterdir()} - before


def _check_error(rc: int, err: str, *words: str) -> None:
    assert rc == 2
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nex: error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("kind", list(CACHES))
@pytest.mark.parametrize("command", ["score", "run", "train"])
def test_bad_cache(tmp_path, capsys, kind, command):
    make, file_word, problem = CACHES[kind]
    cache = make(tmp_path)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    out = outputs / ("w.npz" if command == "train" else "result")
    argv = {"score": ["score", cache, "--weights", REFERENCE_WEIGHTS, "-o", out], "run": ["run", cache, "-o", out], "train": ["train", cache, "-o", out]}
    rc = main([str(a) for a in argv[command]])
    _check_error(rc, capsys.readouterr().err, file_word, problem)
    assert list(outputs.iterdir()) == []


def _npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


WEIGHTS = {
    "random bytes": (lambda p: p.write_bytes(os.urandom(512)), "not a readable .npz"),
    "text file": (lambda p: p.write_text("1,2,3\n"), "not a readable .npz"),
    "unknown arrays": (lambda p: _npz(p, scores=np.zeros(3)), "lacks the arrays"),
    "short dense table": (lambda p: _npz(p, weights=np.zeros(10, np.float32)), "'weights' array of shape (10,)"),
    "missing": (lambda p: None, "does not exist"),
}


@pytest.mark.parametrize("kind", list(WEIGHTS))
@pytest.mark.parametrize("command", ["score", "table"])
def test_bad_weights(tmp_path, capsys, kind, command):
    make, problem = WEIGHTS[kind]
    weights = tmp_path / "w.npz"
    make(weights)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    if command == "score":
        argv = ["score", copy_reference(tmp_path / "c"), "--weights", weights, "-o", outputs / "s"]
    else:
        argv = ["table", weights, "-o", outputs / "t.csv"]
    rc = main([str(a) for a in argv])
    _check_error(rc, capsys.readouterr().err, str(weights), problem)
    assert list(outputs.iterdir()) == []


@pytest.mark.parametrize(
    "argv, words",
    [
        (["table", "{w}", "-o", "{o}/t.csv", "--format", "xlsx"], ["invalid choice: 'xlsx'"]),
        (["table", "{w}", "-o", "{o}/t.xlsx"], ["t.xlsx", "'.xlsx'", "--format"]),
        (["table", "{w}", "-o", "{o}/t.csv", "--top", "0"], ["--top", "positive"]),
        (["table", "{w}", "-o", "{o}"], ["is a directory"]),
        (["score", "{c}", "-o", "{o}/s"], ["--weights"]),
        (["train", "{c}", "-o", "{o}/w.npz", "--rho", "1.5"], ["rho"]),
        (["train", "{c}", "-o", "{o}/w.npz", "--min-run", "0"], ["min_run"]),
        (["run", "{c}", "-o", "{o}/r", "--max-responses", "-3"], ["max_responses"]),
        (["score", "{c}", "--weights", "{w}", "-o", "{o}/s", "--bogus"], ["unrecognized arguments: --bogus"]),
    ],
    ids=["unknown --format", "unknown extension", "bad --top", "output is a dir", "missing option", "bad rho", "bad min-run", "bad max-responses", "unknown option"],
)
def test_bad_options(tmp_path, capsys, argv, words):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    cache = copy_reference(tmp_path / "c")
    filled = [a.format(w=REFERENCE_WEIGHTS, o=outputs, c=cache) for a in argv]
    try:
        rc = main(filled)
    except SystemExit as e:  # argparse usage errors exit from inside parse_args
        rc = e.code
    _check_error(rc, capsys.readouterr().err, *words)
    assert list(outputs.iterdir()) == []


def test_subprocess_exit_code_and_single_line(tmp_path):
    """Through a real process: status 2 and exactly one line on stderr, nothing on stdout."""
    cache = copy_reference(tmp_path / "c")
    _ptr(cache / "rows/sample_row_ptr.int64", lambda p: p.__setitem__(-1, 500))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("NEX_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nex_interp", "score", str(cache), "--weights", str(REFERENCE_WEIGHTS), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nex: error: cache file ")
    assert "rows/sample_row_ptr.int64 points past the end" in proc.stderr
    assert not (tmp_path / "out").exists()
