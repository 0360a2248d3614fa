"""A compiled function's cache: the tables shared by every ``Compiled`` of one function and
options, the counts ``Compiled.cache_info()`` reports, and the ``RetraceWarning`` for a function
traced again and again because an argument keeps changing."""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from chainrule.errors import RetraceWarning
from chainrule.frontends.trace import ArgsSpec, LeafSpec
from chainrule.transforms.reuse import FunctionEntry
from chainrule.transforms.specialization import Specialization


class CacheInfo(NamedTuple):
    """``Compiled.cache_info()``: calls that reused a kernel, calls that compiled one, traces of
    the Python function (failed ones included), and kernels kept."""

    hits: int
    misses: int
    traces: int
    currsize: int


_CHAINRULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CacheStats:
    """The counts of one function's cache (shared by its Compileds with the same options), and
    what the retrace warning needs: the last compiled signature and which arguments changed."""

    def __init__(self) -> None:
        self.hits = 0
        self.native_hits = ctypes.c_uint64()  # the hits float builtins counted (scalar_call.py)
        self.misses = 0
        self.traces = 0  # runs of the Python function (a signature another transform traced runs none)
        self.compiles = 0  # new signatures, compiled or failed
        self.warned = False
        self._last: tuple[ArgsSpec, list[str]] | None = None
        self._changes: collections.Counter[str] = collections.Counter()
        self._last_change: dict[str, str] = {}

    def reused_trace(self) -> None:
        """Uncount the trace of the signature being compiled: another transform's trace was reused."""
        self.traces -= 1

    def compiling(self, name: str, spec: ArgsSpec, leaves: Sequence[Any], warn_after: int | None) -> None:
        """Count a new signature ``spec`` and its trace; warn (once) when the retraces exceed ``warn_after``."""
        self.compiles += 1
        self.traces += 1
        described = [_describe(leaf_spec, leaf) for leaf_spec, leaf in zip(spec.leaves, leaves)]
        if self._last is not None:
            for path, change in _changes(*self._last, spec, described):
                self._changes[path] += 1
                self._last_change[path] = change
        self._last = (spec, described)
        if self.warned or warn_after is None or self.compiles - 1 <= warn_after or not self._changes:
            return
        self.warned = True
        path, count = self._changes.most_common(1)[0]
        warnings.warn(
            RetraceWarning(
                f"{name} has been traced {self.compiles} times: argument {path!r} changed in {count} of the "
                f"retraces (last: {self._last_change[path]}), and each new shape, dtype or static value "
                "compiles again. Pass values that change as arrays or Python numbers (traced: a new value "
                "reuses the kernel), pad shapes to a few sizes, or raise Compiled.retrace_warning_after."
            ),
            stacklevel=_user_stacklevel(),
        )


def _describe(leaf_spec: LeafSpec, leaf: Any) -> str:
    if leaf_spec.type is not None:
        return str(leaf_spec.type)
    text = repr(leaf)
    return f"static value {text if len(text) <= 40 else text[:37] + '...'}"


def _changes(old: ArgsSpec, old_described: list[str], new: ArgsSpec, new_described: list[str]) -> list[tuple[str, str]]:
    """(path, "old -> new") for each leaf that differs between two signatures of the same
    structure; for the arguments whose structure changed, (argument, "structure changed")."""
    if old.treedefs == new.treedefs and old.keywords == new.keywords:
        return [
            (path, f"{was} -> {now}")
            for path, before, after, was, now in zip(new.paths, old.leaves, new.leaves, old_described, new_described)
            if before != after
        ]
    found = []
    for position, treedef in enumerate(new.treedefs):
        if position >= len(old.treedefs) or old.treedefs[position] != treedef:
            paths = [p for p, owner in zip(new.paths, new.arg_of_leaf) if owner == position]
            found.append((paths[0].split("[")[0].split(".")[0] if paths else f"arg{position}", "structure changed"))
    return found or [("(the argument count)", "structure changed")]


def _user_stacklevel() -> int:
    """The stacklevel of ``warnings.warn`` that points at the first frame outside chainrule."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_CHAINRULE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


SpecializationCache = dict[ArgsSpec, Specialization]
KeyCache = dict[tuple[Any, ...], tuple[Specialization, tuple[int, ...] | None, tuple[int, ...]]]
SharedCaches = tuple[SpecializationCache, KeyCache, CacheStats]

# function object -> {options: its statistics}; weak, so they go with the function
_STATS: weakref.WeakKeyDictionary[Callable[..., Any], dict[tuple[Any, ...], CacheStats]] = weakref.WeakKeyDictionary()


def shared_caches(fn: Callable[..., Any], entry: FunctionEntry, options: tuple[Any, ...]) -> SharedCaches:
    """The specialization caches of ``fn`` under ``options``, shared with every Compiled of a
    function of the same key (``entry``: the same code and closure values, see
    ``chainrule.transforms.reuse``), and the statistics of ``fn`` itself under them (a function
    made again counts its own traces)."""
    try:
        tables = entry.caches.get(options)
        if tables is None:
            tables = entry.caches[options] = ({}, {})
    except TypeError:  # an option (a checkpoint policy function) is unhashable: tables of its own
        tables = ({}, {})
    try:
        stats = _STATS.setdefault(fn, {}).get(options)
        if stats is None:
            stats = _STATS[fn][options] = CacheStats()
    except TypeError:  # fn cannot be weakly referenced, or an option is unhashable
        stats = CacheStats()
    return tables[0], tables[1], stats
