"""The op table: everything about a primitive is declared once, in one ``Op`` record.

An ``Op`` holds the primitive's

- kind (``elementwise``, ``reduction``, ``matmul``, ``shape``, ``index``, ``source``, ``fused``)
  and whether its result may be a view of its first operand (``view``);
- shape/dtype rule (``infer``) and FLOP cost (``flops``);
- NumPy and SciPy functions it implements as they are (``implements``: the frontend's dispatch
  table is built from these), and its NumPy lowering (a source template, also compiled into the
  eager implementation; ``numpy_out``, the in-place form fused regions use, is derived from it);
- how native code computes one element (``libm``: the C math function; ops without one are
  lowered from their SymPy definition or by an emitter registered for the op in
  ``chainrule.backends.llvm.scalar_ops``);
- VJP rules (one per operand, written with ``chainrule.ir.builder`` values so they read like the
  textbook formula), its JVP rule where forward mode cannot derive it from the VJP rules (see
  ``chainrule.compiler.forward``), and its batching rule (``batch``; elementwise ops share one);
- SymPy definition, for elementwise ops (the source of truth for their derivatives).

The entries live in ``elementwise.py`` and ``structural.py``; ``CONTRIBUTING.md`` walks through
adding one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir import npfuncs
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.ir.builder import Value

# An op's attributes by name: ints, axis tuples, dtype names, index templates, constant arrays.
Attrs = dict[str, Any]
# (operand types, attrs) -> result type; raises ShapeError on operands that do not fit.
InferRule = Callable[[list[TensorType], Attrs], TensorType]
# (operand types, result type, attrs) -> floating-point operations of one evaluation.
FlopsRule = Callable[[list[TensorType], TensorType, Attrs], int]
# A NumPy lowering: a str template "np.sin({0})" (attrs by name) or (arg names, attrs) -> source.
NumpyTemplate = str | Callable[[list[str], Attrs], str]
# A VJP rule for one operand: (g, y, *operands, **attrs) -> cotangent of that operand (None: no
# gradient), where g is the output cotangent and y the op's own output (so tanh' = 1 - y**2 can reuse it).
VjpRule = Callable[..., Optional["Value"]]
# A JVP rule: (tangents, y, *operands, **attrs) -> tangent of y, a tangent None for an operand without one.
JvpRule = Callable[..., "Value"]

# Op.jvp markers: the op is linear in its float operands (its JVP is the op applied to the
# tangents), or multilinear (its JVP is the product rule: the sum over operands of the op with
# one operand replaced by its tangent).
LINEAR = "linear"
MULTILINEAR = "multilinear"

# Binary ops whose value at equal operands does not depend on them, where it is defined: a - a = 0,
# a / a = 1, arctan2(a, a) = ±π/4, fmod(a, a) = mod(a, a) = 0. A derivative through such a node
# is exactly zero, not ∂f/∂x·da + ∂f/∂y·da, which is inf - inf = NaN where da is infinite (a
# sqrt'(0) or cbrt'(0) further on): both modes send nothing through it. The value keeps NumPy's
# semantics (inf - inf is NaN), so simplify still folds x - x only when x is never inf or NaN.
SELF_CANCELLING = frozenset({"sub", "div", "arctan2", "fmod", "mod"})


def cancels_itself(op_name: str, operands: Sequence[int]) -> bool:
    """True for ``op(a, a)`` with ``op`` in ``SELF_CANCELLING``: no derivative flows through it."""
    return op_name in SELF_CANCELLING and len(operands) == 2 and operands[0] == operands[1]


@dataclass(frozen=True)
class Op:
    name: str
    kind: str  # "elementwise", "reduction", "matmul", "linalg", "shape", "index", "source", "scan", "order", ...
    arity: int | None  # None: variadic
    infer: InferRule
    numpy: NumpyTemplate
    # One rule (or None: no gradient) per operand, or (for variadic ops) operand position -> rule;
    # None: not differentiable.
    vjp: tuple[VjpRule | None, ...] | Callable[[int], VjpRule | None] | None = None
    # Forward mode: None derives the JVP from ``vjp`` (elementwise ops), else LINEAR, MULTILINEAR or a
    # rule (tangents, y, *operands, **attrs) -> tangent of y, with None for an operand without tangent.
    jvp: str | JvpRule | None = None
    flops: FlopsRule = lambda ins, out, attrs: 0
    sympy: Callable[..., Any] | None = None  # elementwise: the op's definition as a SymPy expression
    derivative_note: str = ""  # a kink or domain convention, shown in docs and tests
    interned: bool = True  # hash-consed: an identical (op, args, attrs) node is reused
    # NumPy/SciPy callables that are this op applied to their own arguments (np.sin, np.add,
    # scipy.special.erf): the tracing frontend dispatches them here.
    implements: tuple[Callable[..., Any], ...] = ()
    # The in-place form a fused region writes over a buffer ("np.sin({0}, out={out})"); None
    # derives it from a ufunc-call template (see ``in_place``).
    numpy_out: str | None = None
    # Elementwise: the C math function computing one element (its float64 name, "sin", "asinh"),
    # which native code calls (vectorized by libmvec where it has the function).
    libm: str | None = None
    # (operands, batched, logical types, out type, attrs, size) -> Value: the op on values with a
    # leading batch axis (see chainrule.compiler.batch); None for elementwise ops, which share one.
    batch: Callable[..., Value] | None = None
    view: bool = False  # the result may be a view of operand 0 (or operand 0 itself)

    @property
    def is_elementwise(self) -> bool:
        return self.kind == "elementwise"

    @property
    def is_reduction(self) -> bool:
        return self.kind == "reduction"

    @property
    def in_place(self) -> str | None:
        """The template computing this op into an existing buffer ``{out}``, or None.

        ``numpy_out`` when declared; else a template that is one NumPy/SciPy ufunc call on the
        operands in order (``np.sin({0})``, ``np.maximum({0}, {1})``) gains ``out={out}``.
        """
        if self.numpy_out is not None:
            return self.numpy_out
        template = self.numpy
        if not isinstance(template, str) or self.arity is None or not template.endswith(")"):
            return None
        call = template[: template.index("(")] if "(" in template else ""
        arguments = ", ".join("{" + str(i) + "}" for i in range(self.arity))
        if (
            call.startswith(("np.", "special."))
            and template == f"{call}({arguments})"
            and isinstance(_ufunc(call), np.ufunc)
        ):
            return f"{call}({arguments}, out={{out}})"
        return None

    def render(self, arg_names: list[str], attrs: Attrs) -> str:
        """The NumPy expression computing this op from named operands."""
        if callable(self.numpy):
            return self.numpy(arg_names, attrs)
        if not attrs:
            return self.numpy.format(*arg_names)
        return self.numpy.format(*arg_names, **{k: repr(v) for k, v in attrs.items()})

    def vjp_rule(self, operand_index: int) -> VjpRule | None:
        """The VJP rule for one operand, or None when no gradient flows to it."""
        if self.vjp is None:
            return None
        if callable(self.vjp):  # variadic ops build the rule for each operand position
            return self.vjp(operand_index)
        return self.vjp[operand_index]

    def refuses_gradient(self, operand_index: int) -> bool:
        """Does this operand's rule raise when a gradient reaches it (its derivative has no closed
        form: ``special_functions.refused_rule``)?"""
        return getattr(self.vjp_rule(operand_index), "refused", False)

    def result_type(self, types: tuple[TensorType, ...], frozen_attrs: tuple[tuple[str, Any], ...]) -> TensorType:
        """``infer(types, attrs)``, remembered per (op, operand types, attributes).

        Type rules are pure, and a graph repeats few of them: the 100,000 nodes of a
        chain of sines infer one type. Sources are not remembered: a constant's
        attribute is its array, an input's is its position; nor are control ops (loops, branches)
        and fused nodes: the table would keep their bodies alive after their graphs are gone (a
        fused body, with its steps' names and source lines, is made once per fusion and never
        looked up again: a long fuzzing run kept ~1.5 KB per fused node). Equal results are one
        object (``TensorType.interned``), so the next lookup keyed by them compares
        operand types by identity.
        """
        if self.kind in ("source", "control", "fused"):  # Bodies and FusedBodies: not kept here
            return self.infer(list(types), dict(frozen_attrs)).interned()
        key = (self.name, types, frozen_attrs)
        try:
            return INFERRED[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable attribute: nothing to remember it by
            return self.infer(list(types), dict(frozen_attrs)).interned()
        inferred = self.infer(list(types), dict(frozen_attrs)).interned()  # a ShapeError is raised, not remembered
        if len(INFERRED) >= _INFERRED_MAX:
            INFERRED.clear()
        INFERRED[key] = inferred
        return inferred

    def eager(self, *arrays: np.ndarray, **attrs: Any) -> np.ndarray:
        """Evaluate the op on concrete arrays through its NumPy lowering (one spelling of the op)."""
        return _compiled_lowering(self.name, len(arrays), _freeze(attrs))(*arrays)

    def evaluate(self, operands: Sequence[Any], attrs: dict[str, Any]) -> np.ndarray:
        """The op's value on constant operands (arrays or Python numbers), of its result type's dtype."""
        arrays = [np.asarray(operand) for operand in operands]
        types = tuple(TensorType(a.shape, a.dtype.name) for a in arrays)
        result_type = self.result_type(types, _freeze(attrs))
        with np.errstate(all="ignore"):  # as the compiled code runs it
            return np.asarray(self.eager(*arrays, **attrs), dtype=result_type.dtype)


OPS: dict[str, Op] = {}


def _ufunc(dotted: str) -> object:
    """The object a template's call names (``np.sin``, ``special.expit``), or None."""
    module_name, _, attribute = dotted.partition(".")
    return getattr(npfuncs.NAMESPACE.get(module_name), attribute, None)


# Op.result_type's memory: (op name, operand types, frozen attrs) -> result type. Graph.add reads
# it directly (the lookup is on its hot path); a miss goes through result_type.
INFERRED: dict[tuple[str, tuple[TensorType, ...], tuple[tuple[str, Any], ...]], TensorType] = {}
_INFERRED_MAX = 1 << 16


def register(op: Op) -> Op:
    """Add ``op`` to the table ``OPS`` (once per name)."""
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} registered twice")
    OPS[op.name] = op
    return op


def _freeze(attrs: Attrs) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(attrs.items()))


@functools.lru_cache(maxsize=4096)
def _compiled_lowering(
    op_name: str, arity: int, frozen_attrs: tuple[tuple[str, Any], ...]
) -> Callable[..., np.ndarray]:
    names = [f"a{i}" for i in range(arity)]
    expr = OPS[op_name].render(names, dict(frozen_attrs))
    lowering: Callable[..., np.ndarray] = eval(f"lambda {', '.join(names)}: {expr}", npfuncs.NAMESPACE)
    return lowering


# ---- shape and dtype rules shared by many ops -------------------------------------------


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy's broadcast shape of ``shapes``; a ShapeError when they do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(list(s)) for s in shapes)
        raise ShapeError(f"shapes {listed} do not broadcast together") from None


@functools.cache
def elementwise_dtype(op_name: str, dtypes: tuple[str, ...]) -> str:
    """The dtype NumPy gives this op's result, found by running the lowering on empty arrays."""
    empties = [np.empty(0, dtype=d) for d in dtypes]
    with np.errstate(all="ignore"):
        return np.asarray(OPS[op_name].eager(*empties)).dtype.name


def infer_elementwise(op_name: str) -> InferRule:
    """The type rule of an elementwise op: operands broadcast, the dtype NumPy's result has."""

    def infer(types: list[TensorType], attrs: Attrs) -> TensorType:
        shape = broadcast_shapes(*(t.shape for t in types))
        return TensorType(shape, elementwise_dtype(op_name, tuple(t.dtype for t in types)))

    return infer


def elementwise_flops(per_element: int) -> FlopsRule:
    """The cost rule of an elementwise op: ``per_element`` operations per result element."""
    return lambda ins, out, attrs: per_element * out.size


def reduced_shape(shape: tuple[int, ...], axis: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    """The shape a reduction over ``axis`` leaves (the axes kept as 1 with ``keepdims``)."""
    if keepdims:
        return tuple(1 if i in axis else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axis)


def normalize_axis(axis: int | np.integer | Iterable[int] | None, ndim: int) -> tuple[int, ...]:
    """``axis`` as a sorted tuple of non-negative ints (None means every axis)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of bounds for an array of {ndim} dimensions")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axis}")
    return tuple(sorted(out))


def size_of(shape: tuple[int, ...]) -> int:
    """The number of elements of an array of ``shape``."""
    return math.prod(shape)
