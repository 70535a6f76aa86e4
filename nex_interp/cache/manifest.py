"""The cache manifest: ``<cache>/manifest.json``, what a cache is and how long its arrays are.

A reference cache (written by the NEX reference's own backend) has no manifest; ours always does.
The writer rewrites the manifest atomically after every committed response, so the manifest is
also the commit record: arrays are valid up to the lengths it records, whatever lies beyond
(an interrupted append) is ignored by the reader and truncated away by a resuming writer.

Fields (see ``docs/cache-format.md``):

- ``format`` (``"nex-sparse-cache"``), ``format_version`` (int), ``complete`` (bool: the writer closed),
- ``key_scheme``: :meth:`nex_interp.keys.KeyScheme.to_dict`,
- ``n_responses``, ``n_rows``, ``n_entries``, ``n_base_entries``, ``n_tokens``,
- ``arrays``: ``{relative path: {"dtype", "length"[, "sha256"]}}`` for every binary array,
- ``streams``: ``{stream: {name: dtype}}`` per-token side streams,
- ``responses_bytes``: committed byte length of ``responses.jsonl``,
- ``package_version``, ``created``, ``updated``,
- plus the caller's fields (model identity, activation ``rule``, ``row_tokens``, ``n_layers``, ``d_mlp``, ...).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np

from ..errors import CacheError, ConfigError

FORMAT = "nex-sparse-cache"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
RESPONSES_NAME = "responses.jsonl"

#: fields the writer owns; a caller's manifest may not set them
RESERVED_FIELDS = frozenset(
    {
        "format",
        "format_version",
        "complete",
        "key_scheme",
        "n_responses",
        "n_rows",
        "n_entries",
        "n_base_entries",
        "n_tokens",
        "arrays",
        "streams",
        "responses_bytes",
        "package_version",
        "created",
        "updated",
        "checksums",
    }
)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def core_array_paths(key_suffix: str) -> dict[str, str]:
    """Role -> relative path of the eight CSR arrays, for a keys suffix (``uint32``/``uint64``)."""
    return {
        "sample_row_ptr": "rows/sample_row_ptr.int64",
        "row_ptr": "rows/row_ptr.int64",
        "token_row_ptr": "rows/token_row_ptr.int64",
        "keys": f"rows/keys.{key_suffix}",
        "mass": "rows/w_sum.float16",
        "base_ptr": "base/row_ptr.int64",
        "base_keys": f"base/keys.{key_suffix}",
        "base_mass": "base/w_sum.float16",
    }


def dtype_of(rel_path: str) -> np.dtype:
    """The dtype named by an array file's suffix (``keys.uint32`` -> uint32)."""
    suffix = rel_path.rsplit(".", 1)[-1]
    try:
        return np.dtype(suffix)
    except TypeError:
        raise CacheError(f"cache file {rel_path} has no dtype suffix: name arrays <name>.<dtype>, e.g. ids.int32") from None


def read_manifest(cache: Path) -> dict | None:
    """The parsed manifest of ``cache``, or None when it has none (a reference cache)."""
    path = cache / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(f"cache {MANIFEST_NAME} in {cache} is not valid JSON ({e}): the file is corrupt; re-run capture") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CacheError(f"cache {MANIFEST_NAME} in {cache} is not a {FORMAT} manifest: the file is corrupt or not a NEX cache")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CacheError(f"cache {MANIFEST_NAME} in {cache} has no valid format_version: the file is corrupt; re-run capture")
    if version > FORMAT_VERSION:
        raise CacheError(
            f"cache {MANIFEST_NAME} in {cache} has format_version {version}, newer than this nex-interp reads "
            f"({FORMAT_VERSION}): upgrade nex-interp"
        )
    arrays = data.get("arrays")
    if not isinstance(arrays, dict) or not all(isinstance(v, dict) and isinstance(v.get("length"), int) for v in arrays.values()):
        raise CacheError(f"cache {MANIFEST_NAME} in {cache} has a malformed 'arrays' table: the file is corrupt; re-run capture")
    return data


def write_manifest(cache: Path, data: dict) -> None:
    """Atomically and durably replace ``<cache>/manifest.json`` (temp file, fsync, rename, fsync dir)."""
    final = cache / MANIFEST_NAME
    tmp = cache / f".{MANIFEST_NAME}.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(cache)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def check_user_fields(fields: dict) -> dict:
    """Validate a caller's manifest fields: JSON-able, no writer-owned keys. Returns a copy."""
    if not isinstance(fields, dict):
        raise ConfigError(f"cache manifest must be a dict of model identity and settings, got {type(fields).__name__}")
    clash = sorted(RESERVED_FIELDS & set(fields))
    if clash:
        raise ConfigError(f"cache manifest fields {clash} are set by the cache writer: remove them from the manifest you pass")
    try:
        return json.loads(json.dumps(fields))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cache manifest is not JSON-serialisable ({e}): pass plain str/int/float/list/dict values") from None
