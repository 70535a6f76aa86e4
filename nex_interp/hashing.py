"""The sha256 of a file, the one helper every checksum in the package uses (cache files, model
weights, zoo weights, merge inputs)."""

from __future__ import annotations

import os


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of the file at ``path`` (``hashlib.file_digest``: read in blocks, never whole)."""
    import hashlib  # here: loading OpenSSL costs ~10 ms that opening a cache does not need

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
