"""Copies of a widened loop body in one step (``widen.COPIES``): whether a body gains from them, and
how they are written, interleaved line by line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_REGISTER = re.compile(r"%[-\w.$]+")


def latency_bound(lines: Iterable[str]) -> bool:
    """Is a scalar loop body a chain of vector math calls, more than half of them each waiting on
    the one before (a forward pass's composed functions), rather than of independent calls (a
    backward pass's derivatives of values already computed), which the CPU runs overlapped?"""
    chain: dict[str, int] = {}  # register -> the most math calls on one path to it
    calls = longest = 0
    for line in lines:
        if not line.startswith("  %"):
            continue
        result, _, rest = line[2:].partition(" = ")
        if rest.startswith(("getelementptr", "load")):
            continue  # an address or a value from memory: no call on a path to it
        links = 0
        for register in _REGISTER.findall(rest):
            depth = chain.get(register, 0)
            if depth > links:
                links = depth
        if "vector-function-abi-variant" in rest:
            calls, links = calls + 1, links + 1
            longest = max(longest, links)
        chain[result] = links
    return 2 * longest > calls


def interleaved(bodies: list[list[str]]) -> list[str]:
    """The copies of one widened body (line for line alike but for their registers) as one body:
    line i of each copy, then line i + 1 of each. An ``optnone`` function keeps its instructions in
    the order written, so a copy's math call starts while the previous copy's is still running (a
    body's calls are a chain, each waiting on the one before it)."""
    out: list[str] = []
    for lines in zip(*bodies):
        out.extend(lines[:1] if lines[0].startswith("  ;") else lines)
    return out
