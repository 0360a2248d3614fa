"""A kernel's scalar entry as a CPython builtin: Python floats in, a Python float out, no ctypes.

A kernel whose inputs and outputs are all float64 scalars has native scalar entries
(``scalar_entries_ir``, below: ``double f(double, ...)``). Calling one through ctypes costs about
0.5 us of boxing and argument conversion, a third of the depth-30 nested gradient. This module
emits, next to each scalar entry, a ``METH_FASTCALL`` function in LLVM IR and wraps it as a
builtin with ``PyCFunction_NewEx`` (the documented C API, reached through ``ctypes.pythonapi``):

- fast path, the guard: exactly ``arity`` arguments, each exactly a Python ``float`` (its type
  pointer is ``&PyFloat_Type``; a subclass such as ``np.float64`` fails it); then the doubles are
  read from the float objects, the entry runs, and ``PyFloat_FromDouble`` boxes the result;
- slow path: anything else (another count, another class, a keyword) is passed on, as it came,
  to the builtin's fallback: a Python callable. ``Compiled.__call__``'s general path is one, where
  every argument check, error message and NaN check lives; so a ``Compiled`` can make the builtin
  its very call (``transforms/scalar_call.py``), with no Python frame on the fast path.

The builtin's ``self`` is two words (a ctypes array): the fallback, and where to count the calls
the fast path ran (``cache_info().hits``: the fast path runs no Python that could count them).

The code reaches CPython only by symbol name (``PyFloat_Type``, ``PyFloat_FromDouble``,
``PyObject_Vectorcall``, resolved in this process at link time), so cached object code stays valid in the
next process. Two layout facts of this interpreter are written into the IR as numbers: where a
``PyObject`` keeps its type pointer (``object.__basicsize__ - 8``: the last field of the object
header in default, debug and free-threaded builds alike) and where a ``PyFloatObject`` keeps its
value (right after the header). The kernel runs with the GIL held (its scalar body is a few
microseconds at most; ``SCALAR_ENTRY_MAX_ARENA`` bounds it). Reference counts: arguments are
borrowed, the result is a new reference, as for any builtin. (``array_entry.py`` does the same
for small kernels of NumPy arrays.)

    >>> import math, numpy as np, chainrule as cr
    >>> grad = cr.grad(lambda x: np.sin(x) * x, backend="llvm")
    >>> first, second = grad(0.5), grad(0.5)  # the second call runs the builtin
    >>> type(second), abs(second - (math.cos(0.5) * 0.5 + math.sin(0.5))) < 1e-15
    (<class 'float'>, True)
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from chainrule.backends.llvm.lower import CALLBACK, CONSTANTS, FIXED_SLOTS
from chainrule.backends.llvm.plan import ALIGNMENT, Lowered

METH_FASTCALL = 0x0080
METH_KEYWORDS = 0x0002  # with METH_FASTCALL: (self, args, nargs, kwnames)
POINTER_BYTES = struct.calcsize("P")
# where a PyObject keeps ob_type, and a PyFloatObject its double, in this interpreter
TYPE_OFFSET = object.__basicsize__ - POINTER_BYTES
FLOAT_VALUE_OFFSET = object.__basicsize__
# where a ctypes array keeps the address of its buffer (CDataObject.b_ptr, right after the header)
CTYPES_BUFFER_OFFSET = object.__basicsize__
FALLBACK_WORD, HITS_WORD = 0, 1
# A scalar entry's arena lives on the calling thread's stack (threading.stack_size may be as small
# as 32 KiB); its constants are a global of the module, written into the IR text.
SCALAR_ENTRY_MAX_ARENA = 1 << 14
SCALAR_ENTRY_MAX_CONSTANTS = 1 << 16
_SYMBOLS = ("PyFloat_Type", "PyFloat_FromDouble", "PyObject_Vectorcall", "PyCFunction_NewEx")


class _MethodDef(ctypes.Structure):
    """CPython's ``PyMethodDef``."""

    _fields_ = [
        ("ml_name", ctypes.c_char_p),
        ("ml_meth", ctypes.c_void_p),
        ("ml_flags", ctypes.c_int),
        ("ml_doc", ctypes.c_char_p),
    ]


def available() -> bool:
    """Does this interpreter export what the builtins need (CPython with a standard float layout)?"""
    api = getattr(ctypes, "pythonapi", None)
    probe = (ctypes.c_void_p * 2)()
    return (
        api is not None
        and all(hasattr(api, symbol) for symbol in _SYMBOLS)
        and float.__basicsize__ == FLOAT_VALUE_OFFSET + 8
        and ctypes.c_void_p.from_address(id(probe) + CTYPES_BUFFER_OFFSET).value == ctypes.addressof(probe)
    )


def scalar_entries_ir(lowered: Lowered) -> str:
    """Per output k, ``double @<entry>_scalar<k>(double %in0, ...)``: the whole call with plain doubles.

    The wrapper builds the table and the arena on its own stack (so concurrent calls share
    nothing and need no lock), stores the inputs into their arena slots, calls the entry on one
    thread and returns output k; the constants are a read-only global of the module. Python calls
    it through ctypes or a builtin (python_entry.py): no NumPy array, no lock, one native call.
    Empty when the kernel has array inputs or outputs, other dtypes, NumPy fallbacks, LAPACK
    calls, or an arena or constants too large for a thread's stack.
    """
    eligible = (
        lowered.table_size == FIXED_SLOTS
        and not lowered.fallbacks
        and not lowered.failures
        and lowered.status_offset < 0
        and lowered.arena_bytes <= SCALAR_ENTRY_MAX_ARENA
        and lowered.constants.nbytes <= SCALAR_ENTRY_MAX_CONSTANTS
        and all(spec.staged is not None and spec.dtype == "float64" for spec in lowered.inputs)
        and all(out.arena_view is not None and out.shape == () and out.dtype == "float64" for out in lowered.outputs)
    )
    if not eligible:
        return ""
    entry = lowered.entry
    constants = lowered.constants.view(np.uint8).tobytes() or b"\0"
    escaped = "".join(f"\\{byte:02X}" for byte in constants)
    lines = [
        f'@{entry}_constants = private unnamed_addr constant [{len(constants)} x i8] c"{escaped}", align {ALIGNMENT}'
    ]
    parameters = ", ".join(f"double %in{i}" for i in range(len(lowered.inputs)))
    for k, output in enumerate(lowered.outputs):
        assert output.arena_view is not None
        lines += [
            f"define double @{entry}_scalar{k}({parameters}) {{",
            f"  %arena = alloca [{max(lowered.arena_bytes, 8)} x i8], align {ALIGNMENT}",
            f"  %table = alloca [{FIXED_SLOTS} x ptr], align 8",
            "  store ptr %arena, ptr %table",
            f"  %callback = getelementptr ptr, ptr %table, i64 {CALLBACK}",
            "  store ptr null, ptr %callback",
            f"  %constants = getelementptr ptr, ptr %table, i64 {CONSTANTS}",
            f"  store ptr @{entry}_constants, ptr %constants",
        ]
        for i, spec in enumerate(lowered.inputs):
            assert spec.staged is not None
            lines.append(f"  %in{i}.p = getelementptr i8, ptr %arena, i64 {spec.staged.offset}")
            lines.append(f"  store double %in{i}, ptr %in{i}.p")
        lines += [
            # not inlined: each output's wrapper calls the one entry (compile time, identical code)
            "  call void @" + entry + "(ptr %table, i64 1) noinline",
            f"  %out.p = getelementptr i8, ptr %arena, i64 {output.arena_view.offset}",
            "  %out = load double, ptr %out.p",
            "  ret double %out",
            "}",
        ]
    return "\n" + "\n".join(lines) + "\n"


def python_entries_ir(entry: str, arity: int, outputs: int) -> str:
    """Per output k, ``ptr @<entry>_python<k>(ptr self, ptr args, i64 nargs, ptr kwnames)`` calling
    ``@<entry>_scalar<k>``."""
    lines = [
        "@PyFloat_Type = external global i8",
        "declare ptr @PyFloat_FromDouble(double)",
        "declare ptr @PyObject_Vectorcall(ptr, ptr, i64, ptr)",
    ]
    for k in range(outputs):
        lines += _python_entry(f"{entry}_python{k}", f"{entry}_scalar{k}", arity)
    return "\n" + "\n".join(lines) + "\n"


def _python_entry(name: str, scalar: str, arity: int) -> list[str]:
    lines = [
        f"define ptr @{name}(ptr %self, ptr %args, i64 %nargs, ptr %kwnames) {{",
        "entry:",
        f"  %words.at = getelementptr i8, ptr %self, i64 {CTYPES_BUFFER_OFFSET}",
        "  %words = load ptr, ptr %words.at",
        f"  %count.ok = icmp eq i64 %nargs, {arity}",
        "  %no.keywords = icmp eq ptr %kwnames, null",
        "  %plain = and i1 %count.ok, %no.keywords",
        f"  br i1 %plain, label %{'check0' if arity else 'fast'}, label %slow",
    ]
    values = []
    for i in range(arity):
        following = f"check{i + 1}" if i + 1 < arity else "fast"
        lines += [
            f"check{i}:",
            f"  %arg{i}.at = getelementptr ptr, ptr %args, i64 {i}",
            f"  %arg{i} = load ptr, ptr %arg{i}.at",
            f"  %arg{i}.type.at = getelementptr i8, ptr %arg{i}, i64 {TYPE_OFFSET}",
            f"  %arg{i}.type = load ptr, ptr %arg{i}.type.at",
            f"  %arg{i}.ok = icmp eq ptr %arg{i}.type, @PyFloat_Type",
            f"  br i1 %arg{i}.ok, label %{following}, label %slow",
        ]
    lines.append("fast:")
    for i in range(arity):
        lines += [
            f"  %value{i}.at = getelementptr i8, ptr %arg{i}, i64 {FLOAT_VALUE_OFFSET}",
            f"  %value{i} = load double, ptr %value{i}.at",
        ]
        values.append(f"double %value{i}")
    lines += [
        f"  %result = call double @{scalar}({', '.join(values)})",
        f"  %hits.at = getelementptr ptr, ptr %words, i64 {HITS_WORD}",
        "  %hits = load ptr, ptr %hits.at",
        "  %count = load i64, ptr %hits",
        "  %count.next = add i64 %count, 1",  # the GIL is held: no other thread counts meanwhile
        "  store i64 %count.next, ptr %hits",
        "  %boxed = call ptr @PyFloat_FromDouble(double %result)",  # NULL with MemoryError set: passed on
        "  ret ptr %boxed",
        "slow:",  # the call as it came, to the fallback; its result or NULL with its error set
        f"  %fallback.at = getelementptr ptr, ptr %words, i64 {FALLBACK_WORD}",
        "  %fallback = load ptr, ptr %fallback.at",
        "  %passed = call ptr @PyObject_Vectorcall(ptr %fallback, ptr %args, i64 %nargs, ptr %kwnames)",
        "  ret ptr %passed",
        "}",
    ]
    return lines


def make_float_builtin(
    address: int, name: str, fallback: Callable[..., Any], hits: ctypes.c_uint64, keep: Any
) -> Callable[..., Any]:
    """The builtin calling ``<entry>_python<k>`` at ``address``: it passes a call its guard does
    not take on to ``fallback``, and adds one to ``hits`` for each call it runs itself. ``keep``
    (the machine code's owner) lives as long as it."""
    words = (ctypes.c_void_p * 2)()
    words[FALLBACK_WORD], words[HITS_WORD] = id(fallback), ctypes.addressof(hits)
    return make_builtin(address, name, words, (keep, fallback, hits), METH_FASTCALL | METH_KEYWORDS)


def make_builtin(address: int, name: str, self: object, keep: Any, flags: int = METH_FASTCALL) -> Callable[..., Any]:
    """The builtin calling the function at ``address`` (``flags``: its calling convention) with
    ``self`` as its first argument. ``keep`` (the machine code's owner) lives as long as it."""
    definition = _MethodDef(name.encode(), address, flags, None)
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
    # m_module is any object the builtin keeps a reference to: here what must outlive it (the
    # PyMethodDef it points at and the code), in a str, so __module__ stays harmless to show.
    holder = _Keep(definition, keep)
    return new(ctypes.addressof(definition), self, holder)


class _Keep(str):
    """A ``str`` (what ``__module__`` should be) that keeps a builtin's PyMethodDef and code alive."""

    definition: Any
    owner: Any

    def __new__(cls, definition: _MethodDef, owner: Any) -> _Keep:
        keep = super().__new__(cls, "chainrule.backends.llvm")
        keep.definition, keep.owner = definition, owner
        return keep
