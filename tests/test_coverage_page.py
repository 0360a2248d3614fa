"""docs/numpy-coverage.md is generated from the registry (``chainrule coverage``) and kept current."""

from pathlib import Path

from chainrule.cli.coverage import REFUSED, REQUESTED, coverage_markdown, resolve_name
from chainrule.frontends import SUPPORTED

PAGE = Path(__file__).resolve().parents[1] / "docs" / "numpy-coverage.md"


def test_the_coverage_page_is_current():
    assert PAGE.read_text() == coverage_markdown(), "run: chainrule coverage -o docs/numpy-coverage.md"


def test_the_page_lists_every_traced_function_once():
    text = coverage_markdown()
    for name in SUPPORTED:
        if name in REFUSED:  # registered only to explain why not: listed among the untraced
            assert text.count(f"| `{name}` |") == 0 and f"- `{name}`: " in text, name
        else:
            assert text.count(f"| `{name}` |") == 1, name


def test_every_requested_name_is_a_real_numpy_or_scipy_function():
    assert all(resolve_name(name) is not None for name in REQUESTED), [n for n in REQUESTED if resolve_name(n) is None]
