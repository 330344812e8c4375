"""The documentation site: every public name in the API reference, a strict build, and its mathematics
rendered in a real browser (Debian's chromium, headless).

The build and the browser are optional locally (skipped without the ``docs`` extra or chromium);
``.ci/run`` installs both and sets ``SDEKIT_REQUIRE_SITE=1`` (and ``SDEKIT_REQUIRE_BROWSER=1`` once chromium is
installed), so there a missing tool fails instead of skipping.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
#: The modules whose public names (``__all__``) the API reference must document.
PUBLIC = (
    "sdekit",
    "sdekit.guidance",
    "sdekit.constraints",
    "sdekit.testing",
    "sdekit.adapters",
    "sdekit.adapters.ddpm",
    "sdekit.adapters.ncsn",
    "sdekit.adapters.x0",
    "sdekit.adapters.v",
    "sdekit.adapters.edm",
    "sdekit.adapters.diffusers",
)
REQUIRED = os.environ.get("SDEKIT_REQUIRE_SITE") == "1"
BROWSER_REQUIRED = os.environ.get("SDEKIT_REQUIRE_BROWSER") == "1"


def documented() -> set[str]:
    """The objects the reference pages render (``::: dotted.name`` lines), resolved to their defining object ids."""
    names = set()
    for page in REFERENCE.glob("*.md"):
        names.update(re.findall(r"^::: (\S+)$", page.read_text(), re.MULTILINE))
    return names


def resolve(dotted: str) -> object:
    """The object a ``::: dotted.name`` renders: a module (imported, not only an attribute of its package) or a name."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


def public_names() -> list[str]:
    return [f"{m}.{n}" for m in PUBLIC for n in importlib.import_module(m).__all__ if n != "__version__"]


def test_every_public_name_is_in_the_api_reference_with_a_docstring() -> None:
    rendered = {id(resolve(d)) for d in documented()}
    missing = [name for name in public_names() if id(resolve(name)) not in rendered]
    assert not missing, f"public names missing from docs/reference/: {missing}"
    undocumented = [
        d
        for d in documented()
        if (inspect.isclass(resolve(d)) or inspect.isfunction(resolve(d))) and not inspect.getdoc(resolve(d))
    ]
    assert not undocumented, f"reference entries without a docstring: {undocumented}"


def test_every_reference_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    assert {f"reference/{p.name}" for p in REFERENCE.glob("*.md")} <= set(re.findall(r"reference/\w+\.md", nav))


def _need(tool: str, available: bool, required: bool = REQUIRED) -> None:
    if not available:
        if required:
            pytest.fail(f"{tool} is required here (SDEKIT_REQUIRE_SITE=1) but not installed")
        pytest.skip(f"needs {tool}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need("mkdocs (the docs extra)", importlib.util.find_spec("mkdocs") is not None)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.mark.slow
def test_the_site_builds_strictly_and_needs_no_network(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 20
    for page in pages:
        text = page.read_text()
        # No script, style sheet or font from another host: the site is read offline.
        assert not re.search(r'<(?:script|link)[^>]+(?:src|href)="https?://', text), page
    assert "pc_sample" in (site / "reference" / "sampling" / "index.html").read_text()


@pytest.mark.slow
def test_the_mathematics_is_rendered_in_a_browser(site: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _need("chromium (Debian's package)", chromium is not None, BROWSER_REQUIRED)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    for page in ("concepts", "index"):
        profile = site.parent / f"profile-{page}"
        result = subprocess.run(
            [chromium, *flags, f"--user-data-dir={profile}", "--dump-dom", (site / page / "index.html").as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        dom = result.stdout
        assert "</html>" in dom, result.stderr[-2000:]
        if page == "concepts":
            assert dom.count("<math") >= 20
        # Raw TeX left in the page's text (outside code): a delimiter or a command that was not converted.
        text = re.sub(r"<(code|pre|math|script|style)\b.*?</\1>", "", dom, flags=re.DOTALL)
        text = re.sub(r"<[^>]+>", "", text)
        leftovers = re.findall(r"\$\$|\\\(|\\\[|\\(?:frac|mathrm|nabla|sqrt|alpha|sigma)\b", text)
        assert not leftovers, f"{page}: raw TeX on the rendered page: {leftovers[:5]}"


def _parameters(obj: object) -> list[str]:
    try:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _docs_of(obj: object) -> str:
    """The object's docstring, with the docstrings of the public functions it refers to (``See :func:`x```)."""
    text = inspect.getdoc(obj) or ""
    if inspect.isclass(obj):
        text += "\n" + (inspect.getdoc(obj.__init__) or "")  # type: ignore[misc]
    module = importlib.import_module(obj.__module__)  # type: ignore[attr-defined]
    for name in re.findall(r":func:`~?([\w.]+)`", text):
        short = name.rpartition(".")[2]
        target = getattr(module, short, None) or getattr(importlib.import_module("sdekit"), short, None)
        if target is not None and target is not obj:
            text += "\n" + (inspect.getdoc(target) or "")
    return text


def test_every_parameter_of_a_public_function_is_documented() -> None:
    """Each argument of every public class and function is named in its docstring (where its unit,
    shape and default are given), or in the docstring of the function it refers the reader to."""
    gaps = {}
    for name in public_names():
        obj = resolve(name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        text = _docs_of(obj)
        missing = [p for p in _parameters(obj) if p != "self" and not re.search(rf"\b{p}\b", text)]
        if missing:
            gaps[name] = missing
    assert not gaps, f"parameters not named in the docstring: {gaps}"


def test_the_math_hook_converts_every_delimiter_and_drops_sphinx_roles() -> None:
    """Fast and exact: the hook's own regexes, without building the site."""
    _need("latex2mathml (the docs extra)", importlib.util.find_spec("latex2mathml") is not None)
    spec = importlib.util.spec_from_file_location("mathml_hook", ROOT / "docs" / "hooks" / "mathml.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = (
        '<p>a <span class="arithmatex">\\(\\alpha &lt; \\sigma\\)</span> b</p>'
        "<div class=\"arithmatex\">\\[x_{t'} = \\frac{\\sigma(t')}{\\sigma(t)} x_t\\]</div>"
        "<p>:func:<code>~sdekit.pc_sample</code> and :class:<code>VPSDE</code></p>"
    )
    out = hook.on_page_content(page)
    assert out.count("<math") == 2 and 'display="block"' in out and 'display="inline"' in out
    assert "<mo>&#x0003C;</mo>" in out  # the page's escaped "<" reached latex2mathml as "<", an operator
    assert "\\(" not in out and "\\[" not in out and "arithmatex" not in out
    assert "<code>sdekit.pc_sample</code>" in out and ":func:" not in out and ":class:" not in out
