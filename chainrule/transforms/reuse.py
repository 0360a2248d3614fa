"""What every transform of one function shares, so the user's Python runs once per signature
and a kernel compiles once per pipeline: ``function_entry(fn)`` finds the ``FunctionEntry`` of
``fn``'s key (``chainrule.transforms.function_key``: its code, closure values, defaults and read
globals; a bound method's object; a Compiled's options),
the same for ``cr.grad(lambda w: loss(w, x))`` made again in a loop.

An entry holds, per signature (``ArgsSpec`` and ``has_aux``), the traced forward graph, which
``grad``, ``value_and_grad``, ``jit``, ``jvp``, ``vjp``, ``hvp``, ``jacobian`` and ``hessian``
all start from; per traced graph and pipeline options, the compiled stages; per stages and
backend, the kernel; and per transform options, the specialization caches of
``chainrule.transforms.cache_stats``.

Lifetime: an entry lives while a function object with its key lives (or a Compiled of one),
and the ``RECENT_ENTRIES`` last used stay a little longer, so the function made again in the
next iteration of a loop finds the kernels of the one just dropped. An entry whose key holds an
array or an object (a bound method's) dies with it, or when the array is changed in place (its
key changes). A function that cannot be keyed (a callable object, a closure over an object of the
user's class) has an entry of its own that shares no trace with other transforms: nothing stale
is ever found.

The globals a function's code reads are part of its key; what a function reads through a module
(``config.scale``) is not, and a Compiled that exists keeps the kernels of the signatures it
traced, as with ``jax.jit``.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from chainrule.frontends.pytree import TreeDef
from chainrule.frontends.trace import ArgsSpec, trace_graph
from chainrule.frontends.tracer import Tracer
from chainrule.ir import Graph
from chainrule.transforms.function_key import ARRAY_TOKENS, FunctionKey, array_tokens, function_key

# Entries of dropped functions kept for a function made again (a lambda in a loop).
RECENT_ENTRIES = 8

# Held while tracing and compiling: threads calling a new signature at once compile it once
# (compiled.py). One lock for all functions (compiling holds the GIL anyway); re-entrant, since
# compiling grad(grad(f)) compiles the inner function on the same thread.
COMPILING = threading.RLock()


class FunctionEntry:
    """The traces, compilations, kernels and specialization caches of one function key
    (``key`` None: of one function object that cannot be keyed)."""

    __slots__ = ("__weakref__", "caches", "key", "products", "traces")

    def __init__(self, key: FunctionKey | None):
        self.key = key
        self.caches: dict[tuple[Any, ...], Any] = {}  # transform options -> specialization caches
        self.traces: dict[tuple[ArgsSpec, bool], tuple[Graph, TreeDef]] = {}
        # (what it was made from, how) -> a compilation or a kernel
        self.products: dict[Hashable, Any] = {}

    def traced(
        self,
        fn: Callable[..., Any],
        spec: ArgsSpec,
        leaves: list[Any],
        has_aux: bool = False,
        differentiated: Sequence[int] = (),
        on_reuse: Callable[[], None] | None = None,
        captured: list[Tracer] | None = None,
    ) -> tuple[Graph, TreeDef]:
        """``trace_graph(fn, spec, leaves, ...)``, run once per signature for a keyed function
        (``on_reuse`` is told when the Python function does not run). The graph is shared: passes
        build new graphs and never change it. A trace that read values of an enclosing trace (into
        ``captured``) is not kept: those values are that trace's alone."""
        with COMPILING:
            found = self.traces.get((spec, has_aux)) if self.key is not None else None
            if found is not None and on_reuse is not None:
                on_reuse()
            if found is None:
                reads: list[Tracer] = []  # values of enclosing traces the trace read, if it may
                found = trace_graph(
                    fn,
                    spec,
                    leaves,
                    has_aux=has_aux,
                    differentiated=tuple(differentiated),
                    captured=None if captured is None else reads,
                )
                if captured is not None:
                    captured.extend(reads)
                if self.key is not None and not reads:
                    self.traces[spec, has_aux] = found
            return found

    def product_later(self, source: Any, how: Hashable, make: Callable[[], Any]) -> Callable[[], Any]:
        """A function making ``product(source, how, make)`` when called. It holds this entry weakly:
        what keeps it (a Specialization in this entry's caches) would otherwise keep the entry alive."""
        entry = weakref.ref(self)

        def later() -> Any:
            alive = entry()
            return make() if alive is None else alive.product(source, how, make)

        return later

    def product(self, source: Any, how: Hashable, make: Callable[[], Any]) -> Any:
        """What ``make()`` makes of ``source`` (a traced graph, a compilation) done ``how`` (a
        hashable description of the options), made once: grad and value_and_grad of one function
        run one pipeline."""
        if self.key is None:  # its traces are not shared, so neither is what is made of them
            return make()
        try:
            key = (id(source), how)
            hash(key)
        except TypeError:  # an option (a checkpoint policy function) is unhashable
            return make()
        with COMPILING:
            found = self.products.get(key)
            if found is None or found[0] is not source:
                found = self.products[key] = (source, make())  # holding source keeps its id unique
            return found[1]


_LOCK = threading.RLock()  # re-entrant: a weak reference's callback can run while it is held
_KEYED: weakref.WeakValueDictionary[FunctionKey, FunctionEntry] = weakref.WeakValueDictionary()
_RECENT: collections.OrderedDict[FunctionKey, FunctionEntry] = collections.OrderedDict()
# function object -> its entry: an entry lives while a function of its key does
_OWNER: weakref.WeakKeyDictionary[Callable[..., Any], FunctionEntry] = weakref.WeakKeyDictionary()


def function_entry(fn: Callable[..., Any]) -> FunctionEntry:
    """The entry of ``fn``'s current key (its closure values as they are now)."""
    key = function_key(fn)
    with _LOCK:
        if key is None:
            try:
                entry = _OWNER.get(fn)
                if entry is None or entry.key is not None:
                    entry = _OWNER[fn] = FunctionEntry(None)
            except TypeError:  # fn cannot be weakly referenced or hashed: an entry of its own
                entry = FunctionEntry(None)
            return entry
        entry = _KEYED.get(key)
        if entry is None:
            entry = _KEYED[key] = FunctionEntry(key)
        _RECENT[key] = entry
        _RECENT.move_to_end(key)
        while len(_RECENT) > RECENT_ENTRIES:
            _RECENT.popitem(last=False)
        try:
            _OWNER[fn] = entry
        except TypeError:
            pass
        return entry


def _array_retired(token: int) -> None:
    """An array of some keys died or changed in place: their entries can never be found again."""
    with _LOCK:
        for key in [key for key in _RECENT if token in array_tokens(key)]:
            del _RECENT[key]


ARRAY_TOKENS.retired = _array_retired


def forget_functions() -> None:
    """Forget the traces and kernels of the functions that are gone: one made again from now on
    traces and compiles afresh (and finds the LLVM disk cache), as in a new process. The functions
    that exist keep theirs."""
    with _LOCK:
        _RECENT.clear()
