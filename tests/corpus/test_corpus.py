"""Issue 16's corpus: every program in this folder, differentiated on both backends.

Each program module is plain NumPy (no chainrule import) and exposes ``loss(*params)`` (a scalar)
and ``example_args()`` (seeded float64 arrays). For each program and backend the test checks that
the traced value equals ``loss(*args)`` run by NumPy and that the gradient with respect to every
argument matches fourth-order central finite differences (relative error < 1e-7). A program may set
``FD_STEP`` (the finite-difference step, default 1e-4). A program that uses a function chainrule does
not trace yet is skipped with the trace-time error's message; wrong numbers are never skipped.
"""

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gradient_helpers import numerical_gradient, relative_error

HERE = Path(__file__).resolve().parent
PROGRAMS = sorted(path.stem for path in HERE.glob("*.py") if not path.stem.startswith(("test_", "_", "conftest")))
TOLERANCE = 1e-7


@functools.cache
def program(name: str):
    """The program module ``name``, loaded from its file under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"chainrule_corpus_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def finite_differences(name: str) -> tuple:
    """Numerical gradients of the program's loss with respect to each argument (NumPy only)."""
    module = program(name)
    args = module.example_args()
    step = getattr(module, "FD_STEP", 1e-4)
    return tuple(numerical_gradient(module.loss, args, i, step=step) for i in range(len(args)))


def test_corpus_has_programs():
    assert len(PROGRAMS) >= 30, PROGRAMS


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_is_plain_numpy(name):
    source = (HERE / f"{name}.py").read_text()
    assert "chainrule" not in source
    module = program(name)
    args = module.example_args()
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in args)
    assert np.ndim(module.loss(*args)) == 0


@pytest.mark.parametrize("name", PROGRAMS)
def test_gradient_matches_finite_differences(name, backend):
    module = program(name)
    args = module.example_args()
    try:  # only a trace-time refusal skips: the program needs a function not traced yet
        cr.trace(module.loss, *args)
    except (cr.UnsupportedError, cr.TraceError) as error:
        pytest.skip(f"{name}: {error}")
    argnums = tuple(range(len(args)))
    value, gradients = cr.value_and_grad(module.loss, argnums=argnums, backend=backend)(*args)
    expected = module.loss(*args)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-10, atol=1e-12)
    for index, (analytic, numeric) in enumerate(zip(gradients, finite_differences(name), strict=True)):
        assert np.shape(analytic) == np.shape(args[index])
        error = relative_error(analytic, numeric)
        assert error < TOLERANCE, f"{name}, argument {index}: relative error {error:.3e}"
