"""The cost model (DESIGN.md, "Passes", ``cost``): FLOPs per node, bytes moved, forward against backward.

Every expected count is worked out by hand from seed 000's conventions: a matmul of
an N×M by an M×T matrix costs N·M·T multiplications + (M−1)·N·T additions, and
backward propagation costs about 2 times forward propagation.
"""

import math

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as crnn
from chainrule.compiler import pipeline
from chainrule.compiler.cost import VIEW_OPS, cost_report, format_bytes, format_flops, node_cost
from chainrule.ir import Graph, TensorType


def seed_matmul_flops(N, M, T):
    """Seed 000: N·M·T multiplications + (M−1)·N·T additions."""
    return N * M * T + (M - 1) * N * T


def single_op_graph(op, operand_shapes, attrs=None, dtype="float64"):
    graph = Graph(op)
    inputs = [graph.add_input(TensorType(shape, dtype), f"x{i}") for i, shape in enumerate(operand_shapes)]
    out = graph.add(op, inputs, attrs)
    graph.set_outputs([out])
    return graph, out


def flops_of(op, operand_shapes, attrs=None):
    graph, out = single_op_graph(op, operand_shapes, attrs)
    return node_cost(graph, out).flops


def traced_op_flops(fn, *args):
    """FLOPs of the nodes a traced function adds (one op, for the elementwise tests)."""
    return cr.jit(fn).cost(*args).forward_flops


# ---- matmul: seed 000's formula ----------------------------------------------------------


def test_matmul_of_the_seeds_3x5_by_5x1_example_costs_27_flops():
    # seed 000: 15 multiplications + 12 accumulations = 27 FLOPs
    assert flops_of("matmul", [(3, 5), (5, 1)]) == 27 == seed_matmul_flops(3, 5, 1)


@pytest.mark.parametrize(
    "a_shape, b_shape, N, M, T",
    [
        ((4, 7), (7, 3), 4, 7, 3),
        ((1, 1), (1, 1), 1, 1, 1),  # one multiplication, no addition
        ((128, 784), (784, 256), 128, 784, 256),
        ((5,), (5, 2), 1, 5, 2),  # a 1-D left operand is one row
        ((3, 5), (5,), 3, 5, 1),  # a 1-D right operand is one column
        ((6,), (6,), 1, 6, 1),  # the dot product: 6 multiplications + 5 additions
    ],
)
def test_matmul_flops_equal_the_seeds_formula(a_shape, b_shape, N, M, T):
    assert flops_of("matmul", [a_shape, b_shape]) == seed_matmul_flops(N, M, T)


def test_a_batched_matmul_costs_one_seed_matmul_per_batch_element():
    assert flops_of("matmul", [(2, 3, 5), (5, 4)]) == 2 * seed_matmul_flops(3, 5, 4)
    assert flops_of("matmul", [(6, 1, 3, 5), (2, 5, 4)]) == 12 * seed_matmul_flops(3, 5, 4)


def test_a_matmul_over_an_empty_inner_dimension_costs_nothing():
    assert flops_of("matmul", [(3, 0), (0, 4)]) == 0


# ---- elementwise ops, reductions, indexing -----------------------------------------------

A34 = np.ones((3, 4))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x + 1.0,
        lambda x: x * x,
        lambda x: np.exp(x),
        lambda x: np.tanh(x),
        lambda x: x**3.0,
        lambda x: np.maximum(0, x),
        lambda x: np.where(x > 0, x, 2.0 * x) - 2.0 * x,
    ],
)
def test_an_elementwise_op_costs_one_flop_per_result_element_transcendental_or_not(fn):
    graph = cr.trace(fn, A34)
    for node_id in graph.live_nodes():
        if graph[node_id].op not in VIEW_OPS:
            assert node_cost(graph, node_id).flops == 12, graph[node_id].op


def test_a_broadcast_elementwise_op_counts_the_elements_of_its_result():
    assert flops_of("add", [(3, 4), (4,)]) == 12
    assert flops_of("mul", [(5, 1), (1, 6)]) == 30


def test_sigmoid_costs_what_its_spelled_out_definition_costs():
    x = np.ones(10)
    spelled_out = traced_op_flops(lambda z: 1.0 / (1.0 + np.exp(-z)), x)  # neg, exp, add, div
    assert spelled_out == 40
    assert traced_op_flops(crnn.sigmoid, x) == spelled_out
    assert traced_op_flops(crnn.softplus, x) == 30  # exp, add, log


def test_clip_is_a_max_and_a_min_and_where_is_one_select():
    assert traced_op_flops(lambda x: np.clip(x, -1.0, 1.0), A34) == 24
    assert flops_of("where", [(3, 4), (3, 4), (3, 4)]) == 12


def test_ops_without_arithmetic_cost_no_flops():
    assert flops_of("cast", [(3, 4)], {"dtype": "float32"}) == 0
    assert flops_of("stop_gradient", [(3, 4)]) == 0
    assert flops_of("transpose", [(3, 4)], {"axes": (1, 0)}) == 0
    assert flops_of("reshape", [(3, 4)], {"shape": (12,)}) == 0
    assert flops_of("concatenate", [(3, 4), (2, 4)], {"axis": 0}) == 0


@pytest.mark.parametrize(
    "fn, expected",
    [
        (lambda x: np.sum(x, axis=1), 3 * (4 - 1)),  # 3 rows of 4: 3 additions each
        (lambda x: np.sum(x, axis=0), 4 * (3 - 1)),
        (lambda x: np.sum(x), 12 - 1),
        (lambda x: np.max(x, axis=1, keepdims=True), 3 * (4 - 1)),  # comparisons
        (lambda x: np.mean(x), (12 - 1) + 1),  # a sum and one division
    ],
)
def test_a_reduction_of_n_elements_costs_n_minus_1_per_result(fn, expected):
    assert traced_op_flops(fn, A34) == expected


def test_scatter_add_costs_one_addition_per_element_scattered_even_from_a_broadcast_value():
    labels = np.array([0, 2, 1, 2])

    def picked(x):
        return np.sum(x[np.arange(4), labels])

    graph = cr.grad(picked).graph(A34)
    scatters = [node_id for node_id in graph.live_nodes() if graph[node_id].op == "scatter_add"]
    assert len(scatters) == 1
    assert node_cost(graph, scatters[0]).flops == 4  # four picked elements, whatever the value's shape


# ---- bytes moved ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.reshape(12) + 0.0,
        lambda x: x.T,
        lambda x: np.broadcast_to(x[0], (5, 4)),
        lambda x: x[1:, ::2],
        lambda x: cr.stop_gradient(x),
    ],
)
def test_views_and_sources_move_no_bytes(fn):
    graph = cr.trace(fn, A34)
    for node_id in graph.live_nodes():
        node = graph[node_id]
        if node.op in VIEW_OPS or node.op == "getitem":
            assert node_cost(graph, node_id).bytes == 0, node.op


def test_a_computing_op_moves_its_operands_read_and_its_result_written():
    # f64: [3,4] is 96 bytes, [4] is 32
    graph, out = single_op_graph("add", [(3, 4), (4,)])
    assert node_cost(graph, out).bytes == 96 + 32 + 96
    square = Graph("square")
    x = square.add_input(TensorType((3, 4), "float64"), "x")
    y = square.add("mul", (x, x))
    assert node_cost(square, y).bytes == 96 + 96  # x*x reads x once
    graph, out = single_op_graph("sum", [(3, 4)], {"axis": (1,), "keepdims": False}, dtype="float32")
    assert node_cost(graph, out).bytes == 48 + 12


def test_a_gather_with_index_arrays_moves_bytes():
    labels = np.array([0, 2, 1])
    graph = cr.trace(lambda x: x[np.arange(3), labels], A34)
    (gather,) = [i for i in graph.live_nodes() if graph[i].op == "getitem"]
    # x (96 bytes) and two int64[3] index arrays (24 each) read, f64[3] (24) written
    assert node_cost(graph, gather).bytes == 96 + 24 + 24 + 24


# ---- forward against backward ------------------------------------------------------------


def test_nodes_the_outputs_do_not_need_are_not_counted():
    graph = Graph("f")
    x = graph.add_input(TensorType((10,), "float64"), "x")
    graph.add("exp", (x,))  # dead: never runs
    graph.set_outputs([graph.add("sin", (x,))])
    assert cost_report(graph).flops == 10


def test_a_forward_only_function_has_no_backward_flops():
    report = cr.jit(lambda x: np.sum(np.sin(x))).cost(A34)
    assert report.forward_flops == 12 + 11 and report.backward_flops == 0
    assert report.backward_to_forward == 0.0


def test_backward_nodes_are_those_with_an_origin():
    g = cr.grad(lambda x: np.sum(np.sin(x)))
    graph = g.graph(A34)
    report = g.cost(A34)
    assert report.nodes and all((row.phase == "backward") == (graph[row.id].origin is not None) for row in report.nodes)
    # forward: sin (12) + sum (11); backward: cos (12) — the cotangent is 1, and g * 1 is no node
    assert report.forward_flops == 23
    assert report.backward_flops == 12
    assert math.isclose(report.backward_to_forward, 12 / 23)


def test_cost_defaults_to_the_last_stage_and_takes_any_other():
    g = cr.grad(lambda x: np.sum(np.sin(x)))
    assert g.cost(A34) == cost_report(g.graph(A34, stage=pipeline.STAGES[-1]))
    assert g.cost(A34, stage="traced").backward_flops == 0
    with pytest.raises(cr.ChainruleError, match="unknown stage"):
        g.cost(A34, stage="no such stage")


# The seed 002 network, 12.10.1 (column-major Z = W·A + b, ReLU hidden, sigmoid out, mean binary
# cross-entropy), without the 1e-8 inside the logs and the clip before the sigmoid: the exact
# function, whose forward pass is the seed's step for step.


def seed_network_loss(parameters, X, Y):
    L = len(parameters) // 2
    A = X
    for l in range(1, L + 1):
        Z = np.dot(parameters[f"W{l}"], A) + parameters[f"b{l}"]
        A = np.maximum(0, Z) if l < L else 1.0 / (1.0 + np.exp(-Z))
    m = Y.shape[1]
    return -(1 / m) * np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A))


def seed_network_problem(layer_dims=(2, 16, 8, 1), m=400):
    rng = np.random.RandomState(0)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters[f"W{l}"] = rng.randn(layer_dims[l], layer_dims[l - 1]) * 0.5
        parameters[f"b{l}"] = rng.randn(layer_dims[l], 1) * 0.1
    X = rng.randn(layer_dims[0], m)
    Y = (rng.rand(1, m) > 0.5).astype(float)
    return parameters, X, Y


def matmul_flops(report, phase):
    return sum(row.flops for row in report.nodes if row.op == "matmul" and row.phase == phase)


def test_seed_network_backward_costs_about_twice_its_forward():
    parameters, X, Y = seed_network_problem()
    g = cr.grad(seed_network_loss)
    report = g.cost(parameters, X, Y)
    m = 400
    # Forward matmuls, W[l] (n_l x n_l-1) times A (n_l-1 x m): 19,200 + 99,200 + 6,000.
    forward_matmuls = seed_matmul_flops(16, 2, m) + seed_matmul_flops(8, 16, m) + seed_matmul_flops(1, 8, m)
    assert forward_matmuls == 124_400
    # Backward: dW[l] = dZ[l] · A[l-1].T (n_l x m by m x n_l-1) for every layer, and
    # dA[l-1] = W[l].T · dZ[l] for layers 2 and 3 only: X is not differentiated, so the
    # seed's backward stops at dW1 (its `if l > 1`) and chainrule does not compute dX either.
    backward_matmuls = (
        seed_matmul_flops(16, m, 2)
        + seed_matmul_flops(8, m, 16)
        + seed_matmul_flops(1, m, 8)
        + seed_matmul_flops(16, 8, m)
        + seed_matmul_flops(8, 1, m)
    )
    assert backward_matmuls == 25_568 + 102_272 + 6_392 + 96_000 + 3_200 == 233_432
    assert matmul_flops(report, "forward") == forward_matmuls
    assert matmul_flops(report, "backward") == backward_matmuls
    # The forward pass in full, per element of the [16,400], [8,400] and [1,400] layers: bias add
    # and relu (2 x 6,400 + 2 x 3,200), bias add and sigmoid as neg, exp, add, div (5 x 400), the
    # loss's 2 logs, 2 muls, 2 subs, 1 add (7 x 400), its sum (399) and the scaling by -1/m (1):
    # 124,400 + 19,200 + 2,000 + 2,800 + 400 = 148,800. The traced graph is exactly that.
    assert g.cost(parameters, X, Y, stage="traced").forward_flops == 148_800
    # Backward, as reverse mode builds it today: 233,432 in matmuls; the loss's derivative (6 ops
    # x 400) and the sigmoid's (5 x 400); db[l] sums (399 + 3,192 + 6,384); per relu a compare
    # and a select (2 x 3,200 + 2 x 6,400): 233,432 + 4,400 + 9,975 + 19,200 = 267,007, so
    # backward / forward = 267,007 / 148,800 = 1.794.
    # It is not exactly 2: the first layer's dX is never computed (24,800 FLOPs more would
    # give 1.96), a dW matmul sums over the batch (2m - 1 per element) where forward sums over
    # a layer's width, and the elementwise work of the two passes differs. Later simplification
    # passes change the elementwise part (sigmoid + BCE -> A - Y), hence the range.
    assert 1.5 < report.backward_to_forward < 2.5


def softmax_mlp_loss(p, x, labels):
    h1 = np.maximum(0, x @ p["W1"] + p["b1"])
    h2 = np.maximum(0, h1 @ p["W2"] + p["b2"])
    return crnn.cross_entropy(h2 @ p["W3"] + p["b3"], labels)


def softmax_mlp_problem(layer_dims=(784, 256, 256, 10), batch=128):
    rng = np.random.RandomState(0)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters[f"W{l}"] = rng.randn(layer_dims[l - 1], layer_dims[l]) * np.sqrt(2.0 / layer_dims[l - 1])
        parameters[f"b{l}"] = rng.randn(layer_dims[l]) * 0.1
    x = rng.randn(batch, layer_dims[0])
    labels = rng.randint(0, layer_dims[-1], size=batch)
    return parameters, x, labels


# Row-major x @ W: forward matmuls are batch x n_l-1 by n_l-1 x n_l.
_B = 128
MLP_FORWARD_MATMULS = seed_matmul_flops(_B, 784, 256) + seed_matmul_flops(_B, 256, 256) + seed_matmul_flops(_B, 256, 10)
# dW[l] = A[l-1].T @ dZ[l] (n_l-1 x batch by batch x n_l), dA[l-1] = dZ[l] @ W[l].T for layers 2, 3.
MLP_BACKWARD_MATMULS = (
    seed_matmul_flops(784, _B, 256)
    + seed_matmul_flops(256, _B, 256)
    + seed_matmul_flops(256, _B, 10)
    + seed_matmul_flops(_B, 256, 256)
    + seed_matmul_flops(_B, 10, 256)
)
MLP_DX_MATMUL = seed_matmul_flops(_B, 256, 784)  # dx = dZ1 @ W1.T, only when x is differentiated


def test_mlp_matmul_counts_are_the_hand_derived_ones():
    assert MLP_FORWARD_MATMULS == 51_347_456 + 16_744_448 + 654_080 == 68_745_984
    assert MLP_BACKWARD_MATMULS == 51_179_520 + 16_711_680 + 652_800 + 16_744_448 + 622_592 == 85_911_040
    assert MLP_DX_MATMUL == 51_279_872


def test_mlp_backward_is_about_twice_forward_when_every_layer_passes_a_gradient_down():
    parameters, x, labels = softmax_mlp_problem()
    report = cr.grad(softmax_mlp_loss, argnums=(0, 1)).cost(parameters, x, labels)
    assert matmul_flops(report, "forward") == MLP_FORWARD_MATMULS
    assert matmul_flops(report, "backward") == MLP_BACKWARD_MATMULS + MLP_DX_MATMUL
    # Matmuls alone: 137,190,912 / 68,745,984 = 1.9956 — two matmuls back for each one forward,
    # each with 2·batch - 1 or 2·width - 1 operations per element instead of 2·width - 1.
    # The elementwise work (bias, relu, softmax cross-entropy: ~0.2% of the total) moves the
    # ratio by less than 0.01 either way; the range allows for other graph rewrites.
    assert 1.9 < report.backward_to_forward < 2.1


def test_mlp_backward_is_only_about_1_25_forward_when_the_input_is_not_differentiated():
    parameters, x, labels = softmax_mlp_problem()
    report = cr.grad(softmax_mlp_loss).cost(parameters, x, labels)
    assert matmul_flops(report, "forward") == MLP_FORWARD_MATMULS
    assert matmul_flops(report, "backward") == MLP_BACKWARD_MATMULS
    # Seed 000's "2x" assumes every layer also computes the gradient of its input. Here x is
    # data: dx is dead code, and the first layer holds 784·256 of the 267,264 weights, so
    # backward matmuls / forward matmuls = 85,911,040 / 68,745,984 = 1.2497.
    assert 1.2 < report.backward_to_forward < 1.3


# ---- the printed report --------------------------------------------------------------------


@pytest.mark.parametrize(
    "count, text",
    [
        (0, "0 FLOP"),
        (27, "27 FLOP"),
        (999, "999 FLOP"),
        (1_000, "1 kFLOP"),
        (1_234_567, "1.23 MFLOP"),
        (999_999, "1 MFLOP"),
        (68_745_984, "68.7 MFLOP"),
        (3 * 10**12, "3 TFLOP"),
    ],
)
def test_flops_are_printed_with_decimal_prefixes(count, text):
    assert format_flops(count) == text


@pytest.mark.parametrize(
    "count, text",
    [
        (0, "0 B"),
        (1000, "1000 B"),
        (1024, "1 KiB"),
        (4608, "4.5 KiB"),
        (3 * 2**20, "3 MiB"),
        (int(1.5 * 2**30), "1.5 GiB"),
    ],
)
def test_bytes_are_printed_with_binary_prefixes(count, text):
    assert format_bytes(count) == text


def test_the_printed_report_gives_the_totals_then_the_biggest_nodes_with_their_source_lines():
    parameters, X, Y = seed_network_problem()
    report = cr.grad(seed_network_loss).cost(parameters, X, Y)
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == f"cost of seed_network_loss_grad: {len(report.nodes)} nodes"
    totals = [
        ("forward", report.forward_flops, report.forward_bytes),
        ("backward", report.backward_flops, report.backward_bytes),
        ("total", report.flops, report.bytes),
    ]
    for line, (label, flops, moved) in zip(lines[2:5], totals):  # under a header line
        assert line.split()[0] == label
        assert format_flops(flops) in line and format_bytes(moved) in line
    assert f"backward / forward = {report.backward_to_forward:.2f}" in text
    # the biggest node is the dW2 matmul (102,272 FLOPs); it names the user's line and variable
    top = report.top(1)[0]
    assert top.op == "matmul" and top.flops == seed_matmul_flops(8, 400, 16)
    top_line = next(line for line in lines if line.strip().startswith(f"%{top.id} "))
    assert "test_cost.py" in top_line and "dparameters.W2" in top_line and format_flops(top.flops) in top_line
