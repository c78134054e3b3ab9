"""Gradient checkpointing that keeps the KV cache, so that each group's prompt still runs once.

Under gradient checkpointing ``transformers``' decoder layers (``GradientCheckpointingLayer``) drop the
KV cache in training (``cache=None``) and the model turns ``use_cache`` off, because the backward pass
replays each checkpointed layer's forward and a replay would append the layer's keys and values to the
cache a second time (and read a cache that later layers and later passes have changed since). Without a
cache :func:`ladtrain.rollout.token_logprobs` cannot run each group's prompt once and copy its cache to
the ``G`` completions, and runs every prompt ``G`` times.

:func:`kept_cache` makes the replay exact instead. Inside it, each checkpointed layer call records the
cache's state before it runs (the cache's and its layer objects' attributes: references to tensors, no
copies) and every run of the layer, the forward and the replay, first puts that state back; so the
replay reads exactly the keys and values the forward read. This relies on the cache never writing a
tensor in place (``DynamicLayer.update`` concatenates into new tensors and ``batch_repeat_interleave`` /
``batch_select_indices`` assign new ones), and on non-reentrant checkpointing (``use_reentrant=False``,
what :func:`ladtrain.models.enable_gradient_checkpointing` sets): its replay keeps the forward's autograd
edges, so the gradient reaches the prompt's cached keys and values, and through them the prompt pass.
``discard_writes=True`` (a pass whose cache is not used afterwards) also puts the state back after the
forward, so the checkpoint does not hold each layer's grown keys and values until the backward pass.

:func:`keeps_cache` says whether a model in training can do this: every module with checkpointing on is
a ``GradientCheckpointingLayer`` or a ``PreTrainedModel`` (whose own flag only turns ``use_cache`` off;
it is lifted inside :func:`kept_cache`), and the checkpoint function is non-reentrant. Exactness is
tested against the full batch without checkpointing (float64, values and gradients to 1e-12:
``tests/train/test_checkpointing.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Iterator

import torch


def _checkpointed(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]


def checkpointing_on(model: torch.nn.Module) -> bool:
    """Whether ``model`` is in training with gradient checkpointing on (any module's flag)."""
    return model.training and bool(_checkpointed(model))


def keeps_cache(model: torch.nn.Module) -> bool:
    """Whether :func:`kept_cache` can keep the KV cache exact under ``model``'s checkpointing (see the
    module docstring); True also when no checkpointing is on (there is nothing to keep)."""
    from transformers import PreTrainedModel
    from transformers.modeling_layers import GradientCheckpointingLayer

    for m in _checkpointed(model):
        if isinstance(m, GradientCheckpointingLayer):
            func = getattr(m, "_gradient_checkpointing_func", None)
            if not (isinstance(func, functools.partial) and func.keywords.get("use_reentrant") is False):
                return False
        elif not isinstance(m, PreTrainedModel):
            return False
    return True


def _state(cache: Any) -> tuple[dict, list, list[dict]]:
    layers = list(getattr(cache, "layers", []))
    return dict(vars(cache)), layers, [dict(vars(layer)) for layer in layers]


def _restore(cache: Any, state: tuple[dict, list, list[dict]]) -> None:
    top, layers, layer_vars = state
    vars(cache).clear()
    vars(cache).update(top)
    if layers or hasattr(cache, "layers"):
        cache.layers = list(layers)
    for layer, saved in zip(layers, layer_vars):
        vars(layer).clear()
        vars(layer).update(saved)


def _find_cache(function: Any, args: tuple) -> Any:
    from transformers.cache_utils import Cache

    found = [v for v in (*getattr(function, "keywords", {}).values(), *args) if isinstance(v, Cache)]
    return found[0] if found else None


def _exact_replay(checkpoint: Any, discard_writes: bool):
    """A checkpoint function that restores the cache's state before every run of the layer."""

    def run(function, *args, **kwargs):
        cache = _find_cache(function, args)
        if cache is None:
            return checkpoint(function, *args, **kwargs)
        state = _state(cache)

        def replayable(*a, **k):
            _restore(cache, state)
            return function(*a, **k)

        out = checkpoint(replayable, *args, **kwargs)
        if discard_writes:
            _restore(cache, state)
        return out

    return run


class _NotDropped(logging.Filter):
    """Drops transformers' "Caching is incompatible with gradient checkpointing ... Setting
    `use_cache=False`" inside :func:`kept_cache`: there the cache is kept (the layers only turn the
    ``use_cache`` flag off, which their attention does not read; ``past_key_values`` still reaches it),
    so the message would say the opposite of what happens."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Caching is incompatible with gradient checkpointing")


@contextlib.contextmanager
def kept_cache(model: torch.nn.Module, discard_writes: bool = False) -> Iterator[None]:
    """Forward passes of ``model`` inside keep and use the KV cache under gradient checkpointing, exactly
    (module docstring); nothing changes where checkpointing is off. ValueError where
    :func:`keeps_cache` is False."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    modules = _checkpointed(model) if model.training else []
    if not modules:
        yield
        return
    if not keeps_cache(model):
        raise ValueError("kept_cache: this model's gradient checkpointing cannot keep a KV cache exactly")
    saved = []
    quiet = _NotDropped()
    layers_log = logging.getLogger("transformers.modeling_layers")
    layers_log.addFilter(quiet)
    try:
        for m in modules:
            if isinstance(m, GradientCheckpointingLayer):
                can = m.__dict__.get("_can_checkpoint_with_cache")  # an instance setting, if any
                saved.append((m, can, m._gradient_checkpointing_func))
                m._can_checkpoint_with_cache = True
                m._gradient_checkpointing_func = _exact_replay(m._gradient_checkpointing_func, discard_writes)
            else:  # the model's own flag only turns use_cache off
                saved.append((m, None, None))
                m.gradient_checkpointing = False
        yield
    finally:
        layers_log.removeFilter(quiet)
        for m, can, func in saved:
            if func is None:
                m.gradient_checkpointing = True
                continue
            m._gradient_checkpointing_func = func
            if can is None:
                m.__dict__.pop("_can_checkpoint_with_cache", None)
            else:
                m._can_checkpoint_with_cache = can


__all__ = ["checkpointing_on", "keeps_cache", "kept_cache"]
