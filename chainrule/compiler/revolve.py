"""Griewank's binomial checkpointing: the fewest forward advances that reverse a chain of l steps
with c checkpoint slots, and a schedule that makes exactly that many (as Revolve does).

With β(c, r) = C(c + r, c) and r the repetition number, β(c, r−1) < l <= β(c, r),
the fewest advances are t(l, c) = r·l − β(c+1, r−1) (Griewank 1992; Griewank and
Walther 2000, "Algorithm 799: Revolve"), counting the slot that holds the input.
``compiler/recompute.py`` lowers a schedule onto a graph's chain of stages.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from chainrule.errors import ArgumentError


def beta(slots: int, repetitions: int) -> int:
    """β(c, r) = C(c + r, c): the most steps c slots reverse with r repetitions (0 for r < 0)."""
    return math.comb(slots + repetitions, slots) if repetitions >= 0 else 0


def repetitions(steps: int, slots: int) -> int:
    """The r with β(c, r−1) < l <= β(c, r)."""
    r = 0
    while beta(slots, r) < steps:
        r += 1
    return r


def griewank_advances(steps: int, slots: int) -> int:
    """t(l, c) = r·l − β(c+1, r−1): the fewest forward advances to reverse a chain of ``steps``
    with ``slots`` checkpoints, the one holding the input included (Griewank 1992).

    >>> griewank_advances(10, 2)
    20
    """
    if steps <= 1:
        return 0
    if slots < 1:
        raise ArgumentError("reversing a chain needs at least one checkpoint slot (the input's)")
    r = repetitions(steps, slots)
    return r * steps - beta(slots + 1, r - 1)


def _advances(lengths: np.ndarray, slots: int, longest: int) -> np.ndarray:
    """t(l, slots) for each l in ``lengths`` (none above ``longest``), vectorized."""
    if slots == 1:
        return lengths * (lengths - 1) // 2
    r_max = repetitions(max(longest, 1), slots)
    bounds = np.array([beta(slots, r) for r in range(r_max + 1)], dtype=np.int64)
    offsets = np.array([beta(slots + 1, k - 1) for k in range(r_max + 1)], dtype=np.int64)
    r = np.searchsorted(bounds, lengths, side="left")  # the first r with β(c, r) >= l
    return np.where(lengths > 1, r * lengths - offsets[r], 0)


def revolve_schedule(steps: int, slots: int) -> list[tuple[str, int]]:
    """An optimal reversal schedule of a chain of ``steps`` with ``slots`` checkpoints (the input's
    included), as Revolve makes it: a list of actions

    - ``("advance", i)``: compute step i, x_i -> x_(i+1);
    - ``("store", i)`` / ``("free", i)``: keep x_i in a slot / release it;
    - ``("restore", i)``: continue from the stored x_i;
    - ``("turn", i)``: step i computed from x_i with its intermediates, then differentiated.

    Each split is one where t(l, c) = m + t(l − m, c − 1) + t(m, c) holds, so the count of
    advances is Griewank's bound.

    >>> sum(action == "advance" for action, _ in revolve_schedule(10, 2))
    20
    """
    if steps < 1:
        return []
    if slots < 1:
        raise ArgumentError("reversing a chain needs at least one checkpoint slot (the input's)")

    actions: list[tuple[str, int]] = [("store", 0)]
    # an action to emit, or ("reverse", start, end, free slots, restore first) to expand
    pending: list[tuple[str, int] | tuple[str, int, int, int, bool]] = [("reverse", 0, steps, slots, False)]
    while pending:
        item = pending.pop()
        if len(item) == 2:  # an action (only "reverse" items have five fields)
            actions.append(item)
            continue
        _, start, end, free, restore = item  # ``free`` slots, the one holding x_start included
        length = end - start
        if restore:
            actions.append(("restore", start))
        if length == 1:
            actions.append(("turn", start))
            continue
        if free == 1:  # only x_start: sweep from it to each step, last step first
            for last in range(end - 1, start - 1, -1):
                if last != end - 1:
                    actions.append(("restore", start))
                actions += [("advance", i) for i in range(start, last)]
                actions.append(("turn", last))
            continue
        splits = np.arange(1, length)
        costs = splits + _advances(length - splits, free - 1, length) + _advances(splits, free, length)
        split = int(splits[np.argmin(costs)])
        actions += [("advance", i) for i in range(start, start + split)]
        actions.append(("store", start + split))
        pending.append(("reverse", start, start + split, free, True))
        pending.append(("free", start + split))
        pending.append(("reverse", start + split, end, free - 1, False))
    actions.append(("free", 0))
    return actions


def fewest_slots_for_one_extra_sweep(steps: int) -> int:
    """The fewest slots c with repetition number r <= 2: about one extra forward sweep."""
    slots = 1
    while beta(slots, 2) < steps:
        slots += 1
    return slots


def sqrt_schedule(steps: int) -> list[tuple[str, int]]:
    """Chen et al.'s reversal in Revolve's actions: one sweep keeps every ⌈√l⌉-th state, then each
    segment, last first, is advanced again from its first state keeping all of its states, and
    reversed. About 2√l states are held at once, and l − ⌈l/s⌉ + s·(⌈l/s⌉ − 1) advances made.

    >>> actions = sqrt_schedule(9)
    >>> sum(action == "advance" for action, _ in actions), max_stored(actions)
    (12, 5)
    """
    if steps < 1:
        return []
    size = math.isqrt(steps - 1) + 1  # ⌈√steps⌉
    starts = list(range(0, steps, size))
    actions: list[tuple[str, int]] = [("store", 0)]
    for previous, start in itertools.pairwise(starts):
        actions += [("advance", i) for i in range(previous, start)]
        actions.append(("store", start))
    for start in reversed(starts):
        end = min(start + size, steps)
        actions.append(("restore", start))
        for i in range(start, end - 1):
            actions += [("advance", i), ("store", i + 1)]
        for i in range(end - 1, start - 1, -1):
            actions += [("restore", i), ("turn", i)]
            if i != start:
                actions.append(("free", i))
        if start != 0:
            actions.append(("free", start))
    actions.append(("free", 0))
    return actions


def count_advances(actions: list[tuple[str, int]]) -> int:
    """The forward steps a schedule computes again (its ``advance`` actions)."""
    return sum(action == "advance" for action, _ in actions)


def max_stored(actions: list[tuple[str, int]]) -> int:
    """The most states a schedule holds at once (the input's included)."""
    stored: set[int] = set()
    most = 0
    for action, step in actions:
        if action == "store":
            stored.add(step)
            most = max(most, len(stored))
        elif action == "free":
            stored.discard(step)
    return most
