"""``sort`` and ``argsort`` in native code, by NumPy's own sort functions.

NumPy keeps a table of functions per dtype (``PyArray_ArrFuncs``) with its sorts: ``sort[kind]``
sorts a contiguous line in place, ``argsort[kind]`` sorts a line of positions by the values they
name. ``np.sort`` and ``np.argsort`` call the very same functions (the default kind: introsort, by
SIMD where the CPU has it; the stable kind: timsort or radix sort), so native code calling them
computes what the NumPy backend does, without a callback into Python and without a sort written
here. The table is reached through NumPy 2's C API (``_PyDataType_GetArrFuncs``, a fixed slot of
the API table), whose layout is NumPy's ABI, fixed across the 2.x releases; on any other NumPy
the ops keep the NumPy callback. The addresses are bound at link time, as BLAS's are
(``engine.RUNTIME_SYMBOLS``).

Each line along the axis is copied to a contiguous scratch line (or, for ``sort`` with a
contiguous result line, straight into the result) and sorted there. ``argsort`` is the stable
permutation, as ``npfuncs.stable_argsort`` computes it: a line shorter than
``npfuncs.STABLE_AT_ONCE`` is sorted stably; a longer one by the default sort, which finds the
same permutation where the line holds no equal values, and again stably when it does.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable, Hashable
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import engine, scalar_ops
from chainrule.backends.llvm.lapack_unit import STATUS_BYTES, region_bytes
from chainrule.ir import Graph
from chainrule.ir.npfuncs import STABLE_AT_ONCE

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen

OPS = ("sort", "argsort")
DTYPES = tuple(d for d in scalar_ops.TYPES if d != "bool")
_GET_ARRFUNCS_SLOT = 365  # _PyDataType_GetArrFuncs in NumPy 2's C-API table (__multiarray_api.h)
# PyArray_ArrFuncs: cast[21], then getitem ... fillwithscalar (12 pointers), sort[3], argsort[3]
_SORT_WORD, _ARGSORT_WORD = 33, 36
_DEFAULT, _STABLE = 0, 2  # NPY_QUICKSORT, NPY_STABLESORT
_FUNCTIONS = {"sort": (_SORT_WORD, _DEFAULT), "argsort": (_ARGSORT_WORD, _DEFAULT), "stable": (_ARGSORT_WORD, _STABLE)}


@cache
def _api_table() -> int | None:
    """The address of NumPy's C-API table, or None when NumPy's ABI is not 2.x's."""
    multiarray = importlib.import_module("numpy._core._multiarray_umath")
    if int(np.__version__.split(".")[0]) != 2 or multiarray._get_ndarray_c_version() >> 24 != 2:
        return None
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return pointer(multiarray._ARRAY_API, None)


@cache
def address(function: str, dtype: str) -> int:
    """The address of NumPy's ``function`` ("sort", "argsort": the default kind; "stable": the
    stable argsort) for ``dtype``; 0 when NumPy has none here."""
    table = _api_table()
    getter = ctypes.c_void_p.from_address(table + 8 * _GET_ARRFUNCS_SLOT).value if table else None
    if getter is None:
        return 0
    functions = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(getter)(id(np.dtype(dtype)))
    word, kind = _FUNCTIONS[function]
    return (ctypes.c_void_p.from_address(functions + 8 * (word + kind)).value or 0) if functions else 0


def symbol(function: str, dtype: str) -> str:
    return f"chainrule_numpy_{function}_{dtype}"


def _binder(function: str, dtype: str) -> Callable[[], int]:
    return lambda: address(function, dtype)


engine.RUNTIME_SYMBOLS.update({symbol(f, d): _binder(f, d) for f in _FUNCTIONS for d in DTYPES})


def ready(graph: Graph, node_id: int) -> bool:
    """Does NumPy lend its sort functions for this node's dtype (and is there something to sort)?"""
    node = graph[node_id]
    dtype = graph.type(node.args[0]).dtype
    needed = ("sort",) if node.op == "sort" else ("argsort", "stable")
    return (
        dtype in DTYPES
        and node.type.size > 0
        and all(address(f, dtype) for f in needed)
        and (node.op == "sort" or node.type.dtype == "int64")
    )


def scratch_bytes(graph: Graph, node_id: int) -> int:
    """A contiguous line of values and, for argsort, one of positions."""
    node = graph[node_id]
    length = node.type.shape[node.params["axis"]]
    positions = region_bytes(length, "int64") if node.op == "argsort" else 0
    return STATUS_BYTES + region_bytes(length, graph.type(node.args[0]).dtype) + positions


def emit(gen: Codegen, node_id: int) -> None:
    """Each line along the axis copied out, sorted by NumPy's function, its result written back."""
    node = gen.graph[node_id]
    entry = gen.entry
    source, result = gen.plan.views[node.args[0]], gen.plan.views[node_id]
    axis, dtype = node.params["axis"], source.dtype
    length = source.shape[axis]
    others = [d for d in range(len(source.shape)) if d != axis]
    cache: dict[object, str] = {}
    pointers = {"s": gen.base(entry, source, cache), "t": gen.base(entry, result, cache)}
    scratch = gen.base(entry, gen.plan.scratch, cache)
    values = entry.emit(f"getelementptr i8, ptr {scratch}, i64 {STATUS_BYTES}", "line")
    positions = entry.emit(f"getelementptr i8, ptr {values}, i64 {region_bytes(length, dtype)}", "positions")
    entry.declare(f"declare i32 @{symbol('sort', dtype)}(ptr, i64, ptr)")
    entry.declare(f"declare i32 @{symbol('argsort', dtype)}(ptr, ptr, i64, ptr)")
    entry.declare(f"declare i32 @{symbol('stable', dtype)}(ptr, ptr, i64, ptr)")

    def line(offsets: dict[Hashable, str]) -> None:
        start = {
            key: entry.emit(
                f"getelementptr {scalar_ops.memory_type(view.dtype)}, ptr {pointers[key]}, i64 {offsets[key]}"
            )
            for key, view in (("s", source), ("t", result))
        }
        in_place = node.op == "sort" and result.strides[axis] == 1
        target = start["t"] if in_place else values
        _copy(gen, start["s"], source.strides[axis], target, 1, length, dtype)
        if node.op == "sort":
            entry.do(f"call i32 @{symbol('sort', dtype)}(ptr {target}, i64 {length}, ptr null)")
            if not in_place:
                _copy(gen, values, 1, start["t"], result.strides[axis], length, dtype)
            return
        contiguous = result.strides[axis] == 1
        order = start["t"] if contiguous else positions
        _argsort(gen, values, order, length, dtype)
        if not contiguous:
            _copy(gen, positions, 1, start["t"], result.strides[axis], length, "int64")

    strides: dict[Hashable, list[int]] = {
        key: [view.strides[d] for d in others] for key, view in (("s", source), ("t", result))
    }
    gen.nest(entry, [source.shape[d] for d in others], strides, line)


def _copy(
    gen: Codegen, source: str, source_stride: int, target: str, target_stride: int, count: int, dtype: str
) -> None:
    entry = gen.entry

    def element(offsets: dict[Hashable, str]) -> None:
        gen.store(entry, gen.load(entry, source, offsets["s"], dtype, "x"), target, offsets["t"], dtype)

    gen.nest(entry, [count], {"s": [source_stride], "t": [target_stride]}, element)


def _count(gen: Codegen, order: str, length: int) -> None:
    """``order[i] = i``: the positions argsort permutes."""
    gen.nest(
        gen.entry,
        [length],
        {"o": [1]},
        lambda offsets: gen.store(gen.entry, offsets["o"], order, offsets["o"], "int64"),
    )


def _argsort(gen: Codegen, values: str, order: str, length: int, dtype: str) -> None:
    """The stable permutation of the contiguous line ``values`` into ``order`` (see the module docstring)."""
    entry = gen.entry
    _count(gen, order, length)
    stable = f"call i32 @{symbol('stable', dtype)}(ptr {values}, ptr {order}, i64 {length}, ptr null)"
    if length < STABLE_AT_ONCE:
        entry.do(stable)
        return
    entry.do(f"call i32 @{symbol('argsort', dtype)}(ptr {values}, ptr {order}, i64 {length}, ptr null)")
    tied = entry.alloca("i1", "tied")
    entry.do(f"store i1 false, ptr {tied}")
    _find_ties(gen, values, order, length, dtype, tied)
    again, done = entry.label("sort.again"), entry.label("sort.done")
    entry.do(f"br i1 {entry.emit(f'load i1, ptr {tied}', 'tied')}, label %{again}, label %{done}")
    entry.place(again)
    _count(gen, order, length)
    entry.do(stable)
    entry.do(f"br label %{done}")
    entry.place(done)


def _find_ties(gen: Codegen, values: str, order: str, length: int, dtype: str, tied: str) -> None:
    """``tied`` set when two neighbours in ``order`` name equal values (or NaNs: unordered counts)."""
    entry = gen.entry
    t = scalar_ops.register_type(dtype)

    def neighbours(offsets: dict[Hashable, str]) -> None:
        emit = entry.emit
        first = gen.load(entry, order, offsets["i"], "int64", "first")
        second = gen.load(entry, order, emit(f"add i64 {offsets['i']}, 1", "next"), "int64", "second")
        a, b = (gen.load(entry, values, position, dtype, "v") for position in (first, second))
        same = emit(f"fcmp ueq {t} {a}, {b}") if scalar_ops.is_float(dtype) else emit(f"icmp eq {t} {a}, {b}")
        so_far = emit(f"load i1, ptr {tied}", "tied")
        entry.do(f"store i1 {emit(f'or i1 {so_far}, {same}')}, ptr {tied}")

    gen.nest(entry, [length - 1], {"i": [1]}, neighbours)
