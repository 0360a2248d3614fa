"""The records a Graph is made of: a node (one operation and its metadata) and a constant's value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainrule.errors import Loc
from chainrule.ir.types import TensorType


class ConstArray:
    """A constant's value, hashable by content so equal constants are one node."""

    __slots__ = ("_key", "array")

    def __init__(self, array: np.ndarray):
        self.array = np.array(array, copy=True)
        self.array.setflags(write=False)
        self._key = (self.array.dtype.str, self.array.shape, self.array.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConstArray) and self._key == other._key

    def __repr__(self) -> str:
        if self.array.ndim == 0:
            return repr(self.array.item())
        if self.array.size <= 6:
            return np.array2string(self.array, separator=",").replace("\n", "")
        return f"<{self.array.dtype.name}{list(self.array.shape)}>"


@dataclass(slots=True)
class Node:
    """One operation. ``op``, ``args``, ``attrs`` and ``type`` are its identity; the rest is metadata.

    ``origin`` is set on nodes made by a transformation (e.g. the backward pass):
    the id of the forward node they came from, so printers and generated code can
    say "this line is the derivative of relu at model.py:5".
    """

    op: str
    args: tuple[int, ...]
    attrs: tuple  # sorted (key, value) pairs
    type: TensorType
    loc: Loc | None = None
    name: str | None = None  # a readable name hint (the user's variable, or d<name> for a cotangent)
    origin: int | None = None
    # A forward value computed again in the backward pass (checkpointing): never hash-consed, so
    # no later pass merges it back into the forward node it copies (which would undo the saving).
    recomputed: bool = False

    @property
    def params(self) -> dict:
        return dict(self.attrs)

    @property
    def is_backward(self) -> bool:
        """Whether the node runs in the backward pass: a derivative (it has an origin) or a recomputation."""
        return self.origin is not None or self.recomputed


def freeze_attrs(attrs: dict | None) -> tuple:
    if not attrs:
        return ()
    return tuple(sorted(attrs.items()))


@dataclass
class MemoryPlan:
    """The estimated memory of one call of a scheduled graph (``Graph.memory_plan``, set by the schedule pass): the peak of live temporaries, and where it is reached."""

    peak_bytes: int
    peak_at: int  # id of the node at which the peak is reached
