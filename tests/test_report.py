"""``nex report`` and the report library: content, text recovery, CLI behaviour, self-containment."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nex_interp.cli import main
from nex_interp.keys import KeyScheme
from nex_interp.neuron_weights import NeuronWeights
from nex_interp.report.data import CycleView, NeuronView, ReportData, RowView
from nex_interp.report.html import render_report
from nex_interp.report.text import split_by_rows

REF = Path(__file__).parent / "data" / "reference"
REF_CACHE = REF / "example_cache"
EXPECTED = json.loads((REF / "EXPECTED.json").read_text())

WORDS = ["<unk>", "try", "need", "no", "yes", "check", "ok", "ans", ";", "+", "="] + [str(i) for i in range(40)]


# --------------------------------------------------------------------------- fixtures
def word_tokenizer(directory: Path):
    """A word-level tokenizers.Tokenizer saved as directory/tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return tok


def planted_cache(path: Path, n_responses: int = 3, seed: int = 0, tokens_stream: bool = True, manifest: dict | None = None):
    """A cache with explore rows (many new neurons) and exploit rows (reuse), 8-token rows,
    token ids in a ``tokens`` stream; returns the per-response token ids."""
    from nex_interp.cache.writer import CacheWriter

    rng = np.random.default_rng(seed)
    scheme = KeyScheme.ref22()
    all_ids = []
    fields = {"model": "test-planted", "row_tokens": 8, "n_layers": 4, "d_mlp": 4096}
    fields.update(manifest or {})
    with CacheWriter(path, scheme, fields) as w:
        for i in range(n_responses):
            pattern = [False] * 3 + [True] * 4 + [False] * 6 + [True] * 3 + [False] * 6
            seen: list[int] = []
            rows = []
            next_unit = 0
            for explore in pattern:
                n_new = int(rng.integers(40, 60)) if explore else int(rng.integers(1, 3))
                new = list(range(next_unit, next_unit + n_new))
                next_unit += n_new
                old = list(rng.choice(seen, size=min(len(seen), 30), replace=False)) if seen else []
                units = np.array(sorted(set(new) | set(int(u) for u in old)), dtype=np.int64)
                seen += new
                keys = scheme.pack(units // 4096 % 4, units % 4096)
                rows.append((keys, rng.uniform(0.5, 2.0, len(units)).astype(np.float32), 8))
            ids = rng.integers(1, len(WORDS), 8 * len(pattern)).astype(np.int32)
            all_ids.append(ids)
            uk = np.unique(np.concatenate([r[0] for r in rows]))
            streams = {"tokens": {"ids": ids}} if tokens_stream else None
            w.add_response(rows, uk, np.ones(len(uk), np.float32), {"id": f"r{i}", "problem_id": f"p{i}"}, streams)
    return all_ids


def synthetic_data(text: bool = True) -> ReportData:
    lab = [False] * 3 + [True] * 4 + [False] * 5
    rows = [
        RowView(10 + j, j, 32, 60 if e else 4, (60 if e else 4) / 32, e, (f"row{j} <b>&amp;</b> " if text else None))
        for j, e in enumerate(lab)
    ]
    cyc = [CycleView(0, 3, 7, 7, 12, 1.9, 0.1, 1.7, 0.95, 0.4, 0.0, "skipped", float("nan"))]
    neurons = [NeuronView(2, 7, 3.0, 0.5, 1.5)], [NeuronView(1, 3, 2.0, -0.25, -0.5)]
    return ReportData("c", 0, 1, rows, 12, cyc, *neurons, 0.75, "given", "test", None, {"problem_id": "p1"}, {"rho": 0.95})


def _class_count(page: str, cls: str) -> int:
    return len(re.findall(rf'class="[^"]*\b{re.escape(cls)}\b[^"]*"', page))


# --------------------------------------------------------------------------- rendering (no core needed)
def test_page_marks_each_row_with_its_phase_and_escapes_text():
    page = render_report(synthetic_data())
    assert _class_count(page, "phase-E") == 4 and _class_count(page, "phase-X") == 8
    assert _class_count(page, "strip-E") == 4 and _class_count(page, "strip-X") == 8
    assert 'id="novelty-svg"' in page and 'id="curve-svg"' in page and 'id="cycles-table"' in page
    assert "<b>" not in page and "&lt;b&gt;&amp;amp;&lt;/b&gt;" in page  # response text is escaped, never markup
    assert 'id="row-13" data-position="3"' in page  # cache row id, kept-row position
    assert _class_count(page, "kind-skipped") >= 1 and _class_count(page, "neuron") == 2


def test_page_is_self_contained():
    page = render_report(synthetic_data())
    assert "<script" not in page.lower()
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page) + re.findall(r"url\(", page)
    assert refs == []
    assert re.findall(r"https?://", page) == ["http://"] * page.count('xmlns="http://www.w3.org/2000/svg"')


def test_rows_without_text_show_labelled_boxes():
    page = render_report(synthetic_data(text=False))
    assert _class_count(page, "rowbox") == 12
    assert "row 13 · E · 60 new" in page


def test_split_by_rows_keeps_every_character(tmp_path):
    tok = word_tokenizer(tmp_path / "tok")
    text = "try 3 need 11 no ; try 10 need 15 yes ; check 10 + 15 = 25 ok"
    ids = tok.encode(text).ids
    bounds = [(0, 5), (5, 11), (11, len(ids))]
    parts = split_by_rows(tok, ids, bounds)
    assert "".join(parts) == text
    assert parts[0] == "try 3 need 11 no" and parts[1].startswith(" ;")


# --------------------------------------------------------------------------- with the core
core = pytest.importorskip("nex_interp.core", reason="the NEX core is not installed yet")


def _needs_core():
    if not hasattr(core, "diagnose_response"):
        pytest.skip("nex_interp.core.diagnose_response is not available yet")


def test_reference_response_matches_core_and_expected_gmf():
    _needs_core()
    from nex_interp.cache.reader import open_cache
    from nex_interp.core import NexParams, diagnose_response
    from nex_interp.report import gather_report
    from nex_interp.weights_io import load_weights

    data = gather_report(REF_CACHE, 0)
    diag = diagnose_response(open_cache(REF_CACHE), 0, NexParams())
    assert len(data.rows) == len(diag.labels) == EXPECTED["cache"]["rows"]
    assert [r.explore for r in data.rows] == [bool(x) for x in diag.labels]
    assert sum(r.tokens for r in data.rows) == EXPECTED["cache"]["tokens"]
    assert len(data.cycles) == len(diag.cycles) > 0
    assert data.gmf == pytest.approx(EXPECTED["self_calibrated"]["response_gmf"][0], abs=1e-4)
    assert all(n.contribution > 0 for n in data.top_neurons) and all(n.contribution < 0 for n in data.bottom_neurons)
    contrib = [n.contribution for n in data.top_neurons]
    assert contrib == sorted(contrib, reverse=True)
    archived = gather_report(REF_CACHE, 0, weights=load_weights(REF / "example_weights.npz"))
    assert archived.gmf == pytest.approx(EXPECTED["archived_weights"]["response_gmf"][0], abs=1e-4)
    assert data.text_source.startswith("rows only")


def test_cli_report_on_reference_cache(tmp_path, capsys):
    _needs_core()
    out = tmp_path / "report.html"
    assert main(["report", str(REF_CACHE), "--response", "0", "-o", str(out), "--top", "5"]) == 0
    page = out.read_text()
    n_e = _class_count(page, "phase-E")
    assert n_e > 0 and n_e + _class_count(page, "phase-X") == EXPECTED["cache"]["rows"]
    assert _class_count(page, "neuron pos") == 5
    side = json.loads((tmp_path / "report.html.provenance.json").read_text())
    assert side["command"] == "nex report" and side["inputs"]["response"] == 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--response", "5"], "out of range"),
        (["--response", "0", "--weights", "/nonexistent.npz"], "does not exist"),
        (["--response", "0", "--top", "0"], "--top"),
        (["--response", "0", "--rho", "1.5"], "rho"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    _needs_core()
    out = tmp_path / "r.html"
    assert main(["report", str(REF_CACHE), *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nex: error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_cache_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--response", "0", "-o", str(tmp_path / "r.html")]) == 2
    assert "nex: error:" in capsys.readouterr().err


def test_token_stream_rows_are_decoded_per_row(tmp_path):
    _needs_core()
    from nex_interp.report import gather_report, load_tokenizer

    tok = word_tokenizer(tmp_path / "tok")
    ids = planted_cache(tmp_path / "cache")
    data = gather_report(tmp_path / "cache", 1, tokenizer=load_tokenizer(tmp_path / "tok"))
    assert data.text_source == "token ids in the cache, decoded"
    assert "".join(r.text for r in data.rows) == tok.decode(ids[1].tolist())
    assert data.rows[0].text == tok.decode(ids[1][:8].tolist())
    # the planted explore rows are found and coloured
    explore = [r.position for r in data.rows if r.explore]
    assert set(range(3, 7)) <= set(explore) and 0 not in explore
    assert data.meta.get("problem_id") == "p1"


def test_tokenizer_named_in_manifest_and_rows_only_fallback(tmp_path):
    _needs_core()
    from nex_interp.report import gather_report

    word_tokenizer(tmp_path / "tok")
    planted_cache(tmp_path / "named", manifest={"model": {"spec": "test-planted", "path": str(tmp_path / "tok")}})
    assert gather_report(tmp_path / "named", 0).text_source == "token ids in the cache, decoded"
    planted_cache(tmp_path / "plain", tokens_stream=False)
    data = gather_report(tmp_path / "plain", 0)
    assert all(r.text is None for r in data.rows) and data.text_source.startswith("rows only")
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "plain"), "-i", "0", "-o", str(out)]) == 0
    assert _class_count(out.read_text(), "rowbox") == len(data.rows)


def test_tokenizer_comes_only_from_the_recorded_model_directory(tmp_path, capsys):
    _needs_core()
    from nex_interp.errors import ConfigError
    from nex_interp.report import gather_report

    word_tokenizer(tmp_path / "tok")
    # a field other than model.path naming a tokenizer is not consulted: rows only, saying why
    planted_cache(tmp_path / "other", manifest={"tokenizer_path": str(tmp_path / "tok")})
    data = gather_report(tmp_path / "other", 0)
    assert all(r.text is None for r in data.rows) and "model.path" in data.text_source
    # a recorded model directory without tokenizer.json: an error naming it, one line from the CLI
    (tmp_path / "moved").mkdir()
    planted_cache(tmp_path / "gone", manifest={"model": {"spec": "m", "path": str(tmp_path / "moved")}})
    with pytest.raises(ConfigError, match="holds no tokenizer.json"):
        gather_report(tmp_path / "gone", 0)
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "gone"), "-i", "0", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tokenizer" in err and not out.exists()
    # the explicit tokenizer wins
    assert main(["report", str(tmp_path / "gone"), "-i", "0", "-o", str(out), "--tokenizer", str(tmp_path / "tok")]) == 0
    assert "token ids in the cache, decoded" in capsys.readouterr().out


def test_responses_jsonl_text_is_split_with_tokenizer(tmp_path):
    _needs_core()
    tok = word_tokenizer(tmp_path / "tok")
    ids = planted_cache(tmp_path / "plain", tokens_stream=False)
    jsonl = tmp_path / "resp.jsonl"
    jsonl.write_text("".join(json.dumps({"text": tok.decode(x.tolist())}) + "\n" for x in ids))
    out = tmp_path / "r.html"
    rc = main(["report", str(tmp_path / "plain"), "-i", "2", "-o", str(out), "--responses", str(jsonl), "--tokenizer", str(tmp_path / "tok")])
    assert rc == 0
    page = out.read_text()
    assert "response text re-tokenised into rows" in page
    assert _class_count(page, "rowbox") == 0
    first_row = tok.decode(ids[2][:8].tolist())
    assert f">{first_row}</span>" in page


def test_short_response_is_reported_as_not_segmented(tmp_path):
    _needs_core()
    from nex_interp.cache.writer import CacheWriter

    scheme = KeyScheme.ref22()
    with CacheWriter(tmp_path / "c", scheme, {"model": "t"}) as w:
        rows = [(scheme.pack(np.array([0, 0]), np.array([j, j + 1])), np.ones(2, np.float32), 4) for j in range(2)]
        w.add_response(rows, scheme.pack(np.zeros(3, int), np.arange(3)), np.ones(3, np.float32), {"id": "short"})
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "c"), "-i", "0", "-o", str(out)]) == 0
    page = out.read_text()
    assert 'id="skipped"' in page and 'id="no-cycles"' in page
    assert _class_count(page, "phase-E") == 0 and _class_count(page, "phase-X") == 2


def test_weights_of_another_key_scheme_are_refused(tmp_path, capsys):
    _needs_core()
    from nex_interp.weights_io import save_weights

    wide = KeyScheme("wide", 4, 8)
    w = NeuronWeights(np.array([1, 5], np.int64), np.array([0.5, -0.5], np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32), wide)
    save_weights(w, tmp_path / "w.npz")
    rc = main(["report", str(REF_CACHE), "-i", "0", "--weights", str(tmp_path / "w.npz"), "-o", str(tmp_path / "r.html")])
    assert rc == 2 and "same model" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
