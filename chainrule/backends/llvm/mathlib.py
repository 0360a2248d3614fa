"""How LLVM code computes transcendental functions: intrinsics, libm, and glibc's libmvec.

A call is an LLVM intrinsic where one exists (``llvm.sin.f64``: LLVM knows
what it computes and folds constants) and a libm function otherwise (``expm1``,
``erf``, ...). In straight-line code, sin and cos of one value are one
``llvm.sincos`` call (``sincos_lines``; irtext.Function.math pairs them). Either
way the call carries a ``vector-function-abi-variant`` attribute naming
libmvec's SIMD version for the widest vectors the host has (``_ZGVeN8v_sin``:
8 float64 lanes in an AVX-512 register, ``_ZGVeN16v_sinf`` for float32), so the
loop vectorizer turns a loop of calls into a loop of vector calls. Measured
here, that is ~5.9x over scalar calls at 8 lanes (``-vector-library=LIBMVEC-X86``
only reaches the 4-lane AVX2 versions, ~3.4x). Functions libmvec lacks, and
every function when libmvec is missing, stay scalar calls.

Lowering a loop body that calls sin::

    >>> from chainrule.backends.llvm import mathlib
    >>> mathlib.call("sin", "float64", "%x", isa=mathlib.AVX512)
    'call double @llvm.sin.f64(double %x) "vector-function-abi-variant"="_ZGV_LLVM_N8v_llvm.sin.f64(_ZGVeN8v_sin)"'
    >>> print(mathlib.declarations([("sin", "float64")], isa=mathlib.AVX512))
    declare double @llvm.sin.f64(double)
    declare <8 x double> @_ZGVeN8v_sin(<8 x double>)
    @llvm.compiler.used = appending global [1 x ptr] [ptr @_ZGVeN8v_sin], section "llvm.metadata"

``declarations`` is called once per module, with every (function, dtype)
pair the module calls; its lines do not repeat. ``@llvm.compiler.used`` keeps
the vector declarations alive until the vectorizer has used them. The engine
loads libmvec into the process (``load_vector_library``) when a module
mentions it, and gives every function of a module ``function_attributes()``,
which ask for vectors as wide as the vector functions.

The instruction set comes from ``vector_isa()``: the widest the host supports
whose libmvec functions exist; ``CHAINRULE_VECTOR_MATH=scalar`` (or ``sse4``,
``avx2``, ``avx512``) overrides it. Calls carry no fast-math flags: ``afn``
would let LLVM swap in approximations, and ``nnan``/``ninf`` are never used.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import llvmlite.binding as llvm

from chainrule.errors import UnsupportedError

VECTOR_LIBRARY = "libmvec.so.1"
VECTOR_SYMBOL_PREFIX = "_ZGV"


@dataclass(frozen=True)
class VectorISA:
    """An x86 instruction set libmvec has versions for: its name-mangling letter and register width."""

    name: str
    letter: str
    bits: int
    feature: str  # the CPU feature it needs

    def lanes(self, dtype: str) -> int:
        return self.bits // _BITS[dtype]


SCALAR = VectorISA("scalar", "", 0, "")
SSE4 = VectorISA("sse4", "b", 128, "sse4.1")
AVX2 = VectorISA("avx2", "d", 256, "avx2")
AVX512 = VectorISA("avx512", "e", 512, "avx512f")
ISAS = {isa.name: isa for isa in (SCALAR, SSE4, AVX2, AVX512)}

_BITS = {"float64": 64, "float32": 32}
_LLVM_TYPES = {"float64": "double", "float32": "float"}
_INTRINSIC_SUFFIXES = {"float64": "f64", "float32": "f32"}


@dataclass(frozen=True)
class MathFunction:
    """A libm function: ``name`` is its float64 spelling (float32 appends ``f``)."""

    name: str
    arity: int = 1
    intrinsic_since: int | None = None  # the first LLVM version with llvm.<name>, if any


FUNCTIONS = {
    f.name: f
    for f in [
        MathFunction("sqrt", intrinsic_since=1),
        MathFunction("fabs", intrinsic_since=1),
        MathFunction("sin", intrinsic_since=1),
        MathFunction("cos", intrinsic_since=1),
        MathFunction("exp", intrinsic_since=1),
        MathFunction("exp2", intrinsic_since=1),
        MathFunction("log", intrinsic_since=1),
        MathFunction("log2", intrinsic_since=1),
        MathFunction("log10", intrinsic_since=1),
        MathFunction("pow", 2, intrinsic_since=1),
        MathFunction("floor", intrinsic_since=1),
        MathFunction("ceil", intrinsic_since=1),
        MathFunction("trunc", intrinsic_since=1),
        MathFunction("rint", intrinsic_since=1),
        MathFunction("copysign", 2, intrinsic_since=1),
        MathFunction("exp10", intrinsic_since=18),
        MathFunction("tan", intrinsic_since=19),
        MathFunction("asin", intrinsic_since=19),
        MathFunction("acos", intrinsic_since=19),
        MathFunction("atan", intrinsic_since=19),
        MathFunction("sinh", intrinsic_since=19),
        MathFunction("cosh", intrinsic_since=19),
        MathFunction("tanh", intrinsic_since=19),
        MathFunction("atan2", 2, intrinsic_since=20),
        MathFunction("expm1"),
        MathFunction("log1p"),
        MathFunction("cbrt"),
        MathFunction("asinh"),
        MathFunction("acosh"),
        MathFunction("atanh"),
        MathFunction("erf"),
        MathFunction("erfc"),
        MathFunction("hypot", 2),
        MathFunction("fmod", 2),
    ]
}


def call(function: str, dtype: str, *arguments: str, isa: VectorISA | None = None) -> str:
    """The text of a call instruction computing ``function`` of ``arguments`` (SSA names) in ``dtype``.

    ``function`` is a libm name (``"atan"``: an op's ``Op.libm``); ``dtype`` is ``"float64"`` or
    ``"float32"``. Assign it:
    ``f"%y = {call('sin', 'float64', '%x')}"``.
    """
    head, llvm_type, arity, tail = _call_parts(function, str(getattr(dtype, "name", dtype)), isa or vector_isa())
    if len(arguments) != arity:
        raise ValueError(f"{function} takes {arity} argument(s), got {len(arguments)}")
    return head + ", ".join(f"{llvm_type} {argument}" for argument in arguments) + tail


@cache
def _call_parts(function: str, dtype: str, isa: VectorISA) -> tuple[str, str, int, str]:
    """A call's text before its operands, their type, their count, and its text after them
    (made once: a long loop body has thousands of calls)."""
    entry, dtype = _lookup(function, dtype)
    llvm_type = _LLVM_TYPES[dtype]
    head = f"call {llvm_type} @{_scalar_name(entry, dtype)}("
    vector_name = _vector_name(entry, dtype, isa)
    if vector_name is None:
        return head, llvm_type, entry.arity, ")"
    mangled = f"_ZGV_LLVM_N{isa.lanes(dtype)}{'v' * entry.arity}_{_scalar_name(entry, dtype)}({vector_name})"
    return head, llvm_type, entry.arity, f') "vector-function-abi-variant"="{mangled}"'


# sin and cos of one value are one call of llvm.sincos (LLVM >= 20): its result's fields, in order
SINCOS_HALVES = {"sin": 0, "cos": 1}
SINCOS = "sincos"
SINCOS_INTRINSIC_SINCE = 20


def pairs_sincos() -> bool:
    """Does this LLVM have ``llvm.sincos``?"""
    return llvm.llvm_version_info[0] >= SINCOS_INTRINSIC_SINCE


def sincos_lines(dtype: str, argument: str, pair: str, halves: dict[str, str]) -> str:
    """The lines computing sin and cos of ``argument`` with one call (libm's ``sincos``): ``pair``
    receives both, and ``halves`` maps "sin" and "cos" to the registers receiving each.

    For straight-line code only: the call names no vector variant. libmvec's only exported vector
    sincos (``_ZGVeN8vvv_sincos``) writes through a vector of pointers; a loop of them ran the
    depth-30 nested gradient 1.7x slower than separate vector sin and cos calls (25 -> 43 ms
    at 2x10^5 points, one thread), so loops keep those.
    """
    _, dtype = _lookup("sin", dtype)
    llvm_type = _LLVM_TYPES[dtype]
    pair_type = f"{{{llvm_type}, {llvm_type}}}"
    lines = [f"  {pair} = call {pair_type} @llvm.sincos.{_INTRINSIC_SUFFIXES[dtype]}({llvm_type} {argument})"]
    lines += [
        f"  {register} = extractvalue {pair_type} {pair}, {SINCOS_HALVES[half]}" for half, register in halves.items()
    ]
    return "\n".join(lines)


def declarations(used: Iterable[tuple[str, str]], isa: VectorISA | None = None) -> str:
    """Module-level declarations for the (function, dtype) pairs in ``used``, each line once
    (``SINCOS``: the intrinsic ``sincos_lines`` calls)."""
    isa = isa or vector_isa()
    scalar_lines, vector_lines, vector_names = {}, {}, []
    for function, dtype in used:
        if function == SINCOS:
            llvm_type = _LLVM_TYPES[_lookup("sin", dtype)[1]]
            scalar_lines[f"sincos {llvm_type}"] = (
                f"declare {{{llvm_type}, {llvm_type}}} @llvm.sincos.{_INTRINSIC_SUFFIXES[str(dtype)]}({llvm_type})"
            )
            continue
        entry, dtype = _lookup(function, dtype)
        llvm_type = _LLVM_TYPES[dtype]
        name = _scalar_name(entry, dtype)
        # libm functions are declared pure (as with -fno-math-errno): nothing reads errno, and
        # a call that may write memory is never vectorized.
        attributes = "" if _has_intrinsic(entry) else f" nounwind willreturn {_PURE}"
        scalar_lines[name] = f"declare {llvm_type} @{name}({', '.join([llvm_type] * entry.arity)}){attributes}"
        vector_name = _vector_name(entry, dtype, isa)
        if vector_name is not None and vector_name not in vector_lines:
            vector_type = f"<{isa.lanes(dtype)} x {llvm_type}>"
            vector_lines[vector_name] = (
                f"declare {vector_type} @{vector_name}({', '.join([vector_type] * entry.arity)})"
            )
            vector_names.append(vector_name)
    lines = list(scalar_lines.values()) + list(vector_lines.values())
    if vector_names:
        pointers = ", ".join(f"ptr @{name}" for name in vector_names)
        lines.append(
            f'@llvm.compiler.used = appending global [{len(vector_names)} x ptr] [{pointers}], section "llvm.metadata"'
        )
    return "\n".join(lines)


def function_attributes(features: frozenset[str] | None = None) -> str:
    """Attributes for a function with loops: vectors as wide as the registers (of the host by default).

    Some CPUs (Intel's with AVX-512) make LLVM prefer 256-bit vectors unless told otherwise;
    the widest vector math functions need the full width.
    """
    features = _host_features() if features is None else features
    bits = 512 if "avx512f" in features else 256 if "avx" in features else 128
    return f'"prefer-vector-width"="{bits}" "min-legal-vector-width"="{bits}"'


def vector_isa(
    features: frozenset[str] | None = None, library_symbols: Callable[[str], bool] | None = None
) -> VectorISA:
    """The instruction set vector math is compiled for.

    The widest of ``ISAS`` whose CPU feature is in ``features`` (default: the
    host's) and whose libmvec functions exist (``library_symbols``: a predicate
    on symbol names, default: looks in the process's libmvec). The environment
    variable ``CHAINRULE_VECTOR_MATH`` overrides it.
    """
    override = os.environ.get("CHAINRULE_VECTOR_MATH", "").strip().lower()
    if features is None and library_symbols is None:
        return _host_isa(override)  # asked for every math call a kernel makes
    return _isa(_host_features() if features is None else features, library_symbols or _library_has, override)


@cache
def _host_isa(override: str) -> VectorISA:
    return _isa(_host_features(), _library_has, override)


def _isa(features: frozenset[str], has_symbol: Callable[[str], bool], override: str) -> VectorISA:
    if override and override != "auto":
        if override not in ISAS:
            raise UnsupportedError(f"CHAINRULE_VECTOR_MATH={override!r}: use one of auto, {', '.join(ISAS)}")
        isa = ISAS[override]
        if isa is not SCALAR and (isa.feature not in features or not has_symbol(_probe_symbol(isa))):
            raise UnsupportedError(
                f"CHAINRULE_VECTOR_MATH={override}: this machine lacks "
                f"{isa.feature if isa.feature not in features else VECTOR_LIBRARY}"
            )
        return isa
    for isa in (AVX512, AVX2, SSE4):
        if isa.feature in features and has_symbol(_probe_symbol(isa)):
            return isa
    return SCALAR


@cache
def load_vector_library() -> None:
    """Make libmvec's symbols visible to JIT code (done by the engine when a module uses them)."""
    llvm.load_library_permanently(VECTOR_LIBRARY)


_PURE = "memory(none)" if llvm.llvm_version_info[0] >= 16 else "readnone"


def _lookup(function: str, dtype: str) -> tuple[MathFunction, str]:
    if function not in FUNCTIONS:
        raise UnsupportedError(f"the LLVM backend has no math function {function!r}")
    dtype = str(getattr(dtype, "name", dtype))
    if dtype not in _LLVM_TYPES:
        raise UnsupportedError(f"{function} in {dtype}: the LLVM backend computes it in float64 or float32")
    return FUNCTIONS[function], dtype


def _has_intrinsic(entry: MathFunction) -> bool:
    return entry.intrinsic_since is not None and llvm.llvm_version_info[0] >= entry.intrinsic_since


def _scalar_name(entry: MathFunction, dtype: str) -> str:
    if _has_intrinsic(entry):
        return f"llvm.{entry.name}.{_INTRINSIC_SUFFIXES[dtype]}"
    return entry.name + ("f" if dtype == "float32" else "")


def _vector_name(entry: MathFunction, dtype: str, isa: VectorISA) -> str | None:
    if isa is SCALAR:
        return None
    libm_name = entry.name + ("f" if dtype == "float32" else "")
    name = f"{VECTOR_SYMBOL_PREFIX}{isa.letter}N{isa.lanes(dtype)}{'v' * entry.arity}_{libm_name}"
    return name if _library_has(name) else None


def _probe_symbol(isa: VectorISA) -> str:
    return f"{VECTOR_SYMBOL_PREFIX}{isa.letter}N{isa.lanes('float64')}v_sin"


@cache
def _library_has(symbol: str) -> bool:
    library = _vector_library()
    return library is not None and hasattr(library, symbol)


@cache
def _vector_library() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(VECTOR_LIBRARY)
    except OSError:
        return None


@cache
def _host_features() -> frozenset[str]:
    return frozenset(name for name, present in llvm.get_host_cpu_features().items() if present)
