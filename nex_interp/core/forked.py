"""Running part of a computation in a forked helper process (Linux), deterministically.

The core splits big caches into two halves by response; a forked child computes one half while the
parent computes the other, and the parent combines them in response order, so results are identical
to a single process. The child inherits the memory-mapped cache (no copying), sends its result back
pickled through a pipe, and never runs the parent's exit handlers. If the child fails in any way
(an error, a kill, an unreadable result), :meth:`Forked.result` returns None and the caller computes
that half itself.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Any, Callable

#: environment variable that sets the number of workers for learning (unset: automatic)
WORKERS_ENV = "NEX_WORKERS"


def can_fork() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def default_workers() -> int | None:
    """Workers for learning from ``$NEX_WORKERS`` (1 or 2), or None (unset or unreadable): automatic.

    Automatic means a second thread on the compiled path where there are 2+ CPUs, and one process on the
    numpy path: a forked second process halves the wall time only where a second core is actually free;
    on a machine whose CPU share is capped it only adds fork and merge costs.
    """
    try:
        return min(2, max(1, int(os.environ[WORKERS_ENV])))
    except (KeyError, ValueError):
        return None


class Forked:
    """``fn(*args)`` running in a forked child; :meth:`result` waits for it."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the child: compute, send, leave without touching the parent's state
            os.close(read_fd)
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the helper quietly
                data = pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as f:
                    f.write(data)
                code = 0
            except BaseException:  # noqa: BLE001 -- any failure: the parent recomputes this half
                pass
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid = pid
        self._fd = read_fd

    def result(self) -> Any | None:
        """The child's return value, or None if it failed."""
        try:
            with os.fdopen(self._fd, "rb") as f:
                data = f.read()
        finally:
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            return None
        try:
            return pickle.loads(data)
        except Exception:  # noqa: BLE001 -- a truncated result: recompute
            return None

    def cancel(self) -> None:
        """Stop the child (if still running) and reap it."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
            try:
                os.close(self._fd)
            except OSError:
                pass
