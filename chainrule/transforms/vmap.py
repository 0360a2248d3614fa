"""``vmap``: a function of one example, run on a batch of them as one vectorized program.

The function is traced once on one example's shapes, and the graph is vectorized
(``chainrule.compiler.batch``: every op's batching rule gives the op on a leading batch
axis), so a batch runs as one kernel call with one batched matmul per matmul, never a
Python loop over the examples. The mapped axes are moved to the front by the graph
itself and the results' batch axes to ``out_axes``, so the kernel takes the arguments
as they are and ``Compiled``'s per-signature cache, backends, ``.ir()`` and
``.source()`` work as for ``grad``. Inside an enclosing trace (``grad`` of ``vmap``,
``vmap`` of ``vmap``) the vectorized graph is replayed there like any ``Compiled``.

Axes follow JAX's prefix rule: ``in_axes`` is an int or None applied to every
argument, or a tuple with one entry per argument, each an int, None (the argument is
the same for every example) or a container matching the argument's structure down to
where an int or None covers the whole subtree. ``out_axes`` does the same for the
result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chainrule.compiler.batch import vectorize_graph
from chainrule.errors import ArgumentError, UnsupportedError
from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.frontends.source import location_of, user_frame
from chainrule.frontends.trace import ArgsSpec, LeafSpec, describe_args, trace_graph
from chainrule.frontends.tracer import Tracer
from chainrule.ir import Graph, TensorType
from chainrule.transforms.compiled import Compiled
from chainrule.transforms.options import checked_options

# An axis tree: an int, None, or a tuple/list/dict of axis trees (JAX's in_axes/out_axes).
AxisTree = Any


class NotTraceableError(UnsupportedError):
    """The vmapped function cannot be traced on one example (it runs kernels of its own)."""


class Vmapped(Compiled):
    """``fn`` mapped over an axis of its arguments (see ``vmap``); a ``Compiled`` whose graph is
    ``fn``'s graph on one example, vectorized."""

    def __init__(
        self,
        fn: Callable[..., Any],
        in_axes: AxisTree = 0,
        out_axes: AxisTree = 0,
        axis_size: int | None = None,
        *,
        backend: str = "numpy",
        optimize: bool = True,
        static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (),
    ):
        super().__init__(
            fn,
            "vmap",
            0,
            backend=backend,
            optimize=optimize,
            static_argnums=static_argnums,
            static_argnames=static_argnames,
        )
        if isinstance(in_axes, list):  # JAX reads a top-level list as the tuple of per-argument axes
            in_axes = tuple(in_axes)
        check_axis_tree(in_axes, "in_axes")
        check_axis_tree(out_axes, "out_axes")
        if axis_size is not None and (not isinstance(axis_size, (int, np.integer)) or axis_size < 0):
            raise ArgumentError(f"vmap's axis_size must be a non-negative int, got {axis_size!r}")
        self.in_axes, self.out_axes = in_axes, out_axes
        self.axis_size = None if axis_size is None else int(axis_size)
        # the caches are keyed on the axes too: vmap(f, in_axes=0) and vmap(f, in_axes=1) differ
        self._cache_options += (_frozen(in_axes), _frozen(out_axes), self.axis_size)
        self.attach(fn)
        self._looped: set[ArgsSpec] = set()  # signatures fn cannot be traced for: run per example

    def __repr__(self) -> str:
        return f"<chainrule vmap of {self._function_name!r} in_axes={self.in_axes!r} out_axes={self.out_axes!r}>"

    def __call__(self, *args: Any) -> Any:
        if self._looped and describe_args(self.fn, args, ())[0] in self._looped:
            return self._loop(args)
        try:
            return super().__call__(*args)
        except NotTraceableError:
            # fn cannot be traced on one example (an unvectorized cr.jacobian runs kernels of its own): one call per
            # example gives the same result, more slowly.
            spec = describe_args(self.fn, args, ())[0]
            if spec in self._looped:
                raise
            self._looped.add(spec)
            return self._loop(args)

    # ---- the vectorized graph -----------------------------------------------------------------

    def build_graph(
        self,
        spec: ArgsSpec,
        leaves: list[Any],
        differentiated: tuple[int, ...] = (),
        captured: list[Tracer] | None = None,
    ) -> tuple[Graph, TreeDef]:
        """``fn`` traced on one example, vectorized over the mapped arguments, with the batch axis
        taken from ``in_axes`` and put at ``out_axes``; values of an enclosing trace it reads are
        every example's (appended to ``captured``)."""
        axes = self._leaf_axes(spec)
        size = self._size(spec, axes)
        example_leaves: list[LeafSpec] = []
        for leaf_spec, axis in zip(spec.leaves, axes):
            if axis is not None:
                shape = leaf_spec.traced_type.shape
                leaf_spec = LeafSpec(True, TensorType(shape[:axis] + shape[axis + 1 :], leaf_spec.traced_type.dtype))
            example_leaves.append(leaf_spec)
        example = ArgsSpec(spec.treedefs, tuple(example_leaves), spec.paths, spec.arg_of_leaf)
        try:
            traced, out_treedef = trace_graph(self.fn, example, leaves, captured=captured)
        except UnsupportedError as error:
            raise NotTraceableError(error.bare_message, error.loc) from error
        traced_axes = [axis for leaf_spec, axis in zip(spec.leaves, axes) if leaf_spec.traced]
        batched = [position for position, axis in enumerate(traced_axes) if axis is not None]
        graph, outputs_batched = vectorize_graph(
            traced, batched, size, axes=[axis for axis in traced_axes if axis is not None]
        )
        self._place_outputs(graph, outputs_batched, out_treedef, size)
        return graph, out_treedef

    def _leaf_axes(self, spec: ArgsSpec) -> list[int | None]:
        """The mapped axis of each leaf of the arguments (non-negative), None where not mapped."""
        in_axes = self.in_axes
        if isinstance(in_axes, tuple) and len(in_axes) != len(spec.treedefs):
            raise ArgumentError(
                f"vmap's in_axes has {len(in_axes)} entries but {self._function_name} was called with "
                f"{len(spec.treedefs)} arguments",
                _call_site(),
            )
        per_argument = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(spec.treedefs)
        axes: list[int | None] = []
        for position, (axis_tree, treedef) in enumerate(zip(per_argument, spec.treedefs)):
            axes.extend(leaf_axes(axis_tree, treedef, f"in_axes[{position}]"))
        for index, (axis, leaf_spec, path) in enumerate(zip(axes, spec.leaves, spec.paths)):
            if axis is None:
                continue
            if not leaf_spec.traced:
                axes[index] = None  # a static value (declared, or a bool or str) is every example's
                continue
            if leaf_spec.scalar or leaf_spec.python_float or leaf_spec.python_int:
                raise ArgumentError(
                    f"vmap maps {path} over axis {axis}, but it is a Python or NumPy scalar, which has no axis; "
                    "give it in_axes=None to pass it to every example",
                    _call_site(),
                )
            shape = leaf_spec.traced_type.shape
            if not -len(shape) <= axis < len(shape):
                raise ArgumentError(
                    f"vmap maps {path} over axis {axis}, but it has shape {shape} ({len(shape)} axes)", _call_site()
                )
            axes[index] = axis % len(shape)
        return axes

    def _size(self, spec: ArgsSpec, axes: list[int | None]) -> int:
        """The batch size every mapped axis (and ``axis_size``) agrees on."""
        mapped = [
            (path, leaf_spec.traced_type.shape, axis)
            for leaf_spec, path, axis in zip(spec.leaves, spec.paths, axes)
            if axis is not None
        ]
        sizes = {shape[axis] for _, shape, axis in mapped}
        if self.axis_size is not None:
            sizes.add(self.axis_size)
        if len(sizes) > 1:
            described = "; ".join(f"{path} has shape {shape}, mapped on axis {axis}" for path, shape, axis in mapped)
            given = f"; axis_size={self.axis_size}" if self.axis_size is not None else ""
            raise ArgumentError(f"vmap got different sizes for the mapped axes: {described}{given}", _call_site())
        if not sizes:
            raise ArgumentError(
                f"vmap of {self._function_name}: no argument is mapped (every in_axes is None); "
                "give axis_size to say how many examples",
                _call_site(),
            )
        return sizes.pop()

    def _place_outputs(self, graph: Graph, outputs_batched: list[bool], out_treedef: TreeDef, size: int) -> None:
        """Move each output's batch axis (in front after vectorizing) to its ``out_axes`` place; an
        output with ``out_axes=None`` must not depend on the mapped arguments."""
        out_axes = leaf_axes(self.out_axes, out_treedef, "out_axes")
        outputs = []
        for out, is_batched, axis, name in zip(graph.outputs, outputs_batched, out_axes, graph.output_names):
            if axis is None:
                if is_batched:
                    raise ArgumentError(
                        f"vmap's out_axes is None for {name}, but it depends on the mapped arguments "
                        "(out_axes=None is for results that are the same for every example)",
                        _call_site(),
                    )
                outputs.append(out)
                continue
            shape = graph.type(out).shape
            if not is_batched:
                shape = (size,) + shape
                out = graph.add("broadcast_to", (out,), {"shape": shape})
            if not -len(shape) <= axis < len(shape):
                raise ArgumentError(
                    f"vmap's out_axes puts the batch axis of {name} at {axis}, but it has {len(shape)} axes "
                    f"(shape {shape[1:]} per example)",
                    _call_site(),
                )
            axis %= len(shape)
            if axis:
                order = tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, len(shape)))
                out = graph.add("transpose", (out,), {"axes": order})
            outputs.append(out)
        graph.set_outputs(outputs, graph.output_names)

    # ---- one call per example: for functions that cannot be traced on one --------------------

    def _loop(self, args: tuple[Any, ...]) -> Any:
        """``fn`` called on each example in turn, the results stacked along ``out_axes``."""
        spec, leaves = describe_args(self.fn, args, ())
        axes = self._leaf_axes(spec)
        size = self._size(spec, axes)
        results = []
        for example in range(size):
            picked = [leaf if axis is None else _take(leaf, example, axis) for leaf, axis in zip(leaves, axes)]
            example_args, start = [], 0
            for treedef in spec.treedefs:
                example_args.append(unflatten(treedef, picked[start : start + treedef.num_leaves]))
                start += treedef.num_leaves
            results.append(self.fn(*example_args))
        if not results:
            raise UnsupportedError(f"vmap of {self._function_name} over 0 examples needs a traceable function")
        first, _, out_treedef = flatten(results[0])
        per_output = list(zip(*(flatten(result)[0] for result in results))) if first else []
        stacked = []
        for values, axis in zip(per_output, leaf_axes(self.out_axes, out_treedef, "out_axes")):
            stacked.append(values[0] if axis is None else np.stack(values, axis=axis))
        return unflatten(out_treedef, stacked)


def _take(leaf: Any, example: int, axis: int) -> Any:
    """Example ``example`` of ``leaf`` along ``axis`` (a view for an array; a traced value is indexed)."""
    return leaf[(slice(None),) * axis + (example,)]


def _call_site() -> Any:
    """The user's line that called the vmapped function, for error messages."""
    return location_of(user_frame(2))


def check_axis_tree(axes: AxisTree, what: str) -> None:
    """An ArgumentError unless ``axes`` is an int, None, or a tuple/list/dict of such (nested)."""
    stack = [axes]
    while stack:
        node = stack.pop()
        if node is None or (isinstance(node, (int, np.integer)) and not isinstance(node, bool)):
            continue
        if isinstance(node, (tuple, list)):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        else:
            raise ArgumentError(
                f"vmap's {what} must be an int, None, or a tuple/list/dict of them; got {node!r} in {axes!r}"
            )


def leaf_axes(axes: AxisTree, treedef: TreeDef, where: str) -> list[int | None]:
    """The axis for each leaf of a pytree of structure ``treedef``, from ``axes``, a prefix of it:
    an int or None covers the whole subtree it stands at (JAX's rule)."""
    result: list[int | None] = []
    stack: list[tuple[AxisTree, TreeDef, str]] = [(axes, treedef, where)]
    while stack:
        axis_node, tree_node, path = stack.pop()
        if axis_node is None or isinstance(axis_node, (int, np.integer)):
            result.extend([None if axis_node is None else int(axis_node)] * tree_node.num_leaves)
            continue
        kinds = {"tuple": tuple, "list": list, "dict": dict}
        expected = kinds.get(tree_node.kind)
        if expected is None or not isinstance(axis_node, expected):
            raise ArgumentError(
                f"vmap's {path} is a {type(axis_node).__name__} but the value there is "
                f"{'a ' + tree_node.kind if tree_node.kind != 'leaf' else 'an array'} ({tree_node}); "
                "give an int or None, or a container of the value's structure"
            )
        if isinstance(axis_node, dict):
            if set(axis_node) != set(tree_node.keys):
                raise ArgumentError(
                    f"vmap's {path} has keys {sorted(map(str, axis_node))} but the value has {list(tree_node.keys)}"
                )
            children = [
                (axis_node[key], child, f"{path}[{key!r}]") for key, child in zip(tree_node.keys, tree_node.children)
            ]
        else:
            if len(axis_node) != len(tree_node.children):
                raise ArgumentError(
                    f"vmap's {path} has {len(axis_node)} entries but the value there has {len(tree_node.children)}"
                )
            children = [(a, child, f"{path}[{i}]") for i, (a, child) in enumerate(zip(axis_node, tree_node.children))]
        stack.extend(reversed(children))
    return result


def _frozen(axes: AxisTree) -> Any:
    """A hashable copy of an axis tree (dicts and lists become tuples, tagged so they stay distinct)."""
    if isinstance(axes, dict):
        return ("dict",) + tuple((key, _frozen(value)) for key, value in axes.items())
    if isinstance(axes, (tuple, list)):
        return (type(axes).__name__,) + tuple(_frozen(value) for value in axes)
    return axes


@checked_options
def vmap(
    fn: Callable[..., Any],
    in_axes: AxisTree = 0,
    out_axes: AxisTree = 0,
    axis_size: int | None = None,
    *,
    backend: str = "numpy",
    optimize: bool = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
) -> Vmapped:
    """``fn`` mapped over an axis of its arguments, as one vectorized program (JAX's vmap).

    >>> import numpy as np, chainrule as cr
    >>> loss = lambda w, x, y: (x @ w - y) ** 2
    >>> per_example = cr.vmap(cr.grad(loss), in_axes=(None, 0, 0))
    >>> per_example(np.array([1.0, 2.0]), np.eye(2), np.zeros(2))
    array([[2., 0.],
           [0., 4.]])

    ``in_axes`` says which axis of each argument is the batch axis: an int for every
    argument, or a tuple with one entry per argument, each an int (negative counts from
    the end), None (the argument is shared by every example) or a container of the
    argument's structure holding such entries. ``out_axes`` puts the batch axis of the
    results in the same way (None: a result that does not depend on the mapped arguments).
    ``axis_size`` gives the batch size when no argument is mapped. vmap composes with
    grad, jit, jvp, vjp, jacobian, hessian and itself in any order. ``static_argnums`` /
    ``static_argnames`` compile arguments in by value, as for ``jit``; they are never mapped.
    """
    return Vmapped(
        fn,
        in_axes,
        out_axes,
        axis_size,
        backend=backend,
        optimize=optimize,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
    )


__all__ = ["Vmapped", "vmap"]
