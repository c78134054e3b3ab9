"""Sphinx extension: serve MathJax 3 from the build folder so that math renders offline.

The MathJax files come from the ``django-static-mathjax`` wheel (MathJax 3.2.2, Apache-2.0; a pure
data package whose importable name is ``mathjax``, no Django needed at run time). At ``builder-inited``
this extension points ``mathjax_path`` at ``_static/mathjax/tex-chtml.js``; at ``build-finished`` it
copies the combined TeX-to-CommonHTML component together with the folders MathJax loads lazily
(``input/`` for autoloaded TeX extensions, ``output/`` for the woff-v2 fonts, ``ui/`` and ``a11y/``
for the context menu). The speech-rule engine (``sre/``, 4 MB) is left out: it is only fetched when a
reader switches speech output on in the menu.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MATHJAX_ENTRY = "tex-chtml.js"
MATHJAX_PARTS = ("input", "output", "ui", "a11y", "adaptors")
TARGET = "mathjax"


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax 3 distribution."""
    try:
        import mathjax  # provided by the django-static-mathjax wheel
    except ImportError as err:  # pragma: no cover - exercised only without the book extra
        raise RuntimeError(
            "offline math needs the MathJax files: pip install 'django-static-mathjax>=3.2,<4'"
        ) from err
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / MATHJAX_ENTRY).is_file():
        raise RuntimeError(f"MathJax entry point not found at {source / MATHJAX_ENTRY}")
    return source


def _point_at_local_copy(app) -> None:
    mathjax_source()  # fail early, before any page is executed
    # A relative mathjax_path is resolved against _static/ of the built site.
    app.config.mathjax_path = f"{TARGET}/{MATHJAX_ENTRY}"


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / TARGET
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MATHJAX_ENTRY, target / MATHJAX_ENTRY)
    for part in MATHJAX_PARTS:
        shutil.copytree(source / part, target / part, dirs_exist_ok=True)


def setup(app):
    app.connect("builder-inited", _point_at_local_copy)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
