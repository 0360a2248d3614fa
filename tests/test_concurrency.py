"""Threads and processes: one compiled function called from 8 threads at once gives the
one-thread results; threads calling a new signature at once compile it once; processes
compiling into one cache directory agree; a damaged or unreadable cache file is a miss; a
changed function body never reuses the old kernel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.transforms.compiled import Compiled
from chainrule.transforms.reuse import forget_functions

ROOT = Path(__file__).resolve().parent.parent
THREADS = 8


def mlp_loss(params, x):
    hidden = np.tanh(x @ params["W"] + params["b"])
    return np.mean(np.log1p(np.exp(hidden @ params["v"])))


def problem(seed):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((6, 9)), "b": rng.standard_normal(9), "v": rng.standard_normal(9)}
    return params, rng.standard_normal((40, 6))


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_eight_threads_calling_one_function_get_the_one_thread_results(backend):
    gradient = cr.grad(mlp_loss, backend=backend)
    problems = [problem(seed) for seed in range(4 * THREADS)]
    expected = [gradient(*p) for p in problems]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda p: gradient(*p), problems * 3))
    for got, want in zip(results, expected * 3):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_results_read_out_of_the_array_builtins_arena_are_each_calls_own():
    """A small llvm kernel's call through its array builtin (array_entry.py) holds the GIL while
    the builtin runs, and then reads its results out of the builtin's arena: with the GIL switched
    between threads every microsecond, another call used to overwrite them in between, and a thread
    returned another's gradient (seen under load in the test above)."""
    gradient = cr.grad(lambda w, x: np.sum(np.tanh(x @ w) ** 2), backend="llvm")
    rng = np.random.default_rng(3)
    problems = [(rng.standard_normal(3), rng.standard_normal((4, 3))) for _ in range(16)]
    expected = [gradient(*p) for p in problems]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda p: gradient(*p), problems * 40))
    finally:
        sys.setswitchinterval(interval)
    assert sum(not np.array_equal(got, want) for got, want in zip(results, expected * 40)) == 0


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_threads_calling_a_new_signature_at_once_compile_it_once(backend, monkeypatch):
    compiles = []
    original = Compiled._compile_now

    def counted(self, *args):
        compiles.append(self.transform)
        return original(self, *args)

    monkeypatch.setattr(Compiled, "_compile_now", counted)

    def loss(x):  # a new function object: nothing cached yet
        return np.sum(np.sin(x) * np.cos(2 * x))

    gradient = cr.grad(loss, backend=backend)
    x = np.linspace(0.0, 1.0, 17)
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda _: gradient(x), range(THREADS)))
    assert compiles == ["grad"]
    for result in results:
        np.testing.assert_allclose(result, np.cos(x) * np.cos(2 * x) - 2 * np.sin(x) * np.sin(2 * x), rtol=1e-13)


PROGRAM = """
import sys
import numpy as np
import chainrule as cr
from model import loss
x = np.linspace(-1.0, 1.0, 33)
print(repr(float(np.sum(cr.grad(loss, backend="llvm")(x)))))
"""


def run_programs(folder: Path, count: int) -> list[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{folder}",
        "CHAINRULE_CACHE_DIR": str(folder / "cache"),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )
        for _ in range(count)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert "Traceback" not in err
        outputs.append(out.strip())
    return outputs


def test_eight_processes_compiling_into_one_cache_at_once_agree_and_a_changed_body_is_not_stale(tmp_path):
    (tmp_path / "model.py").write_text("import numpy as np\n\ndef loss(x):\n    return np.sum(np.sin(x) ** 2)\n")
    first = run_programs(tmp_path, THREADS)
    x = np.linspace(-1.0, 1.0, 33)
    assert len(set(first)) == 1 and float(first[0]) == pytest.approx(np.sum(np.sin(2 * x)), rel=1e-13)
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    # the same file, name and function, another body: the cache must miss
    (tmp_path / "model.py").write_text("import numpy as np\n\ndef loss(x):\n    return np.sum(np.cos(x) ** 2)\n")
    (second,) = run_programs(tmp_path, 1)
    assert float(second) == pytest.approx(np.sum(-np.sin(2 * x)), rel=1e-13)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "unreadable", "empty"])
def test_a_damaged_or_unreadable_cache_file_is_a_miss_and_the_result_is_right(tmp_path, monkeypatch, damage):
    from chainrule.backends.llvm import cache

    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path))

    def fresh_gradient():
        def loss(x):
            return np.sum(np.exp(-(x**2)))

        forget_functions()  # the same code made again would reuse the kernel in memory: read the file
        return cr.grad(loss, backend="llvm")

    x = np.linspace(-2.0, 2.0, 9)
    expected = -2 * x * np.exp(-(x**2))
    np.testing.assert_allclose(fresh_gradient()(x), expected, rtol=1e-13)
    files = list((tmp_path / "llvm").glob("*.o"))
    assert files
    for path in files:
        data = path.read_bytes()
        if damage == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            path.write_bytes(bytes(reversed(data)))
        elif damage == "empty":
            path.write_bytes(b"")
    if damage == "unreadable":  # chmod 000 does not stop root, so the read itself is made to fail
        real_read = Path.read_bytes

        def refuse(self):
            if self.suffix == ".o":
                raise PermissionError(13, "Permission denied", str(self))
            return real_read(self)

        monkeypatch.setattr(Path, "read_bytes", refuse)
    np.testing.assert_allclose(fresh_gradient()(x), expected, rtol=1e-13)
    assert cache.cache_directory() == tmp_path / "llvm"


def test_a_read_only_cache_directory_warns_and_still_computes(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "cache"))
    import tempfile

    def no_writing(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", no_writing)

    def loss(x):
        return np.sum(np.arctan(x) ** 3)

    x = np.linspace(-1.0, 1.0, 5)
    with pytest.warns(UserWarning, match="cannot write the LLVM compile cache"):
        result = cr.grad(loss, backend="llvm")(x)
    np.testing.assert_allclose(result, 3 * np.arctan(x) ** 2 / (1 + x**2), rtol=1e-13)


def test_a_program_run_twice_uses_the_cache_without_changing_its_answer(tmp_path):
    (tmp_path / "model.py").write_text(
        textwrap.dedent("""
        import numpy as np

        def loss(x):
            return np.sum(np.tanh(x) * x)
    """)
    )
    first = run_programs(tmp_path, 1)
    second = run_programs(tmp_path, 1)
    assert first == second
