"""User-defined derivative rules as IR: ``custom_vjp`` and ``custom_jvp`` (``cr.custom_vjp``, ``cr.custom_jvp``).

One node stands for one call of a function with a rule of its own. Its attributes hold graphs the
frontend traced (``Body``\\ s, as loops hold theirs), so the user's rules are ordinary ops of the
IR: they show in dumps, run on both backends and can be differentiated again.

``custom_vjp``: operands ``[argument leaves (n_args)..., closed-over values...]``; ``primal`` takes
the operands and returns the function's result leaves; ``fwd`` takes the operands and returns the
result leaves, then the residual leaves; ``bwd`` takes ``[residuals..., one cotangent per result
leaf..., closed-over values...]`` and returns one cotangent per argument leaf.

``custom_jvp``: the same operands and ``primal``; ``rule`` takes ``[argument leaves..., one tangent
per argument leaf..., closed-over values...]`` and returns the result leaves, then their tangents.

A node of one result leaf has that leaf's type; several are packed as loops pack theirs
(``control.pack``).

**A rule is consumed by the differentiation that uses it.** Reverse mode inlines ``fwd`` and
``bwd``; forward mode inlines ``rule``; then (``inline_consumed``, called at the end of
``reverse`` and ``forward``) the node itself becomes its ``primal`` ops, so an outer derivative
of its value is the derivative of the function as written, as in JAX, where an inner
differentiation turns the rules into ordinary operations of the outer trace (and so do the
custom nodes in the bodies of a loop or branch it differentiated: its derived bodies used their
rules, and forward over reverse then differentiates the forward loop's ops as written). A node no
differentiation reached stays a node (an outer ``grad`` of an inner ``jit`` still uses the rule),
and the pipeline's ``inline_custom`` pass turns every remaining one into its ``primal`` ops before
the optimizing passes, so backends see a custom node only in a body run outside the pipeline (an
eager ``cr.scan``), where its lowering runs ``primal``.

Reverse mode of ``custom_jvp`` (the rule transposed) and the batching rules need passes, which
``ir`` may not import: ``compiler.custom_ad`` registers them in ``RULES``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from chainrule.errors import UnsupportedError
from chainrule.ir.builder import Value
from chainrule.ir.control import BODIES, Body, StepOf, numpy_step, pack, pack_arrays, packed_type, unpack
from chainrule.ir.graph import Graph, Node
from chainrule.ir.npfuncs import NAMESPACE
from chainrule.ir.ops import OPS, Attrs, Op, register
from chainrule.ir.rewrite import RuleFunction
from chainrule.ir.types import TensorType

CUSTOM_OPS = ("custom_vjp", "custom_jvp")
# Rules registered by chainrule.compiler.custom_ad: "custom_jvp_vjp", "custom_vjp_batch", "custom_jvp_batch"
RULES: dict[str, Callable[..., Any]] = {}
# graph -> ids of its custom nodes a differentiation has used the rule of (see the module doc)
_CONSUMED: weakref.WeakKeyDictionary[Graph, set[int]] = weakref.WeakKeyDictionary()


# ---- results: one leaf as it is, several packed ---------------------------------------------------


def result_type(leaves: Sequence[TensorType]) -> TensorType:
    """The type of a node returning ``leaves``."""
    return leaves[0] if len(leaves) == 1 else packed_type(leaves)


def result_leaves(value: Value, leaves: Sequence[TensorType]) -> list[Value]:
    """The leaves a custom node's ``value`` holds."""
    return [value] if len(leaves) == 1 else unpack(value, leaves)


def as_result(values: Sequence[Value], dtype: str) -> Value:
    """``values`` as one node's result (the inverse of ``result_leaves``)."""
    return values[0] if len(values) == 1 else pack(values, dtype)


def inline(graph: Graph, body: Body, operands: Sequence[int]) -> list[int]:
    """``body``'s ops added to ``graph`` on ``operands`` (ids of ``graph``); the ids of its outputs.
    Copies go through ``Graph.add``, so inlining one body twice on the same operands adds nothing."""
    inner = body.graph
    mapping = dict(zip(inner.inputs, operands))
    graph.transplant(inner, [i for i in inner.live_nodes() if inner[i].op != "input"], mapping)
    return [mapping[o] for o in inner.outputs]


def closed_over_error(name: str, position: int, operands: Sequence[Value], n_args: int) -> UnsupportedError:
    return UnsupportedError(
        f"{name} reads a value of the enclosing function that is being differentiated (operand "
        f"{position - n_args} it closes over, {operands[position].type}); its rule gives no derivative "
        "for it: pass that value to the function as an argument"
    )


def _infer(types: list[TensorType], attrs: Attrs) -> TensorType:
    return result_type(attrs["primal"].output_types)


def _render(names: list[str], attrs: Attrs) -> str:
    return f"run_custom({attrs['primal'].key}, ({', '.join(names)}{',' if len(names) == 1 else ''}))"


def run_custom(key: int, operands: tuple, step_of: StepOf = numpy_step) -> Any:
    """A custom node's value: its ``primal`` body run on ``operands``."""
    body = BODIES[key]
    results = step_of(body)(*operands)
    if len(results) == 1:
        return results[0]
    return pack_arrays(results, packed_type(body.output_types).dtype)


def body_flops(body: Body) -> int:
    """The FLOPs of one run of ``body``."""
    graph = body.graph
    total = 0
    for node_id in graph.live_nodes():
        node = graph[node_id]
        total += OPS[node.op].flops([graph.type(a) for a in node.args], node.type, node.params)
    return total


def consume(graph: Graph, node_id: int) -> None:
    """Mark a custom node of ``graph`` as differentiated: ``inline_consumed`` makes it ordinary ops."""
    _CONSUMED.setdefault(graph, set()).add(node_id)


# ---- custom_vjp -----------------------------------------------------------------------------------


def _custom_vjp_rule(position: int) -> Callable[..., Value | None]:
    """The cotangent of operand ``position``: ``fwd`` inlined for the residuals, then ``bwd``."""

    def rule(g: Value, y: Value, *operands: Value, primal: Body, fwd: Body, bwd: Body, n_args: int) -> Value | None:
        if not operands[position].type.is_float:
            return None
        if position >= n_args:
            raise closed_over_error(primal.graph.name, position, operands, n_args)
        graph = g.graph
        consume(graph, y.id)
        ids = [o.id for o in operands]
        n_out = len(primal.output_types)
        residuals = inline(graph, fwd, ids)[n_out:]
        cotangents = [v.id for v in result_leaves(g, primal.output_types)]
        return Value(graph, inline(graph, bwd, residuals + cotangents + ids[n_args:])[position])

    return rule


def _custom_vjp_jvp(tangents: list[Value | None], y: Value, *operands: Value, primal: Body, **attrs: Any) -> Value:
    raise UnsupportedError(
        f"forward mode (cr.jvp, cr.jacobian(mode='fwd')) of {primal.graph.name}, a cr.custom_vjp function: "
        "its rule is a VJP, which forward mode cannot use (JAX raises too). Use reverse mode "
        "(cr.grad, cr.vjp, cr.hessian), or define the rule with cr.custom_jvp"
    )


def _delegated(name: str) -> Callable[..., Any]:
    def rule(*args: Any, **attrs: Any) -> Any:
        return RULES[name](*args, **attrs)

    return rule


def _custom_vjp_flops(ins: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    return body_flops(attrs["primal"])


register(
    Op(
        "custom_vjp",
        "control",
        None,
        _infer,
        _render,
        vjp=_custom_vjp_rule,
        jvp=_custom_vjp_jvp,
        flops=_custom_vjp_flops,
        batch=_delegated("custom_vjp_batch"),
    )
)


# ---- custom_jvp -----------------------------------------------------------------------------------


def _custom_jvp_jvp(
    tangents: list[Value | None], y: Value, *operands: Value, primal: Body, rule: Body, n_args: int
) -> Value:
    """The tangent of a custom_jvp node: the user's rule inlined on the operands and their tangents
    (a zero for an operand without one)."""
    for position in range(n_args, len(operands)):
        if tangents[position] is not None:
            raise closed_over_error(primal.graph.name, position, operands, n_args)
    graph = y.graph
    consume(graph, y.id)
    ids = [o.id for o in operands]
    tangent_ids = [t.id if t is not None else graph.zeros(o.type) for t, o in zip(tangents[:n_args], operands)]
    outputs = inline(graph, rule, ids[:n_args] + tangent_ids + ids[n_args:])
    n_out = len(primal.output_types)
    return as_result([Value(graph, i) for i in outputs[n_out:]], y.dtype)


def _custom_jvp_vjp(position: int) -> Callable[..., Value | None]:
    def rule(g: Value, y: Value, *operands: Value, **attrs: Any) -> Value | None:
        result: Value | None = RULES["custom_jvp_vjp"](position, g, y, *operands, **attrs)
        return result

    return rule


register(
    Op(
        "custom_jvp",
        "control",
        None,
        _infer,
        _render,
        vjp=_custom_jvp_vjp,
        jvp=_custom_jvp_jvp,
        flops=_custom_vjp_flops,
        batch=_delegated("custom_jvp_batch"),
    )
)
NAMESPACE["run_custom"] = run_custom


# ---- inlining -------------------------------------------------------------------------------------


def inline_consumed(graph: Graph, rewriter: RuleFunction | None = None, sources: Sequence[int] = ()) -> Graph:
    """``graph`` after a differentiation from the values ``sources``: each custom node whose rule it
    used (``consume``) replaced by its ``primal`` ops, and the custom nodes in the bodies of the
    loops and branches it differentiated too (their derived bodies used the rules), built under
    ``rewriter`` as the differentiation built its nodes; ``graph`` itself when there is none."""
    consumed = _CONSUMED.pop(graph, set())
    holders = _differentiated_holders(graph, sources)
    if not consumed and not holders:
        return graph
    return _rebuilt(graph, consumed.__contains__, holders.__contains__, rewriter)


def _differentiated_holders(graph: Graph, sources: Sequence[int]) -> set[int]:
    """The nodes holding bodies with custom nodes that depend differentiably on ``sources``."""
    names = _holder_ops()
    holders = {i for i, node in enumerate(graph.nodes) if node.op in names and _holds_custom_in(node.params)}
    if not holders:
        return holders
    active = bytearray(len(graph))
    for source in sources:
        active[source] = 1
    for node_id, node in enumerate(graph.nodes):
        if not active[node_id] and OPS[node.op].vjp is not None and any(active[a] for a in node.args):
            active[node_id] = 1
    return {i for i in holders if active[i]}


def inline_custom(graph: Graph, rewriter: RuleFunction | None = None) -> Graph:
    """``graph`` with every custom node replaced by its ``primal`` ops, also inside the bodies of
    loops and branches (the pipeline runs this once differentiation is done), the top level built
    under ``rewriter``; ``graph`` itself when it holds none."""
    if not _holds_custom(graph):
        return graph
    return _rebuilt(graph, lambda node_id: True, lambda node_id: True, rewriter)


def _holds_custom_in(params: dict[str, Any]) -> bool:
    return any(_holds_custom(body.graph) for body in _bodies(params))


def _holder_ops() -> frozenset[str]:
    """The ops that hold bodies, other than the custom ones: loops and branches."""
    return frozenset(name for name, op in OPS.items() if op.kind == "control" and name not in CUSTOM_OPS)


def _holds_custom(graph: Graph) -> bool:
    names = _holder_ops()
    pending = [graph]
    while pending:
        current = pending.pop()
        for node in current.nodes:
            if node.op in CUSTOM_OPS:
                return True
            if node.op in names:
                pending.extend(body.graph for body in _bodies(node.params))
    return False


def _bodies(params: dict[str, Any]) -> list[Body]:
    found = []
    for value in params.values():
        found += [item for item in (value if isinstance(value, tuple) else (value,)) if isinstance(item, Body)]
    return found


def _inlined_body(body: Body) -> Body:
    """``body`` without custom nodes (itself when it has none), made once per body."""
    if not _holds_custom(body.graph):
        return body
    inlined: Body = body.derived("custom inlined", lambda: Body(inline_custom(body.graph)))
    return inlined


def _inlined_params(params: dict[str, Any]) -> dict[str, Any]:
    """A control node's attributes with its bodies' custom nodes inlined."""
    changed: dict[str, Body | tuple[Body, ...]] = {}
    for key, value in params.items():
        if isinstance(value, Body):
            changed[key] = _inlined_body(value)
        elif isinstance(value, tuple) and value and all(isinstance(item, Body) for item in value):
            changed[key] = tuple(_inlined_body(item) for item in value)
    return {**params, **changed}


def _rebuilt(
    graph: Graph, replace: Callable[[int], bool], deep: Callable[[int], bool], rewriter: RuleFunction | None = None
) -> Graph:
    """``graph`` copied node by node: the custom nodes ``replace`` picks become their primal ops, and
    the nodes ``deep`` picks have the custom nodes in their bodies inlined."""
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    with result.rewriting(rewriter):
        for node_id, node in enumerate(graph.nodes):
            if node.op != "input":
                mapping[node_id] = _copy(
                    result, node, [mapping[a] for a in node.args], mapping, replace(node_id), deep(node_id)
                )
    result.carry_name_hints(graph, mapping)
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    return result


def _copy(result: Graph, node: Node, args: list[int], mapping: dict[int, int], replace: bool, deep: bool) -> int:
    """``node`` added to ``result`` on ``args``: its primal ops when it is a custom node to replace."""
    if node.op in CUSTOM_OPS and replace:
        primal = _inlined_body(node.params["primal"]) if deep else node.params["primal"]
        with result.attribution(node.loc):
            outputs = [Value(result, i) for i in inline(result, primal, args)]
            return as_result(outputs, node.type.dtype).id
    params = _inlined_params(node.params) if deep and node.op not in CUSTOM_OPS else node.params
    origin = mapping.get(node.origin) if node.origin is not None else None
    if node.recomputed:
        return result.add_recomputed(node.op, args, params, loc=node.loc, name=node.name, origin=origin)
    return result.add(node.op, args, params, loc=node.loc, name=node.name, origin=origin)


__all__ = [
    "CUSTOM_OPS",
    "RULES",
    "as_result",
    "body_flops",
    "closed_over_error",
    "consume",
    "inline",
    "inline_consumed",
    "inline_custom",
    "result_leaves",
    "result_type",
    "run_custom",
]
