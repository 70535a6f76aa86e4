"""open_cache refuses every kind of corruption with one line naming the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cache_factory import copy_reference, make_responses, write_cache
from nex_interp.cache.reader import open_cache, open_stream, read_response_meta
from nex_interp.errors import CacheError


def _edit_ptr(path: Path, fn) -> None:
    p = np.fromfile(path, dtype=np.int64)
    fn(p)
    p.tofile(path)


def _chop(path: Path, n_bytes: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - n_bytes])


def _swap(p):
    p[5], p[6] = p[6], p[5]


def _shift(p):
    p[:] = p + 1


# (name, mutation of a cache dir, regex the one-line message must match)
REFERENCE_CASES = [
    ("missing keys", lambda c: (c / "rows/keys.uint32").unlink(), r"rows/keys\.uint32 is missing"),
    ("missing base ptr", lambda c: (c / "base/row_ptr.int64").unlink(), r"base/row_ptr\.int64 is missing"),
    ("truncated keys", lambda c: _chop(c / "rows/keys.uint32", 400), r"row_ptr\.int64 points past the end of rows/keys\.uint32|has 26560 items but rows/w_sum"),
    ("truncated mass", lambda c: _chop(c / "rows/w_sum.float16", 200), r"rows/keys\.uint32 has 26660 items but rows/w_sum\.float16 has 26560"),
    ("odd byte count", lambda c: open(c / "rows/w_sum.float16", "ab").write(b"\0"), r"w_sum\.float16 has 53321 bytes, not a whole number of float16"),
    ("odd ptr bytes", lambda c: _chop(c / "rows/token_row_ptr.int64", 3), r"token_row_ptr\.int64 has 669 bytes"),
    ("row_ptr decreases", lambda c: _edit_ptr(c / "rows/row_ptr.int64", _swap), r"rows/row_ptr\.int64 decreases at entry 6"),
    ("token ptr decreases", lambda c: _edit_ptr(c / "rows/token_row_ptr.int64", _swap), r"token_row_ptr\.int64 decreases at entry 6"),
    ("row_ptr past end", lambda c: _edit_ptr(c / "rows/row_ptr.int64", lambda p: p.__setitem__(-1, p[-1] + 10)), r"row_ptr\.int64 points past the end of rows/keys\.uint32"),
    ("row_ptr short of end", lambda c: _edit_ptr(c / "rows/row_ptr.int64", lambda p: p.__setitem__(-1, p[-1] - 10)), r"row_ptr\.int64 ends before the end"),
    ("sample ptr out of range", lambda c: _edit_ptr(c / "rows/sample_row_ptr.int64", lambda p: p.__setitem__(-1, 99)), r"sample_row_ptr\.int64 points past the end of rows/row_ptr"),
    ("base ptr out of range", lambda c: _edit_ptr(c / "base/row_ptr.int64", lambda p: p.__setitem__(-1, 10**9)), r"base/row_ptr\.int64 points past the end of base/keys"),
    ("ptr not from 0", lambda c: _edit_ptr(c / "rows/row_ptr.int64", _shift), r"rows/row_ptr\.int64 starts at 1, not 0"),
    ("empty ptr", lambda c: (c / "rows/sample_row_ptr.int64").write_bytes(b""), r"rows/sample_row_ptr\.int64 has 0 \(one base vector per response\)"),
    ("both ptrs empty", lambda c: [(c / f).write_bytes(b"") for f in ("rows/sample_row_ptr.int64", "base/row_ptr.int64")], r"sample_row_ptr\.int64 is empty"),
    ("ptr lengths differ", lambda c: _chop(c / "rows/token_row_ptr.int64", 8), r"token_row_ptr\.int64 has 83 items but rows/row_ptr\.int64 has 84"),
    ("no rows dir", lambda c: [p.unlink() for p in (c / "rows").iterdir()] and (c / "rows").rmdir(), r"has no rows/ directory"),
    ("wide keys without manifest", lambda c: (c / "rows/keys.uint32").rename(c / "rows/keys.uint64"), r"keys\.uint64 but no manifest\.json"),
]


@pytest.mark.parametrize("name, mutate, pattern", REFERENCE_CASES, ids=[c[0] for c in REFERENCE_CASES])
def test_reference_cache_corruption(tmp_path, name, mutate, pattern):
    cache = copy_reference(tmp_path / "ref")
    mutate(cache)
    with pytest.raises(CacheError, match=pattern) as err:
        open_cache(cache)
    assert "\n" not in str(err.value)


def _set_manifest(c: Path, **changes) -> None:
    m = json.loads((c / "manifest.json").read_text())
    m.update(changes)
    (c / "manifest.json").write_text(json.dumps(m))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


OURS_CASES = [
    ("truncated keys", lambda c: _chop(c / "rows/keys.uint32", 8), r"rows/keys\.uint32 has \d+ items but manifest\.json records \d+: the file is truncated"),
    ("grown keys", lambda c: open(c / "rows/keys.uint32", "ab").write(b"\0" * 8), r"the file was changed after capture"),
    ("bad json", lambda c: (c / "manifest.json").write_text("{not json"), r"manifest\.json in .* is not valid JSON"),
    ("not our manifest", lambda c: (c / "manifest.json").write_text("[1, 2]"), r"is not a nex-sparse-cache manifest"),
    ("newer version", lambda c: _set_manifest(c, format_version=99), r"format_version 99, newer .*upgrade nex-interp"),
    ("bad scheme", lambda c: _set_manifest(c, key_scheme={"name": "huge"}), r"bad key_scheme"),
    ("bad arrays", lambda c: _set_manifest(c, arrays={"rows/keys.uint32": {"length": "x"}}), r"malformed 'arrays'"),
    ("array not listed", lambda c: _set_manifest(c, arrays={}), r"does not list rows/"),
    ("stream file missing", lambda c: (c / "tokens/ids.int32").unlink(), r"tokens/ids\.int32 is missing"),
    ("n_responses wrong", lambda c: _set_manifest(c, n_responses=7), r"records 7 responses but the arrays hold 4"),
]


@pytest.mark.parametrize("name, mutate, pattern", OURS_CASES, ids=[c[0] for c in OURS_CASES])
def test_manifest_cache_corruption(tmp_path, name, mutate, pattern):
    cache = write_cache(tmp_path / "c", make_responses(4, seed=11))
    mutate(cache)
    with pytest.raises(CacheError, match=pattern) as err:
        open_cache(cache)
    assert "\n" not in str(err.value)


def test_checksum_mismatch_found_only_when_asked(tmp_path):
    cache = write_cache(tmp_path / "c", make_responses(4, seed=12))
    _flip_byte(cache / "rows/keys.uint32")
    open_cache(cache)  # same length: structurally valid
    with pytest.raises(CacheError, match=r"rows/keys\.uint32 does not match its sha256"):
        open_cache(cache, verify_checksums=True)
    with pytest.raises(CacheError, match=r"no manifest\.json .*no checksums"):
        open_cache(copy_reference(tmp_path / "ref"), verify_checksums=True)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda p: p, r"does not exist: check the path"),
        (lambda p: (p.mkdir(), p)[1], r"is an empty directory"),
        (lambda p: (p.write_text("x"), p)[1], r"is a file, not a directory"),
    ],
    ids=["wrong path", "empty dir", "a file"],
)
def test_bad_cache_paths(tmp_path, make, pattern):
    path = make(tmp_path / "cache")
    with pytest.raises(CacheError, match=pattern):
        open_cache(path)


def test_stream_and_meta_corruption(tmp_path):
    cache = write_cache(tmp_path / "c", make_responses(4, seed=13))
    ptr = np.fromfile(cache / "tokens/ptr.int64", dtype=np.int64)
    ptr[2], ptr[3] = ptr[3], ptr[2] + 0
    if ptr[2] == ptr[3]:
        ptr[2] = ptr[3] + 1
    ptr.tofile(cache / "tokens/ptr.int64")
    with pytest.raises(CacheError, match=r"tokens/ptr\.int64 decreases"):
        open_stream(cache, "tokens")
    lines = (cache / "responses.jsonl").read_bytes().splitlines()
    (cache / "responses.jsonl").write_bytes(b"\n".join([lines[0], b"{oops" + lines[1][5:]] + lines[2:]) + b"\n")
    with pytest.raises(CacheError, match=r"responses\.jsonl line 2 is not valid JSON"):
        read_response_meta(cache)
    (cache / "responses.jsonl").unlink()
    with pytest.raises(CacheError, match=r"responses\.jsonl is missing"):
        read_response_meta(cache)
