"""Jacobians, Hessians, Hessian-vector products and derivatives of any order.

Expected values are written out (sin's derivatives, Rosenbrock's Hessian),
come from PyTorch (seed 001's Jacobian) or from finite differences; the pass
counts are the numbers of compiled-kernel calls, counted by the objects.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import chainrule as cr
from chainrule.errors import ArgumentError, OutputError, UnsupportedError

# ---- second derivatives, and any order -------------------------------------------------------


def test_second_derivative_of_sin_is_minus_sin_every_way():
    x = np.linspace(-3, 3, 7)
    expected = -np.sin(x)
    np.testing.assert_allclose(np.diag(cr.hessian(lambda x: np.sum(np.sin(x)))(x)), expected, rtol=1e-14)
    np.testing.assert_allclose(cr.hvp(lambda x: np.sum(np.sin(x)))(x, np.ones(7)), expected, rtol=1e-14)
    np.testing.assert_allclose(
        cr.jvp(cr.grad(lambda x: np.sum(np.sin(x))), (x,), (np.ones(7),))[1], expected, rtol=1e-14
    )
    second = cr.grad(cr.grad(np.sin))
    np.testing.assert_allclose([second(float(v)) for v in x], expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
def test_nested_grad_gives_every_derivative_of_sin(order):
    derivative = np.sin
    for _ in range(order):
        derivative = cr.grad(derivative)
    for x in [0.3, 1.7, -2.2]:
        np.testing.assert_allclose(derivative(x), np.sin(x + order * np.pi / 2), rtol=1e-12, atol=1e-15)


def test_third_derivative_by_forward_over_reverse_over_reverse():
    # d3/dx3 of x^4 * exp(x) = exp(x) (x^4 + 12 x^3 + 36 x^2 + 24 x)
    f = cr.grad(cr.grad(lambda x: x**4 * np.exp(x)))
    for x in [0.5, -1.5]:
        _, third = cr.jvp(f, (x,), (1.0,))
        np.testing.assert_allclose(third, np.exp(x) * (x**4 + 12 * x**3 + 36 * x**2 + 24 * x), rtol=1e-12)


def test_reverse_over_forward_matches_forward_over_reverse():
    def f(x):
        return np.sum(np.tanh(x) * x[::-1] ** 2)

    x, v = np.array([0.3, -0.8, 1.1]), np.array([1.0, 2.0, -0.5])
    reverse_over_forward = cr.grad(lambda x: cr.jvp(f, (x,), (v,))[1])(x)
    np.testing.assert_allclose(reverse_over_forward, cr.hvp(f)(x, v), rtol=1e-12)


# ---- Hessians ------------------------------------------------------------------------------------


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_hessian(x):
    """Written out: H_ii = 1200 x_i^2 - 400 x_{i+1} + 2 (i < n-1) + 200 (i > 0), H_i,i+1 = -400 x_i."""
    n = len(x)
    hessian = np.zeros((n, n))
    for i in range(n - 1):
        hessian[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        hessian[i + 1, i + 1] += 200
        hessian[i, i + 1] = hessian[i + 1, i] = -400 * x[i]
    return hessian


@pytest.mark.parametrize("seed", [0, 1])
def test_rosenbrock_hessian_equals_the_analytic_one(seed):
    x = np.random.default_rng(seed).uniform(-2, 2, 6)
    hessian = cr.hessian(rosenbrock)
    np.testing.assert_allclose(hessian(x), rosenbrock_hessian(x), rtol=1e-13, atol=1e-10)
    assert hessian.passes == 6
    np.testing.assert_allclose(hessian(np.ones(6)), rosenbrock_hessian(np.ones(6)), rtol=1e-13)  # the minimum


def test_reverse_over_reverse_jacobian_of_the_gradient_equals_the_hessian():
    x = np.array([0.5, -1.2, 0.9, 2.0])
    np.testing.assert_allclose(cr.jacobian(cr.grad(rosenbrock), mode="rev")(x), rosenbrock_hessian(x), rtol=1e-13)


def test_hessian_of_a_pytree_has_the_nested_layout_and_dtypes():
    def f(p):
        return np.sum(p["w"] ** 2) * p["b"] ** 3

    w, b = np.array([1.0, -2.0, 0.5], np.float32), np.float32(1.5)
    hessian = cr.hessian(f)({"w": w, "b": b})
    assert set(hessian) == {"w", "b"} and set(hessian["w"]) == {"w", "b"}
    assert hessian["w"]["w"].shape == (3, 3) and hessian["w"]["b"].shape == (3,) and hessian["b"]["b"].shape == ()
    assert all(hessian[i][j].dtype == np.float32 for i in "wb" for j in "wb")
    np.testing.assert_allclose(hessian["w"]["w"], 2 * b**3 * np.eye(3), rtol=1e-6)
    np.testing.assert_allclose(hessian["w"]["b"], 6 * w * b**2, rtol=1e-6)
    np.testing.assert_allclose(hessian["b"]["w"], 6 * w * b**2, rtol=1e-6)
    np.testing.assert_allclose(hessian["b"]["b"], 6 * b * np.sum(w**2), rtol=1e-6)


def test_hessian_with_argnums_tuple_gives_a_tuple_of_tuples():
    def f(x, y):
        return np.sum(x * x * y)

    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    (hxx, hxy), (hyx, hyy) = cr.hessian(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(hxx, np.diag(2 * y))
    np.testing.assert_allclose(hxy, np.diag(2 * x))
    np.testing.assert_allclose(hyx, np.diag(2 * x))
    np.testing.assert_allclose(hyy, np.zeros((2, 2)))


def test_hvp_and_hessian_need_a_scalar_output():
    with pytest.raises(OutputError, match="scalar output"):
        cr.hvp(np.sin)(np.zeros(3), np.ones(3))


# ---- Jacobians ---------------------------------------------------------------------------------


def seed_001_network(x, W1, W2):
    """Seed 001's two-layer tanh network: y = tanh(x @ W1), z = tanh(y @ W2)."""
    return np.tanh(np.tanh(x @ W1) @ W2)


@pytest.mark.parametrize("mode", ["fwd", "rev", "auto"])
def test_seed_001_jacobian_equals_pytorch(mode):
    rng = np.random.default_rng(1)
    x, W1, W2 = rng.standard_normal(3), rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    jacobian = cr.jacobian(seed_001_network, mode=mode)(x, W1, W2)
    try:
        import torch
        from torch.autograd.functional import jacobian as torch_jacobian
    except ImportError:  # finite differences, column by column
        h = 1e-5
        expected = np.stack(
            [(seed_001_network(x + h * e, W1, W2) - seed_001_network(x - h * e, W1, W2)) / (2 * h) for e in np.eye(3)],
            axis=1,
        )
        np.testing.assert_allclose(jacobian, expected, rtol=1e-8, atol=1e-10)
        return
    t1, t2 = torch.tensor(W1), torch.tensor(W2)
    expected = torch_jacobian(lambda x: torch.tanh(torch.tanh(x @ t1) @ t2), torch.tensor(x)).numpy()
    np.testing.assert_allclose(jacobian, expected, rtol=1e-13, atol=1e-15)


def test_jacobian_with_respect_to_the_weights_equals_pytorch():
    torch = pytest.importorskip("torch")
    from torch.autograd.functional import jacobian as torch_jacobian

    rng = np.random.default_rng(2)
    x, W1, W2 = rng.standard_normal(3), rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    d_W1, d_W2 = cr.jacobian(seed_001_network, argnums=(1, 2))(x, W1, W2)
    expected = torch_jacobian(
        lambda a, b: torch.tanh(torch.tanh(torch.tensor(x) @ a) @ b), (torch.tensor(W1), torch.tensor(W2))
    )
    assert d_W1.shape == d_W2.shape == (3, 3, 3)
    np.testing.assert_allclose(d_W1, expected[0].numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(d_W2, expected[1].numpy(), rtol=1e-13, atol=1e-15)


def wide(x):  # R^3 -> R^7
    return np.concatenate([np.sin(x), x[:2] * x[1:], np.sum(x**2, keepdims=True), x[:1] ** 3])


def narrow(x):  # R^7 -> R^2
    return np.stack([np.sum(np.sin(x)), np.sum(x[:-1] * x[1:])])


def test_jacobian_uses_min_n_m_passes_when_the_mode_is_automatic():
    x3, x7 = np.array([0.1, 0.2, 0.3]), np.linspace(-1, 1, 7)
    wide_jacobian, narrow_jacobian = cr.jacobian(wide), cr.jacobian(narrow)
    assert wide_jacobian(x3).shape == (7, 3)
    assert (wide_jacobian.passes, wide_jacobian.mode_used) == (3, "fwd")
    assert narrow_jacobian(x7).shape == (2, 7)
    assert (narrow_jacobian.passes, narrow_jacobian.mode_used) == (2, "rev")
    # forced modes take n and m passes and agree
    for fn, x, n, m in [(wide, x3, 3, 7), (narrow, x7, 7, 2)]:
        forward_jacobian, reverse_jacobian = cr.jacobian(fn, mode="fwd"), cr.jacobian(fn, mode="rev")
        np.testing.assert_allclose(forward_jacobian(x), reverse_jacobian(x), rtol=1e-14)
        assert (forward_jacobian.passes, reverse_jacobian.passes) == (n, m)


def test_jacobian_of_a_pytree_function_keeps_structure_and_float32():
    def f(p):
        return {"y": np.tanh(p["a"] * p["c"]), "s": np.sum(p["a"])}

    p = {"a": np.array([0.5, -1.0], np.float32), "c": np.float32(2.0)}
    jacobian = cr.jacobian(f)(p)
    assert jacobian["y"]["a"].shape == (2, 2) and jacobian["y"]["c"].shape == (2,)
    assert jacobian["s"]["a"].shape == (2,) and jacobian["s"]["c"].shape == ()
    assert jacobian["y"]["a"].dtype == np.float32
    slope = 1 - np.tanh(p["a"] * p["c"]) ** 2
    np.testing.assert_allclose(jacobian["y"]["a"], np.diag(slope * p["c"]), rtol=1e-6)
    np.testing.assert_allclose(jacobian["y"]["c"], slope * p["a"], rtol=1e-6)
    np.testing.assert_allclose(jacobian["s"]["a"], [1.0, 1.0])


def test_jacobian_errors_are_chainrule_errors():
    with pytest.raises(ArgumentError, match="'fwd', 'rev' or 'auto'"):
        cr.jacobian(np.sin, mode="forward")
    with pytest.raises(ArgumentError, match="argnums=3"):
        cr.jacobian(np.sin, argnums=3)(np.zeros(2))
    with pytest.raises(UnsupportedError, match="inside a traced function"):
        cr.grad(lambda x: np.sum(cr.jacobian(np.sin, vectorize=False)(x)))(np.zeros(2))


def test_jacobian_inside_a_traced_function_is_traced_too():
    # the Jacobian of sin is diag(cos x): the gradient of its sum is -sin x
    x = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(cr.jacobian(np.sin)(x)))(x), -np.sin(x), rtol=1e-15)


# ---- vjp ---------------------------------------------------------------------------------------


def test_vjp_function_is_compiled_once_and_reused():
    def f(x, W):
        return np.tanh(x @ W)

    x, W = np.array([0.5, -0.3]), np.array([[1.0, 2.0, 0.5], [-1.0, 0.3, 0.2]])
    out, vjp_fn = cr.vjp(f, x, W)
    np.testing.assert_allclose(out, np.tanh(x @ W), rtol=1e-15)
    for u in np.eye(3):
        d_x, d_W = vjp_fn(u)
        g = u * (1 - np.tanh(x @ W) ** 2)
        np.testing.assert_allclose(d_x, W @ g, rtol=1e-14)
        np.testing.assert_allclose(d_W, np.outer(x, g), rtol=1e-14)
    _, again = cr.vjp(f, x + 1.0, W)
    np.testing.assert_allclose(again(np.ones(3))[0], W @ (1 - np.tanh((x + 1.0) @ W) ** 2), rtol=1e-14)
    assert again.compiled is vjp_fn.compiled  # the same compiled signature
    # vjp_fn runs only the backward pass: the forward's tanh and x @ W ran once, in cr.vjp
    assert "tanh" not in vjp_fn.source() and "x @ W" not in vjp_fn.source()
    assert vjp_fn.ir().startswith("def f_vjp(")


def test_vjp_of_pytrees_with_several_outputs_matches_grad():
    def f(p, x):
        hidden = np.tanh(x @ p["W"] + p["b"])
        return {"h": hidden, "total": np.sum(hidden**2)}

    p, x = {"W": np.array([[0.3, -0.2], [0.5, 0.1]]), "b": np.array([0.1, -0.4])}, np.array([1.0, 2.0])
    u = {"h": np.array([0.7, -1.3]), "total": 2.5}
    out, vjp_fn = cr.vjp(f, p, x)
    d_p, d_x = vjp_fn(u)
    expected = cr.grad(lambda p, x: np.sum(u["h"] * f(p, x)["h"]) + u["total"] * f(p, x)["total"], argnums=(0, 1))(p, x)
    np.testing.assert_allclose(out["total"], np.sum(np.tanh(x @ p["W"] + p["b"]) ** 2), rtol=1e-15)
    for name in ("W", "b"):
        np.testing.assert_allclose(d_p[name], expected[0][name], rtol=1e-14)
    np.testing.assert_allclose(d_x, expected[1], rtol=1e-14)


def test_vjp_inside_grad_is_differentiated_through():
    # d/dx <u, J(x)^T w> for f = sin: J^T w = cos(x) w, so the gradient of sum(cos(x) w) is -sin(x) w
    w, x = np.array([1.0, -2.0]), np.array([0.3, 1.1])
    gradient = cr.grad(lambda x: np.sum(cr.vjp(np.sin, x)[1](w)[0]))(x)
    np.testing.assert_allclose(gradient, -np.sin(x) * w, rtol=1e-14)


def test_vjp_rejects_a_cotangent_not_shaped_like_the_output():
    _, vjp_fn = cr.vjp(lambda x: np.sin(x), np.zeros(3))
    with pytest.raises(ArgumentError, match="cotangent"):
        vjp_fn(np.ones(4))


# ---- Hessian-vector products never build the Hessian ------------------------------------------------


def model_loss(w, x):
    """A 10,000-parameter model: w is 100 x 100."""
    return np.mean(np.tanh(x @ w) ** 2) + 1e-3 * np.sum(w**4)


def test_hvp_on_10000_parameters_allocates_far_less_than_n_squared():
    rng = np.random.default_rng(0)
    w, x, v = rng.standard_normal((100, 100)) * 0.1, rng.standard_normal((32, 100)), rng.standard_normal((100, 100))
    hvp = cr.hvp(model_loss)
    hvp(w, x, v)  # compile first: the measurement is of running it
    n = w.size
    graph = hvp.graph(w, x, v)
    assert max(graph.type(i).size for i in range(len(graph))) == n  # no value bigger than the parameters
    tracemalloc.start()
    try:
        product = hvp(w, x, v)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 / 100, f"peak {peak} bytes; the Hessian alone would take {n * n * 8}"
    # and it is the Hessian-vector product: the derivative of the gradient along v
    gradient = cr.grad(model_loss)
    h = 1e-5
    numeric = (gradient(w + h * v, x) - gradient(w - h * v, x)) / (2 * h)
    np.testing.assert_allclose(product, numeric, rtol=1e-6, atol=1e-6 * np.max(np.abs(numeric)))


def test_hvp_graph_goes_forward_over_reverse():
    hvp = cr.hvp(rosenbrock)
    x = np.array([1.0, 2.0, 0.5])
    stages = list(hvp._specialize((x, x))[0].compilation.graphs)
    assert stages == ["traced", "grad", "jvp", "simplified", "checkpointed", "fused", "scheduled"]
    assert "tx: f64[3]" in hvp.ir(x, x, stage="jvp")
    np.testing.assert_allclose(hvp(x, np.array([0.0, 1.0, 0.0])), rosenbrock_hessian(x)[:, 1], rtol=1e-14)


# ---- the passes run as one vectorized program --------------------------------------------------


def test_vectorized_jacobian_and_hessian_take_one_kernel_call():
    x3, x7 = np.array([0.1, 0.2, 0.3]), np.linspace(-1, 1, 7)
    for fn, x, passes in [(wide, x3, 3), (narrow, x7, 2)]:
        vectorized, looped = cr.jacobian(fn), cr.jacobian(fn, vectorize=False)
        np.testing.assert_allclose(vectorized(x), looped(x), rtol=1e-14)
        assert (vectorized.passes, vectorized.kernel_calls) == (passes, 1)
        assert (looped.passes, looped.kernel_calls) == (passes, passes)
    hessian = cr.hessian(rosenbrock)
    np.testing.assert_allclose(hessian(x7), rosenbrock_hessian(x7), rtol=1e-13, atol=1e-10)
    assert (hessian.passes, hessian.kernel_calls) == (7, 1)


def test_an_index_numpy_would_reorder_under_a_batch_axis_is_vectorized_all_the_same():
    def f(x):  # advanced indices apart: NumPy puts their axis first, so the batch is indexed too
        return np.sin(x[[0, 1], :, 1])

    x = np.arange(24.0).reshape(2, 3, 4) / 10
    jacobian = cr.jacobian(f, mode="fwd")
    result = jacobian(x)
    assert (jacobian.passes, jacobian.kernel_calls) == (24, 1)
    expected = np.zeros((2, 3, 2, 3, 4))
    for i in range(2):
        for j in range(3):
            expected[i, j, i, j, 1] = np.cos(x[i, j, 1])
    np.testing.assert_allclose(result, expected, rtol=1e-15)


def _one_case_per_primitive():
    from test_op_gradients import CASES

    chosen = {}
    for c in CASES:
        chosen.setdefault(c.covers or c.id, c)
    return list(chosen.values())


@pytest.mark.parametrize("c", _one_case_per_primitive(), ids=lambda c: c.id)
def test_vectorized_passes_equal_one_call_per_pass_for_every_primitive(c):
    argnums = c.argnums if len(c.argnums) > 1 else c.argnums[0]
    for mode in ["fwd", "rev"]:
        vectorized = cr.jacobian(c.fn, argnums, mode=mode)
        looped = cr.jacobian(c.fn, argnums, mode=mode, vectorize=False)
        for a, b in zip(flatten_result(vectorized(*c.args)), flatten_result(looped(*c.args))):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        assert vectorized.kernel_calls == 1, f"{mode}: not vectorized"


def flatten_result(tree):
    return tree if isinstance(tree, tuple) else (tree,)


def test_logaddexp_has_its_derivatives_where_its_arguments_are_equal():
    # log(1 + e^z): first derivative sigmoid(0) = 1/2, second sigmoid'(0) = 1/4 at z = 0
    softplus_sum = lambda z: np.sum(np.logaddexp(0.0, z))
    np.testing.assert_array_equal(cr.grad(softplus_sum)(np.zeros(2)), [0.5, 0.5])
    np.testing.assert_array_equal(cr.hessian(softplus_sum)(np.zeros(2)), np.diag([0.25, 0.25]))


def test_every_higher_order_entry_point_compiles_with_the_llvm_backend_too():
    f = lambda x: np.sum(np.tanh(x) ** 2 * np.sin(x))
    g = lambda x: np.tanh(x[:3] * x[1:])
    x, v = np.linspace(-1.0, 1.0, 4), np.linspace(0.5, 2.0, 4)
    pairs = [
        (cr.jvp(g, (x,), (v,), backend="llvm"), cr.jvp(g, (x,), (v,))),
        (cr.vjp(g, x, backend="llvm")[1](v[:3]), cr.vjp(g, x)[1](v[:3])),
        (cr.hvp(f, backend="llvm")(x, v), cr.hvp(f)(x, v)),
        (cr.jacobian(g, mode="fwd", backend="llvm")(x), cr.jacobian(g, mode="fwd")(x)),
        (cr.jacobian(g, mode="rev", backend="llvm")(x), cr.jacobian(g, mode="rev")(x)),
        (cr.hessian(f, backend="llvm")(x), cr.hessian(f)(x)),
    ]
    for got, expected in pairs:
        for a, b in zip(
            np.atleast_1d(got) if not isinstance(got, tuple) else got,
            np.atleast_1d(expected) if not isinstance(expected, tuple) else expected,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert "define" in cr.hvp(f, backend="llvm").source(x, v)  # LLVM IR, not Python


def test_jvp_of_python_floats_gives_the_same_answer_every_call():
    # the scalar fast path once took the tangents tuple for a scalar argument from the second call on
    f = lambda x: np.sin(x) * x
    expected = (np.sin(1.5) * 1.5, np.cos(1.5) * 1.5 + np.sin(1.5))
    for backend in ("numpy", "llvm"):
        for _ in range(3):
            value, tangent = cr.jvp(f, (1.5,), (1.0,), backend=backend)
            assert np.ndim(tangent) == 0
            np.testing.assert_allclose([value, tangent], expected, rtol=1e-14)
