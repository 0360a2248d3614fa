"""The records of a lowering plan (``lower.py`` makes them, ``codegen.py`` writes them out,
``kernel.py`` calls the result): the entry function's units in order, the loops they are, the
NumPy callbacks, and where each input and output lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.backends.llvm.views import View


@dataclass
class Fallback:
    """A node computed by its NumPy lowering, called back from the native code."""

    node_id: int
    op: str
    params: dict[str, Any]
    operands: list[View]
    result: View
    description: str


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
    kind: str  # "loop", "reduce", "matmul", "lapack", "native", "fallback"
    node_id: int = -1
    loop: Loop | None = None
