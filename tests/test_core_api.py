"""The core's public API: params, subsets, diagnostics, scoring edge cases, errors, light imports."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import oracle_nex
from nex_interp.core import (CycleDiagnostics, NexParams, ResponseDiagnostics, diagnose_response, kernel,
                             learn_weights, log_gap, nex_score, score_responses, segment_phases)
from nex_interp.errors import ConfigError, NexError, WeightsError
from nex_interp.keys import KeyScheme
from nex_interp.neuron_weights import NeuronWeights
from synth_cache import build_cache, random_cache


@pytest.fixture(scope="module")
def cache():
    return random_cache(5, 6, 40, 90, dirty=0.02)


def test_params_roundtrip_and_validation():
    p = NexParams(rho=0.9, min_run=3, max_responses=10)
    assert NexParams.from_dict(p.to_dict()) == p
    for bad in ({"rho": 1.0}, {"rho": 0.0}, {"min_run": 0}, {"max_responses": 0}, {"min_run": 1.5}):
        with pytest.raises(ConfigError):
            NexParams(**bad)
    assert issubclass(ConfigError, NexError)


def test_responses_subset_and_max_responses(cache):
    subset = learn_weights(cache, responses=np.array([1, 3]))
    want = {k: v for k, v in oracle_nex.learn(cache, responses=[1, 3]).items() if v != 0}
    layer, unit = subset.layer_unit()
    got = {(int(a), int(b)): float(w) for a, b, w in zip(layer, unit, subset.weight) if w != 0}
    assert got.keys() == want.keys()
    first2 = learn_weights(cache, NexParams(max_responses=2))
    np.testing.assert_array_equal(first2.index, learn_weights(cache, responses=np.array([0, 1])).index)
    assert first2.meta["n_responses_requested"] == 2
    with pytest.raises(ConfigError, match="out of range"):
        learn_weights(cache, responses=np.array([0, 99]))


def test_weights_are_bounded_and_masses_consistent(cache):
    w = learn_weights(cache)
    assert len(w) > 0 and np.all(np.abs(w.weight) <= 1)
    assert np.all(np.diff(w.index) > 0)
    assert np.all((w.effective_mass > 0) | (w.redundant_mass > 0))
    only_eff = (w.effective_mass > 0) & (w.redundant_mass == 0)
    assert np.all(w.weight[only_eff] > 0)
    only_red = (w.redundant_mass > 0) & (w.effective_mass == 0)
    assert np.all(w.weight[only_red] < 0)


def test_diagnostics_agree_with_learning(cache):
    d = diagnose_response(cache, 0)
    assert isinstance(d, ResponseDiagnostics) and d.skipped_reason is None
    n = len(d.kept_rows)
    assert d.slopes.shape == d.tokens.shape == d.n_new.shape == d.labels.shape == (n,)
    np.testing.assert_allclose(d.slopes, d.n_new / d.tokens)
    np.testing.assert_array_equal(d.labels, segment_phases(d.slopes))
    assert d.n_e_segments == int(d.labels[0]) + int(np.sum(d.labels[1:] & ~d.labels[:-1]))
    for cy in d.cycles:
        assert isinstance(cy, CycleDiagnostics)
        assert d.labels[cy.e_rows].all() and not d.labels[cy.x_rows].any()
        assert cy.x_rows[0] == cy.e_rows[-1] + 1
        assert cy.kind in ("effective", "redundant", "skipped")
        assert 0 <= cy.consolidation <= 1
        if cy.kind == "effective":
            assert cy.scale == pytest.approx(cy.progress * cy.consolidation)
        elif cy.kind == "redundant":
            assert cy.scale == pytest.approx(abs(cy.progress))
    # against the loop-by-loop oracle: the same labels, cycles, kinds, scales and credit
    labels, cycles = oracle_nex.response_detail(cache, 0, 0.95, 2)
    assert d.labels.tolist() == labels
    assert [(c.e_rows.tolist(), c.x_rows.tolist(), c.kind) for c in d.cycles] == \
        [(c["e_rows"], c["x_rows"], c["kind"]) for c in cycles]
    np.testing.assert_allclose([c.scale for c in d.cycles], [c["scale"] for c in cycles], rtol=1e-9)
    assert {"effective", "redundant"} <= {c.kind for c in d.cycles}  # the fixture's response 0 has both
    # what the response adds is exactly what learning on it alone accumulates
    w = learn_weights(cache, responses=np.array([0]))
    np.testing.assert_array_equal(d.credit_index, w.index)
    np.testing.assert_array_equal(d.effective, w.effective_mass)
    np.testing.assert_array_equal(d.redundant, w.redundant_mass)


def test_diagnostics_of_a_skipped_response():
    one = np.ones(1, np.float16)
    c = build_cache([[(np.array([1], np.uint32), one, 32), (np.array([2], np.uint32), one, 32)]])
    d = diagnose_response(c, 0)
    assert d.skipped_reason is not None and "3 rows" in d.skipped_reason
    assert d.cycles == [] and d.n_e_segments == 0
    with pytest.raises(ConfigError):
        diagnose_response(c, 5)


def test_gmf_definition_on_a_hand_made_case():
    k = np.array([1, 2, 3, 5], np.uint32)
    m = np.array([1.0, 2.0, 3.0, 4.0], np.float16)
    c = build_cache([[(k, m, 32)]] * 3 + [[(np.array([9], np.uint32), np.zeros(1, np.float16), 32)]])
    w = NeuronWeights(np.array([1, 2, 3]), np.array([0.5, -1.0, 0.0], np.float32), np.zeros(3, np.float32),
                      np.zeros(3, np.float32))
    g = score_responses(c, w)
    assert g[0] == pytest.approx((1 * 0.5) / (1 * 0.5 + 2 * 1.0))
    assert math.isnan(g[3])  # all-zero base mass
    zero = NeuronWeights(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))
    assert score_responses(c, zero)[0] == 0.0  # denominator 0 -> 0


def test_scheme_mismatch_is_a_one_line_error(cache):
    w = NeuronWeights(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                      KeyScheme("wide", 80, 70000))
    with pytest.raises(WeightsError, match="key scheme") as e:
        score_responses(cache, w)
    assert "\n" not in str(e.value)


def test_nex_score_and_log_gap():
    assert nex_score(np.array([0.5, np.nan, 1.0])) == pytest.approx(0.75)
    assert math.isnan(nex_score(np.array([np.nan])))
    assert math.isnan(nex_score(np.array([])))
    assert log_gap(0.99) == pytest.approx(2.0)
    assert log_gap(1.0) == pytest.approx(12.0)
    assert log_gap(1.5) == pytest.approx(12.0)
    assert log_gap(-0.2) == 0.0
    assert math.isnan(log_gap(float("nan")))


@pytest.mark.skipif(kernel.load() is None, reason="the compiled kernels were not built")
@pytest.mark.parametrize("workers", [1, 2])
def test_learning_is_deterministic_and_chunking_invariant(cache, monkeypatch, workers):
    """The compiled path works in chunks of responses: cut into many small chunks (one response each
    here), it learns the same bits as in one chunk."""
    import nex_interp.core.compiled as compiled

    cuts = []
    real = compiled._chunks
    monkeypatch.setattr(compiled, "_chunks", lambda *a, **k: cuts.append(real(*a, **k)) or cuts[-1])
    a = learn_weights(cache, workers=workers)
    monkeypatch.setattr(compiled, "COMPILED_CHUNK_ENTRIES", 1)
    b = learn_weights(cache, workers=workers)
    assert a.meta["kernel"] == b.meta["kernel"] == "compiled"
    assert [len(c) for c in cuts] == [1, cache.n_responses]  # one chunk, then one per response
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.effective_mass, b.effective_mass)
    np.testing.assert_array_equal(a.redundant_mass, b.redundant_mass)


def test_importing_the_core_pulls_no_heavy_libraries():
    code = ("import sys, nex_interp.core as c; "
            "bad = [m for m in ('torch', 'transformers', 'sklearn', 'hmmlearn', 'jaxtyping') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_first_seen_table_survives_stamp_wraparound():
    from nex_interp.core.rows import FirstSeen

    seen = FirstSeen(16)
    idx = np.array([3, 5, 3, 7, 5, 9], dtype=np.intp)
    counts = np.array([2, 2, 2])
    want = np.array([0, 0, 0, 1, 0, 2], dtype=np.int32)
    rows, first = seen.first_rows(idx, counts)
    np.testing.assert_array_equal(rows, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(first, want)
    seen._base = np.iinfo(np.int32).min + 3  # the next response's stamps would overflow: the table is refilled
    np.testing.assert_array_equal(seen.first_rows(idx[::-1].copy(), counts)[1], [0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(seen.first_rows(idx, counts)[1], want)  # stale stamps never leak


def test_progress_bar_does_not_change_results(cache, capsys):
    a = learn_weights(cache, progress=True)
    assert "nex train" in capsys.readouterr().err
    b = learn_weights(cache)
    np.testing.assert_array_equal(a.weight, b.weight)
