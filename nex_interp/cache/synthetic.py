"""Synthetic sparse caches with planted explore/exploit structure, for benchmarks, tests and demos.

>>> from nex_interp.cache.synthetic import SynthConfig, synth_cache
>>> cache = synth_cache("synth", SynthConfig(responses=12, seed=1))      # doctest: +SKIP

Each response is a run of rows in two sticky planted phases (each row leaves its phase with
probability ``PHASE_SWITCH``):

- **Explore** rows: a share ``NEW_SHARE_E`` of the row's neurons are neurons the response has
  not used before (drawn without replacement from all ``layers x d_mlp`` neurons);
- **Exploit** rows: a share ``NEW_SHARE_X`` is new, the rest reuses neurons the response already
  used. Of the reused neurons, a share drawn once per Explore run (``RECENT_SHARE``) comes from
  that run's introductions, so the cycles of a response differ in how much they reuse and NEX
  credits neurons both ways.

Explore rows reuse in the same way. Masses are lognormal, rows span ``row_tokens`` tokens (the
last row of a response fewer), keys are sorted within a row, and each base vector is the
per-neuron sum of the response's rows. Each response records its planted phases in
``responses.jsonl`` (``planted_phases``, one ``E``/``X`` per row).

With ``dirty`` the cache also holds every case the NEX core sanitises (``docs/cache-format.md``):
entries of the reserved layer 255, NaN, +inf, -inf, negative and zero masses (each on a share
``ENTRY_DIRT`` of entries), rows with 0 tokens, rows with no entries, rows whose masses are all
zero and rows holding a key outside the key table (each on a share ``ROW_DIRT`` of rows), and,
in every block of ``DIRTY_EVERY`` responses, one cut to 0-2 rows and one whose base vector holds a
key outside the table (that response's GMF is undefined).

Response ``i`` depends only on the seed, ``i`` and the settings (its random generator is seeded
with ``(seed, i)``), so the same settings write the same bytes, and a cache of N responses starts
with the responses of every shorter cache of the same seed. The cache is written response by
response with :class:`~nex_interp.cache.writer.CacheWriter` into a temporary directory that is
renamed into place once complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config_dict import DictConfig
from ..errors import ConfigError
from ..keys import OUT_OF_RANGE, RESERVED_LAYER, KeyScheme

#: probability that a row leaves the phase of the row before it (mean phase run: 10 rows)
PHASE_SWITCH = 0.1
#: range of the share of a row's neurons that are new to the response, in Explore / Exploit rows
NEW_SHARE_E = (0.3, 0.8)
NEW_SHARE_X = (0.0, 0.1)
#: range of the share of reused neurons taken from the latest Explore run's introductions
RECENT_SHARE = (0.1, 0.9)
#: a row holds keys_per_row * (1 +- ROW_SPREAD) neurons, uniformly
ROW_SPREAD = 0.3
#: lognormal mass: mean and sd of its logarithm
MASS_LOG = (0.0, 1.0)
#: with dirty: share of entries given each entry-level case, of rows given each row-level case
ENTRY_DIRT = 0.003
ROW_DIRT = 0.02
#: with dirty: in each block of this many responses, response 5 is cut short and response 6 gets a bad base key
DIRTY_EVERY = 8
#: the largest layer count (layer 255 is reserved, 254 stays free for keys outside a wide table)
MAX_LAYERS = 254


@dataclass(frozen=True)
class SynthConfig(DictConfig):
    """Settings of a synthetic cache (see the module docstring for what they plant)."""

    responses: int = 20
    rows_lo: int = 40
    rows_hi: int = 120
    keys_per_row: int = 300
    layers: int = 36
    d_mlp: int = 9728
    seed: int = 0
    dirty: bool = False
    row_tokens: int = 32

    def __post_init__(self) -> None:
        for name in ("responses", "keys_per_row", "layers", "d_mlp", "row_tokens"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"synthetic cache: {name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"synthetic cache: seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.rows_lo, (int, np.integer)) and isinstance(self.rows_hi, (int, np.integer))) or not (
            1 <= self.rows_lo <= self.rows_hi
        ):
            raise ConfigError(
                f"synthetic cache: rows per response must satisfy 1 <= rows-lo <= rows-hi, got {self.rows_lo!r}..{self.rows_hi!r}"
            )
        if self.layers > MAX_LAYERS:
            raise ConfigError(f"synthetic cache: layers must be at most {MAX_LAYERS} (layer 255 is reserved), got {self.layers}")
        if self.d_mlp >= 1 << 32:
            raise ConfigError(f"synthetic cache: d-mlp must be below 2**32, got {self.d_mlp}")
        if self.keys_per_row > self.layers * self.d_mlp:
            raise ConfigError(
                f"synthetic cache: keys-per-row {self.keys_per_row} exceeds the {self.layers * self.d_mlp} neurons of "
                f"{self.layers} layers x {self.d_mlp}: lower it or raise --layers/--d-mlp"
            )

    @property
    def scheme(self) -> KeyScheme:
        return KeyScheme.for_model(self.layers, self.d_mlp)



@dataclass
class SynthResponse:
    """One generated response: rows ``(sorted keys, float16 mass, n_tokens)``, base vector, meta."""

    rows: list[tuple[np.ndarray, np.ndarray, int]]
    base_keys: np.ndarray
    base_mass: np.ndarray
    meta: dict


def _phases(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    """Planted labels (True = Explore): a random first phase, then a switch at each row with PHASE_SWITCH."""
    switches = rng.random(n_rows) < PHASE_SWITCH
    switches[:1] = False
    return (np.cumsum(switches) % 2).astype(bool) ^ bool(rng.random() < 0.5)


def _dirty_row(rng: np.random.Generator, keys: np.ndarray, mass: np.ndarray, tokens: int, scheme: KeyScheme,
               bad_key: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A row with the entry- and row-level sanitising cases applied at their rates."""
    u = rng.random(len(keys))
    c = ENTRY_DIRT
    _, units = scheme.unpack(keys)
    keys = np.where(u < c, scheme.pack(np.full(len(keys), RESERVED_LAYER), units), keys).astype(scheme.key_dtype)
    for i, value in enumerate((np.nan, np.inf, -np.inf, -1.5, 0.0), start=1):
        mass[(u >= i * c) & (u < (i + 1) * c)] = value
    keys, first = np.unique(keys, return_index=True)  # two units of one number sent to layer 255 collide
    mass = mass[first]
    cases = rng.random(4) < ROW_DIRT
    if cases[0]:
        tokens = 0
    if cases[1]:
        keys, mass = keys[:0], mass[:0]
    if cases[2]:
        mass = np.zeros_like(mass)
    if cases[3]:
        order = np.argsort(np.append(keys, scheme.key_dtype.type(bad_key)), kind="stable")
        keys = np.append(keys, scheme.key_dtype.type(bad_key))[order]
        mass = np.append(mass, np.float16(1.0))[order]
    return keys, mass, tokens


def _bad_key(scheme: KeyScheme, layers: int) -> int:
    """A key outside the scheme's table that is not in the reserved layer."""
    return int(scheme.pack(64 if scheme.name == "ref22" else layers, 0))


def synth_response(config: SynthConfig, i: int) -> SynthResponse:
    """Response ``i`` of the synthetic cache ``config`` describes."""
    rng = np.random.default_rng([config.seed, i])
    scheme = config.scheme
    n_rows = int(rng.integers(config.rows_lo, config.rows_hi + 1))
    if config.dirty and i % DIRTY_EVERY == 5:
        n_rows = int(rng.integers(0, 3))
    phases = _phases(rng, n_rows)
    lo = max(1, int(round(config.keys_per_row * (1 - ROW_SPREAD))))
    hi = max(lo, int(round(config.keys_per_row * (1 + ROW_SPREAD))))
    sizes = rng.integers(lo, hi + 1, n_rows)
    n_neurons = config.layers * config.d_mlp
    pool = rng.choice(n_neurons, min(int(sizes.sum()), n_neurons), replace=False)  # neurons in order of introduction
    pool_keys = scheme.pack(pool // config.d_mlp, pool % config.d_mlp)
    bad_key = _bad_key(scheme, config.layers)
    cursor = run_lo = run_hi = 0  # pool[:cursor] used so far; pool[run_lo:run_hi] the latest Explore run's
    recent_share = 0.0
    rows = []
    for j in range(n_rows):
        explore = bool(phases[j])
        if explore and (j == 0 or not phases[j - 1]):
            run_lo = run_hi = cursor
            recent_share = rng.uniform(*RECENT_SHARE)
        k = min(int(sizes[j]), n_neurons)
        share = rng.uniform(*(NEW_SHARE_E if explore else NEW_SHARE_X))
        n_new = min(len(pool) - cursor, max(int(round(k * share)), k - cursor))
        seen = cursor
        cursor += n_new
        if explore:
            run_hi = cursor
        # reuse: k - n_new neurons of pool[:seen], a binomial share from the run's [run_lo, min(run_hi, seen))
        r_lo, r_hi = run_lo, min(run_hi, seen)
        n_recent, n_older = r_hi - r_lo, seen - (r_hi - r_lo)
        n_old = min(k - n_new, seen)
        a = min(int(rng.binomial(n_old, recent_share)), n_recent)
        b = min(n_old - a, n_older)
        a = min(n_old - b, n_recent)
        older = rng.choice(n_older, b, replace=False, shuffle=False)
        older = np.where(older < r_lo, older, older + (r_hi - r_lo))
        recent = r_lo + rng.choice(n_recent, a, replace=False, shuffle=False)
        picked = np.concatenate([np.arange(seen, cursor), recent, older])
        keys = np.sort(pool_keys[picked])
        mass = rng.lognormal(*MASS_LOG, len(keys)).astype(np.float16)
        tokens = config.row_tokens if j < n_rows - 1 else int(rng.integers(1, config.row_tokens + 1))
        if config.dirty:
            keys, mass, tokens = _dirty_row(rng, keys, mass, tokens, scheme, bad_key)
        rows.append((keys, mass, tokens))
    base_keys, base_mass = _base_vector(rows, scheme)
    if config.dirty and i % DIRTY_EVERY == 6:
        base_keys = np.append(base_keys, scheme.key_dtype.type(bad_key))
        base_mass = np.append(base_mass, 1.0)
    meta = {"id": f"synth-{i}", "problem_id": i, "sample": 0,
            "planted_phases": "".join("E" if e else "X" for e in phases)}
    return SynthResponse(rows, base_keys, base_mass, meta)


def _base_vector(rows: list, scheme: KeyScheme) -> tuple[np.ndarray, np.ndarray]:
    """Per-key mass sums (float64) over the rows, keys outside the table left out."""
    if not rows:
        return np.zeros(0, dtype=scheme.key_dtype), np.zeros(0)
    keys = np.concatenate([r[0] for r in rows])
    mass = np.concatenate([r[1] for r in rows]).astype(np.float64)
    keep = scheme.dense_index(keys) != OUT_OF_RANGE
    uniq, inverse = np.unique(keys[keep], return_inverse=True)
    return uniq, np.bincount(inverse, weights=mass[keep], minlength=len(uniq))


def synth_manifest(config: SynthConfig) -> dict:
    """The fields a synthetic cache records in its manifest."""
    model = {"spec": "synthetic", "arch": "synthetic", "n_layers": config.layers, "d_mlp": config.d_mlp}
    return {"model": model, "rule": "synthetic", "row_tokens": config.row_tokens, "n_layers": config.layers,
            "d_mlp": config.d_mlp, "synthetic": config.to_dict()}


def synth_cache(out: str | os.PathLike, config: SynthConfig = SynthConfig(), progress: bool = False):
    """Write the synthetic cache ``config`` describes to the new directory ``out``; returns it opened
    (:func:`~nex_interp.cache.reader.open_cache`). ``out`` must not exist: nothing is overwritten."""
    from tqdm.auto import tqdm

    from ..atomic import atomic_path
    from ..provenance import record, write_sidecar
    from .reader import open_cache
    from .writer import CacheWriter

    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists: choose a new path for the synthetic cache or remove it")
    with atomic_path(out) as tmp:
        writer = CacheWriter(tmp, config.scheme, synth_manifest(config), durable=False)  # renamed when complete
        for i in tqdm(range(config.responses), desc="synth", unit="resp", disable=not progress):
            r = synth_response(config, i)
            writer.add_response(r.rows, r.base_keys, r.base_mass, r.meta)
        writer.close()
        write_sidecar(tmp, record("nex cache synth", config=config.to_dict(), model=synth_manifest(config)["model"]))
    return open_cache(out)


__all__ = ["SynthConfig", "SynthResponse", "synth_cache", "synth_response", "synth_manifest"]
