"""Open a sparse activation cache as memory-mapped, validated CSR arrays.

>>> from nex_interp.cache.reader import open_cache
>>> cache = open_cache("tests/data/reference/example_cache")   # a reference cache: no manifest
>>> cache.n_responses, cache.n_rows, cache.n_entries
(1, 83, 26660)
>>> cache.path.name, cache.response_ids, cache.stream_names
('example_cache', ['0'], ())

Everything is checked before any work (files present, byte counts whole, lengths consistent,
pointers start at 0, never decrease and end in bounds, lengths as the manifest records), and
each problem is a one-line :class:`~nex_interp.errors.CacheError`. Opening never reads the keys
or mass arrays; only the (small) pointer arrays are read to check them.
"""

from __future__ import annotations

import os
from pathlib import Path


from ..errors import CacheError, ConfigError
from ..keys import KeyScheme
from .arrays import CacheArrays
from ..hashing import sha256_file
from .manifest import MANIFEST_NAME, core_array_paths, dtype_of, read_manifest
from .streams import open_stream, read_response_meta  # noqa: F401  (re-exported: the reader API)
from .validate import array_length, check_directory, check_pointer, check_same_length, map_array

__all__ = ["open_cache", "as_cache", "open_stream", "read_response_meta", "cache_scheme", "verify_cache_checksums"]


def cache_scheme(cache: Path, manifest: dict | None) -> KeyScheme:
    """The key scheme of a cache: the manifest's, else ref22 (the reference's own caches)."""
    if manifest is None:
        if not (cache / "rows" / "keys.uint32").exists() and (cache / "rows" / "keys.uint64").exists():
            raise CacheError(
                f"cache {cache} has rows/keys.uint64 but no {MANIFEST_NAME} naming its key scheme: "
                "the cache is incomplete; re-run capture"
            )
        return KeyScheme.ref22()
    try:
        scheme = KeyScheme.from_dict(manifest.get("key_scheme") or {})
    except ConfigError as e:
        raise CacheError(f"cache {MANIFEST_NAME} in {cache} has a bad key_scheme ({e}): the file is corrupt; re-run capture") from None
    return scheme


def open_cache(path: str | os.PathLike, verify_checksums: bool = False) -> CacheArrays:
    """Validate and memory-map the cache at ``path``.

    The cache knows its ``path``, its per-response metadata (``response_meta``, ``response_ids``)
    and its per-token streams (``stream_names``, ``stream(name)``); those are read on first use.

    Works on our caches (with ``manifest.json``), on caches whose writer was interrupted (read up
    to the last committed response), on reference caches (no manifest: ref22 keys) and on sharded
    caches (``shards.json``: :mod:`nex_interp.cache.sharded`, each shard mapped, nothing copied).
    ``verify_checksums`` also re-hashes every file against the manifest's sha256 (reads them all).
    """
    cache = Path(path)
    if (cache / "shards.json").is_file():  # a sharded cache (nex capture --ray): its shards, as one cache
        from .sharded import open_sharded

        return open_sharded(cache, verify_checksums=verify_checksums)
    check_directory(cache)
    manifest = read_manifest(cache)
    scheme = cache_scheme(cache, manifest)
    complete = bool(manifest and manifest.get("complete"))
    recorded = manifest["arrays"] if manifest else {}
    paths = core_array_paths(scheme.key_suffix)

    lengths: dict[str, int] = {}
    for role, rel in paths.items():
        entry = recorded.get(rel) if manifest else None
        if manifest is not None and entry is None:
            raise CacheError(f"cache {MANIFEST_NAME} in {cache} does not list {rel}: the manifest is corrupt; re-run capture")
        lengths[role] = array_length(cache, rel, dtype_of(rel), entry["length"] if entry else None, complete)
    # side arrays listed in the manifest (streams): present and whole
    for rel, entry in recorded.items():
        if rel not in paths.values():
            array_length(cache, rel, dtype_of(rel), entry["length"], complete)

    check_same_length(cache, paths["keys"], lengths["keys"], paths["mass"], lengths["mass"], "one mass per key")
    check_same_length(cache, paths["base_keys"], lengths["base_keys"], paths["base_mass"], lengths["base_mass"], "one mass per key")
    check_same_length(
        cache, paths["token_row_ptr"], lengths["token_row_ptr"], paths["row_ptr"], lengths["row_ptr"], "one token pointer per row pointer"
    )
    check_same_length(
        cache, paths["base_ptr"], lengths["base_ptr"], paths["sample_row_ptr"], lengths["sample_row_ptr"], "one base vector per response"
    )

    arrays = {role: map_array(cache, rel, dtype_of(rel), lengths[role]) for role, rel in paths.items()}
    check_pointer(arrays["row_ptr"], cache / paths["row_ptr"], lengths["keys"], paths["keys"])
    check_pointer(arrays["token_row_ptr"], cache / paths["token_row_ptr"], None, None)
    check_pointer(arrays["sample_row_ptr"], cache / paths["sample_row_ptr"], lengths["row_ptr"] - 1, f"{paths['row_ptr']} (rows)")
    check_pointer(arrays["base_ptr"], cache / paths["base_ptr"], lengths["base_keys"], paths["base_keys"])

    if manifest is not None:
        n_resp = len(arrays["sample_row_ptr"]) - 1
        if manifest.get("n_responses") not in (None, n_resp):
            raise CacheError(
                f"cache {MANIFEST_NAME} in {cache} records {manifest['n_responses']} responses but the arrays hold {n_resp}: "
                "the manifest is corrupt; re-run capture"
            )
    if verify_checksums:
        verify_cache_checksums(cache, manifest)
    return CacheArrays(
        sample_row_ptr=arrays["sample_row_ptr"],
        row_ptr=arrays["row_ptr"],
        token_row_ptr=arrays["token_row_ptr"],
        keys=arrays["keys"],
        mass=arrays["mass"],
        base_ptr=arrays["base_ptr"],
        base_keys=arrays["base_keys"],
        base_mass=arrays["base_mass"],
        scheme=scheme,
        manifest=dict(manifest or {}),
        path=cache,
    )


def as_cache(cache: CacheArrays | str | os.PathLike) -> CacheArrays:
    """``cache`` itself when it is already open, else the cache opened at that path."""
    return cache if isinstance(cache, CacheArrays) else open_cache(cache)


def verify_cache_checksums(cache: Path, manifest: dict | None) -> None:
    """Re-hash every file the manifest lists and compare with its recorded sha256."""
    if manifest is None:
        raise CacheError(f"cache {cache} has no {MANIFEST_NAME} (a reference cache): there are no checksums to verify")
    if not manifest.get("complete"):
        raise CacheError(
            f"cache {cache} is unfinished (its writer did not close), so it has no checksums yet: resume or finish the capture"
        )
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or not checksums:
        raise CacheError(f"cache {MANIFEST_NAME} in {cache} records no checksums: the manifest is corrupt; re-run capture")
    for rel, digest in sorted(checksums.items()):
        path = cache / rel
        if not path.is_file():
            raise CacheError(f"cache file {path} is missing: the cache is incomplete; re-run capture")
        if sha256_file(path) != digest:
            raise CacheError(f"cache file {path} does not match its sha256 in {MANIFEST_NAME}: the file is corrupt; re-run capture")

