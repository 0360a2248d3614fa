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


def test_norm_comparison_shows_the_axes_and_train_versus_inference(capsys, tmp_path):
    result = load("norm_comparison").main(["--steps", "30", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    stats = result["stats"]
    # BatchNorm: every feature (column) standardized over the batch; LayerNorm: every sample (row)
    np.testing.assert_allclose(stats["BatchNorm"]["feature_mean"], 0, atol=1e-12)
    feature_std = stats["input"]["feature_std"]  # std / sqrt(var + eps): 1 but for eps = 1e-5
    np.testing.assert_allclose(stats["BatchNorm"]["feature_std"], feature_std / np.sqrt(feature_std**2 + 1e-5))
    np.testing.assert_allclose(stats["LayerNorm"]["sample_mean"], 0, atol=1e-12)
    sample_std = stats["input"]["sample_std"]
    np.testing.assert_allclose(stats["LayerNorm"]["sample_std"], sample_std / np.sqrt(sample_std**2 + 1e-5))
    bn_a, bn_b, bn_alone = result["dependence"]["BatchNorm"]
    ln_a, ln_b, ln_alone = result["dependence"]["LayerNorm"]
    assert np.abs(bn_a - bn_b).max() > 0.1 and np.all(bn_alone == 0)  # a batch of one is all mean
    np.testing.assert_allclose(ln_a, ln_b, rtol=1e-14)
    np.testing.assert_allclose(ln_a, ln_alone, rtol=1e-14)
    gaps = result["gaps"]
    assert gaps[-1][2] < gaps[0][2] / 5  # BatchNorm's running statistics approach the data's
    assert all(ln_gap == 0 for *_, ln_gap in gaps)
    assert "per-feature mean" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "norm_comparison.png").stat().st_size > 10_000


def test_adamw_decay_ignores_the_loss_scale_and_adam_l2_does_not(capsys, tmp_path):
    result = load("adamw_vs_adam_l2").main(["--steps", "1500", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    runs = result["runs"]
    # Adam's step is invariant to the gradient's scale, and AdamW's decay is outside it: the same weights
    np.testing.assert_allclose(runs[("AdamW", 1.0)]["w"], runs[("AdamW", 100.0)]["w"], rtol=1e-4, atol=1e-5)
    # Adam + L2: the penalty weighs 100 times less against a loss 100 times larger, so the weights grow
    # towards the unpenalized least squares
    norms = {c: np.linalg.norm(runs[("Adam + L2", c)]["w"]) for c in (1.0, 100.0)}
    assert norms[1.0] < 0.8 * norms[100.0] < 0.8 * np.linalg.norm(result["least_squares"])
    decay = runs[("Adam + L2", 1.0)]["effective_decay"]
    assert decay.max() / decay.min() > 10  # one lambda, per-weight rates an order of magnitude apart
    assert "Adam + L2" in out and "AdamW" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "adamw_vs_adam_l2.png").stat().st_size > 10_000


def test_digits_cnn_learns_scikit_learns_digits(capsys, tmp_path):
    pytest.importorskip("sklearn")
    result = load("digits_cnn").main(["--epochs", "4", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    # 4 epochs reach ~96% on the held-out quarter (15, the example's default, ~98%)
    assert result["test_accuracy"] >= 93.0
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]
    assert f"test accuracy {result['test_accuracy']:.2f}%" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "digits_cnn.png").stat().st_size > 10_000


def test_mixed_precision_example_prints_the_loss_scale_history(capsys, tmp_path, examples_on_path):
    result = load("mixed_precision").main(["--epochs", "20", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    grown = [scale for scale, finite in result["scales"] if finite and scale > result["initial_scale"]]
    assert grown and "clean steps, grown    -> 65536" in out  # 100 clean steps doubled 2^15
    assert "float32 loss" in out and "mixed float16" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "mixed_precision.png").stat().st_size > 10_000
