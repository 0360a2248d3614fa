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

import weakref
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from chainrule.api import Compiled, _check_scalar_output, _Specialization, jit
from chainrule.backends.numpy_backend import compile_graph
from chainrule.compiler import pipeline
from chainrule.compiler.autodiff import reverse
from chainrule.compiler.batch import vectorize
from chainrule.compiler.forward import forward
from chainrule.compiler.simplify import simplify
from chainrule.errors import ArgumentError, UnsupportedError
from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.frontends.trace import ArgsSpec, describe_args, trace_graph
from chainrule.frontends.tracer import Tracer
from chainrule.ir import Graph, TensorType

Argnums = Union[int, Sequence[int]]


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
    """

    def __init__(self, fn: Callable, transform: str, argnums: Argnums = 0, *, batched: bool = False,
                 optimize: bool = True):
        if transform not in ("jvp", "vjp", "hvp"):
            raise ValueError(f"unknown linearization {transform!r}")
        super().__init__(fn, transform, argnums, optimize=optimize)
        self.batched = batched

    def _differentiated(self, count: int) -> tuple:
        # The differentiated arguments and the seed (the last argument) are traced, Python floats included.
        positions = self._positions.get(count)
        if positions is None:
            arg_count = count - 1
            for argnum in self._argnum_tuple:
                if not -arg_count <= argnum < arg_count:
                    raise ArgumentError(f"argnums={self.argnums!r} but {self.__name__}'s {self.transform} was "
                                        f"called with {arg_count} arguments (and the {_SEED[self.transform]})")
            positions = tuple(a % arg_count for a in self._argnum_tuple) + (arg_count,)
            self._positions[count] = positions
        return positions

    def _compile_now(self, spec: ArgsSpec, leaves: list, differentiated: tuple) -> _Specialization:
        argnums = differentiated[:-1]
        leaf_count = sum(t.num_leaves for t in spec.treedefs[:-1])
        arg_spec = ArgsSpec(spec.treedefs[:-1], spec.leaves[:leaf_count], spec.paths[:leaf_count],
                            spec.arg_of_leaf[:leaf_count])
        traced, out_treedef = trace_graph(self.fn, arg_spec, leaves[:leaf_count])
        input_of_leaf = {leaf: position for position, leaf in
                         enumerate(i for i, s in enumerate(arg_spec.leaves) if s.traced)}
        wrt = [input_of_leaf[i] for argnum in argnums
               for i, owner in enumerate(arg_spec.arg_of_leaf) if owner == argnum]
        gradient_treedef = _layout(self.argnums, [spec.treedefs[a] for a in argnums])
        if self.transform == "vjp":
            batch = self._check_seed(spec, traced.outputs, traced, out_treedef, "the output")
        else:
            batch = self._check_seed(spec, [traced.inputs[i] for i in wrt], traced, gradient_treedef,
                                     "the differentiated argument" + ("s" if len(argnums) > 1 else ""))
        transforms, result_treedef = self._transforms(traced, wrt, out_treedef, gradient_treedef)
        if batch is not None:
            seeds = range(len(traced.inputs), len(traced.inputs) + spec.treedefs[-1].num_leaves)
            stage = transforms[-1][0]
            transforms.append((stage, "vectorize", lambda g: vectorize(g, seeds, batch)))
            if self.transform == "jvp":
                result_treedef = out_treedef
        compilation = pipeline.run(traced, None, optimize=self.optimize, transforms=transforms)
        kernel = compile_graph(compilation.final, f"{traced.name}_{self.transform}")
        return _Specialization(compilation, kernel, result_treedef, spec, ())

    def _transforms(self, traced: Graph, wrt: list, out_treedef: TreeDef, gradient_treedef: TreeDef):
        """The differentiating passes, and the structure of what the kernel returns."""
        first_stage = "jvp" if self.transform == "jvp" else "grad"
        # as for grad: differentiate the stable forms simplify gives (log(sigmoid) -> -softplus ...)
        passes = [(first_stage, "simplify forward", simplify)] if self.optimize else []
        if self.transform == "jvp":
            passes.append(("jvp", "forward", lambda g: forward(g, wrt, keep_primal=not self.batched)))
            return passes, TreeDef("tuple", (), (out_treedef, out_treedef))
        if self.transform == "vjp":
            passes.append(("grad", "reverse",
                           lambda g: _gradients_only(reverse(g, wrt, cotangent_inputs=True), len(wrt))))
            return passes, gradient_treedef
        _check_scalar_output(traced)
        gradients = range(1, 1 + len(wrt))  # reverse's outputs are the value, then the gradients
        passes += [("grad", "reverse", lambda g: reverse(g, wrt)),
                   ("jvp", "forward over reverse", lambda g: forward(g, wrt, of=gradients, keep_primal=False))]
        return passes, gradient_treedef

    def _check_seed(self, spec: ArgsSpec, node_ids: list, traced: Graph, expected: TreeDef,
                    what: str) -> Optional[int]:
        """Check the seed's structure and types; return the batch length (None when not batched)."""
        seed_treedef, seed_leaves = spec.treedefs[-1], spec.leaves[len(spec.leaves) - spec.treedefs[-1].num_leaves:]
        name = _SEED[self.transform]
        if seed_treedef != expected:
            raise ArgumentError(f"the {name} passed to {self.__name__}'s {self.transform} has structure "
                                f"{seed_treedef}; it must match {what}: {expected}")
        batch = None
        if self.batched:
            batch = seed_leaves[0].type.shape[0] if seed_leaves and seed_leaves[0].type.ndim else 0
        for node_id, leaf in zip(node_ids, seed_leaves):
            wanted = traced.type(node_id)
            if batch is not None:
                wanted = TensorType((batch,) + wanted.shape, wanted.dtype)
            if leaf.type != wanted:
                raise ArgumentError(f"the {name} for {traced[node_id].name} is {leaf.type}; it must have the "
                                    f"type of {what}" + (" with a leading batch axis" if self.batched else "")
                                    + f": {wanted}")
        return batch

    def _results(self, entry: _Specialization, outputs):
        return entry.build_outputs(outputs)


_SEED = {"jvp": "tangent", "hvp": "vector", "vjp": "cotangent"}


def _layout(argnums: Argnums, treedefs: list) -> TreeDef:
    """Where derivatives with respect to ``argnums`` go: the argument's structure, or a tuple of them."""
    return treedefs[0] if isinstance(argnums, int) else TreeDef("tuple", (), tuple(treedefs))


def _gradients_only(joint: Graph, count: int) -> Graph:
    joint.set_outputs(joint.outputs[-count:], joint.output_names[-count:])
    return joint


# Compiled transformations of a function, so that calling cr.jvp(f, ...) or cr.vjp(f, ...) again
# with the same f compiles nothing new: f -> {(transform, argnums): Linearized}.
_LINEARIZED: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def _linearized(fn: Callable, transform: str, argnums: tuple) -> Linearized:
    try:
        per_function = _LINEARIZED.setdefault(fn, {})
    except TypeError:  # fn cannot be weakly referenced: compile it afresh
        return Linearized(fn, transform, argnums)
    key = (transform, argnums)
    if key not in per_function:
        per_function[key] = Linearized(fn, transform, argnums)
    return per_function[key]


def _primal_tuple(primals, what: str) -> tuple:
    if not isinstance(primals, (tuple, list)):
        raise ArgumentError(f"{what} must be a tuple of fn's arguments, got a {type(primals).__name__}")
    return tuple(primals)


# ---- jvp and vjp ---------------------------------------------------------------------------


def jvp(fn: Callable, primals: Sequence, tangents: Sequence) -> tuple[Any, Any]:
    """``(fn(*primals), J·tangents)``: the value and the Jacobian-vector product, by forward mode.

    >>> import numpy as np, chainrule as cr
    >>> out, tangent = cr.jvp(np.sin, (np.array([0.0, 1.0]),), (np.array([1.0, 1.0]),))
    >>> tangent  # cos(x)
    array([1.        , 0.54030231])

    ``primals`` and ``tangents`` are tuples with one entry per argument of
    ``fn``, each tangent shaped like its primal (pytrees included). The
    compiled JVP is cached per function and signature.
    """
    primals = _primal_tuple(primals, "jvp's primals")
    tangents = _primal_tuple(tangents, "jvp's tangents")
    if len(tangents) != len(primals):
        raise ArgumentError(f"jvp got {len(primals)} primals but {len(tangents)} tangents; give one tangent "
                            "per argument")
    return _linearized(fn, "jvp", tuple(range(len(primals))))(*primals, tangents)


class VjpFunction:
    """The second result of ``cr.vjp``: an output cotangent -> the cotangents of the primals
    (a tuple, one per primal). Compiled on the first call, reused for every later one."""

    def __init__(self, compiled: Linearized, primals: tuple):
        self.compiled = compiled
        self.primals = primals

    def __call__(self, cotangent):
        return self.compiled(*self.primals, cotangent)

    def ir(self, cotangent, stage: str = "scheduled") -> str:
        return self.compiled.ir(*self.primals, cotangent, stage=stage)

    def source(self, cotangent) -> str:
        return self.compiled.source(*self.primals, cotangent)

    def __repr__(self) -> str:
        return f"<chainrule vjp_fn of {getattr(self.compiled.fn, '__name__', self.compiled.fn)!r}>"


def vjp(fn: Callable, *primals) -> tuple[Any, VjpFunction]:
    """``(fn(*primals), vjp_fn)`` where ``vjp_fn(cotangent)`` is the tuple of cotangents uᵀJ of the
    primals, by reverse mode seeded with ``cotangent`` (shaped like the output).

    >>> import numpy as np, chainrule as cr
    >>> out, vjp_fn = cr.vjp(lambda x: x * x, np.array([1.0, 3.0]))
    >>> vjp_fn(np.array([1.0, 10.0]))
    (array([ 2., 60.]),)
    """
    if not primals:
        raise ArgumentError("vjp needs at least one primal argument")
    out = _forward_of(fn)(*primals)
    return out, VjpFunction(_linearized(fn, "vjp", tuple(range(len(primals)))), primals)


_FORWARD: "weakref.WeakKeyDictionary[Callable, Compiled]" = weakref.WeakKeyDictionary()


def _forward_of(fn: Callable) -> Compiled:
    try:
        compiled = _FORWARD.get(fn)
    except TypeError:  # fn cannot be weakly referenced
        return jit(fn)
    if compiled is None:
        compiled = _FORWARD[fn] = jit(fn)
    return compiled


def hvp(fn: Callable, argnums: Argnums = 0, *, optimize: bool = True) -> Linearized:
    """The Hessian-vector product of a scalar function, compiled: ``hvp(fn)(*args, v)`` is H v.

    >>> import numpy as np, chainrule as cr
    >>> cr.hvp(lambda x: np.sum(x ** 3))(np.array([1.0, 2.0]), np.array([1.0, 1.0]))  # 6 x v
    array([ 6., 12.])

    Forward mode over reverse mode: the cost of a few gradients and memory
    linear in the number of parameters; the Hessian is never built. ``v`` is
    laid out like the gradient (a tuple of vectors when ``argnums`` is a tuple).
    """
    return Linearized(fn, "hvp", argnums, optimize=optimize)


# ---- dense derivatives: one pass per basis vector ------------------------------------------------


class _DenseDerivative:
    """A derivative matrix built from one pass per basis vector, returned JAX's way: the output's
    structure with, at each output leaf, the differentiated argument's structure, whose leaves
    have shape ``out.shape + in.shape``.

    With ``vectorize`` (the default) the passes run as one vectorized program, a single kernel
    call (``chainrule.compiler.batch``); without it, or for a graph with an op no batching rule
    covers, one call each. ``passes`` and ``kernel_calls`` describe the last call.
    """

    def __init__(self, fn: Callable, argnums: Argnums, vectorize: bool):
        if not callable(fn):
            raise ArgumentError(f"{type(self).__name__.lower()} needs a function, got {type(fn).__name__}")
        self.fn = fn
        self.argnums = argnums
        self.vectorize = vectorize
        self._argnum_tuple = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        if not all(isinstance(a, int) for a in self._argnum_tuple):
            raise ArgumentError(f"argnums must be an int or a tuple of ints, got {argnums!r}")
        self.passes = None
        self.kernel_calls = None
        self.mode_used = None
        self._not_vectorizable: set = set()  # specs whose graphs have an op without a batching rule

    def _describe(self, args: tuple):
        """(spec, leaves, their differentiated leaves' types, the differentiated arguments' structures)."""
        count = len(args)
        for argnum in self._argnum_tuple:
            if not -count <= argnum < count:
                raise ArgumentError(f"argnums={self.argnums!r} but the function was called with {count} arguments")
        positions = tuple(a % count for a in self._argnum_tuple)
        spec, leaves = describe_args(self.fn, args, positions)
        if any(isinstance(leaf, Tracer) for leaf in leaves):
            raise UnsupportedError(f"{type(self).__name__.lower()} cannot run inside a traced function; "
                                   "use cr.jvp, cr.vjp or cr.hvp there (they compose)")
        in_types = [spec.leaves[i].type for argnum in positions
                    for i, owner in enumerate(spec.arg_of_leaf) if owner == argnum]
        return spec, leaves, in_types, [spec.treedefs[a] for a in positions]

    def _seed_layout(self, in_treedefs: list) -> TreeDef:
        return _layout(self.argnums, in_treedefs)

    def _rows(self, spec: ArgsSpec, one: Linearized, batched: Linearized, args: tuple, seed_types: list,
              seed_treedef: TreeDef, pick: Callable = lambda result: result) -> np.ndarray:
        """One row per basis vector e_k of the seed space: ``pick(kernel(*args, e_k))`` flattened."""
        count = sum(t.size for t in seed_types)
        self.passes = count
        if self.vectorize and spec not in self._not_vectorizable:
            identity, seeds, start = np.eye(count), [], 0
            for t in seed_types:
                seeds.append(identity[:, start:start + t.size].reshape((count,) + t.shape).astype(t.dtype))
                start += t.size
            try:
                result = batched(*args, unflatten(seed_treedef, seeds))
            except UnsupportedError:
                self._not_vectorizable.add(spec)
            else:
                self.kernel_calls = 1
                leaves = flatten(result)[0]
                return np.concatenate([np.reshape(leaf, (count, -1)) for leaf in leaves], axis=1)
        rows = np.zeros((count, 0))
        for row, seed in enumerate(_basis(seed_types)):
            flat = _flat(pick(one(*args, unflatten(seed_treedef, seed))))
            if row == 0:
                rows = np.zeros((count, flat.size))
            rows[row] = flat
        self.kernel_calls = count
        return rows

    def _assemble(self, matrix: np.ndarray, out_types: list, out_treedef: TreeDef, in_types: list,
                  in_treedefs: list):
        column_starts = np.cumsum([0] + [t.size for t in in_types])
        per_output, row = [], 0
        for out_type in out_types:
            blocks = [matrix[row:row + out_type.size, start:start + in_type.size]
                      .reshape(out_type.shape + in_type.shape)
                      .astype(np.result_type(out_type.dtype, in_type.dtype))
                      for in_type, start in zip(in_types, column_starts)]
            row += out_type.size
            grouped, start = [], 0
            for treedef in in_treedefs:
                grouped.append(unflatten(treedef, blocks[start:start + treedef.num_leaves]))
                start += treedef.num_leaves
            per_output.append(grouped[0] if isinstance(self.argnums, int) else tuple(grouped))
        return unflatten(out_treedef, per_output)

    # ---- looking inside: the kernel a pass runs ---------------------------------------------

    def graph(self, *args, stage: str = "scheduled") -> Graph:
        """The graph one (unvectorized) pass runs, after ``stage``."""
        kernel, kernel_args = self._one_pass(args)
        return kernel.graph(*kernel_args, stage=stage)

    def ir(self, *args, stage: str = "scheduled") -> str:
        return str(self.graph(*args, stage=stage))

    def source(self, *args) -> str:
        kernel, kernel_args = self._one_pass(args)
        return kernel.source(*kernel_args)


def _basis(types: list):
    """Zero arrays of ``types`` and, one at a time, each element set to 1: yields the arrays
    (the same ones each time: read them before the next step)."""
    arrays = [np.zeros(t.shape, t.dtype) for t in types]
    for array in arrays:
        flat = array.reshape(-1)
        for element in range(flat.size):
            flat[element] = 1
            yield arrays
            flat[element] = 0


def _flat(tree) -> np.ndarray:
    leaves = flatten(tree)[0]
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in leaves]) if leaves else np.zeros(0)


class Jacobian(_DenseDerivative):
    """``cr.jacobian``'s compiled function; ``passes``, ``kernel_calls`` and ``mode_used`` describe
    its last call."""

    def __init__(self, fn: Callable, argnums: Argnums = 0, mode: str = "auto", vectorize: bool = True):
        super().__init__(fn, argnums, vectorize)
        if mode not in ("auto", "fwd", "rev"):
            raise ArgumentError(f"jacobian's mode is 'fwd', 'rev' or 'auto', got {mode!r}")
        self.mode = mode
        self._jvp = Linearized(fn, "jvp", argnums)
        self._vjp = Linearized(fn, "vjp", argnums)
        self._batched_jvp = Linearized(fn, "jvp", argnums, batched=True)
        self._batched_vjp = Linearized(fn, "vjp", argnums, batched=True)
        self._outputs: dict[ArgsSpec, tuple] = {}

    def __repr__(self) -> str:
        return f"<chainrule jacobian of {getattr(self.fn, '__name__', self.fn)!r} (mode={self.mode})>"

    def _plan(self, args: tuple):
        spec, leaves, in_types, in_treedefs = self._describe(args)
        found = self._outputs.get(spec)
        if found is None:
            graph, out_treedef = trace_graph(self.fn, spec, leaves)
            found = self._outputs[spec] = ([graph.type(o) for o in graph.outputs], out_treedef)
        out_types, out_treedef = found
        n, m = sum(t.size for t in in_types), sum(t.size for t in out_types)
        mode = self.mode if self.mode != "auto" else ("fwd" if n <= m else "rev")
        return spec, mode, in_types, in_treedefs, out_types, out_treedef

    def __call__(self, *args):
        spec, mode, in_types, in_treedefs, out_types, out_treedef = self._plan(args)
        if mode == "fwd":  # row k of this is column k of the Jacobian
            matrix = self._rows(spec, self._jvp, self._batched_jvp, args, in_types,
                                self._seed_layout(in_treedefs), pick=lambda result: result[1]).T
        else:
            matrix = self._rows(spec, self._vjp, self._batched_vjp, args, out_types, out_treedef)
        self.mode_used = mode
        return self._assemble(matrix, out_types, out_treedef, in_types, in_treedefs)

    def _one_pass(self, args: tuple):
        _, mode, in_types, in_treedefs, out_types, out_treedef = self._plan(args)
        if mode == "fwd":
            return self._jvp, args + (unflatten(self._seed_layout(in_treedefs), next(_basis(in_types))),)
        return self._vjp, args + (unflatten(out_treedef, next(_basis(out_types))),)


class Hessian(_DenseDerivative):
    """``cr.hessian``'s compiled function: one Hessian-vector product (forward over reverse) per
    column; ``passes`` counts them, ``kernel_calls`` the calls they took."""

    def __init__(self, fn: Callable, argnums: Argnums = 0, vectorize: bool = True):
        super().__init__(fn, argnums, vectorize)
        self._hvp = Linearized(fn, "hvp", argnums)
        self._batched_hvp = Linearized(fn, "hvp", argnums, batched=True)
        self.mode_used = "fwd-over-rev"

    def __repr__(self) -> str:
        return f"<chainrule hessian of {getattr(self.fn, '__name__', self.fn)!r}>"

    def __call__(self, *args):
        spec, _, in_types, in_treedefs = self._describe(args)
        layout = self._seed_layout(in_treedefs)
        matrix = self._rows(spec, self._hvp, self._batched_hvp, args, in_types, layout).T  # rows are H e_k
        return self._assemble(matrix, in_types, layout, in_types, in_treedefs)

    def _one_pass(self, args: tuple):
        _, _, in_types, in_treedefs = self._describe(args)
        return self._hvp, args + (unflatten(self._seed_layout(in_treedefs), next(_basis(in_types))),)


def jacobian(fn: Callable, argnums: Argnums = 0, mode: str = "auto", *, vectorize: bool = True) -> Jacobian:
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
    """
    return Jacobian(fn, argnums, mode, vectorize)


def hessian(fn: Callable, argnums: Argnums = 0, *, vectorize: bool = True) -> Hessian:
    """The Hessian of a scalar function, compiled: forward mode over reverse mode, one
    Hessian-vector product per column (``H.passes`` counts them), all in one vectorized
    program unless ``vectorize=False``.

    >>> import numpy as np, chainrule as cr
    >>> cr.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 3.0]))
    array([[6., 2.],
           [2., 0.]])
    """
    return Hessian(fn, argnums, vectorize)


__all__ = ["Hessian", "Jacobian", "Linearized", "VjpFunction", "hessian", "hvp", "jacobian", "jvp", "vjp"]
