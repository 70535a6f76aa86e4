"""A plain, loop-by-loop implementation of docs/algorithm.md, used as the oracle for the core.

Neurons are ``(layer, unit)`` tuples in dicts; every step is a Python loop over rows and entries.
The Gaussian mixture and HMM are the spec's library calls (scikit-learn, hmmlearn).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

EPS = 1e-6


def decode_key(key: int, scheme) -> tuple[str, tuple[int, int] | None]:
    """('drop' | 'bad' | 'ok', neuron) for one packed key."""
    if scheme.name == "ref22":
        layer, unit = key >> 16, key & 0xFFFF
        if layer == 255:
            return "drop", None
        if key >= 1 << 22:
            return "bad", None
        return "ok", (layer, unit)
    layer, unit = key >> 32, key & 0xFFFFFFFF
    if layer == 255:
        return "drop", None
    if layer >= scheme.n_layers or unit >= scheme.d_mlp:
        return "bad", None
    return "ok", (layer, unit)


def sanitise(keys, masses, scheme) -> dict | None:
    """{neuron: mass} of a row (or base vector), or None if it counts as empty."""
    out: dict = {}
    for key, m in zip(keys, masses):
        status, neuron = decode_key(int(key), scheme)
        if status == "drop":
            continue
        if status == "bad":
            return None
        m = float(m)
        if not math.isfinite(m) or m < 0:
            m = 0.0
        out[neuron] = out.get(neuron, 0.0) + m
    if not out:
        return None
    if sum(out.values()) <= 0:
        return None
    return out


def response_rows(cache, i: int) -> list[tuple[dict, int]]:
    rows = []
    for j in range(int(cache.sample_row_ptr[i]), int(cache.sample_row_ptr[i + 1])):
        a, b = int(cache.row_ptr[j]), int(cache.row_ptr[j + 1])
        tokens = int(cache.token_row_ptr[j + 1]) - int(cache.token_row_ptr[j])
        rows.append((sanitise(cache.keys[a:b], cache.mass[a:b], cache.scheme), tokens))
    return rows


def residual_z(slopes: list[float]) -> tuple[np.ndarray, bool]:
    y = np.array([math.log1p(max(s, 0.0)) for s in slopes])
    x = np.log1p(np.arange(len(y), dtype=np.float64))
    dx = x - x.mean()
    b = float(np.dot(dx, y - y.mean())) / float(np.dot(dx, dx))
    a = y.mean() - b * x.mean()
    r = y - (a + b * x)
    med = np.median(r)
    mad = np.median(np.abs(r - med))
    if not math.isfinite(mad) or mad <= 0:
        return r - med, False
    return (r - med) / (mad + EPS), True


def library_labels(z: np.ndarray, rho: float) -> list[bool]:
    from hmmlearn.hmm import GaussianHMM
    from sklearn.mixture import GaussianMixture

    X = z.reshape(-1, 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmm = GaussianMixture(2, covariance_type="diag", init_params="kmeans", random_state=0, max_iter=50,
                                  reg_covar=1e-6).fit(X)
            hmm = GaussianHMM(2, covariance_type="diag", init_params="", params="")
            hmm.startprob_ = np.array([0.5, 0.5])
            hmm.transmat_ = np.array([[rho, 1 - rho], [1 - rho, rho]])
            hmm.means_ = gmm.means_
            hmm.covars_ = np.maximum(gmm.covariances_, 1e-6)
            _, states = hmm.decode(X, algorithm="viterbi")
        e_state = 0 if gmm.means_[0, 0] >= gmm.means_[1, 0] else 1
        return [int(s) == e_state for s in states]
    except Exception:  # noqa: BLE001 -- the spec's fallback
        return [bool(v > 0) for v in z]


def min_run_smooth(labels: list[bool], min_run: int) -> list[bool]:
    labels = list(labels)
    i = 0
    while i < len(labels):
        j = i
        while j < len(labels) and labels[j] == labels[i]:
            j += 1
        if j - i < min_run:
            fill = labels[i - 1] if i > 0 else (labels[j] if j < len(labels) else labels[i])
            for k in range(i, j):
                labels[k] = fill
        i = j
    return labels


def phases(slopes: list[float], rho: float, min_run: int) -> list[bool]:
    if len(slopes) < 3:
        return [False] * len(slopes)
    z, ok = residual_z(slopes)
    labels = [bool(v > 0) for v in z] if not ok else library_labels(z, rho)
    return min_run_smooth(labels, min_run)


def cycles_of(labels: list[bool]) -> list[tuple[list[int], list[int]]]:
    runs = []  # (label, [rows])
    for j, lab in enumerate(labels):
        if runs and runs[-1][0] == lab:
            runs[-1][1].append(j)
        else:
            runs.append((lab, [j]))
    return [(runs[k][1], runs[k + 1][1]) for k in range(len(runs) - 1) if runs[k][0] and not runs[k + 1][0]]


def response_detail(cache, i: int, rho: float, min_run: int) -> tuple[list[bool], list[dict]] | None:
    """(E label per kept row, one dict per E->X cycle: e_rows, x_rows, reuse (None when undefined),
    progress, kind ("effective", "redundant" or "skipped"), scale, credit {neuron: mass * scale}) of
    response i; None when learning skips the response."""
    raw = response_rows(cache, i)
    if len(raw) < 3:
        return None
    rows = [(r, t) for r, t in raw if r is not None and t > 0]
    if len(rows) < 3:
        return None
    seen: set = set()
    new_rows: list[dict] = []
    slopes: list[float] = []
    for r, t in rows:
        new = {n: m for n, m in r.items() if n not in seen}
        seen.update(r)
        new_rows.append(new)
        slopes.append(len(new) / t)
    labels = phases(slopes, rho, min_run)
    m_all = float(np.median(slopes))
    cycles = []
    for e_rows, x_rows in cycles_of(labels):
        s_e = float(np.median([slopes[j] for j in e_rows]))
        s_x = float(np.median([slopes[j] for j in x_rows]))
        strength = s_e - m_all
        cons = min(max(1 - s_x / (s_e + EPS), 0.0), 1.0) if s_e > 0 else 0.0
        introduced: set = set()
        for j in e_rows:
            introduced.update(new_rows[j])
        x_total = sum(m for j in x_rows for m in rows[j][0].values())
        x_reuse = sum(m for j in x_rows for n, m in rows[j][0].items() if n in introduced)
        reuse = None
        if strength > 0 and introduced and x_total > 0:
            reuse = x_reuse / (x_total + EPS)
        cycles.append({"e_rows": e_rows, "x_rows": x_rows, "strength": strength, "consolidation": cons,
                       "reuse": reuse, "progress": None, "kind": "skipped", "scale": 0.0, "credit": {}})
    defined = [c["reuse"] for c in cycles if c["reuse"] is not None]
    if not defined:
        return labels, cycles
    med = float(np.median(np.asarray(defined, dtype=np.float32)))  # float32, as the reference does
    for c in cycles:
        if c["reuse"] is None or c["strength"] <= 0:
            continue
        progress = c["progress"] = c["reuse"] - med
        if progress == 0:
            continue
        if progress > 0 and c["consolidation"] > 0:
            kind, scale = "effective", progress * c["consolidation"]
        else:
            kind, scale = "redundant", abs(progress)
        if scale <= 0:
            continue
        credit: dict = {}
        for j in c["e_rows"]:
            for n, m in new_rows[j].items():
                credit[n] = credit.get(n, 0.0) + m * scale
        c.update(kind=kind, scale=scale, credit=credit)
    return labels, cycles


def response_credit(cache, i: int, rho: float, min_run: int) -> list[tuple[str, dict]]:
    """[(kind, {neuron: mass * scale})] of the credited cycles of response i."""
    detail = response_detail(cache, i, rho, min_run)
    if detail is None:
        return []
    return [(c["kind"], c["credit"]) for c in detail[1] if c["kind"] != "skipped"]


def learn(cache, rho: float = 0.95, min_run: int = 2, responses=None) -> dict:
    """{neuron: weight} for every credited neuron."""
    eff: dict = {}
    red: dict = {}
    for i in (range(cache.n_responses) if responses is None else responses):
        for kind, credit in response_credit(cache, int(i), rho, min_run):
            acc = eff if kind == "effective" else red
            for n, v in credit.items():
                acc[n] = acc.get(n, 0.0) + v
    out = {}
    for n in set(eff) | set(red):
        e, r = eff.get(n, 0.0), red.get(n, 0.0)
        if e > 0 or r > 0:
            out[n] = math.tanh(math.log((e + EPS) / (r + EPS)))
    return out


def gmf(cache, weights: dict) -> list[float]:
    out = []
    for i in range(cache.n_responses):
        a, b = int(cache.base_ptr[i]), int(cache.base_ptr[i + 1])
        base = sanitise(cache.base_keys[a:b], cache.base_mass[a:b], cache.scheme)
        if base is None:
            out.append(float("nan"))
            continue
        good = sum(m * max(weights.get(n, 0.0), 0.0) for n, m in base.items())
        total = sum(m * abs(weights.get(n, 0.0)) for n, m in base.items())
        out.append(good / total if total > 0 else 0.0)
    return out
