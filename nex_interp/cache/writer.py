"""Write a sparse activation cache response by response, surviving interruptions.

>>> w = CacheWriter(path, KeyScheme.for_model(30, 1536), {"model": "smollm2-135m", "rule": "gt0",
...                 "row_tokens": 32, "n_layers": 30, "d_mlp": 1536})          # doctest: +SKIP
>>> w.add_response(rows, base_keys, base_mass, {"id": "p0-s0"})                # doctest: +SKIP
>>> w.close()                                                                    # doctest: +SKIP

Commit protocol. ``add_response`` appends the response's bytes to every array file, flushes and
fsyncs them, then atomically replaces ``manifest.json`` with the new lengths (``"complete": false``).
The manifest is the commit record: the reader reads each file only up to the length it records, so
a cache whose writer was killed is still a valid cache of its committed responses, and bytes of an
interrupted append are ignored. ``CacheWriter(..., resume=True)`` truncates every file back to the
committed lengths and continues; ``done_ids`` tells the caller which responses to skip.
``close()`` hashes every file and writes the final manifest (``"complete": true``, sha256 per file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .. import __version__
from ..errors import CacheError, ConfigError
from ..hashing import sha256_file
from ..keys import KeyScheme
from .manifest import (
    FORMAT,
    FORMAT_VERSION,
    RESERVED_FIELDS,
    RESPONSES_NAME,
    check_user_fields,
    core_array_paths,
    now_iso,
    read_manifest,
    write_manifest,
)
from .streams import check_stream_names, stream_array_path, stream_ptr_path

FLOAT16_MAX = float(np.finfo(np.float16).max)

Row = tuple[np.ndarray, np.ndarray, int]


def _as_keys(keys: np.ndarray, scheme: KeyScheme, what: str) -> np.ndarray:
    """Packed keys as the scheme's dtype; refuses non-integers, negatives and overflow."""
    k = np.asarray(keys)
    if k.ndim != 1:
        raise ConfigError(f"{what} must be a 1-D array of packed keys, got shape {k.shape}")
    if k.size == 0:
        return np.zeros(0, dtype=scheme.key_dtype)
    if not np.issubdtype(k.dtype, np.integer):
        raise ConfigError(f"{what} must hold integers (packed keys), got dtype {k.dtype}")
    if k.dtype.kind == "i" and int(k.min()) < 0:
        raise ConfigError(f"{what} holds negative keys: pack (layer, unit) with KeyScheme.pack")
    if int(k.max()) > int(np.iinfo(scheme.key_dtype).max):
        raise ConfigError(f"{what} holds keys beyond {scheme.key_dtype.name}: use the {scheme.name} scheme's pack()")
    return k.astype(scheme.key_dtype, copy=False)


def _as_mass(mass: np.ndarray, n: int, what: str) -> np.ndarray:
    """Mass as float16, clipped to the float16 range (NaN stays NaN; the core sanitises it).
    Mass given as float16 is written as given (an inf stays inf)."""
    m = np.asarray(mass)
    if m.ndim != 1 or len(m) != n:
        raise ConfigError(f"{what} must be a 1-D array as long as its keys ({n}), got shape {m.shape}")
    if m.dtype == np.float16:
        return m
    if m.size and not np.issubdtype(m.dtype, np.floating) and not np.issubdtype(m.dtype, np.integer):
        raise ConfigError(f"{what} must hold numbers, got dtype {m.dtype}")
    return np.clip(m.astype(np.float64, copy=False), -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


class CacheWriter:
    """Append responses to a cache directory; crash-safe and resumable (see the module docstring).

    ``manifest`` holds the caller's fields (model identity, activation ``rule``, ``row_tokens``,
    ``n_layers``, ``d_mlp``, ...); they are stored at the top level of ``manifest.json``. On
    ``resume`` they and the key scheme must equal the ones the cache was started with, so a cache
    never mixes two models or rules. ``resume`` on a path that does not exist starts a new cache.
    ``durable=False`` skips the per-response fsync and commit (``close()`` still syncs and commits
    everything): for a cache written to a temporary path and renamed into place once complete.
    """

    def __init__(self, path: str | os.PathLike, scheme: KeyScheme, manifest: dict, resume: bool = False,
                 durable: bool = True) -> None:
        self.path = Path(path)
        self._durable = durable
        self.scheme = scheme
        self._fields = check_user_fields(manifest)
        if scheme.name == "wide":
            for field, value in (("n_layers", scheme.n_layers), ("d_mlp", scheme.d_mlp)):
                if field in self._fields and self._fields[field] != value:
                    raise ConfigError(f"cache manifest {field}={self._fields[field]} disagrees with the wide key scheme's {value}")
        self._core = core_array_paths(scheme.key_suffix)
        self._handles: dict[str, BinaryIO] = {}
        self._pending_streams: dict[str, dict[str, str]] = {}
        self._closed = False
        if self.path.exists() and not self.path.is_dir():
            raise CacheError(f"cache {self.path} is a file: choose a directory path for the cache")
        existing = self.path.is_dir() and any(self.path.iterdir())
        if existing:
            self._resume_existing(resume)
        else:
            self._start_new()

    # ------------------------------------------------------------------ state
    @property
    def n_done(self) -> int:
        """Responses committed so far (including those of earlier, resumed runs)."""
        return int(self._state["n_responses"])

    @property
    def done_ids(self) -> set[str]:
        """The ``id`` of every committed response whose meta has one."""
        return set(self._ids)

    def _start_new(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = now_iso()
        self._streams: dict[str, dict[str, str]] = {}
        self._ids: set[str] = set()
        self._lengths: dict[str, int] = {}
        self._state = {"n_responses": 0, "n_rows": 0, "n_entries": 0, "n_base_entries": 0, "n_tokens": 0, "responses_bytes": 0}
        for role, rel in self._core.items():
            (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(self.path / rel, "wb") as f:
                if role in ("sample_row_ptr", "row_ptr", "token_row_ptr", "base_ptr"):
                    f.write(np.zeros(1, dtype=np.int64).tobytes())
            self._lengths[rel] = 1 if rel.endswith(".int64") else 0
        (self.path / RESPONSES_NAME).write_bytes(b"")
        self._open_handles()
        self._commit(complete=False)

    def _resume_existing(self, resume: bool) -> None:
        old = read_manifest(self.path)
        if old is None:
            raise CacheError(
                f"cache {self.path} exists and is not a nex-interp cache (no manifest.json): choose a new path or empty it"
            )
        if not resume:
            raise CacheError(
                f"cache {self.path} already exists with {old.get('n_responses', 0)} responses: "
                "resume it (--resume) or choose a new path"
            )
        if old.get("key_scheme") != self.scheme.to_dict():
            raise CacheError(
                f"cache {self.path} was written with key scheme {old.get('key_scheme')}, not {self.scheme.to_dict()}: "
                "resume with the same model or choose a new path"
            )
        old_fields = {k: v for k, v in old.items() if k not in RESERVED_FIELDS}
        for key in sorted(set(old_fields) | set(self._fields)):
            if old_fields.get(key) != self._fields.get(key):
                raise CacheError(
                    f"cache {self.path} was started with {key}={old_fields.get(key)!r}, not {self._fields.get(key)!r}: "
                    "resume with the same settings or choose a new path"
                )
        self._created = old.get("created", now_iso())
        self._streams = {s: dict(a) for s, a in (old.get("streams") or {}).items()}
        self._state = {k: int(old[k]) for k in ("n_responses", "n_rows", "n_entries", "n_base_entries", "n_tokens", "responses_bytes")}
        self._lengths = {rel: int(e["length"]) for rel, e in old["arrays"].items()}
        # truncate every file back to the commit point
        for rel, n in self._lengths.items():
            self._truncate(self.path / rel, n * np.dtype(rel.rsplit(".", 1)[-1]).itemsize)
        self._truncate(self.path / RESPONSES_NAME, self._state["responses_bytes"])
        lines = (self.path / RESPONSES_NAME).read_bytes().splitlines()
        if len(lines) != self.n_done:
            raise CacheError(f"cache file {self.path / RESPONSES_NAME} has {len(lines)} responses, not {self.n_done}: it is corrupt; start a new cache")
        self._ids = set()
        for line in lines:
            meta = json.loads(line)
            if "id" in meta:
                self._ids.add(str(meta["id"]))
        self._open_handles()
        self._commit(complete=False)

    def _truncate(self, file: Path, size: int) -> None:
        if not file.exists() or file.stat().st_size < size:
            raise CacheError(f"cache file {file} is shorter than its committed length: it is corrupt; start a new cache")
        if file.stat().st_size > size:
            os.truncate(file, size)

    def _open_handles(self) -> None:
        rels = list(self._lengths) + [RESPONSES_NAME]
        self._handles = {rel: open(self.path / rel, "ab") for rel in rels}

    # ------------------------------------------------------------------ writing
    def add_response(
        self,
        rows: list[Row],
        base_keys: np.ndarray,
        base_mass: np.ndarray,
        meta: dict,
        streams: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        """Append one response and commit it (durable once this returns).

        rows: per row ``(packed keys, mass, n_tokens)``; base_keys/base_mass: the response's
        whole-response vector; meta: a JSON object (its ``id`` must be new); streams:
        ``{stream: {name: array}}``, every array of one stream as long as the others. The set of
        streams and array names is fixed by the first response.
        """
        if self._closed:
            raise CacheError(f"cache {self.path} is closed: open a new CacheWriter with resume=True to add responses")
        buffers = self._encode(rows, base_keys, base_mass, meta, streams or {})
        if self._pending_streams:
            self._declare_streams(self._pending_streams)
        for rel, data in buffers.items():
            if data:
                self._handles[rel].write(data)
        for handle in self._handles.values():
            handle.flush()
            if self._durable:
                os.fsync(handle.fileno())
        for rel, data in buffers.items():
            if rel != RESPONSES_NAME:
                self._lengths[rel] += len(data) // np.dtype(rel.rsplit(".", 1)[-1]).itemsize
        self._state["responses_bytes"] += len(buffers[RESPONSES_NAME])
        self._state["n_responses"] += 1
        self._state["n_rows"] += len(rows)
        self._state["n_entries"] = self._lengths[self._core["keys"]]
        self._state["n_base_entries"] = self._lengths[self._core["base_keys"]]
        self._state["n_tokens"] += sum(int(r[2]) for r in rows)
        if "id" in meta:
            self._ids.add(str(meta["id"]))
        if self._durable:
            self._commit(complete=False)

    def _encode(self, rows: list[Row], base_keys, base_mass, meta: dict, streams: dict) -> dict[str, bytes]:
        """Validate one response and turn it into the bytes to append to each file."""
        if not isinstance(meta, dict):
            raise ConfigError(f"response meta must be a dict, got {type(meta).__name__}")
        if "id" in meta and str(meta["id"]) in self._ids:
            raise CacheError(f"response id {meta['id']!r} is already in cache {self.path}: skip the ids in CacheWriter.done_ids")
        try:
            line = (json.dumps(meta) + "\n").encode()
        except (TypeError, ValueError) as e:
            raise ConfigError(f"response meta is not JSON-serialisable ({e})") from None
        keys, mass, tokens = [], [], []
        for j, row in enumerate(rows):
            if len(row) != 3:
                raise ConfigError(f"row {j} must be a (keys, mass, n_tokens) triple")
            k = _as_keys(row[0], self.scheme, f"row {j} keys")
            keys.append(k)
            mass.append(_as_mass(row[1], len(k), f"row {j} mass"))
            n_tok = int(row[2])
            if n_tok < 0:
                raise ConfigError(f"row {j} spans {n_tok} tokens: a row spans 0 or more tokens")
            tokens.append(n_tok)
        bk = _as_keys(base_keys, self.scheme, "base keys")
        bm = _as_mass(base_mass, len(bk), "base mass")
        counts = np.array([len(k) for k in keys], dtype=np.int64)
        c = self._core
        out: dict[str, bytes] = {
            c["keys"]: np.concatenate(keys).tobytes() if keys else b"",
            c["mass"]: np.concatenate(mass).tobytes() if mass else b"",
            c["row_ptr"]: (self._state["n_entries"] + np.cumsum(counts)).astype(np.int64).tobytes(),
            c["token_row_ptr"]: (self._state["n_tokens"] + np.cumsum(np.array(tokens, dtype=np.int64))).astype(np.int64).tobytes(),
            c["sample_row_ptr"]: np.array([self._state["n_rows"] + len(rows)], dtype=np.int64).tobytes(),
            c["base_keys"]: bk.tobytes(),
            c["base_mass"]: bm.tobytes(),
            c["base_ptr"]: np.array([self._state["n_base_entries"] + len(bk)], dtype=np.int64).tobytes(),
            RESPONSES_NAME: line,
        }
        out.update(self._encode_streams(streams))
        return out

    def _encode_streams(self, streams: dict) -> dict[str, bytes]:
        """Bytes of each stream file; a cache's first streams are only declared (files made) once valid."""
        if not isinstance(streams, dict):
            raise ConfigError("streams must be a dict {stream: {name: array}}")
        given = {s: sorted(a) if isinstance(a, dict) else a for s, a in streams.items()}
        spec = self._streams
        self._pending_streams: dict[str, dict[str, str]] = {}
        if not spec and given:
            if self.n_done:
                raise ConfigError(f"streams {sorted(given)} were not recorded for the first {self.n_done} responses of {self.path}")
            spec = self._pending_streams = self._stream_spec(streams)
        expected = {s: sorted(a) for s, a in spec.items()}
        if given != expected:
            raise ConfigError(f"response streams {given} differ from the cache's streams {expected}: give every response the same streams")
        out: dict[str, bytes] = {}
        for s, arrays in streams.items():
            lengths = set()
            for name, arr in arrays.items():
                a = np.asarray(arr)
                if a.ndim != 1:
                    raise ConfigError(f"stream {s}/{name} must be 1-D per response, got shape {a.shape}")
                dt = np.dtype(spec[s][name])
                if not np.can_cast(a.dtype, dt, casting="same_kind"):
                    raise ConfigError(f"stream {s}/{name} has dtype {a.dtype}, not castable to the cache's {dt}")
                out[stream_array_path(s, name, dt)] = a.astype(dt, copy=False).tobytes()
                lengths.add(len(a))
            if len(lengths) > 1:
                raise ConfigError(f"stream {s} arrays differ in length ({sorted(lengths)}): one value per token in each")
            first = stream_array_path(s, *next(iter(spec[s].items())))
            out[stream_ptr_path(s)] = np.array([self._lengths.get(first, 0) + lengths.pop()], dtype=np.int64).tobytes()
        return out

    @staticmethod
    def _stream_spec(streams: dict) -> dict[str, dict[str, str]]:
        spec: dict[str, dict[str, str]] = {}
        for s, arrays in streams.items():
            if not isinstance(arrays, dict) or not arrays:
                raise ConfigError(f"stream {s!r} must be a non-empty dict {{name: array}}")
            check_stream_names(s, list(arrays))
            spec[s] = {}
            for name, arr in arrays.items():
                dt = np.asarray(arr).dtype
                if dt.kind not in "biuf":
                    raise ConfigError(f"stream {s}/{name} has dtype {dt}: use a numeric dtype")
                spec[s][name] = dt.name
        return spec

    def _declare_streams(self, spec: dict[str, dict[str, str]]) -> None:
        """Create the files of a cache's streams (pointer starting at 0) and open them."""
        for s, arrays in spec.items():
            (self.path / s).mkdir(exist_ok=True)
            for name, dt in arrays.items():
                rel = stream_array_path(s, name, dt)
                (self.path / rel).write_bytes(b"")
                self._lengths[rel] = 0
                self._handles[rel] = open(self.path / rel, "ab")
            ptr_rel = stream_ptr_path(s)
            (self.path / ptr_rel).write_bytes(np.zeros(1, dtype=np.int64).tobytes())
            self._lengths[ptr_rel] = 1
            self._handles[ptr_rel] = open(self.path / ptr_rel, "ab")
        self._streams = {s: dict(a) for s, a in spec.items()}

    # ------------------------------------------------------------------ manifest
    def _manifest(self, complete: bool, checksums: dict[str, str] | None = None) -> dict:
        data = dict(self._fields)
        data.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "complete": complete,
                "key_scheme": self.scheme.to_dict(),
                **self._state,
                "arrays": {rel: {"dtype": rel.rsplit(".", 1)[-1], "length": n} for rel, n in sorted(self._lengths.items())},
                "streams": self._streams,
                "package_version": __version__,
                "created": self._created,
                "updated": now_iso(),
            }
        )
        if checksums is not None:
            data["checksums"] = checksums
        return data

    def _commit(self, complete: bool, checksums: dict[str, str] | None = None) -> None:
        write_manifest(self.path, self._manifest(complete, checksums))

    def _close_handles(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def close(self) -> Path:
        """Hash every file and write the final manifest (``complete: true``); returns the cache path."""
        if self._closed:
            return self.path
        for handle in self._handles.values():
            handle.flush()
            os.fsync(handle.fileno())
        self._close_handles()
        checksums = {rel: sha256_file(self.path / rel) for rel in sorted(list(self._lengths) + [RESPONSES_NAME])}
        self._commit(complete=True, checksums=checksums)
        self._closed = True
        return self.path

    def abandon(self) -> None:
        """Close the files without finishing: the committed responses stay, resumable."""
        self._close_handles()
        self._closed = True

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()
