"""docs/from-jax.md's examples run: every ```python block is a complete program, executed here."""

import linecache
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "from-jax.md"
BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.DOTALL)


def _blocks() -> list:
    text = PAGE.read_text()
    params = []
    for number, match in enumerate(BLOCK.finditer(text), 1):
        heading = [line for line in text[: match.start()].splitlines() if line.startswith("#")][-1]
        label = re.sub(r"\W+", "-", heading.lstrip("# ").lower()).strip("-")
        params.append(pytest.param(match["code"], id=f"{number}-{label}"))
    return params


BLOCKS = _blocks()


def test_the_page_has_runnable_examples():
    assert len(BLOCKS) >= 20


@pytest.mark.parametrize("code", BLOCKS)
def test_example_runs(code, capsys):
    filename = f"<{PAGE.name} example>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)  # tracebacks quote it
    exec(compile(code, filename, "exec"), {"__name__": "from_jax_example"})


def test_the_old_page_is_gone_and_nothing_links_to_it():
    root = PAGE.parent.parent
    assert not (root / "docs" / "coming-from-jax.md").exists()
    linking = [
        str(path.relative_to(root))
        for path in [*root.glob("docs/*.md"), *root.glob("chainrule/**/*.py"), *root.glob("examples/*.py")]
        if "coming-from-jax" in path.read_text()
    ]
    assert linking == []
