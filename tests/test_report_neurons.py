"""Neuron-level helpers: top-activating contexts and overlap of neuron sets across variants."""

from __future__ import annotations

import numpy as np
import pytest

from nex_interp.errors import ConfigError
from nex_interp.keys import KeyScheme
from nex_interp.neuron_weights import NeuronWeights
from nex_interp.report.neurons import effective_overlap, neuron_contexts


def _weights(pairs, weights, eff=None):
    scheme = KeyScheme.ref22()
    idx = scheme.pack(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])).astype(np.int64)
    order = np.argsort(idx)
    w = np.asarray(weights, np.float32)[order]
    e = np.asarray(eff if eff is not None else np.ones(len(pairs)), np.float32)[order]
    return NeuronWeights(idx[order], w, e, np.zeros(len(pairs), np.float32))


def test_contexts_rank_rows_by_mass_and_carry_text(tmp_path):
    from nex_interp.cache.reader import open_cache
    from nex_interp.cache.writer import CacheWriter
    from test_report import WORDS, word_tokenizer

    scheme = KeyScheme.ref22()
    k = lambda layer, unit: scheme.pack(np.array([layer]), np.array([unit]))[0]  # noqa: E731
    tok = word_tokenizer(tmp_path / "tok")
    with CacheWriter(tmp_path / "c", scheme, {"model": {"spec": "t", "path": str(tmp_path / "tok")}}) as w:
        for r, masses in enumerate([(1.0, 5.0), (3.0, 0.5)]):
            rows = [
                (np.array([k(1, 2), k(0, 9)], np.uint32), np.array([masses[0], 1.0], np.float32), 2),
                (np.array([k(1, 2)], np.uint32), np.array([masses[1]], np.float32), 2),
            ]
            ids = np.array([1, 2, 3, 4], np.int32) + r
            w.add_response(rows, np.array([k(0, 9), k(1, 2)], np.uint32), np.ones(2, np.float32), {"id": str(r)}, {"tokens": {"ids": ids}})
    cache = open_cache(tmp_path / "c")
    df = neuron_contexts(cache, [(1, 2), (5, 5)], top=3)
    assert df["layer"].tolist() == [1, 1, 1]  # top 3 of 4 rows; the never-active neuron (5, 5) has none
    assert df["mass"].tolist() == [5.0, 3.0, 1.0]
    assert df["rank"].tolist() == [1, 2, 3]
    assert df["row"].tolist() == [1, 2, 0] and df["response"].tolist() == [0, 1, 0]
    assert df["text"].iloc[0].strip() == " ".join([WORDS[3], WORDS[4]])  # response 0, second row: ids 3, 4
    assert df["text"].iloc[1].strip() == tok.decode([2, 3])
    # context: the neighbouring row of the same response on each side, the row itself marked
    assert df["context"].iloc[0].replace("«", "").replace("»", "").split() == [WORDS[i] for i in (1, 2, 3, 4)]
    assert df["context"].iloc[0].index("«") > 0 and df["context"].iloc[1].startswith("«")
    top1 = neuron_contexts(cache, [(1, 2)], top=1, text=False)
    assert len(top1) == 1 and top1["text"].iloc[0] is None
    # the opened cache knows its path: no cache_path needed for the text
    assert neuron_contexts(cache, [(1, 2)], top=1)["text"].iloc[0] == df["text"].iloc[0]
    with pytest.raises(ConfigError):
        neuron_contexts(cache, [(1, 2)], top=0)


def test_overlap_counts_shared_effective_neurons():
    a = _weights([(0, 1), (0, 2), (1, 3)], [1.0, 0.5, -1.0])
    b = _weights([(0, 1), (1, 3), (2, 4)], [0.2, 0.9, 0.4])
    df = effective_overlap({"a": a, "b": b}).set_index(["a", "b"])
    assert df.loc[("a", "b"), "shared"] == 1 and df.loc[("a", "b"), "jaccard"] == pytest.approx(1 / 4)
    assert df.loc[("a", "a"), "jaccard"] == 1.0 and df.loc[("b", "b"), "n_a"] == 3
    red = effective_overlap({"a": a, "b": b}, kind="redundant").set_index(["a", "b"])
    assert red.loc[("a", "a"), "n_a"] == 1 and red.loc[("a", "b"), "shared"] == 0
    top = effective_overlap({"a": a, "b": b}, top=1).set_index(["a", "b"])
    assert top.loc[("a", "b"), "n_a"] == 1 and top.loc[("a", "b"), "shared"] == 0  # strongest: a (0, 1), b (1, 3)
    with pytest.raises(ConfigError):
        effective_overlap({"a": a}, kind="both")


def test_overlap_plot_annotates_each_cell():
    pytest.importorskip("matplotlib")
    from nex_interp.plots import plot_overlap

    a = _weights([(0, 1), (0, 2)], [1.0, 0.5])
    b = _weights([(0, 1), (1, 3)], [0.2, 0.9])
    fig = plot_overlap(effective_overlap({"a": a, "b": b}))
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["1.00\n2", "0.33\n1", "0.33\n1", "1.00\n2"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_top_activating_tokens_match_the_down_projection_input(pico_qwen3_dir):
    torch = pytest.importorskip("torch")
    from nex_interp.models.loader import load_model
    from nex_interp.report.neurons import top_activating_tokens

    model = load_model(str(pico_qwen3_dir))
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 40, 12).tolist(), rng.integers(3, 40, 9).tolist()]
    neurons = [(1, 5), (0, 17)]
    df = top_activating_tokens(model, seqs, neurons, top=3, window=2)
    # oracle: the HF model's own down-projection input, captured with a plain torch hook
    seen = {}
    handles = [
        model.hf_model.model.layers[L].mlp.down_proj.register_forward_pre_hook(
            lambda mod, args, L=L: seen.setdefault(L, []).append(args[0][0].detach().clone())
        )
        for L in (0, 1)
    ]
    try:
        with torch.inference_mode():
            for s in seqs:
                model.hf_model(torch.tensor([s]))
    finally:
        for h in handles:
            h.remove()
    for L, U in neurons:
        allv = sorted(((float(v), s, p) for s, t in enumerate(seen[L]) for p, v in enumerate(t[:, U])), key=lambda r: (-r[0], r[1], r[2]))[:3]
        got = df[(df.layer == L) & (df.unit == U)]
        assert got["rank"].tolist() == [1, 2, 3]
        np.testing.assert_allclose(got["activation"].to_numpy(), [a for a, _, _ in allv], rtol=1e-4, atol=1e-5)
        assert list(zip(got["sequence"], got["position"])) == [(s, p) for _, s, p in allv]
        row = got.iloc[0]
        assert f"«{row.token}»" in row.context
    with pytest.raises(ConfigError):
        top_activating_tokens(model, seqs, [(9, 0)])
