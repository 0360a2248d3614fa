import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import chainrule as cr
from chainrule.cli.inputs import load_function
from chainrule.cli.main import main
from chainrule.compiler.pipeline import STAGES
from chainrule.ir import Graph, TensorType
from chainrule.ir.diff import op_count_delta, text_diff


def test_demo_prints_ir_backward_source_and_the_seeds_gradients(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "def loss(p.W1: f64[3,4]" in out  # the traced IR's signature
    assert "def loss_value_and_grad(" in out  # the generated code
    assert "dZ1 = np.where(" in out  # backward lines named after the user's variables
    assert "# d relu A1 at demo.py:" in out  # ... and citing the forward op they came from
    assert "dW2[0,1]     -0.543639   -0.5436" in out  # seed 12.7 step B3
    assert "agrees to the printed precision" in out


def test_python_dash_m_chainrule_runs_the_demo():
    result = subprocess.run([sys.executable, "-m", "chainrule", "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "seed 002" in result.stdout


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(
        textwrap.dedent("""
        import numpy as np

        def loss(w, x):
            return np.sum(np.tanh(x @ w) ** 2)


        def example_args():
            rng = np.random.default_rng(3)
            return rng.standard_normal((3, 2)), rng.standard_normal((5, 3))
    """)
    )
    return path


def test_gradcheck_passes_a_correct_gradient_using_example_args(model_file, capsys):
    assert main(["gradcheck", f"{model_file}:loss"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "FAILED" not in out


def test_gradcheck_accepts_shapes_on_the_command_line(model_file, capsys):
    assert main(["gradcheck", f"{model_file}:loss", "--shape", "w=3x2", "--shape", "x=4x3", "--argnums", "0"]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_gradcheck_reports_a_missing_function_clearly(model_file, capsys):
    assert main(["gradcheck", f"{model_file}:nope"]) == 2
    assert "has no function 'nope'" in capsys.readouterr().err


def test_gradcheck_of_a_file_that_is_not_python_says_so(tmp_path, capsys):
    path = tmp_path / "model.txt"
    path.write_text("def f(x):\n    return x\n")
    assert main(["gradcheck", f"{path}:f"]) == 2
    assert "is not a Python file" in capsys.readouterr().err


def test_gradcheck_without_inputs_says_how_to_give_them(tmp_path, capsys):
    path = tmp_path / "bare.py"
    path.write_text("import numpy as np\ndef f(x):\n    return np.sum(x)\n")
    assert main(["gradcheck", f"{path}:f"]) == 2
    assert "example_args()" in capsys.readouterr().err


def test_gradcheck_names_the_users_line_on_a_shape_error(tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text("import numpy as np\ndef f(x):\n    return np.sum(x + np.ones(7))\n")
    assert main(["gradcheck", f"{path}:f", "--shape", "x=3"]) == 2
    err = capsys.readouterr().err
    assert "bad.py:3" in err and "[3]" in err and "[7]" in err


# ---- chainrule dump and chainrule dot -------------------------------------------------------


def _compiled_model(model_file):
    """model_file's loss, compiled by the API as ``dump --grad`` compiles it, and its example inputs."""
    function, module = load_function(f"{model_file}:loss")
    return cr.value_and_grad(function), module.example_args()


@pytest.mark.parametrize("stage", STAGES)
def test_dump_prints_the_ir_after_the_asked_stage(model_file, capsys, stage):
    assert main(["dump", f"{model_file}:loss", "--grad", "--stage", stage]) == 0
    out = capsys.readouterr().out
    compiled, inputs = _compiled_model(model_file)
    assert out.startswith("def loss_grad(" if stage != "traced" else "def loss(w: f64[3,2], x: f64[5,3])")
    assert out == compiled.ir(*inputs, stage=stage) + "\n"


def test_dump_format_graphml_writes_the_stage_that_networkx_reads_back(model_file, tmp_path, capsys):
    from chainrule.ir import Graph

    output = tmp_path / "loss.graphml"
    assert (
        main(["dump", f"{model_file}:loss", "--grad", "--stage", "fused", "--format", "graphml", "-o", str(output)])
        == 0
    )
    assert "fused graph" in capsys.readouterr().out
    compiled, inputs = _compiled_model(model_file)
    assert str(Graph.read_graphml(str(output))) == compiled.ir(*inputs, stage="fused")


def test_dump_format_graphml_without_a_file_says_what_it_needs(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--format", "graphml"]) == 2
    assert "-o FILE" in capsys.readouterr().err


def test_dump_without_grad_compiles_the_forward_pass_only(model_file, capsys):
    assert main(["dump", f"{model_file}:loss"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def loss(w: f64[3,2], x: f64[5,3]) -> f64[]:")
    assert "d matmul" not in out  # no backward lines


def test_dump_stage_all_has_every_stage_with_its_node_count_and_pass_times(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--grad", "--stage", "all"]) == 0
    out = capsys.readouterr().out
    headers = re.findall(r"^=== (\w+): (\d+) nodes(.*) ===$", out, flags=re.MULTILINE)
    assert [stage for stage, _, _ in headers] == list(STAGES)
    compiled, inputs = _compiled_model(model_file)
    for stage, count, timing in headers:
        assert int(count) == len(compiled.graph(*inputs, stage=stage))
        if stage == "grad":
            assert re.fullmatch(r", [\d.]+ ms \(simplify forward [\d.]+ ms, reverse [\d.]+ ms, dce [\d.]+ ms\)", timing)
        if stage == "traced":
            assert timing == ""  # no pass made it


def test_dump_stage_all_of_a_jit_has_no_grad_stage(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--stage", "all"]) == 0
    stages = re.findall(r"^=== (\w+): \d+ nodes", capsys.readouterr().out, flags=re.MULTILINE)
    assert stages == [s for s in STAGES if s != "grad"]


def test_dump_diff_shows_simplify_turning_a_hand_written_sigmoid_into_one_op(tmp_path, capsys):
    path = tmp_path / "sig.py"
    path.write_text("import numpy as np\n\ndef f(z):\n    return np.sum(1 / (1 + np.exp(-z)))\n")
    assert main(["dump", f"{path}:f", "--shape", "z=4x3", "--diff"]) == 0
    out = capsys.readouterr().out
    section = out.split("=== pass simplify (simplified): ")[1].split("=== pass")[0]
    # 1 / (1 + exp(-z)): neg, exp, the constant 1, add and div become one sigmoid
    assert section.startswith("7 -> 3 nodes")
    assert "ops: -1 add, -1 const, -1 div, -1 exp, -1 neg, +1 sigmoid" in section
    removed = [line for line in section.splitlines() if line.startswith("-  ")]
    added = [line for line in section.splitlines() if line.startswith("+  ")]
    assert any("= div %const" in line for line in removed)
    assert any(re.search(r"%sigmoid\.\w+: f64\[4,3\] = sigmoid z ", line) for line in added)
    assert "=== pass symbolic (simplified): 3 -> 3 nodes" in out and "no change" in out


def test_dump_diff_of_one_stage_shows_only_its_passes(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--grad", "--diff", "--stage", "grad"]) == 0
    passes = re.findall(r"^=== pass (.+) \((\w+)\):", capsys.readouterr().out, flags=re.MULTILINE)
    assert passes == [("simplify forward", "grad"), ("reverse", "grad"), ("dce", "grad")]


def test_pass_diff_ignores_renumbering():
    # the same two nodes after an extra one: every id shifts, yet only the new line is a change
    def build(extra: bool) -> Graph:
        graph = Graph("f")
        x = graph.add_input(TensorType((3,), "float64"), "x")
        if extra:
            graph.add("neg", (x,))
        graph.set_outputs([graph.add("exp", (graph.add("mul", (x, x)),))])
        return graph

    changes = [line for line in text_diff(build(False), build(True))[2:] if line[:1] in "+-"]
    assert len(changes) == 1 and changes[0].startswith("+") and "= neg x" in changes[0]
    assert op_count_delta(build(False), build(True)) == "+1 neg"
    assert text_diff(build(True), build(True)) == []


def test_dump_source_prints_the_generated_code(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--grad", "--source"]) == 0
    out = capsys.readouterr().out
    assert "=== generated code (numpy) ===" in out and "def loss_value_and_grad(w, x):" in out


def test_dump_with_the_llvm_backend_prints_the_llvm_ir(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--grad", "--backend", "llvm"]) == 0
    out = capsys.readouterr().out
    assert "=== generated code (llvm) ===" in out
    assert "; loss_value_and_grad: the whole function" in out  # symbols are named by a hash of the code
    assert "define void @cr_" in out and "_entry(ptr noalias %table, i64 %threads)" in out


def test_dump_with_an_unknown_backend_lists_the_backends(model_file, capsys):
    with pytest.raises(SystemExit):
        main(["dump", f"{model_file}:loss", "--backend", "cuda"])
    assert "invalid choice: 'cuda'" in capsys.readouterr().err


def test_dump_of_an_unknown_stage_lists_the_stages(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--stage", "optimized"]) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'optimized'" in err and ", ".join(STAGES) in err


def test_dump_of_the_grad_stage_without_grad_says_to_add_it(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--stage", "grad"]) == 2
    assert "add --grad" in capsys.readouterr().err


def test_dump_argnums_without_grad_is_an_error(model_file, capsys):
    assert main(["dump", f"{model_file}:loss", "--argnums", "1"]) == 2
    assert "add --grad" in capsys.readouterr().err


def test_dot_writes_graphviz_text_with_fused_bodies_in_the_labels(model_file, tmp_path, capsys):
    output = tmp_path / "graph.dot"
    assert main(["dot", f"{model_file}:loss", "--grad", "-o", str(output)]) == 0
    text = output.read_text()
    assert text.startswith('digraph "loss_grad" {')
    fused = [line for line in text.splitlines() if "fused" in line]
    assert fused and all("\\nmul(" in line or "\\nsub(" in line for line in fused)  # the body, on its own line
    assert 'fillcolor="#fdecea"' in text  # backward nodes stand out
    assert f"wrote {output}" in capsys.readouterr().out


def test_dot_escapes_quotes_and_braces_in_labels():
    graph = Graph('say "hi" {now}')
    x = graph.add_input(TensorType((2,), "float64"), "x")
    graph.set_outputs([graph.add("exp", (x,))], ['out "0"'])
    text = graph.to_dot()
    assert text.startswith('digraph "say \\"hi\\" \\{now\\}" {')
    assert 'label="out \\"0\\""' in text


def test_dot_to_png_without_graphviz_says_to_install_it_or_write_dot(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["dot", f"{model_file}:loss", "-o", str(tmp_path / "graph.png")]) == 2
    err = capsys.readouterr().err
    assert "install graphviz" in err and "graph.dot" in err
    assert not (tmp_path / "graph.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_dot_to_svg_runs_graphviz(model_file, tmp_path):
    output = tmp_path / "graph.svg"
    assert main(["dot", f"{model_file}:loss", "--grad", "--stage", "fused", "-o", str(output)]) == 0
    assert "<svg" in output.read_text()


def test_dot_rejects_an_unknown_file_type(model_file, tmp_path, capsys):
    assert main(["dot", f"{model_file}:loss", "-o", str(tmp_path / "graph.jpeg")]) == 2
    assert "expected a file ending in .dot" in capsys.readouterr().err
