"""Functions with derivative rules of their own, with JAX's API: ``custom_vjp`` and ``custom_jvp``.

    @cr.custom_vjp
    def clip_gradient(x):
        return x

    def clip_fwd(x):
        return x, None                      # (output, residuals: any pytree)

    def clip_bwd(residuals, g):
        return (np.clip(g, -1.0, 1.0),)     # one cotangent per argument; None means zero

    clip_gradient.defvjp(clip_fwd, clip_bwd)

Called on traced values (inside ``grad``, ``jit``, a ``scan`` body, ...), the function and its
rules are traced, each once, into bodies of one ``custom_vjp`` / ``custom_jvp`` node
(``chainrule.ir.custom``): the rules are ops of the graph, never Python called back at run time,
so they run on the LLVM backend, show in ``.ir()`` and ``chainrule dump``, and can be
differentiated again. Called on plain arrays, the function just runs.

``nondiff_argnums`` name arguments that are not differentiated (Python callables, ints, flags):
they are passed first to the rules, as JAX does (``bwd(*nondiff, residuals, g)``,
``jvp(*nondiff, primals, tangents)``; ``fwd`` takes the arguments as the function does), and their
values are fixed when the function is traced.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError, Loc, ShapeError, TraceError
from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.frontends.source import current_location, user_frame
from chainrule.frontends.trace import argument_names
from chainrule.frontends.tracer import TraceContext, Tracer, record
from chainrule.ir import TensorType
from chainrule.ir.control import Body, rebuilt
from chainrule.transforms.control_flow import trace_body


def _name(fn: Callable[..., Any], of: Callable[..., Any] | None = None, role: str = "") -> str:
    """``fn``'s name; a lambda that is ``role`` of the function ``of`` is named ``of_role``."""
    name = getattr(fn, "__name__", repr(fn))
    if name == "<lambda>":
        return f"{_name(of)}_{role}" if of is not None else "fn"
    return name


def _defined_at(fn: Callable[..., Any]) -> Loc | None:
    """Where the user wrote ``fn`` (its ``def`` line), which errors about it name."""
    code = getattr(fn, "__code__", None)
    return Loc(code.co_filename, code.co_firstlineno, code.co_name) if code is not None else None


def _leaf_type(leaf: Any, what: str, loc: Loc | None) -> TensorType:
    if isinstance(leaf, Tracer):
        return leaf._value.type
    array = np.asarray(leaf)
    if array.dtype.kind not in "biuf":
        raise TraceError(f"a leaf of {what} is a {type(leaf).__name__}, not an array or a number", loc)
    return TensorType(array.shape, array.dtype.name)


def _exactly(leaf: Any, leaf_type: TensorType) -> Any:
    """``leaf`` as a value of ``leaf_type``'s dtype (a cast when it differs)."""
    if isinstance(leaf, Tracer):
        return leaf if leaf.dtype == np.dtype(leaf_type.dtype) else leaf.astype(leaf_type.dtype)
    return np.asarray(leaf, dtype=leaf_type.dtype)


class _Arguments:
    """One call's arguments: the differentiable ones flattened to leaves, the ``nondiff_argnums``
    ones kept as they are (the rules get them first)."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], nondiff_argnums: tuple[int, ...]):
        count = len(args)
        for argnum in nondiff_argnums:
            if not -count <= argnum < count:
                raise ArgumentError(
                    f"nondiff_argnums={nondiff_argnums} but {_name(fn)} was called with {count} arguments",
                    current_location(),
                )
        nondiff = sorted({a % count for a in nondiff_argnums})
        self.args = args
        self.positions = [i for i in range(count) if i not in nondiff]
        self.static = [args[i] for i in nondiff]
        self.diff = tuple(args[i] for i in self.positions)
        names = argument_names(fn, count)
        self.leaves: list[Any] = []
        self.names: list[str] = []
        self.arg_trees: list[TreeDef] = []
        for position in self.positions:
            leaves, paths, tree = flatten(args[position], names[position])
            self.leaves += leaves
            self.names += paths
            self.arg_trees.append(tree)
        self.tree = flatten(self.diff)[2]
        self.types = [_leaf_type(leaf, "the arguments", current_location()) for leaf in self.leaves]
        self.traced = any(isinstance(leaf, Tracer) for leaf in self.leaves)

    def full(self, leaves: Sequence[Any]) -> list[Any]:
        """The whole argument list with the differentiable arguments rebuilt from ``leaves``."""
        full = list(self.args)
        for position, value in zip(self.positions, unflatten(self.tree, list(leaves))):
            full[position] = value
        return full

    def primals(self, leaves: Sequence[Any]) -> tuple[Any, ...]:
        result: tuple[Any, ...] = unflatten(self.tree, list(leaves))
        return result

    def trace(self, fun: Callable[..., Any], outer: TraceContext, loc: Loc | None) -> Any:
        """``fun`` traced on these arguments' leaves: (its body, output structure, trace context)."""
        return trace_body(_name(fun), lambda *leaves: fun(*self.full(leaves)), self.types, outer, loc, self.names)

    def outer(self) -> TraceContext:
        contexts = [leaf._context for leaf in self.leaves if isinstance(leaf, Tracer)]
        return max(contexts, key=lambda c: c.serial)

    def operands(self) -> list[Any]:
        return [
            leaf if isinstance(leaf, Tracer) else np.asarray(leaf, t.dtype) for leaf, t in zip(self.leaves, self.types)
        ]


def _pair(result: Any, rule: Callable[..., Any], what: str) -> tuple[Any, Any]:
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        got = f"a {type(result).__name__}" + (f" of {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise ArgumentError(f"{_name(rule)} must return a pair {what}, got {got}", _defined_at(rule))
    return result[0], result[1]


def _matching_leaves(
    value: Any, tree: TreeDef, types: Sequence[TensorType], rule: Callable[..., Any], what: str
) -> list[Any]:
    """The leaves of ``value``, which must have ``tree``'s structure and ``types``' shapes (cast to
    their dtypes); an error naming ``rule`` otherwise."""
    leaves, paths, found = flatten(value, what)
    if found != tree:
        raise ArgumentError(f"{_name(rule)} returned {what} of structure {found}, expected {tree}", _defined_at(rule))
    for leaf, path, leaf_type in zip(leaves, paths, types):
        shape = tuple(np.shape(leaf)) if not isinstance(leaf, Tracer) else leaf.shape
        if shape != leaf_type.shape:
            raise ShapeError(
                f"{_name(rule)} returned {path} of shape {list(shape)}, expected {leaf_type} "
                "(the shape of the value it stands for)",
                _defined_at(rule),
            )
    return [_exactly(leaf, t) for leaf, t in zip(leaves, types)]


def _with_union(traced: Sequence[tuple[Body, int, TraceContext]]) -> tuple[list[Body], list[Tracer]]:
    """Bodies traced apart, each taking every value any of them closes over (in one order) after
    its ``leading`` own inputs; and those values."""
    union: dict[tuple[int, int], Tracer] = {}
    for _, _, context in traced:
        for value in context.captured:
            union.setdefault((id(value._value.graph), value._value.id), value)
    values = list(union.values())
    bodies = []
    for body, leading, context in traced:
        own = {(id(v._value.graph), v._value.id): leading + k for k, v in enumerate(context.captured)}
        if [id(v) for v in context.captured] == [id(v) for v in values]:
            bodies.append(body)
            continue
        layout = [*range(leading), *[own.get((id(v._value.graph), v._value.id), v._value.type) for v in values]]
        bodies.append(Body(rebuilt(body.graph, layout)))
    return bodies, values


def _results(node: Tracer, leaves: list[TensorType], tree: TreeDef) -> Any:
    """The function's result from a custom node's value (one leaf, or several packed)."""
    if len(leaves) == 1:
        return unflatten(tree, [node])
    parts, start = [], 0
    for leaf in leaves:
        part = node[start : start + leaf.size].reshape(leaf.shape)
        parts.append(part if part.dtype == np.dtype(leaf.dtype) else part.astype(leaf.dtype))
        start += leaf.size
    return unflatten(tree, parts)


class custom_vjp:
    """``jax.custom_vjp``: ``fun`` with a reverse-mode rule, set by ``defvjp(fwd, bwd)``.

    ``fwd(*args) -> (output, residuals)`` (residuals any pytree of arrays); ``bwd(residuals, g) ->``
    a tuple of one cotangent per argument (None: zero), shaped like the argument. The rules are
    traced into the graph. Forward mode (``cr.jvp``) of such a function raises, as in JAX.
    """

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Sequence[int] = ()):
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd: Callable[..., Any] | None = None
        self.bwd: Callable[..., Any] | None = None
        self._in_rules = 0  # > 0 while its rules are traced: a call from them is the function as written
        functools.update_wrapper(self, fun)

    def defvjp(self, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> None:
        """Set the rule: ``fwd`` computes the output and what ``bwd`` needs; ``bwd`` the cotangents."""
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args: Any) -> Any:
        if self.fwd is None or self.bwd is None:
            raise ArgumentError(
                f"{_name(self.fun)} is a cr.custom_vjp function without a rule: call "
                f"{_name(self.fun)}.defvjp(fwd, bwd) before calling it",
                _defined_at(self.fun),
            )
        arguments = _Arguments(self.fun, args, self.nondiff_argnums)
        if not arguments.traced or self._in_rules:  # outside any transformation, or fwd calling it
            return self.fun(*args)
        self._in_rules += 1
        try:
            return self._traced(arguments, self.fwd, self.bwd)
        finally:
            self._in_rules -= 1

    def _traced(self, arguments: _Arguments, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> Any:
        loc, outer, n_args = current_location(), arguments.outer(), len(arguments.types)
        primal, out_tree, primal_context = arguments.trace(self.fun, outer, loc)
        out_types = primal.output_types
        residual_tree: list[TreeDef] = []

        def forward(*leaves: Any) -> list[Any]:
            output, residuals = _pair(fwd(*arguments.full(leaves)), fwd, "(output, residuals)")
            output = _matching_leaves(output, out_tree, out_types, fwd, "the output")
            residual_leaves, _, tree = flatten(residuals, "residuals")
            residual_tree.append(tree)
            return [output, residual_leaves]

        fwd_body, _, fwd_context = trace_body(
            _name(fwd, self.fun, "fwd"), forward, arguments.types, outer, loc, arguments.names
        )
        residual_types = fwd_body.output_types[len(out_types) :]

        def backward(*leaves: Any) -> list[Any]:
            residuals = unflatten(residual_tree[0], list(leaves[: len(residual_types)]))
            cotangent = unflatten(out_tree, list(leaves[len(residual_types) :]))
            return self._cotangent_leaves(bwd(*arguments.static, residuals, cotangent), arguments, bwd)

        names = [f"r{i}" for i in range(len(residual_types))] + [f"g{i}" for i in range(len(out_types))]
        bwd_body, _, bwd_context = trace_body(
            _name(bwd, self.fun, "bwd"), backward, residual_types + out_types, outer, loc, names
        )
        bodies, closed_over = _with_union(
            [(primal, n_args, primal_context), (fwd_body, n_args, fwd_context), (bwd_body, len(names), bwd_context)]
        )
        attrs = {"primal": bodies[0], "fwd": bodies[1], "bwd": bodies[2], "n_args": n_args}
        node = record("custom_vjp", tuple(arguments.operands() + closed_over), attrs, user_frame())
        return _results(node, out_types, out_tree)

    def _cotangent_leaves(self, result: Any, arguments: _Arguments, bwd: Callable[..., Any]) -> list[Any]:
        """``bwd``'s result as one cotangent per argument leaf, of the leaf's type."""
        count = len(arguments.diff)
        if not isinstance(result, (tuple, list)):
            raise ArgumentError(
                f"{_name(bwd)} must return a tuple of cotangents, one per differentiable argument of "
                f"{_name(self.fun)} ({count}), got a {type(result).__name__}",
                _defined_at(bwd),
            )
        if len(result) != count:
            raise ArgumentError(
                f"{_name(bwd)} returned {len(result)} cotangents, but {_name(self.fun)} has {count} "
                "differentiable arguments (one cotangent each, None for zero)",
                _defined_at(bwd),
            )
        leaves, start = [], 0
        for cotangent, tree in zip(result, arguments.arg_trees):
            types = arguments.types[start : start + tree.num_leaves]
            start += tree.num_leaves
            if cotangent is None:
                leaves += [np.zeros(t.shape, t.dtype) for t in types]
                continue
            found = _matching_leaves(cotangent, tree, types, bwd, "a cotangent")
            leaves += [leaf if t.is_float else np.zeros(t.shape, t.dtype) for leaf, t in zip(found, types)]
        return leaves


class custom_jvp:
    """``jax.custom_jvp``: ``fun`` with a forward-mode rule, set by ``defjvp(jvp)`` (also usable as
    the decorator ``@f.defjvp``).

    ``jvp(primals, tangents) -> (primal_out, tangent_out)``, with ``primals`` and ``tangents`` the
    tuple of arguments and of their tangents; ``tangent_out`` must be linear in ``tangents``.
    Reverse mode uses the rule transposed, so ``grad``, ``hessian`` and forward mode all follow it.
    """

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Sequence[int] = ()):
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.jvp: Callable[..., Any] | None = None
        self._in_rules = 0  # > 0 while its rule is traced: a call from it is the function as written
        functools.update_wrapper(self, fun)

    def defjvp(self, jvp: Callable[..., Any]) -> Callable[..., Any]:
        """Set the rule; returns it, so ``@f.defjvp`` works as a decorator."""
        self.jvp = jvp
        return jvp

    def __call__(self, *args: Any) -> Any:
        if self.jvp is None:
            raise ArgumentError(
                f"{_name(self.fun)} is a cr.custom_jvp function without a rule: call "
                f"{_name(self.fun)}.defjvp(jvp) (or decorate the rule with @{_name(self.fun)}.defjvp)",
                _defined_at(self.fun),
            )
        arguments = _Arguments(self.fun, args, self.nondiff_argnums)
        if not arguments.traced or self._in_rules:  # outside any transformation, or its rule calling it
            return self.fun(*args)
        self._in_rules += 1
        try:
            return self._traced(arguments, self.jvp)
        finally:
            self._in_rules -= 1

    def _traced(self, arguments: _Arguments, jvp: Callable[..., Any]) -> Any:
        loc, outer, n_args = current_location(), arguments.outer(), len(arguments.types)
        primal, out_tree, primal_context = arguments.trace(self.fun, outer, loc)
        out_types = primal.output_types

        def rule(*leaves: Any) -> list[Any]:
            primals, tangents = arguments.primals(leaves[:n_args]), arguments.primals(leaves[n_args:])
            result = jvp(*arguments.static, primals, tangents)
            primal_out, tangent_out = _pair(result, jvp, "(primal_out, tangent_out)")
            primal_leaves = _matching_leaves(primal_out, out_tree, out_types, jvp, "primal_out")
            return [primal_leaves, _matching_leaves(tangent_out, out_tree, out_types, jvp, "tangent_out")]

        names = arguments.names + [f"t{name}" for name in arguments.names]
        rule_body, _, rule_context = trace_body(
            _name(jvp, self.fun, "jvp"), rule, arguments.types * 2, outer, loc, names
        )
        bodies, closed_over = _with_union([(primal, n_args, primal_context), (rule_body, 2 * n_args, rule_context)])
        attrs = {"primal": bodies[0], "rule": bodies[1], "n_args": n_args}
        node = record("custom_jvp", tuple(arguments.operands() + closed_over), attrs, user_frame())
        return _results(node, out_types, out_tree)


__all__ = ["custom_jvp", "custom_vjp"]
