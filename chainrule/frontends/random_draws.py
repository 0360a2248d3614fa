"""Random numbers drawn while tracing: a warning, since the compiled function replays them.

NumPy's generators are C code a tracer cannot see into: ``rs.randn(n, d)`` inside a traced function
returns plain numbers, which become constants of the graph. Every call of the compiled function then
reuses the samples drawn while tracing, where autograd (which runs the function again on every call)
draws new ones: black-box variational inference would silently optimize one fixed Monte Carlo
estimate. Nothing is wrong with the numbers of one call, so this is a warning, not an error.

What is watched: NumPy's global generator (``np.random.randn``) and every ``RandomState`` or
``Generator`` the traced function can reach by name: its closure, defaults and the globals its code
reads, and the same of the user functions found there (a bounded walk, no recursion). A generator
reached only through an object's attribute or a container is not seen.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import types
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from chainrule.frontends.source import global_names

_GENERATORS = (np.random.RandomState, np.random.Generator)
_LIBRARY_PREFIXES = ("numpy", "scipy", "chainrule")
_MAX_FUNCTIONS = 256


@contextlib.contextmanager
def warning_on_random_draws(fn: Callable) -> Iterator[None]:
    """Run the body (the trace of ``fn``); warn if a generator ``fn`` reaches changed state."""
    generators = reachable_generators(fn)
    before = {name: _state(generator) for name, generator in generators.items()}
    yield
    drawn = [name for name, generator in generators.items() if _state(generator) != before[name]]
    if drawn:
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        message = (
            f"tracing {getattr(fn, '__name__', 'the function')} drew random numbers from {', '.join(drawn)}: "
            "they were drawn once, while tracing, and every call of the compiled function reuses them "
            "(autograd would draw new ones per call). Draw outside the function and pass the samples "
            "in as an argument."
        )
        # reported at the traced function's definition: the draw itself is somewhere in its calls
        filename, line = (code.co_filename, code.co_firstlineno) if code is not None else ("<unknown>", 0)
        warnings.warn_explicit(message, RuntimeWarning, filename, line)


def reachable_generators(fn: Callable) -> dict[str, object]:
    """NumPy's global generator and the generators ``fn`` reaches by name, by the name it uses."""
    found: dict[str, object] = {"np.random (the global generator)": np.random}
    pending: list[object] = [fn]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_FUNCTIONS:
        function = pending.pop()
        if isinstance(function, functools.partial):
            pending.append(function.func)
            continue
        function = getattr(function, "__func__", function)
        if not isinstance(function, types.FunctionType) or id(function) in seen:
            continue
        seen.add(id(function))
        if (function.__module__ or "").partition(".")[0] in _LIBRARY_PREFIXES:
            continue
        for name, value in _names_read(function):
            if isinstance(value, _GENERATORS):
                found.setdefault(f"'{name}'", value)
            elif isinstance(value, types.FunctionType | functools.partial | types.MethodType):
                pending.append(value)
    return found


def _names_read(function: types.FunctionType) -> Iterator[tuple[str, object]]:
    code = function.__code__
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        with contextlib.suppress(ValueError):  # a cell not filled yet
            yield name, cell.cell_contents
    for name in global_names(code):  # nested code (comprehensions, lambdas) included
        if name in function.__globals__:
            yield name, function.__globals__[name]
    yield from zip(code.co_varnames[: code.co_argcount][::-1], (function.__defaults__ or ())[::-1])
    yield from (function.__kwdefaults__ or {}).items()


def _state(generator: object) -> bytes:
    if generator is np.random:
        return pickle.dumps(np.random.get_state(legacy=False))
    if isinstance(generator, np.random.RandomState):
        return pickle.dumps(generator.get_state(legacy=False))
    return pickle.dumps(generator.bit_generator.state)  # type: ignore[attr-defined]
