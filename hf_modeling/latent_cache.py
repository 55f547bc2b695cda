"""The KV cache of latent rollouts: allocated once at its final width, filled in place.

A rollout knows its width before the first step: the prompt, the latent
steps, the end marker and the answer tokens.  ``LatentCache`` allocates each
layer's keys and values at that width (``capacity``) and every forward writes
its new positions into the next free slots; attention reads a view of the
filled part, so it sees exactly the tensors transformers' ``DynamicCache``
would hold (same shapes and values, hence the same bits), without the
``torch.cat`` of the whole cache at every step.  Past its capacity a layer
grows (doubling), so a caller that feeds more than it announced still gets
the right result.

Row operations (``map_rows``: beam search branching, ghost rows, the N
samples of a shared prompt) copy the storage with its free slots.  Only for
inference: a cache filled in place cannot be differentiated through (training
keeps ``DynamicCache``, see ``latent_state.prompt_pass``).

Only torch and transformers are imported: this file is copied next to saved
checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import copy

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys`` / ``values`` are views of storage allocated at ``capacity`` positions."""

    def __init__(self, capacity: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.capacity = capacity
        self.length = 0
        self.key_storage: torch.Tensor | None = None
        self.value_storage: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def _allocate(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        have = 0 if self.key_storage is None else self.key_storage.shape[-2]
        width = max(needed, self.capacity or 0, 2 * have)
        rows, heads, _, dim = key_states.shape
        keys = key_states.new_empty(rows, heads, width, dim)
        values = value_states.new_empty(rows, heads, width, value_states.shape[-1])
        if self.length:
            keys[:, :, : self.length].copy_(self.keys)
            values[:, :, : self.length].copy_(self.values)
        self.key_storage, self.value_storage = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self.key_storage is None or end > self.key_storage.shape[-2]:
            self._allocate(key_states, value_states, end)
        self.key_storage[:, :, self.length:end].copy_(key_states)
        self.value_storage[:, :, self.length:end].copy_(value_states)
        self.length = end
        self.keys = self.key_storage[:, :, :end]
        self.values = self.value_storage[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def map_rows(self, fn) -> None:
        """Replace the rows by ``fn`` of them (``fn`` indexes or repeats the batch dimension)."""
        if self.key_storage is None:
            return
        self.key_storage, self.value_storage = fn(self.key_storage), fn(self.value_storage)
        self.keys = self.key_storage[:, :, : self.length]
        self.values = self.value_storage[:, :, : self.length]

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.map_rows(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.map_rows(lambda t: t[indices, ...])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.map_rows(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove == 0 or not self.is_initialized or self.key_storage is None:
            return
        self.length = max(0, self.length + tokens_to_remove)
        self.keys = self.key_storage[:, :, : self.length]
        self.values = self.value_storage[:, :, : self.length]

    def reset(self) -> None:
        self.key_storage = self.value_storage = None
        self.length = 0
        super().reset()


class LatentCache(DynamicCache):
    """``DynamicCache`` of full-attention layers allocated at ``capacity`` positions (see the module docstring).

    Layers of another kind (sliding windows, ...) stay as transformers made them.
    """

    def __init__(self, config, capacity: int | None = None):
        super().__init__(config=config)
        self.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in self.layers]


def map_cache(cache, fn):
    """A new cache whose key/value tensors are ``fn`` of the old ones (batch dimension first); the old one
    stays valid."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in new.layers:
        if isinstance(layer, PreallocatedLayer):
            layer.map_rows(fn)
        elif getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.numel():
            layer.keys = fn(layer.keys)
            layer.values = fn(layer.values)
    return new


__all__ = ["LatentCache", "PreallocatedLayer", "map_cache"]
