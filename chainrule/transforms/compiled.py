"""Compiled functions (``Compiled``: traced, compiled and cached per signature) and the
transformations built on them directly: grad, value_and_grad, jit, trace."""

from __future__ import annotations

import functools
import gc
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from chainrule.backends.nan_check import checked_llvm, compile_checked, probed
from chainrule.backends.numpy import NumpyKernel, compile_graph
from chainrule.compiler import pipeline
from chainrule.compiler.checkpoint import validate_policy
from chainrule.compiler.cost import CostReport, cost_report
from chainrule.compiler.memory_report import MemoryReport, memory_report
from chainrule.errors import ArgumentError, OutputError, UnsupportedError
from chainrule.frontends.pytree import TreeDef, unflatten
from chainrule.frontends.trace import ArgsSpec, LeafSpec, call_key, describe_args, trace_graph
from chainrule.frontends.tracer import Tracer
from chainrule.ir import Graph, Value
from chainrule.transforms.options import checked_options
from chainrule.transforms.portable import PER_PROCESS_STATE, function_payload, rebuild

if TYPE_CHECKING:
    from chainrule.backends.llvm.kernel import LlvmKernel

_BACKENDS = ("numpy", "llvm")

# What a backend compiles a graph to: ``fn(*flat_inputs) -> tuple of outputs``, and its source.
Kernel = Union[NumpyKernel, "LlvmKernel"]
# Rebuilds one pytree (an output, a gradient) from its flat leaves.
TreeBuilder = Callable[[Sequence[Any]], Any]
# Makes a kernel output look like the input leaf it is the gradient of (a float, a NumPy scalar).
GradientConverter = Callable[[Any], Any]


def compile_checked_kernel(
    compilation: pipeline.Compilation, name: str, backend: str = "numpy", optimize: bool = True
) -> Kernel:
    """The kernel ``check_nans=True`` runs: the NumPy checked kernel, or on llvm the fast kernel of the
    checkpointed graph with a probe output (``nan_check.probed``) that reruns the checked one when a
    value was not finite."""
    checked = compile_checked(compilation.final, name)
    if backend != "llvm":
        return checked
    fast = compile_kernel(pipeline.finish(probed(compilation.graphs["checkpointed"]), optimize), name, backend)
    return checked_llvm(fast, checked)


def compile_kernel(graph: Graph, name: str, backend: str = "numpy") -> Kernel:
    """``graph`` compiled by ``backend``: a kernel whose ``fn`` takes the graph's inputs as arrays."""
    if backend == "llvm":
        from chainrule.backends.llvm.kernel import compile_graph as compile_llvm  # imports llvmlite

        return compile_llvm(graph, name)
    return compile_graph(graph, name)


def argnum_tuple(argnums: int | Sequence[int]) -> tuple[int, ...]:
    """``argnums`` (an int or a sequence of ints) as a tuple, or an ArgumentError saying what it was."""
    if isinstance(argnums, int) and not isinstance(argnums, bool):
        return (argnums,)
    if not isinstance(argnums, (tuple, list)) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in argnums
    ):
        raise ArgumentError(f"argnums must be an int or a tuple of ints, got {argnums!r}")
    return tuple(argnums)


class Specialization:
    """One compiled signature: the stages' graphs, the kernel, how to rebuild outputs.

    ``traced_leaves`` are the positions, among the flat leaves of the arguments,
    of the kernel's inputs; ``gradient_trees`` holds, for each differentiated
    argument in positional order, its leaf count, a function rebuilding its
    structure, and one converter per leaf (None where the kernel's output
    already has the input's type). Both are worked out once here, so a call
    does no more than index, call and rebuild.
    """

    def __init__(
        self,
        compilation: pipeline.Compilation,
        kernel: Kernel,
        out_treedef: TreeDef,
        spec: ArgsSpec,
        differentiated: tuple[int, ...],
    ):
        self.compilation = compilation
        self.kernel = kernel
        self.out_treedef = out_treedef
        self.spec = spec
        self.build_outputs = _builder(out_treedef)
        self.traced_leaves = tuple(i for i, s in enumerate(spec.leaves) if s.traced)
        # per differentiated argument: (leaf count, rebuild, converters or None)
        self.gradient_trees: list[tuple[int, TreeBuilder, tuple[GradientConverter | None, ...] | None]] = []
        start = 0
        for position, treedef in enumerate(spec.treedefs):
            count = treedef.num_leaves
            if position in differentiated:
                converters = tuple(_gradient_converter(s) for s in spec.leaves[start : start + count])
                self.gradient_trees.append((count, _builder(treedef), converters if any(converters) else None))
            start += count
        # The kernel returns gradients in argument order; argnums=(1, 0) wants them in its own order.
        in_argument_order = sorted(set(differentiated))
        self.gradient_order = tuple(in_argument_order.index(p) for p in differentiated)


SpecializationCache = dict[ArgsSpec, "Specialization"]
KeyCache = dict[tuple[Any, ...], tuple["Specialization", tuple[int, ...] | None, tuple[int, ...]]]

# function -> {options: its caches}; weak, so a function's kernels go when it does
_SHARED: weakref.WeakKeyDictionary[Callable[..., Any], dict[tuple[Any, ...], tuple[SpecializationCache, KeyCache]]] = (
    weakref.WeakKeyDictionary()
)


def _shared_caches(fn: Callable[..., Any], options: tuple[Any, ...]) -> tuple[SpecializationCache, KeyCache]:
    """The specialization caches of ``fn`` under ``options``, shared with earlier Compileds of it."""
    try:
        per_function = _SHARED.setdefault(fn, {})
        return per_function.setdefault(options, ({}, {}))
    except TypeError:  # fn cannot be weakly referenced, or an option (a checkpoint policy) is unhashable
        return {}, {}


class Compiled:
    """A function compiled by chainrule; call it like the original.

    It specializes on the shapes, dtypes and pytree structure of its arguments
    (and on the values of non-array arguments) and caches each specialization.
    ``.ir(*args)``, ``.graph(*args)`` and ``.source(*args)`` show what it runs.
    """

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
    ):
        if not callable(fn):
            raise ArgumentError(f"{transform} needs a function, got {type(fn).__name__}")
        if backend not in _BACKENDS:
            raise UnsupportedError(f"backend {backend!r} is not available; this build has {', '.join(_BACKENDS)}")
        validate_policy(checkpoint)
        self.transform = transform
        self.argnums = argnums
        self._argnum_tuple = argnum_tuple(argnums)
        self.backend = backend
        self.checkpoint = checkpoint
        self.check_nans = check_nans
        self.optimize = optimize
        self._cache_options = (transform, self._argnum_tuple, backend, checkpoint, check_nans, optimize)
        # updated=(): wrapping another Compiled must not copy its __dict__ (cache, transform) over ours
        functools.update_wrapper(self, fn, updated=())
        self.attach(fn)

    def attach(self, fn: Callable[..., Any]) -> None:
        """Make ``fn`` the compiled function, with this process's caches of it (also on unpickling)."""
        self.fn = self.__wrapped__ = fn
        # ArgsSpec -> its specialization; call_key -> (the same specialization, which leaves are its
        # inputs, which of those need np.asarray). Shared by every Compiled of this function with these
        # options, as jax.jit shares its cache: cr.grad(f) made again in a loop compiles nothing.
        self._cache, self._by_key = _shared_caches(fn, self._cache_options)
        self._positions: dict[int, tuple[int, ...]] = {}  # argument count -> differentiated positions
        # (argument classes, call) for the last signature of traced scalars only (np.float64(4.2), a
        # differentiated float): their classes fix the specialization, so such a call skips call_key
        self._scalar_call: tuple[tuple[type, ...], Callable[..., Any]] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the function (by reference, or by value for a lambda) and the options, never a
        kernel: the receiving process compiles once (``chainrule.transforms.portable``)."""
        state = {key: value for key, value in self.__dict__.items() if key not in PER_PROCESS_STATE}
        return rebuild, (type(self), function_payload(self.fn), state)

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

    def _differentiated(self, count: int) -> tuple[int, ...]:
        """The differentiated argument positions for a call with ``count`` arguments."""
        positions = self._positions.get(count)
        if positions is None:
            if self._differentiates:
                for argnum in self._argnum_tuple:
                    if not -count <= argnum < count:
                        raise ArgumentError(
                            f"argnums={self.argnums!r} but {self._function_name} was called with {count} arguments"
                        )
            positions = tuple(a % count for a in self._argnum_tuple) if self._differentiates else ()
            self._positions[count] = positions
        return positions

    def _specialize(self, args: tuple[Any, ...]) -> tuple[Specialization, list[Any]]:
        differentiated = self._differentiated(len(args))
        spec, leaves = describe_args(self.fn, args, differentiated)
        entry = self._cache.get(spec)
        if entry is None:
            entry = self._compile(spec, leaves, differentiated)
            self._cache[spec] = entry  # only reached when compiling succeeded
        return entry, leaves

    def _compile(self, spec: ArgsSpec, leaves: list[Any], differentiated: tuple[int, ...]) -> Specialization:
        # Compiling builds millions of small objects that live as long as the stage graphs; Python's
        # cycle collector would rescan them all again and again (~30% of a 100,000-node compile).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._compile_now(spec, leaves, differentiated)
        finally:
            if collecting:
                gc.enable()

    def _compile_now(self, spec: ArgsSpec, leaves: list[Any], differentiated: tuple[int, ...]) -> Specialization:
        traced, out_treedef = self.build_graph(spec, leaves)
        wrt: list[int] | None = None
        if self._differentiates:
            check_scalar_output(traced)
            traced_positions = [i for i, s in enumerate(spec.leaves) if s.traced]
            wrt = [
                traced_positions.index(i)
                for i, owner in enumerate(spec.arg_of_leaf)
                if owner in differentiated and spec.leaves[i].traced
            ]
        compilation = pipeline.run(traced, wrt, optimize=self.optimize, checkpoint_policy=self.checkpoint)
        name = f"{traced.name}_{self.transform}"
        kernel: Kernel
        if self.check_nans:
            kernel = compile_checked_kernel(compilation, name, self.backend, self.optimize)
        else:
            kernel = compile_kernel(compilation.final, name, self.backend)
        return Specialization(compilation, kernel, out_treedef, spec, differentiated)

    def build_graph(self, spec: ArgsSpec, leaves: list[Any]) -> tuple[Graph, TreeDef]:
        """The graph compiled for arguments described by ``spec``, and its output structure: ``fn``
        traced (``cr.vmap`` traces one example and vectorizes)."""
        return trace_graph(self.fn, spec, leaves)

    # ---- calling ----------------------------------------------------------------------------

    def __call__(self, *args: Any) -> Any:
        scalar_call = self._scalar_call
        if scalar_call is not None and scalar_call[0] == tuple(map(type, args)):
            return scalar_call[1](*args)
        # The fast path: a cheap key of the arguments (structure, shapes, dtypes, static values)
        # finds the specialization without building an ArgsSpec; a first call, a traced
        # argument or an unhashable static value takes _specialize's path.
        found = call_key(args, self._differentiated(len(args)))
        if found is not None:
            key, leaves = found
            try:
                hit = self._by_key.get(key)
            except TypeError:  # an unhashable static value: describe_args says what is wrong
                hit, found = None, None
            if hit is not None:
                entry, picks, converts = hit
                inputs = leaves if picks is None else [leaves[i] for i in picks]
                for index in converts:
                    inputs[index] = np.asarray(inputs[index])
                return self._results(entry, entry.kernel.fn(*inputs))
        entry, leaves = self._specialize(args)
        traced_leaves = [leaves[i] for i in entry.traced_leaves]
        if found is not None:
            # The key fixes every leaf's class, so which inputs need np.asarray is known now.
            picks = None if entry.traced_leaves == tuple(range(len(leaves))) else entry.traced_leaves
            converts = tuple(i for i, leaf in enumerate(traced_leaves) if type(leaf) is not np.ndarray)
            self._by_key[found[0]] = (entry, picks, converts)
            if (
                picks is None
                and len(leaves) == len(args)
                and all(leaf is arg for leaf, arg in zip(leaves, args))  # no argument is a container
                and all(s.scalar or s.python_float for s in entry.spec.leaves)
            ):
                self._scalar_call = (tuple(map(type, args)), self._scalar_caller(entry))
        if any(isinstance(leaf, Tracer) for leaf in traced_leaves):
            outputs = _inline(entry.compilation.differentiable, traced_leaves)
        else:
            outputs = entry.kernel.fn(*[np.asarray(leaf) for leaf in traced_leaves])
        return self._results(entry, outputs)

    def _scalar_caller(self, entry: Specialization) -> Callable[..., Any]:
        """The call for arguments that are all traced scalars (see ``_scalar_call``)."""
        kernel_fn, results = entry.kernel.fn, self._results
        if not getattr(entry.kernel, "accepts_scalars", False):  # the llvm kernel reads scalars as they are
            return lambda *args: results(entry, kernel_fn(*[np.asarray(a) for a in args]))
        if self._differentiates and isinstance(self.argnums, int):
            ((count, _, converters),) = entry.gradient_trees  # one scalar's gradient: one output, converted
            position = entry.out_treedef.num_leaves
            convert = converters[0] if converters else None
            if count == 1 and convert is not None:
                if self.transform == "grad":
                    native = getattr(entry.kernel, "scalar_outputs", None)  # llvm: floats in and out, natively
                    call = native[position] if native is not None else lambda *args: kernel_fn(*args)[position]
                    return call if convert is float and native is not None else lambda *args: convert(call(*args))
                return lambda *args: (lambda outputs: (outputs[0], convert(outputs[position])))(kernel_fn(*args))
        return lambda *args: results(entry, kernel_fn(*args))

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
                leaves = [c(g) if c is not None else g for c, g in zip(converters, leaves)]
            per_arg.append(build(leaves))
        grads = per_arg[0] if isinstance(self.argnums, int) else tuple(per_arg[i] for i in entry.gradient_order)
        if self.transform == "grad":
            return grads
        return outputs[0], grads

    # ---- looking inside ---------------------------------------------------------------------

    def graph(self, *args: Any, stage: str = "scheduled") -> Graph:
        """The IR graph after ``stage`` (one of ``chainrule.compiler.pipeline.STAGES``)."""
        entry, _ = self._specialize(args)
        graphs = entry.compilation.graphs
        if stage not in graphs:
            raise ArgumentError(f"unknown stage {stage!r} for this function; stages: {', '.join(graphs)}")
        return graphs[stage]

    def ir(self, *args: Any, stage: str = "scheduled") -> str:
        """The IR text after ``stage``."""
        return str(self.graph(*args, stage=stage))

    def source(self, *args: Any) -> str:
        """The generated code that runs for these arguments: Python source (numpy backend) or the
        LLVM IR module before optimization (llvm backend)."""
        entry, _ = self._specialize(args)
        return entry.kernel.source

    def cost(self, *args: Any, stage: str = pipeline.STAGES[-1]) -> CostReport:
        """FLOPs and bytes moved by the graph after ``stage``, forward and backward apart
        (``report.backward_to_forward`` is about 2 for a network); ``print`` it for a table."""
        return cost_report(self.graph(*args, stage=stage))

    def memory(self, *args: Any) -> MemoryReport:
        """The estimated peak bytes of a call, the forward values the backward pass keeps (bytes and
        why) and recomputes (FLOPs) under this function's ``checkpoint`` policy; ``print`` it."""
        if not self._differentiates:
            raise ArgumentError("memory() reports what a backward pass keeps: use it on cr.grad or cr.value_and_grad")
        report = memory_report(self.graph(*args, stage="checkpointed"), self.graph(*args, stage="scheduled"))
        lowered = getattr(self._specialize(args)[0].kernel, "lowered", None)
        if lowered is not None:
            report.arena_bytes = lowered.arena_bytes
        return report


def check_scalar_output(graph: Graph) -> None:
    """An OutputError unless ``graph`` has one output, a float scalar (what grad differentiates)."""
    if len(graph.outputs) != 1:
        raise OutputError(
            f"grad needs a function with one scalar output; {graph.name} returned "
            f"{len(graph.outputs)} values. Use cr.jit for several outputs, or sum them."
        )
    out_type = graph.type(graph.outputs[0])
    if out_type.size != 1:
        raise OutputError(
            f"grad needs a scalar output; {graph.name} returned {out_type}. Reduce it first "
            "(np.sum, np.mean), or use cr.vjp / cr.jacobian for vector outputs."
        )
    if not out_type.is_float:
        raise OutputError(f"grad needs a float output; {graph.name} returned {out_type}")


def _gradient_converter(spec: LeafSpec) -> GradientConverter | None:
    """What makes a kernel output look like the input leaf it is the gradient of, or None for nothing."""
    if spec.type is None:  # not traced: no gradient
        return None
    if spec.python_float:
        return float
    if spec.scalar:
        return np.dtype(spec.type.dtype).type
    if spec.type.ndim == 0:  # NumPy returns a 0-d result as a scalar; the input was a 0-d array
        dtype = spec.type.dtype
        return lambda gradient: np.asarray(gradient, dtype=dtype) if isinstance(gradient, np.generic) else gradient
    return None  # an array of ndim > 0 comes out of NumPy as an array of its type


def _builder(treedef: TreeDef) -> TreeBuilder:
    """``unflatten`` for one structure, with the common flat ones (an array, a dict or list of arrays) direct."""
    if treedef.kind == "leaf":
        return lambda leaves: leaves[0]
    if all(child.kind == "leaf" for child in treedef.children):
        keys = treedef.keys
        flat_builders: dict[str, TreeBuilder] = {
            "dict": lambda leaves: dict(zip(keys, leaves)),
            "list": list,
            "tuple": tuple,
        }
        flat = flat_builders.get(treedef.kind)
        if flat is not None:
            return flat
    return lambda leaves: unflatten(treedef, list(leaves))


def _inline(graph: Graph, leaves: list[Any]) -> list[Tracer]:
    """Replay ``graph`` inside an enclosing trace (grad of grad, jit inside grad)."""
    tracer = next(leaf for leaf in leaves if isinstance(leaf, Tracer))
    outer_graph, context = tracer._value.graph, tracer._context
    mapping: dict[int, int] = {}
    for input_id, leaf in zip(graph.inputs, leaves):
        mapping[input_id] = leaf._value.id if isinstance(leaf, Tracer) else outer_graph.const(np.asarray(leaf))
    outer_graph.transplant(graph, (i for i in range(len(graph)) if graph[i].op != "input"), mapping)
    return [Tracer(Value(outer_graph, mapping[o]), context) for o in graph.outputs]


# ---- the public transformations -------------------------------------------------------------


@checked_options
def grad(
    fn: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
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

    ``argnums`` picks the argument(s) to differentiate (an int, or a tuple:
    then a tuple of gradients comes back). Arguments are pytrees of arrays;
    gradients have the same structure, shapes and dtypes. ``optimize=False`` skips the
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
        fn, "grad", argnums, backend=backend, checkpoint=checkpoint, check_nans=check_nans, optimize=optimize
    )


@checked_options
def value_and_grad(
    fn: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    backend: str = "numpy",
    checkpoint: Any = "all",
    check_nans: bool = False,
    optimize: bool = True,
) -> Compiled:
    """Like ``grad``, but the call returns ``(value, gradients)`` from one pass."""
    return Compiled(
        fn, "value_and_grad", argnums, backend=backend, checkpoint=checkpoint, check_nans=check_nans, optimize=optimize
    )


@checked_options
def jit(fn: Callable[..., Any], backend: str = "numpy", optimize: bool = True, check_nans: bool = False) -> Compiled:
    """``fn`` traced and compiled (forward only); outputs keep their pytree structure. ``check_nans``
    as for ``grad``."""
    return Compiled(fn, "jit", 0, backend=backend, optimize=optimize, check_nans=check_nans)


def trace(fn: Callable[..., Any], *example_args: Any) -> Graph:
    """The graph of ``fn`` traced on ``example_args``; ``print`` it for the text dump."""
    spec, leaves = describe_args(fn, example_args, ())
    graph, _ = trace_graph(fn, spec, leaves)
    return graph


__all__ = ["Compiled", "grad", "jit", "trace", "value_and_grad"]
