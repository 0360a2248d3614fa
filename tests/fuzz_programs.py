"""Random NumPy programs over the op registry, for differential fuzzing (tests/test_fuzz.py).

A program reads x (2x3) and W (3x3) and runs a few instructions, each appending a value to a
pool (every value broadcasts to 2x3): an elementwise op of the registry (every smooth one that
names its NumPy function), a broadcasting binary op, a reduction, cumsum/cumprod, a matmul, a
view (transpose, reshape, slice, reversal, concatenation, stack), ``where``, ``clip``, ``take``,
``sort``; a loop (``cr.fori_loop``, ``cr.scan``, ``cr.while_loop``) whose body is an op of the
same pool with its carry and a value of the enclosing program it reads; linear algebra on
well-conditioned matrices (``solve``, ``inv``, ``det``, ``slogdet``, ``cholesky`` and
``eigvalsh`` of an SPD ``T @ T.T + 3I``, ``qr``, ``norm``); writes into arrays (``out[i] = v``,
``a[idx] += v`` with a repeated index, ``np.add.at``); and special points where the true
derivative exists although a naive rule gives ``0 * inf`` (zero variance, zero norm,
``sqrt(x - x)``, ``log`` of ``1 + (x - x)``, ties in ``max`` and ``maximum``). Its result is a
weighted sum of every value, so every instruction reaches the output.

The same program runs as a reference (``Program.reference``): eagerly with NumPy, the loops as
Python loops; chainrule traces ``Program.__call__``, whose loops are chainrule's structured
ones. Unary ops get their operand squashed into a domain where the op is finite (found by
probing the NumPy function on a grid, not from a hand-written table), so most programs are
defined; points near a pole or a kink are filtered by the caller (finite differences at two step
sizes that disagree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from hypothesis import strategies as st

import chainrule as cr
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
        if any(op.refuses_gradient(position) for position in range(arity)):
            continue  # no gradient in one operand (gammainc's a, a Bessel order): test_special's business
        function = _numpy_function(name)
        domain = _domain(function, arity) if function is not None else None
        if domain is not None:
            ops.append((name, function, domain))
    return ops


UNARY = _smooth_ops(1)
BINARY = _smooth_ops(2)


def squash(value, domain: tuple[float, float]):
    """``value`` mapped smoothly into the open interval ``domain``.

    0 maps off the middle, since a value that is 0 by arithmetic (``x * (x - x)``) would land on
    the middle of (-1.2, 1.2), where cbrt' is infinite: there the derivative exists only because
    the value is identically 0, which no chain of derivative rules can see (the special points are
    the ``special`` instructions' business)."""
    low, high = domain
    return low + (high - low) * (0.5 + 0.49 * np.tanh(value + 0.25))


@dataclass(frozen=True)
class Instruction:
    kind: str
    name: str
    operands: tuple[int, ...]
    axis: int = 0

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}{list(self.operands)}" + (f"@{self.axis}" if self.axis else "")


def _python_scan(step, init, xs):
    carry, ys = init, []
    for x in xs:
        carry, y = step(carry, x)
        ys.append(y)
    return carry, np.stack(ys)


def _python_while_loop(cond, body, state):
    while cond(state):
        state = body(state)
    return state


def _python_fori_loop(lower, upper, body, carry):
    for i in range(lower, upper):
        carry = body(i, carry)
    return carry


# The loops a program runs with: chainrule's structured ones (traced), or plain Python loops
# (the reference, run eagerly).
STRUCTURED_LOOPS = SimpleNamespace(fori_loop=cr.fori_loop, scan=cr.scan, while_loop=cr.while_loop)
PYTHON_LOOPS = SimpleNamespace(fori_loop=_python_fori_loop, scan=_python_scan, while_loop=_python_while_loop)


def full(value):
    """``value`` broadcast to the pool's 2x3 (a new array, so writes into it are the program's own)."""
    return np.broadcast_to(value, (2, 3)) * 1.0


def _elementwise(name: str, a, b):
    """The smooth elementwise op ``name`` (unary or binary) on squashed operands."""
    unary = next((op for op in UNARY if op[0] == name), None)
    if unary is not None:
        return unary[1](squash(a, unary[2]))
    _, function, domain = next(op for op in BINARY if op[0] == name)
    return function(squash(a, domain), squash(b, domain))


def _reduce(name: str, a, axis: int):
    reduce = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}[name]
    if np.ndim(a) == 0:
        return reduce(a)
    return reduce(a, axis=axis % np.ndim(a), keepdims=bool(axis % 2))


def _view(name: str, a):
    return {
        "transpose": lambda v: v.T.reshape(2, 3),
        "reverse": lambda v: v[::-1, ::-1],
        "slice": lambda v: np.concatenate([v[:, 2:], v[:, :2]], axis=1),
        "reshape": lambda v: v.reshape(3, 2).T.reshape(2, 3),
        "stack": lambda v: np.stack([v[0], v[1]]),
        "take": lambda v: np.take(v, [2, 0, 1], axis=1) + np.take(v, [1, 1], axis=0),
        "sort": lambda v: np.sort(v, axis=1) * np.arange(1.0, 4.0) + np.sort(v, axis=0),
    }[name](full(a))


def _loop(name: str, body_op: str, a, b, loops):
    """A loop whose body applies ``body_op`` to its carry and ``b``, a value it reads from outside."""

    def body(carry, other):
        return 0.5 * carry + 0.5 * _elementwise(body_op, carry + 0.5 * other, other)

    if name == "fori":
        return loops.fori_loop(0, 3, lambda i, carry: body(carry, b) + 0.125 * i, full(a))
    if name == "fori_pair":  # a pytree carry: two arrays that feed each other
        pair = loops.fori_loop(0, 2, lambda i, c: (body(c[0], c[1]), 0.5 * c[1] + 0.25 * c[0]), (full(a), full(b)))
        return pair[0] - pair[1]
    if name == "while":
        state = loops.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, body(s[1], b)), (0, full(a)))
        return state[1]
    carry, ys = loops.scan(lambda c, row: (body(c, row), c * row), full(a)[0], full(b))
    return ys + carry


def _linalg(name: str, a, b):
    """Linear algebra on well-conditioned matrices built from a and b (entries of T in (-1, 1))."""
    bent = np.tanh(np.concatenate([full(a), full(b)[:1]], axis=0))
    dominant = bent + 3.0 * np.eye(3)  # diagonally dominant: invertible, det > 0
    spd = bent @ bent.T + 3.0 * np.eye(3)
    if name == "solve":
        return np.linalg.solve(dominant, full(b).T).T
    if name == "inv":
        return np.linalg.inv(dominant)[:2]
    if name == "det":
        return np.linalg.det(dominant)
    if name == "slogdet":
        return np.linalg.slogdet(dominant)[1]
    if name == "cholesky":
        return np.linalg.cholesky(spd)[1:]
    if name == "eigvalsh":
        return np.linalg.eigvalsh(spd)
    if name == "qr":
        q, r = np.linalg.qr(dominant)
        return q[1:] + r[:2]
    if name == "norm":  # off 0, as squash is: a row of zeros written into an array is the special kind's
        return np.linalg.norm(full(a) + 0.25) + np.linalg.norm(full(b) + 0.25, axis=1, keepdims=True)
    return np.linalg.norm(dominant, 2)  # the spectral norm, an SVD


def _write(name: str, a, b, axis: int):
    """Writes into an array: the traced function sees them as new values (``index_update``)."""
    if name == "setitem":
        out = np.zeros((2, 3))
        out[1] = full(a)[0]
        out[0, axis % 3] = np.sum(b)
        return out
    if name == "add_repeated":  # NumPy: a[[0, 2, 0]] += v is a[[0, 2, 0]] = a[[0, 2, 0]] + v, the last write wins
        out = full(a)
        out[:, [0, 2, 0]] += full(b)
        return out
    out = np.zeros(3)
    np.add.at(out, [0, 2, 0], full(a)[axis % 2])  # accumulates: index 0 gets two values
    return out


def _special(name: str, a):
    """Points where the derivative exists but a naive chain of rules multiplies 0 by inf."""
    column = full(a)[:, :1]
    if name == "var_constant":  # the variance of a constant vector is 0 for every a
        return np.var(np.broadcast_to(np.sum(a), (3,))) + np.sum(a)
    if name == "std_one_value":  # std over an axis of length 1 (issue 21's std of one value)
        return np.std(column, axis=1, keepdims=True) + column
    if name == "norm_zero":  # the norm of a zero vector that depends on a
        return np.linalg.norm(column - np.mean(column, axis=1, keepdims=True)) + column
    if name == "sqrt_zero":
        return np.sqrt(full(a) - full(a)) + a
    if name == "log_one":  # log(1 + 0): log near its singular point's neighbourhood stays exact
        return np.log(1.0 + (a - a) ** 2) * np.log1p(a - a) + a
    if name == "max_tie":  # a duplicated maximum: max(v, v) = v
        return np.max(np.concatenate([full(a), full(a)], axis=1), axis=1, keepdims=True)
    if name == "maximum_tie":
        return np.maximum(a, a) + np.minimum(full(a), full(a)[::-1, ::-1])
    return np.max(np.broadcast_to(np.sum(a), (2, 3)))  # every element tied


def _apply(instruction: Instruction, pool: list, weights_matrix, loops) -> object:
    kind, name, axis = instruction.kind, instruction.name, instruction.axis
    a = pool[instruction.operands[0]]
    b = pool[instruction.operands[-1]]
    if kind in ("unary", "binary"):
        return _elementwise(name, a, b)
    if kind == "reduce":
        return _reduce(name, a, axis)
    if kind == "scan":
        if np.ndim(a) == 0:
            return a
        return {"cumsum": np.cumsum, "cumprod": np.cumprod}[name](a, axis=axis % np.ndim(a))
    if kind == "matmul":
        return full(a) @ weights_matrix
    if kind == "view":
        return _view(name, a)
    if kind == "where":
        return np.where(a > b, a * b, a - b)
    if kind == "clip":
        return np.clip(a, -0.5, 0.5)
    if kind == "loop":
        loop_name, body_op = name.split("/")
        return _loop(loop_name, body_op, a, b, loops)
    if kind == "linalg":
        return _linalg(name, a, b)
    if kind == "write":
        return _write(name, a, b, axis)
    if kind == "special":
        return _special(name, a)
    raise ValueError(kind)


@dataclass(frozen=True)
class Program:
    instructions: tuple[Instruction, ...]
    output_weights: tuple[float, ...]

    def __call__(self, x, weights_matrix):
        """The program with chainrule's structured loops: what chainrule traces."""
        return self.run(x, weights_matrix, STRUCTURED_LOOPS)

    def reference(self, x, weights_matrix):
        """The program with Python loops, run eagerly: the reference value and finite differences."""
        return self.run(x, weights_matrix, PYTHON_LOOPS)

    def run(self, x, weights_matrix, loops):
        pool = [x, weights_matrix[0]]
        for instruction in self.instructions:
            pool.append(_apply(instruction, pool, weights_matrix, loops))
        total = 0.0
        for weight, value in zip(self.output_weights, pool[2:]):
            total = total + weight * np.sum(value)
        return total

    def __str__(self) -> str:
        return "; ".join(map(str, self.instructions))


LOOP_BODIES = ["sin", "tanh", "exp", "log1p", "arctan", "sigmoid", "mul", "hypot", "maximum"]
NAMES = {
    "unary": [op[0] for op in UNARY],
    "binary": [op[0] for op in BINARY],
    "reduce": ["sum", "mean", "max", "min", "prod"],
    "scan": ["cumsum", "cumprod"],
    "view": ["transpose", "reverse", "slice", "reshape", "stack", "take", "sort"],
    "loop": [f"{loop}/{op}" for loop in ("fori", "fori_pair", "while", "scan") for op in LOOP_BODIES],
    "linalg": ["solve", "inv", "det", "slogdet", "cholesky", "eigvalsh", "qr", "norm", "norm2"],
    "write": ["setitem", "add_repeated", "add_at"],
    "special": [
        "var_constant",
        "std_one_value",
        "norm_zero",
        "sqrt_zero",
        "log_one",
        "max_tie",
        "maximum_tie",
        "max_all_tied",
    ],
}
# Version 1 (the first 400 programs and the first long run) drew only the first line's kinds.
KINDS = ["unary"] * 5 + ["binary"] * 3 + ["reduce", "scan", "matmul", "view", "view", "where", "clip"]
KINDS += ["loop", "loop", "linalg", "linalg", "write", "special"]


@st.composite
def programs(draw, max_instructions: int = 6) -> Program:
    """A random program (see the module docstring)."""
    count = draw(st.integers(1, max_instructions))
    instructions = []
    for position in range(count):
        kind = draw(st.sampled_from(KINDS))
        operands = (draw(st.integers(0, position + 1)), draw(st.integers(0, position + 1)))
        name = draw(st.sampled_from(NAMES.get(kind, [kind])))
        instructions.append(Instruction(kind, name, operands, draw(st.integers(-2, 2))))
    weights = tuple(draw(st.sampled_from([1.0, -0.5, 0.25, 2.0])) for _ in range(count))
    return Program(tuple(instructions), weights)
