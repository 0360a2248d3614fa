"""Writing a point-blocked chain (planned in ``chains.py``) into the kernel's module.

    entry:  mask = 0
            chainrule_parallel_run(@chain, table, points, partials, row, threads, block, blocks)
            each reduction: its blocks' partials combined in block order
    @chain(table, lo, hi, partials):          one block, on whichever thread took it
            seat = a free bit of the mask (claimed by compare-and-swap)
            scratch = seats + seat * seat_bytes
            @loop1(table, lo, hi, scratch, partials) ... @loopK(...)
            the seat's bit cleared
    @loopk(table, lo, hi, scratch, partials): the loop's members over points [lo, hi)

A loop reads and writes a scratch value v at ``scratch + offset_v + (i - lo) * itemsize``: its
pointer is moved back by ``lo`` elements once, so the loop indexes every access by the point ``i``.
A full reduction accumulates the block's points in a register and stores it in the block's row of
partials.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import loop_hints, parallel, scalar_ops, widen
from chainrule.backends.llvm.chains import Chain
from chainrule.backends.llvm.irtext import Function
from chainrule.backends.llvm.plan import Loop
from chainrule.backends.llvm.views import View

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen

_ARENA = View(0, 0, (), (), "uint8")
_CTTZ = "declare i64 @llvm.cttz.i64(i64, i1 immarg)"


def emit_chain(gen: Codegen, index: int) -> None:
    """Chain ``index`` of the plan: its loops, its block task, and the entry's call and combines."""
    chain = gen.plan.chains[index]
    loops = [_loop_function(gen, chain, loop) for loop in chain.loops]
    task = _task_function(gen, chain, index, loops)
    entry = gen.entry
    arena = gen.base(entry, _ARENA, {})
    mask = entry.emit(f"getelementptr i8, ptr {arena}, i64 {chain.mask_offset}", "seats.mask")
    entry.do(f"store i64 0, ptr {mask}")
    partials = entry.emit(f"getelementptr i8, ptr {arena}, i64 {chain.partials_offset}", "block.partials")
    threads = gen.threads if chain.seats > 1 else "1"
    if chain.seats > 1:
        gen.parallel_loops += 1
    gen.module.declare(parallel.DECLARATION)
    entry.note(f"{len(loops)} loops over {chain.points} points in blocks of {chain.block}" + _on(chain))
    entry.do(
        f"call void @{parallel.pool.SYMBOL}(ptr @{task}, ptr %table, i64 {chain.points}, ptr {partials}, "
        f"i64 {chain.row_bytes}, i64 {threads}, i64 {chain.block}, i64 {chain.blocks})"
    )
    for k, member in enumerate(chain.reductions):
        gen.combine_partials(member, partials, chain.row_bytes, 8 * k, chain.blocks)


def _on(chain: Chain) -> str:
    return ", on all threads" if chain.seats > 1 else ""


def _task_function(gen: Codegen, chain: Chain, index: int, loops: list[str]) -> str:
    """``@<prefix>_chain<index>(table, lo, hi, partials)``: every loop of the chain over one block."""
    name = f"{gen.prefix}_chain{index}"
    comment = f"one block of points of {len(loops)} loops, in a seat's scratch of {chain.seat_bytes} bytes"
    fn = gen.module.function(
        f"internal void @{name}(ptr noalias %table, i64 %start, i64 %end, ptr noalias %partials)", comment
    )
    arena = gen.base(fn, _ARENA, {})
    seats = fn.emit(f"getelementptr i8, ptr {arena}, i64 {chain.seats_offset}", "seats")
    if chain.seats > 1:
        mask = fn.emit(f"getelementptr i8, ptr {arena}, i64 {chain.mask_offset}", "mask")
        seat, release = _claim_seat(fn, mask)
        stride = -(-chain.seat_bytes // 64) * 64
        at = fn.emit(f"mul nuw nsw i64 {seat}, {stride}", "seat.at")
        scratch = fn.emit(f"getelementptr i8, ptr {seats}, i64 {at}", "scratch")
    else:
        scratch, release = seats, None
    for loop in loops:
        fn.do(f"call void @{loop}(ptr %table, i64 %start, i64 %end, ptr {scratch}, ptr %partials)")
    if release is not None:
        release()
    fn.do("ret void")
    return name


def _claim_seat(fn: Function, mask: str) -> tuple[str, Callable[[], None]]:
    """The lowest free seat, claimed by compare-and-swap on ``mask``; and the call freeing it. At most
    64 threads run a chain's blocks at once (the kernel clamps its threads to 64), so one is free."""
    fn.declare(_CTTZ)
    claim, won = fn.label("seat.claim"), fn.label("seat.won")
    fn.do(f"br label %{claim}")
    fn.place(claim)
    taken = fn.emit(f"load atomic i64, ptr {mask} monotonic, align 8", "taken")
    free = fn.emit(f"xor i64 {taken}, -1", "free")
    seat = fn.emit(f"call i64 @llvm.cttz.i64(i64 {free}, i1 false)", "seat")
    bit = fn.emit(f"shl i64 1, {seat}", "seat.bit")
    claimed = fn.emit(f"or i64 {taken}, {bit}", "claimed")
    swap = fn.emit(f"cmpxchg ptr {mask}, i64 {taken}, i64 {claimed} acquire monotonic", "swap")
    ok = fn.emit(f"extractvalue {{ i64, i1 }} {swap}, 1", "ok")
    fn.do(f"br i1 {ok}, label %{won}, label %{claim}")
    fn.place(won)

    def release() -> None:
        keep = fn.emit(f"xor i64 {bit}, -1", "keep")
        fn.emit(f"atomicrmw and ptr {mask}, i64 {keep} release", "freed")

    return seat, release


def _loop_function(gen: Codegen, chain: Chain, loop: Loop) -> str:
    """``@<prefix>_loop<n>(table, lo, hi, scratch, partials)``: the loop's members over [lo, hi)."""
    plan, graph = gen.plan, gen.graph
    members = set(loop.members)
    shape = loop.shape
    gen.loops += 1
    name = f"{gen.prefix}_loop{gen.loops}"
    comment = f"loop over [{shape[0]}] in blocks: {len(loop.members)} node(s), {loop.steps} step(s)"
    fn = gen.module.function(
        f"internal void @{name}(ptr noalias %table, i64 %start, i64 %end, ptr noalias %scratch, "
        "ptr noalias %partials) noinline",
        comment,
    )
    cache: dict[object, str] = {}
    pointers: dict[tuple[str, int], str] = {}
    strides: dict[Hashable, list[int]] = {}
    for m in loop.members:
        for a in graph[m].args:
            if a not in members and a not in plan.immediates and ("r", a) not in pointers:
                _place(gen, fn, chain, cache, ("r", a), shape, pointers, strides)
    for m in loop.members:
        if m in chain.scratch or (m in plan.stored and not plan.is_reduction_member(m)):
            _place(gen, fn, chain, cache, ("w", m), shape, pointers, strides)
    accumulators = {}
    for m in loop.members:
        if plan.is_reduction_member(m):
            dtype = graph.type(m).dtype
            accumulators[m] = fn.alloca(scalar_ops.register_type(dtype), "acc")
            identity = gen.identity(gen.reduction_op(m), dtype)
            fn.do(f"store {scalar_ops.register_type(dtype)} {identity}, ptr {accumulators[m]}")
    dtypes = {graph.type(m).dtype for m in loop.members}
    hints = loop_hints.hints(shape, loop.steps, len(pointers), dtypes)
    group = gen.module.access_group() if loop_hints.vectorized(shape) else ""
    if group:  # see loop_hints.py: a loop's outputs never share memory with its operands
        hints += (f'!{{!"llvm.loop.parallel_accesses", {group}}}',)
    payload = _payload(gen, fn, loop, pointers, accumulators, group)
    widening = _widening(gen, chain, loop, pointers, strides, dtypes) if not accumulators else (0, "", False, 1)
    widen.nest_widened(gen, fn, [None], strides, payload, hints, widening)
    for m, slot in accumulators.items():
        t = scalar_ops.register_type(graph.type(m).dtype)
        value = fn.emit(f"load {t}, ptr {slot}", "acc")
        place = fn.emit(f"getelementptr i8, ptr %partials, i64 {8 * chain.reductions.index(m)}", "partial")
        fn.do(f"store {t} {value}, ptr {place}")
    fn.do("ret void")
    return name


def _widening(
    gen: Codegen,
    chain: Chain,
    loop: Loop,
    pointers: dict[tuple[str, int], str],
    strides: dict[Hashable, list[int]],
    dtypes: set[str],
) -> tuple[int, str, bool, int]:
    """(lanes, float dtype, may the last step be moved back, copies a step) of a chain loop's body
    widened by chainrule (widen.py), lanes 0 if it is left to LLVM. A step moved back reads and
    writes points before the block's first: only when every block has a step's points or more (else it would
    touch another value's scratch, or a seat another thread works in), and no array the loop
    writes shares memory with one it reads (scratch values a loop reads and writes never do)."""
    if any(stride[0] not in (0, 1) for stride in strides.values()):
        return 0, "", False, 1
    floats = dtypes - {"bool"}  # a bool is widened too: a byte in memory, an i1 in a register
    width = loop_hints.explicit_width(loop.shape, loop.steps, len(strides), floats)
    last_block = chain.points - (chain.blocks - 1) * chain.block
    arrays = {key: gen.plan.views[key[1]].broadcast_to(loop.shape) for key in pointers if key[1] not in chain.scratch}
    reads = [view for key, view in arrays.items() if key[0] == "r"]
    writes = [view for key, view in arrays.items() if key[0] == "w"]
    copies = widen.copies(width, last_block)
    overlap = last_block >= copies * width and widen.writes_apart_from_reads(reads, writes)
    return width, min(floats, default=""), overlap, copies if overlap else 1


def _place(
    gen: Codegen,
    fn: Function,
    chain: Chain,
    cache: dict[object, str],
    key: tuple[str, int],
    shape: tuple[int, ...],
    pointers: dict[tuple[str, int], str],
    strides: dict[Hashable, list[int]],
) -> None:
    """The pointer and stride of one access: a full array's (its view's), or a scratch value's, moved
    back by the block's first point so the loop indexes it by the point (the scratch pointer moved
    back once per item size, shared: one instruction a value, where a long loop reads hundreds)."""
    value = key[1]
    if value in chain.scratch:
        itemsize = np.dtype(gen.graph.type(value).dtype).itemsize
        if ("scratch", itemsize) not in cache:
            back = fn.emit(f"mul nsw i64 %start, {-itemsize}", "back")
            cache["scratch", itemsize] = fn.emit(f"getelementptr i8, ptr %scratch, i64 {back}", "scratch.back")
        at = chain.scratch[value] * chain.block
        pointers[key] = fn.emit(f"getelementptr i8, ptr {cache['scratch', itemsize]}, i64 {at}", f"s{value}")
        strides[key] = [1]
        return
    view = gen.plan.views[value].broadcast_to(shape)
    pointers[key] = gen.base(fn, view, cache)
    strides[key] = [view.strides[0]]


def _payload(
    gen: Codegen,
    fn: Function,
    loop: Loop,
    pointers: dict[tuple[str, int], str],
    accumulators: dict[int, str],
    group: str,
) -> Callable[[dict], None]:
    """One point of the loop: every member's element, stored or accumulated."""
    plan, graph = gen.plan, gen.graph

    def payload(offsets: dict) -> None:
        registers: dict[int, str] = {}

        def read(value_id: int) -> str:
            if value_id not in registers:
                if value_id in plan.immediates:
                    return scalar_ops.literal(plan.immediates[value_id], graph.type(value_id).dtype)
                name = graph[value_id].name or f"in{value_id}"
                key = ("r", value_id)
                registers[value_id] = gen.load(fn, pointers[key], offsets[key], graph.type(value_id).dtype, name, group)
            return registers[value_id]

        for m in loop.members:
            fn.note(gen.describe(m))
            value, dtype = gen.element(fn, m, read)
            if m in accumulators:
                out_dtype = graph.type(m).dtype
                value = scalar_ops.convert(fn, value, dtype, out_dtype)
                t = scalar_ops.register_type(out_dtype)
                so_far = fn.emit(f"load {t}, ptr {accumulators[m]}", "acc")
                combined = gen.combine(fn, gen.reduction_op(m), out_dtype, so_far, value)
                fn.do(f"store {t} {combined}, ptr {accumulators[m]}")
                continue
            registers[m] = value
            if ("w", m) in pointers:
                gen.store(fn, value, pointers[("w", m)], offsets[("w", m)], dtype, group)

    return payload
