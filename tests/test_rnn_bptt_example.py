"""examples/rnn_bptt.py: full and truncated BPTT through cr.scan (seed 003, 7.1)."""

import importlib.util
from pathlib import Path

import numpy as np

import chainrule as cr

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rnn_bptt.py"


def load():
    spec = importlib.util.spec_from_file_location("rnn_bptt", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_trainings_learn_and_print_side_by_side(capsys, tmp_path):
    rnn = load()
    results = rnn.main(["--epochs", "40", "--steps", "60", "--window", "10", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert results["check"] < 1e-7
    for losses in (results["full"], results["truncated"]):
        assert losses[-1] < 0.3 * losses[0]  # the mean of a sine's square is 0.5: both learn
    assert results["full"][0] == results["truncated"][0]  # same start, same forward pass
    assert "full BPTT" in out and "truncated k=10" in out
    full_kept, truncated_kept = results["kept"]
    assert truncated_kept < full_kept / 2  # one carry per chunk instead of one per step
    # vanishing gradients: the norm reaching a step falls geometrically with its distance from the end
    norms = results["norms"][::-1]
    assert norms[0] > norms[10] > norms[30] and norms[30] < 1e-4 * norms[0]


def test_truncated_gradient_is_the_sum_of_each_chunks_own_gradient():
    rnn = load()
    xs, ys = rnn.noisy_sines(30)
    params, window = rnn.init_params(), 10
    truncated = cr.grad(lambda p: rnn.truncated_bptt_loss(p, xs, ys, window))(params)

    def chunk_loss(p, h, chunk_xs, chunk_ys):  # the hidden state a plain input: nothing flows into it
        total = 0.0
        for x, y in zip(chunk_xs, chunk_ys):
            h, prediction = rnn.rnn_step(p, h, x)
            total += np.sum((prediction - y) ** 2)
        return total / ys.size

    h = np.zeros((xs.shape[1], rnn.HIDDEN))
    expected = {name: np.zeros_like(value) for name, value in params.items()}
    for start in range(0, 30, window):
        part = slice(start, start + window)
        for name, value in cr.grad(chunk_loss)(params, h, xs[part], ys[part]).items():
            expected[name] += value
        for x in xs[part]:
            h, _ = rnn.rnn_step(params, h, x)
    full = cr.grad(lambda p: rnn.full_bptt_loss(p, xs, ys))(params)
    for name in params:
        np.testing.assert_allclose(truncated[name], expected[name], rtol=1e-10, atol=1e-14)
    assert not np.allclose(truncated["W"], full["W"], rtol=1e-6)  # truncation changes the gradient
