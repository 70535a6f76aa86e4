"""Best-of-N selection: baselines on hand-computable arrays, picks and ties, registry,
the cache pipeline and ``nex select`` (the bootstrap itself: test_stats.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats
from selection_synth import VOCAB, kl_uniform, write_candidate_cache

from nex_interp.cli import main
from nex_interp.errors import ConfigError
from nex_interp.selection import (
    CandidateSet,
    MissingInput,
    SelectionOptions,
    candidates_from_rows,
    get_method,
    method_names,
    register_method,
    run_best_of_n,
)
from nex_interp.selection.registry import unregister_method
from nex_interp.selection import baselines
from nex_interp.selection.answers import extract_answer, normalize_answer
from nex_interp.selection.best_of_n import pick_by_score, pick_by_vote
from nex_interp.selection.candidates import ResponsesError, load_responses

ALL_METHODS = {"nex_gmf", "nex_gmf_pooled", "nex_gmf_calibrated", "nex_weighted_vote", "random", "majority_vote", "self_certainty",
               "deepconf", "mean_entropy", "length", "oracle"}


# ----------------------------------------------------------------------------- baselines
def test_self_certainty_is_mean_kl_from_uniform():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(7, 11))
    logp = logits - special.logsumexp(logits, axis=1, keepdims=True)
    expected = np.mean([kl_uniform(row) for row in logp])
    # scipy's relative entropy gives the same KL(U || p)
    u = np.full(11, 1 / 11)
    via_scipy = np.mean([stats.entropy(u, np.exp(row)) for row in logp])
    got = baselines.self_certainty(logp.mean(axis=1), 11)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got == pytest.approx(via_scipy, rel=1e-6)
    assert baselines.self_certainty(np.full(3, -math.log(11)), 11) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(baselines.self_certainty(np.zeros(0), 11))


def test_token_confidence_and_lowest_group_confidence_match_a_loop():
    rng = np.random.default_rng(1)
    lp = -rng.gamma(2.0, 1.0, size=(40, 5))
    conf = baselines.token_confidence(lp)
    assert np.allclose(conf, [-row.mean() for row in lp])
    for window in (1, 3, 7, 40, 100):
        n = min(window, len(conf))
        brute = min(np.mean(conf[i : i + n]) for i in range(len(conf) - n + 1))
        assert baselines.lowest_group_confidence(conf, window) == pytest.approx(brute, rel=1e-12)
    assert baselines.lowest_group_confidence(np.array([2.0, 4.0]), window=2048) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        baselines.token_confidence(np.zeros(4))


def test_mean_entropy_and_high_entropy_rows():
    e = np.array([0.0, 2.0, 4.0, 1.0, 1.0])
    assert baselines.mean_entropy(e) == pytest.approx(1.6)
    assert baselines.row_mean_entropies(e, 2).tolist() == [1.0, 2.5, 1.0]
    assert baselines.high_entropy_rows(e, 2, 0.9) == 3
    assert baselines.high_entropy_rows(e, 2, 1.0) == 1
    # rows given by their token counts (a cache's own rows); an empty row has no entropy
    assert baselines.row_mean_entropies(e, [1, 3, 0, 1]).tolist()[:2] == [0.0, pytest.approx(7 / 3)]
    assert np.isnan(baselines.row_mean_entropies(e, [1, 3, 0, 1])[2])
    assert baselines.row_mean_entropies(e, [2, 2, 1]).tolist() == baselines.row_mean_entropies(e, 2).tolist()
    assert baselines.high_entropy_rows(e, [1, 3, 0, 1], 0.9) == 2
    with pytest.raises(ValueError, match="span 4 tokens"):
        baselines.row_mean_entropies(e, [2, 2])


# ----------------------------------------------------------------------------- answers
@pytest.mark.parametrize(
    "text, answer",
    [("we get \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"), ("try 3 need 4 no ; ans 10 15", "10 15"),
     ("The final answer is 7.", "7"), ("x = 3, then 12.0", "12"), ("no digits here", None), ("", None)],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_normalize_answer():
    assert normalize_answer(" 10.0 ") == "10"
    assert normalize_answer("1,000") == "1000"
    assert normalize_answer("Ten  Fifteen.") == "ten fifteen"
    assert normalize_answer(None) is None and normalize_answer("  ") is None


# ----------------------------------------------------------------------------- candidates
def _rows():
    return [
        {"id": "a", "problem_id": 1, "response": "ans 5", "reference_answer": "5"},
        {"id": "b", "problem_id": 1, "response": "ans 6", "reference_answer": "5"},
        {"id": "c", "problem_id": 2, "response": "no answer", "reference_answer": "9"},
    ]


def test_candidates_grade_by_reference_correct_field_or_checker():
    c = candidates_from_rows(_rows())
    assert c.correct.tolist() == [1.0, 0.0, 0.0]
    assert c.answers == ["5", "6", None]
    assert [p for p, _ in c.problems()] == ["1", "2"]
    rows = [dict(r, correct=(r["id"] == "c")) for r in _rows()]
    assert candidates_from_rows(rows).correct.tolist() == [0.0, 0.0, 1.0]
    assert candidates_from_rows(rows, checker=lambda r: r["id"] == "b").correct.tolist() == [0.0, 1.0, 0.0]
    unlabelled = [{k: v for k, v in r.items() if k != "reference_answer"} for r in _rows()]
    assert candidates_from_rows(unlabelled).correct is None


def test_responses_file_errors_are_one_line(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(_rows()[0]) + "\n{not json\n")
    with pytest.raises(ResponsesError, match="line 2"):
        load_responses(f)
    f.write_text(json.dumps({"id": "x", "response": "ans 1"}) + "\n")
    with pytest.raises(ResponsesError, match="problem_id"):
        load_responses(f)
    f.write_text(json.dumps(_rows()[0]) + "\n" + json.dumps(_rows()[0]) + "\n")
    with pytest.raises(ResponsesError, match="twice"):
        load_responses(f)
    f.write_text(json.dumps(dict(_rows()[0], correct="yes")) + "\n")
    with pytest.raises(ResponsesError, match="correct"):
        load_responses(f)
    with pytest.raises(ResponsesError, match="not found"):
        load_responses(tmp_path / "missing.jsonl")


# ----------------------------------------------------------------------------- picks
def test_pick_by_score_resolves_ties_in_expectation_and_skips_nan():
    correct = np.array([1.0, 0.0, 0.0, 1.0])
    idx = np.arange(4)
    assert pick_by_score(np.array([0.1, 0.9, 0.9, 0.5]), idx, correct) == (1, 2, 0.0)
    assert pick_by_score(np.array([0.9, 0.9, 0.1, 0.9]), idx, correct)[1:] == (3, pytest.approx(2 / 3))
    assert pick_by_score(np.array([np.nan, 0.2, np.nan, 0.3]), idx, correct) == (3, 1, 1.0)
    assert pick_by_score(np.full(4, np.nan), idx, correct)[1:] == (4, 0.5)  # all NaN: random


def test_pick_by_vote_weighted_and_tied():
    correct = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    answers = ["5", "5", "6", "6", "6"]
    idx = np.arange(5)
    assert pick_by_vote(np.ones(5), answers, idx, correct)[2] == 0.0  # plain majority: "6"
    w = np.array([0.9, 0.9, 0.3, 0.3, 0.3])
    assert pick_by_vote(w, answers, idx, correct)[2] == 1.0  # weighted: "5" (1.8 > 0.9)
    tie = np.array([0.5, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3])
    assert pick_by_vote(tie, ["5", "5", "6", "6", None], idx, correct)[2] == pytest.approx(1.0)  # 1.0 vs 0.667
    assert pick_by_vote(np.ones(5), ["5", "5", "6", "6", None], idx, correct)[2] == pytest.approx(0.5)  # tie 2:2
    assert pick_by_vote(np.ones(5), [None] * 5, idx, correct)[2] == pytest.approx(0.4)  # no answers: random
    assert pick_by_vote(np.zeros(5), answers, idx, correct)[2] == 0.0  # all weights 0: the majority "6"


def _hand_set() -> CandidateSet:
    return CandidateSet(
        ids=[f"r{i}" for i in range(6)],
        problem_ids=["p1"] * 3 + ["p2"] * 3,
        correct=np.array([1.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
        answers=["1", "2", "2", "3", "3", "4"],
        n_tokens=np.array([50.0, 30.0, 40.0, 90.0, 80.0, 70.0]),
    )


def test_subset_keeps_everything_aligned():
    c = _hand_set().with_scores(nex_gmf=np.arange(6.0))
    sub = c.subset(np.array([5, 0]))
    assert sub.ids == ["r5", "r0"] and sub.problem_ids == ["p2", "p1"] and sub.answers == ["4", "1"]
    assert sub.correct.tolist() == [1.0, 1.0] and sub.scores["nex_gmf"].tolist() == [5.0, 0.0]
    assert sub.n_tokens.tolist() == [70.0, 50.0]
    with pytest.raises(ValueError, match="problem ids"):
        CandidateSet(ids=["a"], problem_ids=[])


def test_random_oracle_majority_length_by_hand():
    rep = run_best_of_n(_hand_set(), n_boot=200)
    acc = {r.method: r.accuracy for r in rep.results}
    assert acc["random"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert acc["oracle"] == 1.0
    assert acc["majority_vote"] == 0.0  # "2" wins p1 (wrong), "3" wins p2 (wrong)
    assert acc["length"] == pytest.approx(0.5)  # shortest: r1 (wrong), r5 (right)
    assert set(rep.skipped) == {"nex_gmf", "nex_gmf_pooled", "nex_gmf_calibrated", "nex_weighted_vote", "self_certainty", "deepconf", "mean_entropy"}
    assert rep.result("oracle").uses_labels and not rep.result("random").uses_labels
    picks = rep.picks_frame()
    assert set(picks.columns) == {"method", "problem_id", "response_id", "n_tied", "expected_correct"}
    assert picks.query("method == 'length'")["response_id"].tolist() == ["r1", "r5"]


def test_nex_scores_select_through_the_registry():
    c = _hand_set().with_scores(nex_gmf=np.array([0.9, 0.1, 0.2, 0.3, 0.1, 0.8]),
                                nex_gmf_calibrated=np.array([0.1, 0.9, 0.2, np.nan, np.nan, np.nan]))
    rep = run_best_of_n(c, ["nex_gmf", "nex_gmf_calibrated", "nex_weighted_vote"], n_boot=200)
    acc = {r.method: r.accuracy for r in rep.results}
    assert acc["nex_gmf"] == 1.0
    assert acc["nex_gmf_calibrated"] == pytest.approx((0.0 + 1 / 3) / 2)  # p2 all NaN: random
    # weighted vote: p1 "1"=0.9 vs "2"=0.3 -> right; p2 "3"=0.4 vs "4"=0.8 -> right
    assert acc["nex_weighted_vote"] == 1.0


def test_explicit_method_without_inputs_and_unknown_method_fail():
    with pytest.raises(MissingInput, match="self_certainty.*vocab_mean_logprob"):
        run_best_of_n(_hand_set(), ["self_certainty"])
    with pytest.raises(ConfigError, match="unknown selection method 'best'"):
        run_best_of_n(_hand_set(), ["best"])


def test_registering_a_method_makes_it_available():
    name = "test_longest"
    register_method(name, kind="score", citation="test", summary="longest", requires=("n_tokens",))(
        lambda c, o: np.asarray(c.n_tokens))
    try:
        assert get_method(name).citation == "test" and name in method_names()
        rep = run_best_of_n(_hand_set(), [name], n_boot=100)
        assert rep.results[0].accuracy == pytest.approx(0.5)  # longest: r0 (right), r3 (wrong)
        with pytest.raises(ValueError, match="already registered"):
            register_method(name, kind="score", citation="x", summary="x")(lambda c, o: None)
    finally:
        unregister_method(name)
    assert name not in method_names()


def test_every_builtin_method_has_a_citation():
    for name in ALL_METHODS:
        m = get_method(name)
        assert m.citation and m.summary and m.kind in ("score", "vote")


# ----------------------------------------------------------------------------- cache pipeline
@pytest.fixture(scope="module")
def cand_cache(tmp_path_factory):
    return write_candidate_cache(tmp_path_factory.mktemp("sel") / "cache", n_problems=6, n_samples=4, seed=0)


def test_pipeline_runs_every_method_on_a_captured_cache(cand_cache):
    from nex_interp.selection.pipeline import SelectConfig, select_best_of_n

    rep, cands = select_best_of_n(cand_cache, config=SelectConfig(n_boot=200))
    assert {r.method for r in rep.results} == ALL_METHODS and not rep.skipped
    assert cands.meta["vocab_size"] == VOCAB
    for r in rep.results:
        assert r.n_problems == 6 and r.ci_low <= r.accuracy <= r.ci_high
    acc = {r.method: r.accuracy for r in rep.results}
    assert acc["oracle"] >= max(v for k, v in acc.items() if k != "oracle")
    # the synthetic correct responses have sharper next-token distributions
    assert acc["self_certainty"] == acc["oracle"] and acc["mean_entropy"] == acc["oracle"]
    assert acc["random"] == pytest.approx(np.mean([cands.correct[m].mean() for _, m in cands.problems()]))


def test_nex_scores_come_from_the_documented_calibration_sets(cand_cache):
    from nex_interp.cache.reader import open_cache
    from nex_interp.selection import nex_api
    from nex_interp.selection.pipeline import SelectConfig, load_candidates, nex_self_calibrated

    cands, cache, index = load_candidates(cand_cache, config=SelectConfig())
    # per-problem self-calibration: weights learned on that problem's candidates only
    for _, members in cands.problems()[:2]:
        direct = nex_api.self_calibrated_gmf(cache, None, index[members])[index[members]]
        assert np.allclose(cands.scores["nex_gmf"][members], direct, equal_nan=True)
    pooled = nex_self_calibrated(cands, cache, index, calibration="pool")
    assert np.allclose(pooled, nex_api.self_calibrated_gmf(cache)[index], equal_nan=True)
    assert np.allclose(cands.scores["nex_gmf_pooled"], pooled, equal_nan=True)
    # separate calibration on another cache equals scoring with weights learned there
    _, _, _ = load_candidates(cand_cache)
    cfg = SelectConfig(calibration_cache=str(cand_cache))
    cands2, _, _ = load_candidates(cand_cache, config=cfg)
    other = nex_api.learn(open_cache(cand_cache))
    assert np.allclose(cands2.scores["nex_gmf_calibrated"], nex_api.gmf_scores(cache, other)[index], equal_nan=True)


def test_cross_calibration_never_learns_on_the_scored_problems(cand_cache, monkeypatch):
    from nex_interp.selection import nex_api, pipeline

    cands, cache, index = pipeline.load_candidates(cand_cache, with_nex=False)
    seen = []
    real = nex_api.learn

    def spy(c, params=None, responses=None):
        seen.append(set(np.asarray(responses).tolist()))
        return real(c, params, responses)

    monkeypatch.setattr(nex_api, "learn", spy)
    scores = pipeline.nex_cross_calibrated(cands, cache, index, folds=2, seed=0)
    assert len(seen) == 2 and not (seen[0] & seen[1]) and seen[0] | seen[1] == set(range(len(cands)))
    by_problem = {p: set(index[m].tolist()) for p, m in cands.problems()}
    for learned in seen:
        for members in by_problem.values():
            assert members <= learned or not (members & learned)  # problems are never split
    assert np.isfinite(scores).sum() > 0


# ----------------------------------------------------------------------------- CLI
def test_nex_select_writes_selection_csv_with_provenance(cand_cache, tmp_path, capsys):
    out = tmp_path / "sel"
    rc = main(["select", str(cand_cache), "-o", str(out), "--n-boot", "200", "--deepconf-window", "64"])
    assert rc == 0
    df = pd.read_csv(out / "selection.csv")
    assert list(df.columns[:4]) == ["method", "accuracy", "ci_low", "ci_high"]
    assert set(df["method"]) == ALL_METHODS
    assert (out / "selection.csv.provenance.json").is_file() and (out / "picks.csv").is_file()
    prov = json.loads((out / "selection.csv.provenance.json").read_text())
    assert prov["config"]["deepconf_window"] == 64 and prov["command"] == "nex select"
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 24 and "nex_gmf" in scores.columns
    assert "oracle" in capsys.readouterr().out
    # a chosen subset, from a separate responses file without labels: picks only
    resp = tmp_path / "resp.jsonl"
    from nex_interp.cache.reader import read_response_meta

    resp.write_text("".join(json.dumps({k: r[k] for k in ("id", "problem_id", "response")}) + "\n" for r in read_response_meta(cand_cache)))
    out2 = tmp_path / "sel2"
    assert main(["select", str(cand_cache), "--responses", str(resp), "-o", str(out2), "--methods", "length,majority_vote", "--n-boot", "50"]) == 0
    df2 = pd.read_csv(out2 / "selection.csv")
    assert df2["method"].tolist() == ["length", "majority_vote"] and df2["accuracy"].isna().all()


def test_nex_select_bad_input_is_one_line_exit_2(cand_cache, tmp_path, capsys):
    assert main(["select", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert main(["select", str(cand_cache), "-o", str(tmp_path / "o"), "--methods", "best"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "p0-s0", "problem_id": "p0"}\n[1]\n')
    assert main(["select", str(cand_cache), "--responses", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("nex: error:") for line in err)
    assert "unknown selection method 'best'" in err[1] and "line 2" in err[2]
    assert not (tmp_path / "o").exists()
    assert main(["select", str(cand_cache), "-o", str(tmp_path / "o"), "--n-boot", "0"]) == 2
    assert main(["select", str(cand_cache), "-o", str(tmp_path / "o"), "--calibration-weights", "w.npz", "--calibration-cache", "c"]) == 2
    assert not (tmp_path / "o").exists()
    assert main(["select", "--list-methods"]) == 0


def test_one_problem_skips_cross_calibration_and_baseline_runs_skip_nex(tmp_path, monkeypatch):
    from nex_interp.selection import nex_api
    from nex_interp.selection.pipeline import SelectConfig, select_best_of_n

    one = write_candidate_cache(tmp_path / "one", n_problems=1, n_samples=3, seed=4)
    rep, _ = select_best_of_n(one, config=SelectConfig(n_boot=50))
    assert "nex_gmf_calibrated" in rep.skipped and "nex_gmf" in {r.method for r in rep.results}

    def boom(*a, **k):
        raise AssertionError("NEX weights learned although no NEX method was asked for")

    monkeypatch.setattr(nex_api, "learn", boom)
    rep, _ = select_best_of_n(one, methods=["length", "deepconf"], config=SelectConfig(n_boot=50))
    assert [r.method for r in rep.results] == ["length", "deepconf"]


def test_select_on_a_real_capture_of_a_pico_model(pico_dirs, tmp_path):
    """End to end on a real (random pico) model: capture's token statistics feed the baselines, and
    self-certainty equals KL(U || p) computed from the model's own logits."""
    import torch

    from nex_interp.capture.engine import CaptureConfig, write_cache, prepare_items
    from nex_interp.models.loader import load_model
    from nex_interp.selection.pipeline import SelectConfig, load_candidates

    model = load_model(str(pico_dirs("qwen3")))
    bodies = ["let us think step : 3 plus 4 equals 7 . check 7 minus 4 equals 3 . final answer is 7",
              "3 plus 4 equals 8 . wait 8 is wrong . try again : 3 plus 4 equals 7 . answer is 7",
              "maybe 6 . no , 3 plus 4 is 7 so the answer is 7 . verify : 7 minus 3 equals 4 yes",
              "the answer is 9 . 9 minus 4 equals 5 not 3 so wrong . hmm 3 plus 4 equals 6 answer is 6"]
    rows = [{"id": f"q{p}-s{s}", "problem_id": f"q{p}", "prompt": f"what is 3 plus {p + 4} ?", "response": bodies[(p + s) % 4],
             "reference_answer": str(7 + p)} for p in range(2) for s in range(3)]
    resp = tmp_path / "responses.jsonl"
    resp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CaptureConfig(rule="abs:0", row_tokens=4, progress=False)
    write_cache(model, rows, tmp_path / "cache", cfg)

    cands, cache, index = load_candidates(tmp_path / "cache", resp, config=SelectConfig())
    rep = run_best_of_n(cands, n_boot=50)
    assert {r.method for r in rep.results} == ALL_METHODS
    assert cands.meta["vocab_size"] == model.identity["vocab_size"]
    assert cands.correct.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # graded by reference_answer

    sc = get_method("self_certainty").compute(cands, SelectionOptions())
    items, _ = prepare_items(model, rows, cfg)
    for k, it in enumerate(items[:3]):
        ids = torch.tensor([it.prompt_ids + it.response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model.hf_model(ids).logits[0].double(), dim=-1)
        n_p = len(it.prompt_ids)
        pred = logp[n_p - 1 : n_p - 1 + len(it.response_ids)]  # the distributions the response tokens were drawn from
        v = pred.shape[-1]
        kl = (-(pred.mean(-1)) - math.log(v)).mean().item()
        assert sc[k] == pytest.approx(kl, rel=1e-4, abs=1e-5)


def test_a_cache_without_token_stats_still_runs_nex_and_length(tmp_path):
    from nex_interp.cache.reader import open_cache
    from nex_interp.selection.pipeline import SelectConfig, select_best_of_n

    path = write_candidate_cache(tmp_path / "bare", n_problems=2, n_samples=3, seed=2, streams=False)
    rep, cands = select_best_of_n(path, config=SelectConfig(n_boot=50))
    assert {"self_certainty", "deepconf", "mean_entropy"} <= set(rep.skipped)
    assert {"nex_gmf", "length", "majority_vote"} <= {r.method for r in rep.results}
    c = open_cache(path)
    srp, trp = c.sample_row_ptr, c.token_row_ptr
    assert cands.n_tokens.tolist() == [float(trp[srp[i + 1]] - trp[srp[i]]) for i in range(6)]


def test_selection_commands_do_not_import_torch(cand_cache, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nfrom nex_interp.cli import main\n"
        f"assert main(['select', {str(cand_cache)!r}, '-o', {str(tmp_path / 's')!r}, '--n-boot', '20']) == 0\n"
        f"assert main(['sweep', {str(cand_cache)!r}, '-o', {str(tmp_path / 'w')!r}, '--rho', '0.9', '--min-run', '2', '--row-multiple', '1']) == 0\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
