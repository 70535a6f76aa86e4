"""``nex transfer``: config validation, the runner on pico models, outputs, resumption."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from nex_interp.interventions.config import load_config, parse_config
from nex_interp.interventions.preflight import check_before_loading
from nex_interp.interventions.results import RESULT_COLUMNS, aggregate, contrasts, paired_row
from nex_interp.errors import ConfigError
from nex_interp.keys import KeyScheme
from nex_interp.neuron_weights import NeuronWeights

SMALL = dict(d_model=32, d_mlp=48)


def _write_weights(path: Path, n_layers: int = 2, d_mlp: int = 48, sign: float | None = None, seed: int = 0) -> Path:
    from nex_interp.weights_io import save_weights

    rng = np.random.default_rng(seed)
    layer = np.repeat(np.arange(n_layers), d_mlp)
    unit = np.tile(np.arange(d_mlp), n_layers)
    idx = KeyScheme.ref22().pack(layer, unit).astype(np.int64)
    w = rng.uniform(-1, 1, len(idx)).astype(np.float32)
    if sign is not None:
        w = sign * np.abs(w)
    z = np.zeros_like(w)
    save_weights(NeuronWeights(idx, w, z, z.copy(), KeyScheme.ref22(), {"test": True}), path)
    return path


def _doc(donor: Path, recipient: Path, weights: Path, **over) -> dict:
    doc = {
        "name": "pico",
        "models": {"donor": str(donor), "recipient": str(recipient)},
        "weights": {"file": str(weights)},
        "sets": {"k": [4, 24], "conditions": ["effective", "redundant", "random"], "random_seeds": [0, 1]},
        "operation": {"kind": "transplant"},
        "evaluation": {"task": "toy-echo", "problems": 24, "batch_size": 12, "max_new_tokens": 4, "bootstrap": 200},
    }
    for section, values in over.items():
        doc[section] = {**doc.get(section, {}), **values} if isinstance(values, dict) else values
    return doc


def _toml(doc: dict) -> str:
    lines = []
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def setup(pico_dirs, tmp_path_factory):
    d = tmp_path_factory.mktemp("transfer")
    donor, recipient = pico_dirs("qwen3", 0, **SMALL), pico_dirs("qwen3", 1, **SMALL)
    return {"dir": d, "donor": donor, "recipient": recipient, "gpt2": pico_dirs("gpt2", 0, **SMALL),
            "weights": _write_weights(d / "w.npz")}


def _read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ config errors (no model loaded)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"sets": {"conditions": ["effective", "lucky"]}}, "sets.conditions"),
        ({"sets": {"k": [4, 97]}}, "sets.k"),  # 2 layers x 48 units = 96 neurons
        ({"sets": {"k": [49], "scope": "layer"}}, "sets.k"),
        ({"sets": {"k": [0]}}, "sets.k"),
        ({"sets": {"colour": "red"}}, "sets.colour"),
        ({"models": {"recipient": "/nonexistent/model"}}, "models.recipient"),
        ({"models": {"donor": "GPT2"}}, "models.donor and models.recipient"),
        ({"models": {"donor": None}}, "models.donor"),
        ({"operation": {"kind": "graft"}}, "operation.kind"),
        ({"operation": {"kind": "ablate", "ablation": "median"}}, "operation.ablation"),
        ({"evaluation": {"task": "chess"}}, "evaluation.task"),
        ({"evaluation": {"batch_size": 0}}, "evaluation.batch_size"),
        ({"weights": {"file": "/nonexistent/w.npz"}}, "weights.file"),
        ({"weights": {"file": None}}, "[weights]"),
        ({"models": {"recipient": "zoo:no-such-model"}}, "models.recipient"),
    ],
)
def test_config_errors_name_the_field_before_any_model_loads(setup, change, field):
    doc = copy.deepcopy(_doc(setup["donor"], setup["recipient"], setup["weights"]))
    for section, values in change.items():
        for k, v in values.items():
            if v is None:
                doc[section].pop(k, None)
            elif v == "GPT2":
                doc[section][k] = str(setup["gpt2"])
            else:
                doc[section][k] = v
    if field == "[weights]":
        doc["weights"] = {}
    with pytest.raises(ConfigError) as err:
        cfg = parse_config(doc, base_dir=setup["dir"])
        check_before_loading(cfg)
    msg = str(err.value)
    assert field in msg and "\n" not in msg


def test_cli_reports_a_config_error_on_one_line_and_exits_2(setup, tmp_path, capsys):
    from nex_interp.cli import main

    doc = _doc(setup["donor"], setup["recipient"], setup["weights"], sets={"k": [4, 500]})
    path = tmp_path / "bad.toml"
    path.write_text(_toml(doc))
    assert main(["transfer", "--config", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nex: error:") and "sets.k" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    (tmp_path / "broken.toml").write_text("[models\n")
    assert main(["transfer", "--config", str(tmp_path / "broken.toml"), "-o", str(tmp_path / "out")]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_runner_checks_the_config_before_loading(setup, tmp_path):
    from nex_interp.interventions.experiment import run_experiment

    def loader(*a, **k):
        raise AssertionError("a model was loaded before the config was checked")

    cfg = parse_config(_doc(setup["donor"], setup["recipient"], setup["weights"], sets={"conditions": ["effective"], "k": [1000]}), setup["dir"])
    with pytest.raises(ConfigError, match="sets.k"):
        run_experiment(cfg, tmp_path / "out", show_progress=False, loader=loader)


def test_bundled_configs_parse():
    experiments = Path(__file__).resolve().parents[1] / "interventions" / "experiments"
    cfg = load_config(experiments / "zoo.toml")
    assert cfg.models.donor and cfg.models.recipient and cfg.models.donor != cfg.models.recipient
    assert set(cfg.sets.conditions) == {"effective", "redundant", "random"} and len(cfg.sets.k) >= 2
    assert cfg.evaluation.task == "zoo" and cfg.operation.kind == "transplant"
    kinds = {load_config(p).operation.kind for p in experiments.glob("*.toml") if not p.name.startswith("study_")}  # study_*: nex study
    assert kinds == {"transplant", "patch", "ablate"}


# ------------------------------------------------------------------ statistics


def test_paired_bootstrap_and_random_pooling():
    base = np.array([1, 0, 1, 0, 1, 0, 1, 0], dtype=float)
    same = paired_row("x", 4, base, base, n_boot=200)
    assert (same.delta, same.ci_low, same.ci_high, same.n) == (0.0, 0.0, 0.0, 8)
    flipped = paired_row("x", 4, 1 - base, base, n_boot=500)
    assert flipped.accuracy == 0.5 and flipped.delta == 0.0 and flipped.ci_low < 0 < flipped.ci_high
    better = paired_row("x", 4, np.ones(8), base, n_boot=500)
    assert better.delta == 0.5 and 0 < better.ci_low <= 0.5 <= better.ci_high <= 1
    units = {("random", 4, 0): np.ones(8), ("random", 4, 1): np.zeros(8), ("effective", 4, None): base}
    rows = {(r.condition, r.k): r for r in aggregate(units, base, n_boot=200)}
    assert rows[("random", 4)].accuracy == 0.5  # the seeds are averaged per problem
    assert rows[("recipient", 0)].delta == 0.0 and rows[("effective", 4)].delta == 0.0


def test_effective_is_contrasted_with_random_and_redundant_per_problem():
    eff = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    units = {("effective", 4, None): eff, ("redundant", 4, None): eff,
             ("random", 4, 0): np.zeros(8), ("random", 4, 1): np.r_[np.ones(4), np.zeros(4)],
             ("effective", 8, None): eff}  # k = 8 has no other set: no contrast
    got = {(c.k, c.versus): c for c in contrasts(units, n_boot=500)}
    assert set(got) == {(4, "random"), (4, "redundant")}
    rnd = got[(4, "random")]  # per problem: 1 - 0.5 on the first four, 0 - 0 on the rest
    assert rnd.difference == 0.25 and 0 < rnd.ci_low <= 0.25 <= rnd.ci_high <= 0.5 and rnd.n == 8
    same = got[(4, "redundant")]
    assert (same.difference, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------ runs on pico models


def test_transplant_experiment_outputs_and_resume(setup, tmp_path):
    from nex_interp.interventions.experiment import PROGRESS, run_experiment

    cfg_path = tmp_path / "pico.toml"
    cfg_path.write_text(_toml(_doc(setup["donor"], setup["recipient"], setup["weights"])))
    cfg = load_config(cfg_path)
    out = tmp_path / "out"
    res = run_experiment(cfg, out, show_progress=False)
    rows = _read_csv(out / "results.csv")
    assert tuple(rows[0]) == RESULT_COLUMNS
    keys = {(r["condition"], int(r["k"])) for r in rows}
    assert keys == {("recipient", 0), ("donor", 0)} | {(c, k) for c in ("effective", "redundant", "random") for k in (4, 24)}
    for r in rows:
        assert int(r["n"]) == 24
        assert float(r["ci_low"]) <= float(r["delta"]) <= float(r["ci_high"])
        assert 0.0 <= float(r["accuracy"]) <= 1.0
    base = next(r for r in rows if r["condition"] == "recipient")
    for r in rows:
        assert float(r["delta"]) == pytest.approx(float(r["accuracy"]) - float(base["accuracy"]), abs=1e-5)
    png = (out / "dose_response.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["command"] == "nex transfer"
    assert {(c["k"], c["versus"]) for c in summary["contrasts"]} == {(k, v) for k in (4, 24) for v in ("random", "redundant")}
    for c in summary["contrasts"]:
        assert c["ci_low"] <= c["difference"] <= c["ci_high"] and c["n"] == 24
    assert summary["provenance"]["config"]["sets"]["k"] == [4, 24]
    assert summary["provenance"]["model"]["recipient"]["d_mlp"] == 48
    assert summary["sets"]["effective/k=24"]["size"] == 24
    assert summary["sets"]["random/k=24/seed=1"]["layer_counts"] == summary["sets"]["effective/k=24"]["layer_counts"]
    assert (out / "provenance.json").is_file()
    assert (out / "sets" / "effective_k4.csv").read_text().startswith("layer,unit,weight")
    # the transplant changes what the recipient answers in at least one unit
    progress = [json.loads(x) for x in (out / PROGRESS).read_text().splitlines()[1:]]
    base_rec = next(p for p in progress if p["unit"] == "recipient/k=0")
    assert any(p["responses"] != base_rec["responses"] for p in progress if p["set_size"] > 0)

    # interrupt: drop the last three finished units and leave a half-written line
    lines = (out / PROGRESS).read_text().splitlines(keepends=True)
    (out / PROGRESS).write_text("".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2])
    (out / "results.csv").unlink()
    res2 = run_experiment(load_config(cfg_path), out, show_progress=False)
    assert [r.__dict__ for r in res2.rows] == [r.__dict__ for r in res.rows]
    done = [json.loads(x)["unit"] for x in (out / PROGRESS).read_text().splitlines()[1:] if x.endswith("}")]
    assert sorted(done) == sorted(set(done)) and len(done) == 10  # every unit exactly once after the resume
    # a different config may not reuse the directory
    changed = _doc(setup["donor"], setup["recipient"], setup["weights"], evaluation={"problems": 25})
    cfg_path.write_text(_toml(changed))
    with pytest.raises(ConfigError, match="different experiment"):
        run_experiment(load_config(cfg_path), out, show_progress=False)


def test_patch_and_mean_ablation_experiments(setup, tmp_path):
    from nex_interp.interventions.experiment import run_experiment

    base = dict(sets={"k": [6], "conditions": ["effective", "random"], "random_seeds": [0]},
                evaluation={"problems": 12, "batch_size": 12, "max_new_tokens": 4, "bootstrap": 200})
    patch = parse_config(_doc(setup["donor"], setup["recipient"], setup["weights"], operation={"kind": "patch"}, **base), setup["dir"])
    rows = {(r.condition, r.k): r for r in run_experiment(patch, tmp_path / "patch", show_progress=False).rows}
    assert set(rows) == {("recipient", 0), ("donor", 0), ("effective", 6), ("random", 6)}
    doc = _doc(setup["donor"], setup["recipient"], setup["weights"], operation={"kind": "ablate", "ablation": "mean", "mean_problems": 4}, **base)
    doc["models"].pop("donor")
    abl = parse_config(doc, setup["dir"])
    rows = {(r.condition, r.k): r for r in run_experiment(abl, tmp_path / "ablate", show_progress=False).rows}
    assert set(rows) == {("recipient", 0), ("effective", 6), ("random", 6)}
    summary = json.loads((tmp_path / "ablate" / "summary.json").read_text())
    assert summary["donor_accuracy"] is None and summary["operation"] == "ablate"


def test_conditions_without_neurons_reproduce_the_recipient(setup, tmp_path):
    """All weights negative: the effective set is empty, so it scores exactly as the untouched recipient."""
    from nex_interp.interventions.experiment import PROGRESS, run_experiment

    weights = _write_weights(tmp_path / "neg.npz", sign=-1.0)
    cfg = parse_config(_doc(setup["donor"], setup["recipient"], weights, sets={"k": [4], "conditions": ["effective"]},
                            evaluation={"problems": 12, "batch_size": 12, "max_new_tokens": 4, "bootstrap": 200}), setup["dir"])
    rows = {r.condition: r for r in run_experiment(cfg, tmp_path / "out", show_progress=False).rows}
    assert rows["effective"].delta == 0.0 and rows["effective"].accuracy == rows["recipient"].accuracy
    progress = [json.loads(x) for x in (tmp_path / "out" / PROGRESS).read_text().splitlines()[1:]]
    assert next(p for p in progress if p["condition"] == "effective")["set_size"] == 0


def test_weights_captured_from_a_model_are_kept_and_checked(setup, tmp_path):
    """weights.model: sample, capture and learn under OUT/weights; weights crediting nothing are refused."""
    from nex_interp.interventions.experiment import run_experiment

    doc = _doc(setup["donor"], setup["recipient"], setup["weights"], sets={"k": [4], "conditions": ["effective"]},
               evaluation={"problems": 4, "batch_size": 4, "max_new_tokens": 3, "bootstrap": 200})
    doc["weights"] = {"model": str(setup["donor"]), "problems": 3, "samples": 2, "max_new_tokens": 12, "row_tokens": 8}
    out = tmp_path / "out"
    # responses of at most 12 tokens cut into 8-token rows have at most 2 rows: NEX skips every
    # response (it needs 3 rows), so no neuron is credited
    with pytest.raises(ConfigError, match="credit no neuron"):
        run_experiment(parse_config(doc, setup["dir"]), out, show_progress=False)
    rows = [json.loads(x) for x in (out / "weights" / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("answer" not in r and "reference" not in r for r in rows)
    assert (out / "weights" / "weights.npz").is_file() and (out / "weights" / "cache" / "manifest.json").is_file()


# ------------------------------------------------------------------ config: one declaration per field


def test_config_round_trips_and_defaults_come_from_one_place(setup):
    from nex_interp.core import NexParams
    from nex_interp.interventions.config import TransferConfig, WeightsConfig

    cfg = parse_config(_doc(setup["donor"], setup["recipient"], setup["weights"]), setup["dir"])
    again = TransferConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert (cfg.weights.rho, cfg.weights.min_run) == (NexParams().rho, NexParams().min_run)
    assert cfg.weights.nex_params() == NexParams()
    assert WeightsConfig.from_dict({"file": "w.npz"}) == WeightsConfig(file="w.npz")


@pytest.mark.parametrize("section, key", [("sets", "colour"), ("weights", "rh0"), ("evaluation", "problem")])
def test_unknown_keys_name_the_key_and_the_valid_ones(setup, section, key):
    from nex_interp.interventions.config import SECTIONS

    doc = _doc(setup["donor"], setup["recipient"], setup["weights"])
    doc[section] = {**doc[section], key: 1}
    with pytest.raises(ConfigError) as err:
        parse_config(doc, setup["dir"])
    msg = str(err.value)
    valid = [f.name for cls in SECTIONS if cls.SECTION == section for f in cls.fields()]
    assert f"{section}.{key} is unknown" in msg and all(v in msg for v in valid) and "\n" not in msg


def test_cli_flags_come_from_the_config_fields(setup, tmp_path, capsys):
    from nex_interp.cli import build_parser, main
    from nex_interp.interventions.config import SECTIONS
    from nex_interp.interventions.fields import flag_name, flag_overrides

    parser = build_parser("transfer_cmds")
    flags = {a for action in parser._subparsers._group_actions[0].choices["transfer"]._actions for a in action.option_strings}
    for cls in SECTIONS:
        for f in cls.fields():
            assert (flag_name(cls.SECTION, f.name) in flags) == (f.metadata["kind"] != "table")
    args = parser.parse_args(["transfer", "-o", "x", "--sets-k", "4,6", "--evaluation-problems", "9", "--weights-rho", "0.9"])
    over = flag_overrides(args, list(SECTIONS))
    assert over == {"sets": {"k": [4, 6]}, "evaluation": {"problems": 9}, "weights": {"rho": 0.9}}
    path = tmp_path / "c.toml"
    path.write_text(_toml(_doc(setup["donor"], setup["recipient"], setup["weights"])))
    cfg = load_config(path, over)
    assert (cfg.sets.k, cfg.evaluation.problems, cfg.weights.rho) == ((4, 6), 9, 0.9)
    assert cfg.evaluation.batch_size == 12  # the file's other values stay
    # a flag value goes through the same validation as the file's
    assert main(["transfer", "--config", str(path), "-o", str(tmp_path / "out"), "--weights-rho", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "weights.rho" in err and len(err.strip().splitlines()) == 1
    assert main(["transfer", "--config", str(path), "-o", str(tmp_path / "out"), "--sets-k", "4,x"]) == 2
    assert "--sets-k" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_top_level_interventions_package_is_installed():
    import tomllib

    from setuptools import find_packages

    root = Path(__file__).resolve().parents[1]
    find = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(where=str(root), include=find["include"])
    assert "nex_interp.interventions" in packages
    assert not [p for p in packages if not p.startswith("nex_interp")]
    assert not (root / "interventions" / "__init__.py").exists()
