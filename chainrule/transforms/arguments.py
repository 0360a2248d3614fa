"""What the transformations share about their arguments and results: which positional
arguments are static, and, for ``has_aux``, a function returning ``(value, aux)`` taken apart
into its two halves (each one function object per function, so its kernels are cached)."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

from chainrule.errors import OutputError
from chainrule.frontends.trace import StaticArguments


def static_positions(fn: Callable[..., Any], count: int, static_argnums: Any, static_argnames: Any) -> tuple[int, ...]:
    """The positions among ``count`` positional arguments of ``fn`` that are static."""
    return StaticArguments.of(fn, static_argnums, static_argnames).positions(count, ())


# fn -> {0: its value part, 1: its aux part}; the parts hold fn weakly, so fn can go (whoever
# keeps a part keeps fn too)
_PARTS: weakref.WeakKeyDictionary[Callable[..., Any], dict[int, Callable[..., Any]]] = weakref.WeakKeyDictionary()


def _part_of_pair(fn: Callable[..., Any], index: int) -> Callable[..., Any]:
    """``fn`` returning ``(value, aux)`` reduced to one of them (0: value, 1: aux), the same function
    object each time, so that its compiled kernels are found again."""
    getter: Callable[[], Callable[..., Any] | None]
    try:
        parts = _PARTS.setdefault(fn, {})
        getter = weakref.ref(fn)
    except TypeError:  # fn cannot be weakly referenced: a part of its own each time
        parts, getter = {}, lambda: fn
    if index not in parts:
        parts[index] = _make_part(getter, getattr(fn, "__name__", "fn"), index)
        try:
            parts[index].__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]  # argument names
        except (TypeError, ValueError):
            pass
    return parts[index]


def _make_part(getter: Callable[[], Callable[..., Any] | None], name: str, index: int) -> Callable[..., Any]:
    def part(*args: Any) -> Any:
        fn = getter()
        assert fn is not None, "a part is only called while its function lives"
        result = fn(*args)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise OutputError(
                f"with has_aux=True, {name} must return a pair (value, aux); it returned a {type(result).__name__}"
            )
        return result[index]

    part.__name__ = name
    return part


def value_part(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For ``has_aux``: ``fn`` that returns ``(value, aux)``, returning the value."""
    return _part_of_pair(fn, 0)


def aux_part(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For ``has_aux``: ``fn`` that returns ``(value, aux)``, returning aux (through ``jit``)."""
    return _part_of_pair(fn, 1)
