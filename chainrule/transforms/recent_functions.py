"""Per-function caches of compiled transformations that stay bounded.

``cr.jvp(f, ...)`` and ``cr.vjp(f, ...)`` compile ``f`` once and find the kernels again when
called with the same ``f``. Such a table cannot be weak-keyed by ``f``: what it holds (a
``Linearized``, a ``jit``) holds ``f``, so the key would never die (a long fuzzing run grew by
1.5 MB per function). It is strong and keeps the ``RECENT_FUNCTIONS`` functions used last; a
function made again after that still finds its kernels through its entry (``reuse.py``).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

RECENT_FUNCTIONS = 32
_LOCK = threading.Lock()


class RecentFunctions:
    """fn -> a dict of what was compiled for it, for the ``RECENT_FUNCTIONS`` last used."""

    def __init__(self) -> None:
        self._table: collections.OrderedDict[Callable[..., Any], dict] = collections.OrderedDict()

    def of(self, fn: Callable[..., Any]) -> dict:
        """``fn``'s dict, made the most recent (a TypeError when fn cannot be hashed)."""
        with _LOCK:
            per_function = self._table.get(fn)
            if per_function is None:
                per_function = self._table[fn] = {}
            self._table.move_to_end(fn)
            while len(self._table) > RECENT_FUNCTIONS:
                self._table.popitem(last=False)
            return per_function

    def __len__(self) -> int:
        return len(self._table)
