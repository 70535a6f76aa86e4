"""Cache writer -> reader round trips, streams, metadata, wide keys and resume after interruption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_factory import CORE_FILES, REFERENCE_CACHE, make_responses, write_cache
from nex_interp.cache.reader import open_cache, open_stream, read_response_meta
from nex_interp.cache.writer import CacheWriter
from nex_interp.errors import CacheError, ConfigError
from nex_interp.keys import KeyScheme


def _check_round_trip(cache, responses, scheme):
    assert cache.n_responses == len(responses)
    assert cache.scheme == scheme
    assert cache.keys.dtype == scheme.key_dtype and cache.mass.dtype == np.float16
    for i, r in enumerate(responses):
        a, b = cache.response_rows(i)
        assert b - a == len(r.rows)
        for j, (keys, mass, n_tok) in zip(range(a, b), r.rows):
            s, e = cache.row_ptr[j], cache.row_ptr[j + 1]
            np.testing.assert_array_equal(cache.keys[s:e], keys)
            np.testing.assert_array_equal(cache.mass[s:e], mass.astype(np.float16))
            assert cache.token_row_ptr[j + 1] - cache.token_row_ptr[j] == n_tok
        s, e = cache.base_ptr[i], cache.base_ptr[i + 1]
        np.testing.assert_array_equal(cache.base_keys[s:e], r.base_keys)
        np.testing.assert_array_equal(cache.base_mass[s:e], r.base_mass.astype(np.float16))


def test_reference_cache_opens_without_manifest():
    cache = open_cache(REFERENCE_CACHE)
    assert (cache.n_responses, cache.n_rows, cache.n_entries, len(cache.base_keys)) == (1, 83, 26660, 3514)
    assert int(cache.token_row_ptr[-1]) == 2646
    assert cache.scheme == KeyScheme.ref22() and cache.manifest == {}
    assert isinstance(cache.keys, np.memmap) and not cache.keys.flags.writeable
    assert read_response_meta(REFERENCE_CACHE) == []


def test_round_trip_with_streams_and_meta(tmp_path):
    responses = make_responses(7, seed=1)
    write_cache(tmp_path / "c", responses)
    cache = open_cache(tmp_path / "c", verify_checksums=True)
    _check_round_trip(cache, responses, KeyScheme.ref22())
    m = cache.manifest
    assert m["complete"] is True and m["model"] == "test-model" and m["row_tokens"] == 32
    assert m["n_responses"] == 7 and m["n_entries"] == cache.n_entries and m["n_tokens"] == int(cache.token_row_ptr[-1])
    assert set(m["checksums"]) >= set(CORE_FILES) | {"responses.jsonl", "tokens/ptr.int64", "tokens/ids.int32"}
    assert [x["id"] for x in read_response_meta(tmp_path / "c")] == [f"r{i}" for i in range(7)]
    ptr, arrays = open_stream(tmp_path / "c", "tokens")
    assert sorted(arrays) == ["entropy", "ids"] and arrays["ids"].dtype == np.int32
    for i, r in enumerate(responses):
        np.testing.assert_array_equal(arrays["ids"][ptr[i] : ptr[i + 1]], r.streams["tokens"]["ids"])
        np.testing.assert_array_equal(arrays["entropy"][ptr[i] : ptr[i + 1]], r.streams["tokens"]["entropy"])
    with pytest.raises(CacheError, match="no stream 'logits'"):
        open_stream(tmp_path / "c", "logits")


def test_written_reference_cache_is_byte_identical(tmp_path):
    ref = open_cache(REFERENCE_CACHE)
    rows = [
        (ref.keys[ref.row_ptr[j] : ref.row_ptr[j + 1]], ref.mass[ref.row_ptr[j] : ref.row_ptr[j + 1]].astype(np.float32),
         int(ref.token_row_ptr[j + 1] - ref.token_row_ptr[j]))
        for j in range(ref.n_rows)
    ]
    w = CacheWriter(tmp_path / "c", KeyScheme.for_model(36, 9728), {"model": "ref"})
    w.add_response(rows, ref.base_keys, ref.base_mass, {"id": "r0"})
    w.close()
    for rel in CORE_FILES:
        assert (tmp_path / "c" / rel).read_bytes() == (REFERENCE_CACHE / rel).read_bytes(), rel


def test_wide_scheme_round_trip(tmp_path):
    scheme = KeyScheme.for_model(96, 70000)
    assert scheme.name == "wide"
    responses = make_responses(4, seed=2, scheme=scheme, n_layers=96, d_mlp=70000, streams=False)
    write_cache(tmp_path / "w", responses, scheme=scheme, n_layers=96, d_mlp=70000)
    assert (tmp_path / "w" / "rows" / "keys.uint64").exists() and not (tmp_path / "w" / "rows" / "keys.uint32").exists()
    cache = open_cache(tmp_path / "w")
    _check_round_trip(cache, responses, scheme)
    layer, unit = scheme.unpack(cache.keys[:])
    assert layer.max() < 96 and unit.max() < 70000
    assert cache.manifest["key_scheme"] == {"name": "wide", "n_layers": 96, "d_mlp": 70000}


def test_mass_is_clipped_to_float16_range(tmp_path):
    keys = np.array([1, 2, 3, 4], dtype=np.uint32)
    mass = np.array([1e6, -1e6, np.nan, 0.5], dtype=np.float32)
    w = CacheWriter(tmp_path / "c", KeyScheme.ref22(), {})
    w.add_response([(keys, mass, 4)], keys, mass, {})
    w.close()
    got = open_cache(tmp_path / "c").mass[:]
    assert got[0] == np.float16(65504) and got[1] == np.float16(-65504) and np.isnan(got[2]) and got[3] == np.float16(0.5)


def test_writer_rejects_bad_input(tmp_path):
    w = CacheWriter(tmp_path / "c", KeyScheme.ref22(), {"model": "m"})
    with pytest.raises(ConfigError, match="negative keys"):
        w.add_response([(np.array([-1]), np.array([1.0]), 1)], np.zeros(0, np.uint32), np.zeros(0), {})
    with pytest.raises(ConfigError, match="beyond uint32"):
        w.add_response([(np.array([2**40], dtype=np.uint64), np.array([1.0]), 1)], np.zeros(0, np.uint32), np.zeros(0), {})
    with pytest.raises(ConfigError, match="as long as its keys"):
        w.add_response([(np.array([1, 2]), np.array([1.0]), 1)], np.zeros(0, np.uint32), np.zeros(0), {})
    with pytest.raises(ConfigError, match="differ in length"):
        w.add_response([], np.zeros(0, np.uint32), np.zeros(0), {}, {"tokens": {"a": np.zeros(3), "b": np.zeros(2)}})
    w.add_response([], np.zeros(0, np.uint32), np.zeros(0), {"id": "x"}, {"tokens": {"a": np.zeros(3)}})
    with pytest.raises(CacheError, match="already in cache"):
        w.add_response([], np.zeros(0, np.uint32), np.zeros(0), {"id": "x"}, {"tokens": {"a": np.zeros(3)}})
    with pytest.raises(ConfigError, match="differ from the cache's streams"):
        w.add_response([], np.zeros(0, np.uint32), np.zeros(0), {"id": "y"})
    with pytest.raises(ConfigError, match="set by the cache writer"):
        CacheWriter(tmp_path / "d", KeyScheme.ref22(), {"n_rows": 3})
    w.close()
    # failed calls left nothing behind: one response, and the cache verifies
    cache = open_cache(tmp_path / "c", verify_checksums=True)
    assert cache.n_responses == 1 and cache.n_entries == 0


def test_existing_cache_needs_resume_and_same_settings(tmp_path):
    write_cache(tmp_path / "c", make_responses(2, seed=3))
    with pytest.raises(CacheError, match="already exists with 2 responses"):
        CacheWriter(tmp_path / "c", KeyScheme.ref22(), {"model": "test-model", "rule": "gt0", "row_tokens": 32})
    with pytest.raises(CacheError, match="model='test-model', not 'other'"):
        CacheWriter(tmp_path / "c", KeyScheme.ref22(), {"model": "other", "rule": "gt0", "row_tokens": 32}, resume=True)
    with pytest.raises(CacheError, match="key scheme"):
        CacheWriter(tmp_path / "c", KeyScheme("wide", 80, 100), {"model": "test-model", "rule": "gt0", "row_tokens": 32}, resume=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("mine")
    with pytest.raises(CacheError, match="not a nex-interp cache"):
        CacheWriter(tmp_path / "junk", KeyScheme.ref22(), {}, resume=True)


def test_resume_a_closed_cache_appends(tmp_path):
    responses = make_responses(5, seed=4)
    write_cache(tmp_path / "c", responses[:3])
    w = CacheWriter(tmp_path / "c", KeyScheme.ref22(), {"model": "test-model", "rule": "gt0", "row_tokens": 32}, resume=True)
    assert w.n_done == 3 and w.done_ids == {"r0", "r1", "r2"}
    assert open_cache(tmp_path / "c").manifest["complete"] is False
    for r in responses[3:]:
        w.add_response(r.rows, r.base_keys, r.base_mass, r.meta, r.streams)
    w.close()
    write_cache(tmp_path / "whole", responses)
    _assert_same_files(tmp_path / "c", tmp_path / "whole")
    _check_round_trip(open_cache(tmp_path / "c", verify_checksums=True), responses, KeyScheme.ref22())


def _assert_same_files(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file() and p.name != "manifest.json")
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    for m in (ma, mb):
        m.pop("created"), m.pop("updated")
    assert ma == mb


def _finish_and_compare(w, responses, path: Path, whole: Path) -> None:
    """Add the responses the resumed writer ``w`` lacks, close it, and check its files equal a cache of
    all ``responses`` written in one go at ``whole``."""
    for r in responses:
        if r.meta["id"] not in w.done_ids:
            w.add_response(r.rows, r.base_keys, r.base_mass, r.meta, r.streams)
    w.close()
    write_cache(whole, responses)
    _assert_same_files(path, whole)


def test_unclosed_cache_with_garbage_past_commit_is_valid_and_resumes(tmp_path):
    responses = make_responses(6, seed=5)
    write_cache(tmp_path / "c", responses[:4], close=False)
    # an interrupted append: garbage past the commit point in every file
    for p in (tmp_path / "c").rglob("*"):
        if p.is_file() and p.name != "manifest.json":
            with open(p, "ab") as f:
                f.write(b"\x07" * 13)
    cache = open_cache(tmp_path / "c")
    assert cache.n_responses == 4 and cache.manifest["complete"] is False
    _check_round_trip(cache, responses[:4], KeyScheme.ref22())
    assert len(read_response_meta(tmp_path / "c")) == 4
    ptr, arrays = open_stream(tmp_path / "c", "tokens")
    assert len(ptr) == 5 and len(arrays["ids"]) == ptr[-1]
    with pytest.raises(CacheError, match="unfinished"):
        open_cache(tmp_path / "c", verify_checksums=True)
    w = CacheWriter(tmp_path / "c", KeyScheme.ref22(), {"model": "test-model", "rule": "gt0", "row_tokens": 32}, resume=True)
    assert w.n_done == 4
    _finish_and_compare(w, responses, tmp_path / "c", tmp_path / "whole")


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from cache_factory import make_responses
    from nex_interp.cache import writer as W
    from nex_interp.keys import KeyScheme

    kill_on, counter = {kill_on!r}, {{"n": 0}}
    def kill_at(name, orig):
        def wrapped(*a, **k):
            if name == kill_on[0]:
                counter["n"] += 1
                if counter["n"] == kill_on[1]:
                    os.kill(os.getpid(), signal.SIGKILL)
            return orig(*a, **k)
        return wrapped
    W.write_manifest = kill_at("manifest", W.write_manifest)
    W.os.fsync = kill_at("fsync", W.os.fsync)
    w = W.CacheWriter({path!r}, KeyScheme.ref22(), {{"model": "test-model", "rule": "gt0", "row_tokens": 32}})
    for r in make_responses(6, seed=6):
        w.add_response(r.rows, r.base_keys, r.base_mass, r.meta, r.streams)
    w.close()
    """
)


@pytest.mark.parametrize(
    "kill_on, committed",
    [
        (("manifest", 4), 2),  # data of response 3 written and fsynced, commit record not
        (("fsync", 3 * 14 + 5), 3),  # response 4 half flushed (14 files per response)
    ],
)
def test_killed_writer_resumes_with_nothing_lost_or_doubled(tmp_path, kill_on, committed):
    script = _KILLER.format(tests=str(Path(__file__).parent), kill_on=kill_on, path=str(tmp_path / "c"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -9, proc.stderr
    cache = open_cache(tmp_path / "c")
    assert cache.n_responses == committed and cache.manifest["complete"] is False
    responses = make_responses(6, seed=6)
    _check_round_trip(cache, responses[:committed], KeyScheme.ref22())
    w = CacheWriter(tmp_path / "c", KeyScheme.ref22(), {"model": "test-model", "rule": "gt0", "row_tokens": 32}, resume=True)
    assert w.done_ids == {f"r{i}" for i in range(committed)}
    _finish_and_compare(w, responses, tmp_path / "c", tmp_path / "whole")
    _check_round_trip(open_cache(tmp_path / "c", verify_checksums=True), responses, KeyScheme.ref22())


def test_open_does_not_read_keys(tmp_path, monkeypatch):
    """Opening maps the keys and mass arrays instead of reading them (np.fromfile/np.load are never called)."""
    write_cache(tmp_path / "c", make_responses(3, seed=7))

    def boom(*a, **k):
        raise AssertionError("open_cache read an array whole")

    monkeypatch.setattr(np, "fromfile", boom)
    monkeypatch.setattr(np, "load", boom)
    cache = open_cache(tmp_path / "c")
    assert isinstance(cache.keys, np.memmap) and isinstance(cache.mass, np.memmap) and isinstance(cache.base_keys, np.memmap)


_row = st.tuples(
    st.lists(st.tuples(st.integers(0, 63), st.integers(0, 65535), st.one_of(st.floats(-1e5, 1e5, width=32), st.just(float("nan")))), max_size=6),
    st.integers(0, 40),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_row, max_size=4), min_size=1, max_size=3), st.integers(0, 2))
def test_round_trip_property(tmp_path_factory, responses, interrupt_after):
    """Any responses written (with an interruption and resume part-way) read back exactly."""
    scheme = KeyScheme.ref22()
    path = tmp_path_factory.mktemp("prop") / "c"
    built = []
    for i, rows in enumerate(responses):
        rs = []
        for entries, n_tok in rows:
            keys = scheme.pack(np.array([e[0] for e in entries], dtype=np.int64), np.array([e[1] for e in entries], dtype=np.int64))
            rs.append((keys, np.array([e[2] for e in entries], dtype=np.float32), n_tok))
        base = np.unique(np.concatenate([r[0] for r in rs])) if rs else np.zeros(0, np.uint32)
        built.append((rs, base, np.ones(len(base), np.float32), {"id": str(i)}))
    fields = {"model": "m"}
    w = CacheWriter(path, scheme, fields)
    for r in built[:interrupt_after]:
        w.add_response(*r)
    w.abandon()
    w = CacheWriter(path, scheme, fields, resume=True)
    assert w.n_done == min(interrupt_after, len(built))
    for r in built:
        if r[3]["id"] not in w.done_ids:
            w.add_response(*r)
    w.close()
    cache = open_cache(path, verify_checksums=True)
    assert cache.n_responses == len(built)
    for i, (rows, base, _, _) in enumerate(built):
        a, b = cache.response_rows(i)
        assert b - a == len(rows)
        for j, (keys, mass, n_tok) in zip(range(a, b), rows):
            s, e = cache.row_ptr[j], cache.row_ptr[j + 1]
            np.testing.assert_array_equal(cache.keys[s:e], keys)
            np.testing.assert_array_equal(cache.mass[s:e], np.clip(mass, -65504, 65504).astype(np.float16))
            assert cache.token_row_ptr[j + 1] - cache.token_row_ptr[j] == n_tok
        np.testing.assert_array_equal(cache.base_keys[cache.base_ptr[i] : cache.base_ptr[i + 1]], base)
