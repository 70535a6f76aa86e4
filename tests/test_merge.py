"""Merging: SLERP and linear per tensor, streamed, loadable, with the recipe beside it."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from nex_interp.errors import ConfigError, ModelError  # noqa: E402
from nex_interp.merge import DOT_THRESHOLD, merge_models, slerp  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from nex_interp.models.pico import make_pico_model

    root = tmp_path_factory.mktemp("merge_pair")
    return make_pico_model(root / "a", arch="qwen3", seed=0), make_pico_model(root / "b", arch="qwen3", seed=1)


def _state(directory):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_slerp_orthogonal_unit_vectors_stay_on_the_circle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    for t in (0.25, 0.5, 0.9):
        m, fell_back = slerp(a, b, t)
        assert not fell_back
        assert torch.allclose(m, torch.tensor([math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)]), atol=1e-6)
        assert abs(float(m.norm()) - 1.0) < 1e-6


def test_slerp_uses_unnormalised_inputs_and_falls_back_when_parallel():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    m, _ = slerp(a, b, 0.5)
    s = math.sin(math.pi / 4) / math.sin(math.pi / 2)
    assert torch.allclose(m, torch.tensor([2.0 * s, 4.0 * s]), atol=1e-6)
    p, q = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0001])
    m, fell_back = slerp(p, q, 0.3)
    assert fell_back and torch.allclose(m, 0.7 * p + 0.3 * q)
    # just below the threshold: a real slerp
    angle = math.acos(DOT_THRESHOLD) * 1.5
    m, fell_back = slerp(torch.tensor([1.0, 0.0]), torch.tensor([math.cos(angle), math.sin(angle)]), 0.5)
    assert not fell_back


@pytest.mark.parametrize("method", ["slerp", "linear"])
def test_endpoints_give_the_inputs(pair, tmp_path, method):
    a, b = pair
    sa, sb = _state(a), _state(b)
    for t, want in ((0.0, sa), (1.0, sb)):
        out = tmp_path / f"{method}{t}"
        merge_models(a, b, method, t, out)
        got = _state(out)
        assert set(got) == set(want)
        for k in want:
            assert torch.allclose(got[k], want[k], atol=1e-6, rtol=0), k


def test_linear_midpoint_and_slerp_match_per_tensor_formula(pair, tmp_path):
    a, b = pair
    sa, sb = _state(a), _state(b)
    merge_models(a, b, "linear", 0.5, tmp_path / "lin")
    lin = _state(tmp_path / "lin")
    for k in sa:
        assert torch.allclose(lin[k], (sa[k] + sb[k]) / 2, atol=1e-6), k
    recipe = merge_models(a, b, "slerp", 0.3, tmp_path / "sl")
    sl = _state(tmp_path / "sl")
    for k in sa:
        assert torch.allclose(sl[k], slerp(sa[k], sb[k], 0.3)[0], atol=1e-6), k
    # random pico weights are far from parallel; the norm weights (all ones in both) are parallel
    assert 0 < recipe.n_linear_fallback < recipe.n_tensors


def test_merge_is_loadable_and_records_its_recipe(pair, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a, b = pair
    out = tmp_path / "m"
    merge_models(a, b, "slerp", 0.5, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("the sum is", return_tensors="pt")["input_ids"]
    assert model(ids).logits.shape[-1] == model.config.vocab_size
    recipe = json.loads((out / "merge.json").read_text())
    assert recipe["method"] == "slerp" and recipe["t"] == 0.5 and recipe["a"] == str(a)
    assert set(recipe["a_sha256"]) == {"model.safetensors"}
    assert json.loads((out / "provenance.json").read_text())["command"] == "nex merge"


def test_sharded_checkpoints_merge_shard_by_shard(pair, tmp_path):
    from transformers import AutoModelForCausalLM

    a, b = pair
    sharded = []
    for src in (a, b):
        m = AutoModelForCausalLM.from_pretrained(src)
        dst = tmp_path / f"sharded_{src.name}"
        m.save_pretrained(dst, max_shard_size="60KB")
        sharded.append(dst)
    assert (sharded[0] / "model.safetensors.index.json").exists()
    out = tmp_path / "merged_sharded"
    merge_models(sharded[0], sharded[1], "linear", 0.25, out)
    assert len(list(out.glob("*.safetensors"))) == len(list(sharded[0].glob("*.safetensors"))) > 1
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    sa, sb = _state(a), _state(b)
    for k in sa:
        assert torch.allclose(got[k], 0.75 * sa[k] + 0.25 * sb[k], atol=1e-6), k


def test_bad_inputs_are_one_line_errors(pair, tmp_path):
    from nex_interp.models.pico import make_pico_model

    a, b = pair
    with pytest.raises(ConfigError, match="method"):
        merge_models(a, b, "ties", 0.5, tmp_path / "x")
    with pytest.raises(ConfigError, match="t=1.5"):
        merge_models(a, b, "slerp", 1.5, tmp_path / "x")
    with pytest.raises(ModelError, match="does not exist"):
        merge_models(a, tmp_path / "missing", "slerp", 0.5, tmp_path / "x")
    other = make_pico_model(tmp_path / "wide", arch="qwen3", seed=0, d_mlp=96)
    with pytest.raises(ConfigError, match="intermediate_size"):
        merge_models(a, other, "slerp", 0.5, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_merge(pair, tmp_path, capsys):
    from nex_interp.cli import main

    a, b = pair
    out = tmp_path / "cli"
    assert main(["merge", str(a), str(b), "--method", "linear", "--t", "0.5", "-o", str(out)]) == 0
    assert (out / "merge.json").exists()
    assert main(["merge", str(a), str(b), "--method", "bogus", "--t", "0.5", "-o", str(out)]) == 2
