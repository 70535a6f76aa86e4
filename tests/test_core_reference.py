"""The core reproduces the NEX reference implementation's outputs on its example cache (EXPECTED.json),
with the compiled kernels and on the plain path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nex_interp.core import NexParams, learn_weights, log_gap, nex_score, score_responses
from nex_interp.neuron_weights import NeuronWeights
from synth_cache import read_reference_layout

REF = Path(__file__).parent / "data" / "reference"
EXPECTED = json.loads((REF / "EXPECTED.json").read_text())
TOL = EXPECTED["tolerance"]


@pytest.fixture(scope="module")
def cache():
    return read_reference_layout(REF / "example_cache", mmap=True)


@pytest.fixture(scope="module", params=["compiled", "plain"], autouse=True)
def path(request):
    """Every test runs on both implementations of the core ($NEX_KERNEL)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NEX_KERNEL", request.param)
    yield request.param
    mp.undo()


@pytest.fixture(scope="module")
def self_weights(cache, path):
    w = learn_weights(cache, NexParams(rho=0.95, min_run=2))
    assert w.meta["kernel"] == path
    return w


def test_cache_shape_matches_expected(cache):
    exp = EXPECTED["cache"]
    assert cache.n_responses == exp["responses"]
    assert cache.n_rows == exp["rows"]
    assert cache.n_entries == exp["entries"]
    assert len(cache.base_keys) == exp["base_entries"]
    assert int(cache.token_row_ptr[-1] - cache.token_row_ptr[0]) == exp["tokens"]


def test_self_calibrated_weight_counts(self_weights):
    exp = EXPECTED["self_calibrated"]
    w = self_weights.weight
    assert np.count_nonzero(w) == exp["nonzero_weights"]
    assert np.count_nonzero(w > 0) == exp["positive_weights"]
    assert np.count_nonzero(w < 0) == exp["negative_weights"]
    assert float(w.sum()) == pytest.approx(exp["weight_sum"], abs=TOL["weight_abs"] * len(w))
    assert np.count_nonzero(np.abs(w) >= 1 - TOL["weight_abs"]) == exp["saturated_weights"]
    assert np.all(np.abs(w) <= 1)


def test_self_calibrated_signs_by_layer(self_weights):
    exp = EXPECTED["self_calibrated"]
    layer, _ = self_weights.layer_unit()
    for sign, key in ((1, "positive_by_layer"), (-1, "negative_by_layer")):
        got = np.bincount(layer[np.sign(self_weights.weight) == sign], minlength=64)
        want = np.zeros(64, dtype=np.int64)
        for lay, cnt in exp[key].items():
            want[int(lay)] = cnt
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_self_calibrated_gmf_and_score(cache, self_weights):
    exp = EXPECTED["self_calibrated"]
    gmf = score_responses(cache, self_weights)
    np.testing.assert_allclose(gmf, exp["response_gmf"], atol=TOL["gmf_abs"])
    assert nex_score(gmf) == pytest.approx(exp["nex_score"], abs=TOL["gmf_abs"])


def test_archived_weights_gmf_score_and_log_gap(cache):
    exp = EXPECTED["archived_weights"]
    table = np.load(REF / "example_weights.npz")["weights"]
    assert table.shape == (1 << 22,)
    weights = NeuronWeights.from_dense(table)
    assert len(weights) == exp["nonzero_weights"]
    gmf = score_responses(cache, weights)
    np.testing.assert_allclose(gmf, exp["response_gmf"], atol=TOL["gmf_abs"])
    score = nex_score(gmf)
    assert score == pytest.approx(exp["nex_score"], abs=TOL["gmf_abs"])
    assert log_gap(score) == pytest.approx(exp["log_gap"], abs=1e-3)


def test_weights_meta_records_params_and_cache(cache, self_weights):
    meta = self_weights.meta
    assert meta["params"] == {"rho": 0.95, "min_run": 2, "max_responses": None}
    assert meta["cache"]["n_entries"] == EXPECTED["cache"]["entries"]
    assert meta["n_responses_used"] == 1
    assert meta["n_effective_cycles"] + meta["n_redundant_cycles"] > 0
