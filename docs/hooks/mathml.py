"""mkdocs hook: render the pages' TeX to MathML when the site is built.

``pymdownx.arithmatex`` (generic mode) wraps ``$...$`` in ``<span class="arithmatex">\\(...\\)</span>``
and ``$$...$$`` in ``<div class="arithmatex">\\[...\\]</div>``; this hook replaces each with the
MathML that ``latex2mathml`` produces. Browsers render MathML natively, so the site needs no
JavaScript and no network to show its mathematics, and a formula that cannot be converted fails
the build instead of reaching a reader as raw TeX.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_INLINE = re.compile(r'<span class="arithmatex">\\\((?P<tex>.*?)\\\)</span>', re.DOTALL)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(?P<tex>.*?)\\\]</div>', re.DOTALL)


def _mathml(tex: str, display: str) -> str:
    return convert(html.unescape(tex).strip(), display=display)


def on_page_content(html_text: str, **_: object) -> str:
    html_text = _BLOCK.sub(lambda m: f'<div class="math">{_mathml(m["tex"], "block")}</div>', html_text)
    html_text = _INLINE.sub(lambda m: _mathml(m["tex"], "inline"), html_text)
    return _strip_roles(html_text)


# The docstrings are written for both ``help()`` and this site: Sphinx roles such as
# :func:`pc_sample` arrive here as a role name before a code span; the site shows the code span.
_ROLE = re.compile(r":(?:func|class|data|mod|meth|attr|exc|obj):(?=<code>)")
_TILDE = re.compile(r"<code>~")


def _strip_roles(html_text: str) -> str:
    return _TILDE.sub("<code>", _ROLE.sub("", html_text))
