"""The last all-array signature of a ``Compiled`` checked in Python, for kernels without an array builtin.

A call of a small NumPy-backend kernel cost ~3 us more than the kernel: ``call_key`` walks the
arguments as pytrees and builds a hashable key (~0.7 us for one array), ``_layout`` and the cache
lookups add more. When every argument is an ``np.ndarray`` passed as itself (no container, keyword
or static value), the key is no more than the argument count and each one's class, shape and dtype,
so a guard comparing those with the last such signature's finds the same specialization: exactly
``np.ndarray`` (a subclass misses), the same shape, the same dtype object (compared by identity, so
another byte order or a dtype with metadata misses). A miss returns ``MISSED`` and the caller takes
the general path, where every check and every error message lives. The llvm backend's array
builtin (``backends/llvm/array_entry.py``) does the same natively and is used first when a kernel
has one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from chainrule.transforms.scalar_call import MISSED, ArrayCall, array_call, passed_as_themselves
from chainrule.transforms.specialization import Specialization


class KnownArrays(NamedTuple):
    """The last all-array signature of a ``Compiled``: the kernel's outputs for arguments like its
    (or ``MISSED``), the specialization, and what makes the call's result of the outputs (None:
    ``Compiled._results``)."""

    call: Callable[..., Any]
    entry: Specialization
    finish: Callable[[Sequence[Any]], Any] | None


def known_arrays(
    compiled: Any,
    entry: Specialization,
    args: tuple[Any, ...],
    keywords: tuple[str, ...],
    leaves: list[Any],
    picks: tuple[int, ...] | None,
) -> KnownArrays | None:
    """The ``KnownArrays`` of a call of ``entry`` with ``args`` by ``compiled`` (a ``Compiled``): the
    kernel's array builtin (llvm) or else a guard in Python; None unless ``args`` are all arrays
    passed as themselves. It keeps no reference to ``compiled``."""
    found = array_call(entry, args, keywords, leaves, picks) or guarded_call(entry, args, keywords, leaves, picks)
    if found is None:
        return None
    if sum("_results" in vars(cls) for cls in type(compiled).__mro__) > 1:  # a subclass's own results (Linearized)
        return KnownArrays(found.call, entry, None)
    return KnownArrays(
        found.call, entry, results_function(entry, compiled.transform, compiled.argnums, compiled.has_aux)
    )


def results_function(
    entry: Specialization, transform: str, argnums: Any, has_aux: bool
) -> Callable[[Sequence[Any]], Any] | None:
    """What ``Compiled._results`` makes of ``entry``'s outputs, worked out once for the common cases
    (no gradient; grad or value_and_grad of one argument without aux or converted gradients), else None.
    It holds no reference to the ``Compiled`` (a cycle kept dropped kernels alive past a collection)."""
    if transform not in ("grad", "value_and_grad"):
        return itemgetter(0) if entry.out_treedef.kind == "leaf" else entry.build_outputs
    if has_aux or not isinstance(argnums, int):
        return None
    if len(entry.gradient_trees) != 1 or entry.gradient_trees[0][2] is not None:
        return None
    ((count, build, _),) = entry.gradient_trees
    start = entry.out_treedef.num_leaves
    stop = start + count
    if transform == "grad":
        if all(treedef.kind == "leaf" for treedef in entry.spec.treedefs):  # the gradient of an array
            return itemgetter(start)
        return lambda outputs: build(outputs[start:stop])
    return lambda outputs: (outputs[0], build(outputs[start:stop]))


def guarded_call(
    entry: Specialization,
    args: tuple[Any, ...],
    keywords: tuple[str, ...],
    leaves: list[Any],
    picks: tuple[int, ...] | None,
) -> ArrayCall | None:
    """An ``ArrayCall`` running ``entry``'s kernel for arguments of the classes, shapes and dtypes
    of ``args`` (``MISSED`` for others), or None unless ``args`` are all arrays passed as themselves.

    >>> import numpy as np
    >>> from chainrule.transforms.compiled import jit
    >>> f = jit(lambda x: x * 2)
    >>> _ = f(np.ones(3))  # compiles, and keeps this guard for (ndarray, (3,), float64)
    >>> f(np.ones(3))  # the guard matches: no call_key, the kernel at once
    array([2., 2., 2.])
    """
    if not passed_as_themselves(args, keywords, leaves, picks) or any(type(arg) is not np.ndarray for arg in args):
        return None
    return ArrayCall(_guard(entry.kernel.fn, tuple((arg.shape, arg.dtype) for arg in args)), entry)


def _guard(
    kernel_fn: Callable[..., Any], signature: tuple[tuple[tuple[int, ...], np.dtype], ...]
) -> Callable[..., Any]:
    """``kernel_fn`` for arguments matching ``signature`` ((shape, dtype) per argument), else ``MISSED``."""
    ndarray = np.ndarray
    if len(signature) == 1:  # the common case, unrolled: a loop costs as much as the rest of the guard
        ((shape, dtype),) = signature

        def call_one(*args: Any) -> Any:
            if len(args) == 1:
                (arg,) = args
                if type(arg) is ndarray and arg.dtype is dtype and arg.shape == shape:
                    return kernel_fn(arg)
            return MISSED

        return call_one
    count = len(signature)

    def call(*args: Any) -> Any:
        if len(args) != count:
            return MISSED
        for arg, (shape, dtype) in zip(args, signature):
            if type(arg) is not ndarray or arg.dtype is not dtype or arg.shape != shape:
                return MISSED
        return kernel_fn(*args)

    return call
