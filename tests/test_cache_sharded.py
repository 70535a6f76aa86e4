"""Sharded caches (no Ray needed): read as one cache without copies, the same weights and GMF bits as the
one-process cache, `nex cache merge` back to the same bytes, and one-line errors for broken shards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nex_interp.cache.reader import open_cache
from nex_interp.cache.sharded import PartedArray, ShardedCache, split_cache
from nex_interp.cache.synthetic import SynthConfig, synth_cache
from nex_interp.cli import main
from nex_interp.core import kernel
from nex_interp.core.learn import learn_weights
from nex_interp.core.score import score_responses

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    one = synth_cache(root / "one", SynthConfig(responses=40, dirty=True, seed=3))
    split_cache(one, root / "sh", 6)  # 7 shards, the last one short
    return root / "one", root / "sh"


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", "provenance.json")}


def test_a_sharded_cache_reads_as_one_without_copies(caches):
    one, sh = open_cache(caches[0]), open_cache(caches[1])
    assert isinstance(sh, ShardedCache) and len(sh.parts) == 7
    assert (sh.n_responses, sh.n_rows, sh.n_entries) == (one.n_responses, one.n_rows, one.n_entries)
    for f in ("sample_row_ptr", "row_ptr", "token_row_ptr", "base_ptr"):
        assert np.array_equal(getattr(sh, f), getattr(one, f)), f
    for f in ("keys", "mass", "base_keys", "base_mass"):
        arr = getattr(sh, f)
        assert isinstance(arr, PartedArray) and all(isinstance(p, np.memmap) for p in arr.parts)
        assert np.asarray(arr).tobytes() == np.asarray(getattr(one, f)).tobytes(), f
    # one response's entries are a view of its shard's map, not a copy
    r0, r1 = sh.response_rows(20)
    view = sh.keys[int(sh.row_ptr[r0]):int(sh.row_ptr[r1])]
    assert np.shares_memory(view, sh.keys.parts[20 // 6])
    assert sh.response_ids == one.response_ids and sh.response_meta == one.response_meta
    assert sh.manifest["n_responses"] == 40 and sh.manifest["sharded"]["n_shards"] == 7


@pytest.mark.parametrize("path", ["compiled-1", "compiled-2", "plain"])
def test_weights_and_gmf_are_the_same_bits(caches, path, monkeypatch):
    if path == "plain":
        monkeypatch.setattr(kernel, "load", lambda: None)
    elif kernel.load() is None:
        pytest.skip("the compiled kernels are not built here")
    workers = 2 if path == "compiled-2" else 1
    one, sh = open_cache(caches[0]), open_cache(caches[1])
    for responses in (None, np.array([33, 2, 3, 17, 16, 5, 39])):  # all; a subset across shards, out of order
        a = learn_weights(one, workers=workers, responses=responses)
        b = learn_weights(sh, workers=workers, responses=responses)
        assert a.meta["kernel"] == b.meta["kernel"]
        assert a.index.tobytes() == b.index.tobytes() and a.weight.tobytes() == b.weight.tobytes()
        assert a.effective_mass.tobytes() == b.effective_mass.tobytes()
        assert a.redundant_mass.tobytes() == b.redundant_mass.tobytes()
        assert a.meta["n_effective_cycles"] == b.meta["n_effective_cycles"] > 0
        assert score_responses(one, a).tobytes() == score_responses(sh, b).tobytes()


def test_nex_run_gives_the_same_weights_and_scores(caches, tmp_path):
    assert main(["run", str(caches[0]), "-o", str(tmp_path / "one")]) == 0
    assert main(["run", str(caches[1]), "-o", str(tmp_path / "sh")]) == 0
    assert (tmp_path / "one" / "scores.csv").read_bytes() == (tmp_path / "sh" / "scores.csv").read_bytes()
    a, b = np.load(tmp_path / "one" / "weights.npz"), np.load(tmp_path / "sh" / "weights.npz")
    for k in ("index", "weight"):
        assert a[k].tobytes() == b[k].tobytes(), k
    s1, s2 = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "sh"))
    assert s1["nex_score"] == s2["nex_score"]


def test_merge_writes_the_one_process_bytes(caches, tmp_path, capsys):
    assert main(["cache", "merge", str(caches[1]), str(tmp_path / "m"), "--no-progress"]) == 0
    assert _files(tmp_path / "m") == _files(caches[0])
    assert (tmp_path / "m" / "provenance.json").is_file()
    assert main(["cache", "merge", str(caches[1]), str(tmp_path / "m")]) == 2  # never overwrites
    assert main(["cache", "merge", str(caches[0]), str(tmp_path / "m2")]) == 2  # not sharded
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("nex: error:") for e in err)
    assert not (tmp_path / "m2").exists()


def _broken(caches, tmp_path, how: str) -> Path:
    import shutil

    sh = tmp_path / how
    shutil.copytree(caches[1], sh)
    name = "shards/00012-00017"
    if how == "missing":
        shutil.rmtree(sh / name)
    elif how == "corrupt-manifest":
        m = sh / name / "manifest.json"
        m.write_text(m.read_text().replace('"n_rows"', '"n_rows" ', 1))
    elif how == "truncated-array":
        f = sh / name / "rows" / "keys.uint32"
        f.write_bytes(f.read_bytes()[:-8])
    elif how == "bad-shards-json":
        (sh / "shards.json").write_text("{")
    elif how == "unfinished":
        d = json.loads((sh / "shards.json").read_text())
        d["complete"] = False
        (sh / "shards.json").write_text(json.dumps(d))
    elif how == "gap":
        d = json.loads((sh / "shards.json").read_text())
        del d["shards"][2]
        (sh / "shards.json").write_text(json.dumps(d))
    return sh


@pytest.mark.parametrize("how, says", [
    ("missing", "shard shards/00012-00017 of sharded cache"),
    ("corrupt-manifest", "does not match the sha256"),
    ("truncated-array", "is not a valid cache"),
    ("bad-shards-json", "is not valid JSON"),
    ("unfinished", "is unfinished"),
    ("gap", "expected 12"),
])
def test_a_broken_shard_is_a_one_line_error(caches, tmp_path, capsys, how, says):
    sh = _broken(caches, tmp_path, how)
    for argv in (["run", str(sh), "-o", str(tmp_path / "out")], ["cache", "merge", str(sh), str(tmp_path / "m")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nex: error:") and says in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "m").exists()
    if how == "truncated-array":  # the shard manifest still matches; only the array is short
        assert "keys.uint32" in err[0]


def test_nex_run_does_not_import_ray(caches, tmp_path):
    code = ("import sys; from nex_interp.cli import main; "
            f"rc = main(['run', {str(caches[1])!r}, '-o', {str(tmp_path / 'o')!r}]); "
            "assert rc == 0, rc; assert 'ray' not in sys.modules, 'nex run imported ray'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]


def test_capture_ray_without_ray_installed_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"id": "a", "prompt": "p", "response": "r"}) + "\n")
    rc = main(["capture", "--model", "no-such-model", "--responses", str(responses), "-o", str(tmp_path / "c"), "--ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nex-interp[distributed]" in err[0], err
    assert not (tmp_path / "c").exists()


def test_caches_derived_from_a_sharded_cache_use_their_own_arrays(caches):
    from nex_interp.cache.ops import merge_rows, subset_cache

    one, sh = open_cache(caches[0]), open_cache(caches[1])
    for derive in (lambda c: subset_cache(c, [3, 4, 5, 6, 7, 8]), lambda c: subset_cache(c, [30, 1, 12, 13]),
                   lambda c: merge_rows(c, 2)):
        a, b = derive(one), derive(sh)
        wa, wb = learn_weights(a), learn_weights(b)
        assert wa.index.tobytes() == wb.index.tobytes() and wa.weight.tobytes() == wb.weight.tobytes()
        assert score_responses(a, wa).tobytes() == score_responses(b, wb).tobytes()
        assert a.response_ids == b.response_ids and a.stream_names == b.stream_names


@pytest.mark.parametrize("plain", [False, True])
def test_diagnostics_of_a_response_are_the_same_on_the_sharded_cache(caches, plain, monkeypatch):
    from dataclasses import fields

    from nex_interp.core.diagnostics import diagnose_response

    if plain:
        monkeypatch.setattr(kernel, "load", lambda: None)
    one, sh = open_cache(caches[0]), open_cache(caches[1])
    for i in (0, 5, 6, 23, 39):
        a, b = diagnose_response(one, i), diagnose_response(sh, i)
        for f in fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                assert x.tobytes() == y.tobytes(), (i, f.name)
            elif f.name == "cycles":
                assert len(x) == len(y) and all(repr(c) == repr(d) for c, d in zip(x, y)), i
            else:
                assert x == y, (i, f.name)


def _outputs(path: Path) -> dict[str, bytes]:
    """Output files by relative path, provenance sidecars left out (they name their inputs and times)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "provenance" not in p.name}


def test_every_cache_command_reads_a_sharded_cache_as_the_one_cache(caches, tmp_path):
    """train, score, table, sweep, report and annotate export write the same outputs from the
    sharded cache as from the one-process cache."""
    from nex_interp.weights_io import load_weights

    results = {}
    for kind, cache in zip(("one", "sh"), caches):
        out = tmp_path / kind
        out.mkdir()
        assert main(["train", str(cache), "-o", str(out / "w.npz")]) == 0
        assert main(["score", str(cache), "--weights", str(out / "w.npz"), "-o", str(out / "score")]) == 0
        assert main(["table", str(out / "w.npz"), "-o", str(out / "table.csv")]) == 0
        assert main(["sweep", f"v={cache}", "-o", str(out / "sweep"), "--rho", "0.9,0.95", "--min-run", "2"]) == 0
        assert main(["report", str(cache), "--response", "3", "--weights", str(out / "w.npz"), "-o", str(out / "r.html")]) == 0
        assert main(["annotate", "export", str(cache), "-o", str(out / "export.jsonl")]) == 0
        w = load_weights(out / "w.npz")
        results[kind + "_weights"] = (w.index.tolist(), w.weight.tobytes())
        (out / "w.npz").unlink()  # an npz archive records file times; its arrays are compared above
        results[kind] = _outputs(out)
    assert results["one_weights"] == results["sh_weights"] and len(results["one_weights"][0]) > 0
    assert results["one"].keys() == results["sh"].keys() and len(results["one"]) >= 6
    differ = [k for k in results["one"] if results["one"][k] != results["sh"][k] and not k.endswith(".html")]
    assert differ == [], differ
    # the HTML report names its cache path; everything else in it is the same
    html_one = results["one"]["r.html"].decode().replace(str(caches[0]), "CACHE")
    html_sh = results["sh"]["r.html"].decode().replace(str(caches[1]), "CACHE")
    assert html_one == html_sh
