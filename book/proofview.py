"""Show a step-checked result from ``proofs/`` on a book page, and fail the page if any step fails.

The derivation is rendered from the very objects ``python -m ladtheory proofs`` checks
(``ladtheory.proof.load_results``): nothing is re-typed on the page. Rendering goes through the engine's
own ``to_markdown``; only the result's top-level heading is replaced by bold text, because a heading
inside a cell output would sit outside the page's section structure.
"""

from __future__ import annotations

from pathlib import Path

from IPython.display import Markdown, display

from ladtheory.proof import ResultReport, load_results

_RESULTS = {Path(r.source).stem: r for r in load_results()}


def available() -> list[str]:
    """File stems of the results in ``proofs/``."""
    return sorted(_RESULTS)


def show_result(stem: str) -> ResultReport:
    """Check ``proofs/<stem>.py`` and display it (statement, assumptions, each derivation with the
    rule and the verdict of every step). Raises AssertionError if the file is missing or a step fails."""
    assert stem in _RESULTS, (
        f"proofs/{stem}.py not found; results present: {', '.join(available()) or 'none'}"
    )
    result = _RESULTS[stem]
    report = result.check()
    text = result.to_markdown(report)
    first, _, rest = text.partition("\n")
    if first.startswith("#"):
        text = f"**{first.lstrip('#').strip()}** (`proofs/{stem}.py`)\n{rest}"
    display(Markdown(text))
    failed = [p.name for p in report.parts if not p.ok]
    assert report.ok, f"proofs/{stem}.py: failing parts {failed}"
    return report
