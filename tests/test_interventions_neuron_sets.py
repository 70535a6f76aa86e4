"""Neuron sets from NEX weights: selection, matched random sets, thresholds, CSV tables (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from nex_interp.interventions.neuron_sets import (
    NeuronSet,
    by_threshold,
    load_set,
    random_matched,
    save_set,
    top_effective,
    top_redundant,
)
from nex_interp.errors import ConfigError
from nex_interp.keys import KeyScheme
from nex_interp.neuron_weights import NeuronWeights


def _weights(entries: list[tuple[int, int, float]], scheme: KeyScheme | None = None) -> NeuronWeights:
    scheme = scheme or KeyScheme.ref22()
    layer = np.array([e[0] for e in entries], dtype=np.int64)
    unit = np.array([e[1] for e in entries], dtype=np.int64)
    idx = scheme.pack(layer, unit).astype(np.int64) if scheme.name == "ref22" else layer * scheme.d_mlp + unit
    order = np.argsort(idx)
    w = np.array([e[2] for e in entries], dtype=np.float32)[order]
    z = np.zeros(len(w), dtype=np.float32)
    return NeuronWeights(idx[order], w, z, z.copy(), scheme)


W = _weights([(0, 3, 0.9), (0, 7, -0.8), (1, 2, 0.5), (1, 9, 0.95), (2, 4, -0.99), (2, 5, 0.1), (0, 1, -0.2), (1, 1, 0.5)])


def pairs(s: NeuronSet) -> set[tuple[int, int]]:
    return set(zip(s.layer.tolist(), s.unit.tolist()))


def test_top_effective_takes_largest_positive_weights_over_all_layers():
    s = top_effective(W, 3)
    # ties (1,1) and (1,2) at 0.5 break towards the lower unit
    assert pairs(s) == {(1, 9), (0, 3), (1, 1)}
    assert np.all(s.weight > 0)
    assert s.meta["available"] == 5


def test_top_redundant_takes_most_negative_and_never_positive():
    s = top_redundant(W, 2)
    assert pairs(s) == {(2, 4), (0, 7)}
    assert pairs(top_redundant(W, 100)) == {(2, 4), (0, 7), (0, 1)}  # only 3 negative weights exist


def test_layer_scope_takes_k_per_layer():
    s = top_effective(W, 1, scope="layer")
    assert pairs(s) == {(0, 3), (1, 9), (2, 5)}
    assert s.layer_counts() == {0: 1, 1: 1, 2: 1}


def test_wide_scheme_maps_dense_indices_to_layer_unit():
    scheme = KeyScheme("wide", n_layers=3, d_mlp=100_000)
    w = _weights([(2, 70_000, 0.7), (1, 5, -0.3)], scheme)
    assert pairs(top_effective(w, 5)) == {(2, 70_000)}
    assert pairs(top_redundant(w, 5)) == {(1, 5)}


def test_random_matched_keeps_per_layer_counts_and_is_seeded():
    ref = top_effective(W, 4)
    a = random_matched(ref, d_mlp=16, seed=3)
    b = random_matched(ref, d_mlp=16, seed=3)
    c = random_matched(ref, d_mlp=16, seed=4)
    assert a.layer_counts() == ref.layer_counts()
    assert pairs(a) == pairs(b)
    assert pairs(a) != pairs(c)
    assert np.all(a.unit < 16)
    ex = random_matched(ref, d_mlp=16, seed=3, exclude=ref)
    assert not pairs(ex) & pairs(ref)


def test_random_matched_refuses_more_than_the_layer_holds():
    ref = NeuronSet.from_pairs("big", [(0, u) for u in range(5)])
    with pytest.raises(ConfigError, match="layer 0"):
        random_matched(ref, d_mlp=8, seed=0, exclude=NeuronSet.from_pairs("x", [(0, 7), (0, 6), (0, 5), (0, 4)]))


def test_threshold_sets():
    assert pairs(by_threshold(W, min_weight=0.5)) == {(0, 3), (1, 2), (1, 9), (1, 1)}
    assert pairs(by_threshold(W, max_weight=-0.5)) == {(0, 7), (2, 4)}
    assert pairs(by_threshold(W, min_weight=0.0, max_weight=0.2)) == {(2, 5)}
    with pytest.raises(ConfigError):
        by_threshold(W)


def test_csv_round_trip_with_sidecar(tmp_path):
    s = top_effective(W, 4)
    path = save_set(s, tmp_path / "eff.csv")
    assert path.read_text().splitlines()[0] == "layer,unit,weight"
    assert (tmp_path / "eff.csv.provenance.json").is_file()
    back = load_set(path)
    assert pairs(back) == pairs(s)
    np.testing.assert_allclose(back.weight, s.weight)
    r = random_matched(s, 16, seed=0)
    back_r = load_set(save_set(r, tmp_path / "r.csv"))
    assert np.all(np.isnan(back_r.weight)) and pairs(back_r) == pairs(r)


def test_bad_tables_and_sets_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_set(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="layer and unit"):
        load_set(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("layer,unit,weight\n1,x,0.5\n")
    with pytest.raises(ConfigError, match="malformed"):
        load_set(tmp_path / "bad2.csv")
    with pytest.raises(ConfigError, match="twice"):
        NeuronSet.from_pairs("dup", [(0, 1), (0, 1)])
    with pytest.raises(ConfigError, match="layer 2, unit 4"):
        top_redundant(W, 1).check_fits(n_layers=2, d_mlp=64)


def test_every_neuron_and_empty_sets():
    s = NeuronSet.every_neuron(2, 3)
    assert len(s) == 6 and s.layer_counts() == {0: 3, 1: 3}
    assert len(NeuronSet.empty()) == 0 and NeuronSet.empty().by_layer() == {}
