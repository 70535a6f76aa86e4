"""Weights files: our sparse .npz round trip, the reference's dense .npz, and garbage refused."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from cache_factory import EXPECTED, REFERENCE_WEIGHTS
from nex_interp.errors import WeightsError
from nex_interp.keys import KeyScheme
from nex_interp.neuron_weights import NeuronWeights
from nex_interp.weights_io import load_weights, save_weights


def _weights(scheme=None, n=50, seed=0):
    scheme = scheme or KeyScheme.ref22()
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(min(scheme.n_neurons, 10**6), n, replace=False)).astype(np.int64)
    eff = rng.gamma(1, 1, n).astype(np.float32)
    red = rng.gamma(1, 1, n).astype(np.float32)
    w = np.tanh(np.log((eff + 1e-6) / (red + 1e-6))).astype(np.float32)
    return NeuronWeights(index, w, eff, red, scheme, {"params": {"rho": 0.9}, "cache": "x"})


@pytest.mark.parametrize("scheme", [KeyScheme.ref22(), KeyScheme("wide", 96, 70000)], ids=["ref22", "wide"])
def test_round_trip(tmp_path, scheme):
    w = _weights(scheme)
    out = save_weights(w, tmp_path / "w.npz")
    assert out == tmp_path / "w.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz", "w.npz.provenance.json"]
    prov = json.loads((tmp_path / "w.npz.provenance.json").read_text())
    assert prov["package"] == "nex-interp" and prov["config"]["params"] == {"rho": 0.9}
    back = load_weights(out)
    assert back.scheme == scheme and back.meta == w.meta
    for name in ("index", "weight", "effective_mass", "redundant_mass"):
        np.testing.assert_array_equal(getattr(back, name), getattr(w, name))


def test_saves_to_exact_name_without_suffix(tmp_path):
    save_weights(_weights(), tmp_path / "weights")
    assert (tmp_path / "weights").is_file() and not (tmp_path / "weights.npz").exists()
    assert len(load_weights(tmp_path / "weights")) == 50


def test_reference_dense_weights():
    w = load_weights(REFERENCE_WEIGHTS)
    expected = json.loads(EXPECTED.read_text())["archived_weights"]
    assert len(w) == expected["nonzero_weights"]
    assert w.scheme == KeyScheme.ref22()
    dense = np.load(REFERENCE_WEIGHTS)["weights"]
    np.testing.assert_array_equal(w.dense(), dense)
    assert np.all(w.effective_mass == 0) and np.all(w.redundant_mass == 0)


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


GARBAGE = [
    ("random bytes", lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)), r"is not a readable \.npz"),
    ("text", lambda p: p.write_text("weights: 1, 2, 3\n"), r"is not a readable \.npz"),
    ("empty", lambda p: p.write_bytes(b""), r"is not a readable \.npz"),
    ("npy", lambda p: np.save(open(p, "wb"), np.zeros(3)), r"single \.npy array"),
    ("wrong arrays", lambda p: _npz(p, foo=np.zeros(3)), r"lacks the arrays .* \(it has \['foo'\]\)"),
    ("short dense", lambda p: _npz(p, weights=np.zeros(100, np.float32)), r"'weights' array of shape \(100,\)"),
    ("int dense", lambda p: _npz(p, weights=np.zeros(2**22, np.int8)), r"dtype int8"),
    ("nan dense", lambda p: _npz(p, weights=np.full(2**22, np.nan, np.float32)), r"non-finite"),
    ("broken zip", lambda p: p.write_bytes(b"PK\x03\x04" + b"\0" * 60), r"is not a readable \.npz|is corrupt"),
]


@pytest.mark.parametrize("name, make, pattern", GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_is_a_one_line_weights_error(tmp_path, name, make, pattern):
    path = tmp_path / "w.npz"
    make(path)
    with pytest.raises(WeightsError, match=pattern) as err:
        load_weights(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def _tamper(tmp_path, **changes):
    path = save_weights(_weights(), tmp_path / "w.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    return _npz(tmp_path / "t.npz", **arrays)


@pytest.mark.parametrize(
    "changes, pattern",
    [
        ({"weight": np.full(50, 2.0, np.float32)}, r"outside \[-1, 1\]"),
        ({"index": np.arange(50)[::-1].copy()}, r"not strictly increasing"),
        ({"index": np.arange(50) + 2**22}, r"outside the ref22 table"),
        ({"effective_mass": np.zeros(3, np.float32)}, r"\(3,\) effective_mass values for 50"),
        ({"scheme": np.array("{bad")}, r"unreadable scheme"),
        ({"format": np.array("something-else/1")}, r"format marker"),
        ({"format": np.array("nex-neuron-weights/9")}, r"format version 9, newer"),
    ],
    ids=["range", "order", "index range", "lengths", "scheme", "marker", "version"],
)
def test_tampered_weights_refused(tmp_path, changes, pattern):
    with pytest.raises(WeightsError, match=pattern):
        load_weights(_tamper(tmp_path, **changes))


def test_missing_and_directory(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(tmp_path / "nope.npz")
    with pytest.raises(WeightsError, match="is not a file"):
        load_weights(tmp_path)
    with pytest.raises(WeightsError, match="is a directory"):
        save_weights(_weights(), tmp_path)


def test_failed_save_leaves_nothing(tmp_path):
    bad = NeuronWeights(np.arange(3), np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32), meta={"x": object()})
    with pytest.raises(WeightsError, match="not JSON-serialisable"):
        save_weights(bad, tmp_path / "w.npz")
    assert list(tmp_path.iterdir()) == []
    assert zipfile.is_zipfile(save_weights(_weights(), tmp_path / "ok.npz"))
