"""Phase segmentation: the default decoder (the compiled kernel where built) equals scikit-learn +
hmmlearn, the plain path is the oracle's, and the algorithm's smoothing and fallback rules hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle_nex
from nex_interp.core import segment_phases, segment_phases_batch
from nex_interp.core.phases import library_phase_labels, plain_phase_labels, robust_z, smooth_runs


def slope_series(rng: np.random.Generator, k: int) -> np.ndarray:
    n = int(rng.integers(3, 300))
    kind = k % 6
    if kind == 0:
        return rng.lognormal(0, 1, n)
    if kind == 1:
        phase = np.cumsum(rng.random(n) < 0.1) % 2
        return np.where(phase == 1, rng.uniform(5, 10, n), rng.uniform(0, 2, n))
    if kind == 2:
        return rng.integers(0, 4, n).astype(float)
    if kind == 3:
        return np.round(rng.exponential(3, n))
    if kind == 4:
        s = np.zeros(n)
        s[rng.integers(0, n, max(2, n // 3))] = rng.uniform(0, 1e6)
        return s
    return np.concatenate([[rng.uniform(5, 300)], rng.integers(0, 3, n - 1) / 32])


def test_fast_decoder_equals_library_on_many_series():
    rng = np.random.default_rng(2026)
    series = [slope_series(rng, k) for k in range(120)]
    fast = segment_phases_batch(series, 0.95, 1)
    for s, got in zip(series, fast):
        z, ok = robust_z(s)
        want = library_phase_labels(z, 0.95) if ok else z > 0
        np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.03125, 0.0625, 0.5, 1.0, 3.0, 12.5]), min_size=0, max_size=60),
       st.sampled_from([0.7, 0.95]), st.integers(1, 3))
def test_segment_phases_equals_oracle(slopes, rho, min_run):
    want = oracle_nex.phases(slopes, rho, min_run)
    for backend in ("fast", "library"):
        got = segment_phases(np.array(slopes, dtype=np.float64), rho, min_run, backend=backend)
        assert got.dtype == bool and got.shape == (len(slopes),)
        assert got.tolist() == want
    assert plain_phase_labels(np.array(slopes, dtype=np.float64), rho, min_run).tolist() == want


def test_short_responses_are_all_exploit():
    for n in range(3):
        assert not segment_phases(np.arange(n, dtype=float) * 10).any()


def test_zero_mad_uses_sign_of_centred_residual():
    # constant slopes -> all residuals 0 -> MAD 0 -> E where r - median(r) > 0: nowhere
    slopes = np.full(12, 0.25)
    z, ok = robust_z(slopes)
    assert not ok
    np.testing.assert_array_equal(z, 0.0)
    assert not segment_phases(slopes, min_run=1).any()


@pytest.mark.parametrize(
    "labels, min_run, want",
    [
        ("EEXEE", 2, "EEEEE"),  # a short inner run takes the label of the row before it
        ("EXXX", 2, "XXXX"),  # a short leading run takes the label of the row after it
        ("EXEE", 2, "XXEE"),  # leading run first, then the walk goes on from the modified labels
        ("XEXEE", 2, "EEEEE"),
        ("EEXXE", 2, "EEXXX"),  # a short trailing run takes the label before it
        ("EXEXEX", 1, "EXEXEX"),  # min_run 1 changes nothing
        ("E", 2, "E"),
        ("EEXXXEEE", 3, "XXXXXEEE"),
    ],
)
def test_min_run_smoothing(labels, min_run, want):
    arr = np.array([c == "E" for c in labels])
    assert "".join("E" if v else "X" for v in smooth_runs(arr, min_run)) == want
    assert oracle_nex.min_run_smooth([c == "E" for c in labels], min_run) == [c == "E" for c in want]


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        segment_phases(np.ones(5), backend="gpu")


def test_seed_draws_are_those_of_randomstate_0():
    from nex_interp.core.params import SEED_DRAWS

    rs = np.random.RandomState(0)
    first = rs.random_sample()
    trials = rs.random_sample(2)
    assert SEED_DRAWS == (first, trials[0], trials[1])
