"""Golden tests: the IR text of small functions after every stage, as in tests/golden/<function>.<stage>.txt.

After an intended change to the compiler, regenerate the files with

    CHAINRULE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_ir.py

and read `git diff tests/golden/` before committing: the goldens are a review
of what the optimizer does to code people write, and a change in them should
be one you can explain.

The functions live in golden_functions.py, not in this module, and the goldens
keep their source locations (``# Z1, golden_functions.py:21``): the comments
linking the IR, and the generated code, back to the user's lines are part of
what is pinned down. Only an edit of golden_functions.py moves those lines,
and such an edit changes the goldens anyway; this module can change freely.
"""

import difflib
import functools
import os
from pathlib import Path

import pytest
from golden_functions import CASES

import chainrule as cr
from chainrule.compiler.pipeline import STAGES

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CHAINRULE_UPDATE_GOLDEN") == "1"
HOW_TO_UPDATE = "CHAINRULE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_ir.py"


@functools.cache
def compiled_texts(case: str) -> dict[str, str]:
    """The IR text of ``case`` after each stage, from one fresh compilation."""
    function, arguments, argnums = CASES[case]
    compiled = cr.value_and_grad(function, argnums)
    return {stage: compiled.ir(*arguments, stage=stage) + "\n" for stage in STAGES}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_ir_text_matches_the_golden_file(case, stage):
    actual = compiled_texts(case)[stage]
    path = GOLDEN / f"{case}.{stage}.txt"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no golden file tests/golden/{path.name}; create it with {HOW_TO_UPDATE}, then read it")
    expected = path.read_text()
    if actual != expected:
        diff = "\n".join(
            difflib.unified_diff(expected.splitlines(), actual.splitlines(), f"golden {path.name}", "now", lineterm="")
        )
        pytest.fail(
            f"the IR of {case} after {stage} changed:\n{diff}\n"
            f"If the change is intended, regenerate with {HOW_TO_UPDATE} and review the diff."
        )


def test_every_golden_file_belongs_to_a_case():
    expected = {f"{case}.{stage}.txt" for case in CASES for stage in STAGES}
    stale = sorted(p.name for p in GOLDEN.glob("*.txt") if p.name not in expected)
    assert not stale, f"golden files without a case (delete them): {stale}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_second_compilation_prints_the_same_text(case):
    # names and order come from the graph, not from object ids or set order: compiling again changes nothing
    function, arguments, argnums = CASES[case]
    again = cr.value_and_grad(function, argnums)
    assert {stage: again.ir(*arguments, stage=stage) + "\n" for stage in STAGES} == compiled_texts(case)
