"""The llvm backend's native gather (backends/llvm/gather.py): ``getitem`` at integer-array indices
against NumPy's own indexing, for random mixes of slices, ints, ``None`` and arrays, any operand
layout and dtype; an index out of range raises as NumPy does; and the cross-entropy pattern
``logp[rows, labels]`` runs without calling NumPy back."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.errors import ChainruleError


def _source_of_native_gather(fn, *args) -> str:
    source = cr.jit(fn, backend="llvm").source(*args)
    assert "(native gather)" in source, source
    return source


@st.composite
def gathers(draw):
    """(x, index as a list of (kind, value), index arrays): a random NumPy index with >= 1 array."""
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    items, arrays = [], []
    b_shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    for size in shape[: draw(st.integers(1, ndim))]:
        kind = draw(st.sampled_from(["array", "array", "slice", "int", "none"]))
        if kind == "none":
            items.append(("none", None))
        elif kind == "slice":
            start, stop = draw(st.integers(-size, size)), draw(st.integers(-size, size))
            items.append(("slice", slice(start, stop, draw(st.sampled_from([None, 1, 2, -1])))))
        elif kind == "int":
            items.append(("int", draw(st.integers(-size, size - 1))))
        else:  # an array (also after a None: every dimension drawn is indexed by something)
            own = b_shape[draw(st.integers(0, len(b_shape))) :]  # broadcasts against the others
            seed = draw(st.integers(0, 2**16))
            values = np.random.default_rng(seed).integers(-size, size, size=own)
            items.append(("array", len(arrays)))
            arrays.append(values.astype(draw(st.sampled_from([np.int64, np.int32, np.int8]))))
    if not arrays:  # index the first dimension no item indexes, else the last one indexed
        consumed = [position for position, item in enumerate(items) if item[0] != "none"]
        dim = min(len(consumed), ndim - 1)
        if len(consumed) == ndim:
            del items[consumed[-1]]
        items.insert(consumed[-1] if len(consumed) == ndim else len(items), ("array", 0))
        arrays.append(np.array([0, shape[dim] - 1, -1]))
    return shape, items, arrays


def _index(items, arrays):
    return tuple(arrays[value] if kind == "array" else value for kind, value in items)


@settings(max_examples=150, deadline=None)
@given(gathers(), st.sampled_from(["float64", "float32", "int32"]), st.booleans())
def test_native_gather_matches_numpy_indexing(case, dtype, transposed):
    shape, items, arrays = case
    x = np.arange(np.prod(shape), dtype=dtype).reshape(shape[::-1] if transposed else shape)
    x = x.T if transposed else x
    try:
        expected = x[_index(items, arrays)]
    except IndexError:  # an index NumPy rejects (e.g. an array beyond the dimensions): not a gather
        return
    if expected.size == 0:
        return

    def gather(x, *arrays):
        return x[_index(items, arrays)] * 1

    got = cr.jit(gather, backend="llvm")(x, *arrays)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype


@pytest.mark.parametrize(
    "fn, indices",
    [
        (lambda x, i: x[i], (np.array([0, 5, -1, 2]),)),
        (lambda x, i: x[:, i], (np.array([[0, 4], [-2, 1]]),)),
        (lambda x, i, j: x[i, :, j], (np.array([0, 5, 3]), np.array([1, 3, 0]))),
        (lambda x, i, j: x[1:5:2, i, j], (np.array([0, 4, 3]), np.array([[1], [3]]))),
        (lambda x, i: x[None, 2, i], (np.array([0, 1]),)),
        (lambda x, i: x[::-1, i, None], (np.array([0, 3]),)),
    ],
)
def test_the_gradient_through_a_native_gather_is_the_numpy_backends(fn, indices):
    x = np.random.default_rng(0).normal(size=(6, 5, 4))

    def loss(x, *indices):
        return np.sum(np.sin(fn(x, *indices)) ** 2)

    _source_of_native_gather(fn, x, *indices)
    np.testing.assert_allclose(cr.grad(loss, backend="llvm")(x, *indices), cr.grad(loss)(x, *indices), rtol=1e-13)


@pytest.mark.parametrize("bad", [np.array([0, 6]), np.array([-7, 0])])
def test_an_index_out_of_range_raises_numpys_index_error(bad):
    x = np.ones((6, 5))
    _source_of_native_gather(lambda x, i: x[i], x, np.array([0, 1]))
    with pytest.raises(ChainruleError, match="out of bounds for axis 0 with size 6"):
        cr.jit(lambda x, i: x[i], backend="llvm")(x, bad)


def test_cross_entropy_with_integer_labels_gathers_natively():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(8, 5)), rng.integers(0, 5, 8)

    def loss(logits, labels):
        shifted = logits - np.max(logits, axis=1, keepdims=True)
        logp = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        return -np.mean(logp[np.arange(8), labels])

    source = cr.jit(loss, backend="llvm").source(logits, labels)
    assert "(native gather)" in source and "run by NumPy" not in source
    np.testing.assert_allclose(cr.jit(loss, backend="llvm")(logits, labels), loss(logits, labels), rtol=1e-14)
