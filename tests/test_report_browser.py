"""Open a report in headless Chromium (Debian's ``chromium``): the DOM it parses holds the phase
elements, and the screenshot shows both phase colours. Skipped when chromium is absent; CI
installs it with ``apt-get install -y chromium``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nex_interp.plots import EXPLOIT_COLOR, EXPLORE_COLOR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _report(tmp_path: Path) -> tuple[Path, int, int]:
    """A real report (CLI on a planted cache with token text) when the core is there, else a
    rendered synthetic one; returns (path, n E rows, n X rows)."""
    from nex_interp.report.html import render_report

    try:
        from nex_interp.core import diagnose_response  # noqa: F401
    except ImportError:
        from test_report import synthetic_data

        page = render_report(synthetic_data())
        out = tmp_path / "report.html"
        out.write_text(page)
    else:
        from test_report import planted_cache, word_tokenizer

        from nex_interp.cli import main

        word_tokenizer(tmp_path / "tok")
        planted_cache(tmp_path / "cache", manifest={"model": {"spec": "test-planted", "path": str(tmp_path / "tok")}})
        out = tmp_path / "report.html"
        assert main(["report", str(tmp_path / "cache"), "--response", "0", "-o", str(out)]) == 0
        page = out.read_text()
    n_e = len(re.findall(r'class="row phase-E', page))
    n_x = len(re.findall(r'class="row phase-X', page))
    assert n_e > 0 and n_x > 0
    return out, n_e, n_x


def _hex(c: str) -> np.ndarray:
    return np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)])


def test_chromium_parses_phase_elements_and_renders_both_colours(tmp_path):
    page, n_e, n_x = _report(tmp_path)
    url = page.resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert len(re.findall(r'<span class="row phase-E', html)) == n_e
    assert len(re.findall(r'<span class="row phase-X', html)) == n_x
    assert 'id="novelty-svg"' in html and len(re.findall(r'class="strip strip-', html)) == n_e + n_x

    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1600", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from matplotlib.image import imread

    img = (imread(str(shot))[..., :3] * 255).round().astype(int)
    assert img.shape[0] >= 1500 and img.shape[1] >= 1000
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not a blank page
    # the phase strip's rectangles are solid phase colours
    for color in (EXPLORE_COLOR, EXPLOIT_COLOR):
        hits = int((np.abs(img - _hex(color)).sum(axis=2) <= 6).sum())
        assert hits > 500, f"colour {color} covers only {hits} pixels"
