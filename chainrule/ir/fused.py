"""The ``fused`` op: one node that computes a whole elementwise region (maybe ending in a reduction).

Its ``body`` attribute is a small program in topological order. Each step is
``(op, operands, attrs, type)``; an operand ``k >= 0`` is step ``k``'s value and
``k < 0`` is the fused node's operand ``-k - 1`` (a value from outside the
region). The last step is the node's value. Every step but a final reduction
has the region's full shape, so a backend can run the body as one loop (LLVM)
or as a sequence of in-place ufunc calls on one buffer (NumPy).

Fused nodes come after differentiation, so the op has no derivative rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chainrule.errors import Loc, ShapeError
from chainrule.ir.ops import OPS, Attrs, Op, register
from chainrule.ir.types import EARLY_FREE_MIN_BYTES, TensorType

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from chainrule.ir.graph import Graph
    from chainrule.ir.node import Node

# One step of a body: (op, operands, frozen attrs, type); see the module doc for the operands.
Step = tuple[str, tuple[int, ...], tuple[tuple[str, Any], ...], TensorType]
# A step's (name, source location, origin as (op, name, loc)): metadata, not identity.
StepMeta = tuple[str | None, Loc | None, tuple[str, str | None, Loc | None] | None]


@dataclass(frozen=True)
class FusedBody:
    """The program a fused node runs: its steps in topological order, and their names and locations."""

    steps: tuple[Step, ...]
    meta: tuple[StepMeta, ...] = field(default=(), compare=False)

    @property
    def root(self) -> Step:
        """The last step: the one whose value is the node's."""
        return self.steps[-1]

    def use_counts(self) -> list[int]:
        """How many later steps read each step's value."""
        counts = [0] * len(self.steps)
        for _, operands, _, _ in self.steps:
            for k in operands:
                if k >= 0:
                    counts[k] += 1
        return counts

    def expression(self, input_names: list[str]) -> str:
        """The body as nested calls, ``sub(sigmoid(%3), y)``; a step used twice is bound first
        (``t0 = sigmoid(%3); mul(t0, sub(1.0, t0))``)."""
        counts = self.use_counts()
        bound: dict[int, str] = {}
        bindings: list[str] = []
        for index, count in enumerate(counts):
            if count > 1:  # never the last step: no step reads it
                bindings.append(f"t{len(bindings)} = {self._call_text(index, input_names, bound)}")
                bound[index] = f"t{len(bindings) - 1}"
        return "; ".join([*bindings, self._call_text(len(self.steps) - 1, input_names, bound)])

    def summary(self, input_names: list[str], most_steps: int = 64) -> str:
        """``expression``, or for a body of more than ``most_steps`` steps (a fused backward pass of
        a deep chain: thousands of characters no reader takes in) its size, last op and inputs."""
        if len(self.steps) <= most_steps:
            return self.expression(input_names)
        return f"{len(self.steps)} steps, the last {self.root[0]}, reading {', '.join(input_names)}"

    def _call_text(self, index: int, input_names: list[str], bound: dict[int, str]) -> str:
        """Step ``index`` as a call of its operands' texts, written out with a stack (a body of a
        thousand nested steps is neither deep recursion nor a thousand copies of a growing string)."""
        out: list[str] = []
        stack: list[int | str] = [index]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
            elif item in bound and item != index:
                out.append(bound[item])
            else:
                op, operands, attrs, _ = self.steps[item]
                arguments: list[int | str] = [k if k >= 0 else input_names[-k - 1] for k in operands]
                arguments += [f"{key}={value}" for key, value in attrs if key != "dtype" or op == "cast"]
                parts: list[int | str] = [f"{op}("]
                for position, argument in enumerate(arguments):
                    parts += [", ", argument] if position else [argument]
                stack += reversed([*parts, ")"])
        return "".join(out)

    def name(self, index: int) -> str | None:
        """The user's name for step ``index``'s value, if it had one."""
        return self.meta[index][0] if index < len(self.meta) else None

    def __repr__(self) -> str:
        return f"<fused body of {len(self.steps)} steps>"


def _infer_fused(types: list[TensorType], attrs: Attrs) -> TensorType:
    steps = attrs["body"].steps
    for index, (op, operands, step_attrs, declared) in enumerate(steps):
        operand_types = tuple([steps[k][3] if k >= 0 else types[-k - 1] for k in operands])
        inferred = OPS[op].result_type(operand_types, step_attrs)  # remembered: steps repeat few rules
        if inferred != declared:
            raise ShapeError(f"fused step {index} ({op}) has type {declared} but its operands give {inferred}")
    return steps[-1][3]


def _render_fused(names: list[str], attrs: Attrs) -> str:
    """One NumPy expression for the body. A step used twice is bound with ``:=`` at its first
    occurrence in evaluation order (Python evaluates operands left to right, and every template
    uses its operands in order), and read by name after that."""
    steps = attrs["body"].steps
    counts = attrs["body"].use_counts()
    texts: list[str] = []
    for op, operands, step_attrs, _ in steps:
        arguments = [names[-k - 1] if k < 0 else (f"\0{k}\0" if counts[k] > 1 else texts[k]) for k in operands]
        texts.append(f"({OPS[op].render(arguments, dict(step_attrs))})")
    # Expand the markers left to right with an explicit stack of pending text (no recursion).
    pieces: list[str] = []
    pending = [texts[-1]]
    bound: set[int] = set()
    while pending:
        text = pending.pop()
        marker = text.find("\0")
        if marker < 0:
            pieces.append(text)
            continue
        close = text.index("\0", marker + 1)
        k = int(text[marker + 1 : close])
        pieces.append(text[:marker])
        pending.append(text[close + 1 :])
        if k in bound:
            pieces.append(f"_s{k}")
        else:
            bound.add(k)
            pending.append(")")
            pending.append(texts[k])
            pieces.append(f"(_s{k} := ")
    return "".join(pieces)


def _fused_flops(types: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    steps = attrs["body"].steps
    total = 0
    for op, operands, step_attrs, step_type in steps:
        operand_types = [steps[k][3] if k >= 0 else types[-k - 1] for k in operands]
        total += OPS[op].flops(operand_types, step_type, dict(step_attrs))
    return total


register(Op("fused", "fused", None, _infer_fused, _render_fused, vjp=None, flops=_fused_flops))


# A fused node this big (elements) or bigger runs step by step in buffers (``plan_buffers``) on the
# NumPy backend: allocating a fresh array per step costs page faults from about 20,000 float64s on
# (6-10x slower). Smaller ones are written as nested expressions, which read better and run as fast.
STEPWISE_MIN_SIZE = 1024

# Steps that can write their result over a buffer they read (NumPy: a ufunc with out=; in a
# loop: a register). where() and cast allocate a new result.
_ALLOCATING = {"where", "cast"}


@dataclass(frozen=True)
class BufferPlan:
    """Where each step of a fused body lives when the steps run one after another.

    ``buffer[i]`` is the buffer holding step i (-1 for a final reduction, which
    produces the node's own result), ``types[b]`` each buffer's type,
    ``writes_over[i]`` whether step i reuses an existing buffer (``out=``) and
    ``held[i]`` the buffers holding a live value while step i runs (its own
    included). ``peak_bytes`` is the most the buffers (and a final reduction's
    result, ``reduction_bytes``) hold at once.
    """

    buffer: tuple[int, ...]
    types: tuple[TensorType, ...]
    writes_over: tuple[bool, ...]
    held: tuple[frozenset[int], ...]
    reduction_bytes: int
    peak_bytes: int

    def peak_bytes_besides(self, donated: Collection[int], step_scratch: Sequence[int]) -> int:
        """The most bytes held at once by the buffers but ``donated`` (operands' arrays written over,
        which the caller holds already: see ``donated_buffers``), a final reduction's result, and
        ``step_scratch[i]`` while step i runs (the buffer NumPy allocates to broadcast)."""
        if not donated and not any(step_scratch):
            return self.peak_bytes  # the same sum, taken as the buffers were planned
        sizes = [
            sum(self.types[b].nbytes for b in held if b not in donated) + scratch
            for held, scratch in zip(self.held, step_scratch)
        ]
        if self.reduction_bytes:
            sizes[-1] += self.reduction_bytes
        return max(sizes, default=0)


def plan_buffers(body: FusedBody) -> BufferPlan:
    """The buffer plan of ``body`` (computed once per body: passes and backends all ask)."""
    plan = body.__dict__.get("_buffer_plan")
    if plan is None:
        plan = _plan_buffers(body.steps)
        object.__setattr__(body, "_buffer_plan", plan)
    return plan


def _plan_buffers(steps: tuple[Step, ...]) -> BufferPlan:
    last_use = [-1] * len(steps)
    for index, (_, operands, _, _) in enumerate(steps):
        for k in operands:
            if k >= 0:
                last_use[k] = index
    buffer: list[int] = []
    writes_over: list[bool] = []
    types: list[TensorType] = []
    held: list[frozenset[int]] = []
    free: dict[TensorType, list[int]] = {}  # buffers holding nothing live, by type
    live: set[int] = set()
    live_bytes = peak = reduction_bytes = 0
    last = len(steps) - 1
    for index, (op, operands, _, step_type) in enumerate(steps):
        dying = [buffer[k] for k in operands if k >= 0 and last_use[k] == index]
        if len(dying) > 1:
            dying = sorted(set(dying))
        if index == last and OPS[op].kind == "reduction":
            buffer.append(-1)
            writes_over.append(False)
            held.append(frozenset(live))
            reduction_bytes = step_type.nbytes
            peak = max(peak, live_bytes + reduction_bytes)
            continue
        chosen = -1
        if op not in _ALLOCATING:
            # an operand's buffer first (the step runs in place), else any free one of its type
            for b in dying:
                if types[b] == step_type:
                    chosen = b
                    break
            else:
                spare = free.get(step_type)
                if spare:
                    chosen = spare.pop()
                    live_bytes += step_type.nbytes
        writes_over.append(chosen >= 0)
        if chosen < 0:
            chosen = len(types)
            types.append(step_type)
            live_bytes += step_type.nbytes
        buffer.append(chosen)
        live.add(chosen)
        held.append(frozenset(live))
        if live_bytes > peak:
            peak = live_bytes
        for b in dying:
            if b != chosen:
                free.setdefault(types[b], []).append(b)
                live.discard(b)
                live_bytes -= types[b].nbytes
    return BufferPlan(tuple(buffer), tuple(types), tuple(writes_over), tuple(held), reduction_bytes, peak)


# Ops whose result is an array of its own, never a view of an operand (an elementwise op that can
# write over a buffer, a matrix product, a fused node): only such a value may be written over.
def _makes_fresh_array(op: str) -> bool:
    spec = OPS[op]
    return op in ("matmul", "fused") or (spec.is_elementwise and spec.in_place is not None and not spec.view)


def donated_buffers(graph: Graph, node: Node, counts: Sequence[int], outputs: Collection[int]) -> dict[int, int]:
    """The buffers of fused ``node``'s plan that are an operand's array, written over, instead of a
    new array: buffer -> the operand's position. The one donation rule: the memory plan (compiler/
    schedule.py) counts these buffers as the operand's bytes, the NumPy backend writes into them.

    An operand is donated when it is an array of the function's own (a matrix product's, a fused
    node's or an elementwise op's result: never an input, a constant or a view), read once in the
    whole function (``counts``: by this node, in one step), not an output, big enough that the code
    frees it after its last read (``EARLY_FREE_MIN_BYTES``), and of the type of the step reading it,
    a step that runs in place (``out=``) into a buffer it writes first. A fresh megabyte costs its
    page faults on every call once glibc has given the memory back (``sum(W * (x @ B))``, issue 16).
    """
    steps = node.params["body"].steps
    if steps[0][3].size < STEPWISE_MIN_SIZE:
        return {}  # written as nested expressions, no buffers
    reads: dict[int, int] = {}  # operand position -> how many step operands are it
    for _, step_operands, _, _ in steps:
        for k in step_operands:
            if k < 0:
                reads[-k - 1] = reads.get(-k - 1, 0) + 1
    donors = set()
    for position, a in enumerate(node.args):
        value = graph[a]
        if (
            counts[a] == 1
            and reads.get(position) == 1
            and a not in outputs
            and value.type.nbytes >= EARLY_FREE_MIN_BYTES
            and _makes_fresh_array(value.op)
        ):
            donors.add(position)
    if not donors:
        return {}
    plan = plan_buffers(node.params["body"])
    donated: dict[int, int] = {}
    for index, (op, step_operands, _, step_type) in enumerate(steps):
        b = plan.buffer[index]
        if b < 0 or plan.writes_over[index] or op in _ALLOCATING or OPS[op].in_place is None:
            continue  # a reduction, a buffer written before, or a step with no out= form
        for k in step_operands:
            if k < 0 and -k - 1 in donors and graph.type(node.args[-k - 1]) == step_type:
                donated[b] = -k - 1
                donors.discard(-k - 1)
                break
    return donated
