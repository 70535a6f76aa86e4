"""The study's models: a spec to load as it is, or a merge variant built with :func:`nex_interp.merge.merge_models`.

A merge variant is built into ``OUT/models/<name>/model/`` only when a stage needs the model
(generation or capture), so a resumed study whose responses and caches are finished merges nothing;
with ``keep_merged = false`` the merged checkpoint is removed once the model's cache is written.

A model's identity in the stage keys is its spec (or merge spec) and a cheap fingerprint of each
local checkpoint involved: the sha256 of its ``config.json`` and the names and sizes of its weight
files (hashing every weight file of a 4B model at each rerun would cost minutes).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict
from pathlib import Path

from ..errors import ModelError
from .config import ModelEntry, StudyConfig
from .stages import StageBook, stage_key

MODEL_DIR = "model"


def checkpoint_dir(cfg: StudyConfig, spec: str, fetch: bool = True) -> Path | None:
    """The local Hugging Face directory of ``spec`` (``zoo:NAME``, a directory, or a hub name found in
    or fetched into the local Hugging Face cache; None for a hub name when not ``fetch``)."""
    from ..models.loader import resolve_spec

    resolved = resolve_spec(cfg.model_spec(spec))
    if resolved.path is not None:
        return Path(resolved.path)
    if not fetch:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved.hub))
    except Exception as e:  # offline, unknown repo, no access: one line
        raise ModelError(f"merge input {spec!r}: no local copy and the hub gave none ({type(e).__name__}); "
                         "give a local Hugging Face directory") from None


def fingerprint(directory: Path | None) -> str | None:
    """sha256 of a checkpoint's ``config.json`` and its weight files' names and sizes (None: not local)."""
    if directory is None or not (directory / "config.json").is_file():
        return None
    h = hashlib.sha256((directory / "config.json").read_bytes())
    for p in sorted(directory.iterdir()):
        if p.suffix in (".safetensors", ".bin", ".gguf") or p.name.endswith(".index.json"):
            h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()


def model_identity(cfg: StudyConfig, entry: ModelEntry) -> dict:
    """What identifies ``entry``'s model in the stage keys (nothing is built or downloaded)."""
    if entry.merge is None:
        spec = cfg.model_spec(entry.spec)
        return {"spec": spec, "fingerprint": fingerprint(checkpoint_dir(cfg, spec, fetch=False))}
    m = entry.merge
    return {"merge": asdict(m), "base": fingerprint(checkpoint_dir(cfg, m.base, fetch=False)),
            "other": fingerprint(checkpoint_dir(cfg, m.other, fetch=False))}


def ensure_model(cfg: StudyConfig, entry: ModelEntry, mdir: Path, book: StageBook, progress: bool = True) -> str:
    """The spec :func:`~nex_interp.models.loader.load_model` loads ``entry``'s model from; a merge
    variant is built into ``mdir/model`` unless it already is (stage ``model``)."""
    if entry.merge is None:
        return cfg.model_spec(entry.spec)
    from ..merge import merge_models

    m = entry.merge
    key = stage_key(stage="model", identity=model_identity(cfg, entry))
    out = mdir / MODEL_DIR
    if not book.done("model", key):
        a, b = checkpoint_dir(cfg, m.base), checkpoint_dir(cfg, m.other)
        merge_models(a, b, m.method, m.t, out, progress=progress)
        book.record("model", key, [MODEL_DIR])
    return str(out)


def drop_merged(entry: ModelEntry, mdir: Path) -> None:
    """Remove a merge variant's checkpoint (``keep_merged = false``); it is rebuilt if a stage needs it again."""
    if entry.merge is not None and (mdir / MODEL_DIR).is_dir():
        shutil.rmtree(mdir / MODEL_DIR)


__all__ = ["checkpoint_dir", "fingerprint", "model_identity", "ensure_model", "drop_merged", "MODEL_DIR"]
