"""The package layout: top-level ``adapters`` re-exports ``sdekit.adapters``; a namespace clash is survived.

AdapterHub's ``adapters`` distribution, installed after sdekit, writes its own
``adapters/__init__.py`` over sdekit's. These tests rebuild that situation in a temporary
site directory (sdekit's ``adapters/`` files, then another distribution's ``__init__.py`` and
``.dist-info`` written over them, as pip does) and run Python there in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import adapters
from adapters import ddpm, diffusers, edm, ncsn, v, x0
from sdekit.adapters import _toplevel

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_modules_are_the_implementation() -> None:
    import sdekit.adapters.ddpm
    import sdekit.adapters.diffusers
    import sdekit.adapters.edm
    import sdekit.adapters.ncsn
    import sdekit.adapters.v
    import sdekit.adapters.x0

    assert ddpm is sdekit.adapters.ddpm and ncsn is sdekit.adapters.ncsn and x0 is sdekit.adapters.x0
    assert v is sdekit.adapters.v and edm is sdekit.adapters.edm and diffusers is sdekit.adapters.diffusers
    assert adapters.get is sdekit.adapters.get and adapters.available() == sdekit.adapters.available()
    assert adapters.get("ddpm") is ddpm


def test_every_public_adapter_has_a_top_level_name() -> None:
    shims = {p.stem for p in (ROOT / "adapters").glob("*.py")} - {"__init__"}
    public = {p.stem for p in (ROOT / "sdekit" / "adapters").glob("*.py")} - {"__init__"}
    assert shims == {name for name in public if not name.startswith("_")}


def _site_with_clash(tmp_path: Path, *, uninstalled: bool = False) -> Path:
    """A site directory holding sdekit's top-level ``adapters/`` with another distribution's files over it."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "adapters", site / "adapters", ignore=shutil.ignore_patterns("__pycache__"))
    if uninstalled:  # the other distribution removed its files, sdekit's stay: a namespace package
        (site / "adapters" / "__init__.py").unlink()
        return site
    (site / "adapters" / "__init__.py").write_text('"""Someone else\'s adapters."""\n__version__ = "1.3.0"\n')
    info = site / "adapters-1.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: adapters\nVersion: 1.3.0\n")
    (info / "top_level.txt").write_text("adapters\n")
    (info / "RECORD").write_text("adapters/__init__.py,,\nadapters-1.3.0.dist-info/METADATA,,\n")
    return site


def _python(site: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Only the site on the path: sdekit comes from its installation, as it would for a user. (The source
    # tree on the path would hold a regular ``adapters`` package, which outranks a namespace package.)
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=site.parent,
        timeout=120,
    )


@pytest.mark.slow  # a fresh interpreter
def test_clash_gives_a_clear_error_and_sdekit_keeps_working(tmp_path: Path) -> None:
    site = _site_with_clash(tmp_path)
    shadowed = _python(site, "import adapters; print(adapters.__version__)")
    assert shadowed.stdout.strip() == "1.3.0", shadowed.stderr  # the package really is the other one now

    clash = _python(site, "from adapters import ddpm")
    assert clash.returncode == 1
    last = clash.stderr.strip().splitlines()[-1]
    assert last.startswith("sdekit.adapters._toplevel.AdaptersClashError:"), clash.stderr
    assert "adapters 1.3.0" in last and "from sdekit.adapters import ddpm" in last

    works = _python(site, "from sdekit.adapters import ddpm, get; assert get('ddpm') is ddpm; print('ok')")
    assert works.stdout.strip() == "ok", works.stderr
    info = _python(site, "", "-m", "sdekit", "info")
    assert info.returncode == 0, info.stderr
    assert "ddpm" in info.stdout and "adapters 1.3.0" in info.stdout


@pytest.mark.slow
def test_clash_main_job_model_still_samples(tmp_path: Path) -> None:
    site = _site_with_clash(tmp_path)
    out = tmp_path / "run"
    run = _python(site, "", "-m", "sdekit", "sample", "--model", "digits", "--method", "ancestral", "--steps", "4",
                  "--num-samples", "4", "--out", str(out), "--no-eval", "--quiet")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (out / "samples.npz").is_file() and (out / "run.json").is_file(), sorted(p.name for p in out.iterdir())


@pytest.mark.slow  # a fresh interpreter
def test_after_the_other_distribution_is_uninstalled_the_short_name_works(tmp_path: Path) -> None:
    site = _site_with_clash(tmp_path, uninstalled=True)
    back = _python(site, "import adapters, sdekit.adapters.ddpm; from adapters import ddpm; "
                   "assert ddpm is sdekit.adapters.ddpm; print(adapters.__file__)")  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip() == "None"  # a namespace package, made of sdekit's files only


def test_clash_message_names_the_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _toplevel.clash_message("ddpm") is None  # here the package is sdekit's
    fake = type(sys)("adapters")
    fake.__file__ = "/elsewhere/adapters/__init__.py"
    monkeypatch.setitem(sys.modules, "adapters", fake)
    monkeypatch.setattr(_toplevel, "owners", lambda: ["adapters 1.3.0"])
    message = _toplevel.clash_message("ncsn")
    assert message is not None and "adapters 1.3.0" in message and "from sdekit.adapters import ncsn" in message
    with pytest.raises(_toplevel.AdaptersClashError, match="not sdekit's"):
        _toplevel.reexport("adapters.ncsn")


@pytest.mark.slow  # a fresh interpreter
def test_core_imports_without_the_application_or_top_level_adapters() -> None:
    code = (
        "import sys, sdekit, sdekit.sampling, sdekit.likelihood, sdekit.losses, sdekit.testing, sdekit.adapters.ddpm\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('adapters', 'sklearn', 'matplotlib', "
        "'safetensors') or m.startswith('sdekit.app'))\n"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


# None in sys.modules blocks an import (ModuleNotFoundError) and makes importlib.util.find_spec return None.
BLOCK_APPLICATION_DEPENDENCIES = """
import sys
for name in ("sklearn", "matplotlib", "safetensors", "diffusers"):
    sys.modules[name] = None
"""


@pytest.mark.slow
def test_every_sampler_runs_with_only_the_core_dependencies() -> None:
    """The golden cases (every sampler on every SDE family) with the application's dependencies unimportable."""
    code = BLOCK_APPLICATION_DEPENDENCIES + (
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "import test_golden\n"
        "results = [test_golden.compute(case) for case in test_golden.cases()]\n"
        "errors = [r for r in results if isinstance(r, str) and 'needs a LinearSDE' not in r]\n"
        "print(len(results), errors)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{len(__import__('test_golden').cases())} []"


@pytest.mark.slow  # a fresh interpreter
def test_the_command_without_the_application_extra_is_one_clear_line() -> None:
    code = BLOCK_APPLICATION_DEPENDENCIES + "from sdekit.app.cli import main\nsys.exit(main(['info']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "sdekit: error: the sdekit command needs safetensors, scikit-learn, matplotlib: install the application "
        'extra, pip install "sdekit[app]" (the library itself, import sdekit, does not)'
    ]
