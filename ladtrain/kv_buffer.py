"""A KV cache whose keys and values grow in place: no copy of the whole cache per generated token.

``transformers``' ``DynamicLayer.update`` appends a token's keys and values with ``torch.cat``, which copies
the layer's whole cache into a new tensor at every step of generation: ``O(T^2)`` copying over a
completion, and a fresh allocation (with its page faults) per layer and step. :func:`buffered` replaces
each ``DynamicLayer`` of a cache by a :class:`BufferLayer` whose keys and values are views of the first
``length`` positions of buffers allocated once for ``capacity`` positions; ``update`` writes the new
positions into the buffer and returns the longer views. Attention reads the same numbers through views
with other strides, and the samples are bit for bit those of the concatenating cache
(``tests/train/test_kv_buffer.py``: logits of every step, and the sampler's tokens).

Measured at the SmolLM2-135M shape's decode step (16 rows, 3 key-value heads, 24 prompt + 96 new
positions; one thread; the step benchmark's allocator settings): appending with ``torch.cat`` and
attending took 1.35-1.42 ms per layer and step, writing into the buffer and attending 0.29-0.31 ms.

Dropping finished rows (``batch_select_indices``) in the order :func:`fill_order` gives (each dropped row
among the first b' filled by a kept row from the end) copies only the moved rows, in place; any other
selection copies the live rows' filled positions into new buffers of the same capacity. A cache that would
outgrow its capacity doubles it; ``crop`` shortens the views (the buffer keeps its capacity). Measured
(``benchmarks/small_shape_parts.py``, the 6.4M model's 128 rows x 16 tokens, six interleaved calls): a
rollout 0.71 s of CPU with rows dropped in place, 1.19 s when every drop copied the live rows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import DynamicLayer


class BufferLayer(DynamicLayer):
    """One layer's keys and values: (b, heads, length, d) views of (b, heads, capacity, d) buffers, in
    place of a filled ``transformers.cache_utils.DynamicLayer``."""

    def __init__(self, keys: Tensor, values: Tensor, capacity: int) -> None:
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self.length = keys.shape[-2]
        self._keys = self._new(keys, max(capacity, self.length))
        self._values = self._new(values, max(capacity, self.length))
        self._views()

    @staticmethod
    def _new(filled: Tensor, capacity: int) -> Tensor:
        buffer = filled.new_empty(*filled.shape[:-2], capacity, filled.shape[-1])
        buffer[..., : filled.shape[-2], :] = filled
        return buffer

    def _views(self) -> None:
        self.keys = self._keys[..., : self.length, :]
        self.values = self._values[..., : self.length, :]

    @property
    def capacity(self) -> int:
        return self._keys.shape[-2]

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any,
               **kwargs: Any) -> tuple[Tensor, Tensor]:
        end = self.length + key_states.shape[-2]
        if end > self.capacity:  # grow: twice the capacity (or what is needed)
            size = max(end, 2 * self.capacity)
            self._keys, self._values = self._new(self.keys, size), self._new(self.values, size)
        self._keys[..., self.length : end, :] = key_states
        self._values[..., self.length : end, :] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:  # never: built filled
        raise RuntimeError("BufferLayer is built from a filled DynamicLayer")

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` positions, as ``DynamicLayer.crop`` does (a positive count
        is its legacy form, refused the same way); the buffer keeps its capacity."""
        if tokens_to_remove > 0:
            raise ValueError(
                f"Calling `crop` with a positive value (`{tokens_to_remove}`) is not supported. "
                "Please use a negative integer to remove that number of tokens from the cache instead."
            )
        self.length = max(self.length - abs(tokens_to_remove), 0)
        self._views()

    def batch_select_indices(self, indices: Tensor) -> None:
        """Keep the rows ``indices`` (b',), in that order. In place when every row ``j`` that changes
        takes a row ``indices[j] >= b'`` (one the selection drops, so no row is read after it is
        overwritten): only those rows are copied, nothing is allocated (:func:`fill_order` builds such
        an order). Any other selection copies the kept rows into new buffers."""
        b = indices.shape[0]
        moved = (indices != torch.arange(b, device=indices.device)).nonzero().squeeze(1)  # (m,)
        sources = indices[moved]  # (m,)
        if bool((sources >= b).all()):
            for buffer in (self._keys, self._values):
                filled = buffer[..., : self.length, :]  # a view: index_copy_ writes into the buffer
                filled.index_copy_(0, moved, filled.index_select(0, sources))
            self._keys, self._values = self._keys[:b], self._values[:b]  # views of the first b' rows
        else:
            self._keys = self._new(self.keys[indices], self.capacity)
            self._values = self._new(self.values[indices], self.capacity)
        self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._keys = self._new(self.keys.repeat_interleave(repeats, dim=0), self.capacity)
        self._values = self._new(self.values.repeat_interleave(repeats, dim=0), self.capacity)
        self._views()


def fill_order(keep: Tensor) -> Tensor:
    """The rows to keep, ``keep`` (b,) bool, as an order that :meth:`BufferLayer.batch_select_indices`
    applies in place: the kept rows among the first b' = ``keep.sum()`` stay where they are, and each
    dropped one there is filled by a kept row from after b'. ``(b',)`` row indices (a permutation of
    ``keep.nonzero()``): the cost of dropping rows is the copy of the rows moved, not of the cache."""
    b = int(keep.sum())
    order = torch.arange(b, device=keep.device)
    holes = (~keep[:b]).nonzero().squeeze(1)  # dropped rows in the prefix
    order[holes] = keep[b:].nonzero().squeeze(1) + b  # as many kept rows after it
    return order


def buffered(cache: Any, capacity: int) -> bool:
    """Replace ``cache``'s ``DynamicLayer`` layers (filled, as after a prefill) by :class:`BufferLayer`
    of ``capacity`` positions, in place. False (and nothing changed) where the cache is not made of plain
    ``DynamicLayer`` layers (sliding windows, quantised or static caches, no ``layers``), or offloads."""
    layers = getattr(cache, "layers", None)
    if not layers or getattr(cache, "offloading", False):
        return False
    if not all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers):
        return False
    cache.layers = [BufferLayer(layer.keys, layer.values, capacity) for layer in layers]
    cache.layer_class_to_replicate = None  # every layer exists; none is added lazily
    return True


__all__ = ["BufferLayer", "buffered", "fill_order"]
