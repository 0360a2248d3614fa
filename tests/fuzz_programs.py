"""Random NumPy programs over the op registry, for differential fuzzing (tests/test_fuzz.py).

A program reads x (2x3) and W (3x3) and runs a few instructions, each appending a value to a
pool: an elementwise op of the registry (every smooth one that names its NumPy function), a
broadcasting binary op, a reduction, a scan, a matmul, a view (transpose, reshape, slice,
reversal, concatenation), ``where`` and ``clip``. Its result is a weighted sum of every value,
so every instruction reaches the output. The same program runs eagerly with NumPy, which
gives the reference value; chainrule traces the very same Python function.

Unary ops get their operand squashed into a domain where the op is finite (found by probing
the NumPy function on a grid, not from a hand-written table), so most programs are defined;
points near a pole or a kink are filtered by the caller (finite differences at two step sizes
that disagree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from chainrule.ir import OPS

# Elementwise ops with a kink or a jump, whose derivative is 0 or undefined almost everywhere,
# or which are not real functions of reals: fuzzed for their values elsewhere, not here.
NOT_SMOOTH = {"abs", "ceil", "floor", "rint", "sign", "trunc", "logical_not", "cast", "stop_gradient", "relu"}
NOT_SMOOTH |= {"copysign", "fmod", "mod", "eq", "ge", "gt", "le", "lt", "ne", "logical_and", "logical_or"}
# Candidate operand domains, tried in order: the first where the op is finite on the whole grid.
DOMAINS = ((-1.2, 1.2), (0.2, 1.2), (0.15, 0.85), (1.2, 3.0))


def _numpy_function(name: str) -> Callable | None:
    implements = OPS[name].implements or ()
    return next((f for f in implements if isinstance(f, np.ufunc) or callable(f)), None)


def _domain(function: Callable, arity: int) -> tuple[float, float] | None:
    grid = np.linspace(0.0, 1.0, 23)
    with np.errstate(all="ignore"):
        for low, high in DOMAINS:
            points = low + (high - low) * grid
            operands = [points] if arity == 1 else [points[:, None], points[None, ::-1]]
            values = function(*operands)
            if np.all(np.isfinite(values)) and np.max(np.abs(values)) < 1e6:
                return low, high
    return None


def _smooth_ops(arity: int) -> list[tuple[str, Callable, tuple[float, float]]]:
    ops = []
    for name in sorted(OPS):
        op = OPS[name]
        if op.kind != "elementwise" or op.arity != arity or name in NOT_SMOOTH:
            continue
        function = _numpy_function(name)
        domain = _domain(function, arity) if function is not None else None
        if domain is not None:
            ops.append((name, function, domain))
    return ops


UNARY = _smooth_ops(1)
BINARY = _smooth_ops(2)


def squash(value, domain: tuple[float, float]):
    """``value`` mapped smoothly into the open interval ``domain``."""
    low, high = domain
    return low + (high - low) * (0.5 + 0.49 * np.tanh(value))


@dataclass(frozen=True)
class Instruction:
    kind: str
    name: str
    operands: tuple[int, ...]
    axis: int = 0

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}{list(self.operands)}" + (f"@{self.axis}" if self.axis else "")


def _apply(instruction: Instruction, pool: list, weights_matrix) -> object:
    kind, name, axis = instruction.kind, instruction.name, instruction.axis
    a = pool[instruction.operands[0]]
    b = pool[instruction.operands[-1]]
    if kind == "unary":
        _, function, domain = next(op for op in UNARY if op[0] == name)
        return function(squash(a, domain))
    if kind == "binary":
        _, function, domain = next(op for op in BINARY if op[0] == name)
        return function(squash(a, domain), squash(b, domain))
    if kind == "reduce":
        reduce = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}[name]
        if np.ndim(a) == 0:
            return reduce(a)
        return reduce(a, axis=axis % np.ndim(a), keepdims=bool(axis % 2))
    if kind == "scan":
        if np.ndim(a) == 0:
            return a
        return {"cumsum": np.cumsum, "cumprod": np.cumprod}[name](a, axis=axis % np.ndim(a))
    if kind == "matmul":
        return np.broadcast_to(a, (2, 3)) @ weights_matrix
    if kind == "view":
        full = np.broadcast_to(a, (2, 3)) * 1.0
        return {
            "transpose": lambda v: v.T.reshape(2, 3),
            "reverse": lambda v: v[::-1, ::-1],
            "slice": lambda v: np.concatenate([v[:, 2:], v[:, :2]], axis=1),
            "reshape": lambda v: v.reshape(3, 2).T.reshape(2, 3),
            "stack": lambda v: np.stack([v[0], v[1]]),
        }[name](full)
    if kind == "where":
        return np.where(a > b, a * b, a - b)
    if kind == "clip":
        return np.clip(a, -0.5, 0.5)
    raise ValueError(kind)


@dataclass(frozen=True)
class Program:
    instructions: tuple[Instruction, ...]
    output_weights: tuple[float, ...]

    def __call__(self, x, weights_matrix):
        pool = [x, weights_matrix[0]]
        for instruction in self.instructions:
            pool.append(_apply(instruction, pool, weights_matrix))
        total = 0.0
        for weight, value in zip(self.output_weights, pool[2:]):
            total = total + weight * np.sum(value)
        return total

    def __str__(self) -> str:
        return "; ".join(map(str, self.instructions))


KINDS = ["unary"] * 5 + ["binary"] * 3 + ["reduce", "scan", "matmul", "view", "view", "where", "clip"]


@st.composite
def programs(draw, max_instructions: int = 6) -> Program:
    """A random program (see the module docstring)."""
    count = draw(st.integers(1, max_instructions))
    instructions = []
    for position in range(count):
        kind = draw(st.sampled_from(KINDS))
        operands = (draw(st.integers(0, position + 1)), draw(st.integers(0, position + 1)))
        names = {
            "unary": [op[0] for op in UNARY],
            "binary": [op[0] for op in BINARY],
            "reduce": ["sum", "mean", "max", "min", "prod"],
            "scan": ["cumsum", "cumprod"],
            "view": ["transpose", "reverse", "slice", "reshape", "stack"],
        }.get(kind, [kind])
        instructions.append(Instruction(kind, draw(st.sampled_from(names)), operands, draw(st.integers(-2, 2))))
    weights = tuple(draw(st.sampled_from([1.0, -0.5, 0.25, 2.0])) for _ in range(count))
    return Program(tuple(instructions), weights)
