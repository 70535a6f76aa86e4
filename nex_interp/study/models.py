"""The study's models: a spec to load as it is, or a merge variant built with :func:`nex_interp.merge.merge_models`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..errors import ModelError
from .config import ModelEntry, StudyConfig
from .stages import StageBook, stage_key

MODEL_DIR = "model"


def checkpoint_dir(cfg: StudyConfig, spec: str) -> Path:
    """The local Hugging Face directory of ``spec`` (``zoo:NAME``, a directory, or a hub name found in
    or fetched into the local Hugging Face cache), for merging."""
    from ..models.loader import resolve_spec

    resolved = resolve_spec(cfg.model_spec(spec))
    if resolved.path is not None:
        return Path(resolved.path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved.hub))
    except Exception as e:  # offline, unknown repo, no access: one line
        raise ModelError(f"merge input {spec!r}: no local copy and the hub gave none ({type(e).__name__}); "
                         "give a local Hugging Face directory") from None


def prepare_model(cfg: StudyConfig, entry: ModelEntry, mdir: Path, book: StageBook, progress: bool = True) -> tuple[str, dict]:
    """(spec for :func:`~nex_interp.models.loader.load_model`, identity for the stage keys) of ``entry``;
    a merge variant is built into ``mdir/model`` unless it already is (stage ``model``)."""
    if entry.merge is None:
        spec = cfg.model_spec(entry.spec)
        return spec, {"spec": spec}
    from ..merge import merge_models

    m = entry.merge
    key = stage_key(stage="model", merge=asdict(m))
    out = mdir / MODEL_DIR
    if not book.done("model", key):
        a, b = checkpoint_dir(cfg, m.base), checkpoint_dir(cfg, m.other)
        merge_models(a, b, m.method, m.t, out, progress=progress)
        book.record("model", key, [MODEL_DIR])
    return str(out), {"merge": asdict(m), "merge_json": book.output_digest("model", MODEL_DIR)}


__all__ = ["checkpoint_dir", "prepare_model", "MODEL_DIR"]
