"""`nex study` on the shipped zoo study (interventions/experiments/study_zoo.toml) in reduced form (2 of
its SLERP variants, 4 problems, short responses), end to end; resuming (a removed output, an
interrupted driver); bad configs; the one-driver lock; and, with Ray, `nex generate --ray` and
`nex study --ray` against one process (skipped where Ray is not installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformer_lens")

from nex_interp.cache.reader import open_cache  # noqa: E402
from nex_interp.cli import main  # noqa: E402
from nex_interp.core import learn_weights, score_responses  # noqa: E402
from nex_interp.errors import ConfigError  # noqa: E402
from nex_interp.interventions.tasks import get_task  # noqa: E402
from nex_interp.study import parse_study, read_study, run_study  # noqa: E402
from nex_interp.study import run as run_mod  # noqa: E402
from nex_interp.weights_io import load_weights  # noqa: E402

N_PROBLEMS, SAMPLES = 4, 2
EXPERIMENTS = Path(__file__).resolve().parents[1] / "interventions" / "experiments"
#: the shipped zoo study, reduced: 2 of its variants (t = 0 and 1), 4 problems x 2 samples of up to 40
#: tokens, small shards (so that --ray makes several), fewer bootstrap resamples
REDUCTION = {
    ("", "t"): "[0.0, 1.0]",
    ("prompts", "n_problems"): str(N_PROBLEMS),
    ("generation", "samples"): str(SAMPLES), ("generation", "max_new_tokens"): "40", ("generation", "batch_size"): "4",
    ("generation", "shard_size"): "2",
    ("capture", "shard_size"): "3",
    ("compute", "n_boot"): "100",
}


def _reduced(text: str) -> str:
    """``text`` (a study TOML) with the values of :data:`REDUCTION` put in, table by table."""
    out, table, done = [], "", set()
    for line in text.splitlines():
        head = line.strip()
        if head.startswith("[") and not head.startswith("[["):
            table = head.strip("[]").strip()
        key = head.split("=", 1)[0].strip() if "=" in head and not head.startswith("#") else None
        inline = re.search(r"\bt = \[[^\]]*\]", line) if table == "" else None
        if inline:
            line = line.replace(inline.group(0), f"t = {REDUCTION['', 't']}")
            done.add(("", "t"))
        elif (table, key) in REDUCTION:
            line = f"{key} = {REDUCTION[table, key]}"
            done.add((table, key))
        out.append(line)
    assert done == set(REDUCTION), f"the shipped config lacks {set(REDUCTION) - done}"
    return "\n".join(out) + "\n"


REDUCED = _reduced((EXPERIMENTS / "study_zoo.toml").read_text())
SEED = tomllib.loads(REDUCED)["prompts"]["seed"]
NAMES = ["slerp-t0", "slerp-t1"]


def _write_config(path: Path, text: str = REDUCED) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The reduced study, run once in one process: (config path, output directory, summary)."""
    d = tmp_path_factory.mktemp("study")
    cfg = _write_config(d / "study.toml")
    out = d / "out"
    summary = run_study(read_study(cfg), out, progress=False)
    return cfg, out, summary


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name != "stages.json"}


def test_the_reduced_study_writes_every_output_with_provenance(study):
    cfg, out, summary = study
    task = get_task("zoo")
    problems = {p.id: p for p in task.problems(N_PROBLEMS, SEED)}
    assert [m["name"] for m in summary["models"]] == NAMES
    for m in summary["models"]:
        mdir = out / "models" / m["name"]
        for name in ("responses.jsonl", "weights.npz", "scores.csv", "selection.csv", "picks.csv"):
            assert (mdir / name).is_file() and (mdir / f"{name}.provenance.json").is_file(), name
        assert (mdir / "cache" / "provenance.json").is_file() and (mdir / "model" / "merge.json").is_file()
        rows = [json.loads(x) for x in (mdir / "responses.jsonl").read_text().splitlines()]
        assert len(rows) == N_PROBLEMS * SAMPLES
        # graded by the task's own checker, and the accuracy is their mean
        assert all(r["correct"] == task.is_correct(problems[r["problem_id"]], r["response"]) for r in rows)
        assert m["accuracy"] == pytest.approx(np.mean([r["correct"] for r in rows]))
        # weights and scores are those of learning on the model's own cache and scoring it
        cache = open_cache(mdir / "cache")
        w = learn_weights(cache)
        saved = load_weights(mdir / "weights.npz")
        assert saved.index.tobytes() == w.index.tobytes() and saved.weight.tobytes() == w.weight.tobytes()
        import pandas as pd

        gmf = pd.read_csv(mdir / "scores.csv")["gmf"].to_numpy()
        np.testing.assert_array_equal(gmf, np.asarray(score_responses(cache, w), dtype=np.float64))
        sel = pd.read_csv(mdir / "selection.csv")
        assert "nex_gmf" in set(sel["method"]) and sel["accuracy"].notna().all()
    import pandas as pd

    variants = pd.read_csv(out / "variants.csv")
    assert list(variants["variant"]) == NAMES
    acc = {m["name"]: m["accuracy"] for m in summary["models"]}
    assert variants["accuracy"].tolist() == pytest.approx([acc[n] for n in NAMES])
    ranking = pd.read_csv(out / "ranking.csv")
    assert "nex_score" in set(ranking["metric"]) and (out / "ranking.csv.provenance.json").is_file()
    assert json.loads((out / "summary.json").read_text())["name"] == "study-zoo-slerp"
    assert (out / "summary.json.provenance.json").is_file() and (out / "provenance.json").is_file()
    assert not (out / ".study.lock").exists()


def test_a_rerun_redoes_only_what_is_missing(study, tmp_path):
    cfg, base, _ = study
    out = tmp_path / "out"
    shutil.copytree(base, out)
    before = _mtimes(out)
    m0, m1 = (out / "models" / n for n in NAMES)
    old_scores = (m1 / "scores.csv").read_bytes()
    old_responses = (m0 / "responses.jsonl").read_bytes()
    (m1 / "scores.csv").unlink()
    (m0 / "responses.jsonl").unlink()
    shutil.rmtree(m1 / "model")  # as keep_merged = false leaves it
    run_study(read_study(cfg), out, progress=False)
    assert not (m1 / "model").exists()  # no stage needed the model: it was not merged again
    after = _mtimes(out)
    changed = {p.relative_to(out).as_posix() for p in after if before.get(p) != after[p]}
    # the responses of slerp-t0 came back the same (seeded per problem), so its cache was kept
    assert (m0 / "responses.jsonl").read_bytes() == old_responses
    assert (m1 / "scores.csv").read_bytes() == old_scores
    assert not any("/cache/" in c or c.endswith("model/merge.json") for c in changed), changed
    assert "models/slerp-t1/weights.npz" in changed and "models/slerp-t0/weights.npz" not in changed
    assert "models/slerp-t0/responses.jsonl" in changed and "models/slerp-t1/responses.jsonl" not in changed


def test_an_interrupted_study_resumes_where_it_stopped(study, tmp_path, monkeypatch):
    cfg, base, summary = study
    out = tmp_path / "out"
    real = run_mod._Study.capture
    calls = []

    def crash_on_second(self, spec, model, mdir, book, key):
        calls.append(mdir.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, spec, model, mdir, book, key)

    monkeypatch.setattr(run_mod._Study, "capture", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_study(read_study(cfg), out, progress=False)
    assert not (out / ".study.lock").exists() and not (out / "summary.json").exists()
    first = _mtimes(out / "models" / NAMES[0])
    monkeypatch.setattr(run_mod._Study, "capture", real)
    again = run_study(read_study(cfg), out, progress=False)
    assert _mtimes(out / "models" / NAMES[0]).items() >= first.items()  # the finished model was not redone
    assert json.dumps(again["models"], sort_keys=True) == json.dumps(summary["models"], sort_keys=True)
    for n in NAMES:
        assert (out / "models" / n / "scores.csv").read_bytes() == (base / "models" / n / "scores.csv").read_bytes()


@pytest.mark.parametrize("text, message", [
    ('models = ["zoo:thinking"]\nbogus = 1\n', "bogus is unknown"),
    ('models = [{ base = "zoo:instruct", other = "zoo:thinking", t = [0.5, 2.0] }]\n[prompts]\ntask = "zoo"\n', "t must be"),
    ('models = ["zoo:thinking"]\n[prompts]\ntask = "zoo"\n[capture]\nrow_tokens = 0\n', "capture.row_tokens"),
    ('models = ["zoo:thinking"]\n[prompts]\ntask = "zoo"\n[generation]\nsampels = 2\n', "generation.sampels is unknown"),
    ('models = ["zoo:thinking"]\n', "needs file"),
    ('models = ["zoo:thinking", "zoo:thinking"]\n[prompts]\ntask = "zoo"\n', "two models are named"),
    ('models = [\n', "not valid TOML"),
])
def test_a_bad_config_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    cfg = _write_config(tmp_path / "bad.toml", text)
    assert main(["study", "--config", str(cfg), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nex: error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_second_driver_on_the_same_output_is_refused(study, tmp_path, capsys):
    cfg, _, _ = study
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.json").write_text("{}")
    (out / ".study.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    assert main(["study", "--config", str(cfg), "-o", str(out), "--no-progress"]) == 2
    assert "another nex study" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".study.lock", "study.json"]


def test_config_round_trip_and_names(tmp_path):
    doc = {"models": ["zoo:thinking", {"path": "zoo:instruct", "name": "inst"},
                      {"base": "zoo:instruct", "other": "zoo:thinking", "t": [0.25, 0.5]}],
           "prompts": {"task": "zoo", "n_problems": 3}}
    cfg = parse_study(doc, tmp_path)
    assert [m.name for m in cfg.models] == ["thinking", "inst", "slerp-t0.25", "slerp-t0.5"]
    assert cfg.to_dict()["models"][2]["merge"] == {"base": "zoo:instruct", "other": "zoo:thinking", "method": "slerp", "t": 0.25}
    with pytest.raises(ConfigError, match="compute.scores needs"):
        parse_study({**doc, "compute": {"weights": False}}, tmp_path)


# ---------------------------------------------------------------------- with Ray

@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'nex-interp[distributed]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _prompts(path: Path, n: int) -> Path:
    rows = [{"id": p.id, "prompt": p.prompt} for p in get_task("zoo").problems(n, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_ray_writes_the_one_process_responses(cluster, tmp_path, monkeypatch):
    from nex_interp import generation_sharded as gs

    prompts = _prompts(tmp_path / "p.jsonl", 5)
    common = ["generate", "--model", "zoo:thinking", "--prompts", str(prompts), "--samples", "2", "--max-new-tokens", "32",
              "--temperature", "0.9", "--seed", "3", "--no-progress"]
    assert main(common + ["-o", str(tmp_path / "one.jsonl")]) == 0
    one = (tmp_path / "one.jsonl").read_bytes()
    assert one.count(b"\n") == 10
    # a driver interrupted when every shard is written but not yet the output
    out = tmp_path / "ray.jsonl"

    def interrupted(*a):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(gs, "_join_shards", interrupted)
        assert main(common + ["-o", str(out), "--ray", "--workers", "2", "--shard-size", "2"]) == 130
    shards = sorted(gs.shards_dir(out).glob("*.jsonl"))
    assert [p.name for p in shards] == ["00000-00001.jsonl", "00002-00003.jsonl", "00004-00004.jsonl"] and not out.exists()
    # one shard lost: the rerun writes only that one, and the output is the one-process output, byte for
    # byte, although its worker is killed after writing 1 of the shard's 2 problems (Ray restarts it and
    # the retried shard resumes)
    stamps = {p: p.stat().st_mtime_ns for p in shards[1:]}
    shards[0].unlink()
    seen = {}
    real = gs._join_shards

    def join_and_look(root, specs, path):
        seen.update({p: p.stat().st_mtime_ns for p in stamps})
        real(root, specs, path)

    monkeypatch.setattr(gs, "_join_shards", join_and_look)
    marker = tmp_path / "died"
    rep = gs.generate_sharded("zoo:thinking", [json.loads(x) for x in prompts.read_text().splitlines()], out,
                              _gen_config(), _ray_options(2, 1), progress=False, _die_once=(str(marker), 1))
    assert marker.exists() and rep.n_shards_done_before == 2 and rep.n_shards == 3 and seen == stamps
    assert out.read_bytes() == one and not gs.shards_dir(out).exists()
    # a rerun on the finished output does nothing
    assert gs.generate_sharded("zoo:thinking", [json.loads(x) for x in prompts.read_text().splitlines()], out,
                               _gen_config(), _ray_options(2, 1), progress=False).already_complete


def _gen_config():
    from nex_interp.generation import GenerationConfig

    return GenerationConfig(samples=2, temperature=0.9, max_new_tokens=32, seed=3)


def _ray_options(shard_size: int, workers: int):
    from nex_interp.capture.distributed import RayOptions

    return RayOptions(workers=workers, shard_size=shard_size)


def test_study_on_ray_equals_the_one_process_study(cluster, study, tmp_path):
    cfg, base, summary = study
    out = tmp_path / "out"
    assert main(["study", "--config", str(cfg), "-o", str(out), "--no-progress", "--ray", "--workers", "2"]) == 0
    for n in NAMES:
        a, b = base / "models" / n, out / "models" / n
        assert (b / "cache" / "shards.json").is_file()  # captured as a sharded cache
        assert (a / "responses.jsonl").read_bytes() == (b / "responses.jsonl").read_bytes()
        wa, wb = load_weights(a / "weights.npz"), load_weights(b / "weights.npz")
        assert wa.index.tobytes() == wb.index.tobytes() and wa.weight.tobytes() == wb.weight.tobytes()
        assert (a / "scores.csv").read_bytes() == (b / "scores.csv").read_bytes()
    again = json.loads((out / "summary.json").read_text())
    assert [m["accuracy"] for m in again["models"]] == [m["accuracy"] for m in summary["models"]]
    assert [m["nex_score"] for m in again["models"]] == [m["nex_score"] for m in summary["models"]]


def test_nex_study_and_generate_without_ray_never_import_it(study, tmp_path):
    import subprocess
    import sys

    cfg, base, _ = study
    out = tmp_path / "out"
    shutil.copytree(base, out)
    code = ("import sys; from nex_interp.cli import main; "
            f"rc = main(['study', '--config', {str(cfg)!r}, '-o', {str(out)!r}, '--no-progress']); "
            "assert rc == 0, rc; assert 'ray' not in sys.modules, 'nex study imported ray'")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_shipped_study_configs_parse(tmp_path):
    experiments = EXPERIMENTS
    zoo = read_study(experiments / "study_zoo.toml")
    assert zoo.prompts.task == "zoo" and len(zoo.models) >= 3 and all(m.merge is not None for m in zoo.models)
    assert {m.merge.base for m in zoo.models} == {"zoo:instruct"} and {m.merge.other for m in zoo.models} == {"zoo:thinking"}
    # the Qwen3-4B sweep names a prompts file the user supplies: parse it beside a stand-in
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "math500.jsonl").write_text('{"id": "p0", "prompt": "1+1?", "reference_answer": "2"}\n')
    qwen = parse_study(tomllib.loads((experiments / "study_qwen3_4b.toml").read_text()), tmp_path)
    assert len(qwen.models) == 19 and qwen.generation.samples == 8 and qwen.capture.rule == "topk:2"


def test_a_dead_drivers_lock_is_taken_over(study, tmp_path):
    import subprocess
    import sys

    cfg, base, _ = study
    out = tmp_path / "out"
    shutil.copytree(base, out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".study.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    assert main(["study", "--config", str(cfg), "-o", str(out), "--no-progress"]) == 0
    assert not (out / ".study.lock").exists()


def test_a_responses_file_replaces_generation(study, tmp_path):
    cfg, base, _ = study
    # slerp-t1 is the merge at t = 1, i.e. zoo:thinking's own weights: capturing its responses with
    # zoo:thinking gives its weights
    rows = [json.loads(x) for x in (base / "models" / "slerp-t1" / "responses.jsonl").read_text().splitlines()]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "correct"}) + "\n" for r in rows))
    _write_config(tmp_path / "s.toml", """
models = [{ path = "zoo:thinking", responses = "r.jsonl" }]
[capture]
rule = "topk:8"
row_tokens = 8
[compute]
ranking = false
best_of_n = false
""")
    out = tmp_path / "out"
    summary = run_study(read_study(tmp_path / "s.toml"), out, progress=False)
    assert summary["models"][0]["name"] == "thinking" and summary["models"][0]["accuracy"] is None  # no task: ungraded
    assert not (out / "prompts.jsonl").exists() and not (out / "models" / "thinking" / "selection.csv").exists()
    a, b = load_weights(base / "models" / "slerp-t1" / "weights.npz"), load_weights(out / "models" / "thinking" / "weights.npz")
    assert a.index.tobytes() == b.index.tobytes() and a.weight.tobytes() == b.weight.tobytes()


def test_an_unfinished_generation_of_other_settings_is_not_resumed(study, tmp_path):
    cfg, base, _ = study
    out = tmp_path / "out"
    shutil.copytree(base, out)
    mdir = out / "models" / NAMES[0]
    # an interrupted generation of other settings left its partial output; then the settings changed back
    (mdir / ".responses.partial.jsonl").write_text(
        json.dumps({"id": "x:0", "problem_id": "p0", "sample": 0, "prompt": "p", "response": "stale"}) + "\n")
    (mdir / ".responses.key").write_text("another key")
    (mdir / "responses.jsonl").unlink()
    run_study(read_study(cfg), out, progress=False)
    assert (mdir / "responses.jsonl").read_bytes() == (base / "models" / NAMES[0] / "responses.jsonl").read_bytes()
    assert not list(mdir.glob(".responses.partial*"))


def test_flags_override_the_config(tmp_path, capsys):
    cfg = _write_config(tmp_path / "s.toml", 'models = ["zoo:thinking"]\n[prompts]\ntask = "zoo"\n')
    assert main(["study", "--config", str(cfg), "-o", str(tmp_path / "out"), "--capture-row-tokens", "0"]) == 2
    err = capsys.readouterr().err
    assert "capture.row_tokens" in err and err.count("\n") == 1
    parsed = read_study(cfg, {"generation": {"samples": 3}, "compute": {"best_of_n": False}})
    assert parsed.generation.samples == 3 and parsed.compute.best_of_n is False
