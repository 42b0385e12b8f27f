"""The documentation site builds strictly, and every example in it runs.

- `mkdocs build --strict` (the site of mkdocs.yml, API pages from the docstrings) into a
  temporary directory: a broken link, anchor or reference fails it.
- Every ```python block of README.md and docs/**/*.md runs, page by page: a page's
  blocks in order in one namespace, in a temporary working directory, with
  ``TFBOLTZ_DOCS_QUICK=1`` set, the documented switch that the few long examples read
  to run on fewer rows, epochs or betas. A block whose previous line is
  ``<!-- skip-test: reason -->`` is not run (for data no test machine has, such as
  CIFAR-10); the reason is required.
- The shell lines of ```bash blocks are not run, but every ``tfboltz ...`` line must
  parse with the CLI's own parser and every ``python PATH.py`` must name a file that
  exists.
"""

import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / "docs" / "**" / "*.md"), recursive=True))
QUICK_ENV = "TFBOLTZ_DOCS_QUICK"
README_MAX_LINES = 250

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*skip-test:\s*(\S[^>]*?)\s*-->\s*$")


def _blocks(page, language):
    """``[(line, source, skip_reason or None)]`` of the fenced blocks of `language`."""
    text = (ROOT / page).read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) != language:
            continue
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        if "skip-test" in before and not skip:
            raise AssertionError(f"{page}: a skip-test mark without a reason: {before!r}")
        found.append((text.count("\n", 0, match.start()) + 2, match.group(2),
                      skip.group(1) if skip else None))
    return found


def _shell_commands(source):
    """The commands of a bash block: continuation lines joined, comments dropped."""
    commands = []
    for line in source.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
            words = words[1:]  # leading VAR=value assignments
        if words:
            commands.append(words)
    return commands


PYTHON_PAGES = [p for p in PAGES if _blocks(p, "python")]


# The site -----------------------------------------------------------------------------


def test_site_builds_strictly(tmp_path):
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(m.split(".")[0]) is None
               or (m == "mkdocstrings_handlers.python" and importlib.util.find_spec(m) is None)]
    if missing:
        pytest.skip(f"the documentation tools are not installed ({', '.join(missing)}): "
                    "pip install -r docs/requirements.txt")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "WARNING" not in log, log[-6000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "rbm" / "index.html").is_file()


def test_every_page_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    in_nav = set(re.findall(r"[\w./-]+\.md", config[config.index("\nnav:"):]))
    pages = {os.path.relpath(p, "docs") for p in PAGES if p.startswith("docs")}
    # The experiments pages hang off their index page (`not_in_nav` in mkdocs.yml).
    missing = sorted(p for p in pages - in_nav if not p.startswith("experiments/"))
    assert missing == [], f"pages missing from the nav of mkdocs.yml: {missing}"
    assert sorted(in_nav - pages) == [], "the nav names pages that do not exist"


def test_every_module_has_an_api_page():
    modules = sorted(p.stem for p in (ROOT / "tfboltz").glob("*.py")
                     if not p.stem.startswith("_"))
    missing = [m for m in modules
               if f"::: tfboltz.{m}\n" not in _read_or_empty(ROOT / "docs" / "api" / f"{m}.md")]
    assert missing == [], f"modules without an API page (docs/api/NAME.md): {missing}"


def _read_or_empty(path):
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    for command in ("make demo", "make test", "source .venv/bin/activate"):
        assert command in readme


def test_skip_marks_are_few_and_explained():
    marks = [(page, line, reason) for page in PAGES for line, _, reason in _blocks(page, "python")
             if reason]
    assert len(marks) <= 3, marks


# The examples -------------------------------------------------------------------------


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_examples_run(page, tmp_path, monkeypatch):
    """A page's python blocks, in order, in one namespace, in an empty directory."""
    import keras

    monkeypatch.setenv(QUICK_ENV, "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_example_{Path(page).stem}"}
    try:
        for line, source, skip in _blocks(page, "python"):
            if skip:
                continue
            code = compile(source, f"{page}, the python block at line {line}", "exec")
            exec(code, namespace)  # the documentation's own examples
    finally:
        keras.backend.clear_session()


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p, "bash")])
def test_shell_examples_name_real_commands(page):
    from tfboltz.cli import build_parser

    parser = build_parser()
    problems = []
    for line, source, _ in _blocks(page, "bash"):
        for words in _shell_commands(source):
            if words[0] == "tfboltz":
                try:
                    parser.parse_args(words[1:])
                except SystemExit:
                    problems.append(f"line {line}: {' '.join(words)}")
            for i, word in enumerate(words[:-1]):
                if word in ("python", "python3") and words[i + 1].endswith(".py") \
                        and not (ROOT / words[i + 1]).is_file():
                    problems.append(f"line {line}: no such script {words[i + 1]}")
    assert problems == [], f"{page}: " + "; ".join(problems)
