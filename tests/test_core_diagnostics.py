"""diagnose_response reports what learning computed: on each path its labels, cycles and per-response
credit are those learning adds (summed over responses they give the weights' masses bit for bit), and
they equal the loop-by-loop oracle's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle_nex
from nex_interp.core import NexParams, diagnose_response, kernel, learn_weights
from synth_cache import random_cache
from test_core_oracle import SCHEMES, core_kernel

PATHS = ("compiled", "plain")


def _neuron(scheme, index: int) -> tuple[int, int]:
    if scheme.name == "ref22":
        return index >> 16, index & 0xFFFF
    return index // scheme.d_mlp, index % scheme.d_mlp


def assert_diagnostics_are_learning(cache, params: NexParams = NexParams()) -> None:
    """Per response: labels, cycles and credit equal the oracle's; summed in response order, the
    credit the diagnostics report is exactly what learn_weights accumulated."""
    n = cache.scheme.n_neurons
    eff, red = np.zeros(n, np.float32), np.zeros(n, np.float32)
    path = kernel.active()
    for i in range(cache.n_responses):
        d = diagnose_response(cache, i, params)
        assert d.kernel == path
        want = oracle_nex.response_detail(cache, i, params.rho, params.min_run)
        if want is None:
            assert d.skipped_reason is not None and d.cycles == [] and len(d.credit_index) == 0
            continue
        labels, cycles = want
        assert d.labels.tolist() == labels
        assert len(d.cycles) == len(cycles)
        for got, c in zip(d.cycles, cycles):
            assert got.e_rows.tolist() == c["e_rows"] and got.x_rows.tolist() == c["x_rows"]
            assert got.kind == c["kind"]
            assert got.scale == pytest.approx(c["scale"], rel=1e-9, abs=1e-15)
            if c["reuse"] is None:
                assert np.isnan(got.reuse)
            else:
                assert got.reuse == pytest.approx(c["reuse"], rel=1e-12)
        credit = {}
        for c in cycles:
            for neuron, v in c["credit"].items():
                if v == 0:  # a sanitised (zero) mass: nothing to accumulate
                    continue
                credit[(c["kind"], neuron)] = credit.get((c["kind"], neuron), 0.0) + v
        got = {}
        for idx, e, r in zip(d.credit_index.tolist(), d.effective.tolist(), d.redundant.tolist()):
            for kind, v in (("effective", e), ("redundant", r)):
                if v:
                    got[(kind, _neuron(cache.scheme, idx))] = v
        assert got.keys() == credit.keys()
        for key, v in credit.items():
            assert got[key] == pytest.approx(v, rel=1e-6)
        eff[d.credit_index] += d.effective
        red[d.credit_index] += d.redundant
    w = learn_weights(cache, params)
    assert w.meta["kernel"] == path
    index = np.flatnonzero((eff > 0) | (red > 0))
    np.testing.assert_array_equal(w.index, index)
    np.testing.assert_array_equal(w.effective_mass, eff[index])
    np.testing.assert_array_equal(w.redundant_mass, red[index])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_responses=st.integers(1, 4), rows_lo=st.integers(0, 60),
       dirty=st.sampled_from([0.0, 0.05, 0.2]), scheme=st.sampled_from(sorted(SCHEMES)),
       min_run=st.integers(1, 3))
@pytest.mark.parametrize("path", PATHS)
def test_diagnostics_report_what_learning_computed(path, seed, n_responses, rows_lo, dirty, scheme, min_run):
    cache = random_cache(seed, n_responses, rows_lo, rows_lo + 60, SCHEMES[scheme], dirty=dirty, universe=600)
    with core_kernel(path):
        assert_diagnostics_are_learning(cache, NexParams(min_run=min_run))


@pytest.mark.parametrize("path", PATHS)
def test_diagnostics_on_a_cache_with_both_kinds_of_credit(path):
    cache = random_cache(11, 4, 40, 80, dirty=0.05)
    with core_kernel(path):
        d = [diagnose_response(cache, i) for i in range(cache.n_responses)]
        kinds = {c.kind for r in d for c in r.cycles}
        assert {"effective", "redundant"} <= kinds
        assert_diagnostics_are_learning(cache)


@pytest.mark.skipif(kernel.load() is None, reason="the compiled kernels were not built")
def test_compiled_and_plain_diagnostics_agree():
    cache = random_cache(23, 5, 50, 120, dirty=0.05)
    for i in range(cache.n_responses):
        with core_kernel("compiled"):
            a = diagnose_response(cache, i)
        with core_kernel("plain"):
            b = diagnose_response(cache, i)
        assert (a.kernel, b.kernel) == ("compiled", "plain")
        np.testing.assert_array_equal(a.labels, b.labels)
        assert [c.kind for c in a.cycles] == [c.kind for c in b.cycles]
        np.testing.assert_allclose([c.scale for c in a.cycles], [c.scale for c in b.cycles], rtol=1e-9)
        np.testing.assert_array_equal(a.credit_index, b.credit_index)
        np.testing.assert_allclose(a.effective, b.effective, rtol=1e-6)


@pytest.mark.skipif(kernel.load() is None, reason="the compiled kernels were not built")
def test_a_disagreement_with_the_kernels_is_an_error(monkeypatch):
    """If the compiled pass credited other cycles than the diagnostics read, they say so, loudly."""
    import nex_interp.core.compiled as compiled

    cache = random_cache(11, 1, 60, 80)
    real = compiled.compiled_response

    def off_by_one(*args):
        scan, slopes, labels, (n_eff, n_red), credit = real(*args)
        return scan, slopes, labels, (n_eff + 1, n_red), credit

    monkeypatch.setenv("NEX_KERNEL", "compiled")
    monkeypatch.setattr(compiled, "compiled_response", off_by_one)
    with pytest.raises(RuntimeError, match="credited cycles differ"):
        diagnose_response(cache, 0)
