"""chainrule on Dask: compiled functions that travel, distributed gradients equal to one-process
ones, blockwise maps, data-parallel fit, and faults (a killed worker, an error in the user's code).

Every test starts its own ``LocalCluster`` (no external service); processes=True, so functions
really travel by pickle to other processes.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.frontends.pytree import flatten
from chainrule.train import fit

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")
crd = pytest.importorskip("chainrule.distributed")


def mlp_loss(params, x, y):
    hidden = np.tanh(x @ params["W1"] + params["b1"])
    return np.mean((hidden @ params["W2"] + params["b2"] - y) ** 2)


def summed_loss(params, x, y):
    return np.sum((x @ params["W1"] @ params["W2"] - y) ** 2)


def mlp_problem(rows=600, seed=0, hidden=12):
    rng = np.random.default_rng(seed)
    params = {
        "W1": rng.standard_normal((5, hidden)) * 0.5,
        "b1": rng.standard_normal(hidden) * 0.1,
        "W2": rng.standard_normal((hidden, 2)) * 0.5,
        "b2": np.zeros(2),
    }
    return params, rng.standard_normal((rows, 5)), rng.standard_normal((rows, 2))


def leaves_of(tree):
    return flatten(tree)[0]


def relative_error(got, want):
    got_leaves, want_leaves = leaves_of(got), leaves_of(want)
    return max(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-300) for g, w in zip(got_leaves, want_leaves))


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        yield dask_client


# ---- compiled functions travel ---------------------------------------------------------------


def test_a_compiled_gradient_pickles_as_function_and_options_not_kernels():
    scale = 3.0
    gradient = cr.grad(lambda x: np.sum(np.sin(scale * x) ** 2))
    x = np.linspace(0.0, 1.0, 7)
    expected = gradient(x)  # compiled here first: the kernel must not travel
    payload = pickle.dumps(gradient)
    assert len(payload) < 4000
    first, second = pickle.loads(payload), pickle.loads(payload)
    np.testing.assert_allclose(first(x), 3.0 * np.sin(2 * scale * x), rtol=1e-13)
    np.testing.assert_array_equal(first(x), expected)
    assert first.fn is second.fn  # copies arriving in one process share one cache
    assert len(second._cache) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda f: cr.value_and_grad(f, backend="llvm"),
        lambda f: cr.jit(f),
        lambda f: cr.hessian(f),
        lambda f: cr.jacobian(lambda x: np.sin(x) * f(x)),
    ],
    ids=["value_and_grad-llvm", "jit", "hessian", "jacobian"],
)
def test_every_kind_of_compiled_function_survives_a_pickle_round_trip(make):
    compiled = make(lambda x: np.sum(x**3) / 3.0)
    x = np.array([0.5, -1.5, 2.0])
    before = compiled(x)
    after = pickle.loads(pickle.dumps(compiled))(x)
    for got, want in zip(leaves_of(after), leaves_of(before)):
        np.testing.assert_allclose(got, want, rtol=1e-14)


def test_a_worker_process_compiles_a_shipped_gradient_once(client):
    gradient = cr.grad(mlp_loss)
    params, x, y = mlp_problem(50)
    worker = sorted(client.scheduler_info()["workers"])[0]

    def cached_before_and_after(compiled, *args):
        before = len(compiled._cache)
        result = compiled(*args)
        return before, len(compiled._cache), os.getpid(), result

    runs = [
        client.submit(cached_before_and_after, gradient, params, x, y, workers=[worker], pure=False).result()
        for _ in range(3)
    ]
    assert [run[:2] for run in runs] == [(0, 1), (1, 1), (1, 1)]
    assert runs[0][2] != os.getpid()
    for run in runs:
        assert relative_error(run[3], gradient(params, x, y)) < 1e-14


# ---- distributed gradients -------------------------------------------------------------------


def test_distributed_mean_gradient_equals_the_one_process_gradient(client):
    params, x, y = mlp_problem(600)
    value_and_grad = crd.value_and_grad(mlp_loss, data_argnums=(1, 2))
    value, grads = value_and_grad(params, da.from_array(x, chunks=110), da.from_array(y, chunks=110))
    expected_value, expected_grads = cr.value_and_grad(mlp_loss)(params, x, y)
    assert abs(value - expected_value) <= 1e-12 * abs(expected_value)
    assert relative_error(grads, expected_grads) < 1e-12
    assert len(value_and_grad.bytes_per_chunk) == 6  # 110-row chunks of 600 rows


def test_sum_reduction_numpy_data_and_pytree_data_arguments(client):
    params, x, y = mlp_problem(301)
    params = {"W1": params["W1"], "W2": params["W2"]}

    def loss_of_batch(params, batch):
        return summed_loss(params, batch["x"], batch["y"])

    distributed_grad = crd.grad(loss_of_batch, data_argnums=1, reduction="sum")
    grads = distributed_grad(params, {"x": x, "y": y})  # NumPy data: one chunk per worker
    assert relative_error(grads, cr.grad(summed_loss)(params, x, y)) < 1e-12


def test_float16_transport_sends_a_quarter_of_the_bytes_at_half_precision_accuracy(client):
    params, x, y = mlp_problem(400, hidden=400)  # 3,202 parameters: the pickles' headers are small beside them
    exact = crd.value_and_grad(mlp_loss, data_argnums=(1, 2))
    compressed = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), transport="float16")
    _, exact_grads = exact(params, x, y)
    _, compressed_grads = compressed(params, x, y)
    assert sum(exact.bytes_per_chunk) > 2 * 3_202 * 8  # measured pickles: the two chunks' float64 gradients
    assert 3.5 < sum(exact.bytes_per_chunk) / sum(compressed.bytes_per_chunk) < 4
    assert 1e-6 < relative_error(compressed_grads, exact_grads) < 2e-3
    assert compressed_grads["W1"].dtype == np.float64


def test_map_applies_a_compiled_gradient_blockwise(client):
    points = np.linspace(-2.0, 2.0, 10_001)
    derivative = crd.map(cr.grad(lambda t: np.sum(np.cos(np.tan(np.sin(t))))), da.from_array(points, chunks=2_500))
    assert isinstance(derivative, da.Array)
    expected = -np.sin(np.tan(np.sin(points))) / np.cos(np.sin(points)) ** 2 * np.cos(points)
    np.testing.assert_allclose(derivative.compute(), expected, rtol=1e-13, atol=1e-15)


def test_map_compiles_a_plain_function_with_the_chosen_backend(client):
    blocks = da.from_array(np.arange(12.0).reshape(4, 3), chunks=(2, 3))
    row_norms = crd.map(lambda b: np.sqrt(np.sum(b**2, axis=1)), blocks, backend="llvm", drop_axis=1)
    np.testing.assert_allclose(row_norms.compute(), np.linalg.norm(np.arange(12.0).reshape(4, 3), axis=1))


# ---- data-parallel training --------------------------------------------------------------------


def test_fit_with_a_client_equals_fit_in_one_process(client):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((96, 4))
    y = np.tanh(x @ rng.standard_normal((4, 1)))
    model = nn.Sequential([nn.Dense(4, 8), nn.Activation("tanh"), nn.Dense(8, 1)])
    options = {
        "loss": "mse",
        "optimizer": optim.adam(0.05),
        "epochs": 3,
        "batch_size": 32,
        "seed": 7,
        "progress": False,
    }
    here = fit(model, model.init(0), x, y, fused=False, **options)
    there = fit(model, model.init(0), x, y, client=client, **options)
    assert relative_error(there.params, here.params) < 1e-10
    np.testing.assert_allclose(there.history["loss"], here.history["loss"], rtol=1e-12)


def kept_by_hand(corrected, fraction):
    """The top-k selection written out: the ceil(fraction * size) largest magnitudes (no ties in
    random data), the rest zero."""
    flat = corrected.ravel()
    largest = np.argsort(-np.abs(flat))[: int(np.ceil(fraction * flat.size))]
    sent = np.zeros_like(flat)
    sent[largest] = flat[largest]
    return sent.reshape(corrected.shape)


def test_topk_transport_of_every_element_equals_the_uncompressed_gradient(client):
    params, x, y = mlp_problem(600)
    dense = crd.value_and_grad(mlp_loss, data_argnums=(1, 2))
    sparse = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), transport=crd.TopK(1.0))
    chunked = da.from_array(x, chunks=150), da.from_array(y, chunks=150)
    value, grads = sparse(params, *chunked)
    expected_value, expected_grads = dense(params, *chunked)
    assert abs(value - expected_value) <= 1e-12 * abs(expected_value)
    assert relative_error(grads, expected_grads) < 1e-12
    assert relative_error(sparse(params, *chunked)[1], expected_grads) < 1e-12  # and no residual left over


def test_topk_payload_is_smaller_than_the_dense_one_by_the_kept_fraction(client):
    params, x, y = mlp_problem(400, hidden=1000)  # 8,002 parameters
    fraction, size = 0.05, 8_002
    kept = sum(int(np.ceil(fraction * np.size(leaf))) for leaf in leaves_of(params))
    dense = crd.value_and_grad(mlp_loss, data_argnums=(1, 2))
    sparse = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), transport=crd.TopK(fraction))
    dense(params, x, y), sparse(params, x, y)
    for dense_bytes, sparse_bytes in zip(dense.bytes_per_chunk, sparse.bytes_per_chunk, strict=True):
        assert size * 8 < dense_bytes < size * 8 * 1.1
        assert kept * (4 + 8) < sparse_bytes < kept * (4 + 8) * 1.15  # int32 index + float64 value each
        assert dense_bytes / sparse_bytes > 0.85 * 8 / (12 * fraction)


def test_topk_residuals_stay_on_their_workers_and_join_the_next_gradient(client):
    params, x, y = mlp_problem(400, seed=5)
    later_params = {name: value * 1.1 for name, value in params.items()}
    fraction, chunk_rows = 0.2, 100
    sparse = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), transport=crd.TopK(fraction))
    chunked = da.from_array(x, chunks=chunk_rows), da.from_array(y, chunks=chunk_rows)
    got = [sparse(params, *chunked)[1], sparse(later_params, *chunked)[1]]
    # the same two steps on one process: per chunk, weighted gradient + residual, top-k, the rest kept
    one_process = cr.grad(mlp_loss)
    residuals = [dict.fromkeys(params, 0.0) for _ in range(4)]
    for step_params, step_got in zip((params, later_params), got):
        expected = {name: np.zeros_like(value) for name, value in params.items()}
        for chunk, residual in enumerate(residuals):
            rows = slice(chunk * chunk_rows, (chunk + 1) * chunk_rows)
            gradient = one_process(step_params, x[rows], y[rows])
            for name in params:
                corrected = gradient[name] * (chunk_rows / 400) + residual[name]
                sent = kept_by_hand(corrected, fraction)
                expected[name] += sent
                residual[name] = corrected - sent
        assert relative_error(step_got, expected) < 1e-12
    on_workers = client.run(crd.compression.release_residuals, sparse.run)
    assert sorted(on_workers.values()) == [2, 2]  # four chunks, each worker kept the residuals of its two


def test_topk_data_parallel_training_converges(client):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((128, 4))
    y = np.tanh(x @ rng.standard_normal((4, 1)))
    model = nn.Sequential([nn.Dense(4, 16), nn.Activation("tanh"), nn.Dense(16, 1)])
    options = {"loss": "mse", "optimizer": optim.adam(0.03), "epochs": 10, "batch_size": 32, "seed": 1}
    sparse = fit(model, model.init(0), x, y, client=client, progress=False, transport=crd.TopK(0.25), **options)
    # uncompressed, the same run ends near 0.018 (1/50 of its first epoch's loss 0.77)
    assert sparse.history["loss"][-1] < 0.1 * sparse.history["loss"][0]


def test_a_model_with_batch_norm_is_refused_naming_the_layer(client):
    model = nn.Sequential([nn.Dense(3, 4), nn.BatchNorm(4), nn.Dense(4, 1)])
    x, y = np.ones((8, 3)), np.ones((8, 1))
    with pytest.raises(cr.UnsupportedError, match=r"batchnorm1\.mean.*synchronized batch norm"):
        fit(model, model.init(0), x, y, loss="mse", optimizer=optim.sgd(0.1), client=client, progress=False)


# ---- faults and errors ---------------------------------------------------------------------------


def test_a_shape_error_in_the_loss_names_the_users_line_before_any_task_runs(client):
    params, x, y = mlp_problem(100)

    def wrong_loss(params, x, y):
        return np.mean((x @ params["W2"] - y) ** 2)

    with pytest.raises(cr.ShapeError, match=r"test_distributed\.py:\d+ in wrong_loss\(\).*inner dimensions"):
        crd.value_and_grad(wrong_loss, data_argnums=(1, 2))(params, x, y)


def test_an_error_raised_on_a_worker_arrives_as_the_same_chainrule_error(client):
    params, x, y = mlp_problem(150)

    def loss_for_full_chunks(params, x, y):  # fine on 100 rows, a reshape error on the last 50
        return mlp_loss(params, x.reshape(100, 5), y)

    value_and_grad = crd.value_and_grad(loss_for_full_chunks, data_argnums=(1, 2))
    with pytest.raises(cr.ChainruleError, match=r"test_distributed\.py:\d+"):
        value_and_grad(params, da.from_array(x, chunks=100), da.from_array(y, chunks=100))


def test_bad_options_are_argument_errors():
    with pytest.raises(cr.ArgumentError, match="reduction"):
        crd.value_and_grad(mlp_loss, data_argnums=(1, 2), reduction="max")
    with pytest.raises(cr.ArgumentError, match="both differentiated and data"):
        crd.value_and_grad(mlp_loss, argnums=(0, 1), data_argnums=(1, 2))
    with pytest.raises(cr.ArgumentError, match="transport"):
        crd.value_and_grad(mlp_loss, data_argnums=(1, 2), transport="int8")
    with pytest.raises(cr.ArgumentError, match="fraction"):
        crd.TopK(0.0)


def test_data_arguments_must_share_their_rows(client):
    params, x, y = mlp_problem(100)
    with pytest.raises(cr.ShapeError, match="share their rows"):
        crd.value_and_grad(mlp_loss, data_argnums=(1, 2))(params, x, y[:50])


def test_a_worker_killed_during_a_distributed_gradient_does_not_change_the_result():
    params, x, y = mlp_problem(4_000)
    expected_value, expected_grads = cr.value_and_grad(mlp_loss)(params, x, y)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        dask_client.wait_for_workers(2)
        victim = sorted(dask_client.scheduler_info()["workers"])[0]
        victim_pid = dask_client.run(os.getpid, workers=[victim])[victim]
        value_and_grad = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), client=dask_client)
        outcome: dict = {}

        def run():
            outcome["result"] = value_and_grad(params, da.from_array(x, chunks=25), da.from_array(y, chunks=25))

        worker_thread = threading.Thread(target=run)
        worker_thread.start()
        deadline = time.monotonic() + 60
        while not any(dask_client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(victim_pid, signal.SIGKILL)
        worker_thread.join(timeout=120)
        assert not worker_thread.is_alive(), "the distributed gradient hung after a worker died"
        assert victim not in dask_client.scheduler_info()["workers"]
    value, grads = outcome["result"]
    assert abs(value - expected_value) <= 1e-12 * abs(expected_value)
    assert relative_error(grads, expected_grads) < 1e-12


def test_the_distributed_training_example_matches_one_process_training(client, capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "distributed_training.py"
    monkeypatch.syspath_prepend(str(path.parent))  # it reads spiral_classifier's data
    spec = importlib.util.spec_from_file_location("distributed_training", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    summary = example.main(["--scheduler", client.scheduler.address, "--epochs", "2"])
    out = capsys.readouterr().out
    assert "2 Dask workers" in out and "float16 transport" in out
    assert summary["cluster"]["difference"] < 1e-12
    assert 0 < summary["cluster, float16 transport"]["difference"] < 1e-2
    assert summary["cluster, top-10% transport"]["bytes"] < summary["cluster"]["bytes"]
