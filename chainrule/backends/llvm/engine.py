"""LLVM IR text -> callable native code, through ORC LLJIT.

``compile_ir`` parses the module, verifies it, optimizes it with the new pass
builder for the host CPU, emits object code (reused from the disk cache when
the same IR was compiled before, see ``cache.py``) and links it into the
process. The returned ``NativeModule`` hands out function addresses and keeps
the JIT's memory alive as long as it lives:

    >>> import ctypes
    >>> module = compile_ir('''
    ... define double @twice(double %x) {
    ...   %y = fmul double %x, 2.0
    ...   ret double %y
    ... }''', name="twice")
    >>> twice = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(module.address("twice"))
    >>> twice(1.5)
    3.0

JIT code reaches the world outside its module only by symbol name: libm and
libmvec through the process's symbol table, BLAS through the names in
``RUNTIME_SYMBOLS`` (``chainrule_dgemm`` ...), bound to this process's addresses
at link time. Object code never holds a raw address, so cached code stays valid
in the next process.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

from chainrule.backends.llvm import blas, cache, lapack, mathlib, special_ops
from chainrule.errors import ChainruleError

# O2 costs ~40-300 µs of CPU per instruction here (benchmarks/llvm_engine.py), more the longer a
# block or loop body; above this many instructions the cheaper "O1" pipeline is used.
O2_MAX_INSTRUCTIONS = 2000
# Above this many, "O1L": O1, but the outlined functions of one basic block (a program of scalars
# unrolled by Python loops is ~1,000 of them, each a short run of loads, arithmetic and stores) are
# left unoptimized. Issue 24's GP likelihood at n = 30 (148,000 instructions): opt 1.1 -> 0.7 s CPU;
# such code runs in microseconds either way. Functions with loops are optimized as at O1.
O1_MAX_INSTRUCTIONS = 20_000


@dataclass(frozen=True)
class Pipeline:
    """An optimization pipeline: the pass builder's speed level and what runs at codegen."""

    speed_level: int
    codegen_level: int
    # SLP vectorization, interleaving and unrolling copy big loop bodies several times over;
    # loop vectorization stays on in every pipeline: libmvec's speedup comes from it.
    slp_interleave_unroll: bool
    # outlined (noinline) functions without a loop get ``optnone``: no pass spends time on them
    straight_line_unoptimized: bool = False


# O1 generates code at level 0 (fast instruction selection and register allocation): the greedy
# register allocator of levels 1-3 grows quadratically with a basic block's length (a straight
# 8,000-instruction block: 1.5 s at level 1-3, 0.28 s at 0), and the code ran as fast here,
# its time going to libm calls and dependent arithmetic.
PIPELINES = {"O2": Pipeline(2, 3, True), "O1": Pipeline(1, 0, False), "O1L": Pipeline(1, 0, False, True)}

# Name in JIT code -> function returning its address in this process. Imported at link time
# only when the IR mentions the name, so scipy is loaded only by modules that call BLAS.
RUNTIME_SYMBOLS = {
    "chainrule_dgemm": lambda: blas.address("dgemm"),
    "chainrule_sgemm": lambda: blas.address("sgemm"),
    **special_ops.RUNTIME_SYMBOLS,
    **lapack.RUNTIME_SYMBOLS,
}
# What every runtime symbol begins with: a module that never spells it mentions none of them, and
# one that does is searched only where it does (a 2 MB module: 73 scans of its text took 40 ms).
_RUNTIME_PREFIX = "chainrule_"
assert all(symbol.startswith(_RUNTIME_PREFIX) for symbol in RUNTIME_SYMBOLS), "runtime symbols are chainrule_*"


class LLVMError(ChainruleError):
    """LLVM rejected the IR chainrule generated: a bug in chainrule's LLVM backend, please report it."""


@dataclass(frozen=True)
class Target:
    """What code is compiled for: ``triple``, ``cpu`` name and ``features`` (``"+avx2,-avx512f,..."``).

    Part of the cache key, so code built for one CPU is never loaded on another.
    """

    triple: str
    cpu: str
    features: str

    @property
    def feature_set(self) -> frozenset[str]:
        """The features present (those marked ``+``)."""
        return frozenset(f[1:] for f in self.features.split(",") if f.startswith("+"))


@functools.cache
def host_target() -> Target:
    """The CPU this process runs on."""
    _initialize()
    return Target(llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten())


# LLVM's own command-line options, set once per process (they are process-wide, for every
# llvmlite user). The lowering's loops are long chains of vector math calls interleaved 4 times;
# a vectorized epilogue would be a third copy of such a body (compile time 138 -> 118 ms CPU on
# the nested depth-30 gradient without it, same run time): the scalar remainder does the tail.
LLVM_OPTIONS = ("-enable-epilogue-vectorization=false",)


@functools.cache
def _initialize() -> None:
    if llvm.llvm_version_info[0] < 20:  # llvmlite < 0.45 needs it; later ones refuse the call
        llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    for option in LLVM_OPTIONS:
        llvm.set_option("chainrule", option)


# Object code is position-independent in the small code model: calls, constants and globals are
# reached PC-relative. The JIT's default, the large code model, loads every address as a 64-bit
# immediate, and LLVM's fast instruction selector (code generation level 0: the O1 pipelines) gives
# up on calls so: each call of a long loop body went through SelectionDAG on its own (the nested
# gradient at depth 1000, 7,500 vector math calls: emit 0.92 -> 0.40 s CPU). JITLink (not
# RuntimeDyld) links it: it places a module's sections in one block, reaches functions outside it
# through stubs of its own, and fails a fixup out of range rather than truncating it.
RELOCATION_MODEL, CODE_MODEL = "pic", "small"


@functools.cache
def _target_machine(target: Target, codegen_level: int = 3) -> llvm.TargetMachine:
    _initialize()
    return llvm.Target.from_triple(target.triple).create_target_machine(
        cpu=target.cpu,
        features=target.features,
        opt=codegen_level,
        reloc=RELOCATION_MODEL,
        codemodel=CODE_MODEL,
        jit=True,
    )


# Each compiled module is a library in an LLJIT, unloaded when its ResourceTracker is freed.
# The library itself (a JITDylib, ~9 KB) stays: LLVM cannot remove one and llvmlite cannot
# reuse its name. So after LIBRARIES_PER_JIT libraries the next module goes into a new LLJIT,
# and an old one, with all its libraries, is freed when the last module linked into it is:
# compiling and dropping functions forever keeps memory bounded. Compiling and linking are
# serialized (the target machines are shared); the compiled code itself runs unlocked.
_lock = threading.RLock()
_library_numbers = itertools.count()
LIBRARIES_PER_JIT = 256
_jit: list = []  # [the LLJIT new modules go into, how many libraries it has]


def _lljit() -> llvm.LLJIT:
    """The LLJIT to link the next module into (call with ``_lock`` held)."""
    if not _jit or _jit[1] >= LIBRARIES_PER_JIT:
        _jit[:] = [llvm.create_lljit_compiler(_target_machine(host_target()), use_jit_link=True), 0]
    _jit[1] += 1
    return _jit[0]


class NativeModule:
    """A linked module: ``address(symbol)`` gives a function's address for ctypes.

    Holds the LLJIT and the library's resource tracker: when they are freed the
    code is unmapped, and calling an address taken earlier would crash. Keep the
    module referenced as long as any function pointer made from it.
    """

    def __init__(
        self,
        name: str,
        ir_text: str,
        target: Target,
        optimization: str,
        tracker: llvm.ResourceTracker,
        lljit: llvm.LLJIT,
        symbols: tuple[str, ...],
        from_cache: bool,
        optimized_ir: str | None,
    ):
        self.name = name
        self.ir_text = ir_text
        self.target = target
        self.optimization = optimization
        self.symbols = symbols
        self.from_cache = from_cache
        # Set in this order on purpose: an instance's attributes are released in insertion order,
        # so the tracker (the library's code) goes before its LLJIT can.
        self._tracker = tracker
        self._lljit = lljit
        self._optimized_ir = optimized_ir

    def address(self, symbol: str) -> int:
        """The address of the function (or global) ``symbol`` defined by the module."""
        if symbol not in self.symbols:
            raise LLVMError(
                f"module {self.name!r} defines no symbol {symbol!r}; it defines {', '.join(self.symbols) or 'nothing'}"
            )
        return self._tracker[symbol]

    @property
    def optimized_ir(self) -> str:
        """The IR after optimization, as LLVM compiled it (rebuilt on demand after a cache hit)."""
        if self._optimized_ir is None:
            with _lock:
                self._optimized_ir = _optimized_text(self.ir_text, self.target, self.optimization)
        return self._optimized_ir

    def __repr__(self) -> str:
        origin = "cached" if self.from_cache else "compiled"
        return f"<NativeModule {self.name} ({origin}, {self.optimization}): {', '.join(self.symbols)}>"


def compile_ir(
    ir_text: str, *, name: str, target: Target | None = None, use_cache: bool = True, optimization: str | None = None
) -> NativeModule:
    """Compile LLVM IR text and link it into this process.

    ``name`` labels the module (error messages, ``repr``); ``target`` defaults to
    the host CPU (another target must be one the host can run, e.g. the host
    minus some features). With ``use_cache`` object code is read from and
    written to the disk cache (``cache.cache_directory()``). ``optimization``
    (a key of ``PIPELINES``) defaults to ``optimization_level(ir_text)``.
    """
    target = target or host_target()
    optimization = optimization or optimization_level(ir_text)
    if optimization not in PIPELINES:
        raise ValueError(f"optimization must be one of {', '.join(PIPELINES)}, got {optimization!r}")
    key = cache.cache_key(
        ir_text,
        target,
        optimization,
        repr(PIPELINES[optimization]),
        mathlib.function_attributes(target.feature_set),
        RELOCATION_MODEL,
        CODE_MODEL,
        *LLVM_OPTIONS,
    )
    cached = cache.load(key) if use_cache else None
    optimized_ir = None
    with _lock:
        tracker = None
        if cached is not None:
            entry = cached
            try:
                tracker, lljit = _link(entry, ir_text, name)
            except LLVMError as error:  # a well-formed entry whose object code LLVM will not load
                cache.quarantine(key, str(error))
        if tracker is None:
            optimized_ir, entry = _build(ir_text, target, optimization)
            if use_cache:
                cache.store(key, entry)
            tracker, lljit = _link(entry, ir_text, name)
    return NativeModule(
        name,
        ir_text,
        target,
        optimization,
        tracker,
        lljit,
        entry.symbols,
        from_cache=optimized_ir is None,
        optimized_ir=optimized_ir,
    )


def optimization_level(ir_text: str, long_loops: bool = False) -> str:
    """``"O2"``; ``"O1"`` for modules of more than ``O2_MAX_INSTRUCTIONS`` instructions (or with
    ``long_loops``: loop bodies the vectorizer would copy into a long compile); ``"O1L"`` for more
    than ``O1_MAX_INSTRUCTIONS``."""
    count = instruction_count(ir_text)
    if count > O1_MAX_INSTRUCTIONS:
        return "O1L"
    return "O1" if long_loops or count > O2_MAX_INSTRUCTIONS else "O2"


# An indented line whose first character after the indent is neither blank nor ``;`` (after a newline:
# one regular expression scan is half the time of splitting the text into lines).
_INSTRUCTION_LINE = re.compile(r"\n[ \t]+[^\s;]")
# The line boundaries of str.splitlines besides "\n": IR text has none, and with one the lines are split so.
_OTHER_LINE_BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def instruction_count(ir_text: str) -> int:
    """The instructions in ``ir_text``: its indented, non-comment lines."""
    # Counting lines of text costs microseconds, walking the parsed module milliseconds.
    if not any(line_break in ir_text for line_break in _OTHER_LINE_BREAKS):
        return len(_INSTRUCTION_LINE.findall("\n" + ir_text))
    return sum(
        1
        for line in ir_text.splitlines()
        if line.startswith((" ", "\t")) and line.strip() and not line.lstrip().startswith(";")
    )


def _build(ir_text: str, target: Target, optimization: str) -> tuple[str, cache.Entry]:
    """The optimized IR text and the object code of ``ir_text``."""
    module = _parse(ir_text, target, optimization)
    try:
        _optimize(module, target, optimization)
        machine = _target_machine(target, PIPELINES[optimization].codegen_level)
        return str(module), cache.Entry(machine.emit_object(module), _exported_symbols(module))
    finally:
        module.close()


def _optimized_text(ir_text: str, target: Target, optimization: str) -> str:
    """The optimized IR text of ``ir_text``, without object code."""
    module = _parse(ir_text, target, optimization)
    try:
        _optimize(module, target, optimization)
        return str(module)
    finally:
        module.close()


def _parse(ir_text: str, target: Target, optimization: str = "O2") -> llvm.ModuleRef:
    try:
        # A context per module (the module holds it): types and constants die with the module
        # instead of piling up in the global context.
        text = _with_function_attributes(ir_text, target, PIPELINES[optimization].straight_line_unoptimized)
        module = llvm.parse_assembly(text, llvm.create_context())
    except RuntimeError as error:
        raise LLVMError(_describe(f"{_BUG}\n{error}", ir_text)) from None
    module.triple = target.triple
    module.data_layout = str(_target_machine(target).target_data)
    try:
        module.verify()
    except RuntimeError as error:
        raise LLVMError(_describe(f"{_BUG}\nLLVM IR verifier failed:\n{error}", ir_text)) from None
    return module


_BUG = "LLVM rejected the IR chainrule generated (a bug in chainrule; please report it)."
_FUNCTION_BODY_START = re.compile(r"^(define\b[^\n]*?)\s*\{[ \t]*$", re.MULTILINE)


_LABEL = re.compile(r"^[-\w.$]+:", re.MULTILINE)


def _with_function_attributes(ir_text: str, target: Target, straight_line_unoptimized: bool = False) -> str:
    """``ir_text`` with the target's attributes on every function definition (its lines unchanged),
    and ``optnone`` on noinline functions of one block if ``straight_line_unoptimized``."""
    attributes = mathlib.function_attributes(target.feature_set)
    text = _FUNCTION_BODY_START.sub(lambda match: f"{match.group(1)} {attributes} {{", ir_text)
    if not straight_line_unoptimized:
        return text
    functions = re.split(r"^(?=define )", text, flags=re.MULTILINE)
    for index, function in enumerate(functions):
        head, newline, body = function.partition("\n")
        if head.startswith("define ") and " noinline " in head and " optnone " not in head:
            labels = _LABEL.finditer(body)
            if next(labels, None) is None or next(labels, None) is None:  # one block (or none named)
                functions[index] = head.replace(" noinline ", " noinline optnone ", 1) + newline + body
    return "".join(functions)


def _optimize(module: llvm.ModuleRef, target: Target, optimization: str) -> None:
    pipeline = PIPELINES[optimization]
    tuning = llvm.create_pipeline_tuning_options(speed_level=pipeline.speed_level)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = pipeline.slp_interleave_unroll
    tuning.loop_interleaving = pipeline.slp_interleave_unroll
    tuning.loop_unrolling = pipeline.slp_interleave_unroll
    pass_builder = llvm.create_pass_builder(_target_machine(target), tuning)
    pass_builder.getModulePassManager().run(module, pass_builder)


def _exported_symbols(module: llvm.ModuleRef) -> tuple[str, ...]:
    local = (llvm.Linkage.internal, llvm.Linkage.private)
    functions = [f.name for f in module.functions if not f.is_declaration and f.linkage not in local]
    variables = [
        g.name
        for g in module.global_variables
        if not g.is_declaration and g.linkage not in local and not g.name.startswith("llvm.")
    ]
    return tuple(sorted(functions + variables))


def _link(entry: cache.Entry, ir_text: str, name: str) -> tuple[llvm.ResourceTracker, llvm.LLJIT]:
    """The linked library's tracker, and the LLJIT it lives in (which must outlive the tracker)."""
    if mathlib.VECTOR_SYMBOL_PREFIX in ir_text:
        mathlib.load_vector_library()
    builder = llvm.JITLibraryBuilder().add_object_img(entry.object_code).add_current_process()
    for symbol in _mentioned_runtime_symbols(ir_text):
        builder.import_symbol(symbol, RUNTIME_SYMBOLS[symbol]())
    for symbol in entry.symbols:
        builder.export_symbol(symbol)
    lljit = _lljit()
    try:
        return builder.link(lljit, f"{name}.{next(_library_numbers)}"), lljit
    except RuntimeError as error:
        raise LLVMError(f"linking module {name!r} failed: {error}") from None


def _mentioned_runtime_symbols(ir_text: str) -> list[str]:
    """The names of ``RUNTIME_SYMBOLS`` that occur in ``ir_text`` (as substrings), in its order."""
    starts = []
    start = ir_text.find(_RUNTIME_PREFIX)
    while start >= 0:
        starts.append(start)
        start = ir_text.find(_RUNTIME_PREFIX, start + 1)
    return [symbol for symbol in RUNTIME_SYMBOLS if any(ir_text.startswith(symbol, at) for at in starts)]


_LOCATION = re.compile(r"<string>:(\d+):(\d+):")
_DEFINITION = re.compile(r"%[-\w.$]+ =")
_EXCERPT_LINES = 2


def _describe(message: str, ir_text: str) -> str:
    """``message`` followed by the numbered IR lines it is about."""
    lines = ir_text.splitlines()
    wanted = {int(m.group(1)) for m in _LOCATION.finditer(message)}
    # The verifier names no line numbers; it prints the offending instructions (constants
    # respelled), so find the lines defining the same values, or equal to them.
    printed = {line.strip() for line in message.splitlines()[1:] if line.startswith("  ")}
    defined = {_defined_value(line) for line in printed} - {None}
    wanted |= {
        number
        for number, line in enumerate(lines, 1)
        if line.strip() in printed or _defined_value(line.strip()) in defined
    }
    if not wanted:
        return message
    shown = sorted(
        {n for w in wanted for n in range(w - _EXCERPT_LINES, w + _EXCERPT_LINES + 1) if 1 <= n <= len(lines)}
    )
    excerpt = "\n".join(f"{'>' if n in wanted else ' '}{n:5d} | {lines[n - 1]}" for n in shown)
    return f"{message.rstrip()}\nIR lines:\n{excerpt}"


def _defined_value(instruction: str) -> str | None:
    match = _DEFINITION.match(instruction)
    return match.group(0) if match else None
