"""Model loading: pico fixtures, spec resolution, errors, and the neuron-activation hook parity."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformer_lens")

from nex_interp.errors import ConfigError, ModelError  # noqa: E402
from nex_interp.models.loader import load_model, neuron_hook_name, resolve_spec  # noqa: E402
from nex_interp.models.pico import PICO_ARCHS, make_pico_model  # noqa: E402

ARCHS = list(PICO_ARCHS)


def _down_proj(hf_model, arch: str, layer: int):
    """The HF module whose input is the neuron activation: down_proj (gated) or c_proj (GPT-2)."""
    if arch == "gpt2":
        return hf_model.transformer.h[layer].mlp.c_proj
    return hf_model.model.layers[layer].mlp.down_proj


@pytest.mark.parametrize("arch", ARCHS)
def test_hook_equals_hf_down_projection_input(arch, pico_dirs):
    """blocks.{L}.mlp.out.hook_in is exactly the input of the HF model's own output projection."""
    from transformers import AutoModelForCausalLM

    d = pico_dirs(arch)
    model = load_model(str(d))
    plain = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor([[5, 17, 40, 41, 9, 22, 60, 61, 62, 3, 70]])
    hf_inputs, tl_values = {}, {}
    handles = [
        _down_proj(plain, arch, L).register_forward_pre_hook(lambda m, a, L=L: hf_inputs.__setitem__(L, a[0].detach().clone()))
        for L in range(model.n_layers)
    ]
    with torch.no_grad():
        plain(ids)
    for h in handles:
        h.remove()

    def grab(L):
        def fn(x, hook=None):
            tl_values[L] = x.detach().clone()

        return fn

    with torch.no_grad(), model.bridge.hooks(fwd_hooks=[(neuron_hook_name(L), grab(L)) for L in range(model.n_layers)]):
        model.bridge(ids)
    assert sorted(tl_values) == list(range(model.n_layers))
    for L in range(model.n_layers):
        assert tl_values[L].shape == (1, ids.shape[1], model.d_mlp)
        torch.testing.assert_close(tl_values[L], hf_inputs[L], rtol=1e-5, atol=1e-6)
    # the activation has both signs on gated MLPs (act(gate) * up) and is GELU-shaped on GPT-2
    allv = torch.cat([v.flatten() for v in tl_values.values()])
    assert (allv < 0).any() and (allv > 0).any()


@pytest.mark.parametrize("arch", ARCHS)
def test_load_pico_identity(arch, pico_dirs):
    d = pico_dirs(arch)
    m = load_model(str(d))
    assert (m.n_layers, m.d_mlp) == (2, 128)
    ident = m.identity
    assert ident["arch"] == arch and ident["n_layers"] == 2 and ident["d_mlp"] == 128
    assert ident["gated_mlp"] == (arch != "gpt2")
    assert len(ident["weights_sha256"]) == 64
    json.dumps(ident)  # JSON-able: it goes into manifests
    assert m.n_ctx == ident["n_ctx"] == 512 and "n_ctx_source" not in ident  # pico configs state 512
    # the bridge runs the HF model's own modules: a change to an HF weight shows through the bridge
    assert m.bridge.original_model is m.hf_model
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        before = m.bridge(ids).clone()
        head = m.hf_model.get_output_embeddings().weight
        saved = head.clone()
        head.mul_(2.0)
        after = m.bridge(ids)
        head.copy_(saved)
    assert not torch.equal(before, after)


def test_context_length_is_read_given_or_recorded_as_assumed(pico_dirs, capsys):
    from types import SimpleNamespace

    from nex_interp.models.loader import ASSUMED_N_CTX, context_length

    assert context_length(SimpleNamespace(n_positions=1024)) == (1024, "n_positions")
    assert context_length(SimpleNamespace(max_position_embeddings=4096), n_ctx=300) == (300, "argument")
    assert context_length(SimpleNamespace()) == (ASSUMED_N_CTX, "assumed")
    with pytest.raises(ConfigError, match="n_ctx"):
        context_length(SimpleNamespace(), n_ctx=0)
    m = load_model(str(pico_dirs("qwen3")), n_ctx=64, boot_bridge=False)
    assert m.n_ctx == m.identity["n_ctx"] == 64 and m.identity["n_ctx_source"] == "argument"


def test_pico_seeds_same_shape_different_weights(pico_qwen3_pair, tmp_path):
    a, b = (load_model(str(d)) for d in pico_qwen3_pair)
    sa, sb = a.hf_model.state_dict(), b.hf_model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(sa[k].shape == sb[k].shape for k in sa)
    assert not any(torch.equal(sa[k], sb[k]) for k in sa if sa[k].dim() == 2)
    assert a.identity["weights_sha256"] != b.identity["weights_sha256"]
    # same seed again: identical weights
    again = load_model(str(make_pico_model(tmp_path / "again", arch="qwen3", seed=0)))
    assert again.identity["weights_sha256"] == a.identity["weights_sha256"]


def test_pico_tokenizer_round_trip(pico_qwen3_dir):
    m = load_model(str(pico_qwen3_dir))
    text = "let us think step by step : 3 + 4 = 7 ."
    ids = m.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert m.tokenizer.unk_token_id not in ids
    assert m.tokenizer(m.tokenizer.decode(ids), add_special_tokens=False)["input_ids"] == ids
    assert m.tokenizer.padding_side == "left"
    assert "assistant" in m.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def test_spec_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "missing" / "model"))
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(tmp_path / "empty"))
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ModelError, match="not a .gguf"):
        load_model(str(tmp_path / "weights.txt"))
    with pytest.raises(ModelError, match="unreachable"):
        load_model("no-such-org/no-such-model-xyz")
    with pytest.raises(ConfigError, match="dtype"):
        load_model(str(tmp_path / "empty"), dtype="float8")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelError, match="GGUF"):
        load_model(str(bad), cache_dir=tmp_path / "cache")


def test_resolve_spec_kinds(pico_qwen3_dir):
    r = resolve_spec(str(pico_qwen3_dir))
    assert r.source == "dir" and r.path == pico_qwen3_dir.resolve()
    assert resolve_spec("Qwen/Qwen3-4B").source == "hub"


def test_zoo_spec_goes_through_zoo_module(monkeypatch, pico_llama_dir):
    """zoo:NAME asks nex_interp.zoo.zoo_model_dir for the directory."""
    import nex_interp.zoo as zoo

    monkeypatch.setattr(zoo, "zoo_model_dir", lambda name: pico_llama_dir if name == "tiny" else None, raising=False)
    m = load_model("zoo:tiny")
    assert m.identity["source"] == "zoo" and m.identity["arch"] == "llama"


def test_bfloat16_load(pico_qwen3_dir):
    m = load_model(str(pico_qwen3_dir), dtype="bfloat16")
    assert next(m.hf_model.parameters()).dtype == torch.bfloat16
    assert m.dtype == "bfloat16"
