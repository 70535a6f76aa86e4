"""The neuron-weight table: columns, classes, ranking, formats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nex_interp.errors import ConfigError
from nex_interp.keys import KeyScheme
from nex_interp.neuron_weights import NeuronWeights
from nex_interp.table import COLUMNS, infer_format, neuron_table, to_latex, to_markdown, write_table


def _weights():
    s = KeyScheme.ref22()
    index = s.pack(np.array([3, 1, 2, 2, 5, 0]), np.array([7, 9, 1, 4, 0, 2])).astype(np.int64)
    order = np.argsort(index)
    w = np.array([1.0, -1.0, 0.5, 0.0, -0.25, 1.0], dtype=np.float32)
    eff = np.array([4.0, 0.0, 3.0, 2.0, 1.0, 9.0], dtype=np.float32)
    red = np.array([0.0, 6.0, 1.0, 2.0, 2.0, 0.0], dtype=np.float32)
    return NeuronWeights(index[order], w[order], eff[order], red[order], s, {})


def test_columns_classes_and_ranking():
    df = neuron_table(_weights())
    assert list(df.columns) == COLUMNS
    # |w| = 1 for three neurons: ties broken by total credit (9 > 6 > 4)
    assert list(zip(df.layer, df.unit)) == [(0, 2), (1, 9), (3, 7), (2, 1), (5, 0), (2, 4)]
    assert list(df["class"]) == ["effective", "redundant", "effective", "effective", "redundant", "neutral"]
    assert list(df["rank"]) == [1, 2, 3, 4, 5, 6]
    assert df.loc[df.unit == 9, "redundant_mass"].item() == 6.0
    top = neuron_table(_weights(), top=2)
    pd.testing.assert_frame_equal(top, df.head(2))
    with pytest.raises(ConfigError, match="positive"):
        neuron_table(_weights(), top=0)


def test_wide_scheme_layer_unit():
    s = KeyScheme("wide", 96, 70000)
    idx = np.array([95 * 70000 + 69999, 3 * 70000 + 12], dtype=np.int64)
    w = NeuronWeights(np.sort(idx), np.array([0.5, -0.9], np.float32), np.ones(2, np.float32), np.ones(2, np.float32), s, {})
    df = neuron_table(w)
    assert list(zip(df.layer, df.unit, df["class"])) == [(95, 69999, "redundant"), (3, 12, "effective")]


def test_formats(tmp_path):
    df = neuron_table(_weights())
    write_table(df, tmp_path / "t.csv", "csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), df, check_dtype=False)
    pytest.importorskip("pyarrow")
    write_table(df, tmp_path / "t.parquet", "parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)


def test_latex_is_booktabs_and_escaped():
    tex = to_latex(neuron_table(_weights()))
    for token in ("\\begin{table}", "\\toprule", "\\midrule", "\\bottomrule", "\\end{tabular}", "\\label{tab:nex-neurons}"):
        assert token in tex
    assert "Effective mass & Redundant mass" in tex and "_" not in tex.split("\\label")[0]
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
    assert len(body) == 6 and body[1].startswith("1 & 9 & $-$1.0000 & 0.0000 & 6.0000 & redundant & 2")


def test_markdown():
    md = to_markdown(neuron_table(_weights(), top=2)).splitlines()
    assert md[0] == "| Layer | Unit | Weight | Effective mass | Redundant mass | Class | Rank |"
    assert len(md) == 4 and md[2] == "| 0 | 2 | 1.0000 | 9.0000 | 0.0000 | effective | 1 |"


@pytest.mark.parametrize(
    "name, fmt, expected", [("a.csv", None, "csv"), ("a.PQ", None, "parquet"), ("a.tex", None, "latex"), ("a.md", None, "markdown"), ("a.txt", "csv", "csv")]
)
def test_infer_format(name, fmt, expected):
    assert infer_format(name, fmt) == expected


def test_infer_format_errors():
    with pytest.raises(ConfigError, match=r"extension '\.xlsx'"):
        infer_format("a.xlsx")
    with pytest.raises(ConfigError, match="unknown table format 'html'"):
        infer_format("a.csv", "html")
