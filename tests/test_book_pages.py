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
NOTEBOOK_PAGES = [
    p for p in PAGES if (BOOK / f"{p}.md").read_text(encoding="utf-8").startswith("---\njupytext:")
]
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


def _execute(page: str):
    """The page's notebook after running it in a kernel (cwd = book/), or a test failure naming it."""
    notebook = jupytext.read(BOOK / f"{page}.md")
    client = nbclient.NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        pytest.fail(f"{page}.md: a cell failed:\n{message[-3000:]}", pytrace=False)
    return notebook


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p for p in NOTEBOOK_PAGES]
)
def test_book_page_executes(page, monkeypatch):
    """Run the page in a kernel, as the build does; any failing cell (an assert) fails the test."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.delenv("LAD_BOOK_RESULTS", raising=False)
    notebook = _execute(page)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{page}.md: error outputs {errors}"
    # A warning printed by a cell would be shown to every reader: pages must run clean.
    stderr = [o["text"] for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"{page}.md: cells wrote to stderr: {stderr}"


def test_book_training_study_renders_a_committed_study(tmp_path, monkeypatch):
    """The training-study page with one study present (no study is committed yet, so the page's
    rendering path is exercised on a small study in the layout `python -m ladtrain compare` writes)."""
    import base64
    import json

    study = tmp_path / "results" / "countdown-small"
    study.mkdir(parents=True)
    (study / "results.json").write_text(json.dumps({"arms": [{"label": "lad:js"}, {"label": "grpo"}],
                                                    "same_prompts": True}))
    (study / "report.md").write_text("# LAD vs baselines\n\n## Setup\n- arms: `lad:js`, `grpo`\n\n"
                                     "| arm | pass@1 |\n|---|---|\n| lad:js | 0.5 |\n| grpo | 0.4 |\n\n"
                                     "![reward curves](reward_curves.png)\n")
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    (study / "reward_curves.png").write_bytes(png)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    monkeypatch.setenv("LAD_BOOK_RESULTS", str(tmp_path / "results"))
    notebook = _execute("training-study")
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert "**Study `results/compare/countdown-small`**" in markdown
    assert "**LAD vs baselines**" in markdown and "\n#" not in "\n" + markdown  # headings became bold lines
    assert "![reward curves]" not in markdown and "| lad:js | 0.5 |" in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    assert "No training results are committed yet" not in markdown
