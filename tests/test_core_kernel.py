"""The compiled kernels (nex_interp/core/_kernels.c) compute what the plain path and the oracle compute,
in one thread or two, and refuse malformed arrays with an exception instead of reading out of bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nex_interp.core import NexParams, kernel, learn_weights, score_responses
from nex_interp.core.params import SEED_DRAWS
from nex_interp.core.phases import library_phase_labels, robust_z
from nex_interp.keys import KeyScheme
from synth_cache import build_cache, planted_rows, random_cache
from test_core_oracle import SCHEMES, assert_matches_oracle
from test_core_phases import slope_series

K = kernel.load()
pytestmark = pytest.mark.skipif(K is None, reason="the compiled kernels were not built")


def learn_with(choice: str, monkeypatch, cache, *args, **kw):
    monkeypatch.setenv("NEX_KERNEL", choice)
    w = learn_weights(cache, *args, **kw)
    assert w.meta["kernel"] == choice
    return w, score_responses(cache, w)


def assert_same(a, b, exact: bool = False) -> None:
    (wa, ga), (wb, gb) = a, b
    np.testing.assert_array_equal(wa.index, wb.index)
    for k in ("n_responses_used", "n_responses_skipped", "n_effective_cycles", "n_redundant_cycles"):
        assert wa.meta[k] == wb.meta[k], k
    if exact:
        np.testing.assert_array_equal(wa.weight, wb.weight)
        np.testing.assert_array_equal(wa.effective_mass, wb.effective_mass)
        np.testing.assert_array_equal(wa.redundant_mass, wb.redundant_mass)
        np.testing.assert_array_equal(ga, gb)
    else:  # the two paths sum float64 reuse in another order: last bits may differ
        np.testing.assert_allclose(wa.weight, wb.weight, atol=1e-6)
        np.testing.assert_allclose(wa.effective_mass, wb.effective_mass, rtol=1e-6)
        np.testing.assert_allclose(wa.redundant_mass, wb.redundant_mass, rtol=1e-6)
        np.testing.assert_allclose(ga, gb, atol=1e-9, equal_nan=True)


def test_the_kernels_are_built_and_used_by_default(monkeypatch):
    """CI builds the extension: a missing compiler must not silently cost the speed."""
    monkeypatch.delenv("NEX_KERNEL", raising=False)
    assert kernel.active() == "compiled"
    for plain in ("plain", "numpy"):  # "numpy": the plain path's former name, still understood
        monkeypatch.setenv("NEX_KERNEL", plain)
        assert kernel.active() == "plain" and kernel.load() is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), n_responses=st.integers(1, 6), rows_lo=st.integers(0, 60),
       dirty=st.sampled_from([0.0, 0.05, 0.3]), universe=st.sampled_from([20, 400, 3000]),
       scheme=st.sampled_from(sorted(SCHEMES)), min_run=st.integers(1, 3))
def test_compiled_equals_plain_on_generated_caches(monkeypatch, seed, n_responses, rows_lo, dirty, universe, scheme,
                                                   min_run):
    cache = random_cache(seed, n_responses, rows_lo, rows_lo + 40, SCHEMES[scheme], dirty=dirty, universe=universe)
    params = NexParams(min_run=min_run)
    assert_same(learn_with("compiled", monkeypatch, cache, params), learn_with("plain", monkeypatch, cache, params))


def test_compiled_equals_plain_on_the_reference_example(monkeypatch):
    from nex_interp.cache.reader import open_cache
    from test_core_fast_paths import REFERENCE_CACHE

    cache = open_cache(REFERENCE_CACHE)
    assert_same(learn_with("compiled", monkeypatch, cache), learn_with("plain", monkeypatch, cache), exact=True)


def test_compiled_path_equals_the_oracle_with_dirty_wide_caches_and_other_params(monkeypatch):
    monkeypatch.setenv("NEX_KERNEL", "compiled")
    assert_matches_oracle(random_cache(5, 5, 20, 90, SCHEMES["wide"], dirty=0.1))
    assert_matches_oracle(random_cache(6, 5, 20, 90, dirty=0.1), NexParams(rho=0.8, min_run=3))


@pytest.mark.parametrize("path", ["compiled", "plain"])
def test_a_key_repeated_in_a_row_is_one_neuron_as_in_the_oracle(monkeypatch, path):
    """Out of format (the capture writer never repeats a key), but both paths agree with the
    algorithm's reading: the row introduces the neuron once, with the masses of both entries."""
    monkeypatch.setenv("NEX_KERNEL", path)
    rng = np.random.default_rng(8)
    rows = planted_rows(rng, 40, KeyScheme.ref22())
    dup = []
    for k, m, t in rows:
        dup.append((np.concatenate([k, k[:2]]), np.concatenate([m, m[:2]]), t))
    assert_matches_oracle(build_cache([dup, rows]))


@pytest.mark.parametrize("workers", [1, 2])
def test_one_or_two_threads_learn_the_same_bits(monkeypatch, workers):
    monkeypatch.setattr("nex_interp.core.compiled.COMPILED_CHUNK_ENTRIES", 3000)  # many chunks: the thread works
    monkeypatch.setenv("NEX_WORKERS", str(workers))
    cache = random_cache(21, 30, 20, 80, dirty=0.02)
    one = learn_with("compiled", monkeypatch, cache, workers=1)
    other = learn_with("compiled", monkeypatch, cache, workers=workers)
    assert_same(one, other, exact=True)
    subset = np.array([17, 3, 29, 0, 8])
    assert_same(learn_with("compiled", monkeypatch, cache, responses=subset, workers=1),
                learn_with("compiled", monkeypatch, cache, responses=subset, workers=workers), exact=True)


def test_responses_too_long_for_the_kernels_take_the_plain_path(monkeypatch):
    cache = random_cache(4, 3, 30, 60)
    monkeypatch.setattr(kernel, "MAX_ROWS", 20)
    monkeypatch.delenv("NEX_KERNEL", raising=False)
    w = learn_weights(cache)
    assert w.meta["kernel"] == "plain"
    monkeypatch.undo()
    assert_same((w, score_responses(cache, w)), learn_with("compiled", monkeypatch, cache))


def test_compiled_phases_equal_the_libraries():
    rng = np.random.default_rng(5)
    series = [slope_series(rng, i) for i in range(240)]
    lengths = np.array([len(s) for s in series])
    labels, status, z = kernel.phases(K, np.concatenate(series), lengths, 0.95, 1, SEED_DRAWS)
    assert status.mean() < 0.05  # the kernel decides nearly every series itself
    starts = np.cumsum(lengths) - lengths
    for i, s in enumerate(series):
        zz, ok = robust_z(s)
        np.testing.assert_allclose(z[starts[i]:starts[i] + lengths[i]], zz, rtol=1e-9, atol=1e-9)
        if status[i]:
            continue
        want = library_phase_labels(zz, 0.95) if ok else zz > 0
        np.testing.assert_array_equal(labels[starts[i]:starts[i] + lengths[i]].astype(bool), want)


def test_ties_are_left_to_the_libraries():
    """Series whose decisions a last-bit difference could flip are flagged, not guessed; the others are
    decided as the libraries do."""
    zs = [
        np.array([1.0, 0.0, -1.0, -1.0, -2.0, -2.0, -2.0, -2.0]),  # k-means ties on integer data
        np.array([0.0, 2.0, -1.0, 2.0, 1.0, -2.0]),
        np.array([0.0, -1.0, 1.0, -1.0, 0.0, -2.0]),  # a Viterbi tie
        np.array([1e9, 1e9 + 1, 1e9 + 2, -1e9, 5.0, 1e9 + 3]),  # variances at the edge of float64
        np.array([0.3, -1.2, 2.5, 0.1, -0.4, 1.9, 2.2, -0.8]),  # an ordinary series
    ]
    lengths = np.array([len(z) for z in zs])
    labels, status, _ = kernel.phases(K, np.concatenate(zs), lengths, 0.95, 1, SEED_DRAWS, given_z=True)
    assert status.tolist() == [1, 1, 1, 1, 0]
    np.testing.assert_array_equal(labels[-8:].astype(bool), library_phase_labels(zs[-1], 0.95))
    # a constant series has no usable MAD: E = z > 0 (all X), decided without the libraries
    lab, status, _ = kernel.phases(K, np.full(9, 2.0), np.array([9]), 0.95, 2, SEED_DRAWS)
    assert status.tolist() == [0] and not lab.any()


def test_malformed_arrays_raise_instead_of_reading_out_of_bounds():
    cache = random_cache(2, 3, 10, 20)
    firsts = kernel.FirstRows(cache.scheme.n_neurons)
    with pytest.raises(IndexError, match="out of range"):  # the C function's own check
        K.scan_rows(*kernel._common(cache, np.array([0, 7])), firsts.table, firsts.base, np.zeros(0, np.uint8),
                    np.zeros(0, np.int32), np.zeros(2, np.int64), np.zeros(0, np.uint16))
    bad_ptr = cache.row_ptr.copy()
    bad_ptr[5] = bad_ptr[-1] + 100  # past the end of the entries
    import dataclasses

    with pytest.raises(ValueError, match="out of bounds"):
        kernel.scan_rows(K, dataclasses.replace(cache, row_ptr=bad_ptr), np.arange(3), firsts)
    with pytest.raises(ValueError, match="too small"):
        kernel.scan_rows(K, cache, np.arange(3), kernel.FirstRows(10))
    scan = kernel.scan_rows(K, cache, np.arange(3), firsts)
    acc = np.zeros(cache.scheme.n_neurons, np.float32)
    bound = np.full(2, -1, np.int64)
    with pytest.raises(ValueError, match="labels"):
        kernel.credit(K, cache, np.arange(3), scan, np.zeros(2, np.uint8), np.zeros(2), acc, acc.copy(), bound)
    with pytest.raises(ValueError, match="float32"):
        kernel.credit(K, cache, np.arange(3), scan, np.zeros(0, np.uint8), np.zeros(0), acc.astype(np.float64), acc,
                      bound)
    with pytest.raises(ValueError, match="lengths"):
        kernel.credit(K, cache, np.arange(3), scan, np.zeros(0, np.uint8), np.zeros(0), acc[:5], acc.copy(), bound)
    with pytest.raises(ValueError, match="base pointers"):
        bad = dataclasses.replace(cache, base_ptr=cache.base_ptr[::-1].copy())
        kernel.gmf(K, bad, np.zeros(cache.scheme.n_neurons, np.float32), 0, cache.n_responses)


def test_a_stale_build_is_refused_for_the_plain_path(monkeypatch):
    """An extension left from another version of _kernels.c (a pull without a rebuild) is not called."""
    monkeypatch.delenv("NEX_KERNEL", raising=False)
    monkeypatch.setattr(kernel, "KERNEL_ABI", kernel.KERNEL_ABI + 1)
    monkeypatch.setattr(kernel, "_warned", False)
    with pytest.warns(RuntimeWarning, match="rebuild"):
        assert kernel.load() is None
    assert learn_weights(random_cache(1, 2, 10, 20)).meta["kernel"] == "plain"


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_credited_neurons_are_every_nonzero_accumulator(scheme):
    """The bounds kept while crediting cover every credited neuron (reading only inside them loses none)."""
    s = SCHEMES[scheme]
    rng = np.random.default_rng(3)
    e = np.zeros(s.n_neurons, np.float32)
    r = np.zeros(s.n_neurons, np.float32)
    idx = np.unique(rng.choice(min(s.n_neurons, 40 << 16), 500, replace=False))
    if scheme == "ref22":
        idx = idx[(idx & 0xFFFF) < 9000]
    e[idx[::2]] = 1.5
    r[idx[1::3]] = 0.25
    nz = np.flatnonzero((e > 0) | (r > 0))
    bound = np.array([0, nz.max()]) if scheme == "wide" else np.array([(nz >> 16).max(), (nz & 0xFFFF).max()])
    index, ge, gr = kernel.credited(e, r, bound, scheme == "wide")
    np.testing.assert_array_equal(index, nz)
    np.testing.assert_array_equal(ge, e[nz])
    np.testing.assert_array_equal(gr, r[nz])
    empty = kernel.credited(e, r, np.array([-1, -1]), scheme == "wide")
    assert len(empty[0]) == 0
