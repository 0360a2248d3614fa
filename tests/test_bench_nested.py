"""``chainrule bench nested``: one table, SymPy's failures reported in their rows, never a crash."""

from chainrule.cli.bench_methods import run_method
from chainrule.cli.main import main
from chainrule.cli.nested_function import reference


def test_bench_nested_prints_one_row_per_method_with_the_reference_value(capsys):
    assert main(["bench", "nested", "--depth", "3", "--points", "50", "--repeats", "1", "--timeout", "120"]) == 0
    out = capsys.readouterr().out
    _, exact = reference(3)
    expected = f"{float(exact):.15g}"
    for label in (
        "SymPy diff+subs",
        "SymPy diff+lambdify",
        "SymPy diff+cse+lambdify",
        "chainrule (numpy)",
        "chainrule (llvm)",
    ):
        row = next(line for line in out.splitlines() if line.startswith(label))
        assert expected in row, row
    assert "ops" in out and "cse" in out and "nodes" in out  # expression sizes, side by side
    assert "N points: chainrule (llvm) is" in out and "faster than chainrule (numpy)" in out


def test_sympys_recursion_error_is_a_result_in_its_row():
    # SymPy's diff dies of RecursionError near depth 50 at Python's default limit (seed 001 at 30 is fine)
    result = run_method("sympy-subs", 60, 10, 1, timeout=120, budget=1.0)
    assert result["error"].startswith("RecursionError")


def test_a_row_over_its_time_limit_says_timeout():
    result = run_method("chainrule", 30, 10, 1, timeout=0.01, budget=1.0)
    assert result == {"error": "timeout (> 0.01 s)"}
