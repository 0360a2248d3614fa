"""docs/from-jax.md's examples run: every ```python block is a complete program, executed here.

A block after a ``<!-- needs: NAME -->`` line uses an API that other work adds; it is skipped
while ``FEATURES[NAME]`` says the API is missing, and runs (and must pass) once it exists.
"""

import inspect
import linecache
import re
import warnings
from pathlib import Path

import pytest

import chainrule as cr

PAGE = Path(__file__).resolve().parent.parent / "docs" / "from-jax.md"
BLOCK = re.compile(r"(?:<!-- needs: (?P<needs>[\w, ]+) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def _accepts(function, option: str) -> bool:
    parameters = inspect.signature(function).parameters
    return option in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())


def _traces_python_scalars() -> bool:
    """Whether a Python float argument is traced (one kernel for every value), as in JAX."""
    scale = cr.jit(lambda x, factor: x * factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scale(1.0, 2.0)
        scale(1.0, 3.0)
    return len(scale._cache) == 1


# API name -> whether this build has it
FEATURES = {
    "vmap": lambda: hasattr(cr, "vmap"),
    "custom_vjp": lambda: hasattr(cr, "custom_vjp"),
    "custom_jvp": lambda: hasattr(cr, "custom_jvp"),
    "static_argnums": lambda: "static_argnums" in inspect.signature(cr.jit).parameters,
    "has_aux": lambda: "has_aux" in inspect.signature(cr.grad).parameters,
    "cache_info": lambda: hasattr(cr.Compiled, "cache_info"),
    "traced_scalars": _traces_python_scalars,
}


def _blocks() -> list:
    text = PAGE.read_text()
    params = []
    for number, match in enumerate(BLOCK.finditer(text), 1):
        heading = [line for line in text[: match.start()].splitlines() if line.startswith("#")][-1]
        needs = tuple(name.strip() for name in (match["needs"] or "").split(",") if name.strip())
        label = re.sub(r"\W+", "-", heading.lstrip("# ").lower()).strip("-")
        params.append(pytest.param(match["code"], needs, id=f"{number}-{label}"))
    return params


BLOCKS = _blocks()


def test_the_page_has_runnable_examples_and_names_only_known_apis():
    assert len(BLOCKS) >= 20
    named = {name for block in BLOCKS for name in block.values[1]}
    assert named <= set(FEATURES), f"unknown needs: {named - set(FEATURES)}"


@pytest.mark.parametrize(("code", "needs"), BLOCKS)
def test_example_runs(code, needs, capsys):
    missing = [name for name in needs if not FEATURES[name]()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, not in this build yet")
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
