"""NumPy's views, kept faithful while traced arrays are written (see ``chainrule.frontends.inplace``).

A traced array that is written (``a[i] = v``, ``a += b``) gets a new value in its Tracer, so
every Python name bound to it sees the write. Views (``b = a[1:]``, ``a.T``) share a Buffer
with their base: the base's current value, and a version counted up by each write. A view
remembers the steps that take it from the base; used after a write, it replays them on the
new value, as NumPy's view would show the written memory. A step that is a view or a copy
depending on memory layout (reshape) cannot be replayed faithfully: the write breaks the
buffer, and using another array of it raises rather than give a possibly wrong value.
"""

from __future__ import annotations

from typing import Any

from chainrule.errors import TraceError
from chainrule.ir.builder import Value

VIEW_OPS = frozenset({"getitem", "transpose", "reshape", "broadcast_to"})
EXACT, AMBIGUOUS, READ_ONLY = "exact", "ambiguous", "read-only"


class Buffer:
    """The memory a base array and its views share: its current value and write count."""

    __slots__ = ("broken", "value", "version")

    def __init__(self, value: Value):
        self.value = value
        self.version = 0
        self.broken: str | None = None  # why this memory's arrays can no longer be used


class Alias:
    """Where a traced array lives: its buffer, the steps from the base, the version it shows."""

    __slots__ = ("buffer", "path", "seen")

    def __init__(self, buffer: Buffer, path: tuple, seen: int):
        self.buffer, self.path, self.seen = buffer, path, seen


def view_step(op_name: str, attrs: dict, array_ids, ndim: int) -> tuple | None:
    """The step ``(op, attrs, index array ids, kind)`` a view op takes, or None for a copy."""
    if op_name == "getitem":
        index = attrs["index"]
        if array_ids or (ndim == 0 and all(item[0] == "int" for item in index)):
            return None  # advanced indexing copies; all-int indexing gives a scalar
        kind = EXACT
    else:
        kind = {"transpose": EXACT, "broadcast_to": READ_ONLY}.get(op_name, AMBIGUOUS)
    return (op_name, tuple(sorted(attrs.items())), tuple(array_ids), kind)


def take_view(base: Any, view: Any, step: tuple | None) -> None:
    """Make ``view`` share ``base``'s buffer (``step`` None: ``view`` is a copy, its own array)."""
    if step is None:
        return
    alias = base.alias()
    view._alias = Alias(alias.buffer, alias.path + (step,), alias.buffer.version)


def replay(value: Value, step: tuple, loc) -> Value:
    """``step`` applied to ``value``: the view it takes."""
    op_name, attrs, array_ids, _kind = step
    return Value(value.graph, value.graph.add(op_name, [value.id, *array_ids], dict(attrs), loc=loc))


def current_value(alias: Alias, loc: Any) -> Value:
    """The value of the array at ``alias`` now: its steps replayed on its buffer's value."""
    buffer = alias.buffer
    if buffer.broken is not None:
        raise TraceError(buffer.broken, loc)
    if any(step[3] != EXACT for step in alias.path):
        raise TraceError(
            "this array is a view (from reshape or a function built on it) of an array written "
            "after the view was taken; whether NumPy's reshape shares memory depends on the "
            "array's layout, so the value cannot be traced faithfully. Take the view after the "
            "write, or copy it (.copy()) before writing.",
            loc,
        )
    value = buffer.value
    for step in alias.path:
        value = replay(value, step, loc)
    alias.seen = buffer.version
    return value
