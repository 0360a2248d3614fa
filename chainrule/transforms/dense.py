"""Jacobians and Hessians: a derivative matrix built from one pass per basis vector.

``jacobian`` of an n -> m function takes n JVPs (``mode="fwd"``), m VJPs
(``"rev"``) or the fewer (``"auto"``); ``hessian`` takes n Hessian-vector
products (forward over reverse). The passes run as one call of the kernel
vectorized over the seeds (``chainrule.compiler.batch``) where every op has a
batching rule, else one call each. ``.passes`` and ``.kernel_calls`` count them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from chainrule.compiler.cost import CostReport
from chainrule.errors import ArgumentError, UnsupportedError
from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.frontends.trace import ArgsSpec, StaticArguments, describe_args
from chainrule.frontends.tracer import innermost_open
from chainrule.ir import Graph, TensorType
from chainrule.transforms.arguments import aux_part, value_part
from chainrule.transforms.compiled import argnum_tuple, jit
from chainrule.transforms.higher_order import Argnums, Linearized, derivative_layout
from chainrule.transforms.options import checked_options
from chainrule.transforms.portable import portable_reduce
from chainrule.transforms.reuse import function_entry


class _DenseDerivative(ABC):
    """A derivative matrix built from one pass per basis vector, returned JAX's way: the output's
    structure with, at each output leaf, the differentiated argument's structure, whose leaves
    have shape ``out.shape + in.shape``.

    With ``vectorize`` (the default) the passes run as one vectorized program, a single kernel
    call (``chainrule.compiler.batch``); without it, or for a graph with an op no batching rule
    covers, one call each. ``passes`` and ``kernel_calls`` describe the last call.
    """

    def __init__(self, fn: Callable[..., Any], argnums: Argnums, vectorize: bool, static: StaticArguments):
        if not callable(fn):
            raise ArgumentError(f"{type(self).__name__.lower()} needs a function, got {type(fn).__name__}")
        self.fn = fn
        self.argnums = argnums
        self.vectorize = vectorize
        self.static = static
        self._argnum_tuple = argnum_tuple(argnums)
        self.passes: int | None = None
        self.kernel_calls: int | None = None
        self.mode_used: str | None = None
        self._not_vectorizable: set[ArgsSpec] = set()  # specs whose graphs have an op without a batching rule

    def attach(self, fn: Callable[..., Any]) -> None:
        """Make ``fn`` the differentiated function (on unpickling: ``chainrule.transforms.portable``)."""
        self.fn = fn

    __reduce__ = portable_reduce  # its passes (Compileds) pickle themselves

    def _describe(self, args: tuple[Any, ...]) -> tuple[ArgsSpec, list[Any], list[TensorType], list[TreeDef]]:
        """(spec, leaves, their differentiated leaves' types, the differentiated arguments' structures)."""
        count = len(args)
        for argnum in self._argnum_tuple:
            if not -count <= argnum < count:
                raise ArgumentError(f"argnums={self.argnums!r} but the function was called with {count} arguments")
        positions = tuple(a % count for a in self._argnum_tuple)
        static = self.static.positions(count, ())
        if set(positions) & set(static):
            raise ArgumentError(f"argnums={self.argnums!r} names a static argument, which has no derivative")
        spec, leaves = describe_args(self.fn, args, positions, static)
        # differentiated leaves are traced, so typed
        in_types = [
            leaf_type
            for argnum in positions
            for i, owner in enumerate(spec.arg_of_leaf)
            if owner == argnum and (leaf_type := spec.leaves[i].type) is not None
        ]
        return spec, leaves, in_types, [spec.treedefs[a] for a in positions]

    def _seed_layout(self, in_treedefs: list[TreeDef]) -> TreeDef:
        """The structure of a seed of the differentiated arguments (see ``derivative_layout``)."""
        return derivative_layout(self.argnums, in_treedefs)

    def _rows(
        self,
        spec: ArgsSpec,
        one: Linearized,
        batched: Linearized,
        args: tuple[Any, ...],
        seed_types: list[TensorType],
        seed_treedef: TreeDef,
        pick: Callable[[Any], Any] = lambda result: result,
    ) -> np.ndarray:
        """One row per basis vector e_k of the seed space: ``pick(kernel(*args, e_k))`` flattened."""
        count = sum(t.size for t in seed_types)
        self.passes = count
        traced = innermost_open() is not None  # inside a trace: the passes' results are traced
        if self.vectorize and spec not in self._not_vectorizable:
            identity, start = np.eye(count), 0
            seeds: list[np.ndarray] = []
            for t in seed_types:
                seeds.append(identity[:, start : start + t.size].reshape((count,) + t.shape).astype(t.dtype))
                start += t.size
            try:
                result = batched(*args, unflatten(seed_treedef, seeds))
            except UnsupportedError:
                if traced:
                    raise
                self._not_vectorizable.add(spec)
            else:
                self.kernel_calls = 1
                leaves = flatten(result)[0]
                return np.concatenate([np.reshape(leaf, (count, -1)) for leaf in leaves], axis=1)
        if traced:  # then the passes must be one program
            raise UnsupportedError(
                f"{type(self).__name__.lower()} with vectorize=False cannot run inside a traced function"
            )
        rows = np.zeros((count, 0))
        for row, seed in enumerate(_basis(seed_types)):
            flat = _flat(pick(one(*args, unflatten(seed_treedef, seed))))
            if row == 0:
                rows = np.zeros((count, flat.size))
            rows[row] = flat
        self.kernel_calls = count
        return rows

    def _assemble(
        self,
        matrix: np.ndarray,
        out_types: list[TensorType],
        out_treedef: TreeDef,
        in_types: list[TensorType],
        in_treedefs: list[TreeDef],
    ) -> Any:
        """The derivative matrix cut into blocks, laid out as the output's structure of the arguments'."""
        column_starts = np.cumsum([0] + [t.size for t in in_types])
        per_output: list[Any] = []
        row = 0
        for out_type in out_types:
            blocks = [
                matrix[row : row + out_type.size, start : start + in_type.size]
                .reshape(out_type.shape + in_type.shape)
                .astype(np.result_type(out_type.dtype, in_type.dtype))
                for in_type, start in zip(in_types, column_starts)
            ]
            row += out_type.size
            grouped: list[Any] = []
            start = 0
            for treedef in in_treedefs:
                grouped.append(unflatten(treedef, blocks[start : start + treedef.num_leaves]))
                start += treedef.num_leaves
            per_output.append(grouped[0] if isinstance(self.argnums, int) else tuple(grouped))
        return unflatten(out_treedef, per_output)

    @abstractmethod
    def _one_pass(self, args: tuple[Any, ...]) -> tuple[Linearized, tuple[Any, ...]]:
        """The kernel one (unvectorized) pass runs, and its arguments: ``args`` and a basis seed."""

    # ---- looking inside: the kernel a pass runs ---------------------------------------------

    def graph(self, *args: Any, stage: str = "scheduled") -> Graph:
        """The graph one (unvectorized) pass runs, after ``stage``."""
        kernel, kernel_args = self._one_pass(args)
        return kernel.graph(*kernel_args, stage=stage)

    def ir(self, *args: Any, stage: str = "scheduled") -> str:
        """The IR text of one (unvectorized) pass, after ``stage``."""
        return str(self.graph(*args, stage=stage))

    def source(self, *args: Any) -> str:
        """The generated code of one (unvectorized) pass."""
        kernel, kernel_args = self._one_pass(args)
        return kernel.source(*kernel_args)

    def cost(self, *args: Any) -> CostReport:
        """FLOPs and bytes of one (unvectorized) pass."""
        kernel, kernel_args = self._one_pass(args)
        return kernel.cost(*kernel_args)


def _basis(types: list[TensorType]) -> Iterator[list[np.ndarray]]:
    """Zero arrays of ``types`` and, one at a time, each element set to 1: yields the arrays
    (the same ones each time: read them before the next step)."""
    arrays = [np.zeros(t.shape, t.dtype) for t in types]
    for array in arrays:
        flat = array.reshape(-1)
        for element in range(flat.size):
            flat[element] = 1
            yield arrays
            flat[element] = 0


def _flat(tree: Any) -> np.ndarray:
    """The leaves of ``tree`` as one flat float64 vector."""
    leaves = flatten(tree)[0]
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in leaves]) if leaves else np.zeros(0)


class Jacobian(_DenseDerivative):
    """``cr.jacobian``'s compiled function; ``passes``, ``kernel_calls`` and ``mode_used`` describe
    its last call."""

    def __init__(
        self,
        fn: Callable[..., Any],
        argnums: Argnums = 0,
        mode: str = "auto",
        vectorize: bool = True,
        backend: str = "numpy",
        static: StaticArguments | None = None,
    ):
        static = static if static is not None else StaticArguments()
        super().__init__(fn, argnums, vectorize, static)
        if mode not in ("auto", "fwd", "rev"):
            raise ArgumentError(f"jacobian's mode is 'fwd', 'rev' or 'auto', got {mode!r}")
        self.mode = mode
        options: dict[str, Any] = {
            "backend": backend,
            "static_argnums": static.numbers,
            "static_argnames": tuple(sorted(static.names)),
        }
        self._jvp = Linearized(fn, "jvp", argnums, **options)
        self._vjp = Linearized(fn, "vjp", argnums, **options)
        self._batched_jvp = Linearized(fn, "jvp", argnums, batched=True, **options)
        self._batched_vjp = Linearized(fn, "vjp", argnums, batched=True, **options)
        self._outputs: dict[ArgsSpec, tuple[list[TensorType], TreeDef]] = {}  # output types and structure

    def attach(self, fn: Callable[..., Any]) -> None:
        super().attach(fn)
        self._outputs = {}

    def __repr__(self) -> str:
        return f"<chainrule jacobian of {getattr(self.fn, '__name__', self.fn)!r} (mode={self.mode})>"

    def _plan(
        self, args: tuple[Any, ...]
    ) -> tuple[ArgsSpec, str, list[TensorType], list[TreeDef], list[TensorType], TreeDef]:
        """(spec, mode, argument types and structures, output types and structure) for ``args``."""
        spec, leaves, in_types, in_treedefs = self._describe(args)
        found = self._outputs.get(spec)
        if found is None:
            # the forward graph every transform of fn shares: cr.grad(f)'s, if it ran first
            graph, out_treedef = function_entry(self.fn).traced(
                self.fn, spec, leaves, differentiated=self._argnum_tuple, captured=[]
            )
            found = self._outputs[spec] = ([graph.type(o) for o in graph.outputs], out_treedef)
        out_types, out_treedef = found
        n, m = sum(t.size for t in in_types), sum(t.size for t in out_types)
        mode = self.mode if self.mode != "auto" else ("fwd" if n <= m else "rev")
        return spec, mode, in_types, in_treedefs, out_types, out_treedef

    def __call__(self, *args: Any) -> Any:
        spec, mode, in_types, in_treedefs, out_types, out_treedef = self._plan(args)
        if mode == "fwd":  # row k of this is column k of the Jacobian
            matrix = self._rows(
                spec,
                self._jvp,
                self._batched_jvp,
                args,
                in_types,
                self._seed_layout(in_treedefs),
                pick=lambda result: result[1],
            ).T
        else:
            matrix = self._rows(spec, self._vjp, self._batched_vjp, args, out_types, out_treedef)
        self.mode_used = mode
        return self._assemble(matrix, out_types, out_treedef, in_types, in_treedefs)

    def _one_pass(self, args: tuple[Any, ...]) -> tuple[Linearized, tuple[Any, ...]]:
        _, mode, in_types, in_treedefs, out_types, out_treedef = self._plan(args)
        if mode == "fwd":
            return self._jvp, args + (unflatten(self._seed_layout(in_treedefs), next(_basis(in_types))),)
        return self._vjp, args + (unflatten(out_treedef, next(_basis(out_types))),)


class Hessian(_DenseDerivative):
    """``cr.hessian``'s compiled function: one Hessian-vector product (forward over reverse) per
    column; ``passes`` counts them, ``kernel_calls`` the calls they took."""

    def __init__(
        self,
        fn: Callable[..., Any],
        argnums: Argnums = 0,
        vectorize: bool = True,
        backend: str = "numpy",
        static: StaticArguments | None = None,
    ):
        static = static if static is not None else StaticArguments()
        super().__init__(fn, argnums, vectorize, static)
        options: dict[str, Any] = {
            "backend": backend,
            "static_argnums": static.numbers,
            "static_argnames": tuple(sorted(static.names)),
        }
        self._hvp = Linearized(fn, "hvp", argnums, **options)
        self._batched_hvp = Linearized(fn, "hvp", argnums, batched=True, **options)
        self.mode_used = "fwd-over-rev"

    def __repr__(self) -> str:
        return f"<chainrule hessian of {getattr(self.fn, '__name__', self.fn)!r}>"

    def __call__(self, *args: Any) -> Any:
        spec, _, in_types, in_treedefs = self._describe(args)
        layout = self._seed_layout(in_treedefs)
        matrix = self._rows(spec, self._hvp, self._batched_hvp, args, in_types, layout).T  # rows are H e_k
        return self._assemble(matrix, in_types, layout, in_types, in_treedefs)

    def _one_pass(self, args: tuple[Any, ...]) -> tuple[Linearized, tuple[Any, ...]]:
        _, _, in_types, in_treedefs = self._describe(args)
        return self._hvp, args + (unflatten(self._seed_layout(in_treedefs), next(_basis(in_types))),)


@checked_options
def jacobian(
    fn: Callable[..., Any],
    argnums: Argnums = 0,
    mode: str = "auto",
    *,
    has_aux: bool = False,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    vectorize: bool = True,
    backend: str = "numpy",
) -> Callable[..., Any]:
    """The Jacobian of ``fn`` with respect to ``argnums``, compiled.

    >>> import numpy as np, chainrule as cr
    >>> J = cr.jacobian(lambda x: x[:2] * x[1:])
    >>> J(np.array([1.0, 2.0, 3.0]))
    array([[2., 1., 0.],
           [0., 3., 2.]])

    ``mode="fwd"`` takes one JVP per input element, ``"rev"`` one VJP per
    output element, ``"auto"`` the fewer: min(n, m) passes for an n -> m
    function (``J.passes`` and ``J.mode_used`` tell after a call). The passes
    run as one vectorized program (``J.kernel_calls == 1``), or with
    ``vectorize=False`` one call each, which needs less memory. The result
    has the output's structure with, at each output leaf, the argument's
    structure; its arrays have shape ``out.shape + in.shape``.
    ``static_argnums``/``static_argnames`` as for ``cr.grad``. With
    ``has_aux=True``, ``fn`` returns ``(out, aux)`` and the call returns
    ``(jacobian, aux)``; aux comes from a forward-only kernel of its own.
    """
    static = StaticArguments.of(fn, static_argnums, static_argnames)
    if has_aux:
        return WithAux(fn, Jacobian(value_part(fn), argnums, mode, vectorize, backend, static), static)
    return Jacobian(fn, argnums, mode, vectorize, backend, static)


class WithAux:
    """A derivative of ``fn``'s value, called together with ``fn``'s aux: ``(derivative, aux)``.
    Attributes (``passes``, ``ir``, ``source``) are the derivative's."""

    def __init__(self, fn: Callable[..., Any], derivative: Jacobian, static: StaticArguments):
        self.fn = fn  # (its parts hold it weakly)
        self.derivative = derivative
        self.aux = jit(aux_part(fn), static_argnums=static.numbers, static_argnames=tuple(sorted(static.names)))

    def __call__(self, *args: Any) -> tuple[Any, Any]:
        return self.derivative(*args), self.aux(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.derivative, name)


@checked_options
def hessian(
    fn: Callable[..., Any],
    argnums: Argnums = 0,
    *,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    vectorize: bool = True,
    backend: str = "numpy",
) -> Hessian:
    """The Hessian of a scalar function, compiled: forward mode over reverse mode, one
    Hessian-vector product per column (``H.passes`` counts them), all in one vectorized
    program unless ``vectorize=False``. ``static_argnums``/``static_argnames`` as for ``cr.grad``.

    >>> import numpy as np, chainrule as cr
    >>> cr.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 3.0]))
    array([[6., 2.],
           [2., 0.]])
    """
    return Hessian(fn, argnums, vectorize, backend, StaticArguments.of(fn, static_argnums, static_argnames))


__all__ = ["Hessian", "Jacobian", "WithAux", "hessian", "jacobian"]
