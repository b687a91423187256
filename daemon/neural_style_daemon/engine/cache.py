"""A bounded LRU of loss targets (style Gram matrices, content features) across jobs, so that
a repeated edit with the same style or the same layer skips that work."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
import torch

Targets = dict[str, torch.Tensor]


def image_digest(array: np.ndarray) -> str:
    """A digest of an image's RGB pixels and shape (alpha does not change a target)."""
    rgb = np.ascontiguousarray(array[..., :3])
    digest = hashlib.blake2b(rgb.data.cast("B"), digest_size=16)
    digest.update(repr(rgb.shape).encode())
    return digest.hexdigest()


class TargetCache:
    """Targets by key, least recently used first out, bounded by the bytes the tensors hold
    (on the engine's device: at 4096 px one content layer alone is hundreds of MB)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[Targets, int]] = OrderedDict()
        self._bytes = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Targets]) -> Targets:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]
        self.misses += 1
        targets = compute()
        size = sum(t.numel() * t.element_size() for t in targets.values())
        if size <= self.max_bytes:
            self._entries[key] = (targets, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
        return targets

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes
