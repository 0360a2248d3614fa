"""Keyword checking for the transformations: an unknown option is a chainrule ``ArgumentError``
that names it and lists the options the transformation takes, not Python's bare ``TypeError``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from chainrule.errors import ArgumentError

P = ParamSpec("P")
R = TypeVar("R")

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

# options JAX users reach for that chainrule does not have (yet), and what to do instead
_ABSENT = {
    "holomorphic": "complex differentiation is not supported",
}
# autograd's spellings of chainrule's options, so an autograd program runs with only its import changed
_ALIASES = {"argnum": "argnums"}


def checked_options(transformation: Callable[P, R]) -> Callable[P, R]:
    """``transformation``, raising ``ArgumentError`` for a keyword it does not take."""
    parameters = inspect.signature(transformation).parameters
    accepted = [name for name, p in parameters.items() if p.kind in _KEYWORD_KINDS]

    @functools.wraps(transformation)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        for alias, name in _ALIASES.items():
            if alias in kwargs and name in accepted and name not in kwargs:
                kwargs[name] = kwargs.pop(alias)
        for name in kwargs:
            if name not in accepted:
                advice = f" ({_ABSENT[name]})" if name in _ABSENT else ""
                raise ArgumentError(
                    f"{transformation.__name__}() has no option {name!r}{advice}; its options are {', '.join(accepted)}"
                )
        return transformation(*args, **kwargs)

    return checked
