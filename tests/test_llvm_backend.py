"""The llvm backend's lowering: what the module looks like, how values are laid out, and that every
path (loops, views, reductions, BLAS, threads, NumPy fallbacks) computes what the numpy backend does.

The op-by-op agreement of the two backends is in test_op_gradients.py and, element by element at edge
values, test_backend_coverage.py; random programs in test_fuse.py.
"""

import threading

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
from chainrule.backends.llvm import kernel as llvm_kernel
from chainrule.frontends.pytree import flatten


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def agree(fn, *args, rtol=1e-12, transform=cr.jit, **options):
    """fn compiled by both backends gives the same results (types, shapes, values)."""
    expected = transform(fn, backend="numpy", **options)(*args)
    got = transform(fn, backend="llvm", **options)(*args)
    (expected_leaves, _, expected_tree), (got_leaves, _, got_tree) = flatten(expected), flatten(got)
    assert got_tree == expected_tree
    for e, g in zip(expected_leaves, got_leaves):
        assert type(g) is type(e) and np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=0)
    return got


# ---- the module as text ----------------------------------------------------------------------


def mlp_loss(p, x, y):
    h1 = np.tanh(x @ p["W1"] + p["b1"])
    z = h1 @ p["W2"] + p["b2"]
    return np.mean((z - y) ** 2)


def mlp_args(batch=8):
    rng = np.random.default_rng(0)
    p = {
        "W1": rng.normal(size=(5, 6)),
        "b1": rng.normal(size=6),
        "W2": rng.normal(size=(6, 2)),
        "b2": rng.normal(size=2),
    }
    return p, rng.normal(size=(batch, 5)), rng.normal(size=(batch, 2))


def test_source_is_the_llvm_module_with_the_users_names_and_source_lines():
    source = cr.grad(mlp_loss, backend="llvm").source(*mlp_args())
    assert "_entry(ptr noalias %table, i64 %threads) {" in source
    assert "%h1" in source  # registers named after the user's variables
    assert "h1 = fused { tanh(add(" in source and "test_llvm_backend.py:" in source  # region, source line
    assert "call void @chainrule_dgemm(" in source  # matmul through BLAS, by symbol
    assert "target triple" not in source and "0x7f" not in source.lower()  # no target, no raw addresses


def test_the_module_never_uses_no_nan_or_no_inf_fast_math():
    source = cr.grad(lambda x: np.sum(np.maximum(np.exp(x) / x, 0.5) + nn.softplus(x)), backend="llvm").source(
        np.ones(64)
    )
    for flag in ("nnan", "ninf", " fast "):
        assert flag not in source


def test_forward_and_backward_of_an_elementwise_function_run_in_one_loop():
    def nested(x):
        for _ in range(5):
            x = np.cos(np.tan(np.sin(x)))
        return np.sum(x)

    xs = np.linspace(0.0, 6.0, 1000)
    compiled = cr.grad(nested, backend="llvm")
    lowered = kernel_of(compiled, xs).lowered
    assert lowered.loops == 1 and not lowered.fallbacks
    np.testing.assert_allclose(compiled(xs), cr.grad(nested)(xs), rtol=1e-12)


def test_views_are_strided_reads_not_copies():
    def f(x, y):
        return np.sum((x.T[1:, ::2] * np.broadcast_to(y, (5, 2))).reshape(10) ** 2)

    x, y = np.arange(24.0).reshape(4, 6) / 10, np.array([1.5, -2.0])
    agree(f, x, y, transform=cr.value_and_grad, argnums=(0, 1))  # slicing's adjoint (scatter_add) is NumPy's
    assert not kernel_of(cr.jit(f, backend="llvm"), x, y).lowered.fallbacks


def test_a_non_contiguous_reshape_is_a_native_copy_and_a_float16_one_is_marked_as_run_by_numpy():
    def f(x):
        return np.sum(np.sin(x.T.reshape(-1)) * np.arange(12.0))

    x = np.arange(12.0).reshape(3, 4) / 7
    agree(f, x, transform=cr.value_and_grad)
    compiled = cr.value_and_grad(f, backend="llvm")
    assert "a copy: the operand is not contiguous" in compiled.source(x)
    assert not kernel_of(compiled, x).lowered.fallbacks
    half = cr.jit(lambda h: h.T.reshape(-1), backend="llvm")  # float16: no LLVM arithmetic
    h = x.astype(np.float16)
    np.testing.assert_array_equal(half(h), h.T.reshape(-1))
    assert "run by NumPy: reshape" in half.source(h)
    assert [fallback.op for fallback in kernel_of(half, h).lowered.fallbacks] == ["reshape"]


def test_cross_entropy_with_integer_labels_gathers_natively_and_agrees():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(16, 5)), rng.integers(0, 5, size=16)
    agree(lambda z, t: nn.cross_entropy(z, t), logits, labels, transform=cr.value_and_grad)


# ---- reductions, matmul, dtypes -----------------------------------------------------------------


# (int32 sums are left out: NumPy sums them as int64 while the IR's type says int32)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("reduction", [np.sum, np.max, np.min])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, (0, 2), (1, 2)])
def test_reductions_over_any_axes_agree(dtype, reduction, axis):
    x = (np.random.default_rng(2).normal(size=(3, 4, 5)) * 10).astype(dtype)
    agree(
        lambda x: (reduction(x, axis=axis), reduction(x * 2, axis=axis, keepdims=True)),
        x,
        rtol=1e-12 if dtype == np.float64 else 1e-5,
    )


def test_reductions_propagate_nan_like_numpy():
    x = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, -np.inf]])
    got = cr.jit(
        lambda x: (np.max(x, axis=1), np.min(x), np.sum(x, axis=0), np.maximum(x, 2.0), nn.relu(x)), backend="llvm"
    )(x)
    expected = cr.jit(lambda x: (np.max(x, axis=1), np.min(x), np.sum(x, axis=0), np.maximum(x, 2.0), nn.relu(x)))(x)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)  # NaN where NumPy has NaN


@pytest.mark.parametrize(
    "shapes",
    [
        ((3, 4), (4, 5)),
        ((4,), (4, 5)),
        ((3, 4), (4,)),
        ((2, 3, 4), (4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((1, 4), (4, 1)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matmul_through_blas_agrees_for_every_operand_layout(shapes, dtype):
    rng = np.random.default_rng(3)
    a, b = (rng.normal(size=s).astype(dtype) for s in shapes)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    agree(lambda a, b: np.sum((a @ b) ** 2), a, b, transform=cr.value_and_grad, argnums=(0, 1), rtol=rtol)


def test_matmul_of_transposed_views_calls_blas_without_copying():
    def f(a, b):
        return np.sum(np.tanh(a.T @ b.T))

    a, b = np.random.default_rng(4).normal(size=(2, 6, 3)[1:]), np.random.default_rng(5).normal(size=(4, 6))
    agree(f, a, b, transform=cr.value_and_grad, argnums=(0, 1))
    assert not kernel_of(cr.value_and_grad(f, (0, 1), backend="llvm"), a, b).lowered.fallbacks


def test_float16_nodes_run_through_numpy():
    x = np.linspace(0.0, 1.0, 7).astype(np.float16)
    agree(lambda x: np.sum(np.sin(x) * x), x, transform=cr.grad)


def test_integer_and_bool_arithmetic_agree():
    i, j = np.arange(-4, 8).reshape(3, 4), np.array([3, -1, 2, 0])
    agree(
        lambda i, j: (
            i * j - np.abs(i),
            np.maximum(i, j),
            (i > j) & (i != 0),
            np.sign(i),
            np.where(i > 0, i, j),
            (i + j).astype(np.float64) / 3,
        ),
        i,
        j,
    )


# ---- calling ------------------------------------------------------------------------------------


def test_outputs_are_fresh_arrays_owned_by_the_caller():
    f = cr.jit(lambda x: (x, x * 2, (x * 2).T), backend="llvm")
    x = np.ones((40, 40))
    first = f(x)
    second = f(x)
    assert not np.shares_memory(first[0], x) and not np.shares_memory(first[1], second[1])
    first[1][...] = 7.0
    np.testing.assert_array_equal(f(x)[1], 2.0)


def test_large_loops_run_on_several_threads_with_the_same_results():
    x = np.linspace(0.1, 3.0, 300_001)
    f = cr.value_and_grad(lambda x: np.sum(np.sin(x) * np.exp(-x)), backend="llvm")
    assert kernel_of(f, x).lowered.parallel_loops >= 1
    before = llvm_kernel.get_num_threads()
    try:
        llvm_kernel.set_num_threads(1)
        value_1, gradient_1 = f(x)
        llvm_kernel.set_num_threads(3)
        value_3, gradient_3 = f(x)
    finally:
        llvm_kernel.set_num_threads(before)
    np.testing.assert_array_equal(gradient_1, gradient_3)  # elementwise: the same code for every element
    assert value_1 == pytest.approx(value_3, rel=1e-13)  # a sum: partial sums in another order


def test_calls_from_several_python_threads_each_get_their_own_results():
    f = cr.grad(lambda x: np.sum(np.sin(x) ** 2), backend="llvm")
    inputs = [np.linspace(0, k + 1, 5000) for k in range(8)]
    results = [None] * len(inputs)

    def work(k):
        for _ in range(20):
            results[k] = f(inputs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, r in zip(inputs, results):
        np.testing.assert_allclose(r, np.sin(2 * x), rtol=1e-12, atol=1e-15)


def test_scalar_gradients_come_back_as_the_inputs_types():
    f = cr.grad(lambda a, b: np.sin(a) * b, argnums=(0, 1), backend="llvm")
    for _ in range(2):  # the second call takes the all-scalars fast path
        da, db = f(0.5, np.float32(2.0))
        assert type(da) is float and type(db) is np.float32
        assert da == pytest.approx(np.cos(0.5) * 2.0) and db == pytest.approx(np.sin(0.5), rel=1e-6)


def test_the_kernel_keeps_its_native_module_alive():
    f = cr.jit(lambda x: np.exp(x) + 1.0, backend="llvm")
    x = np.zeros(3)
    kernel = kernel_of(f, x)
    assert kernel.native is not None and kernel.native.address(kernel.lowered.entry)
    np.testing.assert_array_equal(f(x), np.full(3, 2.0))


def test_a_chain_longer_than_the_recursion_limit_compiles_and_agrees():
    def chain(x):
        for _ in range(1500):  # 3,000 forward nodes, 1,500 loops' worth of steps before fusion
            x = np.sin(x) * 1.01
        return np.sum(x)

    x = np.linspace(0.1, 1.0, 4)
    np.testing.assert_allclose(cr.grad(chain, backend="llvm")(x), cr.grad(chain)(x), rtol=1e-12)


def test_a_user_variable_named_like_a_kernel_parameter_gets_its_own_register():
    # `partials`, `table`, `start` and `end` are parameters of the generated loop functions
    def loss(a, t):
        partials = a[:, None] * np.sin(t)
        table = partials * 2.0
        start, end = np.sum(table, axis=0), np.cos(t)
        return np.sum((start + end) ** 2)

    a, t = np.array([1.0, 0.5, 0.25]), np.linspace(0, 1, 64)
    np.testing.assert_allclose(cr.grad(loss, backend="llvm")(a, t), cr.grad(loss, backend="numpy")(a, t), rtol=1e-12)
