"""Transplant, activation patching and ablation on pico models (Qwen3, Llama, GPT-2 MLPs)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nex_interp.interventions.ablation import ablate, mean_activations  # noqa: E402
from nex_interp.interventions.generation import greedy_generate  # noqa: E402
from nex_interp.interventions.neuron_sets import NeuronSet  # noqa: E402
from nex_interp.interventions.patching import patch_from_donor, run_patched  # noqa: E402
from nex_interp.interventions.transplant import mlp_projections, neuron_params, transplant  # noqa: E402
from nex_interp.errors import ConfigError  # noqa: E402
from nex_interp.models.hooks import attached_hook_count, installed_hooks, neuron_hook_name, repair_bridge_kv_cache  # noqa: E402

ARCHS = ("qwen3", "llama", "gpt2")
SMALL = dict(d_model=32, d_mlp=48)


@pytest.fixture(scope="module")
def pairs(pico_dirs):
    """``arch -> (donor, recipient)`` LoadedModels of identical shapes (seeds 0 and 1)."""
    from nex_interp.models.loader import load_model

    out = {a: (load_model(str(pico_dirs(a, 0, **SMALL))), load_model(str(pico_dirs(a, 1, **SMALL)))) for a in ARCHS}
    # pico biases start at zero: give them values so that transplanting biases is observable
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for pair in out.values():
            for m in pair:
                for name, p in m.hf_model.named_parameters():
                    if name.endswith("bias"):
                        p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return out


@pytest.fixture(scope="module")
def batch(pairs):
    tok = pairs["qwen3"][0].tokenizer
    enc = tok(["the cat has 3 apples and 2 dogs", "how many coins"], return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def _state(model):
    return {k: v.detach().clone() for k, v in model.hf_model.state_dict().items()}


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _out_bias(model, layer):
    bias = mlp_projections(model, layer)["out"].bias
    return 0.0 if bias is None else bias


def _hooked(bridge, ids, names):
    _, cache = bridge.run_with_cache(ids, names_filter=lambda n: n in names)
    return cache


@pytest.mark.parametrize("arch", ARCHS)
def test_transplanting_every_neuron_gives_the_donor_mlp_and_restores_exactly(pairs, batch, arch):
    donor, recipient = pairs[arch]
    ids, _ = batch
    before = _state(recipient)
    everything = NeuronSet.every_neuron(recipient.n_layers, recipient.d_mlp)
    names = {f"blocks.{L}.mlp.hook_in" for L in range(recipient.n_layers)} | {f"blocks.{L}.mlp.hook_out" for L in range(recipient.n_layers)}
    with torch.no_grad(), transplant(donor, recipient, everything):
        # through the bridge's own forward pass: the recipient's MLP maps its input as the donor's does
        cache = _hooked(recipient.bridge, ids, names)
        for L in range(recipient.n_layers):
            x = cache[f"blocks.{L}.mlp.hook_in"]
            # the output projection's bias is shared by all neurons, so it is not transplanted
            got = cache[f"blocks.{L}.mlp.hook_out"] - _out_bias(recipient, L)
            torch.testing.assert_close(got, donor.bridge.blocks[L].mlp(x) - _out_bias(donor, L), rtol=0, atol=1e-6)
    assert _same_state(before, _state(recipient))
    # and the transplant did change the recipient (the two seeds differ)
    with torch.no_grad():
        x = torch.randn(1, 4, recipient.bridge.cfg.d_model)
        assert not torch.allclose(recipient.bridge.blocks[0].mlp(x), donor.bridge.blocks[0].mlp(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_transplant_moves_only_the_selected_neurons(pairs, arch):
    donor, recipient = pairs[arch]
    nset = NeuronSet.from_pairs("some", [(0, 1), (0, 5), (1, 7)])
    with transplant(donor, recipient, nset):
        for L, units in {0: [1, 5], 1: [7]}.items():
            for pd, pr in zip(neuron_params(donor, L), neuron_params(recipient, L)):
                idx = torch.tensor(units)
                assert torch.equal(pr.param.index_select(pr.axis, idx), pd.param.index_select(pd.axis, idx)), pr.role
                other = torch.tensor([u for u in range(recipient.d_mlp) if u not in units])
                assert not torch.equal(pr.param.index_select(pr.axis, other), pd.param.index_select(pd.axis, other)), pr.role
    roles = {p.role for p in neuron_params(recipient, 0)}
    assert roles == ({"gate.weight", "in.weight", "out.weight"} if arch != "gpt2" else {"in.weight", "in.bias", "out.weight"})


def test_empty_set_changes_nothing(pairs, batch):
    donor, recipient = pairs["qwen3"]
    ids, mask = batch
    with torch.no_grad():
        ref = recipient.bridge(ids)
        empty = NeuronSet.empty()
        with transplant(donor, recipient, empty):
            assert torch.equal(recipient.bridge(ids), ref)
        with ablate(recipient, empty):
            assert torch.equal(recipient.bridge(ids), ref)
        assert torch.equal(run_patched(donor, recipient, empty, ids), recipient.hf_model(input_ids=ids).logits)


@pytest.mark.parametrize("arch", ARCHS)
def test_patching_every_neuron_gives_the_donor_activations(pairs, batch, arch):
    donor, recipient = pairs[arch]
    ids, _ = batch
    everything = NeuronSet.every_neuron(recipient.n_layers, recipient.d_mlp)
    names = {neuron_hook_name(L) for L in range(recipient.n_layers)} | {f"blocks.{L}.mlp.hook_out" for L in range(recipient.n_layers)}
    with torch.no_grad():
        want = _hooked(donor.bridge, ids, names)
        with patch_from_donor(donor, recipient, everything) as session:
            donor.bridge(ids)
            got = _hooked(recipient.bridge, ids, names)
        assert session.donor_passes == session.recipient_passes == 1
        for L in range(recipient.n_layers):
            torch.testing.assert_close(got[neuron_hook_name(L)], want[neuron_hook_name(L)], rtol=0, atol=0)
            # the recipient's MLP output is its own down projection of the donor's activations
            down = recipient.bridge.blocks[L].mlp.out
            torch.testing.assert_close(got[f"blocks.{L}.mlp.hook_out"], down(want[neuron_hook_name(L)]), rtol=0, atol=1e-6)


def test_patching_a_subset_keeps_the_other_neurons_of_that_pass(pairs, batch):
    donor, recipient = pairs["llama"]
    ids, _ = batch
    nset = NeuronSet.from_pairs("s", [(0, 2), (0, 9)])  # layer 0 only: its other units are the recipient's own
    name = neuron_hook_name(0)
    with torch.no_grad():
        d = _hooked(donor.bridge, ids, {name})[name]
        r = _hooked(recipient.bridge, ids, {name})[name]
        with patch_from_donor(donor, recipient, nset):
            donor.bridge(ids)
            p = _hooked(recipient.bridge, ids, {name})[name]
    keep = [u for u in range(recipient.d_mlp) if u not in (2, 9)]
    assert torch.equal(p[..., [2, 9]], d[..., [2, 9]])
    assert torch.equal(p[..., keep], r[..., keep])


def test_patched_generation_is_consistent_with_teacher_forcing(pairs, batch):
    """KV-cached lockstep generation = argmax of the teacher-forced patched pass over its own output."""
    donor, recipient = pairs["qwen3"]
    ids, mask = batch
    nset = NeuronSet.from_pairs("s", [(L, u) for L in range(2) for u in range(0, 48, 3)])
    pad = recipient.tokenizer.pad_token_id
    with patch_from_donor(donor, recipient, nset) as session:
        new = greedy_generate(recipient, ids, mask, 6, None, pad, lockstep=[donor])
    assert session.donor_passes == session.recipient_passes == 6
    plain = greedy_generate(recipient, ids, mask, 6, None, pad)
    assert not torch.equal(new, plain)  # the patch changes what the recipient writes
    full = torch.cat([ids, new], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(new)], dim=1)
    pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad(), patch_from_donor(donor, recipient, nset):
        donor.hf_model(input_ids=full, attention_mask=full_mask, position_ids=pos)
        logits = recipient.hf_model(input_ids=full, attention_mask=full_mask, position_ids=pos).logits
    teacher = logits[:, ids.shape[1] - 1 : -1].argmax(-1)
    assert torch.equal(teacher, new)


@pytest.mark.parametrize("arch", ("qwen3", "gpt2"))
def test_generation_loop_matches_hf_generate(pairs, batch, arch):
    _, recipient = pairs[arch]
    ids, mask = batch
    tok = recipient.tokenizer
    mine = greedy_generate(recipient, ids, mask, 7, None, tok.pad_token_id)
    assert repair_bridge_kv_cache(recipient.hf_model) == recipient.n_layers  # load_model repaired every attention module
    hf = recipient.hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=7, do_sample=False,
                                     pad_token_id=tok.pad_token_id, eos_token_id=None)
    assert torch.equal(mine, hf[:, ids.shape[1]:])
    # and both agree with decoding by full forward passes (no KV cache)
    seq, m = ids, mask
    for _ in range(7):
        pos = (m.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            nxt = recipient.hf_model(input_ids=seq, attention_mask=m, position_ids=pos, use_cache=False).logits[:, -1].argmax(-1)
        seq, m = torch.cat([seq, nxt[:, None]], 1), torch.cat([m, torch.ones_like(m[:, :1])], 1)
    assert torch.equal(mine, seq[:, ids.shape[1]:])


def test_fast_and_plain_decoding_agree_under_ablation_and_transplant(pairs, batch, monkeypatch):
    """A Qwen3 model decodes by nex_interp.decoding unless models run in lockstep; the bridge's
    ablation hooks and transplanted weights act there as in the plain loop."""
    from nex_interp import decoding

    donor, recipient = pairs["qwen3"]
    ids, mask = batch
    pad = recipient.tokenizer.pad_token_id
    nset = NeuronSet.from_pairs("s", [(L, u) for L in range(recipient.n_layers) for u in range(0, recipient.d_mlp, 2)])
    assert decoding.supported(recipient.hf_model)

    def both():
        fast = greedy_generate(recipient, ids, mask, 9, None, pad)
        with monkeypatch.context() as m:
            m.setattr(decoding, "supported", lambda hf: False)
            plain = greedy_generate(recipient, ids, mask, 9, None, pad)
        assert torch.equal(fast, plain)
        return fast

    untouched = both()
    with ablate(recipient, nset, "zero"):
        ablated = both()
    with transplant(donor, recipient, nset):
        moved = both()
    assert not torch.equal(ablated, untouched) and not torch.equal(moved, untouched)


def test_ablation_zero_and_mean_set_the_hook_value(pairs, batch):
    _, model = pairs["gpt2"]
    ids, mask = batch
    nset = NeuronSet.from_pairs("s", [(0, 3), (1, 0), (1, 11)])
    names = {neuron_hook_name(0), neuron_hook_name(1)}
    with torch.no_grad():
        plain = _hooked(model.bridge, ids, names)
        with ablate(model, nset, "zero"):
            z = _hooked(model.bridge, ids, names)
        means = mean_activations(model, [(ids, mask)], nset)
        with ablate(model, nset, "mean", means):
            m = _hooked(model.bridge, ids, names)
    assert torch.all(z[neuron_hook_name(0)][..., 3] == 0)
    assert torch.all(z[neuron_hook_name(1)][..., [0, 11]] == 0)
    assert torch.equal(z[neuron_hook_name(0)][..., 4:], plain[neuron_hook_name(0)][..., 4:])
    # the mean is over the real (unpadded) tokens only, of a forward pass that masks the padding
    seen = {}
    with torch.no_grad(), installed_hooks(model, [(neuron_hook_name(1), lambda x, hook: seen.setdefault("x", x.clone()))]):
        model.hf_model(input_ids=ids, attention_mask=mask)
    want = seen["x"][..., [0, 11]][mask.bool()].double().mean(0).float()
    torch.testing.assert_close(means[1], want)
    assert torch.allclose(m[neuron_hook_name(1)][..., [0, 11]], want.expand(*ids.shape, 2))
    with pytest.raises(ConfigError, match="mean"):
        with ablate(model, nset, "mean"):
            pass
    with pytest.raises(ConfigError, match="unknown"):
        with ablate(model, nset, "median"):  # type: ignore[arg-type]
            pass


def test_hooks_never_leak_after_an_exception(pairs, batch):
    donor, recipient = pairs["qwen3"]
    ids, _ = batch
    nset = NeuronSet.from_pairs("s", [(0, 1), (1, 2)])
    before = _state(recipient)
    assert attached_hook_count(donor) == attached_hook_count(recipient) == 0

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with patch_from_donor(donor, recipient, nset):
            donor.bridge(ids)
            raise Boom
    with pytest.raises(Boom):
        with ablate(recipient, nset, "zero"):
            recipient.bridge(ids)
            raise Boom
    with pytest.raises(Boom):
        with transplant(donor, recipient, nset):
            raise Boom
    # an error raised inside a hook (recipient run before the donor) also leaves nothing behind
    with pytest.raises(RuntimeError, match="donor has not run"):
        with patch_from_donor(donor, recipient, nset):
            recipient.bridge(ids)
    assert attached_hook_count(donor) == attached_hook_count(recipient) == 0
    assert _same_state(before, _state(recipient))


def test_incompatible_models_and_out_of_range_sets_are_config_errors(pairs):
    donor, recipient = pairs["qwen3"]
    with pytest.raises(ConfigError, match="architectures differ"):
        with transplant(pairs["gpt2"][0], recipient, NeuronSet.empty()):
            pass
    with pytest.raises(ConfigError, match="same model"):
        with patch_from_donor(recipient, recipient, NeuronSet.empty()):
            pass
    with pytest.raises(ConfigError, match="unit 48"):
        with transplant(donor, recipient, NeuronSet.from_pairs("x", [(0, 48)])):
            pass
