"""``dft``, ``rdft`` and ``irdft`` in native code, by NumPy's own pocketfft loops.

``np.fft`` is a thin layer over four generalized ufuncs of ``numpy.fft._pocketfft_umath``
(``fft``/``ifft``, ``rfft_n_even``, ``rfft_n_odd``, ``irfft``, each ``(n),()->(m)``: a line of
points and a scale factor to a line of points). A ufunc keeps its inner loops as C function
pointers (``PyUFuncObject.functions``, one per dtype), with the standard signature
``loop(char **args, npy_intp *dimensions, npy_intp *steps, void *data)``. Native code calls
those loops directly: the transform NumPy computes, by NumPy's code, with no callback into
Python and no FFT written here (SciPy exports no FFT function pointers, and pocketfft is a real
library: mixed radices, Bluestein for large primes, plan caches).

The ufunc's layout is NumPy's ABI, fixed across the 2.x releases; each address is checked against
the ufunc's own description (arguments, dtypes) before it is used, and on any other NumPy the ops
keep the NumPy callback. The addresses are bound at link time, as BLAS's are
(``engine.RUNTIME_SYMBOLS``).

A call covers the lines of the transform along one other axis (pocketfft runs several lines at
once in SIMD when there are enough); the remaining axes are a loop nest around the calls. The
complex values are the IR's (real, imaginary) pairs, which are complex numbers' memory layout when
the pair axis has stride 1; an operand whose pairs are not adjacent (a broadcast pair axis) is
first copied into the scratch block. The direction of the complex transform is the loop's
``data`` argument (a pointer to pocketfft's ``FORWARD``/``BACKWARD`` flag, a bool: a byte of ours).
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
from chainrule.backends.llvm.views import View, contiguous_strides
from chainrule.ir import OPS as IR_OPS
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen
    from chainrule.backends.llvm.irtext import Function

OPS = ("dft", "rdft", "irdft")
DTYPES = ("float64", "float32")  # the ufuncs' loops 0 and 1 (2 is long double)
LOOPS = ("fft", "rfft_n_even", "rfft_n_odd", "irfft")
# PyUFuncObject: PyObject_HEAD (16 bytes), int nin, nout, nargs, identity; then the functions array,
# the data array, int ntypes (ufuncobject.h, NumPy 2.x)
_NIN, _FUNCTIONS, _NTYPES = 16, 32, 48
_COMPLEX = {"float64": "complex128", "float32": "complex64"}


def _expected_types(loop: str, dtype: str) -> list[str]:
    """The dtypes (input, scale, output) the loop of ``loop`` for ``dtype`` must have."""
    real, complex_ = dtype, _COMPLEX[dtype]
    return {"fft": [complex_, real, complex_], "irfft": [complex_, real, real]}.get(loop, [real, real, complex_])


@cache
def address(loop: str, dtype: str) -> int:
    """The address of pocketfft's inner loop ``loop`` for ``dtype``; 0 when this NumPy's ufunc does
    not look as expected (then the op is called back instead)."""
    try:
        ufunc = getattr(importlib.import_module("numpy.fft._pocketfft_umath"), loop)
    except (ImportError, AttributeError):
        return 0
    index = DTYPES.index(dtype)
    described = [np.dtype(code).name for code in ufunc.types[index].replace("->", "")]
    if int(np.__version__.split(".")[0]) != 2 or described != _expected_types(loop, dtype):
        return 0
    words = (ctypes.c_int * 3).from_address(id(ufunc) + _NIN)
    if list(words) != [2, 1, 3] or ctypes.c_int.from_address(id(ufunc) + _NTYPES).value != ufunc.ntypes:
        return 0
    functions = ctypes.c_void_p.from_address(id(ufunc) + _FUNCTIONS).value
    return (ctypes.c_void_p.from_address(functions + 8 * index).value or 0) if functions else 0


def symbol(loop: str, dtype: str) -> str:
    return f"chainrule_pocketfft_{loop}_{dtype}"


def _binder(loop: str, dtype: str) -> Callable[[], int]:
    return lambda: address(loop, dtype)


engine.RUNTIME_SYMBOLS.update({symbol(f, d): _binder(f, d) for f in LOOPS for d in DTYPES})


def _loop_of(graph: Graph, node_id: int) -> str:
    node = graph[node_id]
    if node.op == "dft":
        return "fft"
    if node.op == "irdft":
        return "irfft"
    return "rfft_n_odd" if graph.type(node.args[0]).shape[node.params["axis"]] % 2 else "rfft_n_even"


def ready(graph: Graph, node_id: int) -> bool:
    """Does this NumPy lend its pocketfft loop for the node's dtype (and is there something to transform)?"""
    node = graph[node_id]
    return node.type.dtype in DTYPES and node.type.size > 0 and bool(address(_loop_of(graph, node_id), node.type.dtype))


def _pairs_may_be_apart(graph: Graph, operand: int) -> bool:
    """Might the operand's (real, imaginary) pairs not be adjacent? Only a view's can, or a zeros
    node's (one element, every stride 0); computed values, arguments and constants are contiguous."""
    op = graph[operand].op
    return op == "zeros" or IR_OPS[op].view


def scratch_bytes(graph: Graph, node_id: int) -> int:
    """Room for a contiguous copy of a complex operand whose view might not hold its pairs together."""
    node = graph[node_id]
    operand = graph.type(node.args[0])
    if node.op == "rdft" or not _pairs_may_be_apart(graph, node.args[0]):
        return 0
    return STATUS_BYTES + region_bytes(operand.size, operand.dtype)


def emit(gen: Codegen, node_id: int) -> None:
    """The transform as calls of pocketfft's loop, one per line of the axes other than the last
    one not transformed (see the module docstring)."""
    node = gen.graph[node_id]
    entry = gen.entry
    loop = _loop_of(gen.graph, node_id)
    source, result = gen.plan.views[node.args[0]], gen.plan.views[node_id]
    dtype, axis = result.dtype, node.params["axis"]
    if node.op != "rdft" and source.strides[-1] != 1:
        source = _contiguous_copy(gen, source)
    itemsize = np.dtype(dtype).itemsize
    # the axes not transformed (the pair axis excluded): a nest of loops around the calls, the last
    # one the calls' own outer dimension
    others = [d for d in range(len(result.shape) - (node.op != "irdft")) if d != axis]
    outer = others[-1] if others else None
    memory = scalar_ops.memory_type(dtype)

    arguments = entry.alloca("[3 x ptr]", "fft.args")
    dimensions = entry.alloca("[3 x i64]", "fft.dims")
    steps = entry.alloca("[5 x i64]", "fft.steps")
    scale = entry.alloca(memory, "fft.scale")
    direction = entry.alloca("i8", "fft.direction")  # pocketfft's FORWARD is true, BACKWARD false
    entry.do(f"store {memory} {scalar_ops.float_literal(node.params['scale'], dtype)}, ptr {scale}")
    entry.do(f"store i8 {0 if node.params.get('inverse') else 1}, ptr {direction}")
    outer_count = result.shape[outer] if outer is not None else 1
    _store_words(entry, dimensions, [outer_count, source.shape[axis], result.shape[axis]])
    line_steps = [view.strides[outer] * itemsize if outer is not None else 0 for view in (source, result)]
    point_steps = [view.strides[axis] * itemsize for view in (source, result)]
    _store_words(entry, steps, [line_steps[0], 0, line_steps[1], *point_steps])  # the scale: step 0
    entry.do(f"store ptr {scale}, ptr {entry.emit(f'getelementptr ptr, ptr {arguments}, i64 1', 'fft.arg')}")
    entry.declare(f"declare void @{symbol(loop, dtype)}(ptr, ptr, ptr, ptr)")
    cache: dict[object, str] = {}
    pointers = {"s": gen.base(entry, source, cache), "t": gen.base(entry, result, cache)}

    def call(offsets: dict[Hashable, str]) -> None:
        for position, key in ((0, "s"), (2, "t")):
            start = entry.emit(f"getelementptr {memory}, ptr {pointers[key]}, i64 {offsets[key]}", "fft.line")
            slot = entry.emit(f"getelementptr ptr, ptr {arguments}, i64 {position}", "fft.arg")
            entry.do(f"store ptr {start}, ptr {slot}")
        data = direction if node.op == "dft" else "null"
        entry.do(f"call void @{symbol(loop, dtype)}(ptr {arguments}, ptr {dimensions}, ptr {steps}, ptr {data})")

    around = others[:-1]
    strides: dict[Hashable, list[int]] = {
        key: [view.strides[d] for d in around] for key, view in (("s", source), ("t", result))
    }
    gen.nest(entry, [result.shape[d] for d in around], strides, call)


def _store_words(entry: Function, array: str, values: list[int]) -> None:
    for index, value in enumerate(values):
        at = entry.emit(f"getelementptr i64, ptr {array}, i64 {index}", "fft.word")
        entry.do(f"store i64 {value}, ptr {at}")


def _contiguous_copy(gen: Codegen, source: View) -> View:
    """``source``'s elements copied in C order into the scratch block; the copy's view."""
    entry = gen.entry
    cache: dict[object, str] = {}
    from_pointer = gen.base(entry, source, cache)
    scratch = gen.base(entry, gen.plan.scratch, cache)
    to_pointer = entry.emit(f"getelementptr i8, ptr {scratch}, i64 {STATUS_BYTES}", "fft.copy")
    strides = contiguous_strides(source.shape)

    def element(offsets: dict[Hashable, str]) -> None:
        value = gen.load(entry, from_pointer, offsets["s"], source.dtype, "x")
        gen.store(entry, value, to_pointer, offsets["t"], source.dtype)

    gen.nest(entry, list(source.shape), {"s": list(source.strides), "t": list(strides)}, element)
    copy_offset = gen.plan.scratch.offset + STATUS_BYTES
    return View(gen.plan.scratch.slot, copy_offset, source.shape, strides, source.dtype)
