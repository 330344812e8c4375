"""The shell commands of the documentation and the README are checked against the code they name.

Running them all would take hours (50 000-sample runs, retraining the weights, a full mutation run), so each
line is checked where it can rot: an ``sdekit`` command line (also through ``python -m sdekit`` and
``torchrun``) is parsed by the command's own argument parser, so a renamed or removed option fails here; a
``pip install`` names extras that ``pyproject.toml`` defines and the torch that ``.ci/run`` installs; the
test command is the one ``.ci/run`` runs; a script exists. A line whose program this test does not know
fails, so a new kind of example has to be taught here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sdekit.app import cli

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
SHELL = re.compile(r"```(?:bash|sh|console)\n(?P<code>.*?)```", re.DOTALL)
CI = (ROOT / ".ci" / "run").read_text()
EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def commands() -> list[tuple[str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in SHELL.finditer(page.read_text()):
            for line in block["code"].splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                for command in filter(None, (part.strip() for part in line.split("&&"))):
                    found.append((str(page.relative_to(ROOT)), command))
    return found


def check_sdekit(args: list[str]) -> None:
    if not args:
        return  # `python -m sdekit`: the main job on its defaults (tests/test_cli.py runs it)
    try:
        cli._parser().parse_args(args)
    except SystemExit as exit_:
        raise AssertionError(f"sdekit's parser refuses {shlex.join(args)}") from exit_


def check(command: str) -> None:
    words = shlex.split(command)
    env = 0
    while env < len(words) and re.fullmatch(r"[A-Z_]+=\S*", words[env]):
        env += 1
    words = words[env:]
    program, args = words[0], words[1:]
    if program == "sdekit":
        check_sdekit(args)
    elif program in ("python", "python3") and args[:2] == ["-m", "sdekit"]:
        check_sdekit(args[2:])
    elif program == "torchrun":
        assert "-m" in args and args[args.index("-m") + 1] == "sdekit", command
        check_sdekit(args[args.index("-m") + 2 :])
    elif program in ("python", "python3") and args[:2] == ["-m", "pytest"]:
        if args[2:] == ["-q"]:  # the README's test command is the one CI runs
            assert "python -m pytest -q\n" in CI, command
        paths = [arg for arg in args[2:] if not arg.startswith("-") and "/" in arg]
        assert all((ROOT / path.split("::")[0]).exists() for path in paths), command
    elif program in ("python", "python3") and args[:2] == ["-m", "venv"]:
        assert "python3 -m venv .venv" in CI
    elif program in ("python", "python3") and args and args[0].endswith(".py"):
        assert (ROOT / args[0]).is_file(), f"{command}: no {args[0]}"
    elif program.startswith("scripts/"):
        assert (ROOT / program).is_file(), f"{command}: no {program}"
    elif program == "pip" and args[:1] == ["install"]:
        for arg in args[1:]:
            extras = re.fullmatch(r"-e|\.\[(?P<extras>[\w,-]+)\]|torch==(?P<torch>[\d.]+)|--\S+", arg)
            assert extras, f"{command}: unexpected argument {arg!r}"
            for extra in (extras["extras"] or "").split(","):
                assert not extra or extra in EXTRAS, f"{command}: pyproject.toml has no extra {extra!r}"
            if extras["torch"]:
                assert f"torch=={extras['torch']}" in CI, f"{command}: .ci/run installs another torch"
    elif program in (".", "source"):
        assert args == [".venv/bin/activate"], command
    elif program == "mkdocs":
        assert args[:1] in (["serve"], ["build"]) and (ROOT / "mkdocs.yml").is_file(), command
    elif program in ("mutmut", "cd"):
        assert program != "cd" or args == ["mutants"], command
    else:
        raise AssertionError(f"{command}: a program this test does not know how to check")


def test_the_pages_have_commands() -> None:
    assert len(commands()) >= 20


@pytest.mark.parametrize(("page", "command"), commands(), ids=[f"{p}:{c[:60]}" for p, c in commands()])
def test_command_matches_the_code(page: str, command: str) -> None:
    check(command)


def test_a_renamed_option_is_caught() -> None:
    with pytest.raises(AssertionError, match="parser refuses"):
        check("sdekit sample --model digits --num-smaples 3")
    with pytest.raises(AssertionError, match="no extra"):
        check('pip install -e ".[app,nope]"')
