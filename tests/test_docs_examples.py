"""The Python examples of the user guides and the README run as written (each block in its own interpreter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Pages whose every ```python block is a complete program. (The fragments of adapters.md,
#: likelihood.md and solvers.md use a network or data they do not define: not yet run.)
GUIDES = ("docs/guidance.md", "docs/index.md", "README.md")
BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, int, str]]:
    return [(name, i, m["code"]) for name in GUIDES for i, m in enumerate(BLOCK.finditer((ROOT / name).read_text()))]


def test_every_guide_has_examples() -> None:
    assert {name for name, _, _ in blocks()} == set(GUIDES)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "index", "code"), blocks(), ids=[f"{n}[{i}]" for n, i, _ in blocks()])
def test_example_runs(name: str, index: int, code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name}, example {index}:\n{result.stderr}"
