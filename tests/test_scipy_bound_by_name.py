"""SciPy functions a program imported by name before chainrule (autograd's examples, ported by
changing their import lines, do ``from scipy.special import logsumexp`` above the chainrule import),
and SciPy functions chainrule does not trace: the first trace, the second name themselves at the
user's line (``frontends/rebinding.py``, ``frontends/conversion_advice.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

import chainrule as cr
from chainrule.frontends.rebinding import rebind_in_user_modules

ROOT = Path(__file__).resolve().parent.parent


def run_script(tmp_path: Path, source: str) -> str:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(source))
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    finished = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=environment, timeout=120
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def test_a_scipy_function_imported_by_name_before_chainrule_traces(tmp_path):
    output = run_script(
        tmp_path,
        """
        import numpy as np
        from scipy.special import logsumexp
        from scipy.linalg import solve_triangular
        import scipy.special

        import chainrule as cr

        def forward_log_likelihood(log_a, x):  # an HMM's forward recursion
            log_alpha = x
            for _ in range(3):
                log_alpha = logsumexp(log_alpha[:, None] + log_a, axis=0)
            return logsumexp(log_alpha) + np.sum(solve_triangular(np.tril(log_a) + 3 * np.eye(3), x, lower=True))

        log_a, x = np.log(np.full((3, 3), 1 / 3) + np.eye(3)), np.array([0.1, -0.4, 0.3])
        gradient = cr.grad(forward_log_likelihood)(log_a, x)
        step, numeric = 1e-6, np.zeros_like(log_a)
        for index in np.ndindex(*log_a.shape):
            bump = np.zeros_like(log_a)
            bump[index] = step
            numeric[index] = (forward_log_likelihood(log_a + bump, x) - forward_log_likelihood(log_a - bump, x)) / (2 * step)
        print(np.max(np.abs(gradient - numeric)) < 1e-7)
        print(logsumexp is scipy.special.logsumexp, logsumexp(x) == scipy.special.logsumexp.__wrapped__(x))
        """,
    )
    assert output.split() == ["True", "True", "True"]


def test_installed_packages_keep_scipys_own_functions():
    import scipy.stats._discrete_distns as scipy_internal  # SciPy's own module: never rebound

    rebind_in_user_modules()
    assert not hasattr(scipy_internal.logsumexp, "__wrapped__")


def test_a_scipy_function_chainrule_does_not_trace_is_named_at_the_users_line():
    def log_density(x):
        return np.sum(scipy.stats.weibull_min.logpdf(x, 2.0))  # the line the error names

    with pytest.raises(cr.TraceError, match=r"SciPy's scipy\.stats\.\S+logpdf\(\)") as caught:
        cr.grad(log_density)(np.array([1.0, 2.0]))
    assert caught.value.loc.filename == __file__
    assert caught.value.loc.function == "log_density"
