"""The zoo's training (tiny, seeded, resumable) and the shipped weights (hashes, size, behaviour)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from nex_interp.errors import ModelError  # noqa: E402
from nex_interp.zoo import MIXTURE_FAMILY, WEIGHTS_DIR, ZOO_MODELS, zoo_model_dir  # noqa: E402
from nex_interp.zoo.task import generate_problems  # noqa: E402
from nex_interp.hashing import sha256_file  # noqa: E402
from nex_interp.zoo.train import ModelShape, Stage, ZooTrainConfig, greedy_accuracy, train_zoo, verify_zoo  # noqa: E402

TINY = ZooTrainConfig(
    shape=ModelShape(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, d_mlp=64, max_positions=192),
    stages=(Stage("base", None, 0.5, 4, 3e-3, 1), Stage("thinking", "base", 1.0, 2, 1e-3, 2)),
    batch_size=8,
    eval_problems=4,
)


def test_tiny_zoo_trains_deterministically_and_resumes(tmp_path):
    from transformers import AutoModelForCausalLM

    logs: list[str] = []
    m1 = train_zoo(tmp_path / "a", TINY, progress=False, log=logs.append)
    assert set(m1["models"]) == {"base", "thinking"}
    assert verify_zoo(tmp_path / "a") == []
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "thinking")
    assert model.config.model_type == "qwen3" and model.config.intermediate_size == 64
    assert json.loads((tmp_path / "a" / "zoo.json").read_text())["config"]["stages"][1]["init"] == "base"
    # resume: finished stages are kept, not retrained
    logs.clear()
    train_zoo(tmp_path / "a", TINY, progress=False, log=logs.append)
    assert sum("already trained" in line for line in logs) == 2
    # the same config gives the same weights
    m2 = train_zoo(tmp_path / "b", TINY, progress=False, log=lambda _: None)
    assert m2["models"]["thinking"]["sha256"] == m1["models"]["thinking"]["sha256"]
    # a tampered file is detected
    (tmp_path / "a" / "base" / "model.safetensors").write_bytes(b"x")
    assert verify_zoo(tmp_path / "a") == ["base"]


def test_zoo_registry_errors():
    with pytest.raises(ModelError, match="unknown"):
        zoo_model_dir("gpt5")


def test_shipped_zoo_is_complete_small_and_hashed():
    manifest = json.loads((WEIGHTS_DIR / "zoo.json").read_text())
    assert set(manifest["models"]) == set(ZOO_MODELS)
    assert verify_zoo(WEIGHTS_DIR) == []
    total = sum(f.stat().st_size for f in WEIGHTS_DIR.rglob("*") if f.is_file())
    assert total <= 20 * 2**20
    for name in ZOO_MODELS:
        assert manifest["models"][name]["sha256"] == sha256_file(zoo_model_dir(name) / "model.safetensors")
    assert {MIXTURE_FAMILY[n] for n in MIXTURE_FAMILY} == {0.0, 0.25, 0.5, 0.75, 1.0}


def test_shipped_models_answer_in_their_style():
    from transformers import AutoModelForCausalLM

    problems = generate_problems(40, seed=777, prefix="t")
    stats = {}
    for name in ("instruct", "thinking"):
        model = AutoModelForCausalLM.from_pretrained(zoo_model_dir(name)).eval()
        stats[name] = greedy_accuracy(model, problems)
    assert stats["thinking"]["thinking_share"] >= 0.9 and stats["instruct"]["thinking_share"] <= 0.1
    assert stats["thinking"]["mean_tokens"] > 2 * stats["instruct"]["mean_tokens"]
    assert stats["thinking"]["accuracy"] >= 0.6


def test_zoo_models_load_through_the_project_loader():
    from nex_interp.models.loader import load_model

    m = load_model("zoo:thinking")
    assert m.n_layers == 2 and m.d_mlp == 512
