"""The model side's one hooks module: neuron hook name, installer, early stop, KV-cache repair."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformer_lens")

from nex_interp.errors import ModelError  # noqa: E402
from nex_interp.models.hooks import (  # noqa: E402
    NEURON_HOOK,
    StopForward,
    attached_hook_count,
    installed_hooks,
    neuron_hook_name,
    repair_bridge_kv_cache,
    run_until_stopped,
)


@pytest.fixture(scope="module")
def model(pico_qwen3_dir):
    from nex_interp.models.loader import load_model

    return load_model(str(pico_qwen3_dir))


def test_neuron_hook_name_fills_the_recorded_template(model):
    assert neuron_hook_name(1) == NEURON_HOOK.replace("{L}", "1") == "blocks.1.mlp.out.hook_in"
    assert model.hook_name(0) == neuron_hook_name(0) and neuron_hook_name(0) in model.bridge.hook_dict


def test_installer_adds_for_the_block_only_and_leaves_other_hooks(model):
    ids = torch.tensor([[1, 2, 3, 4]])
    theirs = []
    point = model.bridge.hook_dict[neuron_hook_name(0)]
    handle = point.add_hook(lambda x, hook=None: theirs.append(1))
    try:
        seen = []
        with installed_hooks(model, [(neuron_hook_name(L), lambda x, hook=None: seen.append(x.shape)) for L in (0, 1)]):
            assert len(point.fwd_hooks) == 2
            with torch.no_grad():
                model.hf_model(input_ids=ids)  # the HF forward runs the bridge's hooks too
        assert seen == [(1, 4, model.d_mlp)] * 2 and theirs == [1]
        assert point.fwd_hooks == [handle]  # only the installer's own were removed

        def stop(x, hook=None):
            raise StopForward

        with installed_hooks(model, [(neuron_hook_name(0), stop)]):
            with torch.no_grad():
                assert run_until_stopped(lambda: model.hf_model(input_ids=ids)) is None
        assert point.fwd_hooks == [handle]
    finally:
        handle.hook.remove()
        point.fwd_hooks.remove(handle)
    assert attached_hook_count(model) == 0


def test_unknown_hook_is_a_one_line_model_error(model):
    with pytest.raises(ModelError, match="no hook point 'blocks.9.mlp.out.hook_in'"):
        with installed_hooks(model, [(neuron_hook_name(9), lambda x, hook=None: None)]):
            pass
    assert attached_hook_count(model) == 0


def test_kv_cache_repair_is_idempotent_and_makes_cached_decoding_exact(model):
    n = repair_bridge_kv_cache(model.hf_model)
    assert n == model.n_layers == repair_bridge_kv_cache(model.hf_model)
    hooks = [len(m._forward_pre_hooks) for m in model.hf_model.modules() if hasattr(m, "_update_kv_cache")]
    assert len(hooks) == n and all(h == hooks[0] for h in hooks)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        cached = model.hf_model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, eos_token_id=None,
                                         pad_token_id=model.tokenizer.pad_token_id)
        seq = ids
        for _ in range(5):
            nxt = model.hf_model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1)
            seq = torch.cat([seq, nxt[:, None]], 1)
    assert torch.equal(cached, seq)
