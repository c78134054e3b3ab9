"""``python -m ladtheory book``: build the Jupyter Book of derivations, strictly, and check the result.

The book (``book/``) is a set of MyST text notebooks that import ``ladtheory`` and *assert* what they
show. A strict build (the default, and what CI runs) means:

* every page is executed afresh (``execute_notebooks: force`` in ``book/_config.yml``);
* a cell that raises stops the build with its traceback (``nb_execution_raise_on_error``);
* every Sphinx warning is an error (``-W --keep-going``: all warnings are listed, then the build fails);
* afterwards the built site is checked for offline reading: every page in ``_toc.yml`` has its HTML,
  the MathJax script each page loads is a local file that exists, and no page loads a script from
  the network.

Jupyter Book 1.x is required (2.x downloads its theme at build time and cannot build offline); it is
in the ``book`` extra of the project.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"

_SCRIPT_SRC = re.compile(r"<script[^>]*\ssrc=\"([^\"]+)\"", re.IGNORECASE)
_REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)


class BookError(RuntimeError):
    """The book could not be built or the built site is not readable offline."""


class MissingExtra(BookError):
    """The ``book`` extra is not installed (a set-up mistake: exit code 2)."""


@dataclass(frozen=True)
class BookOptions:
    """Options of ``python -m ladtheory book``; the field docs are the CLI help."""

    out: Path = BOOK
    """Output folder: jupyter-book writes OUT/_build/html (the site) and OUT/_build/jupyter_execute."""
    strict: bool = True
    """Warnings are errors and any cell error fails the build (what CI runs)."""
    clean: bool = False
    """Remove OUT/_build before building (a clean build, as CI does)."""


def toc_pages(book: Path = BOOK) -> list[str]:
    """The page names (no suffix) listed in ``book/_toc.yml``, root first, in reading order."""
    import yaml

    with open(book / "_toc.yml", encoding="utf-8") as handle:
        toc = yaml.safe_load(handle)
    pages = [toc["root"]]

    def walk(entries) -> None:
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return pages


def check_site(html: Path, book: Path = BOOK) -> list[str]:
    """Problems that would stop the built site from being read offline (an empty list when none).

    Checks: each page in the table of contents has its HTML; each page's scripts are local files
    that exist; at least one page loads MathJax, from a local file.
    """
    problems: list[str] = []
    mathjax_pages = 0
    for page in toc_pages(book):
        path = html / f"{page}.html"
        if not path.is_file():
            problems.append(f"{path}: page missing from the built site")
            continue
        text = path.read_text(encoding="utf-8")
        for src in _SCRIPT_SRC.findall(text):
            if _REMOTE.match(src):
                problems.append(f"{path}: loads a script from the network: {src}")
                continue
            local = (path.parent / src.split("?", 1)[0]).resolve()
            if not local.is_file():
                problems.append(f"{path}: script {src} does not exist in the built site")
            elif "mathjax" in src.lower():
                mathjax_pages += 1
    if mathjax_pages == 0:
        problems.append(f"{html}: no page loads a local MathJax; math would not render")
    return problems


def site_folder(options: BookOptions) -> Path:
    """Where the HTML site of a build lands."""
    return options.out / "_build" / "html"


def build_command(options: BookOptions) -> list[str]:
    """The ``jupyter-book build`` command line for these options (printed before it runs)."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(BOOK)]
    cmd += ["--path-output", str(options.out), "--builder", "html"]
    if options.strict:
        cmd += ["-W", "--keep-going"]
    return cmd


def build(options: BookOptions) -> float:
    """Build the book; returns the wall time in seconds. Raises BookError on any failure."""
    try:
        import jupyter_book  # noqa: F401
    except ImportError as err:
        raise MissingExtra("jupyter-book is not installed: pip install -e '.[book]'") from err
    if options.clean and (options.out / "_build").exists():
        shutil.rmtree(options.out / "_build")
    env = dict(os.environ)
    # The kernels that execute the pages import this checkout of ladtheory, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    # Let ipykernel choose its inline backend so figures become image outputs.
    env.pop("MPLBACKEND", None)
    cmd = build_command(options)
    print("$ " + " ".join(cmd[:1] + ["-m", "jupyter_book"] + cmd[4:]), flush=True)
    start = time.perf_counter()
    code = subprocess.call(cmd, cwd=REPO, env=env)
    seconds = time.perf_counter() - start
    if code != 0:
        raise BookError(f"jupyter-book build failed (exit {code}) after {seconds:.0f} s; see the log above")
    problems = check_site(site_folder(options))
    if problems:
        raise BookError("the built site is not readable offline:\n  " + "\n  ".join(problems))
    return seconds


def _parser() -> argparse.ArgumentParser:
    defaults = BookOptions()
    parser = argparse.ArgumentParser(
        prog="python -m ladtheory book",
        description="Build the book of derivations (book/) strictly, then check that the site reads offline.")
    parser.add_argument(
        "--out", type=Path, default=defaults.out, help=f"{_doc('out')} (default: %(default)s)"
    )
    parser.add_argument("--no-strict", dest="strict", action="store_false",
                        help=f"report warnings instead of failing (default, strict: {_doc('strict')})")
    parser.add_argument("--clean", action="store_true", help=_doc("clean"))
    return parser


def _doc(field: str) -> str:
    """The field docstring of BookOptions, used as CLI help (written once)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(BookOptions))
    body = tree.body[0].body
    for node, doc in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == field:
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
                return str(doc.value.value)
    return ""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = BookOptions(out=args.out.resolve(), strict=args.strict, clean=args.clean)
    try:
        seconds = build(options)
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, MissingExtra) else 1
    index = site_folder(options) / "index.html"
    print(f"book built in {seconds:.0f} s ({'strict' if options.strict else 'not strict'}); open {index}")
    return 0
