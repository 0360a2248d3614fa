"""Structured control flow with JAX's signatures: ``scan``, ``fori_loop``, ``while_loop``, ``cond``,
``switch`` (``jax.lax``'s, with its pytree semantics).

A Python loop in a traced function is unrolled: 1,000 steps are 1,000 copies of the body. These keep
the loop: the body is traced once, with the types of one step, into a subgraph that one ``loop``
node runs (``chainrule.ir.control``), so compiling takes the same time for ten steps or a million.
Values of the enclosing function that the body reads become operands of the loop, so gradients
reach them. Called on concrete arrays outside any trace, they run at once and return arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError, Loc, TraceError
from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.frontends.source import current_location, user_frame
from chainrule.frontends.tracer import TraceContext, Tracer, record
from chainrule.ir import Graph, TensorType, Value
from chainrule.ir.control import STEP_INDEX, Body, loop_leaves, rebuilt, run_loop, run_while
from chainrule.ir.reversal import checkpoint_needed, checkpoint_spec


def scan(
    f: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any = None,
    length: int | None = None,
    reverse: bool = False,
    *,
    checkpoint: str | int | None = None,
    snapshots: int | None = None,
) -> tuple[Any, Any]:
    """``jax.lax.scan``: ``carry, y = f(carry, x)`` for each ``x`` along the leading axis of ``xs``;
    returns the final carry and the ``y``\\ s stacked. ``xs`` may be None with ``length`` given.

    Reverse mode keeps the carry of every step, unless ``checkpoint`` says otherwise: ``"sqrt"``
    (Chen's segments: about 2√n carries, one extra sweep), ``"optimal"`` (Revolve with the fewest
    snapshots that reverse in about one extra sweep), a budget in bytes (Revolve with as many
    snapshots as fit), or ``snapshots=n`` (Revolve with n). The backward pass then holds at most
    that many carries, the initial one included, and computes the others again from them::

        carry, ys = cr.scan(step, h0, xs, checkpoint=100_000)   # snapshots within 100 kB
    """
    loc = current_location()
    spec = checkpoint_spec(checkpoint, snapshots)
    x_leaves, x_paths, x_tree = flatten(xs, "x")
    x_types = [_leaf_type(leaf, "xs", loc) for leaf in x_leaves]
    steps = _scan_length(x_types, length, loc)

    def step(t: Tracer, carry: Any, x_args: list[Any]) -> tuple[Any, Any]:
        result = f(carry, unflatten(x_tree, x_args))
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TraceError(f"scan's function must return a pair (carry, y), got a {type(result).__name__}", loc)
        return result[0], result[1]

    return _loop(
        step,
        init,
        x_leaves,
        x_paths,
        steps,
        reverse,
        loc,
        getattr(f, "__name__", "scan"),
        spec,
    )


def fori_loop(
    lower: int,
    upper: int,
    body_fun: Callable[[Any, Any], Any],
    init_val: Any,
    *,
    checkpoint: str | int | None = None,
    snapshots: int | None = None,
) -> Any:
    """``jax.lax.fori_loop``: ``val = body_fun(i, val)`` for ``i`` in ``range(lower, upper)``.

    Python-int bounds make a loop of ``upper - lower`` steps that reverse mode differentiates
    (``checkpoint`` and ``snapshots`` as for ``scan``); traced bounds make a ``while_loop``."""
    loc = current_location()
    spec = checkpoint_spec(checkpoint, snapshots)
    if isinstance(lower, Tracer) or isinstance(upper, Tracer):
        if spec is not None:
            raise ArgumentError("checkpoint= needs a fori_loop with int bounds (traced ones make a while_loop)", loc)
        counted = while_loop(
            lambda state: state[0] < upper,
            lambda state: (state[0] + 1, body_fun(state[0], state[1])),
            (lower if isinstance(lower, Tracer) else np.int64(lower), init_val),
        )
        return counted[1]
    lower, upper = int(lower), int(upper)

    def step(t: Any, carry: Any, x_args: list[Any]) -> tuple[Any, None]:
        return body_fun(t + lower if lower else t, carry), None

    name = getattr(body_fun, "__name__", "body")
    carry, _ = _loop(step, init_val, [], [], max(upper - lower, 0), False, loc, name, spec)
    return carry


# ---- tracing a body ---------------------------------------------------------------------------------


def _leaf_type(leaf: Any, what: str, loc: Loc | None) -> TensorType:
    """The type of one leaf of a loop's carry or inputs (a Python float is float64, as in NumPy)."""
    if isinstance(leaf, Tracer):
        return leaf._value.type
    array = np.asarray(leaf)
    if array.dtype.kind not in "biuf":
        raise TraceError(f"a leaf of {what} is a {type(leaf).__name__}, not an array or a number", loc)
    return TensorType(array.shape, array.dtype.name)


def _scan_length(x_types: list[TensorType], length: int | None, loc: Loc | None) -> int:
    if any(t.ndim == 0 for t in x_types):
        raise TraceError("scan's xs must be arrays with a leading axis to scan over; a leaf is a scalar", loc)
    lengths = {t.shape[0] for t in x_types}
    if length is not None:
        lengths.add(int(length))
    if len(lengths) != 1:
        if not lengths:
            raise TraceError("scan needs xs or a length", loc)
        raise TraceError(f"scan got leading axes of different lengths {sorted(lengths)} (xs and length)", loc)
    return lengths.pop()


def _outer_context(leaves: Sequence[Any]) -> TraceContext | None:
    """The innermost trace the operands belong to, if any."""
    contexts = [leaf._context for leaf in leaves if isinstance(leaf, Tracer)]
    return max(contexts, key=lambda c: c.serial) if contexts else None


def trace_body(
    name: str,
    fn: Callable[..., Any],
    arg_types: Sequence[TensorType],
    outer: TraceContext | None,
    loc: Loc | None,
    names: Sequence[str] = (),
) -> tuple[Body, TreeDef, TraceContext]:
    """Trace ``fn`` on stand-ins of ``arg_types`` into a body graph; the body, its outputs'
    structure and the trace (whose ``captured`` values became the inputs after ``arg_types``)."""
    graph = Graph(name)
    names = list(names) + [f"a{i}" for i in range(len(names), len(arg_types))]
    context = TraceContext(graph, nested=True, parent=outer)
    try:
        stand_ins = [Tracer(Value(graph, graph.add_input(t, name)), context) for t, name in zip(arg_types, names)]
        result = fn(*stand_ins)
        out_leaves, _, out_tree = flatten(result, "out")
        outputs = []
        for leaf in out_leaves:
            if isinstance(leaf, Tracer):
                outputs.append(leaf._value.id if leaf._context is context else context.capture(leaf, loc))
            else:
                outputs.append(graph.const(np.asarray(leaf, dtype=_leaf_type(leaf, "a result", loc).dtype)))
    finally:
        context.close()
    graph.set_outputs(outputs)
    return Body(graph), out_tree, context


def _operand(leaf: Any, leaf_type: TensorType) -> Any:
    """A loop operand: a traced value as it is, anything else as an array of its own type (not a weak
    Python number, whose dtype would follow the other operands')."""
    return leaf if isinstance(leaf, Tracer) else np.asarray(leaf, dtype=leaf_type.dtype)


def _loop(
    step: Callable[[Any, Any, list[Any]], tuple[Any, Any]],
    init: Any,
    x_leaves: list[Any],
    x_paths: list[str],
    length: int,
    reverse: bool,
    loc: Loc | None,
    name: str,
    checkpoint: tuple[Any, ...] | None = None,
) -> tuple[Any, Any]:
    carry_leaves, carry_paths, carry_tree = flatten(init, "carry")
    carry_types = [_leaf_type(leaf, "the carry", loc) for leaf in carry_leaves]
    checkpoint = _checked_checkpoint(checkpoint, length, carry_types, loc)
    x_types = [_leaf_type(leaf, "xs", loc) for leaf in x_leaves]
    step_types = [TensorType(t.shape[1:], t.dtype) for t in x_types]
    n_carry = len(carry_types)

    def body(t: Tracer, *args: Tracer) -> list[Any]:
        carry, y = step(t, unflatten(carry_tree, list(args[:n_carry])), list(args[n_carry:]))
        new_leaves, _, new_tree = flatten(carry, "carry")
        if new_tree != carry_tree:
            raise TraceError(f"the loop body returned a carry of structure {new_tree}; it came in as {carry_tree}", loc)
        return [new_leaves, y]

    outer = _outer_context(carry_leaves + x_leaves)
    arg_types = [STEP_INDEX, *carry_types, *step_types]
    body_graph, out_tree, context = trace_body(
        f"{name}_body", body, arg_types, outer, loc, ["t", *carry_paths, *x_paths]
    )
    _check_carry_types(body_graph, carry_types, loc)
    y_tree = out_tree.children[1]
    operands = [_operand(leaf, t) for leaf, t in zip(carry_leaves + x_leaves, carry_types + x_types)]
    operands += context.captured
    attrs = {
        "body": body_graph,
        "length": length,
        "reverse": bool(reverse),
        "tape": False,
        "n_carry": n_carry,
        "n_xs": len(x_leaves),
        "checkpoint": checkpoint,
    }
    leaves = loop_leaves([_leaf_type(o, "", loc) for o in operands], attrs)
    if context.parent is None:  # nothing traced: run it now
        packed = run_loop(body_graph.key, length, bool(reverse), False, n_carry, len(x_leaves), tuple(operands))
        results: list[Any] = _unpack_arrays(packed, leaves)
    else:
        results = _unpack_traced(record("loop", tuple(operands), attrs, user_frame()), leaves)
    return unflatten(carry_tree, results[:n_carry]), unflatten(y_tree, results[n_carry:])


def _checked_checkpoint(
    spec: tuple[Any, ...] | None, length: int, carry_types: list[TensorType], loc: Loc | None
) -> tuple[Any, ...] | None:
    """The loop's checkpoint spec, None when a tape of every carry fits it (no recomputation)."""
    carry_bytes = sum(t.nbytes for t in carry_types)
    if spec is not None and spec[0] == "bytes" and spec[1] < carry_bytes:
        raise ArgumentError(f"a checkpoint budget of {spec[1]} bytes holds no carry: one is {carry_bytes} bytes", loc)
    return spec if checkpoint_needed(spec, length, carry_types) else None


def _check_carry_types(body: Body, carry_types: list[TensorType], loc: Loc | None) -> None:
    returned = body.output_types[: len(carry_types)]
    for position, (came, left) in enumerate(zip(carry_types, returned)):
        if came != left:
            raise TraceError(
                f"leaf {position} of the loop's carry came in as {came} but the body returns {left}: "
                "a carry keeps its shape and dtype (start it as a float, 0.0, or cast in the body)",
                loc,
            )


def _unpack_arrays(packed: np.ndarray, leaves: list[TensorType]) -> list[np.ndarray]:
    results, start = [], 0
    for leaf in leaves:
        results.append(packed[start : start + leaf.size].reshape(leaf.shape).astype(leaf.dtype))
        start += leaf.size
    return results


def _unpack_traced(packed: Tracer, leaves: list[TensorType]) -> list[Tracer]:
    results, start = [], 0
    for leaf in leaves:
        part = packed[start : start + leaf.size].reshape(leaf.shape)
        results.append(part if part.dtype == np.dtype(leaf.dtype) else part.astype(leaf.dtype))
        start += leaf.size
    return results


# ---- branches and while loops -----------------------------------------------------------------------


def _with_inputs(body: Body, leading: int, captured: list[Tracer], union: list[Tracer]) -> Body:
    """``body`` (inputs: ``leading`` own ones, then ``captured``) taking every value of ``union``
    after its own inputs, so that bodies traced apart share one operand list."""
    if [id(t) for t in captured] == [id(t) for t in union]:
        return body
    own = {_key(t): leading + k for k, t in enumerate(captured)}
    layout = [*range(leading), *[own.get(_key(value), value._value.type) for value in union]]
    return Body(rebuilt(body.graph, layout))


def _key(value: Tracer) -> tuple[int, int]:
    return id(value._value.graph), value._value.id


def _union(contexts: Sequence[TraceContext]) -> list[Tracer]:
    union: dict[tuple[int, int], Tracer] = {}
    for context in contexts:
        for value in context.captured:
            union.setdefault(_key(value), value)
    return list(union.values())


def switch(index: Any, branches: Sequence[Callable[..., Any]], *operands: Any) -> Any:
    """``jax.lax.switch``: ``branches[index](*operands)``, ``index`` clamped to the branches. Every
    branch is traced; the one ``index`` picks runs, and the gradient flows through it alone."""
    loc = current_location()
    if not branches:
        raise TraceError("switch needs at least one branch", loc)
    if not isinstance(index, Tracer):
        return branches[min(max(int(index), 0), len(branches) - 1)](*operands)
    if index._value.type.ndim != 0 or index._value.type.dtype[0] not in "iub":
        raise TraceError(f"a switch index must be an integer scalar, got {index._value.type}", loc)
    leaves, paths, tree = flatten(operands, "operand")
    types = [_leaf_type(leaf, "the operands", loc) for leaf in leaves]
    outer = _outer_context([index, *leaves])
    traced = [
        trace_body(
            f"{getattr(b, '__name__', 'fn')}_branch{number}".replace("<lambda>", "fn"),
            lambda *args, b=b: b(*unflatten(tree, list(args))),
            types,
            outer,
            loc,
            paths,
        )
        for number, b in enumerate(branches)
    ]
    trees = {out_tree for _, out_tree, _ in traced}
    if len(trees) != 1:
        raise TraceError(f"the branches return different structures: {', '.join(map(str, trees))}", loc)
    union = _union([context for _, _, context in traced])
    bodies = tuple(_with_inputs(body, len(types), context.captured, union) for body, _, context in traced)
    for number, body in enumerate(bodies[1:], 1):
        if body.output_types != bodies[0].output_types:
            raise TraceError(
                f"branch {number} returns {[str(t) for t in body.output_types]} but branch 0 returns "
                f"{[str(t) for t in bodies[0].output_types]}: branches must agree in shapes and dtypes",
                loc,
            )
    values = [index, *[_operand(leaf, t) for leaf, t in zip(leaves, types)], *union]
    packed = record("switch", tuple(values), {"branches": bodies}, user_frame())
    return unflatten(trees.pop(), _unpack_traced(packed, bodies[0].output_types))


def cond(pred: Any, true_fun: Callable[..., Any], false_fun: Callable[..., Any], *operands: Any) -> Any:
    """``jax.lax.cond``: ``true_fun(*operands)`` if ``pred`` else ``false_fun(*operands)``; only the
    branch taken runs, and the gradient is the taken branch's."""
    if isinstance(pred, Tracer):
        if pred._value.type.ndim != 0:
            raise TraceError(f"cond needs a scalar predicate, got {pred._value.type}", current_location())
        pred = pred.astype(np.int64) if pred._value.type.dtype == "bool" else (pred != 0).astype(np.int64)
    elif np.ndim(pred) != 0:
        raise TraceError(f"cond needs a scalar predicate, got an array of shape {np.shape(pred)}", current_location())
    else:
        pred = int(bool(pred))
    return switch(pred, (false_fun, true_fun), *operands)


def while_loop(cond_fun: Callable[[Any], Any], body_fun: Callable[[Any], Any], init_val: Any) -> Any:
    """``jax.lax.while_loop``: ``val = body_fun(val)`` while ``cond_fun(val)``. Unlike JAX's, reverse
    mode works: the backward pass runs the steps again for the trip count the forward loop counted,
    keeping the carries, and then a backward loop over the body's VJP."""
    loc = current_location()
    leaves, paths, tree = flatten(init_val, "carry")
    types = [_leaf_type(leaf, "the carry", loc) for leaf in leaves]
    outer = _outer_context(leaves)

    def test(*args: Tracer) -> Any:
        return cond_fun(unflatten(tree, list(args)))

    def step(t: Tracer, *args: Tracer) -> Any:
        new_leaves, _, new_tree = flatten(body_fun(unflatten(tree, list(args))), "carry")
        if new_tree != tree:
            raise TraceError(f"the loop body returned a carry of structure {new_tree}; it came in as {tree}", loc)
        return new_leaves

    name = getattr(body_fun, "__name__", "body").replace("<lambda>", "fn")
    cond_body, _, cond_context = trace_body(f"{name}_cond", test, types, outer, loc, paths)
    step_body, _, step_context = trace_body(f"{name}_body", step, [STEP_INDEX, *types], outer, loc, ["t", *paths])
    if len(cond_body.output_types) != 1 or cond_body.output_types[0].ndim != 0:
        raise TraceError(f"while_loop's cond_fun must return one scalar, got {cond_body.output_types}", loc)
    _check_carry_types(step_body, types, loc)
    union = _union([cond_context, step_context])
    cond_body = _with_inputs(cond_body, len(types), cond_context.captured, union)
    step_body = _with_inputs(step_body, 1 + len(types), step_context.captured, union)
    operands = [*[_operand(leaf, t) for leaf, t in zip(leaves, types)], *union]
    result_types = [*types, STEP_INDEX]
    if cond_context.parent is None and step_context.parent is None:
        packed = run_while(cond_body.key, step_body.key, len(types), tuple(operands))
        results: list[Any] = _unpack_arrays(packed, result_types)
    else:
        attrs = {"cond": cond_body, "body": step_body, "n_carry": len(types)}
        results = _unpack_traced(record("while", tuple(operands), attrs, user_frame()), result_types)
    return unflatten(tree, results[: len(types)])


__all__ = ["cond", "fori_loop", "scan", "switch", "trace_body", "while_loop"]
