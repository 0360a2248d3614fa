"""A loop body that repeats itself, written once inside a loop over its repeats.

A Python loop the tracer unrolled (``for _ in range(depth): x = cos(tan(sin(x)))``) reaches the
LLVM backend as a long elementwise body: at depth 1000 the chain loops of blocked.py hold 33,000
lines of vector code, the same dozen instructions a thousand times over, each copy reading and
writing its own scratch values at offsets a constant apart. LLVM parses, selects and emits every
copy (0.65 s CPU at depth 1000), and chainrule widens every copy first (0.24 s). Rerolled, the
scalar body (before widen.py widens it) keeps one *period* of those lines in a loop over the
repeats:

    prefix lines
    repeat.loop:
      %repeat = phi i64 [ 0, %before ], [ %repeat.next, %repeat.loop ]
      %x.carry = phi double [ %x, %before ], [ %x.2, %repeat.loop ]     ; a value of the last repeat
      %s2.k = getelementptr i8, ptr %scratch.back, i64 (512 + 1024 * %repeat)
      ...the period, reading %x.carry and addressing %s2.k...
      br i1 (more repeats), label %repeat.loop, label %repeat.exit
    repeat.exit:
    suffix lines, reading the last repeat's values by the period's names

Finding repeats without parsing lines one by one in Python (at depth 10,000 a body has 200,000):
a line's *shape* is its text with every register written ``%``; the periods tried are the
commonest distances between lines of one shape, and a stretch where every line has the shape of
the line a period before is a candidate run. It is checked an operand at a time, as a column of
registers, one per repeat, compared as lists:

- *fixed*: the same register in every repeat (from outside the body or from before the run);
- a value of the same repeat: defined a period further on in each repeat;
- *carried*: the first repeat reads a value from before the run, each later one the previous
  repeat's (a phi);
- a pointer ``getelementptr i8, ptr %base, i64 <constant>`` whose offset steps by a constant.

A column that stops fitting ends the run at that repeat; so does a repeat's value read after the
run, unless it is the last repeat's (read after the loop by the period's register). Every point
runs the repeats in the order it ran them before, so the results are bit-identical.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain

from chainrule.backends.llvm import interleave
from chainrule.backends.llvm.irtext import Function

_REGISTER = re.compile(r"%[-\w.$]+")
_REGISTERS = _REGISTER.findall
_REGISTER_SPLIT = re.compile(r"(%[-\w.$]+)")
_POINTER = re.compile(r"^  (%[-\w.$]+) = getelementptr i8, ptr (%[-\w.$]+), i64 (-?\d+)$", re.MULTILINE)
MIN_REPEATS = 4
MIN_SAVED_LINES = 64  # a shorter body stays as it is: cheap to compile and easier to read
CANDIDATE_PERIODS = 3
_MARK = "  ; reroll."


@dataclass
class _Body:
    """A scalar body's instructions (comments left out), read in bulk: no per-line parsing in Python."""

    lines: list[str]
    positions: list[int]  # instruction i is line positions[i]
    registers: list[list[str]]  # an instruction's registers in order, its result first
    results: list[str | None]
    shapes: list[str]  # its text with every register written "%"
    defined: dict[str, int]  # register -> the instruction defining it


@dataclass
class _Run:
    start: int
    period: int
    repeats: int
    # per template line: (register index, kind...) for each operand that is not a value of the same
    # repeat: ("fixed",), ("carried", its line in the template), ("pointer", base, first, stride)
    kinds: list[list[tuple]] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.start + self.period * self.repeats


@dataclass
class Rerolled:
    """A body with its repeats rerolled: ``lines`` (scalar, with marker comments) for widen.py,
    and the loop code around each run, written once between the widened copies (``assemble``)."""

    lines: list[str]
    exit_label: str  # the block the body ends in
    structure: dict[str, list[str]] = field(default_factory=dict)  # marker line -> the lines it stands for
    dropped_pointers: set[str] = field(default_factory=set)  # outside pointers only the rerolled repeats read

    def outside(self, lines: list[str]) -> list[str]:
        """The function's ``lines`` before the loop without the pointers nothing reads any more."""
        if not self.dropped_pointers:
            return lines
        kept = [line for line in lines if _defines(line) not in self.dropped_pointers]
        read = set(chain.from_iterable(_REGISTERS(line.partition(" = ")[2] or line) for line in kept))
        unread = self.dropped_pointers - read  # a pointer another line of these builds on stays
        return [line for line in lines if _defines(line) not in unread]

    def assemble(self, bodies: list[list[str]]) -> list[str]:
        """The widened copies of ``lines`` as one body: each stretch between markers interleaved."""
        out: list[str] = []
        stretches: list[list[str]] = [[] for _ in bodies]
        for lines_of_copies in zip(*bodies):
            marker = lines_of_copies[0]
            if marker.startswith(_MARK):
                out += interleave.interleaved(stretches)
                out += self.structure[marker]
                stretches = [[] for _ in bodies]
                continue
            for stretch, line in zip(stretches, lines_of_copies):
                stretch.append(line)
        return out + interleave.interleaved(stretches)


def reroll(lines: list[str], fn: Function, before: str, scalar_type: str, outside: list[str]) -> Rerolled:
    """``lines`` (a straight scalar loop body entered from block ``before``, as widen.py takes it)
    with its long runs of repeats rerolled (as they are if it has none). ``outside`` are the
    function's lines before the loop: where its pointers are defined."""
    as_they_are = Rerolled(lines, before)
    if len(lines) < 2 * MIN_SAVED_LINES:
        return as_they_are
    pointers = {name: (base, int(offset)) for name, base, offset in _POINTER.findall("\n".join(outside))}
    body = _read(lines)
    runs = _chosen_runs(body, pointers)
    return (_write(body, runs, pointers, fn, before, scalar_type) if runs else None) or as_they_are


def _read(lines: list[str]) -> _Body:
    positions = [p for p, line in enumerate(lines) if not line.startswith("  ;")]
    instructions = [lines[p] for p in positions]
    registers = list(map(_REGISTERS, instructions))
    results = [r[0] if line.startswith("  %") else None for r, line in zip(registers, instructions)]
    shapes = _REGISTER.sub("%", "\n".join(instructions)).split("\n")
    defined = {result: i for i, result in enumerate(results) if result is not None}
    return _Body(lines, positions, registers, results, shapes, defined)


def _chosen_runs(body: _Body, pointers: dict[str, tuple[str, int]]) -> list[_Run]:
    """Runs of repeats at the likeliest periods, the largest first, none overlapping, in order."""
    seen: dict[str, int] = {}
    distances: Counter[int] = Counter()
    for i, shape in enumerate(body.shapes):
        if shape in seen:
            distances[i - seen[shape]] += 1
        seen[shape] = i
    found: list[_Run] = []
    for period, _ in distances.most_common(CANDIDATE_PERIODS):
        found += _runs(body, pointers, period)
        if sum(run.repeats * run.period for run in found) * 10 >= 9 * len(body.shapes):
            break  # nearly all of the body repeats at this period: no other will do better
    found.sort(key=lambda run: -(run.repeats - 1) * run.period)
    chosen: list[_Run] = []
    for run in found:
        if (run.repeats - 1) * run.period >= MIN_SAVED_LINES and all(
            run.end <= other.start or other.end <= run.start for other in chosen
        ):
            chosen.append(run)
    return sorted(chosen, key=lambda run: run.start)


def _runs(body: _Body, pointers: dict[str, tuple[str, int]], period: int) -> list[_Run]:
    """Stretches where every line has the shape of the one ``period`` before, as validated runs
    (a run whose first repeat does not fit is tried from its second and third)."""
    shapes = body.shapes
    alike = list(map(operator.eq, shapes, shapes[period:]))
    runs, i, n = [], 0, len(alike)
    while True:  # stretches of True found by list.index: scanned in C
        try:
            start = alike.index(True, i)
        except ValueError:
            break
        try:
            i = alike.index(False, start)
        except ValueError:
            i = n
        repeats = (i + period - start) // period
        if repeats < MIN_REPEATS:
            continue
        for skipped in range(3):
            run = _validated(body, pointers, _Run(start + skipped * period, period, repeats - skipped))
            if run is not None:
                runs.append(run)
                break
    return runs


def _validated(body: _Body, pointers: dict[str, tuple[str, int]], run: _Run) -> _Run | None:
    """``run`` cut to the repeats that are one loop (each operand of one kind in every repeat,
    pointers stepping evenly, no value but the last repeat's read after it), None if too short."""
    s, period = run.start, run.period
    repeats = run.repeats
    if repeats < MIN_REPEATS:
        return None
    end = s + repeats * period
    for j in range(period):
        i = s + j
        kinds = []
        for t in range(1 if body.results[i] is not None else 0, len(body.registers[i])):
            column = [registers[t] for registers in body.registers[i:end:period]]
            kind, fits = _kind(body, pointers, run, column)
            if kind is None:
                return None
            repeats = min(repeats, fits)
            if kind[0] != "moving":
                kinds.append((t, *kind))
        run.kinds.append(kinds)
    while repeats >= MIN_REPEATS:
        end = s + repeats * period
        inner = set(filter(None, body.results[s : end - period]))
        escaped = inner.intersection(chain.from_iterable(body.registers[end:]))
        if not escaped:
            break
        repeats = min((body.defined[name] - s) // period for name in escaped) + 1
    run.repeats = repeats
    return run if repeats >= MIN_REPEATS else None


def _kind(body: _Body, pointers: dict[str, tuple[str, int]], run: _Run, column: list[str]) -> tuple[tuple | None, int]:
    """An operand's kind from its register in each repeat, and the repeats it holds for."""
    first, start, period = column[0], run.start, run.period
    defined = body.defined.get(first)
    if column.count(first) == len(column):
        return (None if defined is not None and defined >= start else ("fixed",)), len(column)
    if defined is not None and defined >= start:  # a value of the same repeat
        return ("moving", defined), _agreeing(column, body.results[defined : defined + len(column) * period : period])
    if defined is not None:  # from before the repeats, then the previous repeat's
        source = body.defined.get(column[1], -1)
        if not start <= source < start + period:
            return None, 0  # not a value of the first repeat: of two repeats back, or from outside
        later = body.results[source : source + (len(column) - 1) * period : period]
        return ("carried", source - start), 1 + _agreeing(column[1:], later)
    if first not in pointers or column[1] not in pointers or pointers[column[1]][0] != pointers[first][0]:
        return None, 0
    (base, offset), stride = pointers[first], pointers[column[1]][1] - pointers[first][1]
    expected_pointers = [(base, offset + r * stride) for r in range(len(column))]
    return ("pointer", base, offset, stride), _agreeing([pointers.get(name) for name in column], expected_pointers)


def _agreeing(got: list, expected: list) -> int:
    """How many leading items agree."""
    if got == expected:
        return len(got)
    return next(r for r, (a, b) in enumerate(zip(got, expected)) if a != b)


def _write(
    body: _Body,
    runs: list[_Run],
    pointers: dict[str, tuple[str, int]],
    fn: Function,
    before: str,
    scalar_type: str,
) -> Rerolled | None:
    """The rerolled body's lines and loop code (see the module's docstring)."""
    renamed: dict[str, str] = {}  # a last repeat's value -> the period's register for it
    out: list[str] = []
    structure: dict[str, list[str]] = {}
    position = 0  # the next line of ``body.lines`` to copy
    for n, run in enumerate(runs):
        s, period = run.start, run.period
        out += _plain(body.lines[position : body.positions[s]], renamed)
        loop, done = fn.label("repeat.loop"), fn.label("repeat.exit")
        written = _period(body, run, renamed, fn, (before, loop), scalar_type)
        if written is None:
            return None
        phis, template, moved = written
        markers = [f"{_MARK}{part}.{n}" for part in ("open", "body", "close")]
        structure.update(zip(markers, _loop_code(run, fn.fresh("repeat"), moved, (before, loop, done))))
        out += [markers[0], *phis, markers[1], *template, markers[2]]
        last = s + (run.repeats - 1) * period
        for last_value, period_value in zip(body.results[last : last + period], body.results[s : s + period]):
            if last_value is not None and period_value is not None:
                renamed[last_value] = period_value
        position = body.positions[run.end - 1] + 1
        before = done
    out += _plain(body.lines[position:], renamed)
    used = set(chain.from_iterable(map(_REGISTERS, out + [line for lines in structure.values() for line in lines])))
    dropped = set(pointers).intersection(chain.from_iterable(body.registers)) - used
    return Rerolled(out, before, structure, dropped)


def _period(
    body: _Body, run: _Run, renamed: dict[str, str], fn: Function, labels: tuple[str, str], scalar_type: str
) -> tuple[list[str], list[str], dict[tuple, str]] | None:
    """The first repeat's lines reading carried values from phis (which it returns first) and
    stepping pointers from registers (keyed by base, first offset and stride, returned last)."""
    before, loop = labels
    s = run.start
    carried: dict[int, str] = {}  # template line -> its phi
    phis: list[str] = []
    moved: dict[tuple, str] = {}
    template = []
    for j in range(run.period):
        pieces = _REGISTER_SPLIT.split(body.lines[body.positions[s + j]])
        for t, *kind in run.kinds[j]:
            at = 2 * t + 1
            if kind[0] == "fixed":
                pieces[at] = renamed.get(pieces[at], pieces[at])
            elif kind[0] == "carried":
                source = kind[1]
                if source not in carried:
                    value_type = _value_type(body.lines[body.positions[s + source]], scalar_type)
                    if value_type not in (scalar_type, "i1"):  # what widen.py carries in a phi
                        return None
                    result = body.results[s + source]
                    carried[source] = fn.fresh(f"{result}.carry"[1:])
                    init = renamed.get(pieces[at], pieces[at])
                    phis.append(f"  {carried[source]} = phi {value_type} [ {init}, %{before} ], [ {result}, %{loop} ]")
                pieces[at] = carried[source]
            else:
                key = tuple(kind[1:])
                if key not in moved:
                    moved[key] = fn.fresh(f"{pieces[at][1:]}.k")
                pieces[at] = moved[key]
        template.append("".join(pieces))
    return phis, template, moved


def _loop_code(run: _Run, count: str, moved: dict[tuple, str], labels: tuple[str, str, str]) -> list[list[str]]:
    """The lines standing for a run's three markers: the loop's head, its pointers, its latch."""
    before, loop, done = labels
    head = [f"  br label %{loop}", f"{loop}:", f"  {count} = phi i64 [ 0, %{before} ], [ {count}.next, %{loop} ]"]
    addresses = [f"  ; {run.repeats} repeats of {run.period} lines, rerolled (reroll.py)"]
    for (base, first, stride), register in moved.items():
        addresses += [
            f"  {register}.at = mul nsw i64 {count}, {stride}",
            f"  {register}.off = add nsw i64 {register}.at, {first}",
            f"  {register} = getelementptr i8, ptr {base}, i64 {register}.off",
        ]
    latch = [
        f"  {count}.next = add nuw nsw i64 {count}, 1",
        f"  {count}.more = icmp ult i64 {count}.next, {run.repeats}",
        f"  br i1 {count}.more, label %{loop}, label %{done}",
        f"{done}:",
    ]
    return [head, addresses, latch]


def _defines(line: str) -> str:
    return line[2 : line.index(" = ")] if line.startswith("  %") else ""


def _plain(lines: list[str], renamed: dict[str, str]) -> list[str]:
    """Lines outside the runs, reading a run's values by the period's registers."""
    if not renamed:
        return list(lines)
    out = []
    for line in lines:
        if line.startswith("  ;") or renamed.keys().isdisjoint(_REGISTERS(line)):
            out.append(line)
            continue
        pieces = _REGISTER_SPLIT.split(line)
        for at in range(1, len(pieces), 2):
            pieces[at] = renamed.get(pieces[at], pieces[at])
        out.append("".join(pieces))
    return out


def _value_type(line: str, scalar_type: str) -> str | None:
    """The type of the value ``line`` defines, as widen.py widens it (None: not carried in a phi)."""
    words = line.split(" = ", 1)[1].split()
    opcode = words[0]
    if opcode == "fcmp" or opcode in ("and", "or", "xor"):
        return "i1"
    if opcode in ("zext", "trunc"):
        return words[-1]
    if opcode == "load":
        return words[1].rstrip(",")
    if opcode in ("getelementptr", "phi", "alloca"):
        return None
    return scalar_type
