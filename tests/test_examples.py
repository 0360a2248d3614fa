import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spiral_classifier_learns_with_chainrule_gradients():
    spiral = load("spiral_classifier")
    X, Y = spiral.spiral_data()
    params, history, _ = spiral.train(X, Y, epochs=150)
    assert history[-1] < 0.5 * history[0]
    assert np.mean((spiral.forward(params, X) > 0.5) == Y) > 0.8


def test_nested_example_reproduces_seed_001_and_shows_sympy_failing_where_chainrule_goes_on(capsys):
    nested = load("nested")
    assert nested.main(["--max-depth", "100"]) == 0
    out = capsys.readouterr().out
    seed_rows = [line for line in out.splitlines() if line.startswith("30 ")]
    assert len(seed_rows) == 2 and all("0.00255077238173787" in row for row in seed_rows)  # seed 001's value
    assert "RecursionError" in out  # SymPy, before depth 100
    assert any(line.startswith("100 ") and "chainrule" in line and "1.1071225275987e-08" in line
               for line in out.splitlines())
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
