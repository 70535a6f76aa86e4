"""`nex capture --ray` on a local Ray cluster (2 CPUs) with a pico model: the same per-response cache bytes,
weights and GMF as a one-process capture; a worker killed mid-shard and an interrupted driver lose nothing.

Needs the ``[distributed]`` extra (Ray); skipped with that reason when Ray is not installed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'nex-interp[distributed]'")
pytest.importorskip("torch")
pytest.importorskip("transformer_lens")

from nex_interp.cache import sharded as sharded_mod  # noqa: E402
from nex_interp.cache.reader import open_cache  # noqa: E402
from nex_interp.capture import distributed as dist  # noqa: E402
from nex_interp.capture.distributed import RayOptions, capture_sharded  # noqa: E402
from nex_interp.capture.engine import CaptureConfig, write_cache  # noqa: E402
from nex_interp.cli import main  # noqa: E402
from nex_interp.core.learn import learn_weights  # noqa: E402
from nex_interp.core.score import score_responses  # noqa: E402
from nex_interp.errors import ConfigError  # noqa: E402
from nex_interp.models.loader import load_model  # noqa: E402
from nex_interp.models.pico import pico_vocab  # noqa: E402

CONFIG = CaptureConfig(row_tokens=4, progress=False)
N = 13


def _responses(n: int) -> list[dict]:
    rng = random.Random(7)
    words = [w for w in pico_vocab()[4:] if w != "\n"]
    return [{"id": f"r{i}", "problem_id": f"p{i // 2}", "prompt": " ".join(rng.choice(words) for _ in range(rng.randint(1, 6))),
             "response": " ".join(rng.choice(words) for _ in range(rng.choice([0, 3, 12, 30, 45])))} for i in range(n)]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def one_process(pico_qwen3_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "cache"
    write_cache(load_model(str(pico_qwen3_dir)), _responses(N), out, CONFIG)
    return out


def _per_response(path: Path) -> dict[str, tuple[bytes, ...]]:
    """Each response's own bytes (rows, base vector, token stats) and metadata, by id."""
    c = open_cache(path)
    tokens = c.stream("tokens")
    out = {}
    for i, rid in enumerate(c.response_ids):
        r0, r1 = c.response_rows(i)
        e0, e1 = int(c.row_ptr[r0]), int(c.row_ptr[r1])
        b0, b1 = int(c.base_ptr[i]), int(c.base_ptr[i + 1])
        assert rid not in out, f"response {rid} twice"
        out[rid] = (
            np.asarray(c.keys[e0:e1]).tobytes(), np.asarray(c.mass[e0:e1]).tobytes(),
            np.diff(np.asarray(c.row_ptr[r0:r1 + 1])).tobytes(), np.diff(np.asarray(c.token_row_ptr[r0:r1 + 1])).tobytes(),
            np.asarray(c.base_keys[b0:b1]).tobytes(), np.asarray(c.base_mass[b0:b1]).tobytes(),
            json.dumps(c.response_meta[i], sort_keys=True),
            *(np.asarray(v).tobytes() for _, v in sorted(tokens.of(i).items())),
        )
    return out


def _assert_same_as_one_process(sharded: Path, one: Path) -> None:
    got, want = _per_response(sharded), _per_response(one)
    assert list(got) == list(want) and got == want
    a, b = learn_weights(open_cache(one)), learn_weights(open_cache(sharded))
    assert a.index.tobytes() == b.index.tobytes() and a.weight.tobytes() == b.weight.tobytes() and len(a.index) > 0
    assert score_responses(open_cache(one), a).tobytes() == score_responses(open_cache(sharded), b).tobytes()


def test_sharded_capture_has_the_one_process_bytes(cluster, pico_qwen3_dir, one_process, tmp_path):
    out = tmp_path / "sh"
    rep = capture_sharded(str(pico_qwen3_dir), _responses(N), out, CONFIG, RayOptions(workers=2, shard_size=4))
    assert rep.n_shards == 4 and rep.n_responses == N and rep.workers == 2 and rep.cpus_per_worker == 1
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000-00003", "00004-00007", "00008-00011", "00012-00012"]
    _assert_same_as_one_process(out, one_process)
    # nex run on it gives the same weights and GMF as on the one-process cache
    assert main(["run", str(out), "-o", str(tmp_path / "run_sh")]) == 0
    assert main(["run", str(one_process), "-o", str(tmp_path / "run_one")]) == 0
    assert (tmp_path / "run_sh" / "scores.csv").read_bytes() == (tmp_path / "run_one" / "scores.csv").read_bytes()
    # a rerun finds every shard finished and rewrites nothing
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent.name == "rows"}
    rep2 = capture_sharded(str(pico_qwen3_dir), _responses(N), out, CONFIG, RayOptions(workers=2, shard_size=4))
    assert rep2.n_shards_done_before == 4 and {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_worker_killed_mid_shard_is_retried_with_nothing_lost(cluster, pico_qwen3_dir, one_process, tmp_path):
    marker = tmp_path / "died"
    out = tmp_path / "sh"
    rep = capture_sharded(str(pico_qwen3_dir), _responses(N), out, CONFIG, RayOptions(workers=1, shard_size=5),
                          _die_once=(str(marker), 2))
    assert marker.exists()  # a worker did exit hard after committing 2 responses of its shard
    assert rep.n_responses == N
    assert not list((out / "shards").glob(".*partial"))
    _assert_same_as_one_process(out, one_process)


def test_an_interrupted_driver_resumes(cluster, pico_qwen3_dir, one_process, tmp_path, monkeypatch):
    out = tmp_path / "sh"
    real = sharded_mod.write_shards_manifest
    calls = []

    def interrupt_after_first_shard(root, rows, n_input, fields=None):
        real(root, rows, n_input, fields)
        calls.append(len(rows))
        if rows:
            raise KeyboardInterrupt

    monkeypatch.setattr(dist, "write_shards_manifest", interrupt_after_first_shard)
    with pytest.raises(KeyboardInterrupt):
        capture_sharded(str(pico_qwen3_dir), _responses(N), out, CONFIG, RayOptions(workers=1, shard_size=5))
    monkeypatch.setattr(dist, "write_shards_manifest", real)
    with pytest.raises(Exception, match="unfinished"):
        open_cache(out)  # an interrupted capture is not read as a whole cache
    rep = capture_sharded(str(pico_qwen3_dir), _responses(N), out, CONFIG, RayOptions(workers=1, shard_size=5))
    assert rep.n_shards_done_before == 1 and rep.n_shards == 3
    _assert_same_as_one_process(out, one_process)


def test_a_rerun_with_other_settings_is_refused(cluster, pico_qwen3_dir, tmp_path):
    out = tmp_path / "sh"
    capture_sharded(str(pico_qwen3_dir), _responses(3), out, CONFIG, RayOptions(workers=1, shard_size=4))
    with pytest.raises(ConfigError, match="other settings"):
        capture_sharded(str(pico_qwen3_dir), _responses(3), out, CaptureConfig(row_tokens=8, progress=False),
                        RayOptions(workers=1, shard_size=4))


def test_a_quantile_rule_is_calibrated_once_as_in_one_process(cluster, pico_qwen3_dir, tmp_path):
    # calibrated on the first 5 non-empty responses of the whole input, which no single shard of 4 holds
    config = CaptureConfig(rule="quantile:0.9", calib_responses=5, row_tokens=4, progress=False)
    one = tmp_path / "one"
    write_cache(load_model(str(pico_qwen3_dir)), _responses(N), one, config)
    out = tmp_path / "sh"
    capture_sharded(str(pico_qwen3_dir), _responses(N), out, config, RayOptions(workers=2, shard_size=4))
    want = json.loads((one / "manifest.json").read_text())["rule"]
    assert want["thresholds"] and json.loads((out / "shards.json").read_text())["rule"] == want
    for shard in (out / "shards").iterdir():
        assert json.loads((shard / "manifest.json").read_text())["rule"] == want
    _assert_same_as_one_process(out, one)


def test_nex_capture_ray_command(cluster, pico_qwen3_dir, one_process, tmp_path, capsys):
    responses = tmp_path / "r.jsonl"
    responses.write_text("".join(json.dumps(r) + "\n" for r in _responses(N)))
    out = tmp_path / "sh"
    argv = ["capture", "--model", str(pico_qwen3_dir), "--responses", str(responses), "-o", str(out), "--row-tokens", "4",
            "--no-progress", "--ray", "--workers", "2", "--shard-size", "7"]
    assert main(argv) == 0
    assert "2 shards" in capsys.readouterr().out
    _assert_same_as_one_process(out, one_process)
    assert main(["cache", "merge", str(out), str(tmp_path / "merged"), "--no-progress"]) == 0
    _assert_same_as_one_process(tmp_path / "merged", one_process)
    assert main(argv[:-4] + ["--ray", "--workers", "0"]) == 2
