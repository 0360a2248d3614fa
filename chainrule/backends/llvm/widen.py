"""A loop body's scalar IR rewritten as one vector step: the loop vectorizer's work, done as text.

LLVM's loop vectorizer was half the optimization time of a long elementwise kernel (the nested
gradient at depth 10,000: 3.5 of 6.6 s CPU), linear in the body but with a large constant: it
analyzes, costs and rebuilds every instruction. For the bodies it would widen with nothing to
decide (one float dtype, contiguous or broadcast operands, vector math by name, no interleaving,
no reduction) chainrule writes the vector body itself: each scalar instruction becomes the same
instruction on ``<W x double>`` (or ``float``), a vector-ABI math call becomes a call of its vector
variant (named in the call's ``vector-function-abi-variant`` attribute), a broadcast operand is
loaded once and splatted, a bool is an ``<W x i1>`` in registers and bytes in memory. The loop
that runs it is marked not to be vectorized again and its function ``optnone``; its last step is
moved back to end at ``%end`` or masked (``vectorize_emitted_loop``). Both the plain loops
(codegen.py) and the per-block loops of point-blocked chains (blocked.py) are widened through
``nest_widened``. A body with anything else (integers, conversions, scalar-only calls) is left to
the vectorizer: ``widened`` returns None.

    >>> widened(["  %x.p = getelementptr double, ptr %at, i64 %i0",
    ...          "  %x = load double, ptr %x.p",
    ...          "  %y = fmul contract double %x, 0x4000000000000000",
    ...          "  %y.p = getelementptr double, ptr %out, i64 %i0",
    ...          "  store double %y, ptr %y.p"], "%i0", "%iv", 8, "double")[2:4]
    ['  %iv.c0 = load volatile <8 x double>, ptr @splat.8xdouble.0x4000000000000000, align 64', \
'  %y.w = fmul contract <8 x double> %x.w, %iv.c0']

A constant operand is loaded from a constant of the module (``constant_definitions``), once a step:
LLVM's fast instruction selector (code generation level 0, see engine.PIPELINES) takes no vector
constant, and one it misses sends the block up to that instruction to SelectionDAG, several times
slower (the nested gradient at depth 1000, 15 backward loops: emit 0.37 -> 0.25 s CPU). The load is
``volatile`` only so that GlobalOpt does not fold it back into the constant; ``fneg``, which the
selector misses too, is the ``xor`` of the sign bits it stands for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from chainrule.backends.llvm import interleave, loop_hints, reroll
from chainrule.backends.llvm.irtext import Function
from chainrule.backends.llvm.views import View

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen, Offsets

_FLAGS = r"((?: (?:fast|contract|reassoc|nnan|ninf|nsz|arcp|afn))*)"
_GEP = re.compile(r"^  (%\S+) = getelementptr (\w+), ptr (%\S+), i64 (\S+)$")
_LOAD = re.compile(r"^  (%\S+) = load (\w+), ptr (%\S+)(?:, !llvm\.access\.group !\d+)?$")
_STORE = re.compile(r"^  store (\w+) (\S+), ptr (%\S+)(?:, !llvm\.access\.group !\d+)?$")
_CAST = re.compile(r"^  (%\S+) = (zext|trunc) (i\d+) (\S+) to (i\d+)$")
_LOGIC = re.compile(r"^  (%\S+) = (and|or|xor) i1 (\S+), (\S+)$")
_BINARY = re.compile(rf"^  (%\S+) = (fadd|fsub|fmul|fdiv|frem){_FLAGS} (\w+) (\S+), (\S+)$")
_NEGATE = re.compile(rf"^  (%\S+) = fneg{_FLAGS} (\w+) (\S+)$")
_COMPARE = re.compile(rf"^  (%\S+) = fcmp{_FLAGS} (\w+) (\w+) (\S+), (\S+)$")
_SELECT = re.compile(rf"^  (%\S+) = select{_FLAGS} i1 (%\S+), (\w+) (\S+), (\w+) (\S+)$")
_PHI = re.compile(r"^  (%\S+) = phi (\w+) \[ (%\S+), %([-\w.$]+) \], \[ (%\S+), %([-\w.$]+) \]$")
_CALL = re.compile(
    rf"^  (%\S+) = call{_FLAGS} (\w+) @([\w.]+)\(([^)]*)\)(?: \"vector-function-abi-variant\"=\"([^\"]*)\")?$"
)
_VARIANT = re.compile(r"^_ZGV_LLVM_N(\d+)v+_[\w.]+\((\w+)\)$")
# bits of a lane, by the types whose constants are loaded (a body's floats, and their sign masks)
_LANE_BITS = {"double": 64, "float": 32, "i64": 64, "i32": 32}
# intrinsics LLVM lowers on vectors of any width without a library
_VECTOR_INTRINSICS = frozenset(
    "fabs sqrt fma fmuladd copysign floor ceil trunc rint nearbyint round roundeven minnum maxnum minimum maximum".split()
)


# Copies of a widened body a loop step runs, when the body is a chain of vector math calls
# (``interleave.latency_bound``: a forward pass) and the loop is long enough (``copies``). Each
# call waits on the one before; copies at ``width`` elements apart are independent chains, and
# written interleaved (``interleave.interleaved``) the CPU overlaps one copy's call with the
# next's. Nested gradient, depth 1000 x 10^4 points, 1 thread, AMD EPYC (AVX2, 4 lanes), fastest
# of 15 calls: 1 copy 325, 2 interleaved 233, 3 interleaved 230, 3 one after the other 358 ms; the
# LLVM compile's emit stage 0.9, 1.5, 2.0 s CPU. (An AVX-512 machine measured 1: 84, 2: 87, 3: 61 ms.)
COPIES = 2


def copies(width: int, fewest_elements: int) -> int:
    """Copies of a ``width``-lane body a step, for a loop over ``fewest_elements`` or more elements
    (a step moved back to end at ``%end`` needs ``copies * width`` of them)."""
    return max(1, min(COPIES, fewest_elements // width)) if width else 1


class _NotWidenable(Exception):
    pass


def widened(
    lines: list[str],
    index: str,
    vector_index: str,
    width: int,
    scalar_type: str,
    mask: str | None = None,
    suffix: str = ".w",
) -> list[str] | None:
    """``lines`` (a loop body of ``scalar_type`` values addressed at ``index`` or at a fixed
    element) as the body of a loop stepping ``width`` elements from ``vector_index``, reading and
    writing all lanes, or only those set in the ``<width x i1>`` register ``mask``; None if some
    line is not one of the forms widened here. Registers defined in the body get ``suffix``."""
    copies = widened_copies(lines, index, [(vector_index, suffix)], width, scalar_type, mask)
    return None if copies is None else copies[0]


def widened_copies(
    lines: list[str],
    index: str,
    copies: list[tuple[str, str]],
    width: int,
    scalar_type: str,
    mask: str | None = None,
) -> list[list[str]] | None:
    """``widened`` once for each (vector_index, suffix) of ``copies``, the lines parsed once."""
    try:
        parsed = [_Widening.parse(line) for line in lines]
        defined = {line[2 : line.index(" = ")] for line in lines if line.startswith("  %")}
        return [_Widening(parsed, defined, index, at, width, scalar_type, mask, suffix).run() for at, suffix in copies]
    except _NotWidenable:
        return None


class _Widening:
    def __init__(
        self,
        parsed: list[tuple[Callable[..., None] | None, tuple[str, ...]]],
        defined: set[str],
        index: str,
        vector_index: str,
        width: int,
        scalar_type: str,
        mask: str | None,
        suffix: str,
    ):
        self.parsed = parsed  # (handler, its arguments) a line; (None, (comment,)) for a comment
        self.suffix = suffix
        self.mask = f"<{width} x i1> {mask}" if mask else None
        self.index = index
        self.vector_index = vector_index
        self.scalar = scalar_type
        self.vector = f"<{width} x {scalar_type}>"
        self.width = width
        self.defined = defined  # registers the body defines
        self.element_addresses: dict[str, str] = {}  # gep register -> "lanes" or "one"
        self.constants: dict[str, str] = {}  # global -> the register it was loaded into, this step
        self.out: list[str] = []

    def run(self) -> list[str]:
        for handler, arguments in self.parsed:
            if handler is None:
                self.out.append(arguments[0])
            else:
                handler(self, *arguments)
        return self.out

    def name(self, token: str) -> str:
        return f"{token}{self.suffix}" if token in self.defined else token

    def operand(self, token: str, llvm_type: str) -> str:
        """A vector operand: a register of the body, or a constant in every lane (a float one loaded)."""
        if token.startswith("%"):
            if token not in self.defined:  # a value from outside the body: not a vector
                raise _NotWidenable(token)
            return f"{token}{self.suffix}"
        if llvm_type in _LANE_BITS:
            return self._constant(llvm_type, token)
        return f"splat ({llvm_type} {token})"

    def _constant(self, element_type: str, token: str) -> str:
        """A register holding ``token`` in every lane, loaded from the module's constant (see above)."""
        name = f"@splat.{self.width}x{element_type}.{token}"
        if name not in self.constants:
            register = f"{self.vector_index}.c{len(self.constants)}"
            vector, align = f"<{self.width} x {element_type}>", self.width * _LANE_BITS[element_type] // 8
            self.out.append(f"  {register} = load volatile {vector}, ptr {name}, align {align}")
            self.constants[name] = register
        return self.constants[name]

    def _expect_type(self, llvm_type: str) -> None:
        if llvm_type != self.scalar:
            raise _NotWidenable(llvm_type)

    @classmethod
    def parse(cls, line: str) -> tuple[Callable[..., None] | None, tuple[str, ...]]:
        """What widens ``line`` and its arguments (its pattern's groups); a comment: None and the line."""
        if line.startswith("  ;"):
            return None, (line,)
        words = line.split(" ", 5)  # "  %x = fmul ...": the opcode is the fifth word; "  store ...": the third
        opcode = words[4] if len(words) > 4 and words[3] == "=" else words[2]
        pattern, handler = cls._HANDLERS.get(opcode, (None, None))
        match = pattern.match(line) if pattern is not None else None
        if match is None or handler is None:
            raise _NotWidenable(line)
        return handler, match.groups()

    def _memory_type(self, llvm_type: str) -> str:
        """The vector of ``llvm_type`` elements in memory: the body's float type, or bools as bytes."""
        if llvm_type not in (self.scalar, "i8"):
            raise _NotWidenable(llvm_type)
        return f"<{self.width} x {llvm_type}>"

    def _masked(self, llvm_type: str) -> tuple[str, int]:
        """The masked load and store intrinsics' type suffix for ``llvm_type`` elements, and their alignment."""
        element = {"double": ("f64", 8), "float": ("f32", 4), "i8": ("i8", 1)}[llvm_type]
        return f"v{self.width}{element[0]}.p0", element[1]

    def _gep(self, result: str, llvm_type: str, base: str, offset: str) -> None:
        self._memory_type(llvm_type)
        if base in self.defined:
            raise _NotWidenable(base)
        if offset == self.index:
            self.element_addresses[result] = "lanes"
            offset = self.vector_index
        elif offset.lstrip("-").isdigit():
            self.element_addresses[result] = "one"
        else:
            raise _NotWidenable(offset)
        self.out.append(f"  {self.name(result)} = getelementptr {llvm_type}, ptr {base}, i64 {offset}")

    def _load(self, result: str, llvm_type: str, address: str) -> None:
        vector = self._memory_type(llvm_type)
        kind = self.element_addresses.get(address)
        if kind == "lanes" and self.mask is None:
            self.out.append(
                f"  {self.name(result)} = load {vector}, ptr {self.name(address)}, align {self._masked(llvm_type)[1]}"
            )
        elif kind == "lanes":
            suffix, align = self._masked(llvm_type)
            self.out.append(
                f"  {self.name(result)} = call {vector} @llvm.masked.load.{suffix}"
                f"(ptr {self.name(address)}, i32 {align}, {self.mask}, {vector} zeroinitializer)"
            )
        elif kind == "one":  # a broadcast operand: one element for every lane
            value = self.name(result)
            self.out += [
                f"  {value}.one = load {llvm_type}, ptr {self.name(address)}",
                f"  {value}.lane = insertelement {vector} poison, {llvm_type} {value}.one, i64 0",
                f"  {value} = shufflevector {vector} {value}.lane, {vector} poison, <{self.width} x i32> zeroinitializer",
            ]
        else:
            raise _NotWidenable(address)

    def _store(self, llvm_type: str, value: str, address: str) -> None:
        vector = self._memory_type(llvm_type)
        if self.element_addresses.get(address) != "lanes":
            raise _NotWidenable(address)
        suffix, align = self._masked(llvm_type)
        stored = f"{vector} {self.operand(value, llvm_type)}, ptr {self.name(address)}"
        if self.mask is None:
            self.out.append(f"  store {stored}, align {align}")
            return
        self.out.append(f"  call void @llvm.masked.store.{suffix}({stored}, i32 {align}, {self.mask})")

    def _logic(self, result: str, opcode: str, left: str, right: str) -> None:
        operands = f"{self.operand(left, 'i1')}, {self.operand(right, 'i1')}"
        self.out.append(f"  {self.name(result)} = {opcode} <{self.width} x i1> {operands}")

    def _cast(self, result: str, opcode: str, source: str, value: str, target: str) -> None:
        """A bool between its register (i1) and memory (i8) forms."""
        if {source, target} != {"i1", "i8"} or not value.startswith("%"):
            raise _NotWidenable(opcode)
        lanes = f"<{self.width} x "
        self.out.append(
            f"  {self.name(result)} = {opcode} {lanes}{source}> {self.operand(value, source)} to {lanes}{target}>"
        )

    def _binary(self, result: str, opcode: str, flags: str, llvm_type: str, left: str, right: str) -> None:
        self._expect_type(llvm_type)
        operands = f"{self.operand(left, llvm_type)}, {self.operand(right, llvm_type)}"
        self.out.append(f"  {self.name(result)} = {opcode}{flags} {self.vector} {operands}")

    def _negate(self, result: str, flags: str, llvm_type: str, value: str) -> None:
        """``fneg``: the sign bits flipped (what it means; and the fast instruction selector takes it)."""
        self._expect_type(llvm_type)
        operand, lanes = self.operand(value, llvm_type), _LANE_BITS[llvm_type]
        bits, register = f"<{self.width} x i{lanes}>", self.name(result)
        sign = self._constant(f"i{lanes}", str(-(1 << (lanes - 1))))
        self.out += [
            f"  {register}.bits = bitcast {self.vector} {operand} to {bits}",
            f"  {register}.flipped = xor {bits} {register}.bits, {sign}",
            f"  {register} = bitcast {bits} {register}.flipped to {self.vector}",
        ]

    def _compare(self, result: str, flags: str, predicate: str, llvm_type: str, left: str, right: str) -> None:
        self._expect_type(llvm_type)
        operands = f"{self.operand(left, llvm_type)}, {self.operand(right, llvm_type)}"
        self.out.append(f"  {self.name(result)} = fcmp{flags} {predicate} {self.vector} {operands}")

    def _select(self, result: str, flags: str, condition: str, t1: str, v1: str, t2: str, v2: str) -> None:
        self._expect_type(t1)
        self._expect_type(t2)
        if condition not in self.defined:
            raise _NotWidenable(condition)
        mask = f"<{self.width} x i1> {self.name(condition)}"
        chosen = f"{self.vector} {self.operand(v1, t1)}, {self.vector} {self.operand(v2, t2)}"
        self.out.append(f"  {self.name(result)} = select{flags} {mask}, {chosen}")

    def _call(self, result: str, flags: str, llvm_type: str, callee: str, arguments: str, variant: str | None) -> None:
        self._expect_type(llvm_type)
        values = []
        for argument in arguments.split(", "):
            argument_type, _, value = argument.partition(" ")
            self._expect_type(argument_type)
            values.append(f"{self.vector} {self.operand(value, argument_type)}")
        if variant is not None:
            match = _VARIANT.match(variant)
            if match is None or int(match.group(1)) != self.width:
                raise _NotWidenable(variant)
            target = match.group(2)
        else:
            parts = callee.split(".")
            if len(parts) != 3 or parts[0] != "llvm" or parts[1] not in _VECTOR_INTRINSICS:
                raise _NotWidenable(callee)
            target = f"llvm.{parts[1]}.v{self.width}{parts[2]}"
        self.out.append(f"  {self.name(result)} = call{flags} {self.vector} @{target}({', '.join(values)})")

    def _phi(self, result: str, llvm_type: str, first: str, came: str, second: str, again: str) -> None:
        """A value a rerolled repeat takes from the one before (reroll.py)."""
        if llvm_type not in (self.scalar, "i1"):
            raise _NotWidenable(llvm_type)
        one, other = self.operand(first, llvm_type), self.operand(second, llvm_type)
        self.out.append(
            f"  {self.name(result)} = phi <{self.width} x {llvm_type}> [ {one}, %{came} ], [ {other}, %{again} ]"
        )

    # opcode -> the pattern of its instructions and what widens them (one match a line)
    _HANDLERS: ClassVar[dict[str, tuple[re.Pattern[str], Callable[..., None]]]] = {
        "getelementptr": (_GEP, _gep),
        "load": (_LOAD, _load),
        "store": (_STORE, _store),
        **dict.fromkeys(("fadd", "fsub", "fmul", "fdiv", "frem"), (_BINARY, _binary)),
        "fneg": (_NEGATE, _negate),
        "fcmp": (_COMPARE, _compare),
        "select": (_SELECT, _select),
        "phi": (_PHI, _phi),
        "call": (_CALL, _call),
        **dict.fromkeys(("zext", "trunc"), (_CAST, _cast)),
        **dict.fromkeys(("and", "or", "xor"), (_LOGIC, _logic)),
    }


def intrinsic_declarations(lines: list[str]) -> set[str]:
    """Declarations for the vector intrinsics ``lines`` call (LLVM before 20 wants every callee
    declared): each callee's first call gives its argument types."""
    found: dict[str, str] = {}
    for match in re.finditer(
        r"call(?: \w+)* (\S+|<\d+ x \w+>) @(llvm\.[\w.]+)\((.*)\)$", "\n".join(lines), re.MULTILINE
    ):
        result, name, arguments = match.groups()
        if name not in found:
            types = [re.sub(r" (%\S+|splat \(.*\)|zeroinitializer|\d+)$", "", a) for a in arguments.split(", ")]
            found[name] = f"declare {result} @{name}({', '.join(types)})"
    return set(found.values())


def constant_definitions(lines: list[str]) -> set[str]:
    """The module constants ``lines`` load (``_Widening._constant``): each named by its lanes and value."""
    found = set()
    for match in re.finditer(
        r"load volatile (<\d+ x \w+>), ptr (@splat\.\d+x(\w+)\.(\S+)), align (\d+)$", "\n".join(lines), re.MULTILINE
    ):
        vector, name, element_type, token, align = match.groups()
        found.add(f"{name} = private unnamed_addr constant {vector} splat ({element_type} {token}), align {align}")
    return found


def nest_widened(
    gen: Codegen,
    fn: Function,
    extents: Sequence[int | None],
    strides: dict[Hashable, list[int]],
    payload: Callable[[Offsets], None],
    hints: tuple[str, ...],
    widening: tuple[int, str, bool, int],
) -> None:
    """The loop from ``%start`` to ``%end`` (``Codegen.nest``); with ``widening`` = (lanes, float
    dtype, may the last step be moved back, copies a step) and lanes not 0 its body is widened if
    it can be."""
    body: list[int] = []  # where the scalar body starts and ends in fn.lines
    element: list[str] = []  # the register addressing the body's elements

    def recorded(offsets: Offsets) -> None:
        element.extend(offset for offset in offsets.values() if offset != "0")
        body.append(len(fn.lines))
        payload(offsets)
        body.append(len(fn.lines))

    loop_start = len(fn.lines)
    gen.nest(fn, extents, strides, recorded, low="%start", high="%end", hints=hints)
    if widening[0] and element:
        vectorize_emitted_loop(fn, loop_start, (body[0], body[1]), element[0], *widening)


def vectorize_emitted_loop(
    fn: Function,
    loop_start: int,
    body: tuple[int, int],
    index: str,
    width: int,
    dtype: str,
    overlap: bool,
    copies: int = 1,
) -> bool:
    """Replace the one-dimensional scalar loop ``fn.lines[loop_start:]`` (as ``Codegen.nest``
    writes it from ``%start`` to ``%end``, its body ``fn.lines[body[0]:body[1]]`` addressed at
    register ``index``) by a loop running the widened body ``copies`` times a step, at ``width``
    elements apart, the copies' instructions interleaved (``interleave.interleaved``); False
    (nothing changed) if the body cannot be widened.

    The last step must not touch elements from ``%end`` on. With ``overlap`` (the loop writes no
    memory it reads, and runs over at least ``copies * width`` elements) it is moved back to end at
    ``%end``, computing some elements again, to the same values: plain vector loads and stores,
    cheaper to compile (and to run) than masked ones, which the loop uses otherwise (with one copy:
    a loop writing what it reads runs each element's body in place, one vector at a time). A body
    repeating itself is widened as one repeat in a loop over the repeats (reroll.py).
    """
    assert overlap or copies == 1, "a masked step is one copy"
    scalar_type = "double" if dtype == "float64" else "float"
    step, following = fn.fresh("iv"), fn.fresh("iv.next")
    condition, block, done = (fn.label(f"w.{part}") for part in ("cond", "body", "exit"))
    rerolled = reroll.reroll(fn.lines[body[0] : body[1]], fn, block, scalar_type, fn.lines[:loop_start])
    if copies > 1 and not interleave.latency_bound(rerolled.lines):
        copies = 1  # the CPU overlaps the body's calls already: copies would only cost compile time
    ats = [fn.fresh("iv.at") for _ in range(copies)]
    mask = None if overlap else fn.fresh("lanes.in")
    suffixes = [".w"] if copies == 1 else [f".w{copy}" for copy in range(copies)]
    bodies = widened_copies(rerolled.lines, index, list(zip(ats, suffixes)), width, scalar_type, mask)
    if bodies is None:
        return False
    vector_body = rerolled.assemble(bodies)
    entering = re.search(r"\[ %start, %([-\w.$]+) \]", fn.lines[loop_start + 2])
    assert entering is not None, fn.lines[loop_start + 2]
    fn.lines[loop_start:] = [
        f"  br label %{condition}",
        f"{condition}:",
        f"  {step} = phi i64 [ %start, %{entering.group(1)} ], [ {following}, %{rerolled.exit_label} ]",
        f"  {step}.more = icmp slt i64 {step}, %end",
        f"  br i1 {step}.more, label %{block}, label %{done}",
        f"{block}:",
        *_lanes_of_step(step, ats, width, mask),
        *vector_body,
        f"  {following} = add nsw i64 {step}, {copies * width}",
        f"  br label %{condition}, !llvm.loop {fn.module.loop_metadata(*loop_hints.NOT_VECTORIZED)}",
        f"{done}:",
    ]
    fn.current_label = done
    fn.lines[:loop_start] = rerolled.outside(fn.lines[:loop_start])
    # the body is what LLVM's passes would make of it (vector code in SSA form, no memory but the
    # arrays'): optimizing it again only costs time (depth 1000: optimize 0.28 -> 0.07 s CPU)
    fn.signature = fn.signature.replace(") noinline", ") noinline optnone", 1)
    _declare_used(fn, vector_body)
    return True


def _declare_used(fn: Function, vector_body: list[str]) -> None:
    # sorted: the module's text, and so its cache key, must not depend on the process's string hashing
    for declaration in sorted(intrinsic_declarations(vector_body) | constant_definitions(vector_body)):
        fn.declare(declaration)


def _lanes_of_step(step: str, ats: list[str], width: int, mask: str | None) -> list[str]:
    """The start of a step of ``len(ats)`` copies of a widened body: ``ats[k]``, where copy k loads
    and stores (``step + k * width``, the step moved back to end at ``%end`` when ``mask`` is None),
    else (one copy) the ``mask`` of its lanes before ``%end``."""
    first, copies = ats[0], len(ats)
    if mask is None:
        return [
            f"  ; {copies} x {width} elements a step (widen.py), the last step moved back to end at %end",
            f"  {first}.last = sub nsw i64 %end, {copies * width}",
            f"  {first}.past = icmp sgt i64 {step}, {first}.last",
            f"  {first} = select i1 {first}.past, i64 {first}.last, i64 {step}",
            *(f"  {at} = add nsw i64 {first}, {copy * width}" for copy, at in enumerate(ats) if copy),
        ]
    lanes = f"<{width} x i64>"
    splat = f"{lanes} poison, <{width} x i32> zeroinitializer"
    return [
        f"  ; {width} elements a step (widen.py), those from %end on masked off",
        f"  {first} = add nsw i64 {step}, 0",
        f"  {first}.lane = insertelement {lanes} poison, i64 {first}, i64 0",
        f"  {first}.all = shufflevector {lanes} {first}.lane, {splat}",
        f"  {first}.each = add {lanes} {first}.all, <{', '.join(f'i64 {lane}' for lane in range(width))}>",
        f"  {first}.end = insertelement {lanes} poison, i64 %end, i64 0",
        f"  {first}.ends = shufflevector {lanes} {first}.end, {splat}",
        f"  {mask} = icmp slt {lanes} {first}.each, {first}.ends",
    ]


def writes_apart_from_reads(reads: Iterable[View], writes: Iterable[View]) -> bool:
    """Does no written view share a byte with a read one (so elements may be computed twice)?"""

    def extent(view: View) -> tuple[int, int, int]:
        last = sum((n - 1) * abs(stride) for n, stride in zip(view.shape, view.strides)) * view.itemsize
        return view.slot, view.offset, view.offset + last + view.itemsize

    read_extents = [extent(view) for view in reads]
    for slot, start, end in map(extent, writes):
        if any(slot == s and start < e and b < end for s, b, e in read_extents):
            return False
    return True
