"""Every Python block of the documentation and the README runs as written (each in its own interpreter).

Complete programs run as they are. The fragments of the pages that show how to plug in *your* network or
data (``docs/adapters.md``, ``docs/likelihood.md``, ``docs/solvers.md``) run after
``from doc_stand_ins import *`` (``tests/doc_stand_ins.py``: untrained stand-in networks and the oracle as
data). ``docs/design.md``'s four extension examples are run by ``tests/test_design_examples.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Pages whose every ```python block is a complete program.
PROGRAMS = ("docs/guidance.md", "docs/index.md", "docs/reproducibility.md", "README.md")
#: Pages whose blocks use the stand-ins of tests/doc_stand_ins.py for a user's network and data.
FRAGMENTS = ("docs/adapters.md", "docs/likelihood.md", "docs/solvers.md")
#: Run by tests/test_design_examples.py.
ELSEWHERE = ("docs/design.md",)
BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, int, str]]:
    return [
        (name, i, m["code"])
        for name in (*PROGRAMS, *FRAGMENTS)
        for i, m in enumerate(BLOCK.finditer((ROOT / name).read_text()))
    ]


def test_every_page_with_python_is_run() -> None:
    pages = {str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]}
    with_python = {page for page in pages if BLOCK.search((ROOT / page).read_text())}
    assert with_python == {*PROGRAMS, *FRAGMENTS, *ELSEWHERE}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "index", "code"), blocks(), ids=[f"{n}[{i}]" for n, i, _ in blocks()])
def test_example_runs(name: str, index: int, code: str) -> None:
    if name in FRAGMENTS:
        if "diffusers" in code:
            pytest.importorskip("diffusers")
        code = "from doc_stand_ins import *\n" + code
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, f"{name}, example {index}:\n{result.stderr[-3000:]}"
