"""The threads of a kernel: ``@<prefix>_parallel`` splits an outlined loop body into tasks and
hands them to the process's worker pool (``pool.py``), for ``codegen.py``'s loops over many
elements.

The split depends on the loop alone, never on the thread count: [0, extent) is cut into at most
``max_tasks`` (the kernel's ``MAX_THREADS``) tasks of ``chunk`` elements, a multiple of
``granule``, and task k writes row k of the partials. For a 1-D loop the granule is 64 elements
(the vector loop's step, up to 16 float32 lanes x interleave 4), so every task but the last has
no scalar remainder and each element is computed by the same code (libmvec, or libm in the
remainder) whatever the threads; a reduction's partials are the same tasks' sums, combined in
task order (``task_layout`` gives codegen their count). So a kernel's results are bit-identical
on 1, 2 or 64 threads, and whichever thread runs a task.
"""

from __future__ import annotations

from chainrule.backends.llvm import pool

DECLARATION = f"declare void @{pool.SYMBOL}(ptr, ptr, i64, ptr, i64, i64, i64, i64)"

RUNTIME = """define internal void @{p}_parallel(ptr %body, ptr %table, i64 %extent, ptr %partials, i64 %row_bytes, i64 %threads, i64 %granule) {{
entry:
  %spread = add i64 %extent, {max_threads}
  %spread.1 = sub i64 %spread, 1
  %chunk.exact = udiv i64 %spread.1, {max_threads}
  %granule.less = sub i64 %granule, 1
  %chunk.up = add i64 %chunk.exact, %granule.less
  %chunk.count = udiv i64 %chunk.up, %granule
  %chunk.granules = mul i64 %chunk.count, %granule
  %chunk.zero = icmp eq i64 %chunk.granules, 0
  %chunk = select i1 %chunk.zero, i64 %granule, i64 %chunk.granules
  %covered = add i64 %extent, %chunk
  %covered.1 = sub i64 %covered, 1
  %tasks = udiv i64 %covered.1, %chunk
  call void @{run}(ptr %body, ptr %table, i64 %extent, ptr %partials, i64 %row_bytes, i64 %threads, i64 %chunk, i64 %tasks)
  ret void
}}
"""


def runtime(prefix: str, max_tasks: int) -> str:
    """``@<prefix>_parallel`` for a kernel whose partials have ``max_tasks`` rows."""
    return RUNTIME.format(p=prefix, max_threads=max_tasks, run=pool.SYMBOL)


def task_layout(extent: int, granule: int, max_tasks: int) -> tuple[int, int]:
    """``(chunk, tasks)``: how ``@<prefix>_parallel`` splits [0, extent), as its IR computes it.

    >>> task_layout(10_000, 64, 64)
    (192, 53)
    """
    chunk = _ceil_div(_ceil_div(extent, max_tasks), granule) * granule or granule
    return chunk, _ceil_div(extent, chunk)


def _ceil_div(numerator: int, denominator: int) -> int:
    return (numerator + denominator - 1) // denominator
