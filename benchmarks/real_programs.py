"""Gradients of three real programs (issue 16's corpus) with chainrule, autograd and JAX, same run.

    python3 benchmarks/real_programs.py          # about a minute; prints one table

The programs are corpus modules (tests/corpus), ports of what autograd's examples compute:
``gp_mvn_logpdf`` (a Gaussian-process evidence through scipy.stats.multivariate_normal with a traced
covariance), ``hmm_forward`` (an HMM forward recursion with logsumexp over a Python loop) and
``lstm_char_model`` (a character LSTM over a batch). Each is run unmodified by chainrule (numpy and
llvm backends); for autograd and JAX the same source is loaded with its import lines changed to
``autograd.numpy`` / ``jax.numpy`` and their scipy modules, which is all a port takes. Peers that are
not installed are skipped (neither is a dependency).

Per method and program, each repeat builds a fresh function object with a key of its own (a new
default value; chainrule shares kernels between functions of the same code and closure) and a fresh
kernel cache directory, times the first call (trace, differentiate and compile for chainrule and JAX)
and then the mean of a few more calls; the table shows medians over repeats of CPU time (time.process_time), so a busy
machine's waiting does not count. The gradient is taken with respect to every argument.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/real_programs.py
    sys.path.insert(0, str(ROOT))
    import chainrule as cr

PROGRAMS = ("gp_mvn_logpdf", "hmm_forward", "lstm_char_model")
REPEATS, CALLS = 5, 20
TOKENS = itertools.count()  # a new default value per function object: a new function key, a new compile

# the import lines a port changes, per peer
PORTS = {
    "autograd": {
        "import numpy as np": "import autograd.numpy as np",
        "from scipy.special import": "from autograd.scipy.special import",
        "from scipy.stats import": "from autograd.scipy.stats import",
    },
    "jax": {
        "import numpy as np": "import jax.numpy as np",
        "from scipy.special import": "from jax.scipy.special import",
        "from scipy.stats import": "from jax.scipy.stats import",
    },
}


def load(name: str, port: dict[str, str] | None = None):
    """The corpus module ``name``; with ``port``, its source with those import lines replaced."""
    path = ROOT / "tests" / "corpus" / f"{name}.py"
    if port is None:
        spec = importlib.util.spec_from_file_location(f"real_program_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    source = path.read_text()
    for line, replacement in port.items():
        source = source.replace(line, replacement)
    namespace: dict = {"__name__": f"ported_{name}"}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace


def gradient_makers(name: str) -> dict:
    """method -> a function making a fresh gradient function of every argument of the program's loss."""
    module = load(name)
    count = len(module.example_args())
    argnums = tuple(range(count))

    def chainrule_maker(backend):
        def make():
            os.environ["CHAINRULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="chainrule-bench-")  # no kernel from disk
            token = next(TOKENS)
            return cr.grad(lambda *a, _fresh=token: module.loss(*a), argnums=argnums, backend=backend)

        return make

    makers = {f"chainrule {backend}": chainrule_maker(backend) for backend in ("numpy", "llvm")}
    try:
        import autograd

        ported = load(name, PORTS["autograd"])
        makers["autograd"] = lambda: autograd.grad(lambda *a: ported["loss"](*a), argnum=argnums)
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        jax_ported = load(name, PORTS["jax"])
        makers["jax.jit"] = lambda: jax.jit(jax.grad(lambda *a: jax_ported["loss"](*a), argnums=argnums))
    except ImportError:
        pass
    return makers


def measure(make, args) -> tuple[float, float]:
    """CPU seconds of the first call and of one later call (mean of CALLS) of a fresh gradient function."""
    function = make()
    start = time.process_time()
    np.asarray(function(*args)[0])
    first = time.process_time() - start
    start = time.process_time()
    for _ in range(CALLS):
        np.asarray(function(*args)[0])
    return first, (time.process_time() - start) / CALLS


def main() -> None:
    print(f"{'program':18s} {'method':16s} {'first call ms':>14s} {'per call us':>12s} {'vs numpy':>9s}")
    for name in PROGRAMS:
        args = load(name).example_args()
        makers = gradient_makers(name)
        samples: dict[str, list[tuple[float, float]]] = {method: [] for method in makers}
        for _ in range(REPEATS):
            for method, make in makers.items():  # methods take turns within a repeat
                samples[method].append(measure(make, args))
        baseline = median(s[1] for s in samples["chainrule numpy"])
        for method, timings in samples.items():
            first, call = median(t[0] for t in timings), median(t[1] for t in timings)
            print(f"{name:18s} {method:16s} {1e3 * first:14.1f} {1e6 * call:12.1f} {call / baseline:9.2f}")


if __name__ == "__main__":
    main()
