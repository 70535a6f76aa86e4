"""``nex demo --quick``: the whole pipeline (merge, generate, capture, NEX, evaluation, report)."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from nex_interp.zoo.experiment import DemoConfig  # noqa: E402

VARIANT_KEYS = {"name", "lambda", "accuracy", "nex_score", "mean_e_segments", "high_entropy_rows"}


def test_demo_config_validates():
    from nex_interp.errors import ConfigError

    with pytest.raises(ConfigError):
        DemoConfig(n_variants=1)
    assert DemoConfig().lambdas()[0] == 0.0 and DemoConfig().lambdas()[-1] == 1.0 and len(DemoConfig().lambdas()) >= 11


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from nex_interp.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "-o", str(out), "--quick", "--seed", "3"]) == 0
    return out


def test_quick_demo_writes_the_summary(quick_demo, capsys):
    out = quick_demo
    summary = json.loads((out / "summary.json").read_text())
    assert {"variants", "correlation", "inverted_u", "phase_agreement"} <= set(summary)
    cfg = DemoConfig.quick(3)
    assert [v["lambda"] for v in summary["variants"]] == cfg.lambdas()
    for v in summary["variants"]:
        assert set(v) == VARIANT_KEYS
        assert 0.0 <= v["accuracy"] <= 1.0 and v["mean_e_segments"] >= 0 and v["high_entropy_rows"] >= 0
    assert set(summary["correlation"]) == {"pearson_r", "spearman_rho", "regret_at_1"}
    assert 0.0 <= summary["correlation"]["regret_at_1"] <= 1.0
    for proxy in ("high_entropy_rows", "mean_e_segments"):
        assert {"r2", "optimum"} <= set(summary["inverted_u"][proxy])
    assert {"cohen_kappa", "boundary_f1"} <= set(summary["phase_agreement"])
    # the endpoints are the zoo's own models: instruct answers briefly, thinking works it out
    details = json.loads((out / "details.json").read_text())
    first, last = details["variants"][0], details["variants"][-1]
    assert first["thinking_share"] <= 0.2 and last["thinking_share"] >= 0.8
    assert last["mean_e_segments"] > first["mean_e_segments"]
    assert (out / "summary.json.provenance.json").exists()
    # the regime the numbers need, measured on the run's own worked solutions
    pre = summary["preconditions"]
    assert {"median_response_tokens", "row_tokens", "median_rows", "mean_generator_e_spans",
            "e_span_rows_ge2_share", "late_novelty_share", "met"} <= set(pre)
    assert pre["row_tokens"] == cfg.row_tokens == 8 and pre["n_worked_responses"] > 0
    assert pre["median_rows"] >= pre["median_response_tokens"] / 8
    assert 0.0 <= pre["late_novelty_share"] <= 1.0
    assert {"pearson_r", "variants"} <= set(summary["within_family"])
    diag = summary["diagnostics"]
    assert set(diag) == {v["name"] for v in summary["variants"]}
    worked = diag[summary["variants"][-1]["name"]]
    assert worked["step_kinds"]["opens"] > 0 and sum(worked["cycle_kinds"].values()) > 0
    assert set(worked["weights_per_layer"]) <= {"0", "1", "2", "3"}


def test_quick_demo_writes_plots_tables_and_selection(quick_demo):
    import pandas as pd

    out = quick_demo
    for png in ("nex_vs_accuracy.png", "inverted_u.png", "token_neuron_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "neuron_table.csv")
    assert {"layer", "unit", "weight", "class", "rank"} <= set(table.columns) and len(table) > 0
    sel = pd.read_csv(out / "selection.csv")
    assert list(sel.columns[:4]) == ["method", "accuracy", "ci_low", "ci_high"]
    assert {"nex_gmf", "majority_vote", "oracle"} <= set(sel["method"])
    oracle = float(sel.loc[sel["method"] == "oracle", "accuracy"].iloc[0])
    assert (sel["accuracy"] <= oracle + 1e-9).all()
    se = pd.read_csv(out / "sample_efficiency.csv")
    assert list(se.columns[:4]) == ["n_problems", "seed", "pearson_r", "regret_at_1"]


def test_quick_demo_resumes_and_reproduces(quick_demo, capsys):
    from nex_interp.cli import main

    out = quick_demo
    before = json.loads((out / "summary.json").read_text())
    victim = before["variants"][2]["name"]
    shutil.rmtree(out / "variants" / victim)  # regenerated from scratch: same seed, same numbers
    assert main(["demo", "-o", str(out), "--quick", "--seed", "3"]) == 0
    assert json.loads((out / "summary.json").read_text()) == before
    printed = capsys.readouterr().out
    assert "Pearson r" in printed and victim in printed
    # another seed in the same directory is refused, not mixed in
    assert main(["demo", "-o", str(out), "--quick", "--seed", "4"]) == 2


def test_the_old_demo_module_still_offers_the_parts():
    import nex_interp.demo as old
    from nex_interp.zoo import experiment

    assert old.DemoConfig is experiment.DemoConfig and old.run_variant is experiment.run_variant
    assert set(experiment.__all__) <= set(dir(old))
