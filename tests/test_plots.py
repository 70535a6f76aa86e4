"""Plot functions: they draw what they are given, return a Figure, honour ``ax``, and reject bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from nex_interp import plots  # noqa: E402
from nex_interp.errors import ConfigError  # noqa: E402
from nex_interp.keys import KeyScheme  # noqa: E402
from nex_interp.neuron_weights import NeuronWeights  # noqa: E402

LABELS = np.array([False] * 3 + [True] * 4 + [False] * 5 + [True] * 2 + [False] * 2)


def _rows():
    tokens = np.full(len(LABELS), 32)
    tokens[-1] = 7
    n_new = np.where(LABELS, 90, 6)
    slopes = n_new / tokens
    return tokens, n_new, slopes


def test_phase_spans_cover_rows_in_order():
    spans = plots.phase_spans(LABELS)
    assert [(s.start, s.stop, s.explore) for s in spans] == [
        (0, 3, False), (3, 7, True), (7, 12, False), (12, 14, True), (14, 16, False)
    ]
    assert plots.phase_spans([]) == []
    with pytest.raises(ConfigError):
        plots.phase_spans(np.zeros((2, 2), bool))


def test_token_neuron_curve_is_cumulative_with_explore_spans_shaded():
    tokens, n_new, _ = _rows()
    fig = plots.plot_token_neuron_curve(tokens, n_new, LABELS)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    line = [ln for ln in ax.get_lines() if ln.get_label() == "distinct neurons"][0]
    x, y = line.get_data()
    np.testing.assert_allclose(x, np.concatenate([[0], np.cumsum(tokens)]))
    np.testing.assert_allclose(y, np.concatenate([[0], np.cumsum(n_new)]))
    # one shaded patch per phase span; E spans start at the token where their first row starts
    patches = ax.patches
    assert len(patches) == len(plots.phase_spans(LABELS))
    xs = sorted(p.get_x() for p in patches)
    assert xs == [0, 3 * 32, 7 * 32, 12 * 32, 14 * 32]


def test_plot_draws_into_given_axes():
    from matplotlib.figure import Figure as F

    fig = F()
    ax1, ax2 = fig.subplots(1, 2)
    tokens, n_new, slopes = _rows()
    assert plots.plot_novelty_slope(slopes, LABELS, ax=ax2) is fig
    assert plots.plot_token_neuron_curve(tokens, n_new, LABELS, ax=ax1) is fig
    assert len(fig.axes) == 2
    # E rows and X rows are separate scatter sets of the right sizes
    sizes = sorted(len(c.get_offsets()) for c in ax2.collections if c.get_offsets().shape[0] and c.get_label().endswith(")"))
    assert sizes == [int(LABELS.sum()), int((~LABELS).sum())]


def test_length_mismatch_is_a_user_error():
    tokens, n_new, _ = _rows()
    with pytest.raises(ConfigError, match="n_new has"):
        plots.plot_token_neuron_curve(tokens, n_new[:-1], LABELS)
    with pytest.raises(ConfigError, match="labels"):
        plots.plot_novelty_slope([1.0, 2.0], [True])


def test_nex_vs_accuracy_fit_follows_data_and_drops_nan():
    x = np.array([0.1, 0.2, 0.3, 0.4, np.nan])
    y = 2 * np.nan_to_num(x) + 1
    fig = plots.plot_nex_vs_accuracy(x, y, names=list("abcde"))
    ax = fig.axes[0]
    fit = [ln for ln in ax.get_lines() if ln.get_label().startswith("linear fit")][0]
    fx, fy = fit.get_data()
    np.testing.assert_allclose(fy, 2 * fx + 1, atol=1e-9)
    assert "r=1.00" in fit.get_label()
    assert "n=4" in ax.get_title()
    with pytest.raises(ConfigError):
        plots.plot_nex_vs_accuracy([1, 2], [1, 2], names=["a"])


def test_inverted_u_marks_the_peak_of_a_downward_parabola():
    x = np.linspace(0, 1, 21)
    fig = plots.plot_inverted_u(x, 1 - (x - 0.3) ** 2)
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert any(lab.startswith("peak at 0.3") for lab in labels)
    fig = plots.plot_inverted_u(x, (x - 0.3) ** 2)  # U, not inverted: no peak
    assert not any(ln.get_label().startswith("peak") for ln in fig.axes[0].get_lines())


def test_weight_distribution_has_one_box_per_layer_with_counts():
    scheme = KeyScheme.ref22()
    idx = scheme.pack(np.array([0, 0, 2, 2, 2, 5]), np.array([1, 2, 3, 4, 5, 6])).astype(np.int64)
    w = np.array([0.5, -0.5, 1.0, 0.9, -0.2, 0.0], np.float32)
    nw = NeuronWeights(idx, w, np.zeros(6, np.float32), np.zeros(6, np.float32))
    fig = plots.plot_weight_distribution(nw)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2"]  # layer 5 has only a zero weight
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["1", "1", "2", "1"])
    assert "5 credited" in ax.get_title()


def test_dose_response_and_sample_efficiency_draw_one_line_and_band_per_group():
    df = pd.DataFrame(
        {"condition": ["top"] * 3 + ["random"] * 3, "k": [1, 4, 16] * 2, "delta": [-0.1, -0.2, -0.4, 0, 0.01, -0.01]}
    )
    df["ci_low"], df["ci_high"] = df["delta"] - 0.05, df["delta"] + 0.05
    ax = plots.plot_dose_response(df.sample(frac=1, random_state=0)).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"top", "random"}
    np.testing.assert_allclose(lines["top"].get_xdata(), [1, 4, 16])  # sorted by k
    np.testing.assert_allclose(lines["top"].get_ydata(), [-0.1, -0.2, -0.4])
    assert len(ax.collections) == 2  # CI bands
    with pytest.raises(ConfigError, match="lacks column"):
        plots.plot_dose_response(df.drop(columns="ci_low"))
    se = pd.DataFrame({"n_problems": [2, 4, 8], "spearman_rho": [0.1, 0.5, 0.7]})
    ax = plots.plot_sample_efficiency(se).axes[0]
    assert ax.get_xscale() == "log"
    assert len([ln for ln in ax.get_lines()]) == 1 and len(ax.collections) == 0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8"]  # the data's own x values


def test_sample_efficiency_averages_draws_with_a_band():
    draws = pd.DataFrame({"n_problems": [4] * 3 + [8] * 3, "seed": [0, 1, 2] * 2,
                          "spearman_rho": [0.0, 0.3, 0.6, 0.5, 0.7, np.nan]})
    ax = plots.plot_sample_efficiency(draws).axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [4, 8])
    np.testing.assert_allclose(line.get_ydata(), [0.3, 0.6])  # NaN draws are dropped
    assert len(ax.collections) == 1 and "mean of 3 draws" in line.get_label()


def test_save_figure_is_atomic_with_provenance(tmp_path):
    tokens, n_new, _ = _rows()
    fig = plots.plot_token_neuron_curve(tokens, n_new, LABELS)
    out = tmp_path / "curve.png"
    plots.save_figure(fig, out, config={"rho": 0.95})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    side = json.loads((tmp_path / "curve.png.provenance.json").read_text())
    assert side["config"] == {"rho": 0.95} and side["package"] == "nex-interp"
    with pytest.raises(ConfigError, match="format"):
        plots.save_figure(fig, tmp_path / "curve.bmpx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "curve.png.provenance.json"]


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, nex_interp.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_selection_plot_orders_methods_by_accuracy():
    df = pd.DataFrame({"method": ["random", "nex_gmf", "oracle", "length"], "accuracy": [0.5, 0.7, 0.9, np.nan],
                       "ci_low": [0.4, 0.6, 0.85, np.nan], "ci_high": [0.6, 0.8, 0.95, np.nan],
                       "uses_labels": [False, False, True, False]})
    ax = plots.plot_selection(df).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["random", "nex_gmf", "oracle (labels)"]  # NaN dropped
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert [float(ln.get_xdata()[0]) for ln in marks] == [0.5, 0.7, 0.9]
    assert marks[2].get_markerfacecolor() == "white" and marks[1].get_color() == plots.EXPLORE_COLOR
