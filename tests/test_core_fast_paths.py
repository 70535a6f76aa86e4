"""The speed paths of ``nex run`` change nothing: page release, the quiet progress bar and the
pandas-free scores.csv give exactly what the plain ways give. (The compiled kernels and their second
thread: tests/test_core_kernel.py.)"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nex_interp.core import learn_weights, score_responses
from nex_interp.core.kernel import default_workers
from synth_cache import random_cache

REFERENCE_CACHE = Path(__file__).parent / "data" / "reference" / "example_cache"


@pytest.fixture(scope="module")
def cache():
    return random_cache(31, 9, 20, 70, dirty=0.02)


def _same_weights(a, b) -> None:
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.effective_mass, b.effective_mass)
    np.testing.assert_array_equal(a.redundant_mass, b.redundant_mass)
    for k in ("n_responses_used", "n_responses_skipped", "n_effective_cycles", "n_redundant_cycles"):
        assert a.meta[k] == b.meta[k]


def test_workers_setting(monkeypatch):
    monkeypatch.delenv("NEX_WORKERS", raising=False)
    assert default_workers() is None  # automatic
    monkeypatch.setenv("NEX_WORKERS", "2")
    assert default_workers() == 2
    monkeypatch.setenv("NEX_WORKERS", "1")
    assert default_workers() == 1
    monkeypatch.setenv("NEX_WORKERS", "many")
    assert default_workers() is None


def test_released_pages_change_nothing(tmp_path):
    from nex_interp.cache.pages import release
    from nex_interp.cache.reader import open_cache

    mapped = open_cache(REFERENCE_CACHE)  # memory-mapped: learning and scoring release pages as they go
    assert isinstance(mapped.keys, np.memmap)
    in_memory = type(mapped)(*(np.array(getattr(mapped, f)) for f in ("sample_row_ptr", "row_ptr", "token_row_ptr", "keys",
                                                                        "mass", "base_ptr", "base_keys", "base_mass")),
                             mapped.scheme, mapped.manifest)
    a, b = learn_weights(mapped), learn_weights(in_memory)
    _same_weights(a, b)
    np.testing.assert_array_equal(score_responses(mapped, a), score_responses(in_memory, b))
    before = np.array(mapped.keys[1000:5000])
    release(mapped.keys, 1000, 5000)
    release(mapped.keys, 0, mapped.n_entries)
    np.testing.assert_array_equal(mapped.keys[1000:5000], before)  # mapped in again on access
    release(in_memory.keys, 0, 10)  # not a memory map: nothing to do


def test_progress_bar_waits_for_slow_runs(cache, capsys):
    learn_weights(cache, progress=3600.0)
    assert "nex train" not in capsys.readouterr().err
    learn_weights(cache, progress=True)
    assert "nex train" in capsys.readouterr().err


def test_scores_csv_is_what_pandas_writes(tmp_path):
    pd = pytest.importorskip("pandas")
    from nex_interp.cli.core_cmds import _write_csv

    columns = {
        "response": np.arange(5, dtype=np.int64),
        "id": ["a", None, "b,c", 'say "hi"', "e"],
        "gmf": np.array([0.1 + 0.2, np.nan, 1.0, 1e-7, 0.9860652282370001]),
        "n_rows": np.array([3, 0, 7, 1, 2]),
        "log_gap": [0.5, np.nan, 12.0, math.log10(3.0), 1.0 / 3.0],
    }
    _write_csv(tmp_path / "ours.csv", columns)
    pd.DataFrame(columns).to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_nex_run_imports_no_heavy_library(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from nex_interp.cli import main
        assert main(["run", {str(REFERENCE_CACHE)!r}, "-o", {str(tmp_path / 'run')!r}]) == 0
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"pandas", "torch", "sklearn", "matplotlib", "scipy",
                                                                   "transformers", "hmmlearn", "pyarrow"}})
        print("HEAVY", heavy)
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
