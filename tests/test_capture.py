"""Capture on pico models: against a dense oracle, batching, determinism, resuming, token stats, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformer_lens")

from nex_interp.cache.reader import open_cache, open_stream, read_response_meta  # noqa: E402
from nex_interp.capture import batching  # noqa: E402
from nex_interp.capture import engine as capture_mod  # noqa: E402
from nex_interp.capture.engine import CaptureConfig, write_cache, parse_layers  # noqa: E402
from nex_interp.capture.rules import QuantileCalibrator, parse_rule  # noqa: E402
from nex_interp.cli import main  # noqa: E402
from nex_interp.errors import ConfigError, NexError  # noqa: E402
from nex_interp.keys import KeyScheme  # noqa: E402
from nex_interp.models.loader import load_model  # noqa: E402
from nex_interp.models.pico import pico_vocab  # noqa: E402

R = 8  # small rows keep the pico responses multi-row


def _responses(n: int = 7, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = [w for w in pico_vocab()[4:] if w != "\n"]
    lengths = [0, 1, 7, 8, 9, 23, 61][:n] + [rng.randint(2, 40) for _ in range(max(0, n - 7))]
    out = []
    for i, L in enumerate(lengths):
        prompt = " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))
        out.append({"id": f"r{i}", "problem_id": f"p{i // 2}", "sample": i % 2, "prompt": prompt,
                    "response": " ".join(rng.choice(words) for _ in range(L)), "answer": str(i)})
    return out


@pytest.fixture(scope="module")
def pico(pico_qwen3_dir):
    return load_model(str(pico_qwen3_dir))


@pytest.fixture(scope="module")
def responses():
    return _responses()


def _dense_oracle(model_dir: Path, arch: str, tokenizer, rows: list[dict], rule, layers, row_tokens: int):
    """Per response: {row: {(layer, unit): mass}} and base, from a plain HF model run one response at a time."""
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    out = []
    for r in rows:
        p = tokenizer(r["prompt"])["input_ids"]
        s = tokenizer(r["response"], add_special_tokens=False)["input_ids"]
        acts = {}
        mods = [plain.transformer.h[L].mlp.c_proj if arch == "gpt2" else plain.model.layers[L].mlp.down_proj for L in layers]
        hs = [m.register_forward_pre_hook(lambda m, a, L=L: acts.__setitem__(L, a[0][0].detach().numpy().copy())) for L, m in zip(layers, mods)]
        with torch.no_grad():
            plain(torch.tensor([p + s]))
        for h in hs:
            h.remove()
        rowd: dict[int, dict] = {}
        base: dict = {}
        for L in layers:
            x = acts[L][len(p):]
            v = x if rule.sign == "positive" else np.abs(x)
            if rule.kind == "abs":
                act = v > rule.value
            elif rule.kind == "quantile":
                act = v > rule.thresholds[L]
            else:
                act = np.zeros_like(v, dtype=bool)
                top = np.argsort(-v, axis=1, kind="stable")[:, : int(rule.value)]
                np.put_along_axis(act, top, True, axis=1)
                act &= v > 0
            for t, u in zip(*np.nonzero(act)):
                d = rowd.setdefault(t // row_tokens, {})
                d[(L, u)] = d.get((L, u), 0.0) + float(v[t, u])
                base[(L, u)] = base.get((L, u), 0.0) + float(v[t, u])
        out.append((len(s), rowd, base))
    return out


def _cache_as_dicts(path: Path, scheme: KeyScheme):
    c = open_cache(path)
    out = []
    for i in range(c.n_responses):
        r0, r1 = c.response_rows(i)
        rows, n_tok = {}, 0
        for j in range(r0, r1):
            k = c.keys[c.row_ptr[j] : c.row_ptr[j + 1]]
            assert np.all(np.diff(k.astype(np.int64)) > 0), "keys sorted and unique within a row"
            L, U = scheme.unpack(k)
            rows[j - r0] = dict(zip(zip(L.tolist(), U.tolist()), c.mass[c.row_ptr[j] : c.row_ptr[j + 1]].astype(float)))
            n_tok += int(c.token_row_ptr[j + 1] - c.token_row_ptr[j])
        bk = c.base_keys[c.base_ptr[i] : c.base_ptr[i + 1]]
        L, U = scheme.unpack(bk)
        base = dict(zip(zip(L.tolist(), U.tolist()), c.base_mass[c.base_ptr[i] : c.base_ptr[i + 1]].astype(float)))
        out.append((n_tok, rows, base))
    return out


def _assert_same(got, want, rtol=2e-3, atol=2e-3):
    assert len(got) == len(want)
    for (gn, grows, gbase), (wn, wrows, wbase) in zip(got, want):
        assert gn == wn
        assert set(grows) <= set(range(-(-wn // R))) and len(grows) == -(-wn // R)
        for j in grows:
            assert set(grows[j]) == set(wrows.get(j, {}))
            for key, m in grows[j].items():
                assert m == pytest.approx(wrows[j][key], rel=rtol, abs=atol)
        assert set(gbase) == set(wbase)
        for key, m in gbase.items():
            assert m == pytest.approx(wbase[key], rel=rtol, abs=atol)


@pytest.mark.parametrize(
    "arch,rule_text",
    [("qwen3", "topk:5"), ("llama", "abs:0.8,sign=magnitude"), ("gpt2", "abs:0.3"), ("qwen3", "quantile:0.9")],
)
def test_cache_matches_dense_oracle(arch, rule_text, pico_dirs, responses, tmp_path):
    """Rows hold exactly the units active on >= 1 of their response tokens, with the summed activation."""
    d = pico_dirs(arch)
    model = load_model(str(d))
    out = tmp_path / "cache"
    rep = write_cache(model, responses, out, CaptureConfig(rule=rule_text, row_tokens=R, batch_size=3, progress=False))
    assert rep.n_captured == len(responses)
    manifest = json.loads((out / "manifest.json").read_text())
    rule = parse_rule(rule_text)
    if rule.kind == "quantile":
        rule = rule.with_thresholds(manifest["rule"]["thresholds"])
        assert len(rule.thresholds) == model.n_layers and all(t > 0 for t in rule.thresholds)
    want = _dense_oracle(d, arch, model.tokenizer, responses, rule, range(model.n_layers), R)
    scheme = KeyScheme.for_model(model.n_layers, model.d_mlp)
    _assert_same(_cache_as_dicts(out, scheme), want)
    # masses are >= 0 whatever the sign of the activation
    c = open_cache(out)
    assert (np.asarray(c.mass) >= 0).all() and (np.asarray(c.base_mass) >= 0).all()
    assert manifest["row_tokens"] == R and manifest["n_layers"] == 2 and manifest["d_mlp"] == 128
    assert manifest["model"]["arch"] == arch and manifest["rule"]["spec"] == rule.spec


def test_rows_cover_response_tokens_only(pico, responses, tmp_path):
    write_cache(pico, responses, tmp_path / "c", CaptureConfig(row_tokens=R, progress=False))
    c = open_cache(tmp_path / "c")
    meta = read_response_meta(tmp_path / "c")
    for i, m in enumerate(meta):
        r0, r1 = c.response_rows(i)
        n_tok = int(c.token_row_ptr[r1] - c.token_row_ptr[r0])
        assert n_tok == m["n_response_tokens"] == len(pico.tokenizer(responses[i]["response"], add_special_tokens=False)["input_ids"])
        assert r1 - r0 == -(-n_tok // R)
        assert m["id"] == responses[i]["id"] and m["answer"] == responses[i]["answer"] and "response" not in m
    ptr, arrays = open_stream(tmp_path / "c", "tokens")
    assert int(ptr[-1]) == c.token_row_ptr[-1]


def _cache_files(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in ("manifest.json", "provenance.json")
    }


def _per_response_bytes(path: Path) -> dict[str, tuple[bytes, ...]]:
    """Each response's own bytes (rows, base, token stats), by id."""
    c = open_cache(path)
    ptr, arrays = open_stream(path, "tokens")
    out = {}
    for i, m in enumerate(read_response_meta(path)):
        r0, r1 = c.response_rows(i)
        e0, e1 = int(c.row_ptr[r0]), int(c.row_ptr[r1])
        b0, b1 = int(c.base_ptr[i]), int(c.base_ptr[i + 1])
        out[m["id"]] = (
            np.asarray(c.keys[e0:e1]).tobytes(), np.asarray(c.mass[e0:e1]).tobytes(),
            np.diff(np.asarray(c.row_ptr[r0 : r1 + 1])).tobytes(), np.diff(np.asarray(c.token_row_ptr[r0 : r1 + 1])).tobytes(),
            np.asarray(c.base_keys[b0:b1]).tobytes(), np.asarray(c.base_mass[b0:b1]).tobytes(),
            *(np.asarray(arrays[k][int(ptr[i]) : int(ptr[i + 1])]).tobytes() for k in sorted(arrays)),
        )
    return out


def _same_width_responses() -> list[dict]:
    """Responses whose sequences share padded widths (so batches of 3 really form), and some that don't."""
    rows = _responses(12, seed=5)
    rows += [dict(r, id=f"{r['id']}-again", sample=9) for r in rows[:5]]  # identical lengths
    return rows


def test_batch_size_and_order_change_no_byte(pico, tmp_path, monkeypatch):
    """Batch sizes 1 and 3 give byte-identical caches; a shuffled input gives each response the same bytes."""
    rows = _same_width_responses()
    sizes = []
    real = capture_mod.capture_batch
    monkeypatch.setattr(capture_mod, "capture_batch", lambda m, items, *a: sizes.append(len(items)) or real(m, items, *a))
    write_cache(pico, rows, tmp_path / "b1", CaptureConfig(row_tokens=R, batch_size=1, progress=False))
    assert sizes == [1] * len(rows)
    sizes.clear()
    write_cache(pico, rows, tmp_path / "b3", CaptureConfig(row_tokens=R, batch_size=3, progress=False))
    assert max(sizes) == 3 and sum(sizes) == len(rows)  # real batches, padded ones among them
    f1, f3 = _cache_files(tmp_path / "b1"), _cache_files(tmp_path / "b3")
    assert f1.keys() == f3.keys() and all(f1[k] == f3[k] for k in f1)
    assert [m["id"] for m in read_response_meta(tmp_path / "b3")] == [r["id"] for r in rows]  # input order
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    write_cache(pico, shuffled, tmp_path / "shuf", CaptureConfig(row_tokens=R, batch_size=3, progress=False))
    assert [m["id"] for m in read_response_meta(tmp_path / "shuf")] == [r["id"] for r in shuffled]
    assert _per_response_bytes(tmp_path / "shuf") == _per_response_bytes(tmp_path / "b1")


def test_plan_batches_one_width_per_batch():
    items = [capture_mod._Item(str(i), {}, [1] * p, [2] * r) for i, (p, r) in enumerate([(3, 10), (3, 40), (5, 8), (1, 12), (2, 60), (3, 9)])]
    assert batching.plan_batches(items, 1) == [[[i]] for i in range(6)]
    (window,) = batching.plan_batches(items, 2)
    assert sorted(i for b in window for i in b) == list(range(6))
    for b in window:
        assert len(b) <= 2 and len({batching.padded_width(items[i].length) for i in b}) == 1 and b == sorted(b)
    assert window[0] == [0, 2]  # widths 16, 16 (13, 13 tokens) first; 12 tokens -> 16 too, but the batch is full
    assert batching.default_batch_size("cpu") == 1 and batching.default_batch_size("cuda:0") == 4


def test_same_inputs_byte_identical(pico, responses, tmp_path):
    cfg = CaptureConfig(row_tokens=R, batch_size=3, progress=False)
    write_cache(pico, responses, tmp_path / "a", cfg)
    write_cache(pico, responses, tmp_path / "b", cfg)
    fa, fb = _cache_files(tmp_path / "a"), _cache_files(tmp_path / "b")
    assert fa.keys() == fb.keys() and "rows/keys.uint32" in fa and "tokens/entropy.float32" in fa
    assert all(fa[k] == fb[k] for k in fa)
    ma, mb = (json.loads((tmp_path / x / "manifest.json").read_text()) for x in "ab")
    assert ma["checksums"] == mb["checksums"]


def test_interrupted_capture_is_valid_and_resumes(pico, responses, tmp_path, monkeypatch):
    cfg = CaptureConfig(row_tokens=R, batch_size=1, progress=False)
    write_cache(pico, responses, tmp_path / "full", cfg)
    real = capture_mod.capture_batch
    calls = {"n": 0}

    def dies_on_third_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(capture_mod, "capture_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        write_cache(pico, responses, tmp_path / "cut", cfg)
    part = open_cache(tmp_path / "cut")
    assert part.n_responses == 2  # two finished responses, nothing of the third
    assert [m["id"] for m in read_response_meta(tmp_path / "cut")] == ["r0", "r1"]
    monkeypatch.setattr(capture_mod, "capture_batch", real)
    rep = write_cache(pico, responses, tmp_path / "cut", cfg)
    assert (rep.n_already_done, rep.n_captured) == (2, 5)
    assert _cache_files(tmp_path / "cut") == _cache_files(tmp_path / "full")
    # batched: what an interruption leaves is a prefix of the input, and resuming (batched) completes it
    calls["n"] = 0
    monkeypatch.setattr(capture_mod, "capture_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        write_cache(pico, responses, tmp_path / "cut3", CaptureConfig(row_tokens=R, batch_size=3, progress=False))
    ids = [m["id"] for m in read_response_meta(tmp_path / "cut3")]
    assert ids == [r["id"] for r in responses[: len(ids)]] and len(ids) < len(responses)
    monkeypatch.setattr(capture_mod, "capture_batch", real)
    write_cache(pico, responses, tmp_path / "cut3", CaptureConfig(row_tokens=R, batch_size=3, progress=False))
    assert _cache_files(tmp_path / "cut3") == _cache_files(tmp_path / "full")
    with pytest.raises(NexError, match="resume"):
        write_cache(pico, responses, tmp_path / "cut", cfg, resume=False)


def test_token_stats_match_full_logits(pico, responses, tmp_path):
    write_cache(pico, responses[:5], tmp_path / "c", CaptureConfig(row_tokens=R, progress=False, stats_topk=4))
    ptr, arrays = open_stream(tmp_path / "c", "tokens")
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["token_stats"]["topk"] == 4 and manifest["token_stats"]["vocab_size"] == len(pico.tokenizer)
    for i, r in enumerate(responses[:5]):
        p = pico.tokenizer(r["prompt"])["input_ids"]
        s = pico.tokenizer(r["response"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(pico.hf_model(torch.tensor([p + s])).logits[0].float(), -1)[len(p) - 1 : len(p) + len(s) - 1]
        sl = slice(int(ptr[i]), int(ptr[i + 1]))
        assert arrays["ids"][sl].tolist() == s
        if not s:
            continue
        np.testing.assert_allclose(arrays["logprob"][sl], logp.gather(1, torch.tensor(s)[:, None])[:, 0].numpy(), atol=1e-4)
        np.testing.assert_allclose(arrays["entropy"][sl], -(logp.exp() * logp).sum(-1).numpy(), atol=1e-4)
        np.testing.assert_allclose(arrays["top1_logprob"][sl], logp.max(-1).values.numpy(), atol=1e-4)
        np.testing.assert_allclose(arrays["topk_mean_logprob"][sl], logp.topk(4, -1).values.mean(-1).numpy(), atol=1e-4)
        np.testing.assert_allclose(arrays["vocab_mean_logprob"][sl], logp.mean(-1).numpy(), atol=1e-4)


def test_layer_subset_and_no_stats_stop_early(pico, responses, tmp_path):
    """Capturing layer 0 without token stats stops the forward after layer 0, with the same rows."""
    from nex_interp.models.hf_pass import hooked_module

    fired = []
    down1, _ = hooked_module(pico.bridge, "blocks.1.mlp.out.hook_in")  # the HF module the pass runs
    h = down1.register_forward_pre_hook(lambda mod, args: fired.append(1))
    try:
        write_cache(pico, responses, tmp_path / "l0", CaptureConfig(row_tokens=R, layers=(0,), token_stats=False, progress=False))
        assert not fired
        write_cache(pico, responses[:2], tmp_path / "l1", CaptureConfig(row_tokens=R, layers=(0,), progress=False))
        assert fired  # with token stats the pass goes on through layer 1
    finally:
        h.remove()
    write_cache(pico, responses, tmp_path / "all", CaptureConfig(row_tokens=R, progress=False))
    sub = _cache_as_dicts(tmp_path / "l0", KeyScheme.ref22())
    full = _cache_as_dicts(tmp_path / "all", KeyScheme.ref22())
    for (n1, r1, b1), (n2, r2, b2) in zip(sub, full):
        assert n1 == n2
        for j in r1:
            assert r1[j] == {k: v for k, v in r2[j].items() if k[0] == 0}
    assert not (tmp_path / "l0" / "tokens").exists()
    assert json.loads((tmp_path / "l0" / "manifest.json").read_text())["layers"] == [0]


def test_too_long_responses_are_skipped_and_counted(pico, tmp_path):
    rows = _responses(3) + [{"id": "long", "prompt": "a", "response": " ".join(["the"] * (pico.n_ctx + 5))}]
    rep = write_cache(pico, rows, tmp_path / "c", CaptureConfig(row_tokens=R, progress=False))
    assert (rep.n_captured, rep.n_skipped_too_long, rep.skipped_ids) == (3, 1, ["long"])
    assert "skipped 1 too long" in rep.summary()
    assert open_cache(tmp_path / "c").n_responses == 3


def test_quantile_calibration_hits_its_quantile():
    """The histogram quantile is within a bin of the exact one."""
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((3000, 64)).astype(np.float32) * 2.0)
    cal = QuantileCalibrator(1, "positive", "cpu")
    for s in range(0, 3000, 700):
        cal.add(0, x[s : s + 700])
    for q in (0.9, 0.99):
        assert cal.thresholds(q)[0] == pytest.approx(float(np.quantile(x.numpy(), q)), rel=5e-3)
    cal_m = QuantileCalibrator(1, "magnitude", "cpu")
    cal_m.add(0, x)
    assert cal_m.thresholds(0.95)[0] == pytest.approx(float(np.quantile(np.abs(x.numpy()), 0.95)), rel=5e-3)
    assert cal.thresholds(0.3)[0] == 0.0  # below the positive range: everything positive is active


def test_rule_parsing():
    r = parse_rule("quantile:0.999,sign=magnitude")
    assert (r.kind, r.value, r.sign, r.needs_calibration) == ("quantile", 0.999, "magnitude", True)
    assert parse_rule(r.spec).spec == r.spec == "quantile:0.999,sign=magnitude"
    assert parse_rule("topk:8").spec == "topk:8"
    for bad in ("topk:0", "topk:2.5", "abs:-1", "quantile:1", "x:1", "abs", "abs:t", "abs:1,mode=x", "abs:1,sign=neg"):
        with pytest.raises(ConfigError):
            parse_rule(bad)
    assert parse_layers("0-2,5", 8) == (0, 1, 2, 5) and parse_layers("all", 8) is None
    with pytest.raises(ConfigError, match="attention"):
        CaptureConfig(attention="flash")
    for bad in ("9", "a-b", "3-1"):
        with pytest.raises(ConfigError):
            parse_layers(bad, 8)


def test_cli_capture_and_errors(pico_qwen3_dir, responses, tmp_path, capsys):
    src = tmp_path / "responses.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in responses))
    out = tmp_path / "cache"
    base = ["capture", "--model", str(pico_qwen3_dir), "--responses", str(src), "--no-progress"]
    assert main(base + ["-o", str(out), "--row-tokens", "8", "--rule", "abs:1.0", "--layers", "1", "--max-responses", "5"]) == 0
    assert "captured 5 responses" in capsys.readouterr().out
    c = open_cache(out)
    assert c.n_responses == 5 and set(KeyScheme.ref22().unpack(np.asarray(c.keys))[0].tolist()) <= {1}
    assert (out / "provenance.json").is_file()
    # re-running resumes: nothing new
    assert main(base + ["-o", str(out), "--row-tokens", "8", "--rule", "abs:1.0", "--layers", "1", "--max-responses", "5"]) == 0
    assert "5 already in the cache" in capsys.readouterr().out
    # other settings on the same cache: one-line error
    assert main(base + ["-o", str(out), "--row-tokens", "16", "--rule", "abs:1.0", "--layers", "1"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(responses[0]) + "\n{oops\n")
    cases = [
        (["capture", "--model", str(pico_qwen3_dir), "--responses", str(bad), "-o", str(tmp_path / "x")], "line 2"),
        (["capture", "--model", str(pico_qwen3_dir), "--responses", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x")], "not found"),
        (["capture", "--model", str(tmp_path / "nomodel"), "--responses", str(src), "-o", str(tmp_path / "x")], "not found"),
        (base + ["-o", str(tmp_path / "x"), "--rule", "top:3"], "unknown activation rule"),
    ]
    capsys.readouterr()
    for argv, msg in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_bfloat16_capture_close_to_float32(pico_qwen3_dir, responses, tmp_path):
    """A bf16 model captures the same kind of cache (entries within bf16 noise of float32's)."""
    m16 = load_model(str(pico_qwen3_dir), dtype="bfloat16")
    r16 = write_cache(m16, responses, tmp_path / "bf16", CaptureConfig(row_tokens=R, progress=False))
    m32 = load_model(str(pico_qwen3_dir))
    r32 = write_cache(m32, responses, tmp_path / "f32", CaptureConfig(row_tokens=R, progress=False))
    assert r16.n_rows == r32.n_rows and abs(r16.n_entries - r32.n_entries) <= 0.1 * r32.n_entries
    assert json.loads((tmp_path / "bf16" / "manifest.json").read_text())["dtype"] == "bfloat16"
    _, a16 = open_stream(tmp_path / "bf16", "tokens")
    _, a32 = open_stream(tmp_path / "f32", "tokens")
    np.testing.assert_allclose(a16["logprob"], a32["logprob"], atol=0.15)


def test_hf_pass_runs_plain_modules_and_restores(pico):
    """Within hf_pass the model runs its HF modules with SDPA, hooks get the bridge's values; all is restored."""
    from nex_interp.models.hf_pass import hf_pass

    hf = pico.hf_model
    before = [type(m).__name__ for m in hf.modules()]
    impl = hf.config._attn_implementation
    ids = torch.tensor([pico.tokenizer("the cat sat on the mat")["input_ids"]])
    name = "blocks.1.mlp.out.hook_in"
    with torch.no_grad():
        _, cache = pico.bridge.run_with_cache(ids, names_filter=[name, "ln_final.hook_out"])
        got = {}
        with hf_pass(pico, [(name, lambda x: got.__setitem__("mlp", x.clone())), ("ln_final.hook_out", lambda x: got.__setitem__("norm", x.clone()))]):
            assert hf.config._attn_implementation == "sdpa"
            assert not any(type(m).__module__.startswith("transformer_lens") for m in hf.modules())
            hf(ids)
        with pytest.raises(RuntimeError), hf_pass(pico, [(name, lambda x: None)]):
            raise RuntimeError("a pass that stops early")
        with pytest.raises(KeyError, match="no hook point"), hf_pass(pico, [("blocks.9.mlp.out.hook_in", lambda x: None)]):
            pass
    assert [type(m).__name__ for m in hf.modules()] == before and hf.config._attn_implementation == impl
    torch.testing.assert_close(got["mlp"], cache[name], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["norm"], cache["ln_final.hook_out"], atol=1e-5, rtol=1e-5)
    fired = []
    point = pico.bridge.hook_dict["blocks.0.attn.hook_pattern"]
    h = point.add_hook(lambda x, hook=None: fired.append(x.shape))
    try:
        with torch.no_grad():
            pico.bridge(ids)
    finally:
        h.hook.remove()
        point.fwd_hooks.remove(h)
    assert fired, "the bridge's own attention hooks fire again after the pass"
