"""The book's pages execute and assert (fast), and the table of contents matches the pages on disk.

Each page of ``book/`` is a MyST text notebook; here each one is run in a fresh Jupyter kernel exactly as
the book build runs it (cwd = ``book/``), so a failing assertion in a page fails this test with the
page name. The full strict Sphinx build is ``tests/test_book_build.py`` (slow-marked).
"""

from __future__ import annotations

import ast
import os
import re

import pytest

jupytext = pytest.importorskip("jupytext", reason="the book extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the book extra is not installed")

from ladtheory.book import BOOK, REPO, toc_pages  # noqa: E402

PAGES = sorted(p.stem for p in BOOK.glob("*.md") if p.name != "README.md")
NOTEBOOK_PAGES = [p for p in PAGES if (BOOK / f"{p}.md").read_text(encoding="utf-8").startswith("---\njupytext:")]
# Pages that are pure text (the root, the bibliography) have no code to execute.
TEXT_PAGES = sorted(set(PAGES) - set(NOTEBOOK_PAGES))
# Pages that run an experiment (the 4000-step bandit, 10-30 s here each time) execute only with -m slow; the
# strict book build (tests/test_book_build.py, CI) runs them all.
SLOW_PAGES = {"bandit", "prototype"}


def _code_cells(page: str) -> list[str]:
    notebook = jupytext.read(BOOK / f"{page}.md")
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_book_toc_lists_every_page_and_only_existing_pages():
    listed = toc_pages()
    assert sorted(listed) == PAGES, f"in _toc.yml but not on disk, or the reverse: {set(listed) ^ set(PAGES)}"
    assert len(listed) == len(set(listed)), "a page is listed twice in _toc.yml"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_book_page_code_parses_and_asserts(page):
    cells = _code_cells(page)
    assert cells, f"{page}.md is a notebook page without code cells"
    trees = [ast.parse(source) for source in cells]
    asserts = sum(isinstance(node, ast.Assert) for tree in trees for node in ast.walk(tree))
    assert asserts >= 1, f"{page}.md shows results but asserts none of them"


@pytest.mark.parametrize("page", TEXT_PAGES)
def test_book_text_page_has_no_unexecuted_code(page):
    text = (BOOK / f"{page}.md").read_text(encoding="utf-8")
    assert "{code-cell}" not in text, f"{page}.md has code cells but no jupytext header, so it would not run"


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p for p in NOTEBOOK_PAGES]
)
def test_book_page_executes(page, monkeypatch):
    """Run the page in a kernel, as the build does; any failing cell (an assert) fails the test."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = jupytext.read(BOOK / f"{page}.md")
    client = nbclient.NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        pytest.fail(f"{page}.md: a cell failed:\n{message[-3000:]}", pytrace=False)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{page}.md: error outputs {errors}"

