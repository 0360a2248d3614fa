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

A kernel whose inputs and outputs are all float64 scalars also gets native scalar
entries (``python_entry.scalar_entries_ir``): ``double f(double, ...)`` per output, with the arena
and table on the native stack, callable through ctypes with Python numbers (no array, no
lock, no wrapper), and the same as CPython builtins taking Python floats
(``python_builtin``, python_entry.py): ``cr.grad(f)(4.2)`` is one such builtin call.

Threads: a call passes the kernel's thread count. ``threads_for`` proposes one from the
estimated work (``estimated_work_ns``) up to ``get_num_threads()``: one thread unless the time
an extra thread saves is well above what handing loops to the pool costs. A count above one is
then confirmed by timing the kernel's first calls on 1 thread and on that count
(``thread_choice.py``); ``set_exact_threads(n)`` skips both (every parallel loop on n threads).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from chainrule.backends.llvm import array_entry, control, conv, engine, lapack, maxpool, python_entry
from chainrule.backends.llvm.lower import ARENA, CALLBACK, CONSTANTS, lower
from chainrule.backends.llvm.plan import Lowered
from chainrule.backends.llvm.strategies import strategy_of
from chainrule.backends.llvm.thread_choice import ThreadChoice, cpu_count
from chainrule.backends.llvm.views import View
from chainrule.errors import ChainruleError
from chainrule.ir import OPS, Graph

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
LONG_LOOP_STEPS = 128
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int64)
# A call of a kernel with parallel loops: its ThreadChoice's count; during the trial, timed.
_TIMED_CALL = [
    "choice = choices.get(setting[0]) or runner.choice(setting[0])",
    "if choice.settled:",
    "    entry(table_address, choice.threads)",
    "    choice.tick()",
    "else:",
    "    count = choice.next_count()",
    "    start = clock()",
    "    entry(table_address, count)",
    "    choice.record(count, clock() - start)",
]

# How many threads a kernel uses: as many as pay for themselves, up to a maximum (see threads_for).
# The maximum: set_num_threads(n), else CHAINRULE_NUM_THREADS, else OMP_NUM_THREADS (its first
# entry; both read at import, as OpenMP does), else the CPUs this process may run on.
THREAD_VARIABLES = ("CHAINRULE_NUM_THREADS", "OMP_NUM_THREADS")
# What the pool (pool.py) costs a call per extra thread: waking a parked worker once (its first
# loop; the workers spin between loops) and handing it each loop. Measured on a 2-core machine
# shared with other work: ~0.3-0.7 us per loop to a spinning worker (benchmarks/scalar_call.py
# prints it); a wake-up is the scheduler's, tens of us on a busy machine.
WAKE_NS = 50_000
HANDOFF_NS = 2_000
# What one element of one step costs in a loop on one thread: a vector libm call (libmvec, 8
# lanes) or arithmetic with its loads and stores. An estimate: it decides only the thread count.
MATH_CALL_NS = 1.5
ARITHMETIC_NS = 0.3
# An extra thread must save this many times what it costs, so errors in the estimate (or a busy
# machine) do not make a kernel slower than on one thread.
THREAD_PAYOFF = 2


def threads_from_environment(environment: Mapping[str, str]) -> int:
    """The maximum thread count ``environment`` asks for, or this process's CPU count.

    >>> threads_from_environment({"CHAINRULE_NUM_THREADS": "3", "OMP_NUM_THREADS": "8"})
    3
    """
    for variable in THREAD_VARIABLES:
        text = environment.get(variable, "").split(",")[0].strip()  # OMP_NUM_THREADS may be "4,2"
        if text.isdigit() and int(text) > 0:
            return int(text)
    return cpu_count()


_threads = [threads_from_environment(os.environ)]
# What a kernel's calls look up their ThreadChoice by: (maximum, exact count or None).
_setting: list[tuple[int, int | None]] = [(_threads[0], None)]


def set_num_threads(count: int) -> None:
    """The most threads a kernel's large loops use (each kernel uses fewer when its work is small).

    Overrides ``CHAINRULE_NUM_THREADS`` and ``OMP_NUM_THREADS``, which override the CPU count.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads needs a positive int, got {count!r}")
    _threads[0] = count
    _setting[0] = (count, _setting[0][1])


def set_exact_threads(count: int | None) -> None:
    """Run every parallel loop on exactly ``count`` threads (no estimate, no timing), or, with
    None, go back to choosing per kernel. For measurements: results do not depend on it.
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"set_exact_threads needs a positive int or None, got {count!r}")
    _setting[0] = (_setting[0][0], count)


def get_num_threads() -> int:
    """The most threads a kernel uses (see ``set_num_threads``)."""
    return _threads[0]


def threads_for(work_ns: float, parallel_loops: int, most: int) -> int:
    """The thread count proposed for a kernel: the largest ``t <= most`` whose saving pays its cost.

    With ``t`` threads, a kernel of ``work_ns`` on one thread saves ``work_ns * (1 - 1/t)`` and
    wakes ``t - 1`` workers, handing each every parallel loop; small work gets 1 thread.

    >>> threads_for(1e3, 1, 8), threads_for(1e8, 1, 8)
    (1, 8)
    """
    if parallel_loops == 0:
        return 1
    best = 1
    for count in range(2, most + 1):
        if work_ns * (1 - 1 / count) >= THREAD_PAYOFF * (count - 1) * (WAKE_NS + parallel_loops * HANDOFF_NS):
            best = count
    return best


def estimated_work_ns(graph: Graph) -> float:
    """What the kernel's loops cost on one thread: elements x steps, a math call dearer than arithmetic.

    Counts elementwise, fused and reduction nodes of ``graph`` and the copying loops of
    convolutions and pools (other units, such as BLAS, LAPACK or native loops, do not run on these
    threads, or fork per iteration: they count nothing).
    """
    total = 0.0
    step_ns = {op: MATH_CALL_NS if spec.libm else ARITHMETIC_NS for op, spec in OPS.items()}
    for node_id, node in enumerate(graph.nodes):
        if node.op in conv.OPS or node.op in maxpool.OPS:
            module = conv if node.op in conv.OPS else maxpool
            total += module.loop_elements(graph, node_id) * ARITHMETIC_NS
            continue
        if node.op == "fused":  # every step runs over the region's shape (a final reduction's operand)
            body = node.params["body"].steps
            region = max([step[3].size for step in body])
            total += sum([region * step_ns[step[0]] for step in body])
        elif OPS[node.op].kind in ("elementwise", "reduction"):
            total += max(node.type.size, *(graph.type(a).size for a in node.args)) * step_ns[node.op]
    return total


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
    # For a kernel whose inputs and outputs are all float64 scalars: per output k, a native function
    # taking the inputs as Python numbers and returning output k as a Python float (see
    # ``python_entry.scalar_entries_ir``). None when the signature does not allow it.
    scalar_outputs: tuple[Callable[..., float], ...] | None = None
    # Per output k, the address of ``<entry>_python<k>``: the same call as a CPython METH_FASTCALL
    # function (python_entry.py), made a builtin by ``python_builtin``. None without scalar entries.
    python_entries: tuple[int, ...] | None = None
    builtins: dict[tuple[int, int], Callable[..., Any]] = field(repr=False, default_factory=dict)
    work_ns: float = 0.0  # estimated time of its loops on one thread (estimated_work_ns)
    # ``array_caller(missed)``: its call through the array builtin, returning ``missed`` for arguments
    # the builtin does not take; None when it has none (``_Runner.array_caller``, array_entry.py)
    array_caller: Callable[[object], Callable[..., Any] | None] = field(repr=False, default=lambda missed: None)
    # the ThreadChoice its calls use under the current setting (see thread_choice.py)
    thread_choice: Callable[[], ThreadChoice] | None = field(repr=False, default=None)

    def python_builtin(
        self, output: int, fallback: Callable[..., Any], hits: ctypes.c_uint64 | None = None
    ) -> Callable[..., Any] | None:
        """Output ``output`` as a builtin of Python floats returning a float, passing other
        arguments on to ``fallback`` (python_entry.py) and counting its own runs in ``hits``; None
        if there is none. Without ``hits`` (runs not counted) it is made once per fallback, which
        must then live as long as the process: a signature flipping back and forth reuses it."""
        if self.python_entries is None:
            return None
        name = f"{self.filename[1:-1].rsplit(' ', 1)[-1]}_output{output}"
        address = self.python_entries[output]
        if hits is not None:
            return python_entry.make_float_builtin(address, name, fallback, hits, self.native)
        key = (output, id(fallback))
        if key not in self.builtins:
            uncounted = ctypes.c_uint64()
            self.builtins[key] = python_entry.make_float_builtin(address, name, fallback, uncounted, self.native)
        return self.builtins[key]

    def thread_count(self) -> int:
        """The threads its calls use: the settled count, or during the trial the candidate tried."""
        if self.thread_choice is None:
            return 1
        choice = self.thread_choice()
        return choice.threads if choice.settled else choice.candidate


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
    scalar_ir = python_entry.scalar_entries_ir(lowered)
    python_ir = ""
    if scalar_ir and python_entry.available():
        python_ir = python_entry.python_entries_ir(lowered.entry, len(lowered.inputs), len(lowered.outputs))
    work_ns = estimated_work_ns(graph)
    arrays_ir = "" if scalar_ir else array_entry.arrays_ir(lowered) if array_entry.eligible(lowered, work_ns) else ""
    optimization = engine.optimization_level(lowered.ir, long_loops=lowered.longest_loop >= LONG_LOOP_STEPS)
    native = engine.compile_ir(lowered.ir + scalar_ir + python_ir + arrays_ir, name=name, optimization=optimization)
    runner = _Runner(lowered, native, native.address(lowered.entry), work_ns)
    if arrays_ir:
        runner.arrays = runner.array_builtin(native.address(f"{lowered.entry}_arrays"), name)
    kernel = LlvmKernel(runner.make_call(), lowered.ir, f"<chainrule llvm {name}>", native, lowered)
    kernel.work_ns = runner.work_ns
    kernel.array_caller = runner.array_caller
    if lowered.parallel_loops:
        kernel.thread_choice = lambda: runner.choice(_setting[0])
    if scalar_ir:
        signature = ctypes.CFUNCTYPE(ctypes.c_double, *[ctypes.c_double] * len(lowered.inputs))
        kernel.scalar_outputs = tuple(
            signature(native.address(f"{lowered.entry}_scalar{k}")) for k in range(len(lowered.outputs))
        )
    if python_ir:
        kernel.python_entries = tuple(native.address(f"{lowered.entry}_python{k}") for k in range(len(lowered.outputs)))
    return kernel


class _Runner:
    """What one kernel keeps between calls: arena, constants, table, callback, generated wrapper."""

    def __init__(self, lowered: Lowered, native: engine.NativeModule, address: int, work_ns: float):
        self.lowered = lowered
        self.work_ns = work_ns
        self.choices: dict[tuple[int, int | None], ThreadChoice] = {}  # per setting (_setting)
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
        self.arrays: Callable[..., Any] | None = None  # the array builtin (array_entry.py), if any
        self.fast_arena = self.arena  # the arena the array builtin uses: its own
        self.fast_lock = threading.Lock()  # held while results are read out of fast_arena
        # id(missed) -> array_caller's call; "whole" -> what makes a Compiled's whole call
        self.array_callers: dict[object, Callable[..., Any]] = {}

    def array_builtin(self, address: int, name: str) -> Callable[..., Any]:
        """The array builtin at ``address`` (array_entry.py), with an arena of its own."""
        self.fast_arena = _aligned(max(self.lowered.arena_bytes, 8))
        words = array_entry.guard_words(self.lowered, self.fast_arena, self.constants)
        return python_entry.make_builtin(address, f"{name}_arrays", words, self.native)

    def choice(self, setting: tuple[int, int | None]) -> ThreadChoice:
        """This kernel's ThreadChoice under ``(maximum, exact count)``, made on first use."""
        if setting not in self.choices:
            most, exact = setting
            if exact is not None:
                self.choices[setting] = ThreadChoice.fixed(exact)
            else:
                self.choices[setting] = ThreadChoice(threads_for(self.work_ns, self.lowered.parallel_loops, most))
        return self.choices[setting]

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

    def _lapack_status(self, namespace: dict[str, Any], arena: np.ndarray, prefix: str = "") -> list[str]:
        """The lines raising the failure LAPACK's status in ``arena`` names (0: none), if the kernel calls LAPACK."""
        lowered = self.lowered
        if not lowered.failures:
            return []
        namespace[f"{prefix}status"] = self.view(View(ARENA, lowered.status_offset, (1,), (1,), "int32"), arena)
        namespace["raise_lapack"] = lambda code: lapack.raise_failure(lowered.failures, code)
        return [f"if {prefix}status[0]:", f"    raise_lapack(int({prefix}status[0]))"]

    def _namespace(self) -> dict[str, Any]:
        """What every generated call reads besides its own views."""
        return {
            "np": np,
            "lock": self.lock,
            "entry": self.entry,
            "table": self.table,
            "table_address": ctypes.addressof(self.table),
            "setting": _setting,
            "choices": self.choices,
            "clock": time.perf_counter_ns,
            "runner": self,
            "ascontiguousarray": np.ascontiguousarray,
            "empty": np.empty,
        }

    def _returned(self, namespace: dict[str, Any], arena: np.ndarray, prefix: str = "") -> str:
        """The expression a call returns: slot outputs as they are, arena ones read out of ``arena``."""
        returned = []
        for index, output in enumerate(self.lowered.outputs):
            name = f"{prefix}out{index}_view"
            if output.slot is not None:
                returned.append(f"out{index}")
            elif output.shape == ():
                assert output.arena_view is not None, f"output {index} has neither a slot nor a place in the arena"
                namespace[name] = self.view(View(ARENA, output.arena_view.offset, (1,), (1,), output.dtype), arena)
                returned.append(f"{name}[0]")
            else:
                assert output.arena_view is not None, f"output {index} has neither a slot nor a place in the arena"
                namespace[name] = self.view(output.arena_view, arena)
                returned.append(f"{name}.copy()")
        return f"({', '.join(returned)}{',' if len(returned) == 1 else ''})"

    def _fast_lines(self, namespace: dict[str, Any], arguments: str, finish: bool = False) -> list[str]:
        """Allocating the slot outputs, then, with an array builtin, the call through it (returning
        the outputs, or with ``finish`` a hit of ``stats`` counted and ``finish(outputs)``)."""
        lines = [
            f"out{index} = empty({output.shape!r}, np.{output.dtype})"
            for index, output in enumerate(self.lowered.outputs)
            if output.slot is not None
        ]
        if self.arrays is None:
            return lines
        namespace["arrays"] = self.arrays
        outputs = "".join(f", out{i}" for i, output in enumerate(self.lowered.outputs) if output.slot is not None)
        returned = self._returned(namespace, self.fast_arena, "fast_")
        body = [
            *self._lapack_status(namespace, self.fast_arena, "fast_"),
            *(["stats.hits += 1", f"return finish({returned})"] if finish else [f"return {returned}"]),
        ]
        call = [f"if arrays({arguments}{outputs}) is None:", *[f"    {line}" for line in body]]
        if not self._reads_arena():
            return [*lines, *call]
        # The builtin holds the GIL while it runs, but what it left in its arena is read after it
        # returns: another thread's call in between would overwrite it first. (Bound methods and
        # try/finally: a with statement cost 3x as much, ~0.5 us a call.)
        namespace["acquire_fast"], namespace["release_fast"] = self.fast_lock.acquire, self.fast_lock.release
        return [*lines, "acquire_fast()", "try:", *[f"    {line}" for line in call], "finally:", "    release_fast()"]

    def _reads_arena(self) -> bool:
        """Does a call read results out of the arena after the entry ran (outputs or LAPACK's status)?"""
        return any(output.slot is None for output in self.lowered.outputs) or bool(self.lowered.failures)

    def array_caller(self, missed: object, whole: tuple[Any, Any, Any] | None = None) -> Callable[..., Any] | None:
        """``call(*inputs)``: the outputs through the array builtin, or ``missed`` when its guard
        fails (arguments that are not exactly the kernel's arrays); None without a builtin. With
        ``whole`` (finish, fallback, stats), a Compiled's whole call instead (scalar_call.py):
        ``finish(outputs)``, a hit counted in ``stats``, and any other call passed on to ``fallback``."""
        if self.arrays is None:
            return None
        key = "whole" if whole is not None else id(missed)
        if key not in self.array_callers:  # generated once: a Compiled made again only makes a closure
            namespace = {**self._namespace(), "missed": missed}
            if whole is None:
                fast = [f"    {line}" for line in self._fast_lines(namespace, "*inputs")]
                lines = ["def make():", "  def call(*inputs):", *fast, "    return missed", "  return call"]
            else:
                fast = [f"      {line}" for line in self._fast_lines(namespace, "*inputs", finish=True)]
                head = [
                    "def make(finish, fallback, stats):",
                    "  def call(*inputs, **keywords):",
                    "    if not keywords:",
                ]
                lines = [*head, *fast, "    return fallback(*inputs, **keywords)", "  return call"]
            exec(compile("\n".join(lines) + "\n", f"<chainrule llvm arrays {self.lowered.entry}>", "exec"), namespace)
            self.array_callers[key] = namespace["make"]() if whole is None else namespace["make"]
        return self.array_callers[key] if whole is None else self.array_callers[key](*whole)

    def make_call(self) -> Callable:
        """A Python function, generated for this signature, doing one call's work."""
        lowered = self.lowered
        names = [f"in{i}" for i in range(len(lowered.inputs))]
        namespace = self._namespace()
        lines = [
            f"def call({', '.join(names)}):",
            *[f"    {line}" for line in self._fast_lines(namespace, ", ".join(names))],
        ]
        lines.append("    with lock:")
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
        for index, output in enumerate(lowered.outputs):
            if output.slot is not None:
                body.append(f"table[{output.slot}] = out{index}.ctypes.data")
                if keep:
                    body.append(f"runner.slot_arrays[{output.slot}] = out{index}")
        body += [
            *(_TIMED_CALL if lowered.parallel_loops else ["entry(table_address, 1)"]),
            *self._lapack_status(namespace, self.arena),
        ]
        if keep:
            body += [
                "runner.slot_arrays.clear()",
                "if runner.error is not None:",
                "    error, runner.error = runner.error, None",
                "    raise_from_fallback(error)",
            ]
            namespace["raise_from_fallback"] = _raise_from_fallback
        body.append("return " + self._returned(namespace, self.arena))
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
