"""The small CNN's training step runs natively on the llvm backend: no node of its kernel calls
Python. The three that did: Flatten's reshape of batch-last (transposed) images, now a native copy
(copies.py); the cross-entropy's gather ``rows[np.arange(n), labels]`` (gather.py, native before,
but its bounds check counted as a callback) and the scatter_add that is its gradient
(native_scatter.py, which took only in-range-by-construction first-axis indices). Each newly native
case is checked against the NumPy backend and its gradient against central differences, beyond the
CNN's shapes: 2-D and 3-D operands, index arrays apart and together, negative and repeated indices,
float32; and an index out of range still raises NumPy's IndexError."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr
from chainrule import nn, optim
from chainrule.frontends.pytree import flatten, tree_map

RNG = np.random.default_rng(11)


def lowered(compiled, *args):
    return compiled._specialize(args)[0].kernel.lowered


def python_nodes(compiled, *args) -> list[str]:
    """The nodes the kernel calls NumPy back for on every call (not only to raise an IndexError)."""
    return [f.op for f in lowered(compiled, *args).fallbacks if not f.on_error]


def agree_and_native(fn, *args, rtol=1e-12, transform=cr.jit):
    """fn on both backends gives the same values, and the llvm kernel calls no Python."""
    expected = transform(fn, backend="numpy")(*args)
    compiled = transform(fn, backend="llvm")
    got = compiled(*args)
    (got_leaves, _, got_tree), (expected_leaves, _, expected_tree) = flatten(got), flatten(expected)
    assert got_tree == expected_tree
    for g, e in zip(got_leaves, expected_leaves):
        assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=0)
    assert python_nodes(compiled, *args) == []
    return compiled


def check_gradient(fn, *args):
    """The llvm gradient in argument 0 against central differences and the NumPy backend's."""
    grad = cr.grad(fn, backend="llvm")
    got = grad(*args)
    assert relative_error(got, numerical_gradient(fn, args, 0)) < 1e-7
    np.testing.assert_allclose(got, cr.grad(fn)(*args), rtol=1e-12, atol=1e-14)
    assert python_nodes(grad, *args) == []


# ---- the CNN step --------------------------------------------------------------------------------


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        [
            nn.Conv2D(1, 4, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Conv2D(4, 6, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(6 * 2 * 2, 10, init="xavier"),
        ]
    )


def test_the_cnn_training_step_calls_no_python_and_agrees_with_the_numpy_backend():
    model = small_cnn()
    params = tree_map(lambda leaf: leaf.astype(np.float32), model.init(0))
    x, labels = RNG.random((12, 1, 8, 8)).astype(np.float32), RNG.integers(0, 10, 12)
    objective = lambda p, x, y: nn.cross_entropy(model.apply(p, x), y)
    opt = optim.adam(1e-2)
    steps = {backend: optim.train_step(objective, opt, backend=backend) for backend in ("numpy", "llvm")}
    states = {backend: (params, opt.init(params)) for backend in steps}
    for _ in range(3):
        for backend, step in steps.items():
            _, new_params, new_state = step(*states[backend], x, labels)
            states[backend] = (new_params, new_state)
    for layer, values in states["numpy"][0].items():
        for name, value in values.items():
            np.testing.assert_allclose(states["llvm"][0][layer][name], value, rtol=2e-5, atol=2e-6)
    assert python_nodes(steps["llvm"], *states["llvm"], x, labels) == []


def test_the_cnn_loss_gradient_matches_central_differences_in_the_dense_weights():
    model = small_cnn()
    params = model.init(1)
    x, labels = RNG.random((5, 1, 8, 8)), np.array([3, 3, 9, 0, 3])  # a repeated label

    def loss_of_dense(w):
        return nn.cross_entropy(model.apply({**params, "dense1": {**params["dense1"], "W": w}}, x), labels)

    check_gradient(loss_of_dense, params["dense1"]["W"])


# ---- reshape of non-contiguous data: a copy ---------------------------------------------------------


@pytest.mark.parametrize(
    "relayout",
    [
        lambda x: x.T.reshape(-1),
        lambda x: np.transpose(x, (2, 0, 1)).reshape(4, 6),  # 3-D
        lambda x: x[:, ::2].reshape(-1, 2),  # a strided slice
        lambda x: np.transpose(x, (1, 0, 2))[::-1].reshape(3, 8),  # reversed
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_reshape_of_non_contiguous_data_is_a_native_copy(relayout, dtype):
    x = RNG.standard_normal((3, 4, 2)).astype(dtype)
    compiled = agree_and_native(lambda x: relayout(x * 2), x, rtol=0)
    assert "a copy: the operand is not contiguous" in compiled.source(x)
    if dtype == np.float64:
        check_gradient(lambda x: weighted_sum(np.sin(relayout(x * 1.5))), x)


def test_a_reshape_of_transposed_integers_is_a_native_copy():
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    agree_and_native(lambda x: np.transpose(x * 3, (2, 1, 0)).reshape(6, 4), x, rtol=0)


# ---- gathers at run-time indices and their scatter_add gradients ----------------------------------------


def test_cross_entropy_with_repeated_labels_picks_and_scatters_natively():
    logits, labels = RNG.standard_normal((9, 4)), np.array([0, 3, 3, 1, 3, 0, 2, 2, 3])
    loss = lambda z, t: nn.cross_entropy(z, t)
    agree_and_native(loss, logits, labels, transform=cr.value_and_grad)
    check_gradient(loss, logits, labels)
    f32 = logits.astype(np.float32)
    agree_and_native(loss, f32, labels.astype(np.int32), rtol=1e-6, transform=cr.value_and_grad)


GATHERS = {  # name: (operand shape, index arrays, fn(x, *index arrays))
    "rows and labels": ((6, 5), [np.arange(6), np.array([4, 0, 4, -1, 2, 4])], lambda x, i, j: x[i, j]),
    "negative rows": ((6, 5), [np.array([-1, -6, 2, 2])], lambda x, i: x[i]),
    "2-D index arrays": ((6, 5), [np.array([[0, 5], [5, -2]]), np.array([1, -5])], lambda x, i, j: x[i, j]),
    "3-D, middle axis": ((3, 6, 4), [np.array([5, 0, 5, -3])], lambda x, i: x[:, i, :]),
    "3-D, arrays apart": ((3, 6, 4), [np.array([2, -1, 0]), np.array([3, 3, 0])], lambda x, i, j: x[i, 1:5, j]),
    "3-D, with an int": ((3, 6, 4), [np.array([[1, 1], [5, 0]])], lambda x, i: x[2, i]),
}


@pytest.mark.parametrize("name", sorted(GATHERS))
def test_a_gather_at_run_time_indices_and_its_scatter_add_gradient_are_native(name):
    shape, indices, pick = GATHERS[name]
    x = RNG.standard_normal(shape)
    fn = lambda x, *indices: weighted_sum(np.cos(pick(x * 1.0, *indices)))
    agree_and_native(lambda x, *i: pick(x * 2.0, *i), x, *indices, rtol=0)
    agree_and_native(fn, x, *indices, transform=cr.value_and_grad)
    check_gradient(fn, x, *indices)
    compiled = cr.grad(fn, backend="llvm")
    ops = {f.op for f in lowered(compiled, x, *indices).fallbacks}
    assert ops <= {"getitem", "scatter_add"}  # the bounds checks' callbacks, run only on an error


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_add_at_at_run_time_indices_accumulates_like_numpy_to_the_bit(dtype):
    rows, columns = np.array([2, 0, 2, -1, 2, 0]), np.array([1, 1, 1, 0, 2, 1])
    values = (RNG.standard_normal(6) * 10).astype(dtype)

    def fn(v, rows, columns):
        out = np.zeros((3, 4), dtype) * v[:1]  # traced, so np.add.at can hold traced values
        np.add.at(out, (rows, columns), v)
        return out

    compiled = cr.jit(fn, backend="llvm")
    np.testing.assert_array_equal(compiled(values, rows, columns), fn(values, rows, columns))
    assert python_nodes(compiled, values, rows, columns) == []


def test_assignment_at_run_time_indices_keeps_the_last_write():
    def fn(x, rows, columns):
        out = np.ones((3, 4))
        out[rows, columns] = x * 2.0
        return out

    x, rows, columns = RNG.standard_normal(5), np.array([0, 2, 0, 1, 0]), np.array([3, 1, 3, 0, 3])
    compiled = cr.jit(fn, backend="llvm")
    np.testing.assert_array_equal(compiled(x, rows, columns), fn(x, rows, columns))
    assert python_nodes(compiled, x, rows, columns) == []


@pytest.mark.parametrize("bad", [np.array([0, 5, 1]), np.array([0, -6, 1])])
def test_an_index_out_of_range_raises_numpys_index_error_from_a_gather_and_a_scatter(bad):
    x = RNG.standard_normal((4, 5))
    gather = cr.jit(lambda x, j: x[np.arange(3), j], backend="llvm")
    scatter = cr.grad(lambda x, j: np.sum(np.sin(x[np.arange(3), j])), backend="llvm")
    good = np.array([0, 4, -5])
    np.testing.assert_array_equal(gather(x, good), x[np.arange(3), good])
    scatter(x, good)
    for compiled in (gather, scatter):
        with pytest.raises(
            cr.ChainruleError, match=r"IndexError: index -?[56] is out of bounds for axis 1 with size 5"
        ):
            compiled(x, bad)


@pytest.mark.parametrize("differentiate", [False, True])
def test_a_loop_body_checking_an_index_at_run_time_keeps_the_python_driven_loop_and_raises(differentiate):
    # a native loop's body has no NumPy callback to raise from: an index out of range there was
    # read as 0 without an error (a gather); the loop runs its body from Python instead
    def fn(x, idx):
        def body(i, carry):
            total, table = carry
            return total + np.sin(table[idx]), table

        return np.sum(cr.fori_loop(0, 3, body, (np.zeros(idx.shape), x))[0])

    x, good, bad = np.linspace(0.1, 0.9, 5), np.array([0, 4, 4, -2]), np.array([0, 5, 1, 1])
    compiled = (cr.grad if differentiate else cr.jit)(fn, backend="llvm")
    expected = (cr.grad if differentiate else cr.jit)(fn)(x, good)
    np.testing.assert_allclose(compiled(x, good), expected, rtol=1e-13)
    assert "Python-driven loop" in compiled.source(x, good)
    with pytest.raises(cr.ChainruleError, match="IndexError: index 5 is out of bounds"):
        compiled(x, bad)


def test_a_kernel_of_small_convolutions_runs_blas_on_one_thread_and_restores_scipys_setting():
    from chainrule.backends.llvm import blas, conv, lapack

    if not lapack.can_set_threads():
        pytest.skip("SciPy's BLAS is not an OpenBLAS whose threads can be set")

    before = blas.get_blas_threads()
    model = nn.Conv2D(2, 4, 3, padding=1)
    params = model.init(0)
    loss = lambda p, x: np.sum(np.sin(model.apply(p, x)))
    try:
        blas.set_blas_threads(2)
        for batch, single in ((3, True), (conv.SMALL_PRODUCT // (4 * 2 * 9 * 64) + 1, False)):
            x = RNG.random((batch, 2, 8, 8))
            compiled = cr.grad(loss, backend="llvm")
            got = compiled(params, x)
            np.testing.assert_allclose(got["W"], cr.grad(loss)(params, x)["W"], rtol=1e-10)
            source = lowered(compiled, params, x).ir
            assert ("call void @chainrule_blas_set_threads(i32 1)" in source) is single
            assert blas.get_blas_threads() == 2
    finally:
        blas.set_blas_threads(before)
