"""The training-toolkit examples of issue 22: each runs, and prints what its seed says."""

import importlib.util
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


def test_linear_regression_step_reproduces_seed_004_numbers(capsys, tmp_path):
    result = load("linear_regression_step").main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    # seed 004: dL/dW = -2/3 * 23 = -15.33, dL/db = -2/3 * 10 = -6.67, then W = 1.533, b = 0.667 (lr 0.1)
    assert round(float(result["gradient"]["W"]), 2) == -15.33
    assert round(float(result["gradient"]["b"]), 2) == -6.67
    np.testing.assert_allclose(float(result["gradient"]["W"]), -2 / 3 * 23, rtol=1e-14)
    np.testing.assert_allclose(float(result["gradient"]["b"]), -2 / 3 * 10, rtol=1e-14)
    assert round(float(result["after"]["W"]), 3) == 1.533 and round(float(result["after"]["b"]), 3) == 0.667
    assert "dL/dW     -15.33" in out and "W         1.533" in out
    # the Hessian of the MSE is 2/3 [[14, 6], [6, 3]]: rates above 2 / its largest eigenvalue diverge
    largest = np.linalg.eigvalsh(2 / 3 * np.array([[14.0, 6.0], [6.0, 3.0]])).max()
    assert result["limit"] == pytest.approx(2 / largest, rel=1e-12)
    runs = result["runs"]
    assert runs[0.2]["losses"][-1] > 1e6 * runs[0.2]["losses"][0]  # too large: diverges
    for lr in (0.01, 0.1, 0.17):
        assert runs[lr]["losses"][-1] < runs[lr]["losses"][0]
    # the seed's best-fit line y = 1.5 x + 0.33, approached at the good rate
    final = runs[0.1]["path"][-1]
    assert abs(float(final["W"]) - 1.5) < 0.05 and abs(float(final["b"]) - 1 / 3) < 0.1
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "linear_regression_step.png").stat().st_size > 10_000
    else:
        assert "matplotlib is not installed: no plot" in out
