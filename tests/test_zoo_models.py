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
    # task's 183-token prompt), the last from the full task
    assert got[0][0].shape[1] < 183 < got[-1][0].shape[1]
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
    # the searching model has learnt the task's steps (change 11): copies and checks right
    assert stats["thinking"]["item_ok"] >= 0.95 and stats["thinking"]["check_ok"] >= 0.9


def test_zoo_models_load_through_the_project_loader():
    from nex_interp.models.loader import load_model

    m = load_model("zoo:thinking")
    assert m.n_layers == 4 and m.d_mlp == 1024


def test_manifests_without_the_window_fields_were_full_attention():
    """zoo.json files written before ModelShape had local_layers/sliding_window were trained with
    full attention: they match a full-attention config and not the shipped windowed one, so a
    resumed run retrains their stages instead of mixing the two."""
    from nex_interp.zoo.train import _shared, hf_config

    cfg = default_config().to_dict()
    assert cfg["shape"]["local_layers"] == [0]  # change 9: a window in layer 0
    old = json.loads(json.dumps(cfg))
    for key in ("local_layers", "sliding_window"):
        old["shape"].pop(key)
    full = json.loads(json.dumps(cfg))
    full["shape"]["local_layers"] = []
    assert _shared(old) == _shared(full)
    assert _shared(old) != _shared(cfg)
    assert _shared(ZooTrainConfig.from_dict(cfg).to_dict()) == _shared(cfg)  # a tuple or a list
    layers = hf_config(default_config().shape).layer_types
    assert layers == ["sliding_attention", "full_attention", "full_attention", "full_attention"]
    assert hf_config(default_config().shape).sliding_window == 36
    assert getattr(hf_config(ZooTrainConfig.from_dict(full).shape), "sliding_window", None) is None


def _check_views(tokens: list[str], window: int) -> list[tuple[bool, bool]]:
    """For each check's kind in a trace: (the whole record just opened lies within ``window``
    tokens, some item of the previous cycle's record does)."""
    out, records = [], []
    for i, tok in enumerate(tokens):
        if tok == "open":
            end = tokens.index(";", i)
            records.append((i + 2, end - 1))  # positions of the record's first and last items
        if tok == "need":
            first, _ = records[-1]
            prev_last = records[-2][1] if len(records) > 1 else None
            q = i + 2
            out.append((q - first < window, prev_last is not None and q - prev_last < window))
    return out


def test_window_geometry_is_measured_on_real_traces():
    """cycle_fits_window says, for a shape, what a local layer sees at each check of the
    generator's traces: the whole record just opened and nothing of the previous one."""
    import random

    from nex_interp.zoo.traces import reference_trace
    from nex_interp.zoo.train import cycle_fits_window, random_shape

    window = ModelShape().sliding_window
    seen = set()
    for items in range(4, 13):
        for k in range(2, 6):
            if k > items:
                continue
            shape = TaskShape(n_boxes=8, box_items=items, query_items=k, budget=10, first_target=5)
            views = []
            for p in generate_problems(3, 7, shape):
                for style in ("systematic", "wander", "hasty"):
                    t = reference_trace(p, style, random.Random(1))
                    views += _check_views(list(t.tokens), window) if style != "hasty" else []
            fits = all(whole and not prev for whole, prev in views)
            assert fits == cycle_fits_window(items, k, window), (items, k)
            seen.add(fits)
    assert seen == {True, False}
    assert cycle_fits_window(12, 5, window)  # the full task
    rng = random.Random(0)
    shapes = [random_shape(rng, window=window) for _ in range(300)]
    assert all(cycle_fits_window(s.box_items, s.query_items, window) for s in shapes)
    assert len({(s.box_items, s.query_items) for s in shapes}) > 5
    assert {s.query_items for s in [random_shape(rng) for _ in range(300)]} == {2, 3, 4, 5}  # no window: any


def test_forced_check_diagnosis_reads_every_check(tmp_path):
    """benchmarks/zoo_check_forced.py scores each check of the reference traces once, and the
    attention it reports is a share of one head's attention."""
    import importlib.util
    import random
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from nex_interp.zoo.traces import reference_trace
    from nex_interp.zoo.train import hf_config

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo_check_forced.py"
    spec = importlib.util.spec_from_file_location("zoo_check_forced", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(hf_config(TINY.shape)).save_pretrained(tmp_path)
    got = mod.diagnose(str(tmp_path), n_problems=2, seed=5)
    want = sum(list(reference_trace(p, "systematic", random.Random(3)).tokens).count("need")
               for p in generate_problems(2, 5, prefix="forced"))
    assert got["checks"]["present"] + got["checks"]["absent"] == want
    assert 0 <= got["right_when_present"] <= 1 and 0 <= got["right_when_absent"] <= 1
    assert all(0 <= m <= 1 for heads in got["attention_on_record_items_of_kind"].values() for m in heads)
