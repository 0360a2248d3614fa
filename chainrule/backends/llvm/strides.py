"""Strides of array views in elements: the contiguous layout, and loop nests with fewer dimensions.

Both the lowering (which views a value may be) and the code generator (which loops it writes)
reason about layouts this way.
"""

from __future__ import annotations


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


def coalesce(shape: tuple[int, ...], strides: list[tuple[int, ...]]) -> tuple[list[int], list[list[int]]]:
    """Merge dimensions that are contiguous for every access; drop dimensions of size 1.

    Returns the merged extents and, per access, its strides over them.
    """
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    extents = [shape[d] for d in dims]
    per_access = [[s[d] for d in dims] for s in strides]
    d = len(extents) - 2
    while d >= 0:
        if all(s[d] == s[d + 1] * extents[d + 1] for s in per_access):
            extents[d] *= extents[d + 1]
            del extents[d + 1]
            for s in per_access:
                s[d] = s[d + 1]
                del s[d + 1]
        d -= 1
    return extents, per_access


def coalesce_marked(
    shape: tuple[int, ...], strides: list[tuple[int, ...]], marks: list[bool]
) -> tuple[list[int], list[list[int]], list[bool]]:
    """``coalesce`` that never merges a marked dimension with an unmarked one; returns the marks too."""
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    extents = [shape[d] for d in dims]
    per_access = [[s[d] for d in dims] for s in strides]
    kinds = [marks[d] for d in dims]
    d = len(extents) - 2
    while d >= 0:
        if kinds[d] == kinds[d + 1] and all(s[d] == s[d + 1] * extents[d + 1] for s in per_access):
            extents[d] *= extents[d + 1]
            del extents[d + 1], kinds[d + 1]
            for s in per_access:
                s[d] = s[d + 1]
                del s[d + 1]
        d -= 1
    return extents, per_access, kinds
