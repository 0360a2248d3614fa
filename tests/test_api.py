"""The public API contract (DESIGN.md, "Public API"): argnums, pytrees, dtypes, static
arguments and the cache, value_and_grad, jit, trace, and the ways to look inside a
compiled function (.ir, .graph, .source, linecache, DOT).

Expected values are derived by hand (d/dx sum(x*y) = y, d/dx sin = cos, ...).
"""

import linecache
import traceback

import numpy as np
import pytest

import chainrule as cr
from chainrule.compiler.pipeline import STAGES


def dot_product(x, y):
    return np.sum(x * y)


X = np.array([1.0, 2.0, 3.0])
Y = np.array([0.5, -1.0, 4.0])


# ---- argnums ------------------------------------------------------------------------------


def test_argnums_int_differentiates_that_argument_only():
    np.testing.assert_array_equal(cr.grad(dot_product)(X, Y), Y)
    np.testing.assert_array_equal(cr.grad(dot_product, argnums=1)(X, Y), X)


def test_argnums_tuple_returns_a_tuple_of_gradients():
    grads = cr.grad(dot_product, argnums=(0, 1))(X, Y)
    assert isinstance(grads, tuple) and len(grads) == 2
    np.testing.assert_array_equal(grads[0], Y)
    np.testing.assert_array_equal(grads[1], X)


def test_argnums_tuple_in_reverse_order_returns_gradients_in_argnums_order():
    reversed_grads = cr.grad(dot_product, argnums=(1, 0))(X, Y)
    np.testing.assert_array_equal(reversed_grads[0], X)
    np.testing.assert_array_equal(reversed_grads[1], Y)


def test_a_one_element_argnums_tuple_still_returns_a_tuple():
    grads = cr.grad(dot_product, argnums=(1,))(X, Y)
    assert isinstance(grads, tuple) and len(grads) == 1
    np.testing.assert_array_equal(grads[0], X)


def test_negative_argnums_count_from_the_last_argument():
    np.testing.assert_array_equal(cr.grad(dot_product, argnums=-1)(X, Y), X)
    grads = cr.grad(dot_product, argnums=(-2, -1))(X, Y)
    np.testing.assert_array_equal(grads[0], Y)
    np.testing.assert_array_equal(grads[1], X)


# ---- pytrees and dtypes ---------------------------------------------------------------------


def nested_loss(params):
    W, (b, scale) = params["layer"]["W"], params["layer"]["rest"]
    h = np.tanh(W @ params["inputs"][0] + b)
    return np.sum(h * scale) + np.sum(params["inputs"][1] ** 2)


def nested_params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "layer": {
            "W": rng.normal(size=(3, 2)).astype(dtype),
            "rest": (rng.normal(size=(3,)).astype(dtype), rng.normal(size=(3,)).astype(dtype)),
        },
        "inputs": [rng.normal(size=(2,)).astype(dtype), rng.normal(size=(4, 1)).astype(dtype)],
    }


def nested_gradient_by_hand(p):
    W, (b, scale), (v, u) = p["layer"]["W"], p["layer"]["rest"], p["inputs"]
    h = np.tanh(W @ v + b)
    dz = scale * (1 - h**2)
    return {"layer": {"W": np.outer(dz, v), "rest": (dz, h)}, "inputs": [W.T @ dz, 2 * u]}


def assert_same_tree(actual, expected, rtol):
    """Same containers, same keys in the same order, same leaf shapes and dtypes, close values."""
    stack = [(actual, expected, "root")]
    while stack:
        a, e, path = stack.pop()
        assert type(a) is type(e), f"{path}: {type(a).__name__} != {type(e).__name__}"
        if isinstance(e, dict):
            assert list(a) == list(e), path
            stack.extend((a[k], e[k], f"{path}.{k}") for k in e)
        elif isinstance(e, (list, tuple)):
            assert len(a) == len(e), path
            stack.extend((x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, e)))
        else:
            assert a.shape == e.shape and a.dtype == e.dtype, f"{path}: {a.dtype}{a.shape} != {e.dtype}{e.shape}"
            np.testing.assert_allclose(a, e, rtol=rtol, err_msg=path)


def test_nested_pytree_gradient_has_the_parameters_structure_shapes_and_dtypes():
    params = nested_params()
    assert_same_tree(cr.grad(nested_loss)(params), nested_gradient_by_hand(params), rtol=1e-12)


def test_float32_parameters_give_float32_gradients_and_a_float32_graph():
    params = nested_params(np.float32)
    grads = cr.grad(nested_loss)(params)
    assert_same_tree(grads, nested_gradient_by_hand(params), rtol=1e-5)
    # Python scalars are weak (NumPy 2), so nothing is promoted to float64 along the way.
    assert "f64" not in cr.grad(nested_loss).ir(params)


def test_float32_mean_and_python_constants_stay_float32():
    x = np.linspace(-1, 1, 5).astype(np.float32)
    grad = cr.grad(lambda x: np.mean(np.tanh(x) * 2.0 + 1.0))(x)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, 2.0 * (1 - np.tanh(x) ** 2) / 5, rtol=1e-6)


def test_python_float_arguments_get_python_float_gradients():
    grads = cr.grad(lambda a, b: a * a * b, argnums=(0, 1))(3.0, 2.0)
    assert type(grads[0]) is float and type(grads[1]) is float
    assert grads == (12.0, 9.0)


def test_python_floats_inside_a_pytree_get_python_float_gradients():
    grads = cr.grad(lambda p: p["a"] * np.sum(p["v"]))({"a": 2.0, "v": np.array([1.0, 3.0])})
    assert type(grads["a"]) is float and grads["a"] == 4.0
    np.testing.assert_array_equal(grads["v"], [2.0, 2.0])


def test_numpy_scalar_arguments_get_numpy_scalar_gradients_of_their_dtype():
    grad = cr.grad(lambda a: a * a)(np.float32(3.0))
    assert type(grad) is np.float32 and grad == 6.0


# ---- static arguments and the cache -------------------------------------------------------


def power_sum(x, n, mode):
    if mode == "power":  # a Python value: the branch is taken while tracing
        return np.sum(x**n)
    return np.sum(x)


def test_python_ints_are_traced_and_strings_are_static_and_key_the_cache():
    f = cr.grad(power_sum)
    np.testing.assert_allclose(f(X, 2, "power"), 2 * X, rtol=1e-15)
    assert len(f._cache) == 1
    np.testing.assert_allclose(f(X, 2, "power"), 2 * X, rtol=1e-15)
    assert len(f._cache) == 1  # same values: a cache hit
    np.testing.assert_allclose(f(X, 3, "power"), 3 * X**2, rtol=1e-15)
    assert len(f._cache) == 1  # another int: traced, so the same kernel
    np.testing.assert_array_equal(f(X, 3, "sum"), np.ones(3))
    assert len(f._cache) == 2  # another string: static, recompiled
    g = cr.grad(power_sum, static_argnums=1)
    g(X, 2, "power"), g(X, 3, "power")
    assert len(g._cache) == 2  # a static int: recompiled


def test_a_new_shape_or_dtype_compiles_a_new_specialization():
    f = cr.grad(lambda x: np.sum(x * x))
    f(np.ones(3))
    f(np.ones(3) * 2)
    assert len(f._cache) == 1
    f(np.ones(4))
    f(np.ones(3, np.float32))
    assert len(f._cache) == 3


# ---- value_and_grad and jit ----------------------------------------------------------------


def test_value_and_grad_returns_the_value_and_the_gradients():
    value, grads = cr.value_and_grad(dot_product)(X, Y)
    assert value == pytest.approx(np.sum(X * Y), rel=1e-15)
    np.testing.assert_array_equal(grads, Y)

    value, (gx, gy) = cr.value_and_grad(dot_product, argnums=(0, 1))(X, Y)
    assert value == pytest.approx(0.5 - 2.0 + 12.0, rel=1e-15)
    np.testing.assert_array_equal(gx, Y)
    np.testing.assert_array_equal(gy, X)


def test_jit_keeps_the_pytree_structure_of_the_outputs():
    def stats(x):
        return {"total": np.sum(x), "parts": [x * 2, (np.tanh(x), x[1:])]}

    out = cr.jit(stats)(X)
    expected = {"total": np.sum(X), "parts": [X * 2, (np.tanh(X), X[1:])]}
    assert list(out) == ["total", "parts"]
    assert isinstance(out["parts"], list) and isinstance(out["parts"][1], tuple)
    np.testing.assert_allclose(out["total"], expected["total"], rtol=1e-15)
    np.testing.assert_allclose(out["parts"][0], expected["parts"][0], rtol=1e-15)
    np.testing.assert_allclose(out["parts"][1][0], expected["parts"][1][0], rtol=1e-15)
    np.testing.assert_array_equal(out["parts"][1][1], expected["parts"][1][1])


# ---- trace, ir, graph, source ---------------------------------------------------------------


def name(x):
    return np.sum(np.sin(x))


def test_trace_returns_a_graph_whose_text_dump_starts_with_a_typed_signature():
    graph = cr.trace(name, X)
    assert isinstance(graph, cr.Graph)
    text = str(graph)
    assert text.splitlines()[0] == "def name(x: f64[3]) -> f64[]:"
    assert "sin x" in text and "sum" in text
    assert text.splitlines()[-1].strip().startswith("return ")


def test_ir_and_graph_are_available_for_every_stage():
    f = cr.grad(name)
    assert STAGES == ("traced", "grad", "simplified", "checkpointed", "fused", "scheduled")
    for stage in STAGES:
        graph = f.graph(X, stage=stage)
        assert isinstance(graph, cr.Graph)
        assert f.ir(X, stage=stage) == str(graph)
    assert "cos x" in f.ir(X, stage="grad")  # sin' = cos appears once differentiated
    assert "cos" not in f.ir(X, stage="traced")
    assert f.ir(X) == f.ir(X, stage="scheduled")
    assert f.ir(X, stage="traced").splitlines()[0] == "def name(x: f64[3]) -> f64[]:"


def layer(W, X):
    Z = W @ X
    A = np.tanh(Z)
    return np.sum(A * A)


LAYER_ARGS = (np.full((2, 3), 0.1), np.ones((3, 4)))


def statements(source):
    return [
        line for line in source.splitlines()[1:] if line.strip() and not line.strip().startswith(("return", "del "))
    ]


def test_source_is_python_named_after_the_users_variables():
    source = cr.grad(layer).source(*LAYER_ARGS)
    assert source.startswith("def ")
    assert "dZ = " in source and "dA = " in source and "dW = " in source


def test_every_backward_line_of_the_source_names_the_forward_op_it_differentiates():
    grad_lines = statements(cr.grad(layer).source(*LAYER_ARGS))
    forward_lines = statements(cr.jit(layer).source(*LAYER_ARGS))
    assert not any("# d " in line for line in forward_lines)
    backward_lines = [line for line in grad_lines if "# d " in line]
    # What is not commented "# d ..." is the forward computation, commented with its source line
    # (fusion may group it differently from the forward-only code, which needs fewer values).
    assert all("# test_api.py:" in line for line in grad_lines if "# d " not in line)
    assert all("# test_api.py:" in line for line in forward_lines)
    for line in grad_lines:
        target = line.split("=")[0].strip()
        if target in ("dZ", "dA", "dW"):
            assert "# d " in line, line
    assert any("# d tanh A at test_api.py:" in line for line in backward_lines)
    assert any("# d matmul Z at test_api.py:" in line for line in backward_lines)


def test_generated_source_is_registered_with_linecache():
    f = cr.grad(layer)
    f(*LAYER_ARGS)
    (entry,) = f._cache.values()
    filename = entry.kernel.filename
    assert linecache.getline(filename, 1).startswith("def ")
    assert "".join(linecache.getlines(filename)) == f.source(*LAYER_ARGS)


def test_an_error_inside_generated_code_shows_the_generated_line_in_the_traceback():
    f = cr.grad(lambda x: np.sum(x * np.log(x)))  # its gradient, log(x) + 1, reads np.log(x) too
    f(np.ones(2))
    (entry,) = f._cache.values()
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError) as info:
        f(np.zeros(2))
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert frame.filename == entry.kernel.filename
    assert "np.log(x)" in frame.line


# ---- higher order, constants, aliasing ------------------------------------------------------


def sin(x):
    return np.sin(x)


def cube(x):
    return x**3


def test_grad_of_a_grad_inside_a_function_is_the_second_derivative():
    d_sin = cr.grad(sin)
    assert cr.grad(lambda x: d_sin(x))(0.5) == pytest.approx(-np.sin(0.5), rel=1e-14)
    d_cube = cr.grad(cube)
    assert cr.grad(lambda x: d_cube(x))(3.0) == pytest.approx(18.0, rel=1e-14)  # (x^3)'' = 6x
    d_sum_sin = cr.grad(lambda x: np.sum(np.sin(x)))
    v = np.array([0.1, 0.7, -2.0])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(d_sum_sin(x)))(v), -np.sin(v), rtol=1e-14)


def test_grad_of_grad_is_the_second_derivative():
    assert cr.grad(cr.grad(sin))(0.5) == pytest.approx(-np.sin(0.5), rel=1e-14)
    assert cr.grad(cr.grad(cube))(3.0) == pytest.approx(18.0, rel=1e-14)


def test_grad_of_grad_has_its_own_function_and_cache():
    inner = cr.grad(sin)
    outer = cr.grad(inner)
    assert outer.fn is inner and outer._cache is not inner._cache


def test_a_function_that_ignores_its_argument_has_a_zero_gradient():
    grad = cr.grad(lambda x: 3.0)(X)
    np.testing.assert_array_equal(grad, np.zeros(3))
    assert grad.shape == X.shape and grad.dtype == X.dtype
    grad = cr.grad(lambda x, y: np.sum(y * y))(X, Y)
    np.testing.assert_array_equal(grad, np.zeros(3))
    assert cr.grad(lambda a: 7.0)(2.0) == 0.0


def test_returned_gradients_are_writable_and_never_alias_the_inputs():
    ones = cr.grad(np.sum)(X)
    np.testing.assert_array_equal(ones, np.ones(3))
    assert ones.flags.writeable
    ones[0] = 5.0  # and writing to it changes nothing else
    np.testing.assert_array_equal(cr.grad(np.sum)(X), np.ones(3))

    x, y = X.copy(), Y.copy()
    dx = cr.grad(dot_product)(x, y)  # d/dx sum(x * y) is y itself
    assert dx is not y and not np.shares_memory(dx, y) and dx.flags.writeable
    # Gradients built by views (transpose, broadcast, scatter into zeros) are still writable.
    assert cr.grad(lambda a: np.sum(a.T))(np.ones((2, 3))).flags.writeable
    assert cr.grad(lambda a: np.sum(a[0]))(np.ones((2, 3))).flags.writeable
    assert cr.grad(lambda a: np.sum(np.broadcast_to(a, (4, 3))))(np.ones(3)).flags.writeable


def test_jit_of_an_identity_returns_a_writable_copy_not_the_input():
    x = X.copy()
    out = cr.jit(lambda a: a)(x)
    assert out is not x and not np.shares_memory(out, x) and out.flags.writeable
    tree = cr.jit(lambda p: {"w": p["w"], "t": p["w"].T})({"w": np.ones((2, 3))})
    assert tree["w"].flags.writeable and tree["t"].flags.writeable
    assert not np.shares_memory(tree["w"], tree["t"])


def test_gradients_that_are_the_same_value_are_still_distinct_arrays():
    # d/da and d/db of sin(a + b) are one IR node; the caller must still get two arrays.
    da, db = cr.grad(lambda a, b: np.sum(np.sin(a + b)), argnums=(0, 1))(X, Y)
    assert da is not db and not np.shares_memory(da, db)


# ---- the graph itself -------------------------------------------------------------------------


def test_graph_verify_passes_on_traced_and_differentiated_graphs():
    cr.trace(layer, *LAYER_ARGS).verify()
    for stage in STAGES:
        cr.grad(layer).graph(*LAYER_ARGS, stage=stage).verify()
    cr.grad(nested_loss).graph(nested_params(), stage="grad").verify()


def test_to_dot_is_graphviz_text_mentioning_every_op_and_input():
    graph = cr.grad(layer).graph(*LAYER_ARGS, stage="grad")
    dot = graph.to_dot()
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")
    assert "->" in dot
    for op in ("matmul", "tanh", "mul", "sum"):  # the forward ops of `layer`
        assert f" {op}\\n" in dot, op
    for node_id in graph.live_nodes():
        node = graph[node_id]
        label = node.name if node.op == "input" else f"%{node_id} {node.op}"
        assert f'label="{label}\\n' in dot, label


def test_a_transformation_made_again_for_the_same_function_reuses_its_kernels():
    def loss(w, x):
        return np.sum(np.tanh(x @ w) ** 2)

    w, x = np.ones((3, 2)), np.ones((4, 3))
    first = cr.grad(loss)
    expected = first(w, x)
    again = cr.grad(loss)
    assert len(again._cache) == 1  # found, not compiled
    specialization = next(iter(again._cache.values()))
    np.testing.assert_array_equal(again(w, x), expected)
    assert next(iter(again._cache.values())) is specialization
    assert len(cr.grad(loss, backend="llvm")._cache) == 0  # other options, other kernels
    assert len(cr.value_and_grad(loss)._cache) == 0
