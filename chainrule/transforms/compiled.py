"""Compiled functions (``Compiled``: traced, compiled and cached per signature) and the
transformations built on them directly: grad, value_and_grad, jit, trace."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chainrule.compiler import pipeline
from chainrule.compiler.checkpoint import validate_policy
from chainrule.errors import ArgumentError, UnsupportedError
from chainrule.frontends.pytree import TreeDef
from chainrule.frontends.trace import (
    ArgsSpec,
    StaticArguments,
    call_key,
    describe_args,
    int_tuple,
    split_keywords,
    trace_graph,
)
from chainrule.frontends.tracer import Tracer
from chainrule.ir import Graph
from chainrule.transforms.array_guard import KnownArrays, known_arrays
from chainrule.transforms.cache_stats import CacheInfo, shared_caches
from chainrule.transforms.looking_inside import LookingInside
from chainrule.transforms.options import checked_options
from chainrule.transforms.portable import portable_reduce
from chainrule.transforms.reuse import COMPILING, function_entry
from chainrule.transforms.scalar_call import MISSED, GeneralCall, ScalarCall, fast_call_class, scalar_call
from chainrule.transforms.specialization import Specialization, check_scalar_output, collector_paused, make_kernel
from chainrule.transforms.specialization import compile_kernel as compile_kernel  # imported from here by tests

_BACKENDS = ("numpy", "llvm")


def argnum_tuple(argnums: int | Sequence[int]) -> tuple[int, ...]:
    """``argnums`` (an int or a sequence of ints) as a tuple, or an ArgumentError saying what it was."""
    return int_tuple(argnums, "argnums")


class Compiled(LookingInside):
    """A function compiled by chainrule; call it like the original.

    It specializes on the shapes, dtypes and pytree structure of its arguments
    (and on the values of static arguments, bools and strings) and caches each
    specialization; Python ints and floats are traced as 0-d values, so a new value
    reuses the kernel. ``.ir(*args)``, ``.graph(*args)`` and ``.source(*args)`` show
    what it runs; ``.cache_info()`` how often it traced. After more than
    ``retrace_warning_after`` retraces (set it on the class or an instance; None for
    never) a ``RetraceWarning`` names the argument that keeps changing. A function made
    again with the same code, closure values, defaults and read globals (``cr.grad(lambda
    w: loss(w, x))`` in a loop) reuses these kernels, and all transforms of a function trace
    its Python once per signature (``chainrule.transforms.reuse``).
    """

    retrace_warning_after: int | None = 8

    def __init__(
        self,
        fn: Callable[..., Any],
        transform: str,
        argnums: int | Sequence[int] = 0,
        *,
        backend: str = "numpy",
        checkpoint: Any = "all",
        check_nans: bool = False,
        optimize: bool = True,
        static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (),
        has_aux: bool = False,
    ):
        if not callable(fn):
            raise ArgumentError(f"{transform} needs a function, got {type(fn).__name__}")
        if backend not in _BACKENDS:
            raise UnsupportedError(f"backend {backend!r} is not available; this build has {', '.join(_BACKENDS)}")
        validate_policy(checkpoint)
        self.fn = fn
        self.transform = transform
        self.argnums = argnums
        self._argnum_tuple = argnum_tuple(argnums)
        self.static = StaticArguments.of(fn, static_argnums, static_argnames)
        self.has_aux = bool(has_aux)
        self.backend = backend
        self.checkpoint = checkpoint
        self.check_nans = check_nans
        self.optimize = optimize
        overlap = set(self._argnum_tuple) & set(self.static.numbers) if self._differentiates else set()
        if overlap:
            raise ArgumentError(
                f"argument {sorted(overlap)[0]} of {self._function_name} is both differentiated (argnums="
                f"{argnums!r}) and static: a static argument is a constant, which has no gradient"
            )
        self._cache_options: tuple[Any, ...] = (
            transform,
            self._argnum_tuple,
            backend,
            checkpoint,
            check_nans,
            optimize,
            self.static,
            self.has_aux,
        )
        # updated=(): wrapping another Compiled must not copy its __dict__ (cache, transform) over ours
        functools.update_wrapper(self, fn, updated=())
        self.attach(fn)

    def attach(self, fn: Callable[..., Any]) -> None:
        """Make ``fn`` the compiled function, with this process's caches of it (also on unpickling)."""
        self.fn = self.__wrapped__ = fn
        # the traces, compilations and kernels of fn's code and closure values (transforms/reuse.py)
        self._entry = function_entry(fn)
        # ArgsSpec -> its specialization; call_key -> (the same specialization, which leaves are its
        # inputs, which of those need np.asarray). Shared by every Compiled of fn's key with these
        # options, as jax.jit shares its cache: cr.grad(f) made again in a loop compiles nothing.
        self._cache, self._by_key, self._stats = shared_caches(fn, self._entry, self._cache_options)
        # (argument count, keyword names) -> (differentiated positions, static positions)
        self._layouts: dict[tuple[int, tuple[str, ...]], tuple[tuple[int, ...], tuple[int, ...]]] = {}
        # The last signature whose arguments are all traced scalars (np.float64(4.2), a Python float): their classes
        # alone fix the specialization, so such a call skips call_key (microseconds); see transforms/scalar_call.py.
        self._scalar_call: ScalarCall | None = None
        self._array_call: KnownArrays | None = None  # the last all-array signature's (transforms/array_guard.py)
        self._array_tried = False

    __reduce__ = portable_reduce  # the function and options travel, never a kernel

    def chainrule_key_parts(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """What decides its kernels: its function and options. ``function_key`` keys a transform
        of a Compiled (``cr.grad(cr.jit(f))`` made again) by them."""
        return self.fn, self._cache_options

    @property
    def _function_name(self) -> str:
        """The wrapped function's name, for messages (a functools.partial has none)."""
        return getattr(self.fn, "__name__", repr(self.fn))

    @property
    def _differentiates(self) -> bool:
        return self.transform in ("grad", "value_and_grad")

    def __repr__(self) -> str:
        return f"<chainrule {self.transform} of {getattr(self.fn, '__name__', self.fn)!r}>"

    # ---- compiling --------------------------------------------------------------------------

    def _layout(self, count: int, keywords: tuple[str, ...] = ()) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(differentiated positions, static positions) for a call with ``count`` arguments, the
        last ``len(keywords)`` of them passed by those names (argnums counts positional ones only)."""
        layout = self._layouts.get((count, keywords))
        if layout is None:
            positional = count - len(keywords)
            differentiated = self._differentiated(positional)
            static = self.static.positions(positional, keywords)
            both = set(differentiated) & set(static)
            if both:
                raise ArgumentError(
                    f"argument {min(both)} of {self._function_name} is both differentiated (argnums="
                    f"{self.argnums!r}) and static (static_argnums or static_argnames)"
                )
            layout = self._layouts[count, keywords] = (differentiated, static)
        return layout

    def _differentiated(self, count: int) -> tuple[int, ...]:
        """The differentiated argument positions for a call with ``count`` positional arguments."""
        if not self._differentiates:
            return ()
        for argnum in self._argnum_tuple:
            if not -count <= argnum < count:
                raise ArgumentError(
                    f"argnums={self.argnums!r} but {self._function_name} was called with {count} "
                    "arguments (argnums counts positional ones only)"
                )
        return tuple(a % count for a in self._argnum_tuple)

    def _specialize(self, args: tuple[Any, ...], keywords: tuple[str, ...] = ()) -> tuple[Specialization, list[Any]]:
        differentiated, static = self._layout(len(args), keywords)
        spec, leaves = describe_args(self.fn, args, differentiated, static, keywords)
        entry = self._cache.get(spec)
        if entry is None:
            # Threads calling a new signature at once compile it once: the others wait for it. One
            # lock for all functions (compiling holds the GIL anyway); re-entrant, since compiling
            # grad(grad(f)) compiles the inner function on the same thread.
            with COMPILING:
                entry = self._cache.get(spec)
                if entry is None and self._entry.key is not None and self._entry is not function_entry(self.fn):
                    # fn's closure changed since (a cell rebound, an array changed in place): the
                    # caches of what it is now, never a trace of what it was (a function that
                    # cannot be keyed keeps the caches of its object, as before)
                    self.attach(self.fn)
                    entry = self._cache.get(spec)
                if entry is None:
                    self._stats.compiling(self._function_name, spec, leaves, self.retrace_warning_after)
                    entry = self._compile(spec, leaves, differentiated)
                    if not entry.captured:  # a trace of values of an enclosing trace is inlined once
                        self._cache[spec] = entry  # only reached when compiling succeeded
                    self._stats.misses += 1
        return entry, leaves

    def cache_info(self) -> CacheInfo:
        """How the compile cache was used: ``hits`` (calls that reused a kernel), ``misses`` (calls
        that compiled one), ``traces`` (runs of the Python function to trace it, failed ones
        included) and ``currsize`` (kernels kept), counted for this function and options across
        every Compiled of them (``cr.grad(f)`` made again shares them).

        >>> import numpy as np, chainrule as cr
        >>> f = cr.jit(lambda x, scale: x * scale)
        >>> _ = f(np.ones(3), 2.0); _ = f(np.ones(3), 3.0)  # a new float is a new value, not a new kernel
        >>> f.cache_info()
        CacheInfo(hits=1, misses=1, traces=1, currsize=1)
        """
        stats = self._stats
        return CacheInfo(stats.hits + stats.native_hits.value, stats.misses, stats.traces, len(self._cache))

    def _compile(self, spec: ArgsSpec, leaves: list[Any], differentiated: tuple[int, ...]) -> Specialization:
        return collector_paused(lambda: self._compile_now(spec, leaves, differentiated))

    def _compile_now(self, spec: ArgsSpec, leaves: list[Any], differentiated: tuple[int, ...]) -> Specialization:
        captured: list[Tracer] = []
        traced, out_treedef = self.build_graph(spec, leaves, differentiated, captured)
        wrt: tuple[int, ...] | None = None
        if self._differentiates:
            check_scalar_output(traced, out_treedef.children[0].num_leaves if self.has_aux else None)
            traced_positions = [i for i, s in enumerate(spec.leaves) if s.traced]
            wrt = tuple(
                traced_positions.index(i)
                for i, owner in enumerate(spec.arg_of_leaf)
                if owner in differentiated and spec.leaves[i].traced
            )
        # grad and value_and_grad of one trace run one pipeline; a kernel is shared under one name
        options = (self.optimize, self.checkpoint)
        compilation = self._entry.product(
            traced, (wrt, *options), lambda: pipeline.run(traced, wrt, self.optimize, checkpoint_policy=self.checkpoint)
        )
        value_unused = self.transform == "grad" and not self.has_aux  # grad returns the gradients alone
        kernel_options = (f"{traced.name}_{self.transform}", self.backend, self.check_nans, self.optimize, value_unused)
        # the kernel is compiled when first run: an entry inlined into an enclosing trace never is
        kernel = self._entry.product_later(
            compilation, kernel_options, lambda: make_kernel(compilation, *kernel_options)
        )
        captured_at = len(traced.inputs) - len(captured)  # (all of them last)
        return Specialization(compilation, kernel, out_treedef, spec, differentiated, tuple(captured), captured_at)

    def build_graph(self, spec: ArgsSpec, leaves: list, differentiated: tuple, captured: list) -> tuple[Graph, TreeDef]:
        """The graph compiled for arguments described by ``spec``, and its output structure: ``fn``
        traced, once per signature for all its transforms (``cr.vmap`` traces one example and vectorizes).
        Values of an enclosing trace that ``fn`` reads are appended to ``captured`` (trace_graph)."""
        entry, stats = self._entry, self._stats
        return entry.traced(self.fn, spec, leaves, self.has_aux, differentiated, stats.reused_trace, captured)

    # ---- calling ----------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stats = self._stats
        arrays = self._array_call
        if arrays is not None and not kwargs:
            outputs = arrays.call(*args)
            if outputs is not MISSED:
                stats.hits += 1
                return arrays.finish(outputs) if arrays.finish else self._results(arrays.entry, outputs)
        known = self._scalar_call
        if known is not None and not kwargs:
            if known.builtin is not None:  # Python floats in and out, natively, or MISSED
                result = known.builtin(*args)
                if result is not MISSED:
                    stats.hits += 1
                    return result
            elif known.classes == tuple(map(type, args)):
                stats.hits += 1
                return known.call(*args)
        args, keywords = split_keywords(args, kwargs)
        # The fast path: a cheap key of the arguments (structure, shapes, dtypes, static values)
        # finds the specialization without building an ArgsSpec; a first call, a traced
        # argument or an unhashable static value takes _specialize's path.
        found = call_key(args, self._layout(len(args), keywords)[1], keywords)
        if found is not None:
            key, leaves = found
            try:
                hit = self._by_key.get(key)
            except TypeError:  # an unhashable static value: describe_args says what is wrong
                hit, found = None, None
            if hit is not None:
                stats.hits += 1
                entry, picks, converts = hit
                if known is None and picks is None and len(converts) == len(leaves):  # scalars only
                    # a Compiled made again finds its kernel here first
                    self._remember_scalars(scalar_call(self, entry, args, keywords, leaves, picks))
                elif arrays is None and not converts and not self._array_tried:  # once: it costs a little
                    self._array_tried = True
                    self._remember_arrays(known_arrays(self, entry, args, keywords, leaves, picks))
                inputs = leaves if picks is None else [leaves[i] for i in picks]
                for index in converts:
                    inputs[index] = np.asarray(inputs[index])
                return self._results(entry, entry.kernel.fn(*inputs))
        misses = stats.misses
        entry, leaves = self._specialize(args, keywords)
        if stats.misses == misses:
            stats.hits += 1
        traced_leaves = [leaves[i] for i in entry.traced_leaves]
        if found is not None and not entry.captured:  # (an entry with captured values is never kept)
            # The key fixes every leaf's class, so which inputs need np.asarray is known now.
            picks = None if entry.traced_leaves == tuple(range(len(leaves))) else entry.traced_leaves
            converts = tuple(i for i, leaf in enumerate(traced_leaves) if type(leaf) is not np.ndarray)
            self._by_key[found[0]] = (entry, picks, converts)
            self._remember_scalars(scalar_call(self, entry, args, keywords, leaves, picks) or self._scalar_call)
            if not converts and not any(isinstance(leaf, Tracer) for leaf in traced_leaves):
                self._remember_arrays(known_arrays(self, entry, args, keywords, leaves, picks) or self._array_call)
        if entry.captured or any(isinstance(leaf, Tracer) for leaf in traced_leaves):
            outputs = entry.inline(traced_leaves)  # into the trace running now
        else:
            outputs = entry.kernel.fn(*[np.asarray(leaf) for leaf in traced_leaves])
        return self._results(entry, outputs)

    def _remember_scalars(self, known: ScalarCall | None) -> None:
        """Keep ``known``, the last all-scalar signature; a plain Compiled of Python floats is then
        called as the kernel's float builtin (scalar_call.fast_call_class)."""
        self._scalar_call = known
        if known is not None and known.make_builtin is not None and self._plain():
            self._call_directly(known.make_builtin(GeneralCall(self, Compiled.__call__), self._stats.native_hits))

    def _remember_arrays(self, known: KnownArrays | None) -> None:
        """Keep ``known``, the last all-array signature; a plain Compiled of the llvm backend is then
        called as the generated call of the kernel's array builtin, without a frame of its own."""
        self._array_call = known
        if known is not None and self._plain():
            make = getattr(known.entry.kernel, "array_caller", None)
            whole = (known.finish, GeneralCall(self, Compiled.__call__), self._stats)
            self._call_directly(make(MISSED, whole) if make is not None and known.finish is not None else None)

    def _plain(self) -> bool:
        return type(self) is Compiled or type(self) is fast_call_class(Compiled)

    def _call_directly(self, call: Callable[..., Any] | None) -> None:
        """Make ``call`` this plain Compiled's call (its fallback, ``Compiled.__call__``), or with None
        ``Compiled.__call__`` itself."""
        if call is None:
            self.__dict__.pop("_fast_call", None)
            self.__class__ = Compiled
        else:
            self._fast_call = call
            self.__class__ = fast_call_class(Compiled)

    def _results(self, entry: Specialization, outputs: Sequence[Any]) -> Any:
        """What the call returns: the outputs rebuilt, and/or the gradients in the arguments' structure."""
        if not self._differentiates:
            return entry.build_outputs(outputs)
        gradients = outputs[entry.out_treedef.num_leaves :]
        per_arg: list[Any] = []
        start = 0
        for count, build, converters in entry.gradient_trees:
            leaves = gradients[start : start + count]
            start += count
            if converters is not None:
                leaves = [g if c is None or isinstance(g, Tracer) else c(g) for c, g in zip(converters, leaves)]
            per_arg.append(build(leaves))
        grads = per_arg[0] if isinstance(self.argnums, int) else tuple(per_arg[i] for i in entry.gradient_order)
        if self.has_aux:  # JAX's layouts: grad gives (grads, aux), value_and_grad ((value, aux), grads)
            value_and_aux = entry.build_outputs(outputs[: entry.out_treedef.num_leaves])
            return (grads, value_and_aux[1]) if self.transform == "grad" else (value_and_aux, grads)
        if self.transform == "grad":
            return grads
        return outputs[0], grads


# ---- the public transformations -------------------------------------------------------------


@checked_options
def grad(
    fn: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    has_aux: bool = False,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    backend: str = "numpy",
    checkpoint: Any = "all",
    check_nans: bool = False,
    optimize: bool = True,
) -> Compiled:
    """The gradient of a scalar function, compiled.

    >>> import numpy as np, chainrule as cr
    >>> df = cr.grad(lambda x: np.sum(np.sin(x)))
    >>> float(df(np.array([0.0])))
    1.0

    ``argnums`` picks the positional argument(s) to differentiate (an int, or a tuple:
    then a tuple of gradients comes back). Arguments are pytrees of arrays and Python
    numbers, passed by position or by keyword; gradients have the same structure, shapes
    and dtypes (a Python float's is a float). Python ints and floats are traced as 0-d
    values, as in JAX: a new value reuses the kernel. ``static_argnums`` and
    ``static_argnames`` name arguments compiled in by value instead (each new value
    compiles again; it must be hashable), which Python control flow on them needs.
    With ``has_aux=True`` the function returns ``(loss, aux)`` and the call returns
    ``(gradients, aux)``; aux is not differentiated. ``optimize=False`` skips the
    optimizing passes (simplify, CSE, fusion, scheduling), to compare against.

    ``checkpoint`` trades recomputation for memory: ``"all"`` keeps every forward value the
    backward pass reads, ``"sqrt"`` keeps about sqrt(n) of them (one extra forward pass at most),
    ``"optimal"`` uses Griewank's binomial schedule on chains and a min-cut elsewhere, an int is a
    budget in bytes, and a function ``(node) -> "save" | "recompute"`` decides per value (see
    ``chainrule.compiler.checkpoint``; ``.memory(*args)`` reports the result).

    ``check_nans=True`` raises ``NonFiniteError`` at the first op that produces a NaN or an inf,
    naming its line, its derivative rule and its operands (``.source(*args)`` shows the checks).
    """
    return Compiled(
        fn,
        "grad",
        argnums,
        backend=backend,
        checkpoint=checkpoint,
        check_nans=check_nans,
        optimize=optimize,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        has_aux=has_aux,
    )


@checked_options
def value_and_grad(
    fn: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    has_aux: bool = False,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    backend: str = "numpy",
    checkpoint: Any = "all",
    check_nans: bool = False,
    optimize: bool = True,
) -> Compiled:
    """Like ``grad``, but the call returns ``(value, gradients)`` from one pass; with
    ``has_aux=True``, ``((value, aux), gradients)``."""
    return Compiled(
        fn,
        "value_and_grad",
        argnums,
        backend=backend,
        checkpoint=checkpoint,
        check_nans=check_nans,
        optimize=optimize,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        has_aux=has_aux,
    )


@checked_options
def jit(
    fn: Callable[..., Any],
    backend: str = "numpy",
    optimize: bool = True,
    check_nans: bool = False,
    *,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
) -> Compiled:
    """``fn`` traced and compiled (forward only); outputs keep their pytree structure. ``check_nans``,
    ``static_argnums`` and ``static_argnames`` as for ``grad``.

    >>> import numpy as np, chainrule as cr
    >>> power = cr.jit(lambda x, n: x**n if n > 1 else x, static_argnames="n")
    >>> power(np.array([2.0]), 3)
    array([8.])
    """
    return Compiled(
        fn,
        "jit",
        0,
        backend=backend,
        optimize=optimize,
        check_nans=check_nans,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
    )


def trace(fn: Callable[..., Any], *example_args: Any) -> Graph:
    """The graph of ``fn`` traced on ``example_args``; ``print`` it for the text dump. Python
    numbers among them are inputs, as under ``jit``."""
    spec, leaves = describe_args(fn, example_args, ())
    graph, _ = trace_graph(fn, spec, leaves)
    return graph


__all__ = ["Compiled", "grad", "jit", "trace", "value_and_grad"]
