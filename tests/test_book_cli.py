"""``python -m ladtheory book``: the offline check of a built site, the toc reader, the CLI's errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ladtheory import book


def _site(tmp_path: Path, pages: dict[str, str], files: tuple[str, ...] = ()) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    names = list(pages)
    toc = [f"root: {names[0]}", "chapters:"] + [f"  - file: {n}" for n in names[1:]]
    (src / "_toc.yml").write_text("\n".join(toc) + "\n")
    html = tmp_path / "html"
    html.mkdir()
    for name, text in pages.items():
        (html / f"{name}.html").write_text(text)
    for f in files:
        (html / f).parent.mkdir(parents=True, exist_ok=True)
        (html / f).write_text("")
    return html, src


MATHJAX = '<script defer src="_static/mathjax/tex-chtml.js"></script>'


def test_book_check_site_accepts_local_scripts_and_mathjax(tmp_path):
    html, src = _site(tmp_path, {"index": MATHJAX, "page": '<script src="_static/a.js?v=1"></script>'},
                      files=("_static/mathjax/tex-chtml.js", "_static/a.js"))
    assert book.check_site(html, src) == []


def test_book_check_site_rejects_network_scripts_missing_files_and_pages(tmp_path):
    html, src = _site(tmp_path, {"index": MATHJAX + '<script src="https://cdn.example/x.js"></script>',
                                 "page": '<script src="_static/missing.js"></script>'},
                      files=("_static/mathjax/tex-chtml.js",))
    problems = book.check_site(html, src)
    assert any("from the network" in p and "cdn.example" in p for p in problems)
    assert any("missing.js does not exist" in p for p in problems)
    (html / "page.html").unlink()
    assert any("page missing from the built site" in p for p in book.check_site(html, src))


def test_book_check_site_requires_a_local_mathjax(tmp_path):
    html, src = _site(tmp_path, {"index": "<p>no math</p>"})
    assert any("no page loads a local MathJax" in p for p in book.check_site(html, src))


def test_book_toc_pages_reads_parts_in_order():
    pages = book.toc_pages()
    assert pages[0] == "index"
    assert pages.index("lemma-3-1") < pages.index("lemma-3-2") < pages.index("bandit")
    assert all((book.BOOK / f"{p}.md").is_file() for p in pages)


def test_book_build_command_is_strict_by_default():
    strict = book.build_command(book.BookOptions())
    assert "-W" in strict and "--keep-going" in strict and str(book.BOOK) in strict
    loose = book.build_command(book.BookOptions(strict=False))
    assert "-W" not in loose


def test_book_cli_rejects_unknown_options_with_exit_2():
    run = subprocess.run([sys.executable, "-m", "ladtheory", "book", "--no-such-option"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "unrecognized arguments: --no-such-option" in run.stderr and "Traceback" not in run.stderr


def test_book_offline_mathjax_source_exists():
    pytest.importorskip("mathjax", reason="the book extra (django-static-mathjax) is not installed")
    sys.path.insert(0, str(book.BOOK / "_ext"))
    try:
        import offline_mathjax
    finally:
        sys.path.pop(0)
    source = offline_mathjax.mathjax_source()
    assert (source / "tex-chtml.js").stat().st_size > 500_000
    for part in offline_mathjax.MATHJAX_PARTS:
        assert (source / part).is_dir(), part


def test_book_cli_without_the_book_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jupyter_book", None)  # import jupyter_book now raises ImportError
    assert book.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[book]'" in err
