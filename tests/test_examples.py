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
