"""The records of a lowering plan (``lower.py`` makes them, ``codegen.py`` writes them out,
``kernel.py`` calls the result): the entry function's units in order, the loops they are, the
NumPy callbacks, and where each input and output lives."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.backends.llvm.views import View


@dataclass
class Fallback:
    """A node computed by its NumPy lowering, called back from the native code. ``on_error``: called
    back only when the native code found the node's operands invalid (an index out of range), so
    that NumPy raises its error; a call with valid operands runs no Python for it."""

    node_id: int
    op: str
    params: dict[str, Any]
    operands: list[View]
    result: View
    description: str
    on_error: bool = False


@dataclass
class OutputSpec:
    """Where output k comes from: ``slot`` (a per-call array) or an arena view copied out."""

    shape: tuple[int, ...]
    dtype: str
    slot: int | None = None
    arena_view: View | None = None


@dataclass
class InputSpec:
    shape: tuple[int, ...]
    dtype: str
    slot: int | None = None  # an array passed by address
    staged: View | None = None  # a 0-d input written into the arena


@dataclass
class Lowered:
    """The module text and what the Python side needs to call it."""

    ir: str
    entry: str
    table_size: int
    arena_bytes: int
    constants: np.ndarray
    inputs: list[InputSpec]
    outputs: list[OutputSpec]
    fallbacks: list[Fallback]
    loops: int = 0
    parallel_loops: int = 0
    longest_loop: int = 0  # steps in the longest loop body (of more than one element)
    # LAPACK: the arena offset of the status word (-1: none) and the failure each status names
    status_offset: int = -1
    failures: list[tuple[str, Any]] = field(default_factory=list)


# ---- units: what the entry function does, in order -------------------------------------------


@dataclass
class Loop:
    """A loop nest over ``shape`` computing ``members`` (node ids) element by element."""

    shape: tuple[int, ...]
    members: list[int] = field(default_factory=list)
    steps: int = 0


@dataclass
class Unit:
    # "loop", "reduce", "matmul", "lapack" (lapack_ops.py), "native" (native_ops.py),
    # "native_loop" (loops.py), "scatter" (loop_scatter.py), "gather" (gather.py),
    # "copy" (copies.py: a reshape of non-contiguous data), "fallback"
    kind: str
    node_id: int = -1
    loop: Loop | None = None


ALIGNMENT = 64  # bytes: every arena block, constant and workspace starts on a cache line


class Arena:
    """First-fit allocation of aligned blocks with coalescing of freed ones."""

    def __init__(self) -> None:
        self.size = 0
        self.free: list[tuple[int, int]] = []  # (offset, size), sorted by offset

    def take(self, nbytes: int) -> int:
        nbytes = max(ALIGNMENT, -(-nbytes // ALIGNMENT) * ALIGNMENT)
        for index, (offset, size) in enumerate(self.free):
            if size >= nbytes:
                if size == nbytes:
                    del self.free[index]
                else:
                    self.free[index] = (offset + nbytes, size - nbytes)
                return offset
        offset = self.size
        self.size += nbytes
        return offset

    def give_back(self, offset: int, nbytes: int) -> None:
        # Merged with its neighbours only (the list is kept sorted and coalesced): re-sorting and
        # re-merging the whole list made a graph of many small values quadratic to plan.
        nbytes = max(ALIGNMENT, -(-nbytes // ALIGNMENT) * ALIGNMENT)
        free = self.free
        index = bisect.bisect_left(free, (offset, nbytes))
        if index < len(free) and offset + nbytes == free[index][0]:
            nbytes += free.pop(index)[1]
        if index > 0 and free[index - 1][0] + free[index - 1][1] == offset:
            offset, nbytes = free[index - 1][0], free[index - 1][1] + nbytes
            index -= 1
            del free[index]
        free.insert(index, (offset, nbytes))
