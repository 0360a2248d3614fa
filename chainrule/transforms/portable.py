"""Compiled functions that travel: pickling a ``Compiled`` sends the function and the options,
never machine code, and the receiving process compiles on its first call.

A function pickles by reference when it can (a module-level ``def``) and by value otherwise
(a lambda, a closure, a function of ``__main__``: through ``cloudpickle``, installed with Dask). The
receiving process keeps one function object per pickled function, keyed by a digest of its
pickled bytes, so every copy that arrives there shares one cache of compiled kernels: a Dask
worker compiles a gradient once, not once per task. The LLVM backend's kernels also reuse the
worker's on-disk cache (``chainrule.backends.llvm.cache``).
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections.abc import Callable
from typing import Any

# state a Compiled rebuilds in each process instead of pickling: its caches hold kernels
PER_PROCESS_STATE = frozenset(
    {"fn", "__wrapped__", "_entry", "_cache", "_by_key", "_stats", "_layouts", "_scalar_call", "_outputs"}
    | {"_array_call", "_array_tried", "_fast_call"}
)

# digest of a pickled function -> the function, as first unpickled in this process
_ARRIVED: dict[str, Callable[..., Any]] = {}
_ARRIVED_LOCK = threading.Lock()


def function_payload(fn: Callable[..., Any]) -> bytes:
    """``fn`` pickled: through cloudpickle when installed (by reference when importable, by value
    for a lambda, a closure or a function of ``__main__``, which a worker cannot import), else by
    plain pickle (by reference). Beside it goes the file ``fn`` was written in: cloudpickle drops
    it, and errors raised in the receiving process should still name the user's line."""
    try:
        import cloudpickle
    except ImportError:
        try:
            return pickle.dumps((pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL), None))
        except (pickle.PicklingError, AttributeError, TypeError):
            raise pickle.PicklingError(
                f"{getattr(fn, '__qualname__', fn)!r} cannot be pickled by reference: pickling it by "
                "value needs cloudpickle (pip install cloudpickle, or chainrule[dask])"
            ) from None
    code = getattr(fn, "__code__", None)
    filename = code.co_filename if code is not None else None
    return pickle.dumps((cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL), filename))


def arrived_function(payload: bytes) -> Callable[..., Any]:
    """The function ``payload`` holds, the same object for every copy that arrives in this process."""
    digest = hashlib.sha256(payload).hexdigest()
    with _ARRIVED_LOCK:
        fn = _ARRIVED.get(digest)
        if fn is None:
            function_bytes, filename = pickle.loads(payload)
            fn = _ARRIVED[digest] = pickle.loads(function_bytes)
            code = getattr(fn, "__code__", None)
            if filename is not None and code is not None and code.co_filename != filename:
                fn.__code__ = code.replace(co_filename=filename)
        return fn


def rebuild(cls: type[Any], payload: bytes, state: dict[str, Any]) -> Any:
    """A ``cls`` (a Compiled) from its pickled function and options, with this process's caches."""
    compiled = object.__new__(cls)
    compiled.__dict__.update(state)
    compiled.attach(arrived_function(payload))
    return compiled


def portable_reduce(compiled: Any) -> tuple[Any, ...]:
    """``__reduce__`` of a Compiled (a Jacobian, a Hessian): its function pickled (by reference, or
    by value for a lambda) and its options, never a kernel or a cache; ``rebuild`` makes it again,
    and the receiving process compiles on its first call."""
    state = {key: value for key, value in compiled.__dict__.items() if key not in PER_PROCESS_STATE}
    return rebuild, (type(compiled), function_payload(compiled.fn), state)
