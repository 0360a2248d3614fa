"""A small kernel's call with NumPy arrays as a CPython builtin: the arguments checked natively.

A compiled call of a small kernel cost ~5 us where the kernel itself ran for less than one: most
of it was the Python side of passing arrays (``arr.ctypes.data`` builds a ctypes object, ~0.5 us
an array; the ``ctypes`` call of the entry ~0.7 us; a lock) and finding the specialization
(``call_key``). For a kernel that runs briefly (no NumPy fallbacks, no parallel loops, a small
arena, little estimated work), this module emits next to the entry a ``METH_FASTCALL`` function in
LLVM IR, made a builtin by ``python_entry.make_builtin``, taking the inputs and the preallocated
outputs (fresh ``np.empty`` arrays the caller made):

- fast path, the guard: exactly ``inputs + outputs`` arguments; each input exactly an
  ``np.ndarray`` (a subclass fails), with the dtype object NumPy uses for the kernel's dtype
  (``np.dtype(d)``, compared by identity, so another byte order or a dtype with metadata fails),
  C-contiguous, with the kernel's shape. Then the table (on the native stack) gets the data
  pointers, a 0-d input's element goes into its arena slot, the entry runs on one thread, and
  the builtin returns ``None``;
- slow path: anything else returns the builtin's ``self`` (a NumPy array of the guard's words),
  and the caller takes the general way, ``ascontiguousarray`` and all, where every check lives.

The builtin holds the GIL for the whole call and never releases it (eligible kernels are short),
so two calls of it never overlap; it has an arena of its own, apart from the one the general path
uses under its lock while ``ctypes`` runs the entry with the GIL released. Its small outputs stay in
that arena and are read out by the caller after it returns, where the GIL can pass to another
thread calling the same kernel: the caller holds a lock of the builtin's own from the call to the
read (``kernel._Runner.fast_lock``; without it a thread under load returned another's results).

The code reaches CPython by symbol name (``Py_IncRef``, ``_Py_NoneStruct``) and NumPy through
words the guard holds (the ``ndarray`` type, the arena, the constants, each input's dtype object),
so cached object code holds no address. NumPy's array layout (the public ``PyArrayObject_fields``:
data, nd, dimensions, strides, base, descr, flags, after the object header) is checked against a
probe array before it is used (``available``).
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache
from typing import Any

import numpy as np

from chainrule.backends.llvm import python_entry
from chainrule.backends.llvm.lower import CALLBACK, CONSTANTS, FIXED_SLOTS
from chainrule.backends.llvm.plan import InputSpec, Lowered

HEADER = object.__basicsize__  # where PyArrayObject_fields starts
DATA, ND, DIMENSIONS, DESCR, FLAGS = HEADER, HEADER + 8, HEADER + 16, HEADER + 40, HEADER + 48
C_CONTIGUOUS = 0x0001  # NPY_ARRAY_C_CONTIGUOUS
# The guard's words: then each input's dtype object.
NDARRAY_WORD, ARENA_WORD, CONSTANTS_WORD, FIRST_DTYPE_WORD = 0, 1, 2, 3
# What makes a kernel short enough to hold the GIL for: no parallel loops (see ``eligible``), an
# arena (LAPACK workspace included) of at most this many bytes, loops estimated at most this long.
MAX_ARENA_BYTES = 1 << 18
MAX_WORK_NS = 100_000
_DTYPES = ("float64", "float32", "int64", "int32", "int16", "int8", "uint8", "bool")


@cache
def available() -> bool:
    """Can builtins read NumPy arrays here: CPython with the GIL, and NumPy's array layout as expected?"""
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    if not (gil and python_entry.available() and hasattr(ctypes.pythonapi, "_Py_NoneStruct")):
        return False
    probe = np.empty((3, 5))

    def word(array: np.ndarray, offset: int, kind: Any = ctypes.c_void_p) -> int:
        return kind.from_address(id(array) + offset).value or 0

    dimensions = word(probe, DIMENSIONS)
    return (
        word(probe, python_entry.TYPE_OFFSET) == id(np.ndarray)
        and word(probe, DATA) == probe.ctypes.data
        and word(probe, ND, ctypes.c_int) == 2
        and [ctypes.c_int64.from_address(dimensions + 8 * k).value for k in range(2)] == [3, 5]
        and word(probe, DESCR) == id(probe.dtype) == id(np.dtype("float64"))
        and word(probe, FLAGS, ctypes.c_int) & C_CONTIGUOUS != 0
        and word(probe.T, FLAGS, ctypes.c_int) & C_CONTIGUOUS == 0
    )


def eligible(lowered: Lowered, work_ns: float) -> bool:
    """Does this kernel get an array builtin (see the module docstring)?"""
    return (
        lowered.table_size > FIXED_SLOTS
        and not lowered.fallbacks
        and lowered.parallel_loops == 0
        and lowered.arena_bytes <= MAX_ARENA_BYTES
        and work_ns <= MAX_WORK_NS
        and all(spec.dtype in _DTYPES for spec in lowered.inputs)
        and available()
    )


def guard_words(lowered: Lowered, arena: np.ndarray, constants: np.ndarray) -> np.ndarray:
    """The builtin's ``self``: the words its guard and table read (see ``arrays_ir``)."""
    words = [id(np.ndarray), arena.ctypes.data, constants.ctypes.data]
    words += [id(np.dtype(spec.dtype)) for spec in lowered.inputs]
    return np.array(words, np.uint64)


def arrays_ir(lowered: Lowered) -> str:
    """``ptr @<entry>_arrays(ptr self, ptr args, i64 nargs)``: the guard, the table, the entry."""
    entry, inputs = lowered.entry, lowered.inputs
    slots = [out.slot for out in lowered.outputs if out.slot is not None]
    lines = [
        "@_Py_NoneStruct = external global i8",
        "declare void @Py_IncRef(ptr)",
        f"define ptr @{entry}_arrays(ptr %self, ptr %args, i64 %nargs) {{",
        "entry:",
        f"  %table = alloca [{lowered.table_size} x ptr], align 8",
        f"  %words.at = getelementptr i8, ptr %self, i64 {DATA}",
        "  %words = load ptr, ptr %words.at",
        *_word("ndarray", NDARRAY_WORD),
        *_word("arena", ARENA_WORD),
        *_word("constants", CONSTANTS_WORD),
        f"  %count.ok = icmp eq i64 %nargs, {len(inputs) + len(slots)}",
        "  br i1 %count.ok, label %input0, label %slow",
    ]
    for i, spec in enumerate(inputs):
        lines += _input_check(i, spec, f"input{i + 1}")
    lines.append(f"input{len(inputs)}:")  # the outputs: fresh arrays the caller made, as the kernel needs them
    for k, slot in enumerate(slots):
        out = f"%out{k}"
        lines += [
            f"  {out}.at = getelementptr ptr, ptr %args, i64 {len(inputs) + k}",
            f"  {out} = load ptr, ptr {out}.at",
            *_field(out, "data", DATA, "ptr"),
            *_store_slot(f"{out}.data", slot, out),
        ]
    lines += [
        "  store ptr %arena, ptr %table",
        f"  %callback = getelementptr ptr, ptr %table, i64 {CALLBACK}",
        "  store ptr null, ptr %callback",
        *_store_slot("%constants", CONSTANTS, "%constants"),
        f"  call void @{entry}(ptr %table, i64 1)",
        "  call void @Py_IncRef(ptr @_Py_NoneStruct)",
        "  ret ptr @_Py_NoneStruct",
        "slow:",  # "not handled": self, a new reference
        "  call void @Py_IncRef(ptr %self)",
        "  ret ptr %self",
        "}",
    ]
    return "\n" + "\n".join(lines) + "\n"


def _input_check(i: int, spec: InputSpec, following: str) -> list[str]:
    """Block ``input<i>``: argument i is the kernel's input i (else ``slow``), placed in the table or arena."""
    a = f"%in{i}"
    lines = [
        f"input{i}:",
        f"  {a}.at = getelementptr ptr, ptr %args, i64 {i}",
        f"  {a} = load ptr, ptr {a}.at",
        *_field(a, "type", python_entry.TYPE_OFFSET, "ptr"),
        f"  {a}.is.array = icmp eq ptr {a}.type, %ndarray",
        f"  br i1 {a}.is.array, label %fields{i}, label %slow",
        f"fields{i}:",  # an ndarray: its fields may be read
        *_word(f"in{i}.dtype", FIRST_DTYPE_WORD + i),
        *_field(a, "descr", DESCR, "ptr"),
        *_field(a, "flags", FLAGS, "i32"),
        *_field(a, "nd", ND, "i32"),
        f"  {a}.is.dtype = icmp eq ptr {a}.descr, %in{i}.dtype",
        f"  {a}.c = and i32 {a}.flags, {C_CONTIGUOUS}",
        f"  {a}.is.c = icmp ne i32 {a}.c, 0",
        f"  {a}.is.nd = icmp eq i32 {a}.nd, {len(spec.shape)}",
        f"  {a}.ok0 = and i1 {a}.is.dtype, {a}.is.c",
        f"  {a}.ok = and i1 {a}.ok0, {a}.is.nd",
        f"  br i1 {a}.ok, label %shape{i}, label %slow",
        f"shape{i}:",
        *_field(a, "dims", DIMENSIONS, "ptr"),
        *_field(a, "data", DATA, "ptr"),
    ]
    same = "true"
    for k, extent in enumerate(spec.shape):
        lines += [
            f"  {a}.dim{k}.at = getelementptr i64, ptr {a}.dims, i64 {k}",
            f"  {a}.dim{k} = load i64, ptr {a}.dim{k}.at",
            f"  {a}.dim{k}.ok = icmp eq i64 {a}.dim{k}, {extent}",
            f"  {a}.same{k} = and i1 {same}, {a}.dim{k}.ok",
        ]
        same = f"{a}.same{k}"
    if spec.slot is not None:
        lines += _store_slot(f"{a}.data", spec.slot, a)
    else:  # a 0-d input: its element into its arena slot (a store the slow path makes harmless)
        assert spec.staged is not None
        bits = 8 * np.dtype(spec.dtype).itemsize
        lines += [
            f"  {a}.value = load i{bits}, ptr {a}.data",
            f"  {a}.stage = getelementptr i8, ptr %arena, i64 {spec.staged.offset}",
            f"  store i{bits} {a}.value, ptr {a}.stage",
        ]
    return [*lines, f"  br i1 {same}, label %{following}, label %slow"]


def _field(pointer: str, name: str, offset: int, llvm_type: str) -> list[str]:
    """``<pointer>.<name>``: the ``llvm_type`` at ``offset`` bytes into the object at ``pointer``."""
    return [
        f"  {pointer}.{name}.at = getelementptr i8, ptr {pointer}, i64 {offset}",
        f"  {pointer}.{name} = load {llvm_type}, ptr {pointer}.{name}.at",
    ]


def _word(name: str, index: int) -> list[str]:
    """``%<name>``: the guard's word ``index``, as a pointer."""
    return [f"  %{name}.at = getelementptr ptr, ptr %words, i64 {index}", f"  %{name} = load ptr, ptr %{name}.at"]


def _store_slot(pointer: str, slot: int, name: str | None = None) -> list[str]:
    """``pointer`` into the table's ``slot``."""
    at = f"{name or pointer}.slot"
    return [f"  {at} = getelementptr ptr, ptr %table, i64 {slot}", f"  store ptr {pointer}, ptr {at}"]
