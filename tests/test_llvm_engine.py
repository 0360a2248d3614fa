"""The LLVM engine on hand-written IR: native code, disk cache, vector math, BLAS."""

import ctypes
import dataclasses
import gc
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from chainrule.backends.llvm import blas, cache, engine, mathlib
from chainrule.backends.llvm.engine import LLVMError, compile_ir

ROOT = Path(__file__).resolve().parents[1]
LOOP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_LLVM_TYPES = {"float64": "double", "float32": "float"}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CHAINRULE_VECTOR_MATH", raising=False)
    return tmp_path / "cache" / "llvm"


def loop_function(symbol, function, dtype, isa=None):
    """``void symbol(x, y, out, n)``: out[i] = function(x[i]) (or function(x[i], y[i]))."""
    arity = mathlib.FUNCTIONS[function].arity
    llvm_type = _LLVM_TYPES[dtype]
    operands = ["%a", "%b"][:arity]
    return textwrap.dedent(f"""
        define void @{symbol}(ptr noalias %x, ptr noalias %y, ptr noalias %out, i64 %n) {{
        entry:
          %empty = icmp sle i64 %n, 0
          br i1 %empty, label %exit, label %loop
        loop:
          %i = phi i64 [0, %entry], [%next, %loop]
          %px = getelementptr {llvm_type}, ptr %x, i64 %i
          %a = load {llvm_type}, ptr %px
          %py = getelementptr {llvm_type}, ptr %y, i64 %i
          %b = load {llvm_type}, ptr %py
          %r = {mathlib.call(function, dtype, *operands, isa=isa)}
          %po = getelementptr {llvm_type}, ptr %out, i64 %i
          store {llvm_type} %r, ptr %po
          %next = add i64 %i, 1
          %done = icmp eq i64 %next, %n
          br i1 %done, label %exit, label %loop
        exit:
          ret void
        }}
        """)


def loop_module(functions, isa=None):
    """One module with a loop per (function, dtype): ``loop_<function>_<dtype>``."""
    body = "".join(loop_function(f"loop_{f}_{d}", f, d, isa) for f, d in functions)
    return mathlib.declarations(functions, isa=isa) + "\n" + body


def run_loop(module, symbol, x, y=None):
    y = np.zeros_like(x) if y is None else y
    out = np.empty_like(x)
    LOOP(module.address(symbol))(x.ctypes.data, y.ctypes.data, out.ctypes.data, x.size)
    return out


SIN_F64 = loop_module([("sin", "float64")])


def test_a_sin_loop_computes_numpys_sin():
    x = np.linspace(-20, 20, 1003)  # not a multiple of the vector width: the tail loop runs too
    module = compile_ir(SIN_F64, name="sin")
    np.testing.assert_allclose(run_loop(module, "loop_sin_float64", x), np.sin(x), rtol=1e-15, atol=1e-15)


@pytest.mark.skipif(mathlib.vector_isa() is mathlib.SCALAR, reason="no libmvec on this machine")
def test_the_sin_loop_calls_libmvecs_widest_sin():
    isa = mathlib.vector_isa()
    vector_sin = f"_ZGV{isa.letter}N{isa.lanes('float64')}v_sin"
    assert vector_sin in compile_ir(SIN_F64, name="sin").optimized_ir


def test_loops_get_no_vectorized_epilogue():
    # LLVM_OPTIONS: the scalar remainder loop does the last iterations
    assert "vec.epilog" not in compile_ir(SIN_F64, name="sin").optimized_ir


# Inputs inside each function's domain, and the NumPy/SciPy function computing it.
REFERENCES = {
    "sin": (np.sin, -10, 10),
    "cos": (np.cos, -10, 10),
    "tan": (np.tan, -1.5, 1.5),
    "exp": (np.exp, -30, 30),
    "expm1": (np.expm1, -2, 2),
    "exp2": (np.exp2, -20, 20),
    "log": (np.log, 1e-3, 1e3),
    "log1p": (np.log1p, -0.9, 10),
    "log2": (np.log2, 1e-3, 1e3),
    "log10": (np.log10, 1e-3, 1e3),
    "sqrt": (np.sqrt, 0, 100),
    "cbrt": (np.cbrt, -8, 8),
    "fabs": (np.abs, -3, 3),
    "sinh": (np.sinh, -5, 5),
    "cosh": (np.cosh, -5, 5),
    "tanh": (np.tanh, -5, 5),
    "asin": (np.arcsin, -0.99, 0.99),
    "acos": (np.arccos, -0.99, 0.99),
    "atan": (np.arctan, -10, 10),
    "asinh": (np.arcsinh, -10, 10),
    "acosh": (np.arccosh, 1, 10),
    "atanh": (np.arctanh, -0.99, 0.99),
    "erf": (special.erf, -3, 3),
    "erfc": (special.erfc, -3, 3),
    "exp10": (lambda x: 10.0**x, -5, 5),
    "pow": (np.power, 0.1, 4),
    "atan2": (np.arctan2, -3, 3),
    "hypot": (np.hypot, -3, 3),
    "floor": (np.floor, -5, 5),
    "ceil": (np.ceil, -5, 5),
    "trunc": (np.trunc, -5, 5),
    "rint": (np.rint, -5, 5),
    "copysign": (np.copysign, -3, 3),
    "fmod": (np.fmod, -3, 3),
}


@pytest.fixture(scope="module")
def every_function():
    pairs = [(f, d) for f in REFERENCES for d in ("float64", "float32")]
    return compile_ir(loop_module(pairs), name="every_function", use_cache=False)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-14), ("float32", 1e-6)])
@pytest.mark.parametrize("function", sorted(REFERENCES))
def test_every_math_function_agrees_with_numpy(every_function, function, dtype, rtol):
    reference, low, high = REFERENCES[function]
    x = np.linspace(low, high, 517).astype(dtype)
    y = np.linspace(high, low, 517).astype(dtype) if function != "pow" else np.full_like(x, 1.7)
    arguments = (x, y) if mathlib.FUNCTIONS[function].arity == 2 else (x,)
    with np.errstate(invalid="ignore"):  # fmod(x, 0) is NaN
        expected = reference(*(a.astype(np.float64) for a in arguments))
    got = run_loop(every_function, f"loop_{function}_{dtype}", x, y)
    np.testing.assert_allclose(
        got, expected, rtol=rtol, atol=rtol * np.nanmax(np.abs(expected)) * 1e-2
    )  # fmod(x, 0): NaN


def test_every_loop_calls_the_vector_function_it_names(every_function):
    named = set(re.findall(r"declare <\d+ x \w+> @(_ZGV\w+)\(", every_function.ir_text))
    called = set(re.findall(r"call [^@]*@(_ZGV\w+)\(", every_function.optimized_ir))
    assert called == named
    if mathlib.vector_isa() is mathlib.AVX512:  # 26 functions in libmvec, float64 and float32
        assert len(named) == 52 and "_ZGVeN16v_tanhf" in named and "_ZGVeN8vv_pow" in named


def test_math_calls_carry_no_nnan_or_ninf_and_libm_declarations_are_pure():
    text = loop_module([("expm1", "float64"), ("sin", "float32")])
    assert "nnan" not in text and "ninf" not in text and " fast " not in text
    assert "declare double @expm1(double) nounwind willreturn" in text


def test_functions_libmvec_lacks_stay_scalar_calls():
    # glibc has no vector sqrt (LLVM vectorizes llvm.sqrt into vsqrtpd by itself)
    assert mathlib.call("sqrt", "float64", "%x", isa=mathlib.AVX512) == "call double @llvm.sqrt.f64(double %x)"
    assert mathlib.declarations([("sqrt", "float64")], isa=mathlib.AVX512) == "declare double @llvm.sqrt.f64(double)"


def test_scalar_fallback_when_libmvec_is_missing(monkeypatch):
    assert (
        mathlib.vector_isa(features=frozenset({"avx512f", "avx2"}), library_symbols=lambda name: False)
        is mathlib.SCALAR
    )
    monkeypatch.setenv("CHAINRULE_VECTOR_MATH", "scalar")
    text = loop_module([("sin", "float64"), ("tanh", "float32")])
    assert "_ZGV" not in text
    module = compile_ir(text, name="scalar")
    assert "_ZGV" not in module.optimized_ir
    x = np.linspace(-3, 3, 101)
    np.testing.assert_allclose(run_loop(module, "loop_sin_float64", x), np.sin(x), rtol=1e-15, atol=1e-16)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(run_loop(module, "loop_tanh_float32", x32), np.tanh(x32), rtol=1e-6)


def test_the_vector_width_follows_the_cpu_features():
    has_everything = lambda name: True
    assert mathlib.vector_isa(frozenset({"avx2", "avx512f"}), has_everything) is mathlib.AVX512
    assert mathlib.vector_isa(frozenset({"avx2", "sse4.1"}), has_everything) is mathlib.AVX2
    assert mathlib.vector_isa(frozenset({"sse4.1"}), has_everything) is mathlib.SSE4
    assert mathlib.AVX512.lanes("float64") == 8 and mathlib.AVX512.lanes("float32") == 16
    assert '"prefer-vector-width"="512"' in mathlib.function_attributes(frozenset({"avx512f", "avx"}))
    assert '"prefer-vector-width"="256"' in mathlib.function_attributes(frozenset({"avx"}))


def test_an_unknown_vector_math_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CHAINRULE_VECTOR_MATH", "neon")
    with pytest.raises(mathlib.UnsupportedError, match="CHAINRULE_VECTOR_MATH"):
        mathlib.vector_isa()


GEMM = """
define void @matmul_{t}(ptr %a, ptr %b, ptr %c, i32 %m, i32 %n, i32 %k) {{
entry:
  %transpose = alloca i8
  store i8 78, ptr %transpose                 ; 'N'
  %mp = alloca i32
  store i32 %m, ptr %mp
  %np = alloca i32
  store i32 %n, ptr %np
  %kp = alloca i32
  store i32 %k, ptr %kp
  %alpha = alloca {ty}
  store {ty} 1.0, ptr %alpha
  %beta = alloca {ty}
  store {ty} 0.0, ptr %beta
  ; row-major C = A @ B is column-major C^T = B^T A^T: B first, n before m
  call void @chainrule_{t}gemm(ptr %transpose, ptr %transpose, ptr %np, ptr %mp, ptr %kp, ptr %alpha,
                               ptr %b, ptr %np, ptr %a, ptr %kp, ptr %beta, ptr %c, ptr %np)
  ret void
}}
"""


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 1e-5)])
def test_a_gemm_call_computes_a_matmul(dtype, rtol):
    prefix, llvm_type = ("d", "double") if dtype == "float64" else ("s", "float")
    module = compile_ir(blas.DECLARATIONS + GEMM.format(t=prefix, ty=llvm_type), name="gemm")
    assert "0x" not in module.optimized_ir  # BLAS by symbol name, no raw address in the code
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal((7, 3)).astype(dtype)
    c = np.empty((5, 3), dtype)
    matmul = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, *[ctypes.c_int32] * 3)(module.address(f"matmul_{prefix}"))
    matmul(a.ctypes.data, b.ctypes.data, c.ctypes.data, 5, 3, 7)
    np.testing.assert_allclose(c, a @ b, rtol=rtol)


def test_blas_threads_can_be_set_and_read_back():
    before = blas.get_blas_threads()
    try:
        blas.set_blas_threads(1)
        assert blas.get_blas_threads() == 1
    finally:
        blas.set_blas_threads(before)
    with pytest.raises(ValueError):
        blas.set_blas_threads(0)


def _compile_sin_and_forget_everything_but_the_function():
    module = compile_ir(SIN_F64, name="sin", use_cache=False)
    return module, LOOP(module.address("loop_sin_float64"))


def test_a_module_outlives_the_garbage_collection_of_everything_else():
    _module, function = _compile_sin_and_forget_everything_but_the_function()
    for _ in range(3):  # other modules come and go: their libraries are unloaded
        compile_ir(loop_module([("cos", "float64")]), name="cos", use_cache=False)
        gc.collect()
    x = np.linspace(0, 1, 64)
    out = np.empty_like(x)
    function(x.ctypes.data, x.ctypes.data, out.ctypes.data, x.size)
    np.testing.assert_allclose(out, np.sin(x), rtol=1e-15)


def test_invalid_ir_names_the_offending_line():
    bad = "define double @f(double %x) {\n  %y = fadd double %x, %x\n  ret float %y\n}\n"
    with pytest.raises(LLVMError, match=r"bug in chainrule(.|\n)*>    3 \|   ret float %y"):
        compile_ir(bad, name="bad")


def test_the_verifier_message_points_at_both_instructions():
    bad = textwrap.dedent("""\
        define double @f(double %x) {
        entry:
          br label %next
        next:
          %z = fadd double %x, %w
          %w = fadd double %z, 1.0
          ret double %w
        }
        """)
    with pytest.raises(LLVMError, match=r"verifier(.|\n)*>    5 \|(.|\n)*>    6 \|"):
        compile_ir(bad, name="bad")


def test_asking_for_a_symbol_the_module_lacks_is_an_error():
    module = compile_ir(SIN_F64, name="sin")
    with pytest.raises(LLVMError, match=r"defines no symbol 'cos'.*loop_sin_float64"):
        module.address("cos")


def test_the_cheaper_pipeline_still_vectorizes_and_computes_the_same():
    module = compile_ir(SIN_F64, name="sin", optimization="O1")
    x = np.linspace(-20, 20, 1003)
    np.testing.assert_allclose(run_loop(module, "loop_sin_float64", x), np.sin(x), rtol=1e-15, atol=1e-15)
    assert "_ZGV" in module.optimized_ir or mathlib.vector_isa() is mathlib.SCALAR
    with pytest.raises(ValueError, match="O2, O1"):
        compile_ir(SIN_F64, name="sin", optimization="O3")


def test_big_modules_get_the_cheaper_pipeline():
    small = "define void @f() {\n  ret void\n}\n"
    big = "define void @f() {\n" + "  %x = add i64 1, 2\n" * (engine.O2_MAX_INSTRUCTIONS + 1) + "  ret void\n}\n"
    assert engine.optimization_level(small) == "O2"
    assert engine.optimization_level(big) == "O1"
    assert engine.optimization_level(small, long_loops=True) == "O1"
    huge = "define void @f() {\n" + "  %x = add i64 1, 2\n" * (engine.O1_MAX_INSTRUCTIONS + 1) + "  ret void\n}\n"
    assert engine.optimization_level(huge) == "O1L"


def test_the_large_module_pipeline_skips_straight_line_functions_only():
    straight = (
        "define internal double @scaled(double %x) noinline {\n  %y = fmul double %x, 3.0\n  ret double %y\n}\n"
        "define double @call_scaled(double %x) {\n  %y = call double @scaled(double %x)\n  ret double %y\n}\n"
    )
    module = compile_ir(SIN_F64 + straight, name="large", optimization="O1L")
    (group,) = re.findall(r"(?m)^define internal .*@scaled\(.*\) (?:unnamed_addr )?(#[0-9]+)", module.optimized_ir)
    attributes = dict(re.findall(r"(?m)^attributes (#[0-9]+) = \{(.*)\}$", module.optimized_ir))
    assert "optnone" in attributes[group]
    loop_group = re.findall(r"(?m)^define .*@loop_sin_float64\(.*\) (?:unnamed_addr )?(#[0-9]+)", module.optimized_ir)
    assert all("optnone" not in attributes[g] for g in loop_group)
    assert "_ZGV" in module.optimized_ir or mathlib.vector_isa() is mathlib.SCALAR  # the loop: as at O1
    x = np.linspace(-20, 20, 1003)
    np.testing.assert_allclose(run_loop(module, "loop_sin_float64", x), np.sin(x), rtol=1e-15, atol=1e-15)
    scaled = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(module.address("call_scaled"))
    assert scaled(1.5) == 4.5


# ---- the disk cache ---------------------------------------------------------------------------


def test_the_second_compile_is_a_cache_hit(cache_dir):
    first = compile_ir(SIN_F64, name="sin")
    second = compile_ir(SIN_F64, name="sin")
    assert not first.from_cache and second.from_cache
    assert [p.suffix for p in cache_dir.iterdir()] == [".o"]
    x = np.linspace(-1, 1, 33)
    np.testing.assert_allclose(run_loop(second, "loop_sin_float64", x), np.sin(x), rtol=1e-15)
    assert "_ZGV" in second.optimized_ir or mathlib.vector_isa() is mathlib.SCALAR  # rebuilt on demand


def test_changed_ir_is_a_cache_miss(cache_dir):
    compile_ir(SIN_F64, name="sin")
    changed = compile_ir(SIN_F64.replace("%next = add i64 %i, 1", "%next = add nuw i64 %i, 1"), name="sin")
    assert not changed.from_cache
    assert len(list(cache_dir.iterdir())) == 2


def test_changed_cpu_features_are_a_cache_miss(cache_dir):
    host = engine.host_target()
    compile_ir(SIN_F64, name="sin")
    # The host minus a feature: code the host still runs, but another key.
    without_gfni = engine.Target(
        host.triple,
        host.cpu,
        host.features.replace("+gfni", "-gfni") if "+gfni" in host.features else host.features + ",-gfni",
    )
    other = compile_ir(SIN_F64, name="sin", target=without_gfni)
    assert not other.from_cache
    assert compile_ir(SIN_F64, name="sin", target=without_gfni).from_cache
    key = cache.cache_key(SIN_F64, host, "O2")
    assert key != cache.cache_key(SIN_F64, dataclasses.replace(host, cpu="x86-64"), "O2")
    assert key != cache.cache_key(SIN_F64, host, "O1")


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "empty", "other format"])
def test_a_damaged_cache_file_is_rebuilt(cache_dir, damage):
    compile_ir(SIN_F64, name="sin")
    (path,) = cache_dir.iterdir()
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) // 2],
        "flip a byte": data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:],
        "empty": b"",
        "other format": b"\x7fELF" + data[4:],
    }[damage]
    path.write_bytes(damaged)
    rebuilt = compile_ir(SIN_F64, name="sin")
    assert not rebuilt.from_cache
    assert path.read_bytes() == data
    x = np.linspace(-1, 1, 33)
    np.testing.assert_allclose(run_loop(rebuilt, "loop_sin_float64", x), np.sin(x), rtol=1e-15)


def test_past_max_entries_the_least_recently_used_files_go(cache_dir, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 4)
    keys = [f"{n:064x}" for n in range(6)]
    for age, key in enumerate(keys[:4]):
        cache.store(key, cache.Entry(b"object code", (f"f{age}",)))
        os.utime(cache.path_of(key), (1000 + age, 1000 + age))
    assert cache.load(keys[0]).symbols == ("f0",)  # the oldest, but just used
    cache.store(keys[4], cache.Entry(b"object code", ("f4",)))  # 5 > 4: down to 3
    assert sorted(p.stem for p in cache_dir.glob("*.o")) == [keys[0], keys[3], keys[4]]


def test_an_unwritable_cache_warns_and_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("")
    monkeypatch.setenv("CHAINRULE_CACHE_DIR", str(blocker))
    with pytest.warns(UserWarning, match="cannot write the LLVM compile cache"):
        module = compile_ir(SIN_F64, name="sin")
    assert run_loop(module, "loop_sin_float64", np.array([0.5]))[0] == pytest.approx(np.sin(0.5), rel=1e-15)


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CHAINRULE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_directory() == tmp_path / "chainrule" / "llvm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_directory() == Path.home() / ".cache" / "chainrule" / "llvm"


PROCESS = """
import ctypes, sys
import numpy as np
from chainrule.backends.llvm.engine import compile_ir
module = compile_ir(open(sys.argv[1]).read(), name="sin")
x = np.linspace(-2, 2, 257)
out = np.empty_like(x)
loop = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, ctypes.c_int64)(module.address("loop_sin_float64"))
loop(x.ctypes.data, x.ctypes.data, out.ctypes.data, x.size)
assert np.allclose(out, np.sin(x), rtol=1e-15, atol=0)
print("cached" if module.from_cache else "compiled")
"""


def test_two_processes_compiling_the_same_kernel_at_once_both_succeed(cache_dir, tmp_path):
    ir_file = tmp_path / "sin.ll"
    ir_file.write_text(SIN_F64)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, str(ir_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(2)
    ]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.strip() in ("compiled", "cached")
    assert len(list(cache_dir.glob("*.o"))) == 1 and not list(cache_dir.glob("*.tmp"))
    assert compile_ir(SIN_F64, name="sin").from_cache  # and this process reloads what they wrote
