"""Phases against annotations: kappa, boundary F1 with tolerance, annotation import/export, and
``nex annotate export|agree``."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selection_synth import write_candidate_cache
from sklearn.metrics import cohen_kappa_score

from nex_interp.cli import main
from nex_interp.phase_agreement import (
    E,
    UNLABELLED,
    X,
    AnnotationError,
    agreement,
    annotations_from_token_labels,
    boundaries,
    boundary_score,
    hmm_token_labels,
    cohen_kappa,
    match_boundaries,
    parse_annotation,
    read_annotations,
    row_labels_to_tokens,
    spans_from_labels,
    write_annotations,
)


# ----------------------------------------------------------------------------- kappa
def test_kappa_hand_case():
    # p_o = 3/4; p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2 -> kappa = 0.5
    assert cohen_kappa(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])) == pytest.approx(0.5)
    assert cohen_kappa(np.array([1, 0, 1]), np.array([1, 0, 1])) == 1.0
    assert math.isnan(cohen_kappa(np.array([1, 1]), np.array([1, 1])))  # one category: undefined
    assert math.isnan(cohen_kappa(np.array([-1, -1]), np.array([1, 0])))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1, 0, 1]), st.sampled_from([-1, 0, 1])), min_size=2, max_size=60))
def test_kappa_matches_sklearn_on_labelled_positions(pairs):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    both = (a != UNLABELLED) & (b != UNLABELLED)
    ours = cohen_kappa(a, b)
    if both.sum() == 0 or len(np.union1d(a[both], b[both])) < 2:
        assert math.isnan(ours)
        return
    with np.errstate(all="ignore"):
        ref = cohen_kappa_score(a[both], b[both])
    if math.isnan(ref):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-12)


# ----------------------------------------------------------------------------- boundaries
def test_boundaries_skip_unlabelled_neighbours():
    assert boundaries(np.array([1, 1, 0, 0, 1])).tolist() == [2, 4]
    assert boundaries(np.array([1, -1, 0, 0])).tolist() == []
    assert boundaries(np.array([1])).tolist() == []


def _brute_matching(p, g, tol):
    best = 0
    for k in range(min(len(p), len(g)), 0, -1):
        for ps in itertools.combinations(p, k):
            for gs in itertools.permutations(g, k):
                if all(abs(a - b) <= tol for a, b in zip(ps, gs)):
                    return k
    return best


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=5, unique=True), st.lists(st.integers(0, 30), max_size=5, unique=True),
       st.integers(0, 4))
def test_greedy_matching_is_maximum(p, g, tol):
    assert match_boundaries(np.array(p), np.array(g), tol) == _brute_matching(p, g, tol)


def test_boundary_f1_tolerance_and_conventions():
    gold = np.array([1] * 5 + [0] * 5 + [1] * 5)  # boundaries 5, 10
    pred = np.array([1] * 6 + [0] * 5 + [1] * 4)  # boundaries 6, 11
    assert boundary_score(pred, gold, 0).f1 == 0.0
    assert boundary_score(pred, gold, 1).f1 == 1.0
    half = np.array([1] * 6 + [0] * 9)  # one boundary at 6
    s = boundary_score(half, gold, 1)
    assert (s.precision, s.recall) == (1.0, 0.5) and s.f1 == pytest.approx(2 / 3)
    flat = np.ones(15, dtype=int)
    assert boundary_score(flat, flat, 2).f1 == 1.0  # neither has a boundary: full agreement
    z = boundary_score(flat, gold, 2)
    assert (z.precision, z.recall, z.f1) == (0.0, 0.0, 0.0)


def test_agreement_pools_tokens_and_micro_averages_boundaries():
    gold = {"a": np.array([1, 1, 0, 0, 0, 1]), "b": np.array([0, 0, 1, 1])}
    pred = {"a": np.array([1, 1, 1, 0, 0, 1]), "b": np.array([0, 0, 1, 1]), "zzz": np.array([1])}
    rep = agreement(pred, gold, tolerance=1)
    allp = np.concatenate([pred["a"], pred["b"]])
    allg = np.concatenate([gold["a"], gold["b"]])
    assert rep.cohen_kappa == pytest.approx(cohen_kappa_score(allp, allg))
    assert rep.n_responses == 2 and rep.n_tokens == 10
    assert rep.boundary_f1 == 1.0  # boundaries 3 vs 2 (within 1), 5 vs 5, 2 vs 2
    assert [r["id"] for r in rep.per_response] == ["a", "b"]
    with pytest.raises(AnnotationError, match="covers 3 tokens but the cache has 4"):
        agreement({"b": np.zeros(4)}, {"b": np.zeros(3)})
    with pytest.raises(AnnotationError, match="no annotated response"):
        agreement({"q": np.zeros(2)}, gold)


# ----------------------------------------------------------------------------- annotations
def test_token_and_char_annotations_to_token_labels():
    a = parse_annotation({"id": "r", "unit": "token", "spans": [{"start": 0, "end": 2, "label": "E"}, {"start": 3, "end": 5, "label": "X"}]})
    assert a.token_labels(6).tolist() == [E, E, UNLABELLED, X, X, UNLABELLED]
    with pytest.raises(AnnotationError, match="runs past"):
        a.token_labels(4)
    # characters: tokens "try"(0-3) " 5"(3-5) " need"(5-10) " 9"(10-12); E covers "try 5", X the rest
    c = parse_annotation({"id": "r", "unit": "char", "token_offsets": [[0, 3], [3, 5], [5, 10], [10, 12]],
                          "spans": [{"start": 0, "end": 5, "label": "E"}, {"start": 6, "end": 12, "label": "X"}]})
    assert c.token_labels().tolist() == [E, E, X, X]
    no_offsets = parse_annotation({"id": "r", "unit": "char", "spans": []})
    with pytest.raises(AnnotationError, match="token_offsets"):
        no_offsets.token_labels(3)


@pytest.mark.parametrize(
    "obj, msg",
    [({"spans": []}, "no 'id'"), ({"id": 1, "unit": "word", "spans": []}, "unit"), ({"id": 1, "spans": {}}, "spans"),
     ({"id": 1, "spans": [{"start": 0, "end": 2}]}, "needs start, end and label"),
     ({"id": 1, "spans": [{"start": 3, "end": 2, "label": "E"}]}, "not a valid span"),
     ({"id": 1, "spans": [{"start": 0, "end": 2, "label": "Q"}]}, "not E or X")],
)
def test_bad_annotations_are_named(obj, msg):
    with pytest.raises(AnnotationError, match=msg):
        parse_annotation(obj)


def test_annotation_files_round_trip_and_errors(tmp_path):
    labels = {"r1": ["E", "E", "X", "X", "X", "E"], "r2": [0, 0, 1]}
    anns = annotations_from_token_labels(labels)
    assert anns["r1"].token_labels().tolist() == [1, 1, 0, 0, 0, 1]
    assert spans_from_labels(np.array([1, 1, -1, 0])) == [{"start": 0, "end": 2, "label": "E"}, {"start": 3, "end": 4, "label": "X"}]
    f = write_annotations(anns, tmp_path / "a.jsonl")
    back = read_annotations(f)
    assert {k: v.token_labels().tolist() for k, v in back.items()} == {k: v.token_labels().tolist() for k, v in anns.items()}
    f.write_text(f.read_text() + "{oops\n")
    with pytest.raises(AnnotationError, match="line 3"):
        read_annotations(f)
    dup = tmp_path / "d.jsonl"
    dup.write_text('{"id": "a", "spans": []}\n{"id": "a", "spans": []}\n')
    with pytest.raises(AnnotationError, match="annotated twice"):
        read_annotations(dup)


def test_zoo_generator_labels_feed_the_same_code():
    from nex_interp.zoo.task import generate_problems
    from nex_interp.zoo.traces import label_tokens, reference_trace
    import random

    prob = generate_problems(1, seed=3)[0]
    trace = reference_trace(prob, "wander", random.Random(0))
    labels = label_tokens(trace.tokens)
    assert labels == list(trace.labels)
    anns = annotations_from_token_labels({"z": labels})
    gold = anns["z"].token_labels()
    assert gold.tolist() == [1 if x == "E" else 0 for x in labels]
    rep = agreement({"z": gold.copy()}, {"z": gold}, tolerance=0)
    assert rep.boundary_f1 == 1.0 and (rep.cohen_kappa == 1.0 or math.isnan(rep.cohen_kappa))


def test_row_labels_to_tokens():
    assert row_labels_to_tokens(np.array([1, 0, -1]), np.array([2, 3, 1])).tolist() == [1, 1, 0, 0, 0, -1]
    with pytest.raises(ValueError):
        row_labels_to_tokens(np.array([1]), np.array([1, 2]))


# ----------------------------------------------------------------------------- commands
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_candidate_cache(tmp_path_factory.mktemp("ann") / "cache", n_problems=2, n_samples=2, seed=5)


def test_export_then_agree_with_the_hmm_itself(cache, tmp_path, capsys):
    from nex_interp.cache.reader import open_cache
    from nex_interp.core import NexParams
    from nex_interp.selection import nex_api

    exported = tmp_path / "export.jsonl"
    assert main(["annotate", "export", str(cache), "-o", str(exported)]) == 0
    recs = [json.loads(line) for line in exported.read_text().splitlines()]
    c = open_cache(cache)
    assert len(recs) == 4 and all(r["spans"] == [] for r in recs)
    assert recs[0]["n_tokens"] == int(c.token_row_ptr[c.sample_row_ptr[1]])
    assert recs[0]["rows"][0] == [0, int(c.token_row_ptr[1])]
    # annotate the exported records with the HMM's own phases: perfect agreement
    labelled, toks = [], []
    hmm = hmm_token_labels(c)
    for k, r in enumerate(recs):
        start, stop = c.response_rows(k)
        tok = row_labels_to_tokens(nex_api.row_phases(c, k, NexParams()), np.diff(c.token_row_ptr[start : stop + 1]))
        assert np.array_equal(hmm[k], tok) and len(tok) == r["n_tokens"] and set(tok.tolist()) <= {-1, 0, 1}
        labelled.append({**r, "unit": "token", "spans": spans_from_labels(tok)})
        toks.append(tok)
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in labelled))
    out = tmp_path / "agree"
    assert main(["annotate", "agree", str(cache), "--annotations", str(ann), "-o", str(out), "--tolerance", "0"]) == 0
    summary = json.loads((out / "agreement.json").read_text())
    assert summary["boundary_f1"] == 1.0 and summary["cohen_kappa"] == pytest.approx(1.0)
    assert summary["n_responses"] == 4 and (out / "agreement.json.provenance.json").is_file()
    per = pd.read_csv(out / "agreement_per_response.csv")
    assert len(per) == 4
    # every label flipped: no token agrees, kappa = -p_e / (1 - p_e)
    allt = np.concatenate(toks)
    allt = allt[allt != UNLABELLED]
    flipped = [{**r, "spans": [{**s, "label": "X" if s["label"] == "E" else "E"} for s in r["spans"]]} for r in labelled]
    ann.write_text("".join(json.dumps(r) + "\n" for r in flipped))
    assert main(["annotate", "agree", str(cache), "--annotations", str(ann), "-o", str(out)]) == 0
    assert json.loads((out / "agreement.json").read_text())["cohen_kappa"] == pytest.approx(cohen_kappa_score(allt, 1 - allt))
    assert main(["annotate", "agree", str(cache), "--annotations", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x")]) == 2
    assert "annotation file" in capsys.readouterr().err


class _WordTok:
    vocab = ["try", "7", "need", "3"]

    def decode(self, ids):
        return " ".join(self.vocab[i] for i in ids)


class _BpeTok:
    vocab = ["Let", "'s", " go", "\ufffd", " ok"]  # id 3: half of a split character

    def decode(self, ids):
        if ids == [3]:
            return "\ufffd"
        return "".join("é" if i == 3 else self.vocab[i] for i in ids)


def test_token_offsets_for_word_level_and_bpe_tokenizers():
    from nex_interp.annotation import token_offsets

    text, pieces, offs = token_offsets(_WordTok(), [0, 1, 2, 3])
    assert text == "try 7 need 3" and offs == [[0, 3], [4, 5], [6, 10], [11, 12]]
    text, pieces, offs = token_offsets(_BpeTok(), [0, 1, 2, 3, 4])
    assert text == "Let's goé ok"
    assert offs == [[0, 3], [3, 5], [5, 8], [8, 8], [9, 12]]  # the split character gets an empty span
    assert all(text[a:b] == p for p, (a, b) in zip(pieces, offs) if b > a)
