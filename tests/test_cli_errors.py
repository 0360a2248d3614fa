"""Every bad command line gets a one-line chainrule (or argparse usage) error and a non-zero exit
status, never a Python traceback. The table runs ``chainrule.cli.main`` in this process (all the
error handling is there: ``python -m chainrule`` is ``raise SystemExit(main())``, and an escaping
exception fails the test); a few cases also run as a user runs them, in a subprocess (each one
starts Python and imports NumPy, SciPy and SymPy: ~5 s here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chainrule.cli.main import main

MODEL = "import numpy as np\n\ndef loss(p, x):\n    return np.sum(np.tanh(x @ p) ** 2)\n"
BROKEN_IMPORT = "import numpy as np\n\nX = np.ones(3) @ np.ones(4)\n\ndef f(x):\n    return x\n"


def run_cli(*arguments: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chainrule", *arguments], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "broken.py").write_text(BROKEN_IMPORT)
    return tmp_path


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["bench", "bogus"], "invalid choice: 'bogus'"),
        (["bench", "nested", "--depth", "abc"], "invalid int value: 'abc'"),
        (["bench", "nested", "--points", "0"], "must be positive"),
        (["dump", "missing.py:f"], "no such file: missing.py"),
        (["dump", "model.py"], "expected FILE.py:FUNC"),
        (["dump", "model.py:nothere"], "has no function 'nothere'"),
        (["dump", "model.py:loss", "--shape", "p=3x2"], "loss(p, x) needs --shape for x"),
        (["dump", "model.py:loss", "--shape", "q=3"], "loss() has no parameter 'q' (its parameters: p, x)"),
        (["dump", "model.py:loss", "--shape", "p=3x2", "--shape", "x=abc"], "expected NAME=DIMS"),
        (["dump", "model.py:loss", "--shape", "p=-3x2", "--shape", "x=4x3"], "negative dimensions"),
        (["dump", "model.py:loss", "--shape", "p=3x2", "--shape", "x=4x5"], "model.py:4 in loss(): matmul of shapes"),
        (["dump", "model.py:loss", "--shape", "p=3x2", "--shape", "x=4x3", "--stage", "bogus"], "unknown stage"),
        (["dump", "broken.py:f", "--shape", "x=3"], "importing broken.py failed at broken.py:3: ValueError"),
        (["gradcheck", "model.py:loss", "--shape", "p=3x2", "--shape", "x=4x3", "--seed", "abc"], "--seed"),
        (["dot", "model.py:loss", "--shape", "p=3x2", "--shape", "x=4x3"], "required: -o/--output"),
        (["coverage", "-o", "/nonexistent/dir/x.md"], "No such file or directory"),
    ],
)
def test_a_bad_command_line_exits_non_zero_with_one_message(model_dir, arguments, message, monkeypatch, capsys):
    monkeypatch.chdir(model_dir)
    try:
        status = main(arguments)
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    stderr = capsys.readouterr().err
    assert status not in (0, None)
    assert "Traceback" not in stderr
    assert message in stderr
    assert stderr.strip().splitlines()[-1].startswith(("chainrule", "usage", "    "))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["bench", "nested", "--depth", "abc"], "invalid int value: 'abc'"),
        (["dump", "broken.py:f", "--shape", "x=3"], "importing broken.py failed at broken.py:3: ValueError"),
    ],
)
def test_run_as_a_user_runs_it_a_bad_command_line_prints_no_traceback(model_dir, arguments, message):
    result = run_cli(*arguments, cwd=model_dir)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(("chainrule", "usage", "    "))


def test_shapes_may_be_given_in_any_order_they_follow_the_parameters(model_dir):
    result = run_cli("dump", "model.py:loss", "--shape", "x=4x3", "--shape", "p=3x2", cwd=model_dir)
    assert result.returncode == 0, result.stderr
    assert "matmul x, p" in result.stdout and "f64[4,2]" in result.stdout
