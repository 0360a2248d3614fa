import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the training examples share spiral_classifier's data


def test_spiral_classifier_learns_with_chainrule_gradients(capsys, examples_on_path):
    spiral = load("spiral_classifier")
    accuracy = spiral.main(["--epochs", "150", "--no-plot"])
    out = capsys.readouterr().out
    check = float(out.split("criterion: < 1e-7): ")[1].split()[0])
    assert check < 1e-7
    assert accuracy >= 95 and f"final training accuracy on the spirals: {accuracy:.2f}%" in out


def test_optimizer_comparison_prints_every_optimizer(capsys, examples_on_path):
    comparison = load("optimizer_comparison")
    results = comparison.main(["--epochs", "30", "--no-plot"])
    out = capsys.readouterr().out
    assert list(results) == ["SGD", "Momentum", "Nesterov", "Adagrad", "RMSprop", "Adam", "AdamW"]
    assert all(any(line.startswith(name) for line in out.splitlines()) for name in results)
    # the seed's point: the adaptive methods get further in the same epochs than plain SGD
    assert results["Adam"]["losses"][-1] < results["SGD"]["losses"][-1]
    assert results["RMSprop"]["losses"][-1] < results["SGD"]["losses"][-1]


def test_lr_schedules_example_plots_and_trains_under_each_schedule(capsys, tmp_path, examples_on_path):
    schedules = load("lr_schedules")
    results = schedules.main(["--epochs", "20", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    if importlib.util.find_spec("matplotlib") is not None:  # the plot is optional (pip install ".[plot]")
        assert (tmp_path / "lr_schedules.png").stat().st_size > 10_000
    else:
        assert "matplotlib is not installed: no plot" in out
    assert results["Constant"]["lrs"] == [0.01] * 20
    assert results["Cosine annealing"]["lrs"][-1] < 1e-4 < results["Cosine annealing"]["lrs"][0]
    assert "Warmup (10%) + cosine" in out and "0.00e+00" in out  # warm-up starts from 0


def test_gradient_check_example_passes_chainrule_and_catches_the_planted_bug(capsys, examples_on_path):
    rows = load("gradient_check").main([])
    out = capsys.readouterr().out
    *models, seed_backward, buggy_backward = rows
    assert len(models) == 5 and all(fourth < 1e-7 and two_point < 1e-6 for _, fourth, two_point in models)
    assert seed_backward[1] < 1e-12 and buggy_backward[1] > 1e-3
    assert out.count("PASSED") == 6 and out.count("FAILED") == 1


def test_vanishing_gradients_shrink_through_sigmoid_layers_not_relu(capsys, examples_on_path):
    norms = load("vanishing_gradients").main(["--depth", "6", "--no-plot"])
    capsys.readouterr()
    assert norms["sigmoid"][0] / norms["sigmoid"][-1] < 1e-3  # six sigmoid layers: < 0.25^6 ~ 2e-4 and more
    assert norms["relu"][0] / norms["relu"][-1] > 1e-2
    assert all(len(values) == 7 for values in norms.values())


def test_nested_example_reproduces_seed_001_and_shows_sympy_failing_where_chainrule_goes_on(capsys):
    nested = load("nested")
    assert nested.main(["--max-depth", "100"]) == 0
    out = capsys.readouterr().out
    seed_rows = [line for line in out.splitlines() if line.startswith("30 ")]
    assert len(seed_rows) == 2 and all("0.00255077238173787" in row for row in seed_rows)  # seed 001's value
    assert "RecursionError" in out  # SymPy, before depth 100
    assert any(
        line.startswith("100 ") and "chainrule" in line and "1.1071225275987e-08" in line for line in out.splitlines()
    )
    assert "simplify(that - sympy.diff) = 0" in out


def test_jacobians_example_matches_pytorch_the_hand_hessian_and_newton_converges(capsys):
    jacobians = load("jacobians")
    seed = jacobians.seed_001_jacobian()
    np.testing.assert_allclose(seed["fwd"], seed["rev"], rtol=1e-13)
    assert seed["passes"] == (3, 3) and seed["calls"] == (1, 1)
    if seed["torch"] is not None:
        np.testing.assert_allclose(seed["fwd"], seed["torch"], rtol=1e-13, atol=1e-15)
    rows = jacobians.newton_cg(samples=100, features=10)
    assert rows[-1][2] < 1e-9 * rows[0][2]  # the gradient norm, after a few Newton steps
    assert jacobians.main() == 0
    assert "max |chainrule - by hand|" in capsys.readouterr().out


def test_checkpointing_example_sweeps_budgets_with_estimates_matching_the_measured_peaks(capsys):
    checkpointing = load("checkpointing")
    assert checkpointing.main(["--layers", "12"]) == 0
    out = capsys.readouterr().out
    rows = [
        line.split()
        for line in out.splitlines()
        if line.startswith(("all", "sqrt", "optimal", "budget")) and "no checkpoint placement" not in line
    ]
    assert len(rows) >= 5 and any(row[0] == "budget" for row in rows)
    assert "no checkpoint placement fits the memory budget" in out  # the lowest budgets cannot be met
    for row in rows:
        assert row[-1] == "0e+00"  # every policy's gradient is keep-all's
        assert 0.9 <= float(row[-9]) <= 1.1  # estimate / measured peak


def test_nan_provenance_example_names_each_culprit_and_its_fix_runs_clean(capsys):
    messages = load("nan_provenance").main()
    out = capsys.readouterr().out
    assert len(messages) == 3
    assert "sqrt'" in messages[0] and "produced inf" in messages[0]
    assert "exp got logits=800.0" in messages[1]
    assert "log got x=-1.0" in messages[2]
    assert out.count("fixed (") == 3 and "nan" not in out.split("fixed (")[-1]


def test_networkx_example_finds_the_critical_path_through_the_matmuls(capsys):
    load("networkx_analysis")
    out = capsys.readouterr().out
    total, critical = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) FLOPs", out)[:2]]
    assert 0 < critical < total
    assert "matmul" in out and "dp.W1" in out


def test_pendulum_rk4_gradient_through_a_loop_matches_finite_differences(capsys):
    pendulum = load("pendulum_rk4")
    angle, slope, reference, error = pendulum.main(["--steps", "2000"])
    out = capsys.readouterr().out
    assert angle == pendulum.final_angle_python(0.5, 2000)
    assert error < 1e-7 and abs(slope - reference) < 1e-7 * abs(reference)
    assert "loop[" in out and "length=2000" in out


def test_physics_informed_network_learns_sin_through_second_derivatives_of_a_closure(capsys):
    pinn = load("physics_informed")
    error = pinn.main(["--steps", "300", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert error < 1e-3  # max |u - sin(pi x)| on the grid; the untrained network is off by 0.86
    first, last = (float(line.split()[1]) for line in out.splitlines() if re.match(r"\s+(1|300) ", line))
    assert last < 1e-3 * first
