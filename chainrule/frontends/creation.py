"""Float arrays the user's traced function creates with NumPy are traced arrays, so it can write into them.

``out = np.zeros(n); out[i] = f(x)`` is how NumPy code fills an array. A NumPy array cannot hold a
traced value, and ``np.zeros(n)`` has no traced argument, so NumPy's dispatch protocols never see
it. While a function is traced, ``np.zeros``, ``np.ones``, ``np.empty``, ``np.full`` and the
``*_like`` functions (on plain arrays) are replaced in the ``numpy`` module by wrappers which, called
from the user's code, return a traced constant instead; the write is then traced like any other
(``chainrule.frontends.inplace``). ``np.empty`` gives zeros, one of the values NumPy may give.

Only float arrays are traced (the default dtype included): integer and boolean arrays are indices,
counters and masks, whose values the function may need (``if``, ``int()``, as an index), and a
gradient cannot flow through them anyway. Calls from libraries (NumPy, SciPy, chainrule itself,
anything installed in site-packages or the standard library) get NumPy's own arrays, as do other
threads and calls outside a trace. A function bound before tracing (``from numpy import zeros``) is
not replaced: writing a traced value into its array raises a TraceError saying what to do.

``np.array``, ``np.asarray``, ``np.asanyarray`` and ``np.ascontiguousarray`` are replaced the same
way, for arguments that hold traced values: NumPy would convert them with ``__array__``, which a
traced value cannot answer. Called from the user's code, a traced array is returned as is
(``np.array`` copies it: a write into either leaves the other as it was), and nested lists and
tuples of traced values, numbers and arrays (``np.array([v, -np.sin(x)])``) are stacked level by
level, their other items as NumPy's arrays, so the dtype is NumPy's. Called from a library, NumPy's
own conversion runs (and raises the TraceError of ``conversion_advice``).
"""

from __future__ import annotations

import contextlib
import dis
import functools
import os
import sys
import threading
import typing
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

import numpy as np

from chainrule.errors import UnsupportedError
from chainrule.frontends.dispatch import here
from chainrule.frontends.source import INSTALLED_DIRS, location_of, user_frame
from chainrule.frontends.tracer import TraceContext, Tracer, operation
from chainrule.ir.builder import Value

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_CLIENT_DIR = os.path.join(_PACKAGE_DIR, "cli") + os.sep
_LIBRARY_DIRS = (*INSTALLED_DIRS, os.path.dirname(np.__file__) + os.sep, _PACKAGE_DIR)

_OPEN = threading.local()  # .contexts: this thread's open traces, innermost last
_INSTALLED_LOCK = threading.Lock()
_installed = 0  # traces open in all threads: the wrappers are in place while it is positive
_ORIGINALS: dict[str, Callable] = {}
_IS_LIBRARY: dict[CodeType, bool] = {}


@contextlib.contextmanager
def traced_creation(context: TraceContext) -> Iterator[None]:
    """While the body runs, float arrays created by the user's code on this thread join ``context``."""
    global _installed
    contexts = _OPEN.__dict__.setdefault("contexts", [])
    contexts.append(context)
    with _INSTALLED_LOCK:
        if _installed == 0:
            for name, wrapper in _WRAPPERS.items():
                _ORIGINALS[name] = getattr(np, name)
                setattr(np, name, wrapper)
        _installed += 1
    try:
        yield
    finally:
        contexts.pop()
        with _INSTALLED_LOCK:
            _installed -= 1
            if _installed == 0:
                for name, original in _ORIGINALS.items():
                    setattr(np, name, original)


def _tracing_for_caller(name: str, dtype) -> TraceContext | None:
    """The trace that ``np.<name>`` called from the user's code joins, or None (NumPy's own array).

    The caller must be the user's Python code calling ``<name>`` itself at the line it is at: a
    C or Cython function the user called (``rng.uniform``) may call ``np.empty`` too, with the
    user's frame the innermost Python frame, and it needs NumPy's array.
    """
    contexts = getattr(_OPEN, "contexts", None)
    if not contexts or np.dtype(float if dtype is None else dtype).kind != "f":
        return None
    return contexts[-1] if _user_calls(name, sys._getframe(2)) else None


def _user_calls(name: str, frame: FrameType) -> bool:
    """Whether ``frame`` is the user's code, calling ``<name>`` itself at the line it is at."""
    code = frame.f_code
    library = _IS_LIBRARY.get(code)
    if library is None:
        filename = os.path.abspath(code.co_filename)
        library = filename.startswith(_LIBRARY_DIRS) and not filename.startswith(_CLIENT_DIR)
        _IS_LIBRARY[code] = library
    return not library and _callees(code).get(frame.f_lasti) == name


_LOADS = {"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_FAST"}


@functools.lru_cache(maxsize=1024)
def _callees(code: CodeType) -> dict[int, str]:
    """Bytecode offset of each call in ``code`` (every offset up to the next instruction) -> the name
    it calls: the last name loaded by the expression the call's own source span starts with."""
    instructions = list(dis.get_instructions(code))
    callees: dict[int, str] = {}
    for i, call in enumerate(instructions):
        where = call.positions
        if not call.opname.startswith("CALL") or where is None or where.lineno is None:
            continue
        best, best_end = None, None
        for load in instructions[:i]:
            at = load.positions
            if (
                load.opname in _LOADS
                and at is not None
                and (at.lineno, at.col_offset) == (where.lineno, where.col_offset)
            ):
                end = (at.end_lineno, at.end_col_offset)
                if best_end is None or end > best_end:
                    best, best_end = load.argval, end
        if best is not None:
            following = instructions[i + 1].offset if i + 1 < len(instructions) else call.offset + 2
            for offset in range(call.offset, following, 2):
                callees[offset] = best
    return callees


def constant_array(context: TraceContext, shape, dtype, fill) -> Tracer:
    """A new traced array of ``shape`` filled with ``fill`` (a number or a traced scalar)."""
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    dtype = np.dtype(float if dtype is None else dtype)
    graph, loc = context.graph, location_of(user_frame(3))
    if isinstance(fill, Tracer):
        if fill.ndim and np.broadcast_shapes(fill.shape, shape) != shape:
            raise ValueError(f"could not broadcast fill value of shape {fill.shape} to {shape}")
        value = fill if fill.dtype == dtype else typing.cast(Tracer, operation("cast", fill, dtype=dtype.name))
        node = (
            value._value.id
            if value.shape == shape
            else graph.add("broadcast_to", [value._value.id], {"shape": shape}, loc=loc)
        )
    elif np.all(np.asarray(fill) == 0):
        node = graph.add("zeros", (), {"shape": shape, "dtype": dtype.name}, loc=loc)
    else:  # the array itself, as a NumPy array made here would have been captured
        node = graph.const(np.full(shape, fill, dtype=dtype))
    return Tracer(Value(graph, node), context)  # its own memory, though its value is a broadcast


def _filled(name: str, fill) -> Callable:
    def create(shape, dtype=float, order="C", **kwargs):
        context = _tracing_for_caller(name, dtype)
        if context is None or kwargs.get("like") is not None:
            return _ORIGINALS[name](shape, dtype, order, **kwargs)
        return constant_array(context, shape, dtype, fill)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = f"np.{name}, traced when called from a traced function (chainrule.frontends.creation)"
    return create


def _full(shape, fill_value, dtype=None, order="C", **kwargs):
    """np.full, traced when called from a traced function or given a traced fill value."""
    if dtype is None:
        dtype = fill_value.dtype if isinstance(fill_value, Tracer) else np.asarray(fill_value).dtype
    context = _tracing_for_caller("full", dtype)
    if isinstance(fill_value, Tracer) and kwargs.get("like") is None:
        context = fill_value._context
    if context is None or kwargs.get("like") is not None:
        return _ORIGINALS["full"](shape, fill_value, dtype, order, **kwargs)
    return constant_array(context, shape, dtype, fill_value)


def _filled_like(name: str, fill) -> Callable:
    def create_like(a, dtype=None, order="K", subok=True, shape=None, **kwargs):
        if isinstance(a, Tracer):  # NumPy dispatches it to numpy_shapes' handler
            return _ORIGINALS[name](a, dtype, order, subok, shape, **kwargs)
        like_dtype = np.asarray(a).dtype if dtype is None else dtype
        context = _tracing_for_caller(name, like_dtype)
        if context is None:
            return _ORIGINALS[name](a, dtype, order, subok, shape, **kwargs)
        return constant_array(context, np.shape(a) if shape is None else shape, like_dtype, fill)

    create_like.__name__ = create_like.__qualname__ = name
    create_like.__doc__ = f"np.{name}, traced when called from a traced function (chainrule.frontends.creation)"
    return create_like


def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, **kwargs):
    """np.full_like, traced when called from a traced function or given a traced fill value."""
    if isinstance(a, Tracer):
        return _ORIGINALS["full_like"](a, fill_value, dtype, order, subok, shape, **kwargs)
    like_dtype = np.asarray(a).dtype if dtype is None else dtype
    context = _tracing_for_caller("full_like", like_dtype)
    if isinstance(fill_value, Tracer):
        context = fill_value._context
    if context is None:
        return _ORIGINALS["full_like"](a, fill_value, dtype, order, subok, shape, **kwargs)
    return constant_array(context, np.shape(a) if shape is None else shape, like_dtype, fill_value)


def _holds_traced(value) -> bool:
    if isinstance(value, Tracer):
        return True
    return type(value) in (list, tuple) and any(_holds_traced(item) for item in value)


def _as_traced(name: str, value, dtype, ndmin: int = 0) -> Tracer | None:
    """``value`` holding traced values, as the traced array ``np.<name>`` called from the user's code
    makes of it (None: a call from a library, which gets NumPy's own conversion). Nested sequences
    are stacked level by level; their other items are NumPy's arrays (``1.5`` is a float64), so the
    result's dtype is the one NumPy would give."""
    if not _user_calls(name, sys._getframe(2)):
        return None
    if dtype is not None and np.dtype(dtype).kind not in "biuf":
        raise UnsupportedError(f"np.{name} with dtype={np.dtype(dtype)} of traced values is not supported", here())
    levels = [value]  # the nested sequences, outermost first: stacked innermost first
    for level in levels:
        if type(level) in (list, tuple):
            levels.extend(item for item in level if type(item) in (list, tuple))
    stacked: dict[int, Any] = {}
    for level in reversed(levels):
        if type(level) in (list, tuple):
            items = [stacked.get(id(item), item) for item in level]
            items = [item if isinstance(item, Tracer) else _ORIGINALS["asarray"](item) for item in items]
            stacked[id(level)] = np.stack(items)
    result = stacked.get(id(value), value)
    if dtype is not None and result.dtype != np.dtype(dtype):
        result = result.astype(dtype)
    if result.ndim < ndmin:
        result = np.reshape(result, (1,) * (ndmin - result.ndim) + result.shape)
    return result


def _array(object, dtype=None, *, copy=True, order="K", subok=False, ndmin=0, like=None):
    """np.array, traced when called from a traced function on traced values: a copy, as NumPy's."""
    if like is None and _holds_traced(object):
        result = _as_traced("array", object, dtype, ndmin)
        if result is not None:
            return result.copy() if result is object and copy else result
    return _ORIGINALS["array"](object, dtype, copy=copy, order=order, subok=subok, ndmin=ndmin, like=like)


def _converted(name: str, ndmin: int) -> Callable:
    def convert(a, dtype=None, *args, like=None, **kwargs):
        if like is None and _holds_traced(a):
            result = _as_traced(name, a, dtype, ndmin)
            if result is not None:
                return result.copy() if result is a and kwargs.get("copy") else result
        if like is not None:
            kwargs["like"] = like
        return _ORIGINALS[name](a, dtype, *args, **kwargs)

    convert.__name__ = convert.__qualname__ = name
    convert.__doc__ = f"np.{name}, traced when called from a traced function on traced values (creation.py)"
    return convert


_WRAPPERS: dict[str, Callable] = {
    "array": _array,
    "asarray": _converted("asarray", 0),
    "asanyarray": _converted("asanyarray", 0),
    "ascontiguousarray": _converted("ascontiguousarray", 1),
    "zeros": _filled("zeros", 0),
    "empty": _filled("empty", 0),
    "ones": _filled("ones", 1),
    "full": _full,
    "zeros_like": _filled_like("zeros_like", 0),
    "empty_like": _filled_like("empty_like", 0),
    "ones_like": _filled_like("ones_like", 1),
    "full_like": _full_like,
}
