"""Random numbers drawn while tracing are constants of the compiled function: chainrule warns
(``frontends/random_draws.py``). autograd's variational-inference examples draw their Monte Carlo
samples inside the objective; traced once, every later call would reuse the first samples."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.random as npr
import pytest

import chainrule as cr

GLOBAL_GENERATOR = np.random.default_rng(3)


def make_objective():
    rs = npr.RandomState(0)  # in the closure, as autograd's black_box_svi.py keeps it

    def objective(params):
        samples = rs.randn(5, 2) * np.exp(params[2:]) + params[:2]
        return np.sum(samples**2)

    return objective


def test_a_generator_in_the_closure_warns_and_its_draws_are_replayed():
    objective = make_objective()
    with pytest.warns(RuntimeWarning, match=r"tracing objective drew random numbers from 'rs'"):
        gradient = cr.grad(objective)
        first = gradient(np.zeros(4))
    np.testing.assert_array_equal(gradient(np.zeros(4)), first)  # what the warning says: the same samples


def test_a_global_generator_and_numpys_own_warn():
    def uses_global(x):
        return np.sum(x * GLOBAL_GENERATOR.standard_normal(3))

    def uses_numpy(x):
        return np.sum(x * np.random.randn(3))

    with pytest.warns(RuntimeWarning, match="'GLOBAL_GENERATOR'"):
        cr.grad(uses_global)(np.ones(3))
    with pytest.warns(RuntimeWarning, match="global generator"):
        cr.grad(uses_numpy)(np.ones(3))


def test_a_generator_reached_through_a_helper_function_warns():
    rs = npr.RandomState(1)

    def sampler(n):
        return rs.randn(n)

    def objective(x):
        return np.sum(x * sampler(3))

    with pytest.warns(RuntimeWarning, match="'rs'"):
        cr.grad(objective)(np.ones(3))


def test_samples_drawn_outside_and_passed_in_do_not_warn():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((5, 2))

    def objective(params, noise):
        return np.sum((noise * np.exp(params[2:]) + params[:2]) ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cr.grad(objective)(np.zeros(4), noise)
        cr.grad(objective)(np.zeros(4), rng.standard_normal((5, 2)))
