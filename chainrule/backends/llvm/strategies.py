"""How the LLVM backend computes each op that is not elementwise: one registry keyed by the op.

- elementwise ops (``Op.is_elementwise``) and fused nodes run in loops, one element at a time
  (``scalar_ops``); sources (``kind == "source"``) are placed, not computed;
- ``VIEW``: an op whose result may be a view (``Op.view``) is a strided read of its operand when its
  operand's layout allows (``views.py``), else computed as its kind says (``stop_gradient`` in a
  loop, a shape or index op by its NumPy lowering);
- ``REDUCE``: a reduction (``Op.is_reduction``) is a loop accumulating from its identity;
- ``GEMM``: a BLAS call (float matmuls whose operands BLAS can read as they are);
- ``LAPACK``: LAPACK calls on a column-major copy of each matrix (``lapack_ops.py``);
- ``NATIVE``: a loop nest of its own (scans, argmax/argmin, concatenate: ``native_ops.py``);
- ``FALLBACK``: the op's NumPy lowering, called back from the native code.

A test (tests/test_backend_coverage.py) fails when an op of the table has no strategy here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from chainrule.backends.llvm import control, scalar_ops, views
from chainrule.backends.llvm.irtext import Function
from chainrule.backends.llvm.views import View
from chainrule.ir import OPS, Node, Op

VIEW, REDUCE, GEMM, FALLBACK, LOOP, SOURCE = "view", "reduce", "gemm", "fallback", "loop", "source"
LAPACK, NATIVE = "lapack", "native"

# (operand's view, node) -> the result's view, or None
ViewRule = Callable[[View, Node], View | None]
# dtype -> a reduction's start value, an IR literal
IdentityRule = Callable[[str], str]
# (block, dtype, accumulator, value) -> the register of accumulator and value combined
CombineRule = Callable[[Function, str, str, str], str]
# (operand arrays, attrs) -> the op's value: what a fallback runs instead of the op's NumPy lowering
FallbackRule = Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """How one op is computed. ``view(operand view, node)``: the result's view, or None when the
    operand's layout allows none; ``identity(dtype)`` and ``combine(block, dtype, accumulator, value)``:
    a reduction's start value (an IR literal) and step; ``run(operands, attrs)``: what a fallback
    calls instead of the op's NumPy lowering (loops run their bodies as native code)."""

    kind: str
    view: ViewRule | None = None
    identity: IdentityRule | None = None
    combine: CombineRule | None = None
    run: FallbackRule | None = None


STRATEGIES: dict[str, Strategy] = {}


def declare(op: Op, strategy: Strategy) -> None:
    """Declare how ``op`` (an entry of ``OPS``) is computed."""
    if OPS.get(op.name) is not op:
        raise ValueError(f"{op.name!r} is not an op of the table")
    if strategy.kind == VIEW and not op.view:
        raise ValueError(f"{op.name} is lowered as a view, but its Op says its result is never one")
    STRATEGIES[op.name] = strategy


def strategy_of(op: str) -> Strategy:
    """The strategy of ``op``: declared here, or from its kind (elementwise, fused: a loop; source)."""
    declared = STRATEGIES.get(op)
    if declared is not None:
        return declared
    definition = OPS[op]
    if definition.is_elementwise or definition.kind == "fused":
        return _LOOP
    if definition.kind == "source":
        return _SOURCE
    raise KeyError(f"the llvm backend declares no strategy for {op}")


_LOOP, _SOURCE = Strategy(LOOP), Strategy(SOURCE)

declare(OPS["stop_gradient"], Strategy(VIEW, views.identity_view))
declare(OPS["transpose"], Strategy(VIEW, views.transpose_view))
declare(OPS["broadcast_to"], Strategy(VIEW, views.broadcast_view))
declare(OPS["reshape"], Strategy(VIEW, views.reshape_view))  # of non-contiguous data: a copy (copies.py)
declare(OPS["getitem"], Strategy(VIEW, views.index_view))  # an integer-array index: gather.py
declare(OPS["matmul"], Strategy(GEMM))  # on integers, or of many batch elements: NumPy
declare(OPS["concatenate"], Strategy(NATIVE))
# at a basic index: loop_scatter.py; at one in-range index array: native_scatter.py; else NumPy
declare(OPS["scatter_add"], Strategy(NATIVE))
# Hurwitz's zeta (digamma's derivative is ζ(2, x)): SciPy's cython_special does not export it
declare(OPS["zeta"], Strategy(FALLBACK))

# loops and branches: called back from native code, they call their bodies' native code once a step
for _control, _run in control.RUNNERS.items():
    declare(OPS[_control], Strategy(FALLBACK, run=_run))

# at one in-range index array: native_scatter.py; else a copy of operand 0, written by NumPy
declare(OPS["index_update"], Strategy(NATIVE))


# ---- reductions ---------------------------------------------------------------------------------


def _sum_combine(block: Function, dtype: str, accumulator: str, value: str) -> str:
    t = scalar_ops.register_type(dtype)
    if scalar_ops.is_float(dtype):  # reassoc: the vectorizer may keep several partial sums
        return block.emit(f"fadd reassoc contract {t} {accumulator}, {value}", "acc")
    return block.emit(f"add {t} {accumulator}, {value}", "acc")


def _extremum(sign: int) -> tuple[IdentityRule, CombineRule]:
    """The identity and step of max (sign 1) or min (-1): NaN wins, as in NumPy."""

    def identity(dtype: str) -> str:
        if scalar_ops.is_float(dtype):
            return scalar_ops.float_literal(-sign * math.inf, dtype)
        info = np.iinfo(dtype)
        return str(info.min if sign > 0 else info.max)

    def combine(block: Function, dtype: str, accumulator: str, value: str) -> str:
        t = scalar_ops.register_type(dtype)
        if scalar_ops.is_float(dtype):
            return scalar_ops.nan_propagating_pick(block, t, accumulator, value, "ogt" if sign > 0 else "olt")
        return scalar_ops.int_pick(block, t, accumulator, value, "sgt" if sign > 0 else "slt")

    return identity, combine


declare(OPS["sum"], Strategy(REDUCE, identity=lambda dtype: scalar_ops.literal(0, dtype), combine=_sum_combine))
for _op, _sign in [(OPS["max"], 1), (OPS["min"], -1)]:
    _identity, _combine = _extremum(_sign)
    declare(_op, Strategy(REDUCE, identity=_identity, combine=_combine))


# ---- scans, products and orderings (chainrule/ir/scans.py) --------------------------------------


def _product_combine(block: Function, dtype: str, accumulator: str, value: str) -> str:
    t = scalar_ops.register_type(dtype)
    if scalar_ops.is_float(dtype):
        return block.emit(f"fmul reassoc contract {t} {accumulator}, {value}", "acc")
    return block.emit(f"mul {t} {accumulator}, {value}", "acc")


declare(OPS["prod"], Strategy(REDUCE, identity=lambda dtype: scalar_ops.literal(1, dtype), combine=_product_combine))
for _name in ("cumsum", "cumprod", "argmax", "argmin", "searchsorted"):
    declare(OPS[_name], Strategy(NATIVE))
# sorting is NumPy's own sort functions, called from native code (numpy_sort.py; a NumPy without
# NumPy 2's ABI: the callback)
for _name in ("sort", "argsort"):
    declare(OPS[_name], Strategy(NATIVE))
# selection: NumPy's partition (not in the C-API table), called back; median and quantiles of short
# lines sort natively instead (numpy_statistics.SELECT_FROM)
for _name in ("order_statistics", "rank_positions"):
    declare(OPS[_name], Strategy(FALLBACK))
# the Fourier transforms: NumPy's pocketfft loops, called from native code (pocketfft.py; a NumPy
# without NumPy 2's ufunc layout, or float16: the callback)
for _name in ("dft", "rdft", "irdft"):
    declare(OPS[_name], Strategy(NATIVE))
# the recursive filter: SciPy's lfilter, called back (its loop is a recurrence, not a map)
declare(OPS["lfilter"], Strategy(FALLBACK))

# ---- linear algebra (issue 16): SciPy's LAPACK called from native code (lapack_ops.py) ---------
# (on float16 or an empty matrix: the NumPy lowering, called back)
for _name in ("solve", "triangular_solve", "cholesky", "slogdet", "eigh", "eigvalsh", "svd", "svdvals", "qr"):
    declare(OPS[_name], Strategy(LAPACK))
# expm: scaling and squaring with a Padé approximant, its products BLAS gemm and its solve LAPACK
# gesv, the degree and the squarings chosen at run time (expm.py); its Fréchet derivative likewise
declare(OPS["expm"], Strategy(LAPACK))
declare(OPS["expm_frechet"], Strategy(LAPACK))
# convolution and max pooling (issue 22): im2col/col2im loops and BLAS gemm per group (conv.py), max
# pooling's loops (maxpool.py); on float16 or an empty operand: the NumPy lowering, called back
for _name in (
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "max_pool2d",
    "max_pool2d_scatter",
    "max_pool2d_gather",
):
    declare(OPS[_name], Strategy(NATIVE))
