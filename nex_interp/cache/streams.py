"""Per-response metadata and per-token side streams of a cache.

``<cache>/responses.jsonl`` holds one JSON object per response (id, problem_id, sample, ...), in
cache order. A *stream* is a directory ``<cache>/<stream>/`` of per-token arrays that all share one
pointer array: ``ptr.int64`` (``n_responses + 1``; response i owns items ``[ptr[i], ptr[i+1])``) and
``<name>.<dtype>`` files, e.g. ``tokens/ids.int32``, ``tokens/entropy.float32``,
``tokens/logprob.float32``. Streams are listed in the manifest (``streams``) with their dtypes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..errors import CacheError, ConfigError
from .manifest import MANIFEST_NAME, RESPONSES_NAME, dtype_of, read_manifest
from .validate import RECAPTURE, array_length, check_directory, check_pointer, map_array

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_STREAMS = frozenset({"rows", "base"})
PTR_NAME = "ptr"


def check_stream_names(stream: str, names: list[str] | tuple[str, ...] | set[str]) -> None:
    """Stream and array names are identifiers; ``rows``/``base`` and the array name ``ptr`` are taken."""
    if not _NAME.match(stream) or stream in RESERVED_STREAMS:
        raise ConfigError(f"stream name {stream!r} is invalid: use an identifier other than 'rows' or 'base'")
    for name in names:
        if not _NAME.match(name) or name == PTR_NAME:
            raise ConfigError(f"array name {name!r} in stream {stream!r} is invalid: use an identifier other than 'ptr'")


def stream_ptr_path(stream: str) -> str:
    return f"{stream}/{PTR_NAME}.int64"


def stream_array_path(stream: str, name: str, dtype: np.dtype | str) -> str:
    return f"{stream}/{name}.{np.dtype(dtype).name}"


def _n_responses(cache: Path, manifest: dict | None) -> int:
    if manifest is not None:
        return int(manifest.get("n_responses", 0))
    rel = "rows/sample_row_ptr.int64"
    return max(array_length(cache, rel, np.dtype(np.int64)) - 1, 0)


def open_stream(path: str | os.PathLike, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The pointer array and the per-token arrays (read-only memory maps) of stream ``name``."""
    cache = Path(path)
    check_directory(cache)
    manifest = read_manifest(cache)
    n_resp = _n_responses(cache, manifest)
    complete = bool(manifest and manifest.get("complete"))
    if manifest is not None:
        streams = manifest.get("streams") or {}
        if name not in streams:
            have = ", ".join(sorted(streams)) or "none"
            raise CacheError(f"cache {cache} has no stream {name!r} (streams: {have}): capture with that stream recorded")
        recorded = manifest["arrays"]
        files = {a: stream_array_path(name, a, dt) for a, dt in streams[name].items()}
        lengths = {}
        for a, rel in files.items():
            if rel not in recorded:
                raise CacheError(f"cache {MANIFEST_NAME} in {cache} does not list {rel}: the manifest is corrupt; re-run capture")
            lengths[a] = array_length(cache, rel, dtype_of(rel), recorded[rel]["length"], complete)
    else:
        folder = cache / name
        if not folder.is_dir():
            raise CacheError(f"cache {cache} has no stream {name!r} (no {name}/ directory): capture with that stream recorded")
        files = {p.name.rsplit(".", 1)[0]: f"{name}/{p.name}" for p in sorted(folder.iterdir()) if not p.name.startswith(f"{PTR_NAME}.")}
        lengths = {a: array_length(cache, rel, dtype_of(rel)) for a, rel in files.items()}
    ptr_rel = stream_ptr_path(name)
    array_length(cache, ptr_rel, np.dtype(np.int64), n_resp + 1, complete)
    ptr = map_array(cache, ptr_rel, np.dtype(np.int64), n_resp + 1)
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{files[a]}: {n}" for a, n in sorted(lengths.items()))
        raise CacheError(f"cache {cache} stream {name!r} has arrays of different lengths ({detail}): {RECAPTURE}")
    n_items = next(iter(lengths.values()), 0)
    check_pointer(ptr, cache / ptr_rel, n_items, f"the {name}/ arrays")
    return ptr, {a: map_array(cache, rel, dtype_of(rel), lengths[a]) for a, rel in files.items()}


def read_response_meta(path: str | os.PathLike) -> list[dict]:
    """The per-response metadata (``responses.jsonl``), one dict per committed response, in order.

    Returns ``[]`` for a cache without metadata (the reference's own caches).
    """
    cache = Path(path)
    check_directory(cache)
    manifest = read_manifest(cache)
    file = cache / RESPONSES_NAME
    n_resp = _n_responses(cache, manifest)
    if not file.exists():
        if manifest is not None and n_resp > 0:
            raise CacheError(f"cache file {file} is missing: the cache is incomplete; re-run capture")
        return []
    with open(file, "rb") as f:
        data = f.read(manifest["responses_bytes"]) if manifest is not None and "responses_bytes" in manifest else f.read()
    if manifest is not None and "responses_bytes" in manifest and len(data) < manifest["responses_bytes"]:
        raise CacheError(
            f"cache file {file} has {len(data)} bytes but {MANIFEST_NAME} records {manifest['responses_bytes']}: "
            "the file is truncated; re-run capture"
        )
    out: list[dict] = []
    for i, line in enumerate(data.splitlines()):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CacheError(f"cache file {file} line {i + 1} is not valid JSON: {RECAPTURE}") from None
        if not isinstance(item, dict):
            raise CacheError(f"cache file {file} line {i + 1} is not a JSON object: {RECAPTURE}")
        out.append(item)
    if len(out) != n_resp:
        raise CacheError(f"cache file {file} has {len(out)} responses but the cache holds {n_resp}: {RECAPTURE}")
    return out
