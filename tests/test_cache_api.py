"""The cache object knows its path, response metadata and streams; derived caches keep them;
scores come back as a table keyed by response id."""

from __future__ import annotations

import numpy as np
import pytest

from cache_factory import REFERENCE_CACHE, REFERENCE_WEIGHTS, make_responses, write_cache
from nex_interp.cache.ops import merge_rows, subset_cache
from nex_interp.cache.reader import as_cache, open_cache, open_stream, read_response_meta
from nex_interp.errors import CacheError


@pytest.fixture()
def cache_dir(tmp_path):
    return write_cache(tmp_path / "c", make_responses(7, seed=3))


def test_an_opened_cache_knows_its_path_metadata_and_streams(cache_dir):
    cache = open_cache(cache_dir)
    assert cache.path == cache_dir
    assert cache.response_meta == read_response_meta(cache_dir)
    assert cache.response_ids == [f"r{i}" for i in range(7)]
    assert [m["problem_id"] for m in cache.response_meta] == [i // 2 for i in range(7)]
    assert cache.stream_names == ("tokens",) and cache.has_stream("tokens") and not cache.has_stream("other")
    ptr, arrays = open_stream(cache_dir, "tokens")
    s = cache.stream("tokens")
    assert np.array_equal(s.ptr, ptr) and set(s.arrays) == {"ids", "entropy"}
    assert np.array_equal(s.of(4)["ids"], arrays["ids"][ptr[4] : ptr[5]])
    assert np.array_equal(np.diff(s.ptr), cache.response_tokens())  # the stream covers each response's row tokens
    with pytest.raises(CacheError, match="no stream 'other'"):
        cache.stream("other")
    assert as_cache(cache) is cache and as_cache(str(cache_dir)).path == cache_dir


def test_a_reference_cache_has_positions_for_ids_and_no_streams():
    cache = open_cache(REFERENCE_CACHE)
    assert cache.response_meta == [] and cache.response_ids == ["0"] and cache.stream_names == ()


@pytest.mark.parametrize("pick", [[2, 3, 4], [5, 0, 3], []])
def test_a_subset_keeps_its_responses_metadata_and_streams(cache_dir, pick):
    cache = open_cache(cache_dir)
    sub = subset_cache(cache, pick)
    assert sub.path is None and sub.n_responses == len(pick)
    assert sub.response_ids == [cache.response_ids[k] for k in pick]
    full, part = cache.stream("tokens"), sub.stream("tokens")
    for j, k in enumerate(pick):
        assert np.array_equal(part.of(j)["entropy"], full.of(k)["entropy"])
        a, b = cache.response_rows(k)
        c, d = sub.response_rows(j)
        assert b - a == d - c
    # a subset of a subset still points at the cache on disk
    if len(pick) >= 2:
        sub2 = subset_cache(sub, [1, 0])
        assert sub2.origin is cache and sub2.response_ids == [cache.response_ids[pick[1]], cache.response_ids[pick[0]]]
    with pytest.raises(Exception, match="response indices"):
        subset_cache(cache, [7])


def test_merged_rows_keep_the_responses(cache_dir):
    cache = open_cache(cache_dir)
    merged = merge_rows(cache, 2)
    assert merged.response_ids == cache.response_ids and merged.stream_names == cache.stream_names
    assert np.array_equal(merged.response_tokens(), cache.response_tokens())
    assert merged.manifest["row_multiple"] == 2


def test_old_import_places_of_the_cache_ops_still_work():
    from nex_interp import sensitivity
    from nex_interp.selection import nex_api

    assert nex_api.subset_cache is subset_cache and sensitivity.merge_rows is merge_rows


def test_score_table_is_keyed_by_response_id(cache_dir):
    from nex_interp.core import learn_weights, nex_score, score_responses
    from nex_interp.scores import score_table

    cache = open_cache(cache_dir)
    weights = learn_weights(cache)
    df = score_table(cache, weights, with_log_gap=True)
    assert df.index.name == "id" and list(df.index) == cache.response_ids
    assert {"response", "problem_id", "sample", "gmf", "n_rows", "n_tokens", "log_gap"} <= set(df.columns)
    g = score_responses(cache, weights)
    assert np.array_equal(df["gmf"].to_numpy(), g, equal_nan=True)
    assert df.loc["r4", "problem_id"] == 2 and df.loc["r4", "response"] == 4
    assert df["gmf"].mean() == pytest.approx(nex_score(g), nan_ok=True)
    ref = score_table(REFERENCE_CACHE, __import__("nex_interp.weights_io", fromlist=["x"]).load_weights(REFERENCE_WEIGHTS))
    assert list(ref.index) == ["0"] and ref["gmf"].notna().all()


def test_capture_returns_the_opened_cache(pico_qwen3_dir, tmp_path):
    pytest.importorskip("torch")
    from nex_interp.capture.engine import CaptureConfig, write_cache
    from nex_interp.capture import CapturedCache, capture_cache
    from nex_interp.errors import ConfigError
    from nex_interp.models.loader import load_model

    model = load_model(str(pico_qwen3_dir))
    rows = [{"id": f"q{i}", "problem_id": f"p{i}", "prompt": "a b c", "response": " ".join(["d e f g"] * (i + 1))} for i in range(3)]
    cache = capture_cache(model, rows, tmp_path / "c", row_tokens=4, progress=False)
    assert isinstance(cache, CapturedCache) and cache.path == tmp_path / "c"
    assert cache.response_ids == ["q0", "q1", "q2"] and cache.has_stream("tokens")
    assert cache.capture_report.n_captured == 3 and cache.capture_report.n_rows == cache.n_rows
    # the same bytes as write_cache writes
    write_cache(model, rows, tmp_path / "d", CaptureConfig(row_tokens=4, progress=False))
    again = open_cache(tmp_path / "d")
    assert np.array_equal(again.keys, cache.keys) and np.array_equal(again.mass, cache.mass)
    with pytest.raises(ConfigError, match="unknown capture setting"):
        capture_cache(model, rows, tmp_path / "e", row_size=4)
    with pytest.raises(ConfigError, match="not both"):
        capture_cache(model, rows, tmp_path / "e", CaptureConfig(), row_tokens=4)


class _WordTok:
    words = ["alpha", "beta", "gamma", "delta", "eps"]

    def decode(self, ids):
        return " ".join(self.words[int(i) % 5] for i in ids)


def test_annotation_export_and_agreement_from_a_cache_object(cache_dir, tmp_path):
    import json

    from nex_interp.annotation import agree_with_annotations, annotation_records, export_for_annotation
    from nex_interp.phase_agreement import annotations_from_token_labels

    cache = open_cache(cache_dir)
    recs = list(annotation_records(cache, limit=3))
    assert [r["id"] for r in recs] == ["r0", "r1", "r2"] and all(r["unit"] == "token" and r["spans"] == [] for r in recs)
    assert [r["n_tokens"] for r in recs] == cache.response_tokens()[:3].tolist()
    with_tok = list(annotation_records(cache, tokenizer=_WordTok(), limit=2))
    for r in with_tok:
        assert len(r["tokens"]) == len(r["token_offsets"]) == r["n_tokens"]
        assert all(r["text"][a:b] == t for (a, b), t in zip(r["token_offsets"], r["tokens"]))
    n = export_for_annotation(cache, tmp_path / "a.jsonl", limit=4)
    assert n == 4 and [json.loads(line)["id"] for line in (tmp_path / "a.jsonl").read_text().splitlines()] == ["r0", "r1", "r2", "r3"]
    # annotate every token of two responses as X: agreement is measured on exactly those
    labels = {rid: np.zeros(int(t), np.int8) for rid, t in zip(cache.response_ids[:2], cache.response_tokens()[:2])}
    rep, summary = agree_with_annotations(cache, annotations_from_token_labels(labels), tolerance=1)
    assert rep.n_responses == 2 and summary["unmatched_annotations"] == 0 and summary["params"]["rho"] == 0.95


def test_sweep_inputs_and_variants_come_from_the_cache(cache_dir):
    from nex_interp.selection.sample_efficiency import Variant
    from nex_interp.sensitivity import accuracy_from_caches, sweep_input

    item = sweep_input(cache_dir)
    assert (item.variant, item.rule, item.path) == ("test-model", "gt0", str(cache_dir))
    assert sweep_input(open_cache(cache_dir), "v", "r").variant == "v"
    assert accuracy_from_caches([item]) == {}  # the responses carry no correctness
    v = Variant.from_cache("v", cache_dir, 0.5)
    assert list(v.problem_ids) == [str(i // 2) for i in range(7)]
