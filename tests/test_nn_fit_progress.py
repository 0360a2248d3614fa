"""fit's progress bar (tqdm, with the loss) and FitResult.plot()."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from chainrule import nn, optim
from chainrule.train import fit


def small_fit(**options):
    x = np.random.default_rng(0).standard_normal((32, 2))
    y = x @ np.array([[1.0], [-1.0]])
    model = nn.Dense(2, 1)
    return fit(model, model.init(0), x, y, loss="mse", optimizer=optim.adam(0.05), epochs=5, batch_size=8, **options)


def test_fit_shows_a_tqdm_bar_with_the_loss(capsys):
    pytest.importorskip("tqdm")
    small_fit(progress=True, validation_data=(np.zeros((4, 2)), np.zeros((4, 1))))
    err = capsys.readouterr().err
    assert "5/5" in err and "loss=" in err and "val_loss=" in err and "epoch" in err


def test_fit_without_progress_prints_nothing(capsys):
    small_fit(progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_fit_result_plots_its_history(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    result = small_fit(progress=False)
    figure = result.plot(tmp_path / "history.png")
    axis = figure.axes[0]
    np.testing.assert_allclose(axis.lines[0].get_ydata(), result.history["loss"])
    assert (tmp_path / "history.png").stat().st_size > 5_000


def test_fit_result_plot_says_what_to_install_without_matplotlib(monkeypatch):
    if importlib.util.find_spec("matplotlib") is not None:
        monkeypatch.setitem(__import__("sys").modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"chainrule\[plot\]"):
        small_fit(progress=False).plot()
