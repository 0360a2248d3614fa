"""Checks every layer test of issue 22 runs: gradients of a layer's output against finite
differences (for the input and every parameter), on both backends, and PyTorch as an optional peer."""

from __future__ import annotations

import numpy as np
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr
from chainrule.frontends.pytree import flatten, unflatten


def check_layer_gradients(layer, params, x, *, wrt_input: bool = True, tolerance: float = 1e-7, **apply_options):
    """cr.grad of sum(w * layer.apply(params, x)) against central differences, numpy and llvm backends,
    and the compiled forward against the eager one."""
    leaves, _, treedef = flatten(params)

    def objective_of_leaves(x, *leaf_values):
        return weighted_sum(layer.apply(unflatten(treedef, list(leaf_values)), x, **apply_options))

    eager = layer.apply(params, x, **apply_options)
    argnums = tuple(range(0 if wrt_input else 1, len(leaves) + 1))
    for backend in ("numpy", "llvm"):
        compiled = cr.jit(
            lambda x, *leaf_values: layer.apply(unflatten(treedef, list(leaf_values)), x, **apply_options),
            backend=backend,
        )
        np.testing.assert_allclose(compiled(x, *leaves), eager, rtol=1e-12, atol=1e-12)
        gradients = cr.grad(objective_of_leaves, argnums=argnums, backend=backend)(x, *leaves)
        for argnum, gradient in zip(argnums, gradients):
            numeric = numerical_gradient(objective_of_leaves, (x, *leaves), argnum)
            if np.max(np.abs(numeric)) < 1e-8:  # a gradient that is zero (attention's key bias): no ratio
                assert np.max(np.abs(gradient)) < 1e-8, f"{layer!r} argument {argnum} ({backend}): not zero"
                continue
            error = relative_error(gradient, numeric)
            assert error < tolerance, f"{layer!r} argument {argnum} ({backend}): relative error {error:.2e}"
    return eager


def torch_tensor(array):
    import torch

    return torch.tensor(np.asarray(array))
