"""Resuming a study: which stages are finished, and one driver per output directory.

A stage (merge, responses, cache, nex, best-of-N, ranking) writes its outputs atomically (temporary
path, then rename) and then records itself in the ``stages.json`` of its directory: its *key* (a
hash of its settings and of the digests of its inputs) and the digest of each output (a file's
sha256; a cache's manifest's, which lists the sha256 of every cache file). A stage is finished when
its record has the same key and every output is present with the recorded digest. So a rerun skips
finished stages, redoes a stage whose output was removed or changed, and redoes the stages
downstream of a changed output (their key holds its digest); a stage whose settings changed in the
config is redone too.

:class:`DriverLock` keeps two drivers off one output directory (``OUT/.study.lock``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

from ..atomic import write_text
from ..errors import ConfigError
from ..hashing import sha256_file

STAGES_NAME = "stages.json"
LOCK_NAME = ".study.lock"


def digest(path: str | os.PathLike) -> str | None:
    """The sha256 of a file; of a cache directory, its manifest's (``manifest.json``, or a sharded cache's
    ``shards.json``); of a model directory, its ``merge.json``'s. None when absent or unfinished."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        for name in ("shards.json", "manifest.json", "merge.json"):
            if (p / name).is_file():
                if name != "merge.json":
                    data = json.loads((p / name).read_text())
                    if not data.get("complete"):
                        return None
                return sha256_file(p / name)
    return None


def stage_key(**parts) -> str:
    """A hash of a stage's settings and input digests."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class StageBook:
    """The finished stages of one directory (``DIR/stages.json``)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.path = self.dir / STAGES_NAME

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # unreadable: every stage is redone (outputs are rewritten atomically)
        return data if isinstance(data, dict) else {}

    def done(self, stage: str, key: str) -> bool:
        """Is ``stage`` finished with this ``key``, its outputs present and unchanged?"""
        rec = self._read().get(stage)
        if not isinstance(rec, dict) or rec.get("key") != key:
            return False
        outputs = rec.get("outputs") or {}
        return all(digest(self.dir / name) == sha for name, sha in outputs.items())

    def output_digest(self, stage: str, name: str) -> str | None:
        rec = self._read().get(stage) or {}
        return (rec.get("outputs") or {}).get(name)

    def record(self, stage: str, key: str, outputs: list[str]) -> dict[str, str]:
        """Mark ``stage`` finished; ``outputs`` are paths relative to the directory. Returns their digests."""
        digests = {}
        for name in outputs:
            d = digest(self.dir / name)
            if d is None:
                raise ConfigError(f"stage {stage} of {self.dir} did not write {name}: re-run the study")
            digests[name] = d
        data = self._read()
        data[stage] = {"key": key, "outputs": digests}
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return digests


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DriverLock:
    """``OUT/.study.lock``, created exclusively: a second driver on the same OUT stops with one line.
    A lock left by a driver that died on this host (its process is gone) is taken over."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.path = Path(out) / LOCK_NAME
        self.held = False

    def __enter__(self) -> "DriverLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text())
                except (OSError, json.JSONDecodeError):
                    other = {}
                if other.get("host") == me["host"] and isinstance(other.get("pid"), int) and not _alive(other["pid"]):
                    self.path.unlink(missing_ok=True)  # a dead driver's lock on this host
                    continue
                raise ConfigError(
                    f"another nex study (pid {other.get('pid', '?')} on {other.get('host', '?')}) is writing {self.path.parent}: "
                    f"wait for it to finish, or remove {self.path} if no study is running"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise ConfigError(f"could not take the lock {self.path}: remove it if no study is running")

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


__all__ = ["StageBook", "DriverLock", "digest", "stage_key", "STAGES_NAME", "LOCK_NAME"]
