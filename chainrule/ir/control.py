"""Structured control flow as IR: ``loop`` (scan, fori_loop) and ``switch`` (cond, switch).

A loop stays a loop: one node whose ``body`` attribute is a ``Body``, a ``Graph`` traced once
with the types of one step, however many steps run. The IR is one value per node, so a node of
several results (the final carry, the stacked per-step outputs) returns them *packed*: each result
flattened, cast to one common dtype and concatenated, in a fixed order. The frontend takes them
apart again with ``getitem``, ``reshape`` and ``cast`` (``unpack``), ordinary ops every pass and
backend knows, and derivative rules do the same on ``Value``\\ s.

``loop``: operands ``[carry..., xs..., consts...]`` (``n_carry`` carry leaves, ``n_xs`` stacked
per-step inputs of leading axis ``length``, then the values the body closes over). The body's
inputs are ``[t, carry..., x_t..., consts...]`` (``t`` the step index, int64) and its outputs
``[carry'..., y...]``. Steps run ``t = 0 .. length-1`` (``reverse``: down from ``length-1``). The
packed result holds the final carry, the stacked ``y`` (``ys[t]`` from step ``t``) and, when
``tape`` is set, the carry each step started from (``tape[t]``): what reverse mode reads. A loop
whose ``checkpoint`` is set (``ir.reversal.checkpoint_spec``: "sqrt", Revolve's snapshots, a byte
budget) is never taped: its backward pass is a ``loop_reversal`` node that computes the carries
again from the initial one (``ir/reversal.py``).

``switch``: operands ``[index, operands..., consts...]``; ``branches`` is a tuple of Bodies, each
with inputs ``[operands..., consts...]`` and outputs of one structure; ``index`` (clamped to the
branches, as ``jax.lax.switch`` does) picks the one that runs.

Derivative rules need reverse and forward mode of the body, which are passes (``compiler``, which
``ir`` may not import): ``compiler.control_ad`` registers them in ``RULES`` when it is imported.
The NumPy lowering runs the body's generated code; ``backends.numpy`` registers the compiler of
bodies with ``set_step_compiler`` (without one, the body is interpreted op by op).
"""

from __future__ import annotations

import functools
import itertools
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir.builder import F, Value
from chainrule.ir.graph import Graph
from chainrule.ir.npfuncs import NAMESPACE
from chainrule.ir.ops import OPS, Attrs, Op, register
from chainrule.ir.types import TensorType

STEP_INDEX = TensorType((), "int64")
_KEYS = itertools.count()
# Every live Body by key, as generated code names it (``run_loop(3, ...)``); weak: its nodes keep it.
BODIES: weakref.WeakValueDictionary[int, Body] = weakref.WeakValueDictionary()
# Derivative rules registered by chainrule.compiler.control_ad: "loop_vjp", "loop_jvp", ...
RULES: dict[str, Callable[..., Any]] = {}
# Compiles a body graph to a function of arrays returning a tuple (set by the NumPy backend).
_STEP_COMPILER: list[Callable[[Graph], Callable[..., tuple[Any, ...]]]] = []


@dataclass(frozen=True, eq=False)
class Body:
    """A subgraph an op runs (a loop's step, a branch). Compared by identity: hash-consing merges
    two loop nodes only when they run the very same body."""

    graph: Graph
    key: int = field(default_factory=lambda: next(_KEYS))

    def __post_init__(self) -> None:
        BODIES[self.key] = self

    def __str__(self) -> str:
        return f"{{{self.graph.name}}}"

    __repr__ = __str__

    @property
    def output_types(self) -> list[TensorType]:
        return [self.graph.type(o) for o in self.graph.outputs]

    @property
    def input_types(self) -> list[TensorType]:
        return [self.graph.type(i) for i in self.graph.inputs]

    def step(self) -> Callable[..., tuple[Any, ...]]:
        """The body as a function of arrays (compiled once, on first use)."""
        compiled = self.__dict__.get("_step")
        if compiled is None:
            compiled = _STEP_COMPILER[-1](self.graph) if _STEP_COMPILER else _interpreter(self.graph)
            object.__setattr__(self, "_step", compiled)
        return compiled

    def derived(self, kind: str, make: Callable[[], Any]) -> Any:
        """What a rule derives from this body (its VJP body, ...), made once per kind."""
        cache = self.__dict__.setdefault("_derived", {})
        if kind not in cache:
            cache[kind] = make()
        return cache[kind]


def set_step_compiler(compiler: Callable[[Graph], Callable[..., tuple[Any, ...]]]) -> None:
    """Use ``compiler`` to turn bodies into functions (the NumPy backend calls this on import)."""
    _STEP_COMPILER.append(compiler)


def _interpreter(graph: Graph) -> Callable[..., tuple[Any, ...]]:
    """``graph`` evaluated op by op through each op's NumPy lowering (no backend loaded)."""

    def run(*arrays: Any) -> tuple[Any, ...]:
        values: dict[int, Any] = dict(zip(graph.inputs, arrays))
        for node_id in graph.live_nodes():
            node = graph[node_id]
            if node.op != "input":
                constant = graph.const_value(node_id)
                args = [values[a] for a in node.args]
                values[node_id] = constant if constant is not None else OPS[node.op].eager(*args, **node.params)
        return tuple(values[o] for o in graph.outputs)

    return run


# ---- packing several results into one value -----------------------------------------------------


def packed_type(leaves: Sequence[TensorType]) -> TensorType:
    """The one value ``leaves`` are packed into: a vector of their common dtype."""
    dtype = np.result_type(*[np.dtype(t.dtype) for t in leaves]).name if leaves else "float64"
    return TensorType((sum(t.size for t in leaves),), dtype)


def unpack(packed: Value, leaves: Sequence[TensorType]) -> list[Value]:
    """The values packed into ``packed``, each of its own shape and dtype."""
    values, start = [], 0
    for leaf in leaves:
        part = F.getitem(packed, index=(("slice", start, start + leaf.size, None),))
        part = F.reshape(part, shape=leaf.shape)
        values.append(part if part.dtype == leaf.dtype else F.cast(part, dtype=leaf.dtype))
        start += leaf.size
    return values


def pack(values: Sequence[Value], dtype: str) -> Value:
    """``values`` flattened, cast to ``dtype`` and concatenated (the inverse of ``unpack``)."""
    flat = []
    for value in values:
        value = value if value.dtype == dtype else F.cast(value, dtype=dtype)
        flat.append(F.reshape(value, shape=(value.type.size,)))
    return F.concatenate(*flat, axis=0)


def pack_arrays(arrays: Sequence[Any], dtype: str) -> np.ndarray:
    """``pack`` on arrays."""
    if not arrays:
        return np.zeros(0, dtype)
    return np.concatenate([np.ravel(np.asarray(a)).astype(dtype, copy=False) for a in arrays])


# ---- loop -----------------------------------------------------------------------------------------


def loop_leaves(operand_types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    """The types packed into a loop's result: final carry, stacked ys, and the tape if kept."""
    n_carry, length = attrs["n_carry"], attrs["length"]
    carry = list(operand_types[:n_carry])
    ys = [TensorType((length,) + t.shape, t.dtype) for t in attrs["body"].output_types[n_carry:]]
    tape = [TensorType((length,) + t.shape, t.dtype) for t in carry] if attrs["tape"] else []
    return carry + ys + tape


def _infer_loop(types: list[TensorType], attrs: Attrs) -> TensorType:
    body, n_carry, n_xs, length = attrs["body"], attrs["n_carry"], attrs["n_xs"], attrs["length"]
    expected = [STEP_INDEX] + list(types[:n_carry])
    expected += [TensorType(t.shape[1:], t.dtype) for t in types[n_carry : n_carry + n_xs]]
    expected += list(types[n_carry + n_xs :])
    if any(t.shape[:1] != (length,) for t in types[n_carry : n_carry + n_xs]):
        raise ShapeError(f"a loop of {length} steps got per-step inputs {[str(t) for t in types[n_carry:n_xs]]}")
    if body.input_types != expected:
        raise ShapeError(f"loop body takes {_listed(body.input_types)} but the loop gives it {_listed(expected)}")
    if body.output_types[:n_carry] != expected[1 : 1 + n_carry]:
        raise ShapeError(
            f"loop body returns the carry as {_listed(body.output_types[:n_carry])}, "
            f"but it came in as {_listed(expected[1 : 1 + n_carry])}"
        )
    return packed_type(loop_leaves(types, attrs))


def _listed(types: Sequence[TensorType]) -> str:
    return "(" + ", ".join(str(t) for t in types) + ")"


def _render_loop(names: list[str], attrs: Attrs) -> str:
    settings = ", ".join(f"{attrs[k]!r}" for k in ("length", "reverse", "tape", "n_carry", "n_xs"))
    return f"run_loop({attrs['body'].key}, {settings}, ({', '.join(names)}{',' if len(names) == 1 else ''}))"


# A body as the function a backend runs it with (NumPy's generated code unless the backend says).
StepOf = Callable[[Body], Callable[..., tuple[Any, ...]]]


def numpy_step(body: Body) -> Callable[..., tuple[Any, ...]]:
    return body.step()


def run_loop(
    key: int,
    length: int,
    reverse: bool,
    tape: bool,
    n_carry: int,
    n_xs: int,
    operands: tuple,
    step_of: StepOf = numpy_step,
) -> np.ndarray:
    """A loop node's value: the body run ``length`` times, its results packed (see the module doc).
    ``step_of`` gives the function a body runs as (the LLVM backend's native code, say)."""
    body = BODIES[key]
    step = step_of(body)
    # 0-d operands as NumPy scalars (as xs[t] is): a 0-d array's arithmetic costs several times theirs
    operands = tuple(o[()] if isinstance(o, np.ndarray) and o.ndim == 0 else o for o in operands)
    carry = list(operands[:n_carry])
    xs, consts = operands[n_carry : n_carry + n_xs], tuple(operands[n_carry + n_xs :])
    y_types = body.output_types[n_carry:]
    carry_shapes = [np.shape(c) for c in carry]
    shapes = carry_shapes + [(length,) + t.shape for t in y_types]
    shapes += [(length,) + shape for shape in carry_shapes] if tape else []
    # the result is allocated once and the steps write into views of it: a 10,000-step tape is
    # not copied again to be packed
    packed = np.empty(sum(math.prod(shape) for shape in shapes), packed_type(body.output_types).dtype)
    views, start = [], 0
    for shape in shapes:
        views.append(packed[start : start + math.prod(shape)].reshape(shape))
        start += math.prod(shape)
    ys, tapes = views[n_carry : n_carry + len(y_types)], views[n_carry + len(y_types) :]
    for t in range(length - 1, -1, -1) if reverse else range(length):
        for record, value in zip(tapes, carry):
            record[t] = value
        results = step(np.int64(t), *carry, *[x[t] for x in xs], *consts)
        carry = list(results[:n_carry])
        for stacked, value in zip(ys, results[n_carry:]):
            stacked[t] = value
    for view, value in zip(views[:n_carry], carry):
        view[...] = value
    return packed


def body_flops(body: Body) -> int:
    """The FLOPs of one run of ``body``."""
    graph = body.graph
    total = 0
    for node_id in graph.live_nodes():
        node = graph[node_id]
        operand_types = [graph.type(a) for a in node.args]
        total += OPS[node.op].flops(operand_types, node.type, node.params)
    return total


def _delegated_batch(name: str) -> Callable[..., Value]:
    """The batching rule ``compiler.control_batch`` registers (it vectorizes bodies, a pass)."""

    def rule(*args: Any) -> Value:
        result: Value = RULES[name](*args)
        return result

    return rule


_body_flops = body_flops  # the name the op entries below use


def _delegated_vjp(name: str) -> Callable[[int], Callable[..., Value | None]]:
    """The VJP rule of each operand position, as ``compiler.control_ad`` registers it."""

    def for_position(position: int) -> Callable[..., Value | None]:
        def rule(g: Value, y: Value, *operands: Value, **attrs: Any) -> Value | None:
            result: Value | None = RULES[name](position, g, y, *operands, **attrs)
            return result

        return rule

    return for_position


def _delegated_jvp(name: str) -> Callable[..., Value]:
    def rule(tangents: list[Value | None], y: Value, *operands: Value, **attrs: Any) -> Value:
        result: Value = RULES[name](tangents, y, *operands, **attrs)
        return result

    return rule


register(
    Op(
        "loop",
        "control",
        None,
        _infer_loop,
        _render_loop,
        vjp=_delegated_vjp("loop_vjp"),
        jvp=_delegated_jvp("loop_jvp"),
        flops=lambda ins, out, attrs: attrs["length"] * _body_flops(attrs["body"]),
        batch=_delegated_batch("loop_batch"),
    )
)
NAMESPACE["run_loop"] = run_loop


# ---- switch ---------------------------------------------------------------------------------------


def _infer_switch(types: list[TensorType], attrs: Attrs) -> TensorType:
    index, operands = types[0], list(types[1:])
    if index.ndim != 0 or index.dtype[0] not in "iub":
        raise ShapeError(f"a switch index must be an integer scalar, got {index}")
    outputs = attrs["branches"][0].output_types
    for number, branch in enumerate(attrs["branches"]):
        if branch.input_types != operands:
            raise ShapeError(
                f"branch {number} takes {_listed(branch.input_types)}, the switch gives {_listed(operands)}"
            )
        if branch.output_types != outputs:
            raise ShapeError(
                f"branch {number} returns {_listed(branch.output_types)} but branch 0 returns {_listed(outputs)}"
            )
    return packed_type(outputs)


def _render_switch(names: list[str], attrs: Attrs) -> str:
    keys = ", ".join(str(branch.key) for branch in attrs["branches"])
    return f"run_switch(({keys},), {names[0]}, ({', '.join(names[1:])}{',' if len(names) == 2 else ''}))"


def run_switch(keys: tuple[int, ...], index: Any, operands: tuple, step_of: StepOf = numpy_step) -> np.ndarray:
    """A switch node's value: the branch ``index`` picks (clamped to the branches) run on ``operands``."""
    branch = BODIES[keys[min(max(int(index), 0), len(keys) - 1)]]
    return pack_arrays(step_of(branch)(*operands), packed_type(branch.output_types).dtype)


register(
    Op(
        "switch",
        "control",
        None,
        _infer_switch,
        _render_switch,
        vjp=_delegated_vjp("switch_vjp"),
        jvp=_delegated_jvp("switch_jvp"),
        flops=lambda ins, out, attrs: max(_body_flops(b) for b in attrs["branches"]),
        batch=_delegated_batch("switch_batch"),
    )
)
NAMESPACE["run_switch"] = run_switch


# ---- while ----------------------------------------------------------------------------------------


def while_leaves(operand_types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    """The types packed into a while loop's result: the final carry, then the trip count."""
    return list(operand_types[: attrs["n_carry"]]) + [STEP_INDEX]


def _infer_while(types: list[TensorType], attrs: Attrs) -> TensorType:
    n_carry, cond, body = attrs["n_carry"], attrs["cond"], attrs["body"]
    if cond.input_types != list(types) or cond.output_types[0].shape != () or len(cond.output_types) != 1:
        raise ShapeError(f"a while loop's condition takes {_listed(cond.input_types)} and returns one scalar")
    if body.input_types != [STEP_INDEX] + list(types) or body.output_types != list(types[:n_carry]):
        raise ShapeError(
            f"a while loop's body takes {_listed(body.input_types)} and returns {_listed(body.output_types)}; "
            f"the loop carries {_listed(types[:n_carry])}"
        )
    return packed_type(while_leaves(types, attrs))


def _render_while(names: list[str], attrs: Attrs) -> str:
    keys = f"{attrs['cond'].key}, {attrs['body'].key}, {attrs['n_carry']}"
    return f"run_while({keys}, ({', '.join(names)}{',' if len(names) == 1 else ''}))"


def run_while(cond_key: int, body_key: int, n_carry: int, operands: tuple, step_of: StepOf = numpy_step) -> np.ndarray:
    """A while node's value: the body run while the condition holds; the final carry and the count."""
    test, step = step_of(BODIES[cond_key]), step_of(BODIES[body_key])
    carry, consts = list(operands[:n_carry]), tuple(operands[n_carry:])
    count = 0
    while test(*carry, *consts)[0]:
        carry = list(step(np.int64(count), *carry, *consts))
        count += 1
    types = BODIES[body_key].output_types
    return pack_arrays([*carry, count], packed_type(types + [STEP_INDEX]).dtype)


def run_while_vjp(body_key: int, backward_key: int, operands: tuple, step_of: StepOf = numpy_step) -> np.ndarray:
    """The cotangents of a while loop's carry and closed-over values: the forward steps run again
    for the trip count the forward loop recorded, keeping the carries (a tape that grows as they
    run), then the backward loop over the body's VJP. Operands: ``[backward carry..., count,
    carry..., consts...]`` (the backward carry as ``run_loop`` takes it)."""
    body, backward = BODIES[body_key], BODIES[backward_key]
    n_carry = len(body.output_types)
    n_backward = len(backward.output_types)
    seeds, count = operands[:n_backward], int(operands[n_backward])
    carry, consts = list(operands[n_backward + 1 : n_backward + 1 + n_carry]), operands[n_backward + 1 + n_carry :]
    step = step_of(body)
    tape: list[list[Any]] = [[] for _ in carry]
    for t in range(count):
        for record, value in zip(tape, carry):
            record.append(value)
        carry = list(step(np.int64(t), *carry, *consts))
    stacked = [np.asarray(r) if r else np.zeros((0,) + t.shape, t.dtype) for r, t in zip(tape, body.output_types)]
    return run_loop(backward_key, count, True, False, n_backward, n_carry, (*seeds, *stacked, *consts), step_of)


register(
    Op(
        "while",
        "control",
        None,
        _infer_while,
        _render_while,
        vjp=_delegated_vjp("while_vjp"),
        jvp=_delegated_jvp("while_jvp"),
        flops=lambda ins, out, attrs: _body_flops(attrs["body"]) + _body_flops(attrs["cond"]),
        batch=_delegated_batch("while_batch"),
    )
)
NAMESPACE["run_while"] = run_while


def _infer_while_vjp(types: list[TensorType], attrs: Attrs) -> TensorType:
    return packed_type(attrs["backward"].output_types)


def _render_while_vjp(names: list[str], attrs: Attrs) -> str:
    return f"run_while_vjp({attrs['body'].key}, {attrs['backward'].key}, ({', '.join(names)},))"


register(
    Op(
        "while_vjp",
        "control",
        None,
        _infer_while_vjp,
        _render_while_vjp,
        vjp=_delegated_vjp("while_vjp_vjp"),
        jvp=_delegated_jvp("while_vjp_jvp"),
        flops=lambda ins, out, attrs: 3 * _body_flops(attrs["body"]),
        batch=functools.partial(_delegated_batch("sequential_batch"), "while_vjp"),  # once per example
    )
)
NAMESPACE["run_while_vjp"] = run_while_vjp


def tape_loops(graph: Graph) -> Graph:
    """``graph`` with every loop keeping its tape (the carries each step started from), which
    reverse mode reads; ``graph`` itself when it has no loop without one. A loop with a
    ``checkpoint`` keeps none: its backward pass computes the carries again (``ir.reversal``)."""
    if not any(
        node.op == "loop" and not node.params["tape"] and not node.params.get("checkpoint") for node in graph.nodes
    ):
        return graph
    taped = Graph(graph.name)
    mapping: dict[int, int] = {}
    for node_id, node in enumerate(graph.nodes):
        if node.op == "input":
            mapping[node_id] = taped.add_input(node.type, node.name, node.loc)
            continue
        params = node.params
        if node.op == "loop" and not params.get("checkpoint"):
            params = {**params, "tape": True}
        args = [mapping[a] for a in node.args]
        mapping[node_id] = taped.add(node.op, args, params, loc=node.loc, name=node.name)
    taped.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    return taped


def rebuilt(
    graph: Graph, layout: Sequence[int | TensorType], outputs: Sequence[int] | None = None, name: str | None = None
) -> Graph:
    """``graph`` taking the inputs ``layout`` lists (an int: its input at that position; a type: a new
    input it does not read) and returning its outputs at positions ``outputs`` (default: all), without
    the nodes those outputs do not need. Rules reorder a derived body's inputs this way, and the
    frontend gives bodies traced apart one operand list."""
    kept = list(range(len(graph.outputs))) if outputs is None else list(outputs)
    result = Graph(name or graph.name)
    mapping: dict[int, int] = {}
    for k, item in enumerate(layout):
        if isinstance(item, int):
            node_id = graph.inputs[item]
            mapping[node_id] = result.add_input(graph.type(node_id), graph[node_id].name, graph[node_id].loc)
        else:
            result.add_input(item, f"unused{k}")
    needed = Graph.continuing(graph)
    needed.set_outputs([graph.outputs[k] for k in kept])
    result.transplant(graph, [i for i in needed.live_nodes() if graph[i].op != "input"], mapping)
    result.set_outputs([mapping[graph.outputs[k]] for k in kept])
    return result


def loop_node(
    graph: Graph, body: Body, operands: Sequence[int], *, n_carry: int, n_xs: int, length: int, reverse: bool
) -> int:
    """Add a loop node to ``graph`` (attributes spelled out once, for the frontend and the rules)."""
    attrs = {"body": body, "length": length, "reverse": reverse, "tape": False, "n_carry": n_carry, "n_xs": n_xs}
    return graph.add("loop", operands, attrs)
