"""The README and docs/ point only at files that exist.

Every figure in the README names the raw output it came from (``docs/results/...``) and
the pictures and pages it links; a renamed or deleted file would leave a dangling
reference that no other test sees.
"""

import glob
import itertools
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
)

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_RESULT = re.compile(r"docs/results/[A-Za-z0-9_.{},*\-]+")


def _expand_braces(pattern):
    """``a{0,1}b`` -> ``[a0b, a1b]`` (shell brace expansion, any number of groups)."""
    parts = re.split(r"(\{[^{}]*\})", pattern)
    choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(c) for c in itertools.product(*choices)]


def _read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def test_pages_found():
    assert "README.md" in PAGES and any(p.startswith("docs") for p in PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_exist(page):
    here = os.path.dirname(os.path.join(ROOT, page))
    missing = []
    for target in _LINK.findall(_read(page)):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        path = os.path.normpath(os.path.join(here, target.split("#")[0]))
        if not os.path.exists(path):
            missing.append(target)
    assert not missing, f"{page} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_raw_outputs_named_exist(page):
    missing = []
    for ref in set(_RESULT.findall(_read(page))):
        ref = ref.rstrip(".,")
        if ref.endswith("/"):
            continue
        for path in _expand_braces(ref):
            if not glob.glob(os.path.join(ROOT, path)):
                missing.append(path)
    assert not missing, f"{page} names raw outputs that do not exist: {sorted(missing)}"
