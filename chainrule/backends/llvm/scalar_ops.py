"""The LLVM lowering of every elementwise primitive: one element at a time, as IR instructions.

How an op computes one element is found from its ``Op`` entry, in this order:

1. an emitter registered for the op here with ``@lowers(OPS["maximum"])``: hand-written IR for
   arithmetic, comparisons, ``where``, ``cast`` and the ops whose NumPy semantics (NaN, signed
   zeros, ties) a formula would miss;
2. ``Op.libm``: the C math function computing it (``block.math``: an intrinsic or libm, vectorized
   by libmvec), in float32/float64;
3. ``Op.sympy``: its definition, lowered by composing the lowerings of the functions it is made of
   (``composed.py``), so an op defined as ``log(x)/log(2)`` needs nothing here.

Each computes what the op's NumPy lowering computes, NaN and signed zeros included where NumPy
defines them (``np.maximum`` propagates NaN from either side and returns its second operand on
ties; ``relu`` is ``np.maximum(x, 0)``; ``softplus`` is ``np.logaddexp(0, x)``'s formula).

Fast-math flags: ``contract`` only (FMA contraction, a rounding-level change). Never
``nnan``/``ninf``: NaN must propagate exactly as in NumPy so NaN checking works.

Registers hold floats as ``double``/``float``, integers as ``iN`` and booleans as ``i1``
(``i8`` in memory, like NumPy's bool).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from chainrule.backends.llvm import composed, special_ops
from chainrule.backends.llvm.irtext import Function
from chainrule.errors import UnsupportedError
from chainrule.ir import OPS, Op
from chainrule.ir.ops import elementwise_dtype

# dtype -> (register type, memory type)
TYPES = {
    "float64": ("double", "double"),
    "float32": ("float", "float"),
    "int64": ("i64", "i64"),
    "int32": ("i32", "i32"),
    "int16": ("i16", "i16"),
    "int8": ("i8", "i8"),
    "bool": ("i1", "i8"),
}
FLOAT_FLAGS = "contract"
FLOAT, INT, BOOL = "float", "int", "bool"


def register_type(dtype: str) -> str:
    try:
        return TYPES[dtype][0]
    except KeyError:
        raise UnsupportedError(f"the llvm backend has no {dtype} arithmetic") from None


def memory_type(dtype: str) -> str:
    return TYPES[dtype][1] if dtype in TYPES else register_type(dtype)


def is_float(dtype: str) -> bool:
    return dtype in ("float64", "float32")


def kind_of(dtype: str) -> str:
    """``FLOAT``, ``INT`` or ``BOOL``: which arithmetic a dtype's registers use."""
    return FLOAT if is_float(dtype) else BOOL if dtype == "bool" else INT


def float_literal(value: float, dtype: str) -> str:
    """An exact IR literal: LLVM writes both float and double constants as the double's bits."""
    if dtype == "float32":
        value = float(np.float32(value))
    return "0x{:016X}".format(struct.unpack("<Q", struct.pack("<d", float(value)))[0])


def literal(value: float | bool, dtype: str) -> str:
    if is_float(dtype):
        return float_literal(float(value), dtype)
    if dtype == "bool":
        return "true" if bool(value) else "false"
    return str(int(value))


def convert(block: Function, value: str, source: str, target: str) -> str:
    """``value`` of dtype ``source`` as dtype ``target`` (NumPy's astype, NaN to bool is True)."""
    if source == target:
        return value
    to_type, from_type = register_type(target), register_type(source)
    if target == "bool":
        if is_float(source):
            return block.emit(f"fcmp une {from_type} {value}, 0.0")
        return block.emit(f"icmp ne {from_type} {value}, 0")
    if is_float(target):
        if is_float(source):
            wider = source == "float32"
            return block.emit(f"{'fpext' if wider else 'fptrunc'} {from_type} {value} to {to_type}")
        return block.emit(f"{'uitofp' if source == 'bool' else 'sitofp'} {from_type} {value} to {to_type}")
    if is_float(source):
        # saturating: NaN gives 0 and out-of-range values clamp (NumPy leaves these undefined)
        block.declare(f"declare {to_type} @llvm.fptosi.sat.{to_type}.{from_type}({from_type})")
        return block.emit(f"call {to_type} @llvm.fptosi.sat.{to_type}.{from_type}({from_type} {value})")
    from_bits, to_bits = int(from_type[1:]), int(to_type[1:])
    if from_bits < to_bits:
        return block.emit(f"{'zext' if source == 'bool' else 'sext'} {from_type} {value} to {to_type}")
    if from_bits > to_bits:
        return block.emit(f"trunc {from_type} {value} to {to_type}")
    return value


# ---- the registry ----------------------------------------------------------------------------

# (block, operand registers, operand dtypes, result dtype) -> the result's register
EmitRule = Callable[[Function, list[str], list[str], str], str]
# (operand dtypes, result dtype) -> the dtypes operands are converted to before the op computes
OperandDtypes = Callable[[list[str], str], list[str]]


@dataclass(frozen=True)
class Emitter:
    """Hand-written IR for one op: ``emit(block, operands, operand dtypes, result dtype) -> register``.

    ``kinds``: the result dtypes' kinds it computes (the rest run through NumPy);
    ``operand_dtypes(operand dtypes, result dtype)``: the dtypes operands are converted to first.
    """

    emit: EmitRule
    kinds: frozenset[str]
    operand_dtypes: OperandDtypes


def as_result(operand_dtypes: list[str], result_dtype: str) -> list[str]:
    """Operands computed in the result's dtype (NumPy's promotion for arithmetic)."""
    return [result_dtype] * len(operand_dtypes)


def common_dtype(operand_dtypes: list[str], result_dtype: str) -> list[str]:
    """Operands compared in their common dtype (the result is bool)."""
    common = np.result_type(*operand_dtypes).name
    return [common] * len(operand_dtypes)


def as_bool(operand_dtypes: list[str], result_dtype: str) -> list[str]:
    return ["bool"] * len(operand_dtypes)


EMITTERS: dict[str, Emitter] = {}


def lowers(
    *ops: Op, kinds: Iterable[str] = (FLOAT, INT, BOOL), operands: OperandDtypes = as_result
) -> Callable[[EmitRule], EmitRule]:
    """Register the decorated function as the scalar lowering of ``ops`` (entries of ``OPS``)."""

    def register(emit: EmitRule) -> EmitRule:
        for op in ops:
            if OPS.get(op.name) is not op:
                raise ValueError(f"{op.name!r} is not an op of the table")
            EMITTERS[op.name] = Emitter(emit, frozenset(kinds), operands)
        return emit

    return register


def operand_dtypes(op: str, dtypes: list[str], result_dtype: str) -> list[str]:
    """The dtype each operand is converted to before ``op`` computes (NumPy's type promotion)."""
    emitter = EMITTERS.get(op)
    return (emitter.operand_dtypes if emitter is not None else as_result)(list(dtypes), result_dtype)


def lowerable(op: str, dtype: str) -> bool:
    """Can native code compute one element of ``op`` with a result of ``dtype``?"""
    if dtype not in TYPES:
        return False
    emitter = EMITTERS.get(op)
    if emitter is not None:
        return kind_of(dtype) in emitter.kinds
    if not is_float(dtype):
        return False  # libm and the SymPy definitions compute in floating point
    return OPS[op].libm is not None or composed.composition(OPS[op], _is_native) is not None


def emit(block: Function, op: str, operands: list[str], types: list[str], dtype: str) -> str:
    """One element of ``op`` on ``operands`` (already converted to ``types``, the dtypes
    ``operand_dtypes`` gives) as ``dtype``; ``block.math(function, dtype, *arguments)`` emits a
    libm call (chainrule's mathlib picks intrinsics and vector variants)."""
    emitter = EMITTERS.get(op)
    if emitter is not None:
        if kind_of(dtype) not in emitter.kinds:
            raise UnsupportedError(f"the llvm backend cannot lower {op} on {dtype}")
        return emitter.emit(block, operands, types, dtype)
    if not is_float(dtype):
        raise UnsupportedError(f"{op} on {dtype}")
    definition = OPS[op]
    if definition.libm is not None:
        return block.math(definition.libm, dtype, *operands)
    steps = composed.composition(definition, _is_native)
    if steps is None:
        raise UnsupportedError(
            f"the llvm backend cannot lower {op}: no emitter, libm function or SymPy "
            "definition made of lowerable functions"
        )
    return _emit_composition(block, steps, operands, dtype)


def _is_native(op: str) -> bool:
    """Is ``op`` lowered without its SymPy definition (an emitter or libm)? Compositions use only these."""
    return op in EMITTERS or OPS[op].libm is not None


def _emit_composition(block: Function, steps: tuple[composed.Step, ...], operands: list[str], dtype: str) -> str:
    """The steps of a ``composed.composition``, each value in ``dtype`` but what an inner op gives
    in another (a comparison's bool)."""
    values: list[tuple[str, str]] = []  # (register, dtype) per step
    for step in steps:
        if step[0] == composed.OPERAND:
            values.append((operands[step[1]], dtype))
        elif step[0] == composed.LITERAL:
            values.append((literal(step[1], dtype), dtype))
        else:
            kind, name, arguments = step
            registers = [values[k][0] for k in arguments]
            dtypes = [values[k][1] for k in arguments]
            if kind == composed.LIBM:
                values.append((block.math(name, dtype, *registers), dtype))
                continue
            result_dtype = elementwise_dtype(name, tuple(dtypes))
            targets = operand_dtypes(name, dtypes, result_dtype)
            converted = [convert(block, r, s, t) for r, s, t in zip(registers, dtypes, targets)]
            values.append((emit(block, name, converted, targets, result_dtype), result_dtype))
    register, value_dtype = values[-1]
    return convert(block, register, value_dtype, dtype)


# ---- helpers shared by emitters (and by codegen's reductions) ----------------------------------


def float_binary(block: Function, opcode: str, t: str, a: str, b: str) -> str:
    return block.emit(f"{opcode} {FLOAT_FLAGS} {t} {a}, {b}")


def nan_propagating_pick(block: Function, t: str, a: str, b: str, ordered: str) -> str:
    """``a`` where ``a (ordered) b`` holds or ``a`` is NaN, else ``b``: np.maximum (ogt) / np.minimum (olt)."""
    picks_a = block.emit(f"fcmp {ordered} {t} {a}, {b}")
    a_is_nan = block.emit(f"fcmp uno {t} {a}, {a}")
    either = block.emit(f"or i1 {picks_a}, {a_is_nan}")
    return block.emit(f"select i1 {either}, {t} {a}, {t} {b}")


def int_pick(block: Function, t: str, a: str, b: str, predicate: str) -> str:
    """``a`` where ``a (predicate) b`` holds, else ``b``."""
    return block.emit(f"select i1 {block.emit(f'icmp {predicate} {t} {a}, {b}')}, {t} {a}, {t} {b}")


def fabs(block: Function, t: str, value: str) -> str:
    suffix = {"double": "f64", "float": "f32"}[t]
    block.declare(f"declare {t} @llvm.fabs.{suffix}({t})")
    return block.emit(f"call {t} @llvm.fabs.{suffix}({t} {value})")


# ---- the hand-written emitters ------------------------------------------------------------------
# (block, operands x, operand dtypes, result dtype) -> register. NumPy's bool arithmetic: + is or,
# * is and, maximum/minimum likewise; the rest is not defined on bools.


@lowers(OPS["stop_gradient"])
def _identity(block: Function, x: list[str], types: list[str], dtype: str) -> str:
    return x[0]


@lowers(OPS["cast"], operands=lambda dtypes, result: list(dtypes))
def _cast(block: Function, x: list[str], types: list[str], dtype: str) -> str:
    return convert(block, x[0], types[0], dtype)


@lowers(OPS["neg"], kinds=(FLOAT, INT))
def _neg(block: Function, x: list[str], types: list[str], dtype: str) -> str:
    t = register_type(dtype)
    return block.emit(f"fneg {t} {x[0]}") if is_float(dtype) else block.emit(f"sub {t} 0, {x[0]}")


def _arithmetic(float_opcode: str, int_opcode: str | None, bool_opcode: str | None) -> EmitRule:
    def emit_arithmetic(block: Function, x: list[str], types: list[str], dtype: str) -> str:
        t = register_type(dtype)
        if is_float(dtype):
            return float_binary(block, float_opcode, t, x[0], x[1])
        return block.emit(f"{bool_opcode if dtype == 'bool' else int_opcode} {t} {x[0]}, {x[1]}")

    return emit_arithmetic


lowers(OPS["add"])(_arithmetic("fadd", "add", "or"))
lowers(OPS["sub"], kinds=(FLOAT, INT))(_arithmetic("fsub", "sub", None))
lowers(OPS["mul"])(_arithmetic("fmul", "mul", "and"))
lowers(OPS["div"], kinds=(FLOAT,))(_arithmetic("fdiv", None, None))


@lowers(OPS["abs"])
def _abs(block: Function, x: list[str], types: list[str], dtype: str) -> str:
    t = register_type(dtype)
    if dtype == "bool":
        return x[0]
    if is_float(dtype):
        return fabs(block, t, x[0])
    return int_pick(block, t, x[0], block.emit(f"sub {t} 0, {x[0]}"), "sgt")


@lowers(OPS["sign"], kinds=(FLOAT, INT))
def _sign(block: Function, x: list[str], types: list[str], dtype: str) -> str:
    t = register_type(dtype)
    if not is_float(dtype):
        positive = block.emit(f"zext i1 {block.emit(f'icmp sgt {t} {x[0]}, 0')} to {t}")
        negative = block.emit(f"zext i1 {block.emit(f'icmp slt {t} {x[0]}, 0')} to {t}")
        return block.emit(f"sub {t} {positive}, {negative}")
    zero = literal(0.0, dtype)
    positive = block.emit(f"fcmp ogt {t} {x[0]}, {zero}")
    negative = block.emit(f"fcmp olt {t} {x[0]}, {zero}")
    is_nan = block.emit(f"fcmp uno {t} {x[0]}, {x[0]}")
    magnitude = block.emit(f"select i1 {negative}, {t} {literal(-1.0, dtype)}, {t} {zero}")
    signed = block.emit(f"select i1 {positive}, {t} {literal(1.0, dtype)}, {t} {magnitude}")
    return block.emit(f"select i1 {is_nan}, {t} {x[0]}, {t} {signed}")


def _extremum(float_order: str, int_predicate: str, bool_opcode: str) -> EmitRule:
    def emit_extremum(block: Function, x: list[str], types: list[str], dtype: str) -> str:
        t = register_type(dtype)
        if dtype == "bool":
            return block.emit(f"{bool_opcode} i1 {x[0]}, {x[1]}")
        if is_float(dtype):
            return nan_propagating_pick(block, t, x[0], x[1], float_order)
        return int_pick(block, t, x[0], x[1], int_predicate)

    return emit_extremum


lowers(OPS["maximum"])(_extremum("ogt", "sgt", "or"))
lowers(OPS["minimum"])(_extremum("olt", "slt", "and"))


@lowers(OPS["relu"])
def _relu(
    block: Function, x: list[str], types: list[str], dtype: str
) -> str:  # np.maximum(x, 0): x where x > 0 or x is NaN
    t = register_type(dtype)
    if dtype == "bool":
        return x[0]
    if not is_float(dtype):
        return int_pick(block, t, x[0], "0", "sgt")
    zero = literal(0.0, dtype)
    return block.emit(f"select i1 {block.emit(f'fcmp ugt {t} {x[0]}, {zero}')}, {t} {x[0]}, {t} {zero}")


@lowers(OPS["clip"], kinds=(FLOAT, INT))
def _clip(
    block: Function, x: list[str], types: list[str], dtype: str
) -> str:  # np.clip: min(max(x, lo), hi), NaN from any operand
    t = register_type(dtype)
    if is_float(dtype):
        return nan_propagating_pick(block, t, nan_propagating_pick(block, t, x[0], x[1], "ogt"), x[2], "olt")
    return int_pick(block, t, int_pick(block, t, x[0], x[1], "sgt"), x[2], "slt")


@lowers(OPS["sigmoid"], kinds=(FLOAT,))
def _sigmoid(
    block: Function, x: list[str], types: list[str], dtype: str
) -> str:  # 1 / (1 + exp(-x)): exact limits 0 and 1, NaN stays NaN
    t, one = register_type(dtype), literal(1.0, dtype)
    exp = block.math("exp", dtype, block.emit(f"fneg {t} {x[0]}"))
    return float_binary(block, "fdiv", t, one, float_binary(block, "fadd", t, one, exp))


@lowers(OPS["softplus"], kinds=(FLOAT,))
def _softplus(
    block: Function, x: list[str], types: list[str], dtype: str
) -> str:  # np.logaddexp(0, x) = max(x, 0) + log1p(exp(-|x|))
    t, zero = register_type(dtype), literal(0.0, dtype)
    tail = block.math("log1p", dtype, block.math("exp", dtype, block.emit(f"fneg {t} {fabs(block, t, x[0])}")))
    positive = block.emit(f"select i1 {block.emit(f'fcmp ogt {t} {x[0]}, {zero}')}, {t} {x[0]}, {t} {zero}")
    return float_binary(block, "fadd", t, positive, tail)


@lowers(OPS["where"], operands=lambda dtypes, result: ["bool", result, result])
def _where(block: Function, x: list[str], types: list[str], dtype: str) -> str:
    t = register_type(dtype)
    return block.emit(f"select i1 {x[0]}, {t} {x[1]}, {t} {x[2]}")


def _comparison(float_predicate: str, signed: str, unsigned: str) -> EmitRule:
    def emit_comparison(block: Function, x: list[str], types: list[str], dtype: str) -> str:
        common = types[0]
        ct = register_type(common)
        if is_float(common):
            return block.emit(f"fcmp {float_predicate} {ct} {x[0]}, {x[1]}")
        return block.emit(f"icmp {unsigned if common == 'bool' else signed} {ct} {x[0]}, {x[1]}")

    return emit_comparison


for _op, _predicates in [
    (OPS["lt"], ("olt", "slt", "ult")),
    (OPS["le"], ("ole", "sle", "ule")),
    (OPS["gt"], ("ogt", "sgt", "ugt")),
    (OPS["ge"], ("oge", "sge", "uge")),
    (OPS["eq"], ("oeq", "eq", "eq")),
    (OPS["ne"], ("une", "ne", "ne")),
]:
    lowers(_op, operands=common_dtype)(_comparison(*_predicates))


def _logical(opcode: str, operand: str = "") -> EmitRule:
    def emit_logical(block: Function, x: list[str], types: list[str], dtype: str) -> str:
        return block.emit(f"{opcode} i1 {x[0]}, {operand or x[1]}")

    return emit_logical


lowers(OPS["logical_and"], operands=as_bool)(_logical("and"))
lowers(OPS["logical_or"], operands=as_bool)(_logical("or"))
lowers(OPS["logical_not"], operands=as_bool)(_logical("xor", "true"))


# scipy.special's functions by SciPy's cython_special, and np.remainder's formula: special_ops.py
for _name, _emit in special_ops.EMITTERS.items():
    lowers(OPS[_name], kinds=(FLOAT, INT) if _name == "mod" else (FLOAT,))(_emit)
