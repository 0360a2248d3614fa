"""The compiled train step against the unfused loop and a hand-written one, and chainrule.train.fit:
mini-batches, seeded shuffling, model state, early stopping, the progress bar."""

from __future__ import annotations

import io

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.train import EarlyStopping, fit
from chainrule.train.fit import TextBar


def mlp_loss(params, x, y):
    hidden = np.tanh(x @ params["W1"] + params["b1"])
    return nn.binary_cross_entropy(hidden @ params["W2"] + params["b2"], y, from_logits=True)


def mlp_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "W1": rng.standard_normal((3, 8)),
        "b1": np.zeros(8),
        "W2": rng.standard_normal((8, 1)),
        "b2": np.zeros(1),
    }
    x = rng.standard_normal((32, 3))
    y = (x[:, :1] * x[:, 1:2] > 0).astype(float)
    return params, x, y


@pytest.mark.parametrize(
    "opt, clip",
    [
        (optim.adam(optim.warmup_cosine(0.05, 2, 8)), {"clip_norm": 0.5}),
        (optim.nesterov(optim.step_decay(0.5, every=3)), {"clip_value": 0.1}),
        (optim.adamw(0.01, weight_decay=0.1), {}),
        (optim.rmsprop(0.01), {"clip_norm": 1.0, "clip_value": 0.2}),
    ],
    ids=["adam-warmup-clipnorm", "nesterov-step-clipvalue", "adamw", "rmsprop-both-clips"],
)
def test_compiled_train_step_equals_the_unfused_loop_and_a_hand_written_one(opt, clip):
    params, x, y = mlp_problem()
    fused = optim.train_step(mlp_loss, opt, **clip)
    unfused = optim.train_step(mlp_loss, opt, fused=False, **clip)
    gradient = cr.value_and_grad(mlp_loss)
    runs = {
        "fused": (params, opt.init(params)),
        "unfused": (params, opt.init(params)),
        "by hand": (params, opt.init(params)),
    }
    for _ in range(8):
        losses = {}
        for name, step in (("fused", fused), ("unfused", unfused)):
            losses[name], *runs[name] = step(*runs[name], x, y)
        p, s = runs["by hand"]
        losses["by hand"], grads = gradient(p, x, y)
        if "clip_value" in clip:
            grads = {k: np.clip(g, -clip["clip_value"], clip["clip_value"]) for k, g in grads.items()}
        if "clip_norm" in clip:
            norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
            grads = {k: g * min(1.0, clip["clip_norm"] / norm) for k, g in grads.items()}
        runs["by hand"] = opt.update(grads, s, p)
        assert losses["fused"] == pytest.approx(losses["unfused"], rel=1e-12)
        assert losses["fused"] == pytest.approx(losses["by hand"], rel=1e-12)
    for name in ("unfused", "by hand"):
        for key in params:
            np.testing.assert_allclose(runs["fused"][0][key], runs[name][0][key], rtol=1e-12, atol=1e-14)
        assert runs["fused"][1]["count"] == runs[name][1]["count"] == 8
    assert len(fused._cache) == 1  # the step count and learning rate are inputs: no recompiling


def test_the_train_step_compiled_by_llvm_takes_the_numpy_backends_steps():
    params, x, y = mlp_problem()
    opt = optim.adam(optim.warmup_cosine(0.05, 2, 8))
    runs = {backend: (params, opt.init(params)) for backend in ("numpy", "llvm")}
    steps = {backend: optim.train_step(mlp_loss, opt, clip_norm=0.5, backend=backend) for backend in runs}
    for _ in range(4):
        losses = {}
        for backend, step in steps.items():
            losses[backend], *runs[backend] = step(*runs[backend], x, y)
        assert losses["llvm"] == pytest.approx(losses["numpy"], rel=1e-12)
    for key in params:
        np.testing.assert_allclose(runs["llvm"][0][key], runs["numpy"][0][key], rtol=1e-12, atol=1e-14)
    assert "define" in steps["llvm"].source(*runs["llvm"], x, y)


def test_train_step_returns_aux_state_and_the_fused_program_is_one_kernel():
    model = nn.Sequential([nn.Dense(3, 6), nn.BatchNorm(6), nn.Activation("relu"), nn.Dense(6, 1)])
    params, state = model.init(0), model.init_state()
    _, x, y = mlp_problem()

    def loss(p, s, x, y):
        prediction, new_state = model.apply(p, x, state=s, training=True)
        return nn.mse(prediction, y), new_state

    opt = optim.adam(0.01)
    fused = optim.train_step(loss, opt, has_aux=True)
    unfused = optim.train_step(loss, opt, has_aux=True, fused=False)
    a = fused(params, opt.init(params), state, x, y)
    b = unfused(params, opt.init(params), state, x, y)
    for key in ("mean", "var"):
        np.testing.assert_allclose(a[3]["batchnorm1"][key], b[3]["batchnorm1"][key], rtol=1e-13)
    assert not np.allclose(a[3]["batchnorm1"]["mean"], 0)
    source = fused.source(params, opt.init(params), state, x, y)
    assert source.count("def ") == 1 and "np.sqrt" in source  # forward, backward and Adam in one function
    # loss_fn is traced twice (for the gradient, and for aux), but hash-consing merges the two forward
    # passes: the first layer's matmul, and so the batch statistics, are computed once
    assert source.count("@ params_dense1_W") == 1


def test_fit_trains_a_sequential_with_batchnorm_and_dropout_reproducibly():
    model = nn.Sequential([nn.Dense(3, 16), nn.BatchNorm(16), nn.Activation("relu"), nn.Dropout(0.1), nn.Dense(16, 1)])
    _, x, y = mlp_problem()

    def run(seed, **options):
        return fit(
            model,
            model.init(0),
            x,
            y,
            loss="bce_logits",
            optimizer=optim.adam(0.02),
            epochs=30,
            batch_size=10,
            seed=seed,
            progress=False,
            **options,
        )

    first, again, other = run(0), run(0), run(1)
    assert first.history["loss"] == again.history["loss"]
    assert first.history["loss"] != other.history["loss"]
    assert first.history["loss"][-1] < 0.5 * first.history["loss"][0]
    assert int(first.opt_state["count"]) == 30 * 4  # 32 samples in batches of 10: 4 steps an epoch
    assert not np.allclose(first.state["batchnorm1"]["mean"], 0)
    unfused = run(0, fused=False)
    np.testing.assert_allclose(unfused.history["loss"], first.history["loss"], rtol=1e-10)
    logits = model.apply(first.params, x, state=first.state)[0]
    assert np.mean((logits > 0) == y) > 0.85


def line_model(params, x):
    return x * params["w"]


def line_fit(**options):
    # Training pulls w from 0 towards 1; the validation targets want w = 0.5, so the validation
    # loss falls until w passes 0.5 and rises after.
    x = np.linspace(1.0, 2.0, 8)
    return fit(
        line_model,
        {"w": np.array(0.0)},
        x,
        x,
        loss="mse",
        optimizer=optim.sgd(0.02),
        batch_size=8,
        shuffle=False,
        progress=False,
        validation_data=(x, 0.5 * x),
        **options,
    )


def test_early_stopping_stops_patience_epochs_after_the_best_and_restores_it():
    full = line_fit(epochs=60)
    best = int(np.argmin(full.history["val_loss"]))
    assert 3 < best < 40
    stopped = line_fit(epochs=60, early_stopping=EarlyStopping(patience=5))
    assert stopped.best_epoch == best and stopped.stopped_epoch == best + 5
    assert len(stopped.history["val_loss"]) == best + 6
    weights = [0.0]  # w after each epoch, replayed: one full-batch SGD step per epoch
    x = np.linspace(1.0, 2.0, 8)
    for _ in range(best + 1):
        weights.append(weights[-1] - 0.02 * np.mean(2 * (weights[-1] * x - x) * x))
    assert float(stopped.params["w"]) == pytest.approx(weights[best + 1], rel=1e-12)
    kept = line_fit(epochs=60, early_stopping=EarlyStopping(patience=5, restore_best=False))
    assert float(kept.params["w"]) > float(stopped.params["w"])
    # min_delta larger than any improvement: the first epoch stays best
    strict = line_fit(epochs=60, early_stopping=EarlyStopping(patience=3, min_delta=10.0))
    assert strict.best_epoch == 0 and strict.stopped_epoch == 3
    on_training_loss = line_fit(epochs=60, early_stopping=EarlyStopping(patience=2, monitor="loss"))
    assert on_training_loss.stopped_epoch is None  # the training loss keeps falling


def test_fit_errors():
    x = np.ones((4, 1))
    with pytest.raises(cr.ArgumentError, match="4 inputs but 3 targets"):
        fit(line_model, {"w": np.array(0.0)}, x, x[:3], loss="mse", optimizer=optim.sgd(), progress=False)
    with pytest.raises(cr.ArgumentError, match="unknown loss"):
        fit(line_model, {"w": np.array(0.0)}, x, x, loss="hinge", optimizer=optim.sgd(), progress=False)
    with pytest.raises(cr.ArgumentError, match="validation_data"):
        fit(
            line_model,
            {"w": np.array(0.0)},
            x,
            x,
            loss="mse",
            optimizer=optim.sgd(),
            progress=False,
            early_stopping=EarlyStopping(monitor="val_loss"),
        )


def test_text_progress_bar():
    stream = io.StringIO()
    bar = TextBar(4, stream)
    for epoch in range(4):
        bar.update({"loss": 1.0 / (epoch + 1)})
    bar.close()
    lines = stream.getvalue().split("\r")
    assert lines[1].startswith("epoch 1/4 [#####...............]  loss 1")
    assert lines[-1] == "epoch 4/4 [####################]  loss 0.25\n"
