"""The box-search task: seeded problems, reference traces per style, E/X labels, the step audit,
answer checking, trace statistics and the tokenizer."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from nex_interp.errors import ConfigError
from nex_interp.zoo.audit import audit_response
from nex_interp.zoo.stats import response_stats, row_labels, trace_stats
from nex_interp.zoo.task import (
    DEFAULT_SHAPE,
    EOS,
    N_KINDS,
    Problem,
    TaskShape,
    extract_answer,
    generate_problems,
    is_correct,
    kind_of,
    vocabulary,
)
from nex_interp.zoo.traces import HASTY_CHECKS, STYLES, label_tokens, reference_trace, training_examples

PROBLEMS = generate_problems(300, seed=5)


def _traces(style: str, seed: int = 0):
    rng = random.Random(seed)
    return [(p, reference_trace(p, style, rng)) for p in PROBLEMS]


def test_problems_are_seeded_and_have_one_box_holding_the_query():
    assert PROBLEMS == generate_problems(300, seed=5)
    assert PROBLEMS != generate_problems(300, seed=6)
    shape = DEFAULT_SHAPE
    targets, shared_counts = Counter(), Counter()
    for p in PROBLEMS:
        assert len(p.boxes) == shape.n_boxes and all(len(b) == shape.box_items for b in p.boxes)
        assert len(set(p.query)) == len(p.query) == shape.query_items and set(p.query) <= set(range(N_KINDS))
        assert [k for k in range(1, shape.n_boxes + 1) if p.holds_all(k)] == [p.target]
        assert shape.first_target <= p.target <= shape.n_boxes
        for k, box in enumerate(p.boxes, 1):
            kinds = [kind_of(x) for x in box]
            shared = [d for d in kinds if d in p.query]
            assert len(shared) == len(set(shared))  # at most one item of each query kind per box
            assert len(shared) == len(p.query) if k == p.target else 1 <= len(shared) < len(p.query)
            assert p.kinds(k) == set(kinds)
            if k != p.target:
                shared_counts[len(shared)] += 1
        items = [x for b in p.boxes for x in b]
        assert len(items) == len(set(items))  # no item repeats within a problem
        targets[p.target] += 1
    assert set(targets) == set(range(shape.first_target, shape.n_boxes + 1))
    assert set(shared_counts) == set(range(1, shape.query_items))  # distractors hold 1..4 query kinds


def test_prompt_round_trips_and_uses_only_the_vocabulary():
    vocab = set(vocabulary())
    p = PROBLEMS[0]
    words = p.prompt().split()
    assert words[0] == "<bos>" and words[-1] == ":" and set(words) <= vocab
    assert Problem.from_row(p.to_row()) == p
    assert p.box(p.answer) == p.boxes[p.target - 1] and p.box("b99") is None and p.box("x") is None
    # the query is named by slot, each kind after its slot label, as the goal line restates it
    tail = words[words.index("find") + 1: words.index("budget")]
    assert tail == [w for j, d in enumerate(p.query, 1) for w in (f"#{j}", f"*{d}")]
    assert len(words) == 1 + DEFAULT_SHAPE.n_boxes * (DEFAULT_SHAPE.box_items + 2) + 1 + 2 * len(p.query) + 3


def test_every_style_writes_only_vocabulary_tokens_and_labels_by_the_grammar():
    vocab = set(vocabulary())
    for style in STYLES:
        for _, t in _traces(style):
            assert set(t.tokens) <= vocab and EOS not in t.tokens
            assert list(t.labels) == label_tokens(t.tokens)
            spans = [i for i, lab in enumerate(t.labels) if lab == "E" and (i == 0 or t.labels[i - 1] == "X")]
            assert len(spans) == t.opens
            assert all(t.tokens[i] == "step" for i in spans)


def test_systematic_search_opens_boxes_in_order_until_the_target():
    for p, t in _traces("systematic"):
        a = audit_response(p, t.tokens)
        assert t.correct and is_correct(p, t.tokens) and t.opens == p.target and t.revisits == 0
        assert (a.opens_ok, a.checks_ok, a.verdicts_ok) == (a.opens, a.checks, a.verdicts)
        assert a.checks == p.target * len(p.query) and a.unparsed == 0


def test_hasty_search_commits_after_a_partial_check_and_is_mostly_wrong():
    traces = _traces("hasty")
    for p, t in traces:
        a = audit_response(p, t.tokens)
        assert a.opens_ok == a.opens and a.checks_ok == a.checks  # what it writes is true...
        taken = int(t.answer[1:])
        assert set(p.query[:HASTY_CHECKS]) <= p.kinds(taken)  # ...it just stops too early
        assert a.verdicts_ok == a.verdicts - (not t.correct)
    accuracy = sum(t.correct for _, t in traces) / len(traces)
    assert accuracy < 0.3


def test_wander_revisits_holds_and_runs_out_of_budget():
    traces = _traces("wander")
    for p, t in traces:
        a = audit_response(p, t.tokens)
        assert (a.opens_ok, a.checks_ok, a.verdicts_ok) == (a.opens, a.checks, a.verdicts)
        assert t.opens <= p.budget and a.revisits == t.revisits
        if t.answer == "none":
            assert t.opens == p.budget and not t.correct and t.tokens[-4:] == ("stop", ";", "ans", "none")
        else:
            assert t.correct
    assert any("hold" in t.tokens and t.correct for _, t in traces)
    acc = sum(t.correct for _, t in traces) / len(traces)
    assert 0.2 < acc < 0.8 and sum(t.revisits for _, t in traces) > 0


def test_audit_catches_wrong_copies_checks_and_verdicts():
    p, t = _traces("systematic")[0]
    toks = list(t.tokens)
    i = toks.index("open") + 2  # first item of the first opened box (step 1 open b1 ITEM ...)
    toks[i] = "699" if toks[i] != "699" else "698"
    j = toks.index("need") + 3  # need #1 *d ANSWER (the record's item of kind d, or no)
    toks[j] = "no" if toks[j] != "no" else "699"
    # a check that names the wrong kind for its slot disagrees whatever its verdict
    n2 = toks.index("need", j) + 2
    wrong_item = list(toks)
    wrong_item[n2] = f"*{p.query[2]}"
    assert audit_response(p, wrong_item).checks_ok == audit_response(p, toks).checks_ok - 1
    k = toks.index("drop") + 1
    toks[k] = "b12" if toks[k] != "b12" else "b11"
    a = audit_response(p, toks)
    assert (a.opens - a.opens_ok, a.checks - a.checks_ok, a.verdicts - a.verdicts_ok) == (1, 1, 1)
    assert a.items_listed == 12 * a.opens and a.items_listed - a.items_ok == 1
    assert audit_response(p, ["blah", "ans", "b1"]).unparsed == 1


def test_answer_extraction():
    p = PROBLEMS[0]
    assert extract_answer("take b3 ; ans b3 ans " + p.answer) == p.answer
    assert extract_answer("no answer here") is None
    assert is_correct(p, ["ans", p.answer]) and not is_correct(p, "stop ; ans none")


def test_training_examples_follow_the_mixture_and_reject_bad_ones():
    ex = list(training_examples(400, seed=3, mixture={"brief": 1, "systematic": 3}))
    assert ex == list(training_examples(400, seed=3, mixture={"brief": 1, "systematic": 3}))
    brief = sum(r[0] == "ans" for _, r in ex)
    assert 60 < brief < 140 and all(r[-1] == EOS for _, r in ex)
    with pytest.raises(ConfigError, match="unknown"):
        list(training_examples(1, 0, {"lazy": 1.0}))
    with pytest.raises(ConfigError, match="positive sum"):
        list(training_examples(1, 0, {"brief": 0.0}))


def test_task_shape_rejects_impossible_sizes():
    with pytest.raises(ConfigError, match="budget"):
        TaskShape(budget=5)
    with pytest.raises(ConfigError, match="too small"):
        TaskShape(item_hi=200)
    with pytest.raises(ConfigError, match="first_target"):
        TaskShape(first_target=13)
    with pytest.raises(ConfigError, match="query_items"):
        TaskShape(query_items=10)


def test_row_statistics_on_a_hand_made_response():
    labels = list("XXXXEEEEEEEEEEEEEEEEEXXXXXXXXXXXX") + list("EEEE")  # E span of 17, then 4 at the end
    tokens = [f"t{i % 9}" for i in range(len(labels))]
    s = response_stats(tokens, labels, row_tokens=8)
    assert s["rows"] == 5 and s["e_spans"] == 2 and s["e_span_tokens"] == [17, 4]
    assert row_labels(labels, 8) == ["E", "E", "E", "X", "E"]
    assert s["e_span_rows"] == [3, 1] and s["row_e_runs"] == [3, 1]
    assert s["distinct_types"] == 9 and s["late_token_novelty_share"] == 0.0
    with pytest.raises(ValueError):
        response_stats(tokens, labels[:-1], 8)


def test_reference_worked_solutions_meet_the_length_and_span_preconditions():
    for style in ("systematic", "wander"):
        st = trace_stats([(t.tokens, t.labels) for _, t in _traces(style)], row_tokens=8)
        assert st["median_response_tokens"] >= 256 and st["median_rows"] >= 30
        assert st["mean_generator_e_spans"] >= 5 and st["e_span_rows_ge2_share"] > 0.5
        assert st["late_token_novelty_share"] >= 0.05
        assert st["novelty_on_e_share"] > st["e_token_share"]  # new content enters on E


def test_tokenizer_round_trips_a_trace():
    from nex_interp.zoo.tokenizer import make_tokenizer

    tok = make_tokenizer()
    p, t = _traces("wander")[0]
    text = p.prompt() + " " + " ".join(t.tokens)
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text.split()) and tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_planned_zoo_mixtures_span_both_failure_modes():
    from nex_interp.zoo.plan import ALIASES, MERGE_ENDPOINTS, MIXTURE_FAMILY, MODELS
    from nex_interp.zoo.stats import mixture_report

    assert all(set(mix) <= set(STYLES) for mix in MODELS.values())
    assert set(MERGE_ENDPOINTS) <= set(MODELS) and set(MIXTURE_FAMILY) <= set(MODELS) and len(MIXTURE_FAMILY) >= 5
    assert ALIASES["thinking"] == MERGE_ENDPOINTS[1]
    reports = [mixture_report(MODELS[m], n=300, seed=2) for m in MIXTURE_FAMILY]
    opens = [r["mean_opens"] for r in reports]
    acc = [r["accuracy"] for r in reports]
    assert opens == sorted(opens) and len(set(opens)) == len(opens)  # exploration rises along the family
    best = acc.index(max(acc))
    assert 0 < best < len(acc) - 1 and acc[0] < 0.3 and acc[-1] < 0.7  # too little and too much both fail


def test_audit_and_labels_never_fail_on_garbage():
    rng = random.Random(0)
    vocab = vocabulary()
    grammar = ["step", "open", ":", ";", "need", "#1", "*3", "no", "drop", "hold", "take", "ans", "b3", "1", "250"]
    for _ in range(300):
        toks = [rng.choice(grammar if rng.random() < 0.7 else vocab) for _ in range(rng.randint(0, 40))]
        a = audit_response(PROBLEMS[0], toks)
        assert 0 <= a.opens_ok <= a.opens and 0 <= a.checks_ok <= a.checks and 0 <= a.verdicts_ok <= a.verdicts
        assert len(label_tokens(toks)) == len(toks)


def test_a_check_restates_the_records_item_of_its_kind():
    """Change 11: ``need #j *d ITEM`` copies the record's item of kind d; ``need #j *d no`` when the
    record holds none."""
    from nex_interp.zoo.task import check_answer, kind_of

    seen = {"item": 0, "no": 0}
    for p, t in _traces("systematic")[:20]:
        toks, box = list(t.tokens), None
        for i, w in enumerate(toks):
            if w == "open":
                box = p.boxes[int(toks[i + 1][1:]) - 1]
            if w == "need":
                kind, answer = int(toks[i + 2][1:]), toks[i + 3]
                holders = [x for x in box if kind_of(x) == kind]
                assert len(holders) <= 1
                assert answer == (str(holders[0]) if holders else "no") == check_answer(p, p.boxes.index(box) + 1, kind)
                seen["item" if holders else "no"] += 1
    assert min(seen.values()) > 20
