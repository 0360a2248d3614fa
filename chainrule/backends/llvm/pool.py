"""The process's worker threads: ``chainrule_parallel_run`` hands a loop's tasks (or a chain's
blocks, ``blocked.py``) to them.

One pool per process, created on first use and never joined: worker threads park on a futex
between loops (after a short spin, so the next loop of the same call finds them awake), and a
parallel loop costs a wake-up and a wait instead of ``pthread_create``/``pthread_join`` per loop.

    chainrule_parallel_run(body, table, extent, partials, row_bytes, threads, chunk, tasks)

runs ``body(table, k*chunk, min((k+1)*chunk, extent), partials + k*row_bytes)`` for every task
``k < tasks`` on the caller and up to ``threads - 1`` workers, and returns when all are done.
Which thread runs a task does not change what it computes (the task layout is the caller's, see
``parallel.task_layout``), so the workers take tasks as they come: a worker on a core another
process holds takes fewer.

- Kernels on several Python threads at once: the pool serves one caller at a time (a lock taken
  with compare-and-swap); the others run their tasks on their own thread, in order.
- ``fork()``: the child has none of the workers; an ``os.register_at_fork`` handler forgets them (and
  frees the lock a parent thread may have held), so the child starts its own on first use.
- Tasks are claimed by compare-and-swap on one word holding the job's generation and the next
  task: a worker late for a job cannot claim a task of the next one.

The module is compiled once per process (its object code is cached like any kernel's) and bound
into kernels by name through ``engine.RUNTIME_SYMBOLS``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

from chainrule.backends.llvm import engine

SYMBOL = "chainrule_parallel_run"  # the name kernels call it by
DEFINED = "chainrule_pool_run"  # its name in the pool's module (which must not mention SYMBOL)
FORGET = "chainrule_pool_forget"  # run in the child after fork()
WORKERS = "chainrule_pool_workers"  # the count of started workers, a global of the module
# Busy-wait iterations before a thread sleeps: the next loop of a kernel usually follows within
# microseconds. ~100 us at ~50 ns per pause (x86's pause is 40-140 cycles).
SPIN = 2000
MAX_WORKERS = 63
# futex(2): the system call's number where known; elsewhere threads poll with sched_yield.
_FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98}
_FUTEX_WAIT_PRIVATE, _FUTEX_WAKE_PRIVATE = 128, 129
_keep: list[object] = []  # the fork handler's ctypes function
_CLOSED = 0xFFFFFFFF  # the task index of a job being published: no task can be claimed

_GLOBALS = """%cr.job = type {{ ptr, ptr, ptr, i64, i64, i64, i64, i64 }}
@cr.job = internal global %cr.job zeroinitializer, align 64
@cr.counter = internal global i64 0, align 64
@cr.gen = internal global i32 0, align 64
@cr.done = internal global i32 0, align 64
@cr.waiting = internal global i32 0, align 4
@cr.sleepers = internal global i32 0, align 64
@cr.lock = internal global i32 0, align 64
@chainrule_pool_workers = global i64 0, align 8

declare i32 @pthread_create(ptr, ptr, ptr, ptr) nounwind
declare i32 @pthread_detach(i64) nounwind
declare i32 @sched_yield() nounwind
declare i64 @syscall(i64, ...) nounwind
"""

# job fields: 0 body, 1 table, 2 partials, 3 row_bytes, 4 chunk, 5 extent, 6 tasks, 7 workers taking part
_WORK = """
; Claim and run tasks of job ``gen`` while there are any; ``index`` 0 is the caller, workers 1...
define internal void @cr.work(i64 %index, i64 %gen) {{
entry:
  br label %claim
claim:
  %word = load atomic i64, ptr @cr.counter acquire, align 8
  %word.gen = lshr i64 %word, 32
  %same = icmp eq i64 %word.gen, %gen
  br i1 %same, label %fields, label %out
fields:
  %k = and i64 %word, 4294967295
  %tasks.p = getelementptr %cr.job, ptr @cr.job, i32 0, i32 6
  %tasks = load atomic i64, ptr %tasks.p monotonic, align 8
  %left = icmp ult i64 %k, %tasks
  %seats.p = getelementptr %cr.job, ptr @cr.job, i32 0, i32 7
  %seats = load atomic i64, ptr %seats.p monotonic, align 8
  %seated = icmp ule i64 %index, %seats
  %go = and i1 %left, %seated
  br i1 %go, label %take, label %out
take:
  %body = load atomic ptr, ptr @cr.job monotonic, align 8
  %table.p = getelementptr %cr.job, ptr @cr.job, i32 0, i32 1
  %table = load atomic ptr, ptr %table.p monotonic, align 8
  %partials.p = getelementptr %cr.job, ptr @cr.job, i32 0, i32 2
  %partials = load atomic ptr, ptr %partials.p monotonic, align 8
  %row.p = getelementptr %cr.job, ptr @cr.job, i32 0, i32 3
  %row_bytes = load atomic i64, ptr %row.p monotonic, align 8
  %chunk.p = getelementptr %cr.job, ptr @cr.job, i32 0, i32 4
  %chunk = load atomic i64, ptr %chunk.p monotonic, align 8
  %extent.p = getelementptr %cr.job, ptr @cr.job, i32 0, i32 5
  %extent = load atomic i64, ptr %extent.p monotonic, align 8
  %next = add i64 %word, 1
  %swap = cmpxchg ptr @cr.counter, i64 %word, i64 %next acq_rel acquire
  %won = extractvalue {{ i64, i1 }} %swap, 1
  br i1 %won, label %run, label %claim
run:
  call void @cr.task(ptr %body, ptr %table, ptr %partials, i64 %row_bytes, i64 %chunk, i64 %extent, i64 %k)
  %before = atomicrmw add ptr @cr.done, i32 1 seq_cst
  %after = add i32 %before, 1
  %waiting = load atomic i32, ptr @cr.waiting seq_cst, align 4
  %tasks.32 = trunc i64 %tasks to i32
  %last = icmp eq i32 %after, %tasks.32
  %someone = icmp ne i32 %waiting, 0
  %wake = and i1 %last, %someone
  br i1 %wake, label %wake.caller, label %claim
wake.caller:
  call void @cr.wake(ptr @cr.done)
  br label %claim
out:
  ret void
}}

define internal void @cr.task(ptr %body, ptr %table, ptr %partials, i64 %row_bytes, i64 %chunk, i64 %extent, i64 %k) {{
entry:
  %lo.raw = mul i64 %k, %chunk
  %lo.big = icmp ugt i64 %lo.raw, %extent
  %lo = select i1 %lo.big, i64 %extent, i64 %lo.raw
  %hi.raw = add i64 %lo, %chunk
  %hi.big = icmp ugt i64 %hi.raw, %extent
  %hi = select i1 %hi.big, i64 %extent, i64 %hi.raw
  %row = mul i64 %k, %row_bytes
  %mine = getelementptr i8, ptr %partials, i64 %row
  call void %body(ptr %table, i64 %lo, i64 %hi, ptr %mine)
  ret void
}}
"""

_WORKER = """
; A worker: wait for the next job (spin, then sleep on the futex), take part, repeat.
define internal ptr @cr.worker(ptr %arg) {{
entry:
  %index = ptrtoint ptr %arg to i64
  br label %wait
wait:
  %last = phi i32 [ 0, %entry ], [ %last, %slept ], [ %gen, %found ]
  br label %spin
spin:
  %i = phi i32 [ 0, %wait ], [ %i.next, %again ]
  %gen = load atomic i32, ptr @cr.gen acquire, align 4
  %new = icmp ne i32 %gen, %last
  br i1 %new, label %found, label %again
again:
  {pause}
  %i.next = add i32 %i, 1
  %more = icmp ult i32 %i.next, {spin}
  br i1 %more, label %spin, label %sleep
sleep:
  %s = atomicrmw add ptr @cr.sleepers, i32 1 seq_cst
  %gen.now = load atomic i32, ptr @cr.gen seq_cst, align 4
  %still = icmp eq i32 %gen.now, %last
  br i1 %still, label %park, label %slept
park:
  call void @cr.park(ptr @cr.gen, i32 %last)
  br label %slept
slept:
  %s.after = atomicrmw sub ptr @cr.sleepers, i32 1 seq_cst
  br label %wait
found:
  %gen.64 = zext i32 %gen to i64
  call void @cr.work(i64 %index, i64 %gen.64)
  br label %wait
}}

define void @chainrule_pool_forget() {{
entry:
  store atomic i64 0, ptr @chainrule_pool_workers seq_cst, align 8
  store atomic i32 0, ptr @cr.sleepers seq_cst, align 4
  store atomic i32 0, ptr @cr.waiting seq_cst, align 4
  %gen = load atomic i32, ptr @cr.gen seq_cst, align 4
  %gen.64 = zext i32 %gen to i64
  %tag = shl i64 %gen.64, 32
  %closed = or i64 %tag, {closed}
  store atomic i64 %closed, ptr @cr.counter seq_cst, align 8
  store atomic i32 0, ptr @cr.lock seq_cst, align 4
  ret void
}}

; Start workers until there are ``wanted`` (call with the lock held); how many there are.
define internal i64 @cr.start_workers(i64 %wanted) {{
entry:
  %handle = alloca i64, align 8
  br label %check
check:
  %have = load atomic i64, ptr @chainrule_pool_workers monotonic, align 8
  %enough = icmp uge i64 %have, %wanted
  br i1 %enough, label %done, label %create
create:
  %index = add i64 %have, 1
  %arg = inttoptr i64 %index to ptr
  %rc = call i32 @pthread_create(ptr %handle, ptr null, ptr @cr.worker, ptr %arg)
  %ok = icmp eq i32 %rc, 0
  br i1 %ok, label %created, label %done
created:
  %h = load i64, ptr %handle
  %d = call i32 @pthread_detach(i64 %h)
  store atomic i64 %index, ptr @chainrule_pool_workers monotonic, align 8
  br label %check
done:
  %count = load atomic i64, ptr @chainrule_pool_workers monotonic, align 8
  ret i64 %count
}}
"""

_RUN = """
define void @chainrule_pool_run(ptr %body, ptr %table, i64 %extent, ptr %partials, i64 %row_bytes, i64 %threads, i64 %chunk, i64 %tasks) {{
entry:
  %alone = icmp ule i64 %threads, 1
  %few = icmp ule i64 %tasks, 1
  %inline.now = or i1 %alone, %few
  br i1 %inline.now, label %inline, label %lock
lock:
  %locking = cmpxchg ptr @cr.lock, i32 0, i32 1 acquire monotonic
  %locked = extractvalue {{ i32, i1 }} %locking, 1
  br i1 %locked, label %start, label %inline
start:
  %wanted.raw = sub i64 %threads, 1
  %wanted.big = icmp ugt i64 %wanted.raw, {max_workers}
  %wanted = select i1 %wanted.big, i64 {max_workers}, i64 %wanted.raw
  %have = call i64 @cr.start_workers(i64 %wanted)
  %none = icmp eq i64 %have, 0
  br i1 %none, label %unlock.inline, label %publish
unlock.inline:
  store atomic i32 0, ptr @cr.lock release, align 4
  br label %inline
publish:
  %seats.few = icmp ult i64 %have, %wanted
  %seats = select i1 %seats.few, i64 %have, i64 %wanted
  %gen.old = load atomic i32, ptr @cr.gen monotonic, align 4
  %gen.inc = add i32 %gen.old, 1
  %gen.zero = icmp eq i32 %gen.inc, 0
  %gen = select i1 %gen.zero, i32 1, i32 %gen.inc
  %gen.64 = zext i32 %gen to i64
  %tag = shl i64 %gen.64, 32
  %closed = or i64 %tag, {closed}
  store atomic i64 %closed, ptr @cr.counter seq_cst, align 8
  store atomic ptr %body, ptr @cr.job monotonic, align 8
  %f1 = getelementptr %cr.job, ptr @cr.job, i32 0, i32 1
  store atomic ptr %table, ptr %f1 monotonic, align 8
  %f2 = getelementptr %cr.job, ptr @cr.job, i32 0, i32 2
  store atomic ptr %partials, ptr %f2 monotonic, align 8
  %f3 = getelementptr %cr.job, ptr @cr.job, i32 0, i32 3
  store atomic i64 %row_bytes, ptr %f3 monotonic, align 8
  %f4 = getelementptr %cr.job, ptr @cr.job, i32 0, i32 4
  store atomic i64 %chunk, ptr %f4 monotonic, align 8
  %f5 = getelementptr %cr.job, ptr @cr.job, i32 0, i32 5
  store atomic i64 %extent, ptr %f5 monotonic, align 8
  %f6 = getelementptr %cr.job, ptr @cr.job, i32 0, i32 6
  store atomic i64 %tasks, ptr %f6 monotonic, align 8
  %f7 = getelementptr %cr.job, ptr @cr.job, i32 0, i32 7
  store atomic i64 %seats, ptr %f7 monotonic, align 8
  store atomic i32 0, ptr @cr.done monotonic, align 4
  store atomic i64 %tag, ptr @cr.counter release, align 8
  store atomic i32 %gen, ptr @cr.gen seq_cst, align 4
  %sleepers = load atomic i32, ptr @cr.sleepers seq_cst, align 4
  %asleep = icmp ne i32 %sleepers, 0
  br i1 %asleep, label %wake, label %work
wake:
  call void @cr.wake(ptr @cr.gen)
  br label %work
work:
  call void @cr.work(i64 0, i64 %gen.64)
  %tasks.32 = trunc i64 %tasks to i32
  br label %spin
spin:
  %i = phi i32 [ 0, %work ], [ %i.next, %again ]
  %done.now = load atomic i32, ptr @cr.done acquire, align 4
  %finished = icmp eq i32 %done.now, %tasks.32
  br i1 %finished, label %unlock, label %again
again:
  {pause}
  %i.next = add i32 %i, 1
  %more = icmp ult i32 %i.next, {spin}
  br i1 %more, label %spin, label %sleep
sleep:
  store atomic i32 1, ptr @cr.waiting seq_cst, align 4
  br label %sleep.check
sleep.check:
  %done.then = load atomic i32, ptr @cr.done seq_cst, align 4
  %finished.then = icmp eq i32 %done.then, %tasks.32
  br i1 %finished.then, label %woken, label %park
park:
  call void @cr.park(ptr @cr.done, i32 %done.then)
  br label %sleep.check
woken:
  store atomic i32 0, ptr @cr.waiting seq_cst, align 4
  br label %unlock
unlock:
  store atomic i32 0, ptr @cr.lock release, align 4
  ret void
inline:
  %k = phi i64 [ 0, %entry ], [ 0, %lock ], [ 0, %unlock.inline ], [ %k.next, %inline.run ]
  %inline.more = icmp ult i64 %k, %tasks
  br i1 %inline.more, label %inline.run, label %inline.done
inline.run:
  call void @cr.task(ptr %body, ptr %table, ptr %partials, i64 %row_bytes, i64 %chunk, i64 %extent, i64 %k)
  %k.next = add i64 %k, 1
  br label %inline
inline.done:
  ret void
}}
"""

# Sleep while *word == value / wake every sleeper on word: futex(2), or sched_yield polling.
_FUTEX = """
define internal void @cr.park(ptr %word, i32 %value) {{
  %r = call i64 (i64, ...) @syscall(i64 {number}, ptr %word, i32 {wait}, i32 %value, ptr null, ptr null, i32 0)
  ret void
}}
define internal void @cr.wake(ptr %word) {{
  %r = call i64 (i64, ...) @syscall(i64 {number}, ptr %word, i32 {wake}, i32 2147483647, ptr null, ptr null, i32 0)
  ret void
}}
"""
_POLLING = """
define internal void @cr.park(ptr %word, i32 %value) {
  %r = call i32 @sched_yield()
  ret void
}
define internal void @cr.wake(ptr %word) {
  ret void
}
"""


def pool_ir(machine: str | None = None) -> str:
    """The pool's module for ``machine`` (``platform.machine()``'s name; default this one's)."""
    machine = machine or platform.machine()
    pause = "call void @llvm.x86.sse2.pause()" if machine in ("x86_64", "AMD64", "i686") else "fence seq_cst"
    number = _FUTEX_SYSCALL.get(machine) if platform.system() == "Linux" else None
    waits = (
        _POLLING if number is None else _FUTEX.format(number=number, wait=_FUTEX_WAIT_PRIVATE, wake=_FUTEX_WAKE_PRIVATE)
    )
    declarations = "declare void @llvm.x86.sse2.pause()\n" if pause.startswith("call") else ""
    fill = {"spin": SPIN, "pause": pause, "closed": _CLOSED, "max_workers": MAX_WORKERS}
    return _GLOBALS.format() + declarations + _WORK.format() + _WORKER.format(**fill) + _RUN.format(**fill) + waits


def run_address() -> int:
    """The address of ``chainrule_parallel_run`` (the pool is compiled on first use)."""
    return _module().address(DEFINED)


@functools.cache
def _module() -> engine.NativeModule:
    module = engine.compile_ir(pool_ir(), name="chainrule_pool")
    forget = ctypes.CFUNCTYPE(None)(module.address(FORGET))
    # The child of fork() has only the forking thread: it forgets the parent's workers (and the
    # lock a parent thread may have held) and starts its own on first use.
    os.register_at_fork(after_in_child=forget)
    _keep.append(forget)
    return module


def worker_count() -> int:
    """How many worker threads this process's pool has started (0 before first use, or after fork)."""
    return ctypes.c_int64.from_address(_module().address(WORKERS)).value


engine.RUNTIME_SYMBOLS[SYMBOL] = run_address  # bound into every kernel that calls it
