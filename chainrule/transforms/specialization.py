"""One compiled signature of a transformed function (``Specialization``), and what making and
calling one needs: compiling a graph with a backend, checking grad's output, rebuilding results
in the arguments' structure, replaying a graph inside an enclosing trace."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from chainrule.backends.nan_check import checked_llvm, compile_checked, probed
from chainrule.backends.numpy import NumpyKernel, compile_graph
from chainrule.compiler import pipeline
from chainrule.compiler.dce import without_value
from chainrule.errors import OutputError
from chainrule.frontends.pytree import TreeDef, unflatten
from chainrule.frontends.trace import ArgsSpec, LeafSpec
from chainrule.frontends.tracer import Tracer
from chainrule.ir import Graph, Value

if TYPE_CHECKING:
    from chainrule.backends.llvm.kernel import LlvmKernel

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


def collector_paused(make: Callable[[], Any]) -> Any:
    """``make()`` with Python's cycle collector off. Compiling builds millions of small objects that
    live as long as the stage graphs; the collector would rescan them all again and again (~30% of a
    100,000-node compile)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return make()
    finally:
        if collecting:
            gc.enable()


def make_kernel(
    compilation: pipeline.Compilation,
    name: str,
    backend: str,
    check_nans: bool,
    optimize: bool,
    value_unused: bool = False,
) -> Kernel:
    """The kernel a compiled function runs: of the final graph, or the ``check_nans`` one. With
    ``value_unused`` (grad without aux: the value, the first output, is never read), the kernel
    computes nothing only the value needs (the gradient of a linear function is a constant, and
    ``grad`` of it costs no forward pass), and returns None in its place; on LLVM, where
    elementwise work shares the gradient's loops, only when the value needs a call of its own (a
    factorization, a product: ``dce.without_value``), and 0 in its place."""
    if check_nans:
        return compile_checked_kernel(compilation, name, backend, optimize)
    final = compilation.final
    if value_unused and backend == "numpy":
        return compile_graph(final, name, [None, *final.outputs[1:]])
    if value_unused and backend == "llvm":
        final = without_value(final) or final
    return compile_kernel(final, name, backend)


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
        make_kernel: Callable[[], Kernel],
        out_treedef: TreeDef,
        spec: ArgsSpec,
        differentiated: tuple[int, ...],
        captured: tuple[Tracer, ...] = (),
        captured_at: int = 0,
    ):
        self.compilation = compilation
        # values of the trace that was running, read by the function: the compiled graph's inputs
        # from position captured_at on (after the arguments', before a seed's)
        self.captured = captured
        self.captured_at = captured_at
        self._make_kernel = make_kernel
        self.out_treedef = out_treedef
        self.spec = spec
        self.build_outputs = builder(out_treedef)
        self.traced_leaves = tuple(i for i, s in enumerate(spec.leaves) if s.traced)
        # per differentiated argument: (leaf count, rebuild, converters or None)
        self.gradient_trees: list[tuple[int, TreeBuilder, tuple[GradientConverter | None, ...] | None]] = []
        start = 0
        for position, treedef in enumerate(spec.treedefs):
            count = treedef.num_leaves
            if position in differentiated:
                converters = tuple(gradient_converter(s) for s in spec.leaves[start : start + count])
                self.gradient_trees.append((count, builder(treedef), converters if any(converters) else None))
            start += count
        # The kernel returns gradients in argument order; argnums=(1, 0) wants them in its own order.
        in_argument_order = sorted(set(differentiated))
        self.gradient_order = tuple(in_argument_order.index(p) for p in differentiated)

    @functools.cached_property
    def kernel(self) -> Kernel:
        """The compiled kernel, built when first asked for (an entry inlined into an enclosing trace
        never is); after that a plain attribute."""
        return collector_paused(self._make_kernel)

    def inline(self, traced_leaves: list[Any]) -> list[Tracer]:
        """The compiled graph replayed in the trace running now, on ``traced_leaves`` and the
        values of that trace the function read (``captured``)."""
        at = self.captured_at
        return inline(self.compilation.differentiable, traced_leaves[:at] + list(self.captured) + traced_leaves[at:])


def check_scalar_output(graph: Graph, value_outputs: int | None = None) -> None:
    """An OutputError unless ``graph`` has one output, a float scalar (what grad differentiates);
    with ``value_outputs`` (has_aux), only the first ``value_outputs`` outputs are the value."""
    count = len(graph.outputs) if value_outputs is None else value_outputs
    if count != 1:
        aux = " as the value of (value, aux)" if value_outputs is not None else ""
        raise OutputError(
            f"grad needs a function with one scalar output; {graph.name} returned {count} values{aux}. "
            "Use cr.jit for several outputs, or sum them."
        )
    out_type = graph.type(graph.outputs[0])
    if out_type.size != 1:
        raise OutputError(
            f"grad needs a scalar output; {graph.name} returned {out_type}. Reduce it first "
            "(np.sum, np.mean), or use cr.vjp / cr.jacobian for vector outputs."
        )
    if not out_type.is_float:
        raise OutputError(f"grad needs a float output; {graph.name} returned {out_type}")


def gradient_converter(spec: LeafSpec) -> GradientConverter | None:
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


def builder(treedef: TreeDef) -> TreeBuilder:
    """``unflatten`` for one structure, with the common flat ones (an array, a dict, list or dataclass of
    arrays) direct."""
    if treedef.kind == "leaf":
        return lambda leaves: leaves[0]
    if all(child.kind == "leaf" for child in treedef.children):
        keys, node_type, aux_data = treedef.keys, treedef.node_type, treedef.aux_data
        flat_builders: dict[str, TreeBuilder] = {
            "dict": lambda leaves: dict(zip(keys, leaves)),
            "list": list,
            "tuple": tuple,
        }
        if node_type is not None:  # a dataclass, NamedTuple or registered class of arrays
            flat_builders["node"] = lambda leaves: node_type.unflatten(aux_data, tuple(leaves))
        flat = flat_builders.get(treedef.kind)
        if flat is not None:
            return flat
    return lambda leaves: unflatten(treedef, list(leaves))


def inline(graph: Graph, leaves: list[Any]) -> list[Tracer]:
    """Replay ``graph`` inside an enclosing trace (grad of grad, jit inside grad), the innermost
    one its traced leaves come from: a leaf of a trace around that one is captured into it."""
    context = max((leaf._context for leaf in leaves if isinstance(leaf, Tracer)), key=lambda c: c.serial)
    outer_graph = context.graph
    mapping: dict[int, int] = {}
    for input_id, leaf in zip(graph.inputs, leaves):
        if isinstance(leaf, Tracer):
            mapping[input_id] = leaf._value.id if leaf._context is context else context.capture(leaf, None)
        else:
            mapping[input_id] = outer_graph.const(np.asarray(leaf))
    outer_graph.transplant(graph, (i for i in range(len(graph)) if graph[i].op != "input"), mapping)
    return [Tracer(Value(outer_graph, mapping[o]), context) for o in graph.outputs]
