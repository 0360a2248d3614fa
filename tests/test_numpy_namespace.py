"""Every callable of NumPy's namespace (and np.linalg's), called on traced values, traces, raises, or
returns something that cannot depend on the traced values: none silently returns a plain array
computed from them, which would drop the gradient."""

import inspect
import warnings

import numpy as np
import pytest

import chainrule as cr

# callables with effects outside the program (files, printing, global state, test runners)
_EFFECTS = {
    "test",
    "info",
    "show_config",
    "show_runtime",
    "source",
    "lookfor",
    "get_include",
    "save",
    "savez",
    "savez_compressed",
    "savetxt",
    "load",
    "loadtxt",
    "genfromtxt",
    "fromfile",
    "memmap",
    "seterr",
    "seterrcall",
    "setbufsize",
    "set_printoptions",
    "printoptions",
    "set_string_function",
}


def _callables(module, prefix):
    for name in sorted(dir(module)):
        value = getattr(module, name)
        if name.startswith("_") or name in _EFFECTS or not callable(value) or inspect.isclass(value):
            continue
        yield f"{prefix}.{name}", value


CALLABLES = [*_callables(np, "np"), *_callables(np.linalg, "np.linalg"), *_callables(np.fft, "np.fft")]
X = np.array([[0.3, 0.6], [0.2, 0.9]])
OTHER = np.array([[1.7, -0.4], [2.5, 0.1]])  # same shape, other values


def _leaves(value, path=()) -> list:
    """(position, leaf) of a result: its arrays, tracers and other values, in tuples and lists."""
    if isinstance(value, (tuple, list)):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, (*path, index))]
    return [(path, value)]


def _eager(function, x, arity):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return function(*(x,) * arity)


@pytest.mark.parametrize("name,function", CALLABLES, ids=[name for name, _ in CALLABLES])
def test_a_numpy_callable_traces_raises_or_ignores_the_values(name, function):
    for arity in (1, 2):
        produced = {}

        def program(x, arity=arity, produced=produced):
            produced["value"] = _eager(function, x, arity)
            return x.sum()

        try:
            cr.trace(program, X)
        except Exception:  # a chainrule error, or NumPy's own for arguments it does not take
            continue
        plain = {path: leaf for path, leaf in _leaves(produced["value"]) if isinstance(leaf, np.ndarray)}
        # a plain array may only be what NumPy gives whatever the values (np.zeros_like, an empty residual)
        for values in (X, OTHER) if plain else ():
            eager = dict(_leaves(_eager(function, values, arity)))
            for path, leaf in plain.items():
                assert path in eager and np.array_equal(leaf, eager[path], equal_nan=True), (
                    f"{name} returned a plain array that depends on the traced values"
                )
        return
