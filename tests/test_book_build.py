"""The whole book builds strictly (warnings are errors, every cell runs) and reads offline.

Slow (minutes): run with ``python -m pytest tests/test_book_build.py -m slow``. The fast checks of the
same pages are in ``tests/test_book_pages.py``; CI builds the book with ``python -m ladtheory book``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("jupyter_book", reason="the book extra is not installed")

from ladtheory import book  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    code = book.main(["--out", str(out), "--clean"])
    assert code == 0, "the strict book build failed; see the captured output"
    return book.site_folder(book.BookOptions(out=out))


@pytest.mark.slow
def test_book_builds_strictly_and_every_page_is_readable_offline(site):
    assert book.check_site(site) == []
    assert (site / "index.html").is_file()


@pytest.mark.slow
def test_book_math_uses_the_local_mathjax(site):
    page = (site / "lemma-3-1.html").read_text(encoding="utf-8")
    src = re.search(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page, re.IGNORECASE)
    assert src and not src.group(1).startswith(("http:", "https:", "//")), "MathJax is not served locally"
    assert (site / src.group(1)).is_file()
    fonts = list((site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10, "MathJax's CommonHTML fonts were not copied"
    assert "\\begin{aligned}" in page, "the step-checked derivation is missing from the Lemma 3.1 page"


@pytest.mark.slow
def test_book_figures_are_embedded(site):
    for page in ("divergences", "gradient", "grpo-limit", "bandit"):
        html = (site / f"{page}.html").read_text(encoding="utf-8")
        images = re.findall(r'<img[^>]*src="([^"]+\.png)"', html)
        assert images, f"{page}.html has no figure"
        for src in images:
            assert (site / src).is_file(), f"{page}.html: {src} missing"
