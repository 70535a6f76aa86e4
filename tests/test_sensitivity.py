"""Sensitivity: re-rowing a cache by merging rows, sweep settings, the sweep itself and ``nex sweep``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from selection_synth import write_candidate_cache
from synth_cache import random_cache

from nex_interp.cli import main
from nex_interp.errors import ConfigError
from nex_interp.sensitivity import SweepInput, SweepSpec, Setting, markdown_table, merge_rows, run_sweep


def _brute_merge(cache, m):
    """Merged rows as {response: [({key: mass}, tokens), ...]} by plain loops."""
    out = {}
    for i in range(cache.n_responses):
        start, stop = cache.response_rows(i)
        rows = []
        for a in range(start, stop, m):
            acc, tok = {}, 0
            for j in range(a, min(a + m, stop)):
                tok += int(cache.token_row_ptr[j + 1] - cache.token_row_ptr[j])
                for e in range(int(cache.row_ptr[j]), int(cache.row_ptr[j + 1])):
                    v = float(cache.mass[e])
                    v = v if np.isfinite(v) and v > 0 else 0.0
                    acc[int(cache.keys[e])] = acc.get(int(cache.keys[e]), 0.0) + v
            rows.append((acc, tok))
        out[i] = rows
    return out


@pytest.mark.parametrize("m", [2, 3, 50])
def test_merge_rows_matches_a_loop(m):
    cache = random_cache(seed=m, n_responses=5, rows_lo=1, rows_hi=9, dirty=0.1)
    merged = merge_rows(cache, m)
    want = _brute_merge(cache, m)
    assert merged.n_responses == cache.n_responses
    assert np.array_equal(merged.base_ptr, cache.base_ptr)
    assert merged.token_row_ptr[-1] == cache.token_row_ptr[-1]
    for i in range(cache.n_responses):
        start, stop = merged.response_rows(i)
        assert stop - start == len(want[i])
        for j, (acc, tok) in zip(range(start, stop), want[i]):
            keys = merged.keys[merged.row_ptr[j] : merged.row_ptr[j + 1]].tolist()
            mass = merged.mass[merged.row_ptr[j] : merged.row_ptr[j + 1]].astype(np.float64)
            assert keys == sorted(acc)
            assert np.allclose(mass, [np.float16(min(acc[k], 65504.0)) for k in keys], rtol=1e-3)
            assert merged.token_row_ptr[j + 1] - merged.token_row_ptr[j] == tok
    assert merge_rows(cache, 1) is cache
    with pytest.raises(ConfigError):
        merge_rows(cache, 0)


def test_merged_cache_scores_like_a_capture_with_bigger_rows():
    # rows of 2x the size hold the union of the neurons: merging 1 row at a time changes nothing,
    # and merging everything into one row per response leaves too few rows to learn on
    from nex_interp.core import learn_weights

    cache = random_cache(seed=1, n_responses=4, rows_lo=8, rows_hi=12)
    one = merge_rows(cache, 10**6)
    assert one.n_rows == cache.n_responses
    assert len(learn_weights(one)) == 0


def test_sweep_settings_designs():
    spec = SweepSpec(rhos=(0.9, 0.95), min_runs=(1, 2), row_multiples=(1, 2))
    oat = spec.settings(["a", "b"])
    assert oat[0] == Setting("a", 1, 0.95, 2)
    assert set(oat) == {Setting("a", 1, 0.95, 2), Setting("b", 1, 0.95, 2), Setting("a", 2, 0.95, 2),
                        Setting("a", 1, 0.9, 2), Setting("a", 1, 0.95, 1)}
    assert len(oat) == len(set(oat))
    grid = SweepSpec(rhos=(0.9, 0.95), min_runs=(1, 2), row_multiples=(1, 2), design="grid").settings(["a", "b"])
    assert len(grid) == 16 and grid[0] == Setting("a", 1, 0.95, 2)
    with pytest.raises(ConfigError):
        SweepSpec(design="random").settings(["a"])


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    out = {}
    for v, p in (("vA", 0.3), ("vB", 0.7)):
        for rule, seed in (("gt0", 0), ("topk", 1)):
            # the same "responses" under two rules: same problems and sizes, other neurons
            out[(v, rule)] = write_candidate_cache(root / f"{v}_{rule}", n_problems=3, n_samples=2, seed=seed + (10 if v == "vB" else 0),
                                                   p_correct=p, model=v, rule=rule)
    return out


def test_run_sweep_default_row_is_its_own_reference(caches):
    from nex_interp.cache.reader import open_cache

    inputs = [SweepInput(v, r, open_cache(p), str(p)) for (v, r), p in caches.items()]
    spec = SweepSpec(rhos=(0.9,), min_runs=(1,), row_multiples=(2,))
    res = run_sweep(inputs, spec, accuracy={"vA": 0.3, "vB": 0.7}, progress=False)
    t = res.table
    assert len(t) == 5 and t["is_default"].tolist() == [True, False, False, False, False]
    d = t.iloc[0]
    assert d["max_abs_change"] == 0.0 and d["gmf_spearman_vs_default"] == pytest.approx(1.0) and d["same_top_as_default"]
    assert {"rule", "row_multiple", "rho", "min_run", "pearson_r", "regret_at_1", "nex[vA]", "nex[vB]"} <= set(t.columns)
    assert set(res.scores["variant"]) == {"vA", "vB"} and len(res.scores) == 10
    assert res.rules == ["gt0", "topk"]
    # a setting's scores are the self-calibrated NEX scores of the (re-rowed) caches
    from nex_interp.core import NexParams
    from nex_interp.selection import nex_api

    row = t[(t["row_multiple"] == 2)].iloc[0]
    g = nex_api.self_calibrated_gmf(merge_rows(open_cache(caches[("vA", "gt0")]), 2), NexParams())
    assert row["nex[vA]"] == pytest.approx(np.nanmean(g))


def test_run_sweep_input_errors(caches):
    from nex_interp.cache.reader import open_cache

    a = open_cache(caches[("vA", "gt0")])
    with pytest.raises(ConfigError, match="no cache for rule"):
        run_sweep([SweepInput("vA", "gt0", a), SweepInput("vB", "topk", a)], progress=False)
    with pytest.raises(ConfigError, match="two caches"):
        run_sweep([SweepInput("vA", "gt0", a), SweepInput("vA", "gt0", a)], progress=False)
    with pytest.raises(ConfigError, match="at least one cache"):
        run_sweep([], progress=False)


def test_markdown_table():
    df = pd.DataFrame({"a": [1.23456, np.nan], "b": [True, False], "c": ["x|y", "z"]})
    md = markdown_table(df)
    assert md.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1.235 | yes | x\\|y |", "|  | no | z |"]


def test_nex_sweep_command(caches, tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", *[str(p) for p in caches.values()], "-o", str(out), "--rho", "0.9,0.95", "--min-run", "2",
            "--row-multiple", "1,2"]
    assert main(args) == 0
    table = pd.read_csv(out / "sweep.csv")
    # variants and rules come from the manifests; accuracy from the caches' graded responses
    assert set(table["rule"]) == {"gt0", "topk"} and "pearson_r" in table.columns
    assert (out / "sweep.md").read_text().startswith("# NEX sensitivity sweep")
    prov = json.loads((out / "sweep.csv.provenance.json").read_text())
    assert prov["variants"] == ["vA", "vB"] and prov["config"]["rhos"] == [0.9, 0.95]
    labelled = ["sweep", f"x@r1={caches[('vA', 'gt0')]}", "-o", str(tmp_path / "sw2"), "--row-multiple", "0"]
    assert main(labelled) == 2
    assert "row-multiple" in capsys.readouterr().err
