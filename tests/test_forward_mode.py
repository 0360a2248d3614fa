"""Forward mode: every primitive's JVP against finite differences, and JVP against VJP.

The primitive cases are the op-gradient test's table (``test_op_gradients.CASES``):
each case is a scalar ``weighted_sum(op(...))``, so its JVP along a random
tangent t is the directional derivative, checked against a fourth-order central
difference of the case's function along t, computed eagerly in float64 here.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import relative_error
from hypothesis import given, settings
from hypothesis import strategies as st
from test_op_gradients import CASES, DIFFERENTIABLE_KINDS, Case, ops_traced

import chainrule as cr
import chainrule.nn as nn
from chainrule.compiler.forward import forward
from chainrule.errors import ArgumentError
from chainrule.ir import OPS
from chainrule.transforms.higher_order import Linearized


def directional_difference(fn, args, argnums, tangents, step=1e-4):
    """d/dh fn(args + h * tangents) at h = 0, by the fourth-order central difference in float64."""
    args = [np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in args]

    def value_at(h):
        shifted = list(args)
        for argnum, tangent in zip(argnums, tangents):
            shifted[argnum] = args[argnum] + h * tangent
        return float(fn(*shifted))

    h = step  # the tangents are O(1), and the functions vary on a scale of 1 whatever the arguments' size
    return (8 * (value_at(h) - value_at(-h)) - (value_at(2 * h) - value_at(-2 * h))) / (12 * h)


def random_tangents(c: Case, seed=11):
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, size=np.shape(c.args[a])) for a in c.argnums)


def case_jvp(c: Case, args, tangents):
    """chainrule's (value, JVP) of the case's function along ``tangents`` (one per argnum)."""
    return Linearized(c.fn, "jvp", c.argnums)(*args, tangents)


def test_every_differentiable_non_elementwise_op_has_a_forward_mode_case():
    # elementwise ops: forward against reverse mode at points from their domains, in test_table_elementwise.py
    required = {
        name
        for name, op in OPS.items()
        if op.vjp is not None and op.kind in DIFFERENTIABLE_KINDS and not op.is_elementwise
    }
    assert not required - {c.covers for c in CASES}


def test_every_differentiable_op_has_a_jvp_rule_or_derives_one():
    for name, op in OPS.items():
        if op.vjp is not None and op.kind in DIFFERENTIABLE_KINDS:
            assert op.jvp is not None or op.is_elementwise, f"{name}: no JVP rule, and not elementwise"


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_jvp_matches_directional_finite_differences(c: Case):
    if c.covers is not None:
        assert c.covers in ops_traced(c.fn, *c.args)
    tangents = random_tangents(c)
    value, tangent_out = case_jvp(c, c.args, tangents)
    np.testing.assert_allclose(value, c.fn(*c.args), rtol=1e-12)
    if c.expected is not None:  # where finite differences do not apply: <gradient written out, t>
        expected = sum(np.sum(g * t) for g, t in zip(c.expected(*c.args), tangents))
        float32_output = np.asarray(tangent_out).dtype == np.float32  # a cast to float32 rounds the tangent
        np.testing.assert_allclose(tangent_out, expected, rtol=1e-6 if float32_output else 1e-12, atol=1e-14)
    else:
        numeric = directional_difference(c.fn, c.args, c.argnums, tangents)
        error = relative_error(tangent_out, numeric)
        assert error < 1e-7, f"JVP {tangent_out} but finite differences {numeric} (relative error {error:.1e})"


@pytest.mark.parametrize("name", ["sin", "tanh", "matmul", "max", "getitem", "concatenate"])
def test_float32_tangents_stay_float32(name):
    c = next(c for c in CASES if c.covers == name and c.expected is None)
    args = tuple(a.astype(np.float32) if np.asarray(a).dtype.kind == "f" else a for a in c.args)
    tangents = tuple(t.astype(np.float32) for t in random_tangents(c))
    value, tangent_out = case_jvp(c, args, tangents)
    assert np.asarray(tangent_out).dtype == np.float32 and np.asarray(value).dtype == np.float32
    numeric = directional_difference(c.fn, args, c.argnums, tangents)
    np.testing.assert_allclose(tangent_out, numeric, rtol=1e-4, atol=1e-4)


# ---- conventions at kinks agree with reverse mode ---------------------------------------------


def test_max_tangent_at_a_tie_is_the_mean_of_the_tied_tangents():
    _, tangent = cr.jvp(np.max, (np.array([1.0, 3.0, 3.0]),), (np.array([5.0, 2.0, 4.0]),))
    assert tangent == 3.0  # the VJP splits the gradient evenly: <[0, .5, .5], t>


def test_relu_tangent_at_zero_is_zero():
    _, tangent = cr.jvp(nn.relu, (np.array([-1.0, 0.0, 2.0]),), (np.ones(3),))
    np.testing.assert_array_equal(tangent, [0.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "fn",
    [
        lambda w: np.concatenate([w, np.arange(2)]) ** 2,
        lambda w: np.stack([w[0], np.asarray(2), np.asarray(True)]),
    ],
    ids=["concatenate", "stack"],
)
def test_an_integer_operand_of_a_linear_op_has_a_zero_tangent(fn):
    # it is data, not an index: its tangent once was the integers themselves
    x, t = np.array([0.7, -0.2]), np.array([-1.0, 1.0])
    _, tangent = cr.jvp(fn, (x,), (t,))
    np.testing.assert_allclose(tangent, cr.jacobian(fn, mode="rev")(x) @ t, rtol=1e-15)


# ---- the API -----------------------------------------------------------------------------------


def test_jvp_of_sin_is_cos_times_tangent_and_keeps_structure():
    params = {"a": np.array([0.1, 0.2]), "b": 0.5}
    tangents = {"a": np.array([1.0, -2.0]), "b": 3.0}
    out, tangent = cr.jvp(lambda p: {"s": np.sin(p["a"]) * p["b"]}, (params,), (tangents,))
    assert set(out) == {"s"} and set(tangent) == {"s"}
    expected = np.cos(params["a"]) * tangents["a"] * 0.5 + np.sin(params["a"]) * 3.0
    np.testing.assert_allclose(tangent["s"], expected, rtol=1e-14)


def test_jvp_with_respect_to_several_arguments_sums_their_contributions():
    x, y = np.array([0.3, 0.7]), np.array([1.5, -0.5])
    tx, ty = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    _, tangent = cr.jvp(lambda x, y: x * y + np.exp(y), (x, y), (tx, ty))
    np.testing.assert_allclose(tangent, tx * y + x * ty + np.exp(y) * ty, rtol=1e-14)


def test_jvp_rejects_a_tangent_of_the_wrong_shape_naming_the_argument():
    with pytest.raises(ArgumentError, match=r"tangent for x.*f64\[3\].*f64\[2\]"):
        cr.jvp(lambda x: np.sin(x), (np.zeros(2),), (np.zeros(3),))
    with pytest.raises(ArgumentError, match="one tangent per argument"):
        cr.jvp(lambda x, y: x * y, (np.zeros(2), np.zeros(2)), (np.zeros(2),))


def test_jvp_graph_is_an_ordinary_graph_with_named_tangents():
    compiled = Linearized(lambda x: np.tanh(x) * 2.0, "jvp", 0)
    x = np.array([0.5, -0.25])
    text = compiled.ir(x, x, stage="jvp")
    assert "tx: f64[2]" in text and "tanh" in text
    assert "tx" in compiled.source(x, x)
    stages = list(compiled._specialize((x, x))[0].compilation.graphs)
    assert stages == ["traced", "jvp", "simplified", "checkpointed", "fused", "scheduled"]


def test_forward_transform_gives_zero_tangents_to_outputs_independent_of_the_inputs():
    graph = cr.trace(lambda x, y: (np.sin(x), y * 2.0), np.zeros(2), np.zeros(2))
    jvp_graph = forward(graph, [0])
    jvp_graph.verify()
    assert [jvp_graph[i].name for i in jvp_graph.inputs] == ["x", "y", "tx"]
    assert jvp_graph[jvp_graph.outputs[-1]].op == "zeros"


# ---- JVP and VJP are each other's transpose: <u, J v> both ways on random programs -----------------

UNARY = [
    np.sin,
    np.cos,
    np.tanh,
    np.arctan,
    nn.sigmoid,
    nn.softplus,
    lambda x: x * x,
    lambda x: np.sum(x, axis=0, keepdims=True) + x,
    lambda x: np.max(x, axis=1, keepdims=True) * x,
    lambda x: (x.T @ x)[:3, :] if x.shape == (3, 4) else x,
    lambda x: np.concatenate([x[:, 1:], x[:, :1]], 1),
]
BINARY = [np.add, np.subtract, np.multiply, np.maximum, lambda a, b: a * np.exp(-b * b)]


@st.composite
def programs(draw):
    steps = []
    for _ in range(draw(st.integers(1, 10))):
        if draw(st.booleans()):
            steps.append((draw(st.sampled_from(range(len(UNARY)))), draw(st.integers(0, 1 + len(steps))), None))
        else:
            steps.append(
                (
                    draw(st.sampled_from(range(len(BINARY)))),
                    draw(st.integers(0, 1 + len(steps))),
                    draw(st.integers(0, 1 + len(steps))),
                )
            )
    outputs = draw(st.lists(st.integers(0, 1 + len(steps)), min_size=1, max_size=2))
    return steps, outputs


def run_program(program, x, y):
    steps, outputs = program
    values = [x, y]
    for function, a, b in steps:
        values.append(UNARY[function](values[a]) if b is None else BINARY[function](values[a], values[b]))
    return tuple(values[i] for i in outputs)


@settings(max_examples=25, deadline=None)
@given(programs(), st.integers(0, 2**16))
def test_jvp_and_vjp_agree_on_random_programs(program, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (3, 4))
    v = (rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (3, 4)))

    def fn(x, y):
        return run_program(program, x, y)

    out, jv = cr.jvp(fn, (x, y), v)
    u = tuple(rng.uniform(-1, 1, np.shape(o)) for o in out)
    _, vjp_fn = cr.vjp(fn, x, y)
    ujt = vjp_fn(u)
    forward_side = sum(np.sum(a * b) for a, b in zip(u, jv))
    reverse_side = sum(np.sum(a * b) for a, b in zip(ujt, v))
    np.testing.assert_allclose(forward_side, reverse_side, rtol=1e-10, atol=1e-12)
    # and whole Jacobians, each mode's passes vectorized into one program
    by_columns, by_rows = cr.jacobian(fn, mode="fwd")(x, y), cr.jacobian(fn, mode="rev")(x, y)
    for a, b in zip(by_columns, by_rows):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)

    # forward over reverse: a Hessian is symmetric, <u, H v> = <v, H u>
    def scalar(x):
        return sum(np.sum(w * o) for w, o in zip(u, fn(x, y)))

    hvp = cr.hvp(scalar)
    a, b = rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (3, 4))
    np.testing.assert_allclose(np.sum(a * hvp(x, b)), np.sum(b * hvp(x, a)), rtol=1e-9, atol=1e-11)


# ---- chainrule dump shows the jvp stage ----------------------------------------------------------


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(
        "import numpy as np\n\n"
        "def loss(w, x):\n"
        "    return np.sum(np.tanh(x @ w) ** 2)\n\n"
        "def example_args():\n"
        "    return np.full((3, 2), 0.1), np.ones((4, 3))\n"
    )
    return path


def test_dump_hvp_shows_forward_over_reverse_stages(model_file, capsys):
    from chainrule.cli.main import main

    assert main(["dump", f"{model_file}:loss", "--hvp", "--stage", "all"]) == 0
    out = capsys.readouterr().out
    headers = [line.split(":")[0].strip("= ") for line in out.splitlines() if line.startswith("=== ")]
    assert headers == ["traced", "grad", "jvp", "simplified", "checkpointed", "fused", "scheduled"]
    assert "def loss_grad_jvp(w: f64[3,2], x: f64[4,3], tw: f64[3,2]) -> f64[3,2]:" in out
    assert main(["dump", f"{model_file}:loss", "--jvp", "--stage", "jvp"]) == 0
    assert "tw: f64[3,2]" in capsys.readouterr().out
    assert main(["dump", f"{model_file}:loss", "--stage", "jvp"]) == 2
    assert "add --jvp or --hvp" in capsys.readouterr().err


def test_jvp_and_hvp_of_a_chain_far_deeper_than_the_recursion_limit():
    import sys

    depth = 2 * sys.getrecursionlimit()  # any recursion over the graph would die here

    def chain(x):
        for _ in range(depth):
            x = np.sin(x)
        return np.sum(x)

    x, first, second = 0.7, 1.0, 0.0
    for _ in range(depth):  # by hand: y' = cos(x) x', y'' = -sin(x) x'^2 + cos(x) x''
        first, second = np.cos(x) * first, -np.sin(x) * first**2 + np.cos(x) * second
        x = np.sin(x)
    _, tangent = cr.jvp(chain, (np.array([0.7]),), (np.ones(1),))
    np.testing.assert_allclose(tangent, [first], rtol=1e-11)
    np.testing.assert_allclose(cr.hvp(chain)(np.array([0.7]), np.ones(1)), [second], rtol=1e-10)
