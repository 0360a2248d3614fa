"""A checkpointed loop's backward pass: the ``loop_reversal`` op, which keeps only a schedule's
snapshots of the carry and computes the others again.

A loop differentiated with ``checkpoint=`` keeps no tape: its backward pass is one node that starts
from the carry the loop started from and runs a reversal schedule (``compiler.revolve``'s actions):

- ``("advance", i)``: the forward body, step i, from the carry at hand;
- ``("store", i)`` / ``("free", i)``: keep the carry at hand as snapshot i / drop snapshot i;
- ``("restore", i)``: continue from snapshot i;
- ``("turn", i)``: the backward body (the step's VJP) on the carry at hand, the cotangent moving
  one step back.

Operands: ``[backward carry..., carry..., xs..., dys..., consts...]``, the backward carry and the
backward body's inputs laid out as for the store-all backward loop (``compiler.control_ad``), with the
carry where that loop reads its tape. The result packs the backward carry after the last turn and
the stacked cotangents of the per-step inputs. The carries held at once are at most the schedule's
``slots`` (the initial carry, an operand, counted as one of them). Its own derivatives (hessian, grad
of grad) are ``compiler.loop_checkpoint``'s, registered in ``RULES``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError
from chainrule.ir.builder import Value
from chainrule.ir.control import BODIES, RULES, Body, StepOf, body_flops, numpy_step, pack_arrays, packed_type
from chainrule.ir.npfuncs import NAMESPACE
from chainrule.ir.ops import Attrs, Op, register
from chainrule.ir.types import TensorType

# Every Schedule by key: generated code names a schedule by its key.
SCHEDULES: dict[int, Schedule] = {}
_KEYS = itertools.count()


@dataclass(frozen=True, eq=False)
class Schedule:
    """The actions reversing a loop of ``steps`` (see the module doc), with what they cost: at most
    ``slots`` carries held at once, ``advances`` forward steps computed again. Compared by identity,
    so the rules make one per loop and the nodes built for each operand merge."""

    name: str  # "revolve, 12 slots", "sqrt"
    spec: tuple[Any, ...]  # the loop's checkpoint (``checkpoint_spec``), for loops derived from it
    steps: int
    actions: tuple[tuple[str, int], ...]
    slots: int
    advances: int
    key: int = field(default_factory=lambda: next(_KEYS))

    def __post_init__(self) -> None:
        SCHEDULES[self.key] = self

    def __str__(self) -> str:
        return f"{{{self.name}}}"

    __repr__ = __str__


def checkpoint_spec(checkpoint: Any, snapshots: int | None = None) -> tuple[Any, ...] | None:
    """A loop's ``checkpoint=`` (None, "all", "sqrt", "optimal", a budget in bytes) and ``snapshots=``
    as the loop node keeps them: None (a tape of every carry), ("sqrt",), ("optimal",),
    ("bytes", n) or ("snapshots", n)."""
    if snapshots is not None:
        if checkpoint not in (None, "all", "revolve") or isinstance(snapshots, bool) or int(snapshots) != snapshots:
            raise ArgumentError(f"snapshots={snapshots!r} needs an int, and no other checkpoint= than 'revolve'")
        if snapshots < 1:
            raise ArgumentError(f"a loop's reversal needs at least one snapshot (the initial carry), got {snapshots}")
        return ("snapshots", int(snapshots))
    if checkpoint is None or checkpoint == "all":
        return None
    if checkpoint in ("sqrt", "optimal"):
        return (checkpoint,)
    if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool) and checkpoint > 0:
        return ("bytes", int(checkpoint))
    raise ArgumentError(
        f"a loop's checkpoint must be None, 'all', 'sqrt', 'optimal' or a budget in bytes (a positive int), "
        f"got {checkpoint!r}; snapshots=n keeps n carries"
    )


def checkpoint_needed(spec: tuple[Any, ...] | None, length: int, carry: Sequence[TensorType]) -> bool:
    """Does ``spec`` keep fewer carries than a tape of all ``length`` would? (If not, the loop keeps
    its tape: a budget that holds every carry costs no recomputation.)"""
    if spec is None or length < 2:
        return False
    if spec[0] == "snapshots":
        return bool(spec[1] < length)
    if spec[0] == "bytes":
        return bool(spec[1] < length * sum(t.nbytes for t in carry))
    return length >= 4


def _infer_reversal(types: list[TensorType], attrs: Attrs) -> TensorType:
    backward: Body = attrs["backward"]
    n_backward, length = attrs["n_backward"], attrs["schedule"].steps
    outputs = backward.output_types
    stacked = [TensorType((length,) + t.shape, t.dtype) for t in outputs[n_backward:]]
    return packed_type(outputs[:n_backward] + stacked)


def _render_reversal(names: list[str], attrs: Attrs) -> str:
    keys = f"{attrs['body'].key}, {attrs['backward'].key}, {attrs['schedule'].key}"
    settings = f"{attrs['reverse']!r}, {attrs['n_backward']}, {attrs['n_carry']}, {attrs['n_xs']}"
    return f"run_loop_reversal({keys}, {settings}, ({', '.join(names)},))"


def run_loop_reversal(
    body_key: int,
    backward_key: int,
    schedule_key: int,
    reverse: bool,
    n_backward: int,
    n_carry: int,
    n_xs: int,
    operands: tuple,
    step_of: StepOf = numpy_step,
) -> np.ndarray:
    """A ``loop_reversal`` node's value: its schedule run (see the module doc)."""
    body, backward, schedule = BODIES[body_key], BODIES[backward_key], SCHEDULES[schedule_key]
    step, backward_step = step_of(body), step_of(backward)
    length = schedule.steps
    n_consts = len(body.input_types) - 1 - n_carry - n_xs
    cotangent = list(operands[:n_backward])
    carry = tuple(operands[n_backward : n_backward + n_carry])
    xs = operands[n_backward + n_carry : n_backward + n_carry + n_xs]
    dys = operands[n_backward + n_carry + n_xs : len(operands) - n_consts]
    consts = tuple(operands[len(operands) - n_consts :])
    stacked = [np.empty((length,) + t.shape, t.dtype) for t in backward.output_types[n_backward:]]
    snapshots: dict[int, tuple] = {}
    at = 0  # the step whose starting carry ``carry`` is
    for action, i in schedule.actions:
        t = length - 1 - i if reverse else i
        if action == "advance":
            carry = tuple(step(np.int64(t), *carry, *[x[t] for x in xs], *consts)[:n_carry])
            at = i + 1
        elif action == "store":
            snapshots[i] = carry
        elif action == "free":
            del snapshots[i]
        elif action == "restore":
            carry, at = snapshots[i], i
        else:  # "turn"
            assert at == i, f"the schedule turns step {i} from the carry of step {at}"
            results = backward_step(np.int64(t), *cotangent, *carry, *[x[t] for x in xs], *[d[t] for d in dys], *consts)
            cotangent = list(results[:n_backward])
            for record, value in zip(stacked, results[n_backward:]):
                record[t] = value
    return pack_arrays(cotangent + stacked, packed_type(backward.output_types).dtype)


def _delegated_vjp(position: int) -> Any:
    """Second order: ``compiler.loop_checkpoint`` registers the rules in ``RULES``."""

    def rule(g: Value, y: Value, *operands: Value, **attrs: Any) -> Value | None:
        result: Value | None = RULES["loop_reversal_vjp"](position, g, y, *operands, **attrs)
        return result

    return rule


def _delegated_jvp(tangents: list[Value | None], y: Value, *operands: Value, **attrs: Any) -> Value:
    result: Value = RULES["loop_reversal_jvp"](tangents, y, *operands, **attrs)
    return result


def _batch_per_example(*args: Any) -> Value:
    """Once per example, as a loop node over the batch (the rule ``compiler.control_batch`` registers)."""
    result: Value = RULES["sequential_batch"]("loop_reversal", *args)
    return result


def _reversal_flops(ins: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    schedule: Schedule = attrs["schedule"]
    return schedule.advances * body_flops(attrs["body"]) + schedule.steps * body_flops(attrs["backward"])


register(
    Op(
        "loop_reversal",
        "control",
        None,
        _infer_reversal,
        _render_reversal,
        vjp=_delegated_vjp,
        jvp=_delegated_jvp,
        flops=_reversal_flops,
        batch=_batch_per_example,
    )
)
NAMESPACE["run_loop_reversal"] = run_loop_reversal
