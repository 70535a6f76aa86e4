"""The preallocated-cache decode loop (:mod:`nex_interp.decoding`) against ``transformers``'
``generate``, on tiny random Qwen3 models with and without sliding-window layers; and the
TransformerLens bridge on a sliding-window model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from nex_interp.decoding import decode, supported  # noqa: E402
from nex_interp.generation import RowSampler  # noqa: E402
from nex_interp.zoo.plan import ModelShape  # noqa: E402
from nex_interp.zoo.train import hf_config  # noqa: E402

EOS = 2


def _model(local: tuple[int, ...], seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    shape = ModelShape(n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=64, max_positions=128,
                       sliding_window=6, local_layers=local)
    return AutoModelForCausalLM.from_config(hf_config(shape), dtype=torch.float32).eval()


def _prompts(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(30, 600, (n,), generator=g).tolist() for n in lengths]


def _hf_generate(model, prompt, n, **kw):
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, eos_token_id=EOS, pad_token_id=0, **kw)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("local", [(), (0, 2)])
def test_greedy_equals_generate_with_padding_and_windows(local):
    model = _model(local)
    prompts = _prompts((9, 14, 5))  # left padding for two of them; 20 new tokens pass the window of 6
    got = decode(model, prompts, 2, 20, {EOS}, lambda logits, rows: logits.argmax(-1).tolist())
    assert len(got) == 6
    for i, p in enumerate(prompts):
        ref = _hf_generate(model, p, 20, do_sample=False)
        for s in range(2):
            assert got[2 * i + s] == ref[: len(got[2 * i + s])] and len(got[2 * i + s]) >= 1


def test_rows_stop_at_their_own_eos_and_the_rest_go_on():
    model = _model((0,))
    prompts = _prompts((8, 8))
    calls = []

    def pick(logits, rows):  # row 0 emits EOS at once; the others decode greedily
        calls.append(list(rows))
        toks = logits.argmax(-1).tolist()
        return [EOS if r == 0 else (t if t != EOS else 3) for r, t in zip(rows, toks)]

    got = decode(model, prompts, 2, 12, {EOS}, pick)
    assert got[0] == [EOS]
    assert all(len(seq) == 12 for seq in got[1:])
    assert 0 not in calls[-1]  # the finished row was dropped from the batch
    assert [len(c) for c in calls][:2] == [4, 3]


def test_sampling_draws_the_same_tokens_as_generate_with_the_row_sampler():
    from transformers import LogitsProcessorList

    model = _model((1,))
    prompts = _prompts((10, 10, 10))  # one length: no padding, so the batched logits are the same
    seeds = [11, 12, 13, 14, 15, 16]
    got = decode(model, prompts, 2, 15, {EOS}, RowSampler(seeds, 0.9, 0.95).draw)
    ids = torch.tensor([p for p in prompts for _ in range(2)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=15, eos_token_id=EOS, pad_token_id=0,
                         do_sample=False, logits_processor=LogitsProcessorList([RowSampler(seeds, 0.9, 0.95)]))
    for row, seq in enumerate(got):
        assert seq == out[row, 10 : 10 + len(seq)].tolist()
    assert len({tuple(s) for s in got}) > 1


def test_supported_models():
    from transformers import LlamaConfig, LlamaForCausalLM

    assert supported(_model(()))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    assert not supported(llama)


def test_bridge_runs_a_sliding_window_model_as_transformers_does(tmp_path):
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge

    from nex_interp.zoo.tokenizer import make_tokenizer

    model = _model((0, 2))
    model.save_pretrained(tmp_path)
    make_tokenizer().save_pretrained(tmp_path)
    bridge = TransformerBridge.boot_transformers(str(tmp_path), device="cpu")
    x = torch.tensor(_prompts((40,)))
    with torch.no_grad():
        ref = model(x).logits
        full = _model(())
        full.load_state_dict(model.state_dict())
        no_window = full(x).logits
        got = bridge(x)
    assert (got - ref).abs().max() < 1e-4
    assert (no_window - ref).abs().max() > 1e-2  # the window matters on 40 tokens
