"""The call of a compiled function whose arguments are all traced scalars, kept per ``Compiled``.

``cr.grad(f)(4.2)`` with a kernel already compiled should cost little more than the kernel: the
classes of scalar arguments alone fix the specialization, so ``Compiled.__call__`` skips the
general path (``call_key``, pytrees, ``np.asarray``) when they match the last scalar signature's.
On the llvm backend, a gradient of Python floats goes further: the kernel's builtin
(``backends/llvm/python_entry.py``) checks the arguments itself, natively, and runs the kernel; for
anything else it returns ``MISSED`` and the general path, with every argument check, runs. A
``Compiled`` of that class exactly goes further still (``fast_call_class``): its call *is* a
builtin, whose fallback is the general path, so a call of floats runs no Python frame at all
(``Compiled.__call__``'s own frame and checks cost more than half a microsecond here); and a call
of arrays the kernel's array builtin takes (array_guard.py) is one generated function's frame.
"""

from __future__ import annotations

import ctypes
import functools
import operator
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from chainrule.errors import ChainruleError
from chainrule.transforms.portable import portable_reduce
from chainrule.transforms.specialization import Specialization

MISSED = object()  # what a float builtin returns for arguments it does not take


class ScalarCall(NamedTuple):
    """The last all-scalar signature of a ``Compiled``: its argument classes and its call; with
    Python floats only, also the kernel's builtin (or None), and ``make_builtin(fallback, hits)``
    making another that passes other calls on to ``fallback`` and counts its runs in ``hits``."""

    classes: tuple[type, ...]
    call: Callable[..., Any]
    builtin: Callable[..., Any] | None
    make_builtin: Callable[[Callable[..., Any], ctypes.c_uint64], Callable[..., Any]] | None = None


def scalar_call(
    compiled: Any,
    entry: Specialization,
    args: tuple[Any, ...],
    keywords: tuple[str, ...],
    leaves: list[Any],
    picks: tuple[int, ...] | None,
) -> ScalarCall | None:
    """The ``ScalarCall`` of ``compiled`` (a ``Compiled``) for ``args``, or None unless every
    argument is a traced scalar passed as itself (no container, no keyword, nothing static)."""
    if passed_as_themselves(args, keywords, leaves, picks) and all(
        s.scalar or s.python_float for s in entry.spec.leaves
    ):
        classes = tuple(map(type, args))
        make = _float_builtin(compiled, entry, classes)
        builtin = None if make is None else make(_missed)
        return ScalarCall(classes, _caller(compiled, entry), builtin, make)
    return None


def _caller(compiled: Any, entry: Specialization) -> Callable[..., Any]:
    """The call for arguments that are all traced scalars."""
    kernel_fn, results = entry.kernel.fn, compiled._results
    if not getattr(entry.kernel, "accepts_scalars", False):  # the llvm kernel reads scalars as they are
        return lambda *args: results(entry, kernel_fn(*[np.asarray(a) for a in args]))
    if compiled.transform in ("grad", "value_and_grad") and isinstance(compiled.argnums, int) and not compiled.has_aux:
        ((count, _, converters),) = entry.gradient_trees  # one scalar's gradient: one output, converted
        position = entry.out_treedef.num_leaves
        convert = converters[0] if converters else None
        if count == 1 and convert is not None:
            if compiled.transform == "grad":
                native = getattr(entry.kernel, "scalar_outputs", None)  # llvm: floats in and out, natively
                call = native[position] if native is not None else lambda *args: kernel_fn(*args)[position]
                return call if convert is float and native is not None else lambda *args: convert(call(*args))
            return lambda *args: (lambda outputs: (outputs[0], convert(outputs[position])))(kernel_fn(*args))
    return lambda *args: results(entry, kernel_fn(*args))


def _float_builtin(compiled: Any, entry: Specialization, classes: tuple[type, ...]) -> Callable[..., Any] | None:
    """What makes the kernel's builtins for ``grad`` of Python floats, returning a float (and passing
    other arguments on to a fallback), when the gradient is one float64 scalar; else None."""
    if any(c is not float for c in classes) or compiled.transform != "grad" or compiled.has_aux:
        return None
    make = getattr(entry.kernel, "python_builtin", None)
    if make is None or not isinstance(compiled.argnums, int):
        return None
    ((count, _, converters),) = entry.gradient_trees
    if count != 1 or not converters or converters[0] is not float:
        return None
    return functools.partial(make, entry.out_treedef.num_leaves)


def _missed(*args: Any, **kwargs: Any) -> object:
    return MISSED


class GeneralCall:
    """``call(compiled, *args, **kwargs)``, the general path of a ``Compiled``, as the fallback of
    its float builtin; it refers to the Compiled weakly, so that the two make no cycle."""

    __slots__ = ("call", "compiled")

    def __init__(self, compiled: Any, call: Callable[..., Any]):
        self.compiled = weakref.ref(compiled)
        self.call = call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self.compiled()
        if compiled is None:  # only a builtin taken out of it (``f.__call__``) outlives the function
            raise ChainruleError("this call belonged to a compiled function that no longer exists")
        return self.call(compiled, *args, **kwargs)


@functools.cache
def fast_call_class(base: type) -> type:
    """``base`` (``Compiled``) whose call is the instance's ``_fast_call`` (a float builtin, or the
    generated call of an array builtin): ``__call__`` is a property, so CPython finds that and calls
    it without a frame of ``base.__call__``. It pickles, and is keyed, as a ``base``."""

    def __reduce__(self: Any) -> tuple[Any, ...]:
        rebuild, (_, payload, state) = portable_reduce(self)
        return rebuild, (base, payload, state)

    members = {"__call__": property(operator.attrgetter("_fast_call")), "__reduce__": __reduce__}
    members["chainrule_key_class"] = base  # keyed as a ``base`` (function_key.py)
    return type(base.__name__, (base,), {**members, "__module__": base.__module__, "__doc__": base.__doc__})


class ArrayCall(NamedTuple):
    """The last all-array signature of a ``Compiled``: the kernel's outputs through its array
    builtin (or ``MISSED``), and the specialization they are the outputs of."""

    call: Callable[..., Any]
    entry: Specialization


def array_call(
    entry: Specialization,
    args: tuple[Any, ...],
    keywords: tuple[str, ...],
    leaves: list[Any],
    picks: tuple[int, ...] | None,
) -> ArrayCall | None:
    """The ``ArrayCall`` for arguments that are all NumPy arrays passed as themselves (no
    container, keyword or static value): the kernel's array builtin checks each argument's
    class, dtype, layout and shape natively (backends/llvm/array_entry.py) and returns ``MISSED``
    for other arguments. None when ``args`` or the kernel do not allow it.

    A match means ``call_key`` would find this specialization: the key of such arguments is their
    count, and each one's class (exactly ``np.ndarray``), shape and dtype. (It holds no reference
    to the ``Compiled``: a cycle through it kept dropped kernels alive past a collection.)
    """
    if not passed_as_themselves(args, keywords, leaves, picks) or any(type(arg) is not np.ndarray for arg in args):
        return None
    make = getattr(entry.kernel, "array_caller", None)
    fast = make(MISSED) if make is not None else None
    return None if fast is None else ArrayCall(fast, entry)


def passed_as_themselves(
    args: tuple[Any, ...], keywords: tuple[str, ...], leaves: list[Any], picks: tuple[int, ...] | None
) -> bool:
    """Whether every argument is a leaf passed as itself: no container, keyword or static value."""
    return (
        picks is None
        and not keywords
        and len(leaves) == len(args)
        and all(leaf is arg for leaf, arg in zip(leaves, args))
    )
