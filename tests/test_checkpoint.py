"""Checkpoint placement: gradients unchanged under every policy, Griewank's bound met by the Revolve
schedule, the min-cut checked against brute force, budgets kept, recomputations kept apart by every
later pass, and the memory estimate checked against tracemalloc."""

from __future__ import annotations

import itertools
import textwrap

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli.main import main
from chainrule.compiler import checkpoint as ckpt
from chainrule.compiler import revolve
from chainrule.compiler.cse import cse
from chainrule.compiler.fuse import find_regions, fuse
from chainrule.compiler.schedule import schedule
from chainrule.compiler.simplify import simplify
from chainrule.frontends.pytree import flatten
from tests.test_fuse import measured_peak

# ---- models --------------------------------------------------------------------------------------


def mlp_loss(params, x):
    h = x
    for W, b in params:
        h = np.tanh(h @ W + b)
    return np.sum(h**2)


def mlp_args(layers=8, width=32, batch=256, dtype=np.float64):
    """Activations of batch x width float64 = 64 KiB, big enough for the generated code to free them,
    and bigger than the weights, so that the activations, not the gradients, make the peak."""
    rng = np.random.default_rng(0)
    params = [
        (
            (rng.standard_normal((width, width)) / np.sqrt(width)).astype(dtype),
            (rng.standard_normal(width) * 0.1).astype(dtype),
        )
        for _ in range(layers)
    ]
    return params, rng.standard_normal((batch, width)).astype(dtype)


def dag_loss(x, w):
    """Not a chain: a value read far downstream, a residual, a reduction and a matmul."""
    a = np.sin(x) * w
    b = np.exp(-a * a)
    c = np.tanh(a @ w) + b
    d = np.cos(c) * a
    return np.sum(d * d) + np.mean(b)


def dag_args():
    rng = np.random.default_rng(1)
    return rng.standard_normal((96, 96)) * 0.3, rng.standard_normal((96, 96)) * 0.3


def tanh_only(node):
    return "recompute" if node.op == "tanh" else "save"


def segmented_mlp_loss(params, x):
    h = x
    for W, b in params:
        h = cr.checkpoint(lambda h, W, b: np.tanh(h @ W + b))(h, W, b)
    return np.sum(h**2)


POLICIES = ["sqrt", "optimal", tanh_only]


def assert_same_gradients(got, expected):
    got, expected = flatten(got)[0], flatten(expected)[0]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


# ---- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES, ids=["sqrt", "optimal", "callable"])
def test_every_policy_gives_the_gradients_of_keep_all_on_an_mlp(policy, backend):
    args = mlp_args()
    expected = cr.grad(mlp_loss)(*args)
    f = cr.grad(mlp_loss, checkpoint=policy, backend=backend)
    assert_same_gradients(f(*args), expected)
    assert f.memory(*args).recomputed, "the policy recomputed nothing"


@pytest.mark.parametrize("policy", ["sqrt", "optimal", tanh_only, 10**6], ids=["sqrt", "optimal", "callable", "budget"])
def test_every_policy_gives_the_gradients_of_keep_all_on_a_dag(policy):
    args = dag_args()
    expected = cr.grad(dag_loss, argnums=(0, 1))(*args)
    assert_same_gradients(cr.grad(dag_loss, argnums=(0, 1), checkpoint=policy)(*args), expected)


def test_a_budget_policy_gives_the_gradients_of_keep_all():
    args = mlp_args()
    everything = cr.grad(mlp_loss).memory(*args).peak_bytes
    f = cr.grad(mlp_loss, checkpoint=everything - 1)
    assert_same_gradients(f(*args), cr.grad(mlp_loss)(*args))
    assert f.memory(*args).recomputed


def test_checkpoint_markers_recompute_the_segments_and_keep_the_gradients():
    args = mlp_args(layers=4)
    f = cr.grad(segmented_mlp_loss)
    assert_same_gradients(f(*args), cr.grad(mlp_loss)(*args))
    report = f.memory(*args)
    assert {v.op for v in report.recomputed} >= {"tanh"}
    assert not cr.grad(mlp_loss).memory(*args).recomputed


def test_checkpoint_markers_are_the_function_itself_on_arrays():
    x = np.array([0.3, -1.2])
    np.testing.assert_array_equal(cr.checkpoint(np.sin)(x), np.sin(x))


def test_value_and_grad_with_a_policy_returns_the_value_too():
    args = mlp_args(layers=3)
    value, grads = cr.value_and_grad(mlp_loss, checkpoint="sqrt")(*args)
    assert value == pytest.approx(mlp_loss(*args), rel=1e-12)
    assert_same_gradients(grads, cr.grad(mlp_loss)(*args))


# ---- Griewank's bound on chains ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps, slots, advances",
    [
        (10, 1, 45),
        (10, 2, 20),
        (10, 3, 15),
        (16, 3, 33),
        (32, 4, 75),
        (100, 2, 845),
        (100, 5, 316),
        (100, 10, 222),
        (1000, 10, 3636),
    ],
)
def test_the_revolve_schedule_makes_griewanks_number_of_advances(steps, slots, advances):
    assert replay(revolve.revolve_schedule(steps, slots), steps, slots) == advances
    assert revolve.griewank_advances(steps, slots) == advances


def replay(actions, steps, slots) -> int:
    """Run a schedule on a model of the chain; check it is valid and return its forward advances.

    The state is the index of the value in hand; a turn of step i needs x_i in hand and must come
    right after the turn of step i+1; at most ``slots`` states are stored at once.
    """
    current, stored, next_turn, advances = 0, set(), steps - 1, 0
    for action, i in actions:
        if action == "advance":
            assert current == i, f"advance of step {i} from x_{current}"
            current, advances = i + 1, advances + 1
        elif action == "store":
            assert current == i, f"store of x_{i} while holding x_{current}"
            stored.add(i)
            assert len(stored) <= slots, f"{len(stored)} states stored with {slots} slots"
        elif action == "free":
            stored.remove(i)
        elif action == "restore":
            assert i in stored, f"restore of x_{i}, which is not stored"
            current = i
        else:
            assert (action, i, current) == ("turn", next_turn, next_turn), f"turn {i} out of order"
            next_turn -= 1
            current = None
    assert next_turn == -1, "not every step was reversed"
    return advances


def test_griewanks_bound_has_its_limiting_forms():
    for steps in range(2, 40):
        schedules = [replay(revolve.revolve_schedule(steps, c), steps, c) for c in range(1, steps + 1)]
        assert schedules[0] == steps * (steps - 1) // 2  # one slot: sweep from the input for every step
        assert schedules[steps - 2] == steps - 1  # a slot for every state: one sweep
        assert all(a >= b for a, b in itertools.pairwise(schedules))  # more slots never cost advances


def test_griewanks_bound_is_the_minimum_of_its_recurrence():
    """t(l, c) = min over the first split m of m + t(l - m, c - 1) + t(m, c), by dynamic programming."""
    steps, max_slots = 60, 6
    best = np.zeros((steps + 1, max_slots + 1), dtype=np.int64)
    best[:, 1] = [l * (l - 1) // 2 for l in range(steps + 1)]
    for c in range(2, max_slots + 1):
        for length in range(2, steps + 1):
            best[length, c] = min(m + best[length - m, c - 1] + best[m, c] for m in range(1, length))
    for c in range(1, max_slots + 1):
        for length in range(1, steps + 1):
            assert revolve.griewank_advances(length, c) == best[length, c]


def sine_chain(x):
    for _ in range(24):
        x = np.sin(x)
    return np.sum(x)


@pytest.mark.parametrize("slots", [1, 3, 6])
def test_the_checkpointed_graph_recomputes_what_the_schedule_advances(slots):
    """On a chain of sines each step is one node: the graph holds one recomputed sine per advance
    after the first sweep, which the forward pass itself makes."""
    x = np.linspace(0.1, 1.0, 4)
    graph = cr.grad(sine_chain).graph(x, stage="simplified")
    forward = ckpt.forward_pass(graph)
    assert forward.stages == 24
    result = ckpt.place(graph, ckpt.revolve(graph, forward, slots), forward, "test")
    recomputed_sines = sum(1 for node in result.nodes if node.recomputed and node.op == "sin")
    assert recomputed_sines == revolve.griewank_advances(24, slots) - (24 - 1)


def test_optimal_on_a_chain_uses_revolve_with_at_most_one_extra_sweep():
    x = np.linspace(0.1, 1.0, 4)
    f = cr.grad(sine_chain, checkpoint="optimal")
    np.testing.assert_allclose(f(x), cr.grad(sine_chain)(x), rtol=1e-12)
    report = f.memory(x)
    assert 0 < report.extra_forward_passes <= 1.0
    assert len(report.kept) < 24


# ---- the min-cut against brute force ------------------------------------------------------------------


def small_graphs():
    """Joint graphs whose forward pass has at most 12 nodes."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((96, 96)) * 0.3, rng.standard_normal((96, 96)) * 0.3

    def two_branches(x, w):
        a = np.sin(x)
        b = a @ w
        return np.sum(np.tanh(b) * np.exp(a))

    def residual(x, w):
        h = np.tanh(x @ w)
        return np.sum(np.cos(h + x) * h)

    def gated(x, w):
        a = np.sin(x)
        b = a @ w
        c = np.exp(-b * b)
        return np.sum(c * a + np.tanh(c))

    for fn in (gated, two_branches, residual):
        graph = cr.grad(fn, argnums=(0, 1)).graph(x, w, stage="simplified")
        yield fn.__name__, graph


def brute_force_kept_bytes(graph, forward, banned) -> int:
    """The fewest bytes to keep so that every value the backward pass reads is kept or can be
    recomputed from kept values, inputs and constants without recomputing a banned op."""
    best = None
    nodes = forward.nodes
    for size in range(len(nodes) + 1):
        for kept in itertools.combinations(nodes, size):
            kept = set(kept)
            available = set(kept)
            for node_id in nodes:  # ids are a topological order
                if (
                    node_id not in kept
                    and graph[node_id].op not in banned
                    and all(a in available or a not in forward.stage_of for a in graph[node_id].args)
                ):
                    available.add(node_id)
            if forward.read_by_backward <= available:
                cost = sum(graph[i].type.nbytes for i in kept)
                best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("name, graph", list(small_graphs()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_min_cut_keeps_the_fewest_bytes_brute_force_finds(name, graph):
    forward = ckpt.forward_pass(graph)
    assert len(forward.nodes) <= 12
    placement = ckpt.min_cut(graph, forward)
    kept = [
        i
        for i in forward.nodes
        if i not in placement.recompute
        and (i in forward.read_by_backward or any(i in graph[r].args for r in placement.recompute))
    ]
    assert sum(graph[i].type.nbytes for i in kept) == brute_force_kept_bytes(graph, forward, ckpt.BANNED)
    assert not any(graph[i].op in ckpt.BANNED for i in placement.recompute)


@pytest.mark.parametrize("name, graph", list(small_graphs()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_policy_beats_the_brute_force_lowest_peak_and_a_budget_near_it_is_met(name, graph):
    """Every subset of the forward values recomputed, each estimated: the lowest peak bounds what
    any policy reaches, and a budget 1% above it is met. (A budget search tries four kinds of
    placement, not every subset: with buffer donation the ``gated`` graph's lowest, 368,640 bytes,
    is 8 bytes below the best of them.)"""
    forward = ckpt.forward_pass(graph)
    assert len(forward.nodes) <= 9  # 512 placements at most
    peaks = []
    for size in range(len(forward.nodes) + 1):
        for recompute in itertools.combinations(forward.nodes, size):
            built, _ = ckpt.with_recomputation(graph, set(recompute), forward)
            peaks.append(estimate(built))
    lowest = min(peaks)
    for policy in ("all", "sqrt", "optimal"):
        assert estimate(ckpt.checkpoint(graph, policy)) >= lowest
    budget = lowest + lowest // 100
    assert lowest <= estimate(ckpt.checkpoint(graph, budget)) <= budget


def estimate(graph) -> int:
    return schedule(fuse(graph)).memory_plan.peak_bytes


# ---- budgets and honest accounting --------------------------------------------------------------------


def test_a_budget_is_met_by_the_estimate_and_by_the_measured_peak():
    args = mlp_args()
    everything = cr.grad(mlp_loss).memory(*args).peak_bytes
    lowest = cr.grad(mlp_loss, checkpoint="optimal").memory(*args)
    budget = (everything + lowest.peak_bytes) // 2
    f = cr.grad(mlp_loss, checkpoint=budget)
    assert f.memory(*args).peak_bytes <= budget
    assert measured_peak(f, args) <= budget
    assert f.memory(*args).recompute_flops > 0


def test_an_impossible_budget_says_what_the_lowest_peak_is():
    with pytest.raises(cr.ChainruleError, match="no checkpoint placement fits the memory budget of 1000 bytes"):
        cr.grad(mlp_loss, checkpoint=1000)(*mlp_args(layers=3))


@pytest.mark.parametrize("policy", ["all", "sqrt", "optimal", tanh_only], ids=["all", "sqrt", "optimal", "callable"])
def test_the_estimate_matches_tracemalloc_within_ten_percent_under_every_policy(policy):
    args = mlp_args()
    f = cr.grad(mlp_loss, checkpoint=policy)
    assert f.memory(*args).peak_bytes == pytest.approx(measured_peak(f, args), rel=0.10)


def test_the_estimate_counts_small_values_as_the_generated_code_keeps_them():
    """Values under 64 KiB are never deleted early by the generated code; the plan agrees."""
    args = mlp_args(layers=6, width=64, batch=64)
    f = cr.grad(mlp_loss)
    assert f.memory(*args).peak_bytes == pytest.approx(measured_peak(f, args), rel=0.10)


def test_sqrt_keeps_about_sqrt_n_activations_for_at_most_one_extra_forward_pass():
    layers = 16
    args = mlp_args(layers=layers)
    activation = args[1].nbytes
    report = cr.grad(mlp_loss, argnums=1, checkpoint="sqrt").memory(*args)
    assert report.peak_bytes <= 2.5 * np.sqrt(layers) * activation
    assert report.extra_forward_passes <= 1.0
    assert report.peak_bytes < cr.grad(mlp_loss, argnums=1).memory(*args).peak_bytes / 2


# ---- recomputations survive the later passes -----------------------------------------------------------


def checkpointed_graph():
    args = mlp_args(layers=4)
    return cr.grad(mlp_loss, checkpoint=tanh_only).graph(*args, stage="checkpointed")


def count_recomputed(graph) -> int:
    return sum(1 for i in graph.live_nodes() if graph[i].recomputed)


@pytest.mark.parametrize("run_pass", [simplify, cse], ids=["simplify", "cse"])
def test_simplify_and_cse_keep_recomputed_copies_apart_from_their_originals(run_pass):
    graph = checkpointed_graph()
    before = count_recomputed(graph)
    assert before > 0
    after = run_pass(graph)
    after.verify()
    assert count_recomputed(after) == before


def test_recomputed_copies_are_not_hash_consed_into_their_originals():
    graph = checkpointed_graph()
    copy = next(i for i in graph.live_nodes() if graph[i].recomputed)
    node = graph[copy]
    original = graph.find(node.op, node.args, node.attrs)
    assert original is None or original != copy
    assert graph.add_recomputed(node.op, node.args, node.params) != graph.add_recomputed(
        node.op, node.args, node.params
    )


def test_fusion_merges_a_recomputation_into_the_backward_kernel_that_reads_it():
    def loss(x, w):
        return np.sum(np.tanh(x * w))

    x, w = np.linspace(-1, 1, 20000), np.linspace(0.5, 1.5, 20000)
    f = cr.grad(loss, checkpoint=lambda node: "recompute")
    graph = f.graph(x, w, stage="checkpointed")
    region = find_regions(graph)
    copies = [i for i in graph.live_nodes() if graph[i].recomputed and graph[i].op == "tanh"]
    assert copies
    for copy in copies:
        root = region[copy]
        assert root >= 0 and graph[root].is_backward and not graph[root].recomputed
    fused = fuse(graph)
    fused.verify()
    assert any(n.op == "fused" and n.recomputed for n in fused.nodes)
    np.testing.assert_allclose(f(x, w), cr.grad(loss)(x, w), rtol=1e-12)


# ---- reports, dumps and errors ---------------------------------------------------------------------------


def test_the_memory_report_lists_kept_values_with_bytes_and_reasons():
    args = mlp_args()
    everything = cr.grad(mlp_loss).memory(*args)
    assert everything.recompute_flops == 0 and not everything.recomputed
    assert everything.kept_bytes == sum(v.bytes for v in everything.kept)
    assert all(v.bytes == args[1].nbytes for v in everything.kept)
    # the 8 activations h (x is an input) and h**2, which the loss and tanh' share
    assert [v.name for v in everything.kept].count("h") == 8 and len(everything.kept) == 9
    sqrt = cr.grad(mlp_loss, checkpoint="sqrt").memory(*args)
    assert sqrt.kept_bytes < everything.kept_bytes
    assert any(v.reason.startswith("sqrt: last value of segment") for v in sqrt.kept)
    assert sqrt.recompute_flops == sum(v.flops for v in sqrt.recomputed) > 0
    text = str(sqrt)
    assert "checkpoint='sqrt'" in text and "kept:" in text and "recomputed:" in text


def test_the_checkpointed_ir_marks_recomputed_nodes():
    args = mlp_args(layers=3)
    assert "recomputed" in cr.grad(mlp_loss, checkpoint=tanh_only).ir(*args, stage="checkpointed")
    assert "recomputed" not in cr.grad(mlp_loss).ir(*args, stage="checkpointed")
    assert "# recomputed" in cr.grad(mlp_loss, checkpoint="sqrt").source(*mlp_args())


def test_dump_with_a_checkpoint_policy_marks_recomputed_nodes(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_text(
        textwrap.dedent("""
        import numpy as np

        def loss(x):
            for _ in range(9):
                x = np.tanh(x)
            return np.sum(x)

        def example_args():
            return (np.linspace(-1, 1, 10000),)
    """)
    )
    assert main(["dump", f"{path}:loss", "--grad", "--stage", "checkpointed", "--checkpoint", "sqrt"]) == 0
    assert "recomputed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "policy, message",
    [
        ("everything", "unknown checkpoint policy 'everything'"),
        (-5, "positive number of bytes"),
        (2.5, "got float 2.5"),
    ],
)
def test_a_bad_checkpoint_argument_is_a_clear_error(policy, message):
    with pytest.raises(cr.ArgumentError, match=message):
        cr.grad(mlp_loss, checkpoint=policy)


def test_a_policy_function_must_answer_save_or_recompute():
    with pytest.raises(cr.ArgumentError, match="must return 'save' or 'recompute'"):
        cr.grad(mlp_loss, checkpoint=lambda node: "maybe")(*mlp_args(layers=2))


def test_policies_work_without_the_optimizer_too():
    args = mlp_args(layers=4)
    expected = cr.grad(mlp_loss, optimize=False)(*args)
    for policy in ("sqrt", "optimal", tanh_only):
        f = cr.grad(mlp_loss, optimize=False, checkpoint=policy)
        assert_same_gradients(f(*args), expected)
        assert f.memory(*args).recomputed


def test_an_impossible_budget_on_a_graph_without_matmuls_is_a_clear_error():
    # the budget search also tries the min-cut, whose source has no edge when nothing is banned
    def chain(x):
        for _ in range(6):
            x = np.tanh(x)
        return np.sum(x)

    with pytest.raises(cr.ChainruleError, match="no checkpoint placement fits the memory budget of 1 bytes"):
        cr.grad(chain, checkpoint=1)(np.linspace(-1.0, 1.0, 8))


def test_the_memory_report_shows_the_llvm_arena_beside_the_plan():
    args = mlp_args()
    report = cr.grad(mlp_loss, checkpoint="sqrt", backend="llvm").memory(*args)
    assert 0 < report.arena_bytes and "llvm arena" in str(report)
    assert cr.grad(mlp_loss, checkpoint="sqrt").memory(*args).arena_bytes is None
