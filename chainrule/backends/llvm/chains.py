"""Point-blocked chains: consecutive loops over the same points run block by block.

A long elementwise region is split into loops of at most ``MAX_LOOP_STEPS`` steps (lower.py), and
a value one loop computes and a later one reads goes through memory. Run loop after loop over all
points, those values are full-size arrays (at depth 1000 and 10^4 points, 154 MB of them) and the
later loops stream them back from DRAM. A *chain* runs every loop of such a run over one block of
points before the next block, so a value read only by later loops of the chain lives in a
block-sized *scratch* (sized with ``SCRATCH_BUDGET`` to stay in L2) instead of a full array.

Planned here (``plan_chains``, called by ``Lowering.plan`` once units and stored values are known):

- which consecutive loop units form a chain: one-dimensional loops of one shape, where no loop reads
  a reduction of an earlier loop of the chain (it exists only once every block has run) or reads
  through a view a value the chain computes (a view may read another block's points);
- which values live in scratch (every reader in its loop or a later one of the chain, reading it
  directly; not an output), and where: first-fit with reuse, in bytes per point, as ``_allocate`` plans the arena;
- the block: a multiple of 64 points (the vector loop's step, parallel.py: every block but the last
  runs the same vector code whatever the thread count), as many as fit the budget, at least 64.

Each block is one task of the process's pool (pool.py): one parallel region per chain, a thread
taking blocks as they come, each with a *seat* (a scratch of its own, claimed per block from a
mask of free seats). A full reduction in a chain keeps one partial per block, combined in block
order after the chain: results are bit-identical on any number of threads (blocked.py emits it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm.plan import ALIGNMENT, Arena, Loop, Unit

if TYPE_CHECKING:
    from chainrule.backends.llvm.lower import Lowering

# Bytes of scratch per seat the block is sized to: half of this machine class's 1 MiB L2 (AMD EPYC
# here: 1 MiB per core), leaving the other half to the inputs and outputs streaming through.
SCRATCH_BUDGET = 512 * 1024
BLOCK_GRANULE = 64  # points: the vector loop's step (parallel.py)
MIN_BLOCKS = 8  # blocks of a parallel chain, at least (if of 64 points or more)
MAX_SEATS = 64  # one bit each in the seat mask (an i64); the kernel's MAX_THREADS


@dataclass
class Chain:
    """Loops over ``points`` run block by block; ``scratch[v]`` is value v's byte offset per point
    (times ``block``: its offset in a seat)."""

    points: int
    loops: list[Loop]
    scratch: dict[int, int] = field(default_factory=dict)
    bytes_per_point: int = 0
    block: int = BLOCK_GRANULE
    seats: int = 1
    reductions: list[int] = field(default_factory=list)  # members, in loop order: partial k of a block
    # arena byte offsets (set when the kernel's memory is planned): the seats, the per-block
    # partials (a row of 8-byte accumulators per block) and the seat mask
    seats_offset: int = -1
    partials_offset: int = -1
    mask_offset: int = -1

    @property
    def blocks(self) -> int:
        return -(-self.points // self.block)

    @property
    def seat_bytes(self) -> int:
        return self.bytes_per_point * self.block

    @property
    def row_bytes(self) -> int:
        return 8 * max(1, len(self.reductions))

    def arena_bytes(self) -> int:
        """Memory the chain needs beyond its loops' values: seats, partials, the mask."""
        partials = self.blocks * self.row_bytes if self.reductions else 0
        return _aligned(self.seat_bytes) * self.seats + _aligned(partials) + ALIGNMENT

    def place(self, start: int) -> None:
        """Lay the chain's memory out from arena offset ``start``: mask, partials, then the seats
        (last: only the seats threads take are ever touched)."""
        self.mask_offset = start
        self.partials_offset = start + ALIGNMENT
        partials = self.blocks * self.row_bytes if self.reductions else 0
        self.seats_offset = self.partials_offset + _aligned(partials)


def plan_chains(lowering: Lowering, min_work: int, min_points: int) -> None:
    """Replace runs of chainable loop units by chain units (``lowering.chains[k]`` is unit
    ``Unit("chain", k)``), and take their scratch values out of ``lowering.stored``'s arena homes."""
    runs: list[list[Unit]] = []
    # the members of the last run's loops, grown as loops join it: gathering them again for each
    # loop asked was quadratic in a chain's length (0.3 s of a depth-10^4 nested gradient)
    run_members: set[int] = set()
    for unit in lowering.units:
        loop = unit.loop
        if loop is None or len(loop.shape) != 1 or loop.shape[0] < 2:
            runs.append([unit])
            run_members = set(loop.members) if loop is not None else set()
            continue
        previous = runs[-1] if runs else []
        if previous and previous[0].loop is not None and _joins(lowering, previous, run_members, loop):
            previous.append(unit)
            run_members.update(loop.members)
        else:
            runs.append([unit])
            run_members = set(loop.members)
    units: list[Unit] = []
    for run in runs:
        if len(run) < 2:
            units += run
            continue
        loops = [u.loop for u in run if u.loop is not None]
        chain = Chain(loops[0].shape[0], loops)
        work = chain.points * sum(loop.steps for loop in loops)
        chain.seats = MAX_SEATS if work >= min_work and chain.points >= min_points else 1
        _place_scratch(lowering, chain)
        lowering.chains.append(chain)
        units.append(Unit("chain", len(lowering.chains) - 1))
    lowering.units = units


def _joins(lowering: Lowering, run: list[Unit], in_chain: set[int], loop: Loop) -> bool:
    """Can ``loop`` join ``run`` (whose loops' members are ``in_chain``)?"""
    first = run[0].loop
    assert first is not None
    if loop.shape != first.shape:
        return False
    graph = lowering.graph
    for m in loop.members:
        for a in graph[m].args:
            if a in in_chain and lowering.is_reduction_member(a):
                return False  # complete only once every block has run
        if any(root in in_chain for root in lowering.view_roots(m)):
            return False  # a view may read points of another block
    return True


def _place_scratch(lowering: Lowering, chain: Chain) -> None:
    """Which stored values of the chain live in scratch, and their offsets in bytes per point."""
    graph = lowering.graph
    position = {m: k for k, loop in enumerate(chain.loops) for m in loop.members}
    outputs = set(graph.outputs)
    dying: dict[int, list[tuple[int, int]]] = {}
    arena = Arena()  # in units of 64 points: an offset / 64 is bytes per point
    for k, loop in enumerate(chain.loops):
        for m in loop.members:
            if lowering.is_reduction_member(m):
                chain.reductions.append(m)
                continue
            if m not in lowering.stored or m in outputs:
                continue
            readers = graph.users(m)
            if not all(position.get(u, -1) >= k and m in graph[u].args for u in readers):
                continue
            size = np.dtype(graph.type(m).dtype).itemsize * BLOCK_GRANULE
            offset = arena.take(size)
            chain.scratch[m] = offset // BLOCK_GRANULE
            last = max(position[u] for u in readers)
            dying.setdefault(last, []).append((offset, size))
        for offset, size in dying.pop(k, ()):
            arena.give_back(offset, size)
    for m in chain.scratch:
        lowering.stored.discard(m)
    chain.bytes_per_point = arena.size // BLOCK_GRANULE
    fit = SCRATCH_BUDGET // max(chain.bytes_per_point, 1) // BLOCK_GRANULE * BLOCK_GRANULE
    # in parallel, at least MIN_BLOCKS blocks: threads on busy cores take fewer of them
    share = -(-chain.points // (MIN_BLOCKS if chain.seats > 1 else 1))
    chain.block = max(BLOCK_GRANULE, min(fit, -(-share // BLOCK_GRANULE) * BLOCK_GRANULE))


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT
