"""The README and docs/ point only at files that exist, and the README's figures are
the published ones.

The results pages name the raw output every figure came from (``docs/results/...``),
and the pages link pictures and each other; a renamed or deleted file would leave a
dangling reference that no other test sees. The README's zoo and results tables repeat
headline figures of docs/results.md, where each sits beside its command and raw output.
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


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def test_readme_figures_are_the_published_ones():
    readme, results = _read("README.md"), _read(os.path.join("docs", "results.md"))
    tables = _section(readme, "## The zoo") + _section(readme, "## Results")
    figures = set(re.findall(r"(?<![\w.])-?\d+\.\d+(?![\w.])", tables))
    assert figures, "no figures found in the README's tables"
    missing = sorted(f for f in figures if f not in results)
    assert not missing, f"README figures not on docs/results.md: {missing}"
