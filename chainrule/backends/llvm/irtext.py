"""Writing LLVM IR as text: functions of named SSA values, labels and comments.

Text rather than ``llvmlite.ir`` objects: the module is what ``.source()`` shows,
so it should read well (values named after the user's variables, a comment per
fused region), and building text is several times cheaper than building objects.
"""

from __future__ import annotations

import re

from chainrule.backends.llvm import mathlib

_NOT_IN_NAMES = re.compile(r"[^-\w.$]")
_BASES: dict[str, str] = {}  # a hint -> the register name it gives (a kernel asks for the same few thousands of times)


def _base(hint: str) -> str:
    base = _NOT_IN_NAMES.sub("_", hint) or "v"
    if base[0].isdigit():
        base = "v" + base
    if len(_BASES) < 100_000:
        _BASES[hint] = base
    return base


class Module:
    """Declarations and globals (each line once) plus function definitions, in order."""

    def __init__(self) -> None:
        self.declarations: dict[str, None] = {}
        self.math_used: dict[tuple[str, str], None] = {}
        self.isa = mathlib.vector_isa()  # asked once: a long kernel makes thousands of math calls
        self.functions: list[Function] = []
        self.header: list[str] = []
        self.metadata: list[str] = []

    def loop_metadata(self, *properties: str) -> str:
        """A ``!llvm.loop`` node with the given properties (``!{!"llvm.loop.interleave.count", i32 4}``)."""
        first = len(self.metadata)
        names = [f"!{first + 1 + i}" for i in range(len(properties))]
        self.metadata.append(f"!{first} = distinct !{{!{first}{''.join(', ' + n for n in names)}}}")
        self.metadata += [f"{n} = {p}" for n, p in zip(names, properties)]
        return f"!{first}"

    def access_group(self) -> str:
        """A fresh ``!llvm.access.group`` node: accesses tagged with it carry no dependence between
        iterations of a loop whose metadata lists it in ``llvm.loop.parallel_accesses``."""
        node = f"!{len(self.metadata)}"
        self.metadata.append(f"{node} = distinct !{{}}")
        return node

    def declare(self, line: str) -> None:
        self.declarations.setdefault(line)

    def function(self, signature: str, comment: str = "") -> Function:
        function = Function(self, signature, comment)
        self.functions.append(function)
        return function

    def text(self) -> str:
        parts = list(self.header)
        if self.math_used:
            parts.append(mathlib.declarations(self.math_used))
        parts += list(self.declarations)
        parts.append("")
        for function in self.functions:
            parts.append(function.text())
        parts += self.metadata
        return "\n".join(parts) + "\n"


class Function:
    """One function body: ``emit`` appends an instruction and returns its fresh SSA name."""

    def __init__(self, module: Module, signature: str, comment: str):
        self.module = module
        self.signature = signature
        self.comment = comment
        self.lines: list[str] = []
        self.allocas: list[str] = []  # kept in the entry block, so none runs twice
        # the parameters' names are taken: a step named after a user's variable (`partials`, `end`)
        # gets a numbered register instead of a second definition of the parameter
        self.taken: dict[str, int] = dict.fromkeys(re.findall(r"%([-\w.$]+)", signature), 1)
        self.current_label = "entry"
        self.current_name: str | None = None  # the name instructions get when none is given (the step's value)
        # (block, dtype, argument) -> (sin or cos, its line, its register): the other may pair with it
        self.sines_and_cosines: dict[tuple[str, str, str], tuple[str, int, str]] = {}

    def fresh(self, hint: str = "v") -> str:
        base = _BASES.get(hint) or _base(hint)
        count = self.taken.get(base, 0) + 1
        self.taken[base] = count
        return f"%{base}" if count == 1 else f"%{base}.{count}"

    def emit(self, instruction: str, name: str | None = None) -> str:
        register = self.fresh(name or self.current_name or "v")
        self.lines.append(f"  {register} = {instruction}")
        return register

    def emit_as(self, register: str, instruction: str) -> None:
        self.lines.append(f"  {register} = {instruction}")

    def alloca(self, llvm_type: str, name: str = "slot") -> str:
        register = self.fresh(name)
        self.allocas.append(f"  {register} = alloca {llvm_type}, align 64")
        return register

    def do(self, instruction: str) -> None:
        self.lines.append(f"  {instruction}")

    def note(self, text: str) -> None:
        for line in text.splitlines():
            self.lines.append(f"  ; {line}")

    def label(self, hint: str) -> str:
        """A fresh label name (without ``%``), to be placed later with ``place``."""
        return self.fresh(hint)[1:]

    def place(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.current_label = label

    def declare(self, line: str) -> None:
        self.module.declare(line)

    def math(self, function: str, dtype: str, *arguments: str) -> str:
        # straight-line code only: the entry block is never a loop body (see mathlib.sincos_lines)
        if function in mathlib.SINCOS_HALVES and self.current_label == "entry" and mathlib.pairs_sincos():
            return self._sin_or_cos(function, dtype, arguments[0])
        self.module.math_used.setdefault((function, dtype))
        return self.emit(mathlib.call(function, dtype, *arguments, isa=self.module.isa))

    def _sin_or_cos(self, function: str, dtype: str, argument: str) -> str:
        """sin or cos of ``argument``; when the other was computed in this block, both become one
        sincos call, written where the first was (it dominates every use of either). LLVM's code
        generator pairs them too, within a block; here the pairing is in the IR, where it can be
        counted (tests/test_sincos_pairing.py)."""
        key = (self.current_label, dtype, argument)
        first = self.sines_and_cosines.get(key)
        if first is None or first[0] == function:
            self.module.math_used.setdefault((function, dtype))
            register = self.emit(mathlib.call(function, dtype, argument, isa=self.module.isa))
            self.sines_and_cosines[key] = (function, len(self.lines) - 1, register)
            return register
        del self.sines_and_cosines[key]
        self.module.math_used.setdefault((mathlib.SINCOS, dtype))
        other, line, other_register = first
        register = self.fresh(self.current_name or function)
        halves = {other: other_register, function: register}
        self.lines[line] = mathlib.sincos_lines(dtype, argument, self.fresh("sincos"), halves)
        return register

    def text(self) -> str:
        head = [f"; {line}" for line in self.comment.splitlines()]
        return "\n".join(head + [f"define {self.signature} {{", "entry:"] + self.allocas + self.lines + ["}", ""])
