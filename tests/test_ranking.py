"""Model ranking metrics, sample efficiency (draws, saturation fit, plot) and ``nex rank``."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from selection_synth import write_candidate_cache

from nex_interp.cli import main
from nex_interp.errors import ConfigError
from nex_interp.selection.ranking import RANKING_COLUMNS, rank_all, rank_metric, regret_at_1
from nex_interp.selection.sample_efficiency import (
    SAMPLE_EFFICIENCY_COLUMNS,
    Variant,
    fit_saturation,
    nex_subset_scorer,
    plot_sample_efficiency_fits,
    sample_efficiency,
    write_sample_efficiency,
)


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    acc = rng.random(9)
    score = acc + rng.normal(0, 0.2, 9)
    names = [f"v{i}" for i in range(9)]
    r = rank_metric("nex_score", dict(zip(names, score)), dict(zip(names, acc)))
    assert r.pearson_r == pytest.approx(stats.pearsonr(score, acc)[0])
    assert r.spearman_rho == pytest.approx(stats.spearmanr(score, acc)[0])
    assert r.kendall_tau == pytest.approx(stats.kendalltau(score, acc)[0])
    assert r.n_variants == 9


def test_regret_at_1_and_top1_by_hand():
    acc = np.array([0.6, 0.8, 0.7])
    assert regret_at_1(np.array([0.9, 0.5, 0.7]), acc) == (0.2, 0.0, 0)
    assert regret_at_1(np.array([0.1, 0.5, 0.7]), acc) == (0.1, 0.0, 2)
    assert regret_at_1(np.array([0.1, 0.9, 0.7]), acc) == (0.0, 1.0, 1)
    # lower is better: the smallest score ranks first
    assert regret_at_1(np.array([0.1, 0.9, 0.7]), acc, higher_is_better=False) == (0.2, 0.0, 0)
    # a tie for first: expected regret and hit over the tied variants
    reg, hit, _ = regret_at_1(np.array([0.9, 0.9, 0.1]), acc)
    assert reg == pytest.approx(0.1) and hit == 0.5
    # NaN scores never rank first
    assert regret_at_1(np.array([np.nan, 0.2, 0.1]), acc)[2] == 1


def test_rank_all_table_and_directions():
    acc = {"a": 0.6, "b": 0.8, "c": 0.7}
    df = rank_all({"nex_score": {"a": 0.9, "b": 0.95, "c": 0.92}, "mean_entropy": {"a": 3.0, "b": 1.0, "c": 2.0}}, acc)
    assert list(df.columns) == list(RANKING_COLUMNS)
    row = df.set_index("metric")
    assert row.loc["nex_score", "regret_at_1"] == 0.0 and row.loc["nex_score", "picked"] == "b"
    assert row.loc["mean_entropy", "pearson_r"] == pytest.approx(-1.0) and row.loc["mean_entropy", "top1_hit"] == 1.0
    assert not row.loc["mean_entropy", "higher_is_better"]
    with pytest.raises(ConfigError, match="no known direction"):
        rank_metric("mystery", {"a": 1.0}, {"a": 0.5})
    with pytest.raises(ConfigError, match="no score for variant"):
        rank_metric("nex_score", {"a": 1.0}, acc)
    const = rank_metric("nex_score", {"a": 1.0, "b": 1.0, "c": 1.0}, acc)
    assert math.isnan(const.pearson_r) and const.regret_at_1 == pytest.approx(0.1)


# ----------------------------------------------------------------------------- sample efficiency
def test_fit_saturation_recovers_planted_parameters():
    rng = np.random.default_rng(1)
    n = np.repeat([2, 5, 10, 20, 40, 80], 10).astype(float)
    y = 0.9 - 0.7 * np.exp(-n / 12.0) + rng.normal(0, 0.01, n.size)
    fit = fit_saturation(n, y)
    assert fit.ok and fit.a == pytest.approx(0.9, abs=0.02) and fit.b == pytest.approx(0.7, abs=0.05)
    assert fit.tau == pytest.approx(12.0, rel=0.1) and fit.r2 > 0.99
    flat = fit_saturation(n, rng.normal(0, 0.1, n.size))  # no trend: tau stays inside the grid's scale
    assert not flat.ok or 1.0 <= flat.tau <= 800.0
    assert fit(np.array([1e6]))[0] == pytest.approx(fit.a)
    bad = fit_saturation(np.array([1.0, 1.0, 2.0]), np.array([0.1, 0.2, 0.3]))
    assert not bad.ok and math.isnan(bad.a)


class _FakeCache:
    def __init__(self, n):
        self.n_responses = n


def _fake_variants(n_problems=30, samples=2):
    pids = [f"p{i}" for i in range(n_problems) for _ in range(samples)]
    return [Variant(f"v{k}", _FakeCache(len(pids)), pids, acc) for k, acc in enumerate([0.2, 0.4, 0.6, 0.8])]


def test_sample_efficiency_draws_the_same_problems_for_every_variant():
    seen = []

    def scorer(v, idx):
        seen.append((v.name, tuple(sorted({v.problem_ids[i] for i in idx}))))
        # a noisy but informative score: the noise shrinks with more responses
        rng = np.random.default_rng(len(idx) * 7 + int(v.name[1:]))
        return v.accuracy + rng.normal(0, 1.0 / math.sqrt(len(idx)))

    df = sample_efficiency(_fake_variants(), [2, 8, 30], seeds=3, scorer=scorer, progress=False)
    assert list(df.columns[:4]) == list(SAMPLE_EFFICIENCY_COLUMNS)
    assert len(df) == 9 and sorted(df["n_problems"].unique()) == [2, 8, 30]
    for k in range(0, len(seen), 4):  # the four variants of one draw share the problems
        draws = {s[1] for s in seen[k : k + 4]}
        assert len(draws) == 1 and len(next(iter(draws))) == df["n_problems"].iloc[k // 4]
    full = df[df["n_problems"] == 30]
    assert (full["pearson_r"] > 0.9).all()
    again = sample_efficiency(_fake_variants(), [2, 8, 30], seeds=3, scorer=scorer, progress=False)
    pd.testing.assert_frame_equal(df, again)
    with pytest.raises(ConfigError, match="outside 1..30"):
        sample_efficiency(_fake_variants(), [31], seeds=1, scorer=scorer, progress=False)
    with pytest.raises(ConfigError, match="at least two variants"):
        sample_efficiency(_fake_variants()[:1], [2], seeds=1, scorer=scorer, progress=False)


def test_plot_and_files(tmp_path):
    df = pd.DataFrame({"n_problems": np.repeat([2, 5, 10, 20], 3), "seed": np.tile([0, 1, 2], 4),
                       "pearson_r": np.repeat([0.2, 0.5, 0.7, 0.75], 3) + np.tile([0.0, 0.01, -0.01], 4),
                       "regret_at_1": np.repeat([0.3, 0.2, 0.05, 0.0], 3)})
    fig = plot_sample_efficiency_fits(df)
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "unlabeled problems N"
    paths = write_sample_efficiency(df, tmp_path, config={"grid": [2, 5, 10, 20]})
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    back = pd.read_csv(paths["csv"])
    assert list(back.columns[:4]) == list(SAMPLE_EFFICIENCY_COLUMNS) and len(back) == 12
    prov = json.loads((tmp_path / "sample_efficiency.csv.provenance.json").read_text())
    assert set(prov["fits"]) == {"pearson_r", "regret_at_1"}


# ----------------------------------------------------------------------------- real caches
@pytest.fixture(scope="module")
def variant_caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    return {f"m{k}": write_candidate_cache(root / f"m{k}", n_problems=5, n_samples=2, seed=10 + k, p_correct=p, model=f"m{k}")
            for k, p in enumerate([0.2, 0.5, 0.8])}


def test_nex_subset_scorer_learns_only_on_the_drawn_problems(variant_caches, monkeypatch):
    from nex_interp.cache.reader import open_cache, read_response_meta
    from nex_interp.core import learn_weights, score_responses

    path = variant_caches["m0"]
    cache = open_cache(path)
    pids = [m["problem_id"] for m in read_response_meta(path)]
    v = Variant("m0", cache, pids, 0.5)
    idx = np.array([0, 1, 4, 5])
    got = nex_subset_scorer()(v, idx)
    gmf = score_responses(cache, learn_weights(cache, responses=idx))[idx]
    assert got == pytest.approx(np.nanmean(gmf))
    all_scored = nex_subset_scorer(score_on="all")(v, idx)
    assert all_scored == pytest.approx(np.nanmean(score_responses(cache, learn_weights(cache, responses=idx))))
    with pytest.raises(ConfigError):
        nex_subset_scorer(score_on="everything")


def test_nex_rank_command(variant_caches, tmp_path, capsys):
    out = tmp_path / "rank"
    args = ["rank", *[f"{n}={p}" for n, p in variant_caches.items()], "-o", str(out), "--sample-efficiency", "2,3,5", "--seeds", "2"]
    assert main(args) == 0
    variants = pd.read_csv(out / "variants.csv")
    assert variants["variant"].tolist() == ["m0", "m1", "m2"]
    assert {"accuracy", "nex_score", "mean_entropy", "mean_length", "self_certainty", "high_entropy_rows"} <= set(variants.columns)
    assert variants["accuracy"].between(0, 1).all() and variants["nex_score"].notna().all()
    ranking = pd.read_csv(out / "ranking.csv")
    assert list(ranking.columns) == list(RANKING_COLUMNS)
    assert set(ranking["metric"]) == {"nex_score", "high_entropy_rows", "mean_entropy", "mean_length", "self_certainty"}
    se = pd.read_csv(out / "sample_efficiency.csv")
    assert len(se) == 6 and (out / "sample_efficiency.png").is_file()
    acc_file = tmp_path / "acc.json"
    acc_file.write_text(json.dumps({"m0": 0.1, "m1": 0.5}))
    assert main(["rank", *[f"{n}={p}" for n, p in variant_caches.items()], "-o", str(tmp_path / "r2"), "--accuracy", str(acc_file)]) == 2
    assert "no accuracy for variant(s) m2" in capsys.readouterr().err
    assert main(["rank", f"a={variant_caches['m0']}", "-o", str(tmp_path / "r3")]) == 2


def test_nex_rank_grades_from_responses_files(variant_caches, tmp_path):
    """Captured caches hold no response text: --responses NAME=FILE supplies it for grading."""
    from nex_interp.cache.reader import read_response_meta

    files, want = [], {}
    for name, path in variant_caches.items():
        rows = []
        for k, m in enumerate(read_response_meta(path)):
            m = {key: v for key, v in m.items() if key not in ("response", "correct")}
            m["response"] = f"so ans {m['reference_answer'] if k % 3 == 0 else 'x'}"
            rows.append(m)
        want[name] = np.mean([k % 3 == 0 for k in range(len(rows))])
        f = tmp_path / f"{name}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files += ["--responses", f"{name}={f}"]
    out = tmp_path / "rank"
    assert main(["rank", *[f"{n}={p}" for n, p in variant_caches.items()], "-o", str(out), *files]) == 0
    got = pd.read_csv(out / "variants.csv").set_index("variant")["accuracy"].to_dict()
    assert got == pytest.approx(want)
    assert main(["rank", *[f"{n}={p}" for n, p in variant_caches.items()], "-o", str(out), "--responses", "zz=f"]) == 2
