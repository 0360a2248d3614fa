"""Forward mode and higher order: jvp, vjp, jacobian, hessian, hvp.

Each is a compiled function of the same kind as ``cr.grad``'s (cached per
signature, with ``.ir``, ``.graph``, ``.source``, ``.cost``) whose pipeline
starts with its own differentiating passes: ``jvp`` runs forward mode
(``chainrule.compiler.forward``) as the stage ``jvp``; ``vjp`` runs reverse
mode seeded by an output cotangent of any shape; ``hvp`` runs forward mode
over reverse mode (stages ``grad`` then ``jvp``), so a Hessian-vector product
costs a few gradients and never builds the Hessian. ``jacobian`` and
``hessian`` take one pass of one of these per basis vector, all in one call
of the kernel vectorized over the seeds (``chainrule.compiler.batch``):
``jacobian`` of an n -> m function takes min(n, m) passes (forward mode when
n <= m), and counts them in ``.passes``.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chainrule.compiler import pipeline
from chainrule.compiler.autodiff import reverse
from chainrule.compiler.batch import vectorize
from chainrule.compiler.forward import forward
from chainrule.compiler.simplify import simplify
from chainrule.compiler.split import split
from chainrule.errors import ArgumentError
from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.frontends.trace import ArgsSpec, describe_args
from chainrule.frontends.tracer import Tracer, innermost_open
from chainrule.ir import Graph, TensorType
from chainrule.transforms.arguments import aux_part, static_positions, value_part
from chainrule.transforms.compiled import Compiled, jit
from chainrule.transforms.options import checked_options
from chainrule.transforms.recent_functions import RecentFunctions
from chainrule.transforms.reuse import FunctionEntry, function_entry
from chainrule.transforms.specialization import Specialization, check_scalar_output, compile_kernel

Argnums = int | Sequence[int]


class Linearized(Compiled):
    """``fn``'s JVP, VJP or Hessian-vector product with respect to ``argnums``, compiled.

    Called as ``(*args, seed)``. For ``"jvp"`` the seed is the tangent of the
    differentiated argument (a tuple of tangents when ``argnums`` is a tuple),
    and the call returns ``(out, tangent_out)``; for ``"hvp"`` it is the vector
    v, laid out the same way, and the call returns H v laid out like the
    gradient; for ``"vjp"`` it is the cotangent of the output (the output's
    structure), and the call returns the gradient layout.

    ``batched=True`` vectorizes it (``chainrule.compiler.batch``): every seed
    leaf has a leading axis of length k, and one call computes the k products,
    returned with that leading axis (a ``"jvp"`` then returns the tangents only).
    ``static_argnums``/``static_argnames`` as for ``cr.grad``; arguments are positional.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        transform: str,
        argnums: Argnums = 0,
        *,
        batched: bool = False,
        optimize: bool = True,
        backend: str = "numpy",
        static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (),
    ):
        if transform not in ("jvp", "vjp", "hvp"):
            raise ValueError(f"unknown linearization {transform!r}")
        self.batched = batched
        super().__init__(
            fn,
            transform,
            argnums,
            optimize=optimize,
            backend=backend,
            static_argnums=static_argnums,
            static_argnames=static_argnames,
        )
        self._cache_options += (batched,)  # a batched pass's kernels are its own
        self.attach(fn)

    def _layout(self, count: int, keywords: tuple[str, ...] = ()) -> tuple[tuple[int, ...], tuple[int, ...]]:
        # The differentiated arguments and the seed (the last argument) are traced; static ones are not.
        if keywords:
            raise ArgumentError(
                f"{self._function_name}'s {self.transform} takes its arguments by position (the "
                f"{_SEED[self.transform]} last); got keyword arguments {', '.join(keywords)}"
            )
        layout = self._layouts.get((count, ()))
        if layout is None:
            differentiated = self._differentiated(count)
            static = self.static.positions(count - 1, ())
            both = set(differentiated) & set(static)
            if both:
                raise ArgumentError(
                    f"argument {min(both)} of {self._function_name} is both differentiated (argnums="
                    f"{self.argnums!r}) and static (static_argnums or static_argnames)"
                )
            layout = self._layouts[count, ()] = (differentiated, static)
        return layout

    def _differentiated(self, count: int) -> tuple[int, ...]:
        arg_count = count - 1
        for argnum in self._argnum_tuple:
            if not -arg_count <= argnum < arg_count:
                raise ArgumentError(
                    f"argnums={self.argnums!r} but {self._function_name}'s {self.transform} was "
                    f"called with {arg_count} arguments (and the {_SEED[self.transform]})"
                )
        return tuple(a % arg_count for a in self._argnum_tuple) + (arg_count,)

    def _compile_now(self, spec: ArgsSpec, leaves: list[Any], differentiated: tuple[int, ...]) -> Specialization:
        argnums = differentiated[:-1]
        leaf_count = sum(t.num_leaves for t in spec.treedefs[:-1])
        arg_spec = ArgsSpec(
            spec.treedefs[:-1], spec.leaves[:leaf_count], spec.paths[:leaf_count], spec.arg_of_leaf[:leaf_count]
        )
        captured: list[Tracer] = []
        traced, out_treedef = self._entry.traced(
            self.fn,
            arg_spec,
            leaves[:leaf_count],
            differentiated=argnums,
            on_reuse=self._stats.reused_trace,
            captured=captured,
        )
        input_of_leaf = {
            leaf: position for position, leaf in enumerate(i for i, s in enumerate(arg_spec.leaves) if s.traced)
        }
        wrt = [
            input_of_leaf[i] for argnum in argnums for i, owner in enumerate(arg_spec.arg_of_leaf) if owner == argnum
        ]
        gradient_treedef = derivative_layout(self.argnums, [spec.treedefs[a] for a in argnums])
        if self.transform == "vjp":
            batch = self._check_seed(spec, traced.outputs, traced, out_treedef, "the output")
        else:
            batch = self._check_seed(
                spec,
                [traced.inputs[i] for i in wrt],
                traced,
                gradient_treedef,
                "the differentiated argument" + ("s" if len(argnums) > 1 else ""),
            )
        transforms, result_treedef = self._transforms(traced, wrt, out_treedef, gradient_treedef)
        if batch is not None:
            seeds = range(len(traced.inputs), len(traced.inputs) + spec.treedefs[-1].num_leaves)
            stage = transforms[-1][0]
            transforms.append((stage, "vectorize", lambda g: vectorize(g, seeds, batch)))
            if self.transform == "jvp":
                result_treedef = out_treedef
        compilation = pipeline.run(traced, None, optimize=self.optimize, transforms=transforms)
        kernel = functools.partial(compile_kernel, compilation.final, f"{traced.name}_{self.transform}", self.backend)
        captured_at = len(traced.inputs) - len(captured)  # the seed's inputs come after the captured values
        return Specialization(compilation, kernel, result_treedef, spec, (), tuple(captured), captured_at)

    def _transforms(
        self, traced: Graph, wrt: list[int], out_treedef: TreeDef, gradient_treedef: TreeDef
    ) -> tuple[list[pipeline.Pass], TreeDef]:
        """The differentiating passes, and the structure of what the kernel returns."""
        first_stage = "jvp" if self.transform == "jvp" else "grad"
        # as for grad: differentiate the stable forms simplify gives (log(sigmoid) -> -softplus ...)
        passes: list[pipeline.Pass] = [(first_stage, "simplify forward", simplify)] if self.optimize else []
        if self.transform == "jvp":
            passes.append(("jvp", "forward", lambda g: forward(g, wrt, keep_primal=not self.batched)))
            return passes, TreeDef("tuple", (), (out_treedef, out_treedef))
        if self.transform == "vjp":
            passes.append(
                ("grad", "reverse", lambda g: _gradients_only(reverse(g, wrt, cotangent_inputs=True), len(wrt)))
            )
            return passes, gradient_treedef
        check_scalar_output(traced)
        gradients = range(1, 1 + len(wrt))  # reverse's outputs are the value, then the gradients
        passes += [
            ("grad", "reverse", lambda g: reverse(g, wrt)),
            ("jvp", "forward over reverse", lambda g: forward(g, wrt, of=gradients, keep_primal=False)),
        ]
        return passes, gradient_treedef

    def _check_seed(
        self, spec: ArgsSpec, node_ids: list[int], traced: Graph, expected: TreeDef, what: str
    ) -> int | None:
        """Check the seed's structure and types; return the batch length (None when not batched)."""
        seed_treedef, seed_leaves = spec.treedefs[-1], spec.leaves[len(spec.leaves) - spec.treedefs[-1].num_leaves :]
        name = _SEED[self.transform]
        if seed_treedef != expected:
            raise ArgumentError(
                f"the {name} passed to {self._function_name}'s {self.transform} has structure "
                f"{seed_treedef}; it must match {what}: {expected}"
            )
        batch = None
        if self.batched:
            first_type = seed_leaves[0].type if seed_leaves else None  # seeds are traced: typed
            batch = first_type.shape[0] if first_type is not None and first_type.ndim else 0
        for node_id, leaf in zip(node_ids, seed_leaves):
            wanted = traced.type(node_id)
            if batch is not None:
                wanted = TensorType((batch,) + wanted.shape, wanted.dtype)
            if leaf.type != wanted:
                raise ArgumentError(
                    f"the {name} for {traced[node_id].name} is {leaf.type}; it must have the "
                    f"type of {what}" + (" with a leading batch axis" if self.batched else "") + f": {wanted}"
                )
        return batch

    def _results(self, entry: Specialization, outputs: Sequence[Any]) -> Any:
        return entry.build_outputs(outputs)


_SEED = {"jvp": "tangent", "hvp": "vector", "vjp": "cotangent"}


def derivative_layout(argnums: Argnums, treedefs: list[TreeDef]) -> TreeDef:
    """Where derivatives with respect to ``argnums`` go: the argument's structure, or a tuple of them."""
    return treedefs[0] if isinstance(argnums, int) else TreeDef("tuple", (), tuple(treedefs))


def _gradients_only(joint: Graph, count: int) -> Graph:
    """``joint`` (reverse mode's graph) returning its last ``count`` outputs, the gradients, only."""
    joint.set_outputs(joint.outputs[-count:], joint.output_names[-count:])
    return joint


# Compiled transformations of the functions cr.jvp and cr.vjp were last given (bounded, see
# recent_functions.py): f -> {(transform, argnums, backend, static): Linearized}.
_LINEARIZED = RecentFunctions()
_FORWARD = RecentFunctions()  # f -> {static: jit(f)}


def _linearized(
    fn: Callable[..., Any], transform: str, argnums: tuple[int, ...], backend: str, static: tuple[int, ...] = ()
) -> Linearized:
    try:
        per_function = _LINEARIZED.of(fn)
    except TypeError:  # fn cannot be hashed: compile it afresh
        return Linearized(fn, transform, argnums, backend=backend, static_argnums=static)
    key = (transform, argnums, backend, static)
    if key not in per_function:
        per_function[key] = Linearized(fn, transform, argnums, backend=backend, static_argnums=static)
    return per_function[key]


def _primal_tuple(primals: Sequence[Any], what: str) -> tuple[Any, ...]:
    if not isinstance(primals, (tuple, list)):
        raise ArgumentError(f"{what} must be a tuple of fn's arguments, got a {type(primals).__name__}")
    return tuple(primals)


# ---- jvp and vjp ---------------------------------------------------------------------------


@checked_options
def jvp(
    fn: Callable[..., Any],
    primals: Sequence[Any],
    tangents: Sequence[Any],
    *,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    backend: str = "numpy",
) -> tuple[Any, Any]:
    """``(fn(*primals), J·tangents)``: the value and the Jacobian-vector product, by forward mode.

    >>> import numpy as np, chainrule as cr
    >>> out, tangent = cr.jvp(np.sin, (np.array([0.0, 1.0]),), (np.array([1.0, 1.0]),))
    >>> tangent  # cos(x)
    array([1.        , 0.54030231])

    ``primals`` and ``tangents`` are tuples with one entry per argument of
    ``fn``, each tangent shaped like its primal (pytrees included). The
    compiled JVP is cached per function and signature. Primals at
    ``static_argnums``/``static_argnames`` are compiled in by value; their
    tangents must be None.
    """
    primals = _primal_tuple(primals, "jvp's primals")
    tangents = _primal_tuple(tangents, "jvp's tangents")
    if len(tangents) != len(primals):
        raise ArgumentError(
            f"jvp got {len(primals)} primals but {len(tangents)} tangents; give one tangent per argument"
        )
    static = static_positions(fn, len(primals), static_argnums, static_argnames)
    if any(tangents[i] is not None for i in static):
        raise ArgumentError(f"jvp's primal {static[0]} is static: its tangent must be None")
    traced = tuple(i for i in range(len(primals)) if i not in static)
    seed = tuple(tangents[i] for i in traced)
    return _linearized(fn, "jvp", traced, backend, static)(*primals, seed)


class _SplitVjp:
    """``cr.vjp`` of one signature: the joint graph (primals and output cotangents in, outputs and
    primal cotangents out) split in two (``chainrule.compiler.split``). The forward kernel runs at
    ``vjp`` time and returns the outputs and the residuals the backward pass reads; the backward
    kernel runs at each ``vjp_fn`` call, on the residuals and the cotangent, and recomputes nothing."""

    def __init__(
        self,
        fn: Callable[..., Any],
        spec: ArgsSpec,
        leaves: list[Any],
        static: tuple[int, ...] = (),
        optimize: bool = True,
        backend: str = "numpy",
    ):
        traced, self.out_treedef = function_entry(fn).traced(fn, spec, leaves, differentiated=range(len(spec.treedefs)))
        self.out_types = [traced.type(o) for o in traced.outputs]
        inputs, outputs = len(traced.inputs), len(traced.outputs)
        wrt = list(range(inputs))  # every leaf of every traced primal: describe_args made them all inputs
        passes: list[pipeline.Pass] = [("grad", "simplify forward", simplify)] if optimize else []
        passes.append(("grad", "reverse", lambda g: reverse(g, wrt, cotangent_inputs=True)))
        self.joint = pipeline.run(traced, None, optimize=optimize, transforms=passes)
        early, late, _ = split(
            self.joint.graphs["simplified"],
            range(inputs, inputs + outputs),
            range(outputs),
            range(outputs, outputs + inputs),
        )
        early.name, late.name = f"{traced.name}_forward", f"{traced.name}_vjp"
        self.forward = pipeline.run(early, None, optimize=optimize)
        self.backward = pipeline.run(late, None, optimize=optimize)
        self.forward_kernel = compile_kernel(self.forward.final, f"{traced.name}_forward", backend)
        self.backward_kernel = compile_kernel(self.backward.final, f"{traced.name}_vjp", backend)
        self.primal_treedefs = spec.treedefs
        self.static = static  # the static primals' positions: their cotangents are None


class VjpFunction:
    """The second result of ``cr.vjp``: an output cotangent -> the cotangents of the primals
    (a tuple, one per primal). It holds the residuals of the forward pass and runs only the
    compiled backward pass; ``.ir()`` and ``.source()`` show it."""

    def __init__(self, compiled: _SplitVjp, residuals: tuple[np.ndarray, ...]):
        self.compiled = compiled
        self.residuals = residuals

    def __call__(self, cotangent: Any) -> tuple[Any, ...]:
        compiled = self.compiled
        leaves, _, treedef = flatten(cotangent)
        if treedef != compiled.out_treedef:
            raise ArgumentError(
                f"the cotangent passed to vjp_fn has structure {treedef}; it must match the "
                f"output's: {compiled.out_treedef}"
            )
        arrays = []
        for leaf, wanted in zip(leaves, compiled.out_types):
            array = np.asarray(leaf)
            if array.shape != wanted.shape or array.dtype.name != wanted.dtype:
                raise ArgumentError(
                    f"the cotangent passed to vjp_fn is {array.dtype.name}{list(array.shape)}; it "
                    f"must have the output's type: {wanted}"
                )
            arrays.append(array)
        gradients = compiled.backward_kernel.fn(*self.residuals, *arrays)
        per_primal: list[Any] = []
        start = 0
        for position, treedef in enumerate(compiled.primal_treedefs):
            if position in compiled.static:
                per_primal.append(None)
                continue
            per_primal.append(unflatten(treedef, list(gradients[start : start + treedef.num_leaves])))
            start += treedef.num_leaves
        return tuple(per_primal)

    def ir(self, stage: str = "scheduled") -> str:
        """The backward pass's IR after ``stage``."""
        return str(self.compiled.backward.graphs[stage])

    def source(self) -> str:
        """The backward pass's generated code."""
        return self.compiled.backward_kernel.source

    def __repr__(self) -> str:
        return f"<chainrule vjp_fn of {self.compiled.joint.graphs['traced'].name!r}>"


# fn's entry (its code and closure values: a lambda made again finds it) -> {(ArgsSpec of the
# primals, backend): _SplitVjp}
_SPLIT_VJPS: weakref.WeakKeyDictionary[FunctionEntry, dict[tuple[ArgsSpec, str], _SplitVjp]] = (
    weakref.WeakKeyDictionary()
)


@checked_options
def vjp(
    fn: Callable[..., Any],
    *primals: Any,
    has_aux: bool = False,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    backend: str = "numpy",
) -> tuple[Any, ...]:
    """``(fn(*primals), vjp_fn)`` where ``vjp_fn(cotangent)`` is the tuple of cotangents uᵀJ of the
    primals, by reverse mode seeded with ``cotangent`` (shaped like the output).

    >>> import numpy as np, chainrule as cr
    >>> out, vjp_fn = cr.vjp(lambda x: x * x, np.array([1.0, 3.0]))
    >>> vjp_fn(np.array([1.0, 10.0]))
    (array([ 2., 60.]),)

    The forward pass runs once, here; ``vjp_fn`` keeps the values the backward
    pass needs and runs only the backward pass, compiled once per signature and
    reused by every call (and every later ``cr.vjp`` of the same function).
    Primals at ``static_argnums``/``static_argnames`` are compiled in by value
    (their cotangents are None). With ``has_aux=True``, ``fn`` returns ``(out,
    aux)`` and the result is ``(out, vjp_fn, aux)``; aux is computed by a second,
    forward-only kernel.
    """
    if not callable(fn):
        raise ArgumentError(f"vjp needs a function, got {type(fn).__name__}")
    if not primals:
        raise ArgumentError("vjp needs at least one primal argument")
    if has_aux:
        out, vjp_fn = vjp(
            value_part(fn), *primals, static_argnums=static_argnums, static_argnames=static_argnames, backend=backend
        )
        aux = _forward_of(aux_part(fn), static_positions(fn, len(primals), static_argnums, static_argnames))
        if not isinstance(vjp_fn, VjpFunction):  # inside a trace it traces fn's part later: keep fn
            vjp_fn = functools.partial(_keeping, vjp_fn, fn)
        return out, vjp_fn, aux(*primals)
    static = static_positions(fn, len(primals), static_argnums, static_argnames)
    positions = tuple(i for i in range(len(primals)) if i not in static)
    spec, leaves = describe_args(fn, primals, positions, static)
    if innermost_open() is not None:  # inside a trace: the joint graph is inlined if fn reads traced values
        linearized = _linearized(fn, "vjp", positions, backend, static)
        forward = _forward_of(fn, static)
        return forward(*primals), lambda cotangent: _with_static_nones(linearized(*primals, cotangent), static)
    per_function = _SPLIT_VJPS.setdefault(function_entry(fn), {})
    compiled = per_function.get((spec, backend))
    if compiled is None:
        compiled = per_function[spec, backend] = _SplitVjp(fn, spec, leaves, static, backend=backend)
    traced_leaves = [leaf for leaf, leaf_spec in zip(leaves, spec.leaves) if leaf_spec.traced]
    results = compiled.forward_kernel.fn(*[np.asarray(leaf) for leaf in traced_leaves])
    outputs = len(compiled.out_types)
    return unflatten(compiled.out_treedef, list(results[:outputs])), VjpFunction(compiled, tuple(results[outputs:]))


def _keeping(vjp_fn: Callable[[Any], Any], fn: Callable[..., Any], cotangent: Any) -> Any:
    """``vjp_fn(cotangent)``; bound with ``fn``, whose parts hold it weakly, to keep it alive."""
    return vjp_fn(cotangent)


def _with_static_nones(cotangents: Any, static: tuple[int, ...]) -> tuple[Any, ...]:
    """The cotangents of the traced primals (one, or a tuple), with None at the static positions."""
    if not static:
        return cotangents
    found = iter(cotangents)
    count = len(cotangents) + len(static)
    return tuple(None if i in static else next(found) for i in range(count))


def _forward_of(fn: Callable[..., Any], static: tuple[int, ...] = ()) -> Compiled:
    """``jit(fn, static_argnums=static)``, compiled once per function."""
    try:
        per_function = _FORWARD.of(fn)
    except TypeError:  # fn cannot be hashed
        return jit(fn, static_argnums=static)
    if static not in per_function:
        per_function[static] = jit(fn, static_argnums=static)
    return per_function[static]


@checked_options
def hvp(
    fn: Callable[..., Any],
    argnums: Argnums = 0,
    *,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    optimize: bool = True,
    backend: str = "numpy",
) -> Linearized:
    """The Hessian-vector product of a scalar function, compiled: ``hvp(fn)(*args, v)`` is H v.

    >>> import numpy as np, chainrule as cr
    >>> cr.hvp(lambda x: np.sum(x ** 3))(np.array([1.0, 2.0]), np.array([1.0, 1.0]))  # 6 x v
    array([ 6., 12.])

    Forward mode over reverse mode: the cost of a few gradients and memory
    linear in the number of parameters; the Hessian is never built. ``v`` is
    laid out like the gradient (a tuple of vectors when ``argnums`` is a tuple).
    ``static_argnums``/``static_argnames`` as for ``cr.grad``.
    """
    return Linearized(
        fn,
        "hvp",
        argnums,
        optimize=optimize,
        backend=backend,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
    )


__all__ = ["Linearized", "VjpFunction", "hvp", "jvp", "vjp"]
