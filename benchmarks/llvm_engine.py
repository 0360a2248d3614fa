"""The LLVM engine on its own: vector math, compile and cached-reload time, optimization cost.

    python3 benchmarks/llvm_engine.py           # about a minute
    python3 benchmarks/llvm_engine.py --quick   # smaller arrays and kernels, about 15 s

1. Vector math: a loop ``out[i] = f(x[i])`` over 1,000,000 values, one thread,
   with f compiled as scalar libm calls, as libmvec's AVX2 functions (4 float64
   lanes) and as its AVX-512 ones (8 lanes), next to NumPy's ufunc. The issue's
   bar: 8 lanes ~5.9x over scalar, 4 lanes ~3.4x.
2. Compile versus reload: a module of a few loops and the gradient kernel of the
   depth-30 nested function (``cr.grad(f, backend="llvm").source(x)``) compiled
   from IR text, loaded from the disk cache in the same process, and loaded from
   the cache in a fresh process (the ``compile_ir`` call timed inside it). The
   issue's bars: compiling the nested kernel < 100 ms, reloading it < 10 ms.
3. Optimization cost per instruction, O2 against the cheaper O1 pipeline that
   modules above ``engine.O2_MAX_INSTRUCTIONS`` instructions get, on a loop with
   a long body and on one long basic block (CPU time: the machine is shared).

Every figure is the median of several runs. The machine is shared with other
work, so single figures are noisy; compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
from scipy import special

try:
    from chainrule.backends.llvm import engine, mathlib
except ImportError:  # run from a checkout: python3 benchmarks/llvm_engine.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chainrule.backends.llvm import engine, mathlib

_LLVM_TYPES = {"float64": "double", "float32": "float"}
LOOP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
NUMPY = {"sin": np.sin, "exp": np.exp, "log": np.log, "tanh": np.tanh, "erf": special.erf, "atan": np.arctan}


def loop_module(functions, isa, body_ops=0):
    """A loop ``loop_<f>_<dtype>`` per (function, dtype); ``body_ops`` extra arithmetic in each body."""
    pieces = [mathlib.declarations(functions, isa=isa)]
    for function, dtype in functions:
        t = _LLVM_TYPES[dtype]
        extra, value = [], "%r"
        for k in range(body_ops):  # a long dependent chain, as a fused kernel's body is
            extra.append(f"  %e{k} = fmul {t} {value}, {'%a' if k % 3 else value}")
            value = f"%e{k}"
        pieces.append(f"""
define void @loop_{function}_{dtype}(ptr noalias %x, ptr noalias %out, i64 %n) {{
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %exit, label %loop
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
  %px = getelementptr {t}, ptr %x, i64 %i
  %a = load {t}, ptr %px
  %r = {mathlib.call(function, dtype, "%a", isa=isa)}
{chr(10).join(extra)}
  %po = getelementptr {t}, ptr %out, i64 %i
  store {t} {value}, ptr %po
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}}
""")
    return "\n".join(pieces)


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return median(times)


def vector_math(size, repeats):
    functions = [(f, "float64") for f in ("sin", "exp", "log", "tanh", "erf", "atan")] + [
        (f, "float32") for f in ("sin", "exp", "tanh")
    ]
    host = mathlib.vector_isa()
    isas = [
        isa
        for isa in (mathlib.SCALAR, mathlib.AVX2, mathlib.AVX512)
        if isa.bits <= max(host.bits, 0) or isa is mathlib.SCALAR
    ]
    modules = {
        isa.name: engine.compile_ir(loop_module(functions, isa), name=f"math_{isa.name}", use_cache=False)
        for isa in isas
    }
    print(f"1. out[i] = f(x[i]) over {size:,} values, one thread (ms, median of {repeats}); host: {host.name}")
    header = f"{'function':14s} {'NumPy':>8s}" + "".join(f" {isa.name:>8s}" for isa in isas)
    header += "".join(f" {isa.name + '/scalar':>16s}" for isa in isas[1:]) + f" {'NumPy/best':>11s}"
    print(header)
    for function, dtype in functions:
        x = np.linspace(0.01, 3.0, size).astype(dtype)
        out = np.empty_like(x)
        reference = NUMPY[function](x)
        numpy_time = timed(
            lambda: NUMPY[function](x, out=out) if function != "erf" else special.erf(x, out=out), repeats
        )
        times = {}
        for isa in isas:
            loop = LOOP(modules[isa.name].address(f"loop_{function}_{dtype}"))
            loop(x.ctypes.data, out.ctypes.data, x.size)
            assert np.allclose(out, reference, rtol=1e-5 if dtype == "float32" else 1e-13), (function, isa)
            times[isa.name] = timed(lambda: loop(x.ctypes.data, out.ctypes.data, x.size), repeats)
        row = f"{function + ' ' + dtype[5:]:14s} {numpy_time * 1e3:8.2f}"
        row += "".join(f" {times[isa.name] * 1e3:8.2f}" for isa in isas)
        row += "".join(f" {times['scalar'] / times[isa.name]:15.1f}x" for isa in isas[1:])
        row += f" {numpy_time / min(times.values()):10.1f}x"
        print(row)


RELOAD = """
import sys, time
from chainrule.backends.llvm.engine import compile_ir
text = open(sys.argv[1]).read()
wall, cpu = time.perf_counter(), time.process_time()
module = compile_ir(text, name="reload")
assert module.from_cache
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def nested_gradient_ir(depth=30):
    """The LLVM IR of the gradient of cos(tan(sin(...))) nested ``depth`` deep, over 1e6 points."""
    import chainrule as cr

    def nested(x):
        for _ in range(depth // 3):
            x = np.cos(np.tan(np.sin(x)))
        return np.sum(x)

    return cr.grad(nested, backend="llvm").source(np.linspace(0.1, 0.9, 1_000_000))


def compile_and_reload(repeats):
    functions = [(f, "float64") for f in ("sin", "exp", "tanh", "log")]
    modules = {
        f"{len(functions)} loops of math": loop_module(functions, mathlib.vector_isa(), body_ops=10),
        "nested depth-30 gradient": nested_gradient_ir(),
    }
    print(f"\n2. Compile versus reload from the disk cache, ms (wall / CPU), median of {repeats}")
    print(
        f"{'module':26s} {'instructions':>12s} {'compile':>17s} {'hit, same process':>19s} {'hit, fresh process':>19s}"
    )
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CHAINRULE_CACHE_DIR"] = folder
        environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        for label, text in modules.items():
            compiles = []
            for _ in range(repeats):
                for path in Path(folder, "llvm").glob("*.o"):
                    path.unlink()
                wall, cpu = time.perf_counter(), time.process_time()
                engine.compile_ir(text, name="fresh")
                compiles.append((time.perf_counter() - wall, time.process_time() - cpu))
            hits = []
            for _ in range(repeats):
                wall, cpu = time.perf_counter(), time.process_time()
                engine.compile_ir(text, name="hit")
                hits.append((time.perf_counter() - wall, time.process_time() - cpu))
            ir_file = Path(folder, "module.ll")
            ir_file.write_text(text)
            fresh = [
                tuple(
                    map(
                        float,
                        subprocess.run(
                            [sys.executable, "-c", RELOAD, str(ir_file)],
                            env=environment,
                            check=True,
                            capture_output=True,
                            text=True,
                        ).stdout.split(),
                    )
                )
                for _ in range(repeats)
            ]
            cells = [
                f"{median(w for w, _ in runs) * 1e3:8.2f} /{median(c for _, c in runs) * 1e3:7.2f}"
                for runs in (compiles, hits, fresh)
            ]
            print(f"{label:26s} {engine.instruction_count(text):12d} {cells[0]:>17s} {cells[1]:>19s} {cells[2]:>19s}")
    print("bars (issue 5): the nested kernel compiles in < 100 ms; a cached reload in a fresh process < 10 ms")


def straight_block(length):
    """One basic block of ``length`` instructions: sin calls and arithmetic, as a scalar kernel is."""
    lines, value = [], "%x"
    for k in range(length):
        step = (
            mathlib.call("sin", "float64", value)
            if k % 4 == 3
            else f"fadd double {value}, %x"
            if k % 4 == 1
            else f"fmul double {value}, 0.999"
        )
        lines.append(f"  %v{k} = {step}")
        value = f"%v{k}"
    return (
        mathlib.declarations([("sin", "float64")])
        + "\ndefine double @block(double %x) {\n"
        + "\n".join(lines)
        + f"\n  ret double {value}\n}}\n"
    )


def optimization_cost(sizes, repeats):
    print(f"\n3. Optimization + code generation, CPU ms (process time), median of {repeats}")
    print(f"{'kernel':24s} {'instructions':>12s} {'O2 ms':>9s} {'µs/instr':>9s} {'O1 ms':>9s} {'µs/instr':>9s}")
    isa = mathlib.vector_isa()
    for size in sizes:
        for label, text in (
            (f"loop, {size}-step body", loop_module([("sin", "float64")], isa, body_ops=size)),
            (f"straight block of {size}", straight_block(size)),
        ):
            count = engine.instruction_count(text)
            row = f"{label:24s} {count:12d}"
            for level in ("O2", "O1"):
                seconds = []
                for _ in range(repeats):
                    start = time.process_time()
                    engine.compile_ir(text, name="big", use_cache=False, optimization=level)
                    seconds.append(time.process_time() - start)
                row += f" {median(seconds) * 1e3:9.1f} {median(seconds) / count * 1e6:9.1f}"
            print(row)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller arrays and kernels")
    options = parser.parse_args(argv)
    vector_math(200_000 if options.quick else 1_000_000, 5 if options.quick else 15)
    compile_and_reload(3 if options.quick else 7)
    optimization_cost((500, 2000) if options.quick else (500, 2000, 4000), 1 if options.quick else 3)


if __name__ == "__main__":
    main()
