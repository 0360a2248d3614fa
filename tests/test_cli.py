import subprocess
import sys
import textwrap

import numpy as np
import pytest

from chainrule.cli import main


def test_demo_prints_ir_backward_source_and_the_seeds_gradients(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "def loss(p.W1: f64[3,4]" in out          # the traced IR's signature
    assert "def loss_value_and_grad(" in out         # the generated code
    assert "dZ1 = np.where(" in out                  # backward lines named after the user's variables
    assert "# d relu A1 at demo.py:" in out          # ... and citing the forward op they came from
    assert "dW2[0,1]     -0.543639   -0.5436" in out  # seed 12.7 step B3
    assert "agrees to the printed precision" in out


def test_python_dash_m_chainrule_runs_the_demo():
    result = subprocess.run([sys.executable, "-m", "chainrule", "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "seed 002" in result.stdout


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent("""
        import numpy as np

        def loss(w, x):
            return np.sum(np.tanh(x @ w) ** 2)


        def example_args():
            rng = np.random.default_rng(3)
            return rng.standard_normal((3, 2)), rng.standard_normal((5, 3))
    """))
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
