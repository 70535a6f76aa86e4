"""Installing forward hooks on a TransformerBridge for one forward pass, and stopping it early.

:func:`installed_hooks` adds ``(hook_name, fn)`` pairs for the duration of a ``with`` block and
removes them in ``finally``; :class:`StopForward` raised from a hook ends the forward pass after the
last layer that is needed (caught by :func:`run_until_stopped`).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early (nothing after that layer is needed)."""


@contextlib.contextmanager
def installed_hooks(bridge, hooks: list[tuple[str, Callable]]) -> Iterator[None]:
    """Add ``hooks`` to ``bridge``'s hook points; always removed on exit."""
    added = []
    try:
        for name, fn in hooks:
            point = bridge.hook_dict.get(name)
            if point is None:
                raise KeyError(f"the model has no hook point {name!r}")
            added.append((point, point.add_hook(fn)))
        yield
    finally:
        for point, handle in reversed(added):  # only ours: other hooks on the same points stay
            handle.hook.remove()
            if handle in point.fwd_hooks:
                point.fwd_hooks.remove(handle)


def run_until_stopped(forward: Callable[[], object]) -> object | None:
    """Call ``forward()``; returns its result, or ``None`` when a hook raised :class:`StopForward`."""
    try:
        return forward()
    except StopForward:
        return None
