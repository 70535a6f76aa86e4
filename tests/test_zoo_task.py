"""The zoo's path-search task: seeded problems, worked solutions, E/X labels, answer checking."""

from __future__ import annotations

import random

import pytest

from nex_interp.errors import ConfigError
from nex_interp.zoo.task import (
    LEVELS,
    Problem,
    extract_answer,
    generate_problems,
    instruct_answer,
    is_correct,
    label_tokens,
    make_problem,
    solution,
    training_examples,
    vocabulary,
    worked_solution,
)


def _children(p: Problem) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for a, b in p.edges:
        out.setdefault(a, []).append(b)
    return out


def test_problems_are_seeded_and_well_formed():
    a = generate_problems(60, seed=3)
    assert a == generate_problems(60, seed=3)
    assert a != generate_problems(60, seed=4)
    for p in a:
        n_branches, lo, hi = LEVELS[p.level]
        assert len(p.branches) == n_branches and all(lo <= len(b) <= hi for b in p.branches)
        nodes = [p.start, *(x for b in p.branches for x in b)]
        assert len(nodes) == len(set(nodes))  # distinct names: a tree
        kids = _children(p)
        assert sorted(kids[p.start]) == sorted(b[0] for b in p.branches)
        # walking the edges from the goal back to the start gives the answer
        parent = {b: a for a, b in p.edges}
        path = [p.goal]
        while path[-1] != p.start:
            path.append(parent[path[-1]])
        assert tuple(reversed(path)) == p.answer
    assert {p.level for p in a} == set(LEVELS)
    with pytest.raises(ConfigError, match="level"):
        make_problem(random.Random(0), 9, "x")


def test_edges_are_shuffled_and_rows_round_trip():
    ps = generate_problems(30, seed=0)
    in_chain_order = sum(p.edge_order == tuple(sorted(p.edge_order)) for p in ps)
    assert in_chain_order <= 1
    p = ps[0]
    row = p.to_row()
    assert row["prompt"] == p.prompt() and row["prompt"].startswith("<bos> edges ") and row["prompt"].endswith(":")
    assert Problem.from_row(row) == p and row["answer"] == list(p.answer)


def _replay(p: Problem, tokens: list[str]) -> None:
    """Walk a worked solution: every followed edge exists, dead ends are leaves, the goal is reached."""
    kids = _children(p)
    i, tried = 0, set()
    while tokens[i] == "try":
        first = int(tokens[i + 1])
        assert first in kids[p.start] and first not in tried
        tried.add(first)
        node, j = first, i + 2
        while tokens[j] not in ("dead", "goal"):
            assert int(tokens[j]) in kids[node]
            node, j = int(tokens[j]), j + 1
        if tokens[j] == "dead":
            assert node not in kids and node != p.goal and tokens[j + 1] == "back"
            i = j + 2
            continue
        assert node == p.goal
        assert tokens[j + 1 :] == instruct_answer(p)
        return
    raise AssertionError(f"solution does not reach the goal: {tokens}")


def test_worked_solutions_are_correct_and_explore_then_exploit():
    rng = random.Random(0)
    lengths, backtracks = [], 0
    for p in generate_problems(300, seed=1):
        toks = worked_solution(p, rng)
        _replay(p, toks)
        assert is_correct(p, " ".join(toks))
        assert set(toks) <= set(vocabulary())
        lengths.append(len(toks))
        backtracks += "back" in toks
    # every worked solution spans at least 3 rows of 4 tokens (NEX skips shorter responses)
    assert min(lengths) >= 9
    assert backtracks > 120  # many include failed branches and backtracking


def test_labels_mark_proposals_and_backtracking_as_explore():
    toks = "try 7 2 dead back try 12 9 5 goal ans 3 12 9 5".split()
    labels = label_tokens(toks)
    assert len(labels) == len(toks)
    assert [t for t, l in zip(toks, labels) if l == "E"] == ["try", "7", "back", "try", "12"]
    assert set(label_tokens(instruct_answer(generate_problems(1, seed=0)[0]))) == {"X"}


def test_answer_checking():
    p = Problem("q", 3, 5, ((7, 2), (12, 9, 5)), (0, 3, 1, 2, 4), 1)
    assert p.answer == (3, 12, 9, 5)
    assert extract_answer("ans 3 12 9 5") == (3, 12, 9, 5)
    assert is_correct(p, "try 7 2 dead back ans 3 7 2 ans 3 12 9 5")  # the last answer counts
    assert not is_correct(p, "ans 3 12 9")
    assert not is_correct(p, "try 12 9")  # no answer
    assert extract_answer("") is None


def test_training_mixture_respects_the_thinking_share():
    ex = list(training_examples(400, seed=2, thinking_fraction=0.25))
    worked = sum(r[0] == "try" for _, r in ex)
    assert 70 <= worked <= 130
    assert all(r[-1] == "<eos>" and p[0] == "<bos>" and p[-1] == ":" for p, r in ex)
    assert all(r[0] == "ans" for _, r in training_examples(50, seed=2, thinking_fraction=0.0))
    with pytest.raises(ConfigError):
        next(training_examples(1, seed=0, thinking_fraction=1.5))
    with pytest.raises(ConfigError, match="style"):
        solution(generate_problems(1, seed=0)[0], "chatty", random.Random(0))


def test_tokenizer_round_trip_without_added_specials():
    pytest.importorskip("transformers")
    from nex_interp.zoo.tokenizer import make_tokenizer

    tok = make_tokenizer()
    rng = random.Random(5)
    for p in generate_problems(20, seed=5):
        text = p.prompt() + " " + " ".join(worked_solution(p, rng))
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
        assert len(ids) == len(text.split())
        assert tok.decode(ids) == text
    assert tok.padding_side == "left"
