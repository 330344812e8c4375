"""The extension examples of docs/design.md run as written (each in its own interpreter: they register names)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"
EXAMPLE = re.compile(r"```python\n# example: (?P<name>[^\n]+)\n(?P<code>.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    return {m["name"]: m["code"] for m in EXAMPLE.finditer(DESIGN.read_text())}


def test_design_has_the_four_extension_examples() -> None:
    assert set(examples()) == {"an SDE", "a fixed-step method with a parameter", "an embedded RK pair", "an adapter"}


@pytest.mark.slow  # a fresh interpreter
@pytest.mark.parametrize("name", sorted(examples()))
def test_example_runs(name: str) -> None:
    result = subprocess.run([sys.executable, "-c", examples()[name]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
