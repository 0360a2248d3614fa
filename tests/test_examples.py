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


def test_checkpointing_example_sweeps_budgets_with_estimates_matching_the_measured_peaks(capsys):
    checkpointing = load("checkpointing")
    assert checkpointing.main(["--layers", "12"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("all", "sqrt", "optimal", "budget")) and "no checkpoint placement" not in line]
    assert len(rows) >= 5 and any(row[0] == "budget" for row in rows)
    assert "no checkpoint placement fits the memory budget" in out  # the lowest budgets cannot be met
    for row in rows:
        assert row[-1] == "0e+00"  # every policy's gradient is keep-all's
        assert 0.9 <= float(row[-9]) <= 1.1  # estimate / measured peak
