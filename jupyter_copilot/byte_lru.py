"""A least-recently-used map bounded in bytes, not entries.

Why bytes: an entry's size is the student's to choose (a 100,000-character cell is
as easy to send as a 10-character one), so "at most 2,048 entries" can mean 200 MB.
Each entry is charged what the caller says it costs (roughly the characters it
keeps alive); the oldest entries go until the total fits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Per-entry overhead charged on top of the caller's size (dict slot, key, object).
ENTRY_OVERHEAD = 200


class ByteLRU(Generic[K, V]):
    def __init__(self, max_bytes: int, max_entries: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        # Prompt building may run in a thread pool: keep the bookkeeping consistent.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V, size: int) -> None:
        cost = size + ENTRY_OVERHEAD
        with self._lock:
            self._pop(key)
            if cost > self.max_bytes:
                return  # larger than the whole cache: not worth evicting everything
            self._items[key] = (value, cost)
            self.bytes += cost
            while self.bytes > self.max_bytes or (
                self.max_entries is not None and len(self._items) > self.max_entries
            ):
                _, (_, old_cost) = self._items.popitem(last=False)
                self.bytes -= old_cost

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._pop(key)

    def _pop(self, key: K) -> V | None:
        item = self._items.pop(key, None)
        if item is None:
            return None
        self.bytes -= item[1]
        return item[0]
