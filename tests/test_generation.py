"""Generation: output rows, determinism, resuming, and bad input (on a pico model)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformer_lens")

from nex_interp.cli import main  # noqa: E402
from nex_interp.errors import ConfigError, NexError  # noqa: E402
from nex_interp.generation import GenerationConfig, generate_responses, generate_to_file  # noqa: E402
from nex_interp.jsonl import read_jsonl  # noqa: E402
from nex_interp.models.loader import load_model  # noqa: E402

PROMPTS = [
    {"id": "q1", "prompt": "what is 3 + 4 ?", "answer": "7"},
    {"id": "q2", "prompt": "let us think step by step", "answer": "9", "level": 2},
]


@pytest.fixture(scope="module")
def pico(pico_qwen3_dir):
    return load_model(str(pico_qwen3_dir))


def test_rows_carry_fields(pico):
    rows = generate_responses(pico, PROMPTS, samples=3, max_new_tokens=12, batch_size=2, chat_template=True)
    assert [(r["problem_id"], r["sample"]) for r in rows] == [("q1", 0), ("q1", 1), ("q1", 2), ("q2", 0), ("q2", 1), ("q2", 2)]
    assert len({r["id"] for r in rows}) == 6
    for r in rows:
        src = PROMPTS[0] if r["problem_id"] == "q1" else PROMPTS[1]
        assert r["prompt"] == src["prompt"] and r["answer"] == src["answer"]
        assert isinstance(r["response"], str) and 0 <= r["n_response_tokens"] <= 12
        assert r["finish_reason"] in ("stop", "length") and r["chat_template"] is True
    assert rows[3]["level"] == 2
    # sampling draws different responses for the samples of one problem
    assert len({r["response"] for r in rows[:3]}) > 1


def test_seeded_and_greedy_determinism(pico):
    a = generate_responses(pico, PROMPTS, samples=2, max_new_tokens=10, seed=5)
    b = generate_responses(pico, PROMPTS, samples=2, max_new_tokens=10, seed=5)
    c = generate_responses(pico, PROMPTS, samples=2, max_new_tokens=10, seed=6)
    assert [r["response"] for r in a] == [r["response"] for r in b]
    assert [r["response"] for r in a] != [r["response"] for r in c]
    # a problem's samples do not depend on the other problems generated with it
    alone = generate_responses(pico, PROMPTS[1:], samples=2, max_new_tokens=10, seed=5)
    assert [r["response"] for r in alone] == [r["response"] for r in a[2:]]
    g = generate_responses(pico, PROMPTS[:1], samples=2, max_new_tokens=10, temperature=0)
    assert g[0]["response"] == g[1]["response"]


def test_batched_problems_draw_each_row_from_its_own_generator(pico):
    """batch_problems groups problems in one generate call; a row's tokens depend on its seed,
    problem and sample, not on its batch (equal-length prompts: no padding enters)."""
    same_len = [{"id": f"p{i}", "prompt": f"what is {i} + 4 ?"} for i in range(5)]
    kw = dict(samples=2, max_new_tokens=10, seed=5, top_p=0.9)
    a = generate_responses(pico, same_len, batch_problems=4, **kw)
    b = generate_responses(pico, same_len, batch_problems=2, **kw)
    alone = generate_responses(pico, same_len[3:4], batch_problems=3, **kw)
    assert [(r["problem_id"], r["sample"]) for r in a] == [(f"p{i}", s) for i in range(5) for s in range(2)]
    assert [r["response"] for r in a] == [r["response"] for r in b]
    assert [r["response"] for r in alone] == [r["response"] for r in a[6:8]]
    assert a[0]["response"] != a[1]["response"] or a[2]["response"] != a[3]["response"]  # samples differ
    other = generate_responses(pico, same_len, batch_problems=4, **{**kw, "seed": 6})
    assert [r["response"] for r in other] != [r["response"] for r in a]
    # greedy: the same text as the per-problem path; padded prompts of other lengths work too
    g1 = generate_responses(pico, PROMPTS, samples=1, max_new_tokens=8, temperature=0)
    g2 = generate_responses(pico, PROMPTS, samples=1, max_new_tokens=8, temperature=0, batch_problems=2)
    assert [r["response"] for r in g1] == [r["response"] for r in g2]
    with pytest.raises(ConfigError, match="batch-problems"):
        GenerationConfig(batch_problems=0)


def test_response_tokens_continue_the_prompt(pico):
    """The decoded response re-encodes to the generated tokens (the capture will see the same text)."""
    rows = generate_responses(pico, PROMPTS[:1], samples=1, max_new_tokens=15, temperature=0)
    ids = pico.tokenizer(rows[0]["response"], add_special_tokens=False)["input_ids"]
    assert len(ids) == rows[0]["n_response_tokens"]


def test_resume_skips_done_problems_and_torn_lines(pico, tmp_path):
    out = tmp_path / "r.jsonl"
    cfg = GenerationConfig(samples=2, max_new_tokens=8)
    rep = generate_to_file(pico, PROMPTS[:1], out, cfg, progress=False)
    assert rep.n_generated == 2
    first = out.read_text()
    with open(out, "a") as f:  # a kill in the middle of writing the next problem
        f.write('{"id": "q2:0", "problem_')
    rep = generate_to_file(pico, PROMPTS, out, cfg, progress=False)
    assert (rep.n_skipped_done, rep.n_generated) == (1, 2)
    lines = out.read_text().splitlines()
    assert out.read_text().startswith(first) and len(lines) == 4
    assert [json.loads(x)["id"] for x in lines] == ["q1:0", "q1:1", "q2:0", "q2:1"]
    assert (tmp_path / "r.jsonl.provenance.json").is_file()
    with pytest.raises(NexError, match="same --samples"):
        generate_to_file(pico, PROMPTS, out, GenerationConfig(samples=3, max_new_tokens=8), progress=False)


def test_bad_input(pico, tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n\n{"prompt": "b"\n')
    with pytest.raises(NexError, match="line 3"):
        read_jsonl(bad)
    with pytest.raises(NexError, match="not found"):
        read_jsonl(tmp_path / "none.jsonl")
    with pytest.raises(NexError, match="'prompt'"):
        generate_responses(pico, [{"text": "x"}], samples=1)
    with pytest.raises(NexError, match="unique"):
        generate_responses(pico, [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}], samples=1)
    with pytest.raises(ConfigError, match="top-p"):
        GenerationConfig(top_p=0)
    with pytest.raises(ConfigError, match="context"):
        generate_responses(pico, PROMPTS[:1], samples=1, max_new_tokens=100_000)


def test_cli_generate(pico_qwen3_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    out = tmp_path / "responses.jsonl"
    args = ["generate", "--model", str(pico_qwen3_dir), "--prompts", str(prompts), "--samples", "2",
            "-o", str(out), "--max-new-tokens", "6", "--chat-template", "--no-progress", "--seed", "3"]
    assert main(args) == 0
    assert len(out.read_text().splitlines()) == 4
    assert main(args) == 0  # resumes: nothing to do
    assert "2 already done" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 4
    prompts.write_text('{"prompt": "a"}\nnot json\n')
    assert main(["generate", "--model", str(pico_qwen3_dir), "--prompts", str(prompts), "-o", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2" in err


def test_bridged_and_plain_models_generate_alike(pico_llama_dir):
    """Generation on a model wrapped in its TransformerBridge (KV cache through the bridge's
    attention) equals generation on the plain HF model."""
    plain = load_model(str(pico_llama_dir), boot_bridge=False)
    a = generate_responses(plain, PROMPTS, samples=1, max_new_tokens=12, temperature=0)
    assert not plain.bridge_booted
    bridged = load_model(str(pico_llama_dir))
    assert bridged.bridge_booted
    b = generate_responses(bridged, PROMPTS, samples=1, max_new_tokens=12, temperature=0)
    assert [r["response"] for r in a] == [r["response"] for r in b]
