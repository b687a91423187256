"""Replay protection: a signed message is accepted once, and only close to when it was sent."""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable

from .errors import ErrorCode, ProtocolError


class ReplayGuard:
    """Remembers the signatures accepted within `window` seconds and refuses them a second
    time; refuses timestamps further than `window` from now (such a message can no longer be
    told apart from a replay, as its signature may have been forgotten).

    Memory is bounded by `max_entries`: when full, the oldest signature is forgotten and every
    message at least that old is refused from then on, so forgetting never opens a replay.
    Not thread-safe: one guard per receiving thread.
    """

    def __init__(
        self,
        window: float = 120.0,
        max_entries: int = 16384,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not window > 0 or max_entries < 1:
            raise ValueError("ReplayGuard needs a positive window and max_entries")
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._seen: set[bytes] = set()
        self._by_time: list[tuple[float, bytes]] = []  # a heap, oldest timestamp first
        self._floor = -math.inf  # messages this old or older are refused

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, signature: bytes, timestamp: float) -> None:
        """Accept (and remember) a message's signature, or raise ProtocolError(replayed)."""
        now = self._clock()
        self._forget_before(now - self.window)
        if not math.isfinite(timestamp) or abs(timestamp - now) > self.window:
            offset = timestamp - now
            raise ProtocolError(
                ErrorCode.REPLAYED,
                f"message timestamp is {offset:+.1f} s from now, outside +-{self.window:g} s",
            )
        if signature in self._seen:
            raise ProtocolError(ErrorCode.REPLAYED, "message signature seen before")
        if timestamp <= self._floor:
            raise ProtocolError(ErrorCode.REPLAYED, "message older than the replay memory")
        self._seen.add(signature)
        heapq.heappush(self._by_time, (timestamp, signature))
        while len(self._seen) > self.max_entries:
            oldest, forgotten = heapq.heappop(self._by_time)
            self._seen.discard(forgotten)
            self._floor = max(self._floor, oldest)

    def _forget_before(self, cutoff: float) -> None:
        """Signatures older than the window: their messages are refused by timestamp anyway,
        and by the floor should the clock step back."""
        while self._by_time and self._by_time[0][0] < cutoff:
            oldest, signature = heapq.heappop(self._by_time)
            self._seen.discard(signature)
            self._floor = max(self._floor, oldest)
