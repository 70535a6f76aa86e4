"""The zoo's training (tiny, seeded, resumable) and the shipped weights (hashes, size, behaviour)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from nex_interp.errors import ConfigError, ModelError  # noqa: E402
from nex_interp.hashing import sha256_file  # noqa: E402
from nex_interp.zoo import MIXTURE_FAMILY, WEIGHTS_DIR, ZOO_MODELS, zoo_model_dir  # noqa: E402
from nex_interp.zoo.plan import ModelShape  # noqa: E402
from nex_interp.zoo.task import TaskShape, generate_problems  # noqa: E402
from nex_interp.zoo.train import (  # noqa: E402
    BASE, CURRICULUM, Phase, Stage, ZooTrainConfig, batches, default_config, greedy_eval, pack, train_zoo, verify_zoo,
)

SMALL = TaskShape(n_boxes=4, box_items=4, query_items=2, budget=5, first_target=3)
TINY = ZooTrainConfig(
    shape=ModelShape(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, d_mlp=64, max_positions=768),
    stages=(Stage("base", None, (("brief", 0.5), ("systematic", 0.5)), 4, 3e-3, 1, (Phase(0.5, SMALL), Phase(1.0))),
            Stage("instruct", "base", (("brief", 1.0),), 2, 1e-3, 2)),
    batch_tokens=1024, threads=1, eval_problems=2, max_new_tokens=8,
)


def test_tiny_zoo_trains_deterministically_and_resumes(tmp_path):
    from transformers import AutoModelForCausalLM

    logs: list[str] = []
    m1 = train_zoo(tmp_path / "a", TINY, progress=False, log=logs.append)
    assert set(m1["models"]) == {"base", "instruct"}
    assert verify_zoo(tmp_path / "a") == []
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "instruct")
    assert model.config.model_type == "qwen3" and model.config.intermediate_size == 64
    saved = json.loads((tmp_path / "a" / "zoo.json").read_text())
    assert saved["config"]["stages"][1]["init"] == "base"
    assert ZooTrainConfig.from_dict(saved["config"]) == TINY  # the manifest holds the whole config
    assert {"accuracy", "check_ok", "item_ok", "mean_opens"} <= set(saved["models"]["base"]["greedy_eval"])
    # resume: finished stages are kept, not retrained
    logs.clear()
    train_zoo(tmp_path / "a", TINY, progress=False, log=logs.append)
    assert sum("already trained" in line for line in logs) == 2
    # the same config gives the same weights
    m2 = train_zoo(tmp_path / "b", TINY, progress=False, log=lambda _: None)
    assert m2["models"]["instruct"]["sha256"] == m1["models"]["instruct"]["sha256"]
    # a changed fine-tune is retrained alone; its base is kept
    import dataclasses

    longer = dataclasses.replace(TINY, stages=(TINY.stages[0], dataclasses.replace(TINY.stages[1], steps=3)))
    logs.clear()
    m3 = train_zoo(tmp_path / "a", longer, progress=False, log=logs.append)
    assert [line.split()[2] for line in logs if "already trained" in line] == ["base"]
    assert m3["models"]["instruct"]["sha256"] != m1["models"]["instruct"]["sha256"]
    assert m3["models"]["instruct"]["init_sha256"] == m1["models"]["base"]["sha256"]
    # a tampered file is detected
    (tmp_path / "a" / "base" / "model.safetensors").write_bytes(b"x")
    assert verify_zoo(tmp_path / "a") == ["base"]


def test_a_fine_tune_needs_its_base(tmp_path):
    with pytest.raises(ConfigError, match="needs 'base'"):
        train_zoo(tmp_path, TINY, progress=False, log=lambda _: None, only=("instruct",))


def test_batches_follow_the_curriculum_and_the_token_budget():
    stage = Stage("s", None, (("systematic", 1.0),), 6, 1e-3, 5, (Phase(0.5, SMALL), Phase(1.0)))
    got = list(batches(stage, TINY))
    assert len(got) == 6
    for x, mask, y in got:
        assert x.shape[0] * x.shape[1] <= TINY.batch_tokens or x.shape[0] == 1
        assert ((y != -100) <= (mask == 1)).all()  # loss only where there are tokens
    # the first batch comes from the small shape (a whole 4x4 search is shorter than the full
    # task's 178-token prompt), the last from the full task
    assert got[0][0].shape[1] < 178 < got[-1][0].shape[1]
    assert [b.shape for b, _, _ in got] == [b.shape for b, _, _ in batches(stage, TINY)]  # seeded


def test_pack_keeps_every_example_within_the_budget():
    ex = [(["a"] * n, ["b"] * 3) for n in (5, 50, 7, 90, 20, 1)]
    packed = pack(ex, 100)
    assert sorted(len(p) + len(r) for b in packed for p, r in b) == sorted(len(p) + len(r) for p, r in ex)
    for b in packed:
        assert len(b) == 1 or len(b) * max(len(p) + len(r) for p, r in b) <= 100


def test_default_config_trains_every_planned_model_from_one_base():
    cfg = default_config()
    assert [s.name for s in cfg.stages][0] == "base" and cfg.stages[0].phases == CURRICULUM
    assert cfg.stages[0].name == BASE and all(s.init == BASE for s in cfg.stages[1:])
    assert set(cfg.ship) == set(ZOO_MODELS) and {"base", BASE}.isdisjoint(cfg.ship)
    assert ZooTrainConfig.from_dict(cfg.to_dict()) == cfg


def test_zoo_registry_errors():
    with pytest.raises(ModelError, match="unknown"):
        zoo_model_dir("gpt5")


def test_shipped_zoo_is_complete_small_and_hashed():
    manifest = json.loads((WEIGHTS_DIR / "zoo.json").read_text())
    assert set(ZOO_MODELS) <= set(manifest["models"])
    assert verify_zoo(WEIGHTS_DIR) == []
    total = sum(f.stat().st_size for f in WEIGHTS_DIR.rglob("*") if f.is_file())
    assert total <= 50 * 2**20
    for name in ZOO_MODELS:
        assert manifest["models"][name]["sha256"] == sha256_file(zoo_model_dir(name) / "model.safetensors")
    assert zoo_model_dir("thinking") == zoo_model_dir("over_mid")
    assert list(MIXTURE_FAMILY.values()) == sorted(MIXTURE_FAMILY.values())


def test_shipped_models_answer_in_their_style():
    from transformers import AutoModelForCausalLM

    problems = generate_problems(12, seed=777, prefix="t")
    stats = {}
    for name in ("instruct", "thinking"):
        model = AutoModelForCausalLM.from_pretrained(zoo_model_dir(name)).eval()
        stats[name] = greedy_eval(model, problems)
    assert stats["thinking"]["worked_share"] >= 0.9 and stats["instruct"]["worked_share"] <= 0.1
    assert stats["thinking"]["median_tokens"] >= 200 > 10 >= stats["instruct"]["median_tokens"]


def test_zoo_models_load_through_the_project_loader():
    from nex_interp.models.loader import load_model

    m = load_model("zoo:thinking")
    assert m.n_layers == 4 and m.d_mlp == 1024


def test_manifests_without_the_window_fields_keep_their_stages():
    """zoo.json files written before ModelShape had local_layers/sliding_window were trained with
    their defaults: the shared settings still match, so no stage is retrained for that reason."""
    from nex_interp.zoo.train import _shared, hf_config

    cfg = default_config().to_dict()
    old = json.loads(json.dumps(cfg))
    for key in ("local_layers", "sliding_window"):
        old["shape"].pop(key)
    assert _shared(old) == _shared(cfg)
    windowed = json.loads(json.dumps(cfg))
    windowed["shape"]["local_layers"] = [0]
    assert _shared(windowed) != _shared(cfg)
    assert hf_config(ZooTrainConfig.from_dict(windowed).shape).layer_types[:2] == ["sliding_attention", "full_attention"]
    assert getattr(hf_config(default_config().shape), "sliding_window", None) is None
