"""Keeping a streaming pass over a memory-mapped cache small in memory.

Pages of a read-only memory map that a pass has touched stay resident (and count towards the
process's RSS) until the map is closed. :func:`release` hands a processed range back to the
kernel: the data stays in the page cache and is simply mapped in again if read later, so this
changes memory use only, never results.
"""

from __future__ import annotations

import mmap

import numpy as np

_PAGE = mmap.PAGESIZE


def release(array: np.ndarray, start: int, stop: int) -> None:
    """Drop this process's resident pages of ``array[start:stop]`` (a no-op unless ``array`` is a
    1-D read-only ``np.memmap`` on a platform with ``madvise``)."""
    mm = getattr(array, "_mmap", None)
    if mm is None or stop <= start or getattr(array, "mode", None) != "r" or not hasattr(mm, "madvise"):
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8).__array_interface__["data"][0]
        lo = array.__array_interface__["data"][0] - base + start * array.itemsize
        hi = min(lo + (stop - start) * array.itemsize, len(mm))
        lo -= lo % _PAGE
        if 0 <= lo < hi:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (ValueError, OSError, AttributeError):  # closed map, odd platform: keep the pages
        return
