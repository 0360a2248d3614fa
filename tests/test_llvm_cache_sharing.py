"""Identical programs share one LLVM disk cache entry whatever the function or transform is called
(``value_and_grad`` after ``grad`` of one function, the same body under another name), and a
changed body never finds another's entry. Counted as object files written, never timed."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import cache, engine
from tests.gradient_helpers import numerical_gradient, relative_error

X = np.linspace(0.1, 1.3, 7)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "llvm"


def entries(folder):
    return sorted(path.name for path in folder.glob("*.o"))


def test_value_and_grad_after_grad_of_one_function_shares_one_entry(cache_dir):
    def energy(v):
        return np.sum(np.sin(v) ** 2 * v)

    gradient = cr.grad(energy, backend="llvm")(X)
    written = entries(cache_dir)
    assert len(written) == 1
    value, again = cr.value_and_grad(energy, backend="llvm")(X)
    assert entries(cache_dir) == written  # found, not compiled a second time
    assert relative_error(again, numerical_gradient(energy, (X,), 0)) < 1e-7
    np.testing.assert_allclose(again, gradient, rtol=1e-15)
    np.testing.assert_allclose(value, energy(X), rtol=1e-14)


def test_the_same_program_under_another_name_shares_one_entry(cache_dir):
    def first_name(v):
        return np.sum(np.exp(-v) * v)

    def second_name(v):
        return np.sum(np.exp(-v) * v)

    cr.grad(first_name, backend="llvm")(X)
    written = entries(cache_dir)
    result = cr.grad(second_name, backend="llvm")(X)
    assert entries(cache_dir) == written
    np.testing.assert_allclose(result, np.exp(-X) * (1.0 - X), rtol=1e-14)


def test_a_changed_body_under_the_same_name_gets_an_entry_of_its_own(cache_dir):
    def make(power):
        def energy(v):
            return np.sum(v**power)

        return energy

    cubed = cr.grad(make(3.0), backend="llvm")(X)
    written = entries(cache_dir)
    squared = cr.grad(make(2.0), backend="llvm")(X)
    assert len(entries(cache_dir)) == len(written) + 1
    np.testing.assert_allclose(cubed, 3.0 * X**2, rtol=1e-14)
    np.testing.assert_allclose(squared, 2.0 * X, rtol=1e-14)


def test_the_key_ignores_comment_lines_and_nothing_else():
    target = engine.host_target()
    body = "define double @f(double %x) {\n  %y = fmul double %x, 2.0\n  ret double %y\n}\n"
    commented = "; a kernel called something else\n" + body.replace("  %y", "  ; doubles it\n  %y")
    changed = body.replace("2.0", "3.0")
    assert cache.cache_key(body, target, "O2") == cache.cache_key(commented, target, "O2")
    assert cache.cache_key(body, target, "O2") != cache.cache_key(changed, target, "O2")
    # a semicolon inside an instruction's line is code (a string constant), so it stays in the key
    with_string = '@s = constant [2 x i8] c";a"\n'
    assert cache.cache_key(with_string, target) != cache.cache_key('@s = constant [2 x i8] c";b"\n', target)
