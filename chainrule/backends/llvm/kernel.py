"""A compiled graph as a Python callable: ``LlvmKernel.fn(*inputs) -> tuple of outputs``.

The calling interface is ``NumpyKernel``'s. Per call, the Python side does as
little as it can: everything that does not change between calls (the table of
pointers, the arena, the constants, views of small outputs) is prepared once,
and a wrapper generated for the kernel's signature only writes what does:

- a 0-d input's value into its arena slot (no address needed);
- an array input's address into its table slot (``arr.ctypes.data``, ~1 us);
- for a large output, a fresh ``np.empty`` and its address (the caller owns it);

then makes the one native call and reads small outputs back (a 0-d output as a
NumPy scalar, as NumPy's own operations return them). The arena belongs to the
kernel, so calls of one kernel from several threads take turns (a lock).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from chainrule.backends.llvm import control, engine, lapack
from chainrule.backends.llvm.lower import ARENA, CALLBACK, CONSTANTS, lower
from chainrule.backends.llvm.plan import Lowered
from chainrule.backends.llvm.strategies import strategy_of
from chainrule.backends.llvm.views import View
from chainrule.errors import ChainruleError
from chainrule.ir import OPS, Graph

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
LONG_LOOP_STEPS = 128
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int64)

_threads = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)]


def set_num_threads(count: int) -> None:
    """How many threads large loops use (default: the CPUs this process may run on)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads needs a positive int, got {count!r}")
    _threads[0] = count


def get_num_threads() -> int:
    return _threads[0]


@dataclass
class LlvmKernel:
    """A compiled graph: ``fn(*flat_inputs) -> tuple of outputs``, its LLVM IR as ``source``.

    ``native`` is the engine's module: it keeps the machine code mapped, so it lives
    as long as the kernel.
    """

    fn: Callable
    source: str
    filename: str
    native: object = field(repr=False, default=None)
    lowered: Lowered | None = field(repr=False, default=None)
    accepts_scalars: bool = True  # 0-d inputs may be NumPy or Python scalars, not only arrays


def compile_graph(graph: Graph, function_name: str | None = None) -> LlvmKernel:
    """Lower ``graph`` (a scheduled graph) to LLVM, compile it and wrap it for Python.

    >>> import numpy as np, chainrule as cr
    >>> kernel = compile_graph(cr.trace(lambda x: np.sin(x) * 2, np.zeros(3)))
    >>> kernel.fn(np.array([0.0, np.pi / 2, 0.0]))[0]
    array([0., 2., 0.])
    """
    name = function_name or graph.name
    lowered = lower(graph, name)
    # A long loop body is vectorized and interleaved into ~4x its length, and code generation at O2
    # then dominates compile time: the depth-30 nested gradient (250 steps) compiles in half the
    # time at O1 and runs 7% slower.
    optimization = "O1" if lowered.longest_loop >= LONG_LOOP_STEPS else None
    native = engine.compile_ir(lowered.ir, name=name, optimization=optimization)
    runner = _Runner(lowered, native, native.address(lowered.entry))
    return LlvmKernel(runner.make_call(), lowered.ir, f"<chainrule llvm {name}>", native, lowered)


class _Runner:
    """What one kernel keeps between calls: arena, constants, table, callback, generated wrapper."""

    def __init__(self, lowered: Lowered, native: engine.NativeModule, address: int):
        self.lowered = lowered
        self.native = native  # the machine code lives as long as anything that can call it
        self.entry = _ENTRY(address)
        # 64-byte aligned blocks: views into them must stay valid, so they are never reallocated
        self.arena = _aligned(max(lowered.arena_bytes, 8))
        self.constants = _aligned(lowered.constants.size)
        self.constants[:] = lowered.constants
        self.table = (ctypes.c_void_p * lowered.table_size)()
        self.table[ARENA] = self.arena.ctypes.data
        self.table[CONSTANTS] = self.constants.ctypes.data
        self.slot_arrays: dict[int, np.ndarray] = {}  # this call's inputs and outputs, for fallbacks
        self.error: BaseException | None = None
        if lowered.fallbacks:
            self.callback = _CALLBACK(self._run_fallback)
            self.table[CALLBACK] = ctypes.cast(self.callback, ctypes.c_void_p).value
        self.lock = threading.Lock()

    def view(self, view: View, base: np.ndarray | None = None) -> np.ndarray:
        if base is None:
            base = {ARENA: self.arena, CONSTANTS: self.constants}.get(view.slot)
            if base is None:
                base = self.slot_arrays[view.slot]
        itemsize = np.dtype(view.dtype).itemsize
        if 0 in view.shape:
            return np.empty(view.shape, view.dtype)
        return np.ndarray(
            view.shape,
            view.dtype,
            buffer=base.reshape(-1).view(np.uint8),
            offset=view.offset,
            strides=tuple(s * itemsize for s in view.strides),
        )

    def _run_fallback(self, index: int) -> None:
        try:
            fallback = self.lowered.fallbacks[index]
            operands = [self.view(v) for v in fallback.operands]
            run = strategy_of(fallback.op).run
            result = (
                OPS[fallback.op].eager(*operands, **fallback.params) if run is None else run(operands, fallback.params)
            )
            self.view(fallback.result)[...] = result
        except BaseException as error:  # reported after the native call returns
            if self.error is None:
                self.error = error

    def _lapack_status(self, namespace: dict[str, Any]) -> list[str]:
        """The lines raising the failure LAPACK's status names (0: none), if the kernel calls LAPACK."""
        lowered = self.lowered
        if not lowered.failures:
            return []
        namespace["status"] = self.view(View(ARENA, lowered.status_offset, (1,), (1,), "int32"))
        namespace["raise_lapack"] = lambda code: lapack.raise_failure(lowered.failures, code)
        return ["if status[0]:", "    raise_lapack(int(status[0]))"]

    def make_call(self) -> Callable:
        """A Python function, generated for this signature, doing one call's work."""
        lowered = self.lowered
        names = [f"in{i}" for i in range(len(lowered.inputs))]
        namespace: dict[str, Any] = {
            "np": np,
            "lock": self.lock,
            "entry": self.entry,
            "table": self.table,
            "table_address": ctypes.addressof(self.table),
            "threads": _threads,
            "runner": self,
            "ascontiguousarray": np.ascontiguousarray,
            "empty": np.empty,
        }
        lines = [f"def call({', '.join(names)}):", "    with lock:"]
        body = []
        keep = bool(lowered.fallbacks)
        for name, spec in zip(names, lowered.inputs):
            if spec.staged is not None:
                namespace[f"{name}_stage"] = self.view(View(ARENA, spec.staged.offset, (1,), (1,), spec.dtype))
                body.append(f"{name}_stage[0] = {name}")
            else:
                # returns a C-contiguous native-order array as it is; copies one in the other byte order
                namespace[f"{name}_dtype"] = np.dtype(spec.dtype)
                body.append(f"{name} = ascontiguousarray({name}, {name}_dtype)")
                body.append(f"table[{spec.slot}] = {name}.ctypes.data")
                if keep:
                    body.append(f"runner.slot_arrays[{spec.slot}] = {name}")
        returned = []
        for index, output in enumerate(lowered.outputs):
            if output.slot is not None:
                body.append(f"out{index} = empty({output.shape!r}, np.{output.dtype})")
                body.append(f"table[{output.slot}] = out{index}.ctypes.data")
                if keep:
                    body.append(f"runner.slot_arrays[{output.slot}] = out{index}")
                returned.append(f"out{index}")
                continue
            assert output.arena_view is not None, f"output {index} has neither a slot nor a place in the arena"
            if output.shape == ():
                namespace[f"out{index}_view"] = self.view(
                    View(ARENA, output.arena_view.offset, (1,), (1,), output.dtype)
                )
                returned.append(f"out{index}_view[0]")
            else:
                namespace[f"out{index}_view"] = self.view(output.arena_view)
                returned.append(f"out{index}_view.copy()")
        body += ["entry(table_address, threads[0])", *self._lapack_status(namespace)]
        if keep:
            body += [
                "runner.slot_arrays.clear()",
                "if runner.error is not None:",
                "    error, runner.error = runner.error, None",
                "    raise_from_fallback(error)",
            ]
            namespace["raise_from_fallback"] = _raise_from_fallback
        body.append(f"return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
        lines += [f"        {line}" for line in body]
        exec(compile("\n".join(lines) + "\n", f"<chainrule llvm call {lowered.entry}>", "exec"), namespace)
        return namespace["call"]


def _raise_from_fallback(error: BaseException) -> NoReturn:
    if isinstance(error, ChainruleError):
        raise error
    raise ChainruleError(
        f"a node run by NumPy inside an llvm kernel failed: {type(error).__name__}: {error}"
    ) from error


def _aligned(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start : start + nbytes]


control.set_native_compiler(lambda graph: compile_graph(graph, graph.name).fn)  # loop bodies run natively
