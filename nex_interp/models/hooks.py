"""Where the model side hooks a TransformerLens 4 bridge: the neuron hook, the one installer, the KV-cache repair.

The report's activation lookups and the interventions go through this module; capture uses its
hook name and stops, but runs its pass through :func:`nex_interp.models.hf_pass.hf_pass`, which
attaches read-only functions by these same hook names to the HF modules the bridge maps them to
(the bridge's step-by-step eager attention costs capture 1.7-1.9x on long sequences; interventions,
which must *write* activations inside the bridge, keep :func:`installed_hooks`).

* The neuron activation of layer ``L`` is the input of the MLP's output projection,
  ``blocks.{L}.mlp.out.hook_in`` (shape ``[batch, pos, d_mlp]``): ``act(gate) * up`` for gated
  MLPs (Qwen3, Llama), ``act(W_in x + b_in)`` for plain ones (GPT-2). :data:`NEURON_HOOK` is that
  name's template; :func:`neuron_hook_name` fills it in.
* :func:`installed_hooks` adds forward hooks ``(hook name, fn)`` to a model's bridge for the
  duration of a ``with`` block and removes exactly those on exit, normally or by an exception
  raised in the block or inside a hook (e.g. :class:`StopForward`). Hooks attached before are
  left alone.
* :func:`repair_bridge_kv_cache` makes KV-cached decoding through a bridge-wrapped HF model correct
  (see its docstring); :func:`nex_interp.models.loader.load_model` applies it when it boots a
  bridge, and the interventions' decoding loop applies it again (it is idempotent).

Because the bridge swaps its components into the Hugging Face model it wraps, the hooks also fire
when the HF model's own ``forward`` runs (KV-cached generation), not only through ``bridge(...)``.
Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .loader import LoadedModel

#: the TransformerLens 4 hook of layer ``{L}``'s neuron activations (recorded as is in cache manifests)
NEURON_HOOK = "blocks.{L}.mlp.out.hook_in"

HookFn = Callable[["torch.Tensor", Any], "torch.Tensor | None"]


def neuron_hook_name(layer: int) -> str:
    """``blocks.{layer}.mlp.out.hook_in``: where layer ``layer``'s neuron activations are hooked."""
    return NEURON_HOOK.format(L=int(layer))


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early (nothing after that layer is needed)."""


def run_until_stopped(forward: Callable[[], object]) -> object | None:
    """Call ``forward()``; returns its result, or ``None`` when a hook raised :class:`StopForward`."""
    try:
        return forward()
    except StopForward:
        return None


#: context levels of this module's installations: far above the small levels TransformerLens's own
#: ``hooks()`` contexts use, one per installation, so that removal touches only that installation's hooks
_LEVELS = itertools.count(1 << 40)


def hook_point(model: "LoadedModel", name: str) -> Any:
    """The bridge's ``HookPoint`` called ``name`` (a module path, or an alias such as ``hook_post``)."""
    bridge = model.bridge
    try:
        point = bridge.get_submodule(name)  # a module path: no walk over every hook of the model
    except AttributeError:
        point = None
    if point is None or not hasattr(point, "add_hook"):
        point = bridge.hook_dict.get(name)
    if point is None:
        raise ModelError(f"the model has no hook point {name!r}: its MLP layout is not supported")
    return point


@contextlib.contextmanager
def installed_hooks(model: "LoadedModel", hooks: Sequence[tuple[str, HookFn]]) -> Iterator["LoadedModel"]:
    """Add forward hooks ``(hook name, fn)`` to ``model``'s bridge for the duration of the block.

    A hook name the bridge does not have is a :class:`~nex_interp.errors.ModelError`. Yields the
    model. The hooks are added at a context level of their own and removed on exit by that level
    (``HookPoint.remove_hooks``), normally or after an exception, so hooks attached by anyone else
    stay. The cost is a few microseconds a hook, whatever the size of the model.
    """
    level = next(_LEVELS)
    points = [(hook_point(model, name), fn) for name, fn in hooks]
    try:
        for point, fn in points:
            point.add_hook(fn, dir="fwd", level=level)
        yield model
    finally:
        for point, _ in points:
            point.remove_hooks("fwd", level=level)


def attached_hook_count(model: "LoadedModel") -> int:
    """How many forward and backward hook functions are attached to ``model``'s bridge (leak checks)."""
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in model.bridge.hook_points())


# ---------------------------------------------------------------- KV cache


def _cache_keyword(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        return args, {**kwargs, "past_key_values": kwargs["cache"]}
    return None


def repair_bridge_kv_cache(hf_model: Any) -> int:
    """Make the bridge's attention components use the KV cache transformers hands them.

    TransformerLens 4.3's attention bridges read the cache from the keyword ``past_key_values``
    (or ``layer_past``); transformers 5.24 passes it as ``cache``. Unrepaired, the cache stays
    empty and every KV-cached decoding step (``hf_model.generate`` included) attends to its own
    token only. A permanent forward pre-hook on each attention bridge inside ``hf_model`` copies
    the keyword across. Idempotent; returns how many attention modules carry the repair (0 for a
    model no bridge wraps).
    """
    n = 0
    for module in hf_model.modules():
        if hasattr(module, "_update_kv_cache"):
            if not getattr(module, "_nex_cache_keyword", False):
                module.register_forward_pre_hook(_cache_keyword, with_kwargs=True)
                module._nex_cache_keyword = True
            n += 1
    return n
