"""The LLVM lowering of every elementwise primitive: one scalar at a time, as IR instructions.

``emit(block, op, operands, attrs, result_dtype)`` appends the instructions computing one
element of ``op`` and returns the SSA name of the result. Each entry computes what the
op's NumPy lowering computes, NaN and signed zeros included where NumPy defines them
(``np.maximum`` propagates NaN from either side and returns its second operand on ties;
``relu`` is ``np.maximum(x, 0)``; ``softplus`` is ``np.logaddexp(0, x)``'s formula).

Fast-math flags: ``contract`` only (FMA contraction, a rounding-level change). Never
``nnan``/``ninf``: NaN must propagate exactly as in NumPy so NaN checking works.

Registers hold floats as ``double``/``float``, integers as ``iN`` and booleans as ``i1``
(``i8`` in memory, like NumPy's bool).
"""

from __future__ import annotations

import struct

import numpy as np

from chainrule.errors import UnsupportedError

# dtype -> (register type, memory type)
TYPES = {
    "float64": ("double", "double"), "float32": ("float", "float"),
    "int64": ("i64", "i64"), "int32": ("i32", "i32"), "int16": ("i16", "i16"), "int8": ("i8", "i8"),
    "bool": ("i1", "i8"),
}
FLOAT_FLAGS = "contract"


def register_type(dtype: str) -> str:
    try:
        return TYPES[dtype][0]
    except KeyError:
        raise UnsupportedError(f"the llvm backend has no {dtype} arithmetic") from None


def memory_type(dtype: str) -> str:
    return TYPES[dtype][1] if dtype in TYPES else register_type(dtype)


def is_float(dtype: str) -> bool:
    return dtype in ("float64", "float32")


def float_literal(value: float, dtype: str) -> str:
    """An exact IR literal: LLVM writes both float and double constants as the double's bits."""
    if dtype == "float32":
        value = float(np.float32(value))
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", float(value)))[0]


def literal(value, dtype: str) -> str:
    if is_float(dtype):
        return float_literal(float(value), dtype)
    if dtype == "bool":
        return "true" if bool(value) else "false"
    return str(int(value))


def convert(block, value: str, source: str, target: str) -> str:
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


# ---- helpers -------------------------------------------------------------------------------

def _fbin(block, opcode, t, a, b):
    return block.emit(f"{opcode} {FLOAT_FLAGS} {t} {a}, {b}")


def _nan_propagating_pick(block, t, a, b, ordered):
    """``a`` where ``a (ordered) b`` holds or ``a`` is NaN, else ``b``: np.maximum (ogt) / np.minimum (olt)."""
    picks_a = block.emit(f"fcmp {ordered} {t} {a}, {b}")
    a_is_nan = block.emit(f"fcmp uno {t} {a}, {a}")
    either = block.emit(f"or i1 {picks_a}, {a_is_nan}")
    return block.emit(f"select i1 {either}, {t} {a}, {t} {b}")


def _int_pick(block, t, a, b, predicate):
    return block.emit(f"select i1 {block.emit(f'icmp {predicate} {t} {a}, {b}')}, {t} {a}, {t} {b}")


def _one(dtype):
    return literal(1, dtype)


# ---- the ops ---------------------------------------------------------------------------------

_MATH = {"exp", "expm1", "log", "log1p", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "tanh", "arcsin",
         "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "erf"}
_COMPARISONS = {"lt": ("olt", "slt", "ult"), "le": ("ole", "sle", "ule"), "gt": ("ogt", "sgt", "ugt"),
                "ge": ("oge", "sge", "uge"), "eq": ("oeq", "eq", "eq"), "ne": ("une", "ne", "ne")}


def operand_dtypes(op: str, operand_dtypes: list[str], result_dtype: str) -> list[str]:
    """The dtype each operand is converted to before ``op`` computes (NumPy's type promotion)."""
    if op in _COMPARISONS:
        common = np.result_type(*operand_dtypes).name
        return [common, common]
    if op in ("logical_and", "logical_or", "logical_not"):
        return ["bool"] * len(operand_dtypes)
    if op == "where":
        return ["bool", result_dtype, result_dtype]
    if op == "cast":
        return list(operand_dtypes)
    return [result_dtype] * len(operand_dtypes)


def emit(block, op: str, operands: list[str], types: list[str], dtype: str) -> str:
    """One element of ``op`` on ``operands`` (already converted to ``types``, the dtypes
    ``operand_dtypes`` gives) as ``dtype``.

    ``block.math(function, dtype, argument)`` emits a transcendental call (chainrule's
    mathlib picks intrinsics and vector variants).
    """
    t = register_type(dtype)
    floating = is_float(dtype)
    if op in _MATH:
        if not floating:
            raise UnsupportedError(f"{op} on {dtype}")
        return block.math(op, dtype, operands[0])
    if op in ("stop_gradient",):
        return operands[0]
    if op == "cast":
        return convert(block, operands[0], types[0], dtype)
    if op in _COMPARISONS:
        common = types[0]
        float_predicate, signed, unsigned = _COMPARISONS[op]
        ct = register_type(common)
        if is_float(common):
            return block.emit(f"fcmp {float_predicate} {ct} {operands[0]}, {operands[1]}")
        return block.emit(f"icmp {unsigned if common == 'bool' else signed} {ct} {operands[0]}, {operands[1]}")
    if op == "logical_and":
        return block.emit(f"and i1 {operands[0]}, {operands[1]}")
    if op == "logical_or":
        return block.emit(f"or i1 {operands[0]}, {operands[1]}")
    if op == "logical_not":
        return block.emit(f"xor i1 {operands[0]}, true")
    if op == "where":
        return block.emit(f"select i1 {operands[0]}, {t} {operands[1]}, {t} {operands[2]}")
    if dtype == "bool":
        # NumPy's bool arithmetic: + is or, * is and; the rest is not defined on bools
        if op in ("add", "maximum"):
            return block.emit(f"or i1 {operands[0]}, {operands[1]}")
        if op in ("mul", "minimum"):
            return block.emit(f"and i1 {operands[0]}, {operands[1]}")
        if op in ("abs", "relu"):
            return operands[0]
        raise UnsupportedError(f"{op} on bool")
    if floating:
        return _emit_float(block, op, operands, t, dtype)
    return _emit_int(block, op, operands, t)


def _emit_float(block, op, x, t, dtype):
    zero = literal(0.0, dtype)
    if op == "neg":
        return block.emit(f"fneg {t} {x[0]}")
    if op in ("add", "sub", "mul", "div"):
        return _fbin(block, {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}[op], t, x[0], x[1])
    if op == "abs":
        return _fabs(block, t, x[0])
    if op == "sign":
        positive = block.emit(f"fcmp ogt {t} {x[0]}, {zero}")
        negative = block.emit(f"fcmp olt {t} {x[0]}, {zero}")
        is_nan = block.emit(f"fcmp uno {t} {x[0]}, {x[0]}")
        magnitude = block.emit(f"select i1 {negative}, {t} {literal(-1.0, dtype)}, {t} {zero}")
        signed = block.emit(f"select i1 {positive}, {t} {_one(dtype)}, {t} {magnitude}")
        return block.emit(f"select i1 {is_nan}, {t} {x[0]}, {t} {signed}")
    if op == "maximum":
        return _nan_propagating_pick(block, t, x[0], x[1], "ogt")
    if op == "minimum":
        return _nan_propagating_pick(block, t, x[0], x[1], "olt")
    if op == "relu":  # np.maximum(x, 0): x where x > 0 or x is NaN
        return block.emit(f"select i1 {block.emit(f'fcmp ugt {t} {x[0]}, {zero}')}, {t} {x[0]}, {t} {zero}")
    if op == "clip":  # np.clip: min(max(x, lo), hi), NaN from any operand
        return _nan_propagating_pick(block, t, _nan_propagating_pick(block, t, x[0], x[1], "ogt"), x[2], "olt")
    if op == "pow":
        return block.math("pow", dtype, x[0], x[1])
    if op == "sigmoid":  # 1 / (1 + exp(-x)): exact limits 0 and 1, NaN stays NaN
        exp = block.math("exp", dtype, block.emit(f"fneg {t} {x[0]}"))
        return _fbin(block, "fdiv", t, _one(dtype), _fbin(block, "fadd", t, _one(dtype), exp))
    if op == "softplus":  # np.logaddexp(0, x) = max(x, 0) + log1p(exp(-|x|))
        magnitude = _fabs(block, t, x[0])
        tail = block.math("log1p", dtype, block.math("exp", dtype, block.emit(f"fneg {t} {magnitude}")))
        positive = block.emit(f"select i1 {block.emit(f'fcmp ogt {t} {x[0]}, {zero}')}, {t} {x[0]}, {t} {zero}")
        return _fbin(block, "fadd", t, positive, tail)
    raise UnsupportedError(f"the llvm backend cannot lower {op} on float")


def _fabs(block, t: str, value: str) -> str:
    block.declare(f"declare {t} @llvm.fabs.{_suffix(t)}({t})")
    return block.emit(f"call {t} @llvm.fabs.{_suffix(t)}({t} {value})")


def _emit_int(block, op, x, t):
    if op == "neg":
        return block.emit(f"sub {t} 0, {x[0]}")
    if op in ("add", "sub", "mul"):
        return block.emit(f"{op} {t} {x[0]}, {x[1]}")
    if op == "abs":
        return _int_pick(block, t, x[0], block.emit(f"sub {t} 0, {x[0]}"), "sgt")
    if op == "sign":
        positive = block.emit(f"zext i1 {block.emit(f'icmp sgt {t} {x[0]}, 0')} to {t}")
        negative = block.emit(f"zext i1 {block.emit(f'icmp slt {t} {x[0]}, 0')} to {t}")
        return block.emit(f"sub {t} {positive}, {negative}")
    if op == "maximum":
        return _int_pick(block, t, x[0], x[1], "sgt")
    if op == "minimum":
        return _int_pick(block, t, x[0], x[1], "slt")
    if op == "relu":
        return _int_pick(block, t, x[0], "0", "sgt")
    if op == "clip":
        return _int_pick(block, t, _int_pick(block, t, x[0], x[1], "sgt"), x[2], "slt")
    raise UnsupportedError(f"the llvm backend cannot lower {op} on integers")


def _suffix(t: str) -> str:
    return {"double": "f64", "float": "f32"}[t]


# Every elementwise primitive the lowering knows: a test checks this covers the op table.
LOWERED = _MATH | set(_COMPARISONS) | {
    "neg", "abs", "sign", "sigmoid", "softplus", "relu", "stop_gradient", "add", "sub", "mul", "div", "pow",
    "maximum", "minimum", "logical_and", "logical_or", "logical_not", "where", "clip", "cast"}
