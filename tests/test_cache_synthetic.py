"""The synthetic-cache generator (nex_interp.cache.synthetic, `nex cache synth`): deterministic bytes,
planted explore/exploit structure that NEX recovers, every sanitising case under --dirty (with the
core still equal to the oracle), a valid cache with manifest and provenance, and bad options failing
in one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import oracle_nex
from test_core_oracle import core_kernel
from nex_interp.cache.reader import open_cache
from nex_interp.cache.synthetic import SynthConfig, synth_cache
from nex_interp.cli import main
from nex_interp.core import learn_weights, score_responses, segment_phases

SMALL = dict(responses=6, rows_lo=20, rows_hi=40, keys_per_row=20, layers=4, d_mlp=512)
#: files whose bytes carry write times; every other file must be identical for identical settings
TIMED = {"manifest.json", "provenance.json"}


def _files(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()}


def _manifest(cache: Path) -> dict:
    m = json.loads((cache / "manifest.json").read_text())
    return {k: v for k, v in m.items() if k not in ("created", "updated")}


def _metas(cache: Path) -> list[dict]:
    return [json.loads(line) for line in (cache / "responses.jsonl").read_text().splitlines()]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synth_cache(tmp_path / "a", SynthConfig(seed=3, dirty=True, **SMALL))
    synth_cache(tmp_path / "b", SynthConfig(seed=3, dirty=True, **SMALL))
    synth_cache(tmp_path / "c", SynthConfig(seed=4, dirty=True, **SMALL))
    fa, fb, fc = (_files(tmp_path / n) for n in "abc")
    assert set(fa) == set(fb) == set(fc) and "rows/keys.uint32" in fa
    assert {k: v for k, v in fa.items() if k not in TIMED} == {k: v for k, v in fb.items() if k not in TIMED}
    assert _manifest(tmp_path / "a") == _manifest(tmp_path / "b")  # sha256 of every file included
    for name in ("rows/keys.uint32", "rows/w_sum.float16", "rows/row_ptr.int64", "base/keys.uint32"):
        assert fa[name] != fc[name], name
    assert a.n_entries > 0


def test_a_longer_cache_starts_with_the_shorter_ones_responses(tmp_path):
    short = synth_cache(tmp_path / "s", SynthConfig(seed=9, **{**SMALL, "responses": 3}))
    long = synth_cache(tmp_path / "l", SynthConfig(seed=9, **SMALL))
    n_rows, n = short.n_rows, short.n_entries
    np.testing.assert_array_equal(long.row_ptr[: n_rows + 1], short.row_ptr[:])
    np.testing.assert_array_equal(long.keys[:n], short.keys[:])
    np.testing.assert_array_equal(long.mass[:n].view(np.uint16), short.mass[:].view(np.uint16))
    assert _metas(tmp_path / "l")[:3] == _metas(tmp_path / "s")


def _novelty(cache, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(neurons introduced, tokens) per row of response i, by a plain loop over the rows."""
    seen: set[int] = set()
    new, tokens = [], []
    lo, hi = cache.response_rows(i)
    for j in range(lo, hi):
        keys = set(cache.keys[cache.row_ptr[j]:cache.row_ptr[j + 1]].tolist())
        new.append(len(keys - seen))
        seen |= keys
        tokens.append(int(cache.token_row_ptr[j + 1] - cache.token_row_ptr[j]))
    return np.array(new), np.array(tokens)


def test_the_planted_structure_is_real(tmp_path):
    path = tmp_path / "c"
    cache = synth_cache(path, SynthConfig(responses=8, rows_lo=60, rows_hi=120, keys_per_row=60, layers=8,
                                          d_mlp=2048, seed=4))
    metas = _metas(path)
    new_e, new_x, agree, e_runs = [], [], [], 0
    for i in range(cache.n_responses):
        planted = np.array([c == "E" for c in metas[i]["planted_phases"]])
        assert len(planted) == cache.response_rows(i)[1] - cache.response_rows(i)[0]
        new, tokens = _novelty(cache, i)
        new_e += new[1:][planted[1:]].tolist()  # row 0 introduces everything it holds, whatever its phase
        new_x += new[1:][~planted[1:]].tolist()
        labels = segment_phases(new / tokens)
        agree.append(np.mean(labels == planted))
        e_runs += int(np.sum(np.diff(np.concatenate([[0], labels.astype(int)])) == 1))
    # Explore rows introduce several times more neurons than Exploit rows
    assert np.mean(new_e) > 4 * np.mean(new_x) > 0
    # NEX's phase step finds the planted phases (several E segments per response) ...
    assert np.mean(agree) > 0.85 and e_runs >= 2 * cache.n_responses
    # ... and its cycles credit neurons both ways
    w = learn_weights(cache)
    assert w.meta["n_effective_cycles"] > 0 and w.meta["n_redundant_cycles"] > 0
    assert np.count_nonzero(w.weight > 0) > 100 and np.count_nonzero(w.weight < 0) > 100
    gmf = score_responses(cache, w)
    assert np.all(np.isfinite(gmf)) and np.ptp(gmf) > 0.05


def _dirt(cache) -> dict[str, int]:
    """How often each sanitising case occurs in a ref22 cache."""
    k, m = cache.keys[:], cache.mass[:]
    layer = k >> 16
    counts = np.diff(cache.row_ptr)
    zero_rows = sum(1 for j in np.flatnonzero(counts) if not np.any(m[cache.row_ptr[j]:cache.row_ptr[j + 1]]))
    base_bad = [i for i in range(cache.n_responses)
                if np.any((cache.base_keys[cache.base_ptr[i]:cache.base_ptr[i + 1]] >= 1 << 22)
                          & (cache.base_keys[cache.base_ptr[i]:cache.base_ptr[i + 1]] >> 16 != 255))]
    return {
        "layer 255": int(np.sum(layer == 255)),
        "key outside the table": int(np.sum((k >= 1 << 22) & (layer != 255))),
        "NaN mass": int(np.sum(np.isnan(m))),
        "+inf mass": int(np.sum(m == np.inf)),
        "-inf mass": int(np.sum(m == -np.inf)),
        "negative mass": int(np.sum(np.isfinite(m) & (m < 0))),
        "zero mass": int(np.sum(m == 0)),
        "row with 0 tokens": int(np.sum(np.diff(cache.token_row_ptr) == 0)),
        "row with no entries": int(np.sum(counts == 0)),
        "row of zero mass": zero_rows,
        "response under 3 rows": int(np.sum(np.diff(cache.sample_row_ptr) < 3)),
        "base key outside the table": len(base_bad),
    }


def test_dirty_holds_every_sanitising_case_and_the_core_still_matches_the_oracle(tmp_path):
    config = dict(SMALL, responses=8, rows_lo=20, rows_hi=50)
    clean = _dirt(synth_cache(tmp_path / "clean", SynthConfig(seed=3, **config)))
    dirty = synth_cache(tmp_path / "dirty", SynthConfig(seed=3, dirty=True, **config))
    found = _dirt(dirty)
    assert all(n > 0 for n in found.values()), found
    assert all(n == 0 for n in clean.values()), clean

    want = {n: v for n, v in oracle_nex.learn(dirty).items() if v != 0}
    assert len(want) > 50 and min(want.values()) < 0 < max(want.values())
    for choice in ("compiled", "numpy"):
        with core_kernel(choice):
            w = learn_weights(dirty)
            layer, unit = w.layer_unit()
            got = {(int(a), int(b)): float(v) for a, b, v in zip(layer, unit, w.weight) if v != 0}
            assert set(got) == set(want), choice
            assert max(abs(got[n] - want[n]) for n in want) < 1e-5, choice
            gmf = score_responses(dirty, w)
        np.testing.assert_allclose(gmf, oracle_nex.gmf(dirty, want), atol=1e-6, equal_nan=True)
        assert np.isnan(gmf[6])  # its base vector holds a key outside the table


def test_the_cache_validates_and_records_what_made_it(tmp_path):
    path = tmp_path / "c"
    config = SynthConfig(seed=2, **SMALL)
    synth_cache(path, config)
    cache = open_cache(path, verify_checksums=True)
    m = cache.manifest
    assert m["complete"] and m["n_responses"] == 6 and m["n_entries"] == cache.n_entries > 0
    assert m["key_scheme"]["name"] == "ref22" and m["synthetic"] == config.to_dict()
    assert (m["n_layers"], m["d_mlp"], m["row_tokens"]) == (4, 512, 32)
    assert {"spec": "synthetic"}.items() <= m["model"].items()
    prov = json.loads((path / "provenance.json").read_text())
    assert prov["command"] == "nex cache synth" and prov["config"] == config.to_dict()
    layer, unit = cache.scheme.unpack(cache.keys[:])
    assert layer.max() < 4 and unit.max() < 512
    rows = np.diff(cache.sample_row_ptr)
    assert rows.min() >= 20 and rows.max() <= 40
    assert [len(x["planted_phases"]) for x in _metas(path)] == rows.tolist()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind

    wide = synth_cache(tmp_path / "w", SynthConfig(responses=2, rows_lo=5, rows_hi=8, keys_per_row=10, layers=80, d_mlp=100))
    assert wide.scheme.name == "wide" and wide.keys.dtype == np.uint64
    assert wide.scheme.unpack(wide.keys[:])[0].max() < 80


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return int(e.code)


def test_the_command_writes_the_cache(tmp_path, capsys):
    rc = _cli(["cache", "synth", str(tmp_path / "c"), "--responses", "3", "--rows-lo", "5", "--rows-hi", "9",
               "--keys-per-row", "12", "--layers", "3", "--d-mlp", "64", "--seed", "5", "--dirty", "--no-progress"])
    assert rc == 0
    assert "3 responses" in capsys.readouterr().out
    got = open_cache(tmp_path / "c", verify_checksums=True)
    assert got.manifest["synthetic"] == SynthConfig(responses=3, rows_lo=5, rows_hi=9, keys_per_row=12, layers=3,
                                                    d_mlp=64, seed=5, dirty=True).to_dict()


@pytest.mark.parametrize(
    "options, words",
    [
        (["--rows-lo", "9", "--rows-hi", "3"], ["rows-lo <= rows-hi", "9..3"]),
        (["--responses", "0"], ["responses", "positive"]),
        (["--keys-per-row", "-4"], ["keys-per-row", "positive"]),
        (["--layers", "255"], ["at most 254"]),
        (["--layers", "2", "--d-mlp", "8", "--keys-per-row", "20"], ["keys-per-row 20 exceeds the 16 neurons"]),
        (["--seed", "-1"], ["seed"]),
        (["--d-mlp", "wide"], ["--d-mlp", "invalid int value"]),
        (["--frobnicate"], ["unrecognized arguments"]),
    ],
)
def test_bad_options_fail_in_one_line_with_status_2(tmp_path, capsys, options, words):
    out = tmp_path / "c"
    rc = _cli(["cache", "synth", str(out), "--no-progress", *options])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("nex: error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "c"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    rc = _cli(["cache", "synth", str(out), "--responses", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_a_writer_without_per_response_commits_commits_on_close(tmp_path):
    """CacheWriter(durable=False), as the generator uses it: nothing is committed until close()."""
    from nex_interp.cache.manifest import read_manifest
    from nex_interp.cache.synthetic import synth_response
    from nex_interp.cache.writer import CacheWriter

    config = SynthConfig(seed=1, **SMALL)
    w = CacheWriter(tmp_path / "c", config.scheme, {"model": "m"}, durable=False)
    for i in range(2):
        r = synth_response(config, i)
        w.add_response(r.rows, r.base_keys, r.base_mass, r.meta)
    assert read_manifest(tmp_path / "c")["n_responses"] == 0
    w.close()
    cache = open_cache(tmp_path / "c", verify_checksums=True)
    assert cache.n_responses == 2 and cache.manifest["complete"]
