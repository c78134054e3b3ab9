"""Docstrings and pages cite files of this repository: the design notes as ``docs/paper-notes.md`` (which
exists here), never the team's notes outside it (``paper-notes.md`` alone, ``shared/...``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"(?<!docs/)\bpaper-notes(\.md)?\b(?![\w-])"
                     r"|\bshared/(reference|paper-notes|DESIGN|STYLE)")


def outside_references(text: str) -> list[str]:
    """Lines citing a notes file that is not in this repository."""
    return [line for line in text.splitlines() if OUTSIDE.search(line)]


def test_outside_references_are_detected():
    assert outside_references("see paper-notes.md section 2") == ["see paper-notes.md section 2"]
    assert outside_references("(paper-notes section 5)")
    assert outside_references("shared/reference/trainers.md")
    assert outside_references("see docs/paper-notes.md section 2") == []


def test_every_citation_of_the_design_notes_points_into_the_repository():
    assert (ROOT / "docs" / "paper-notes.md").is_file()
    files = subprocess.run(["git", "ls-files", "*.py", "*.md"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    bad = {f: outside_references((ROOT / f).read_text(encoding="utf-8")) for f in files
           if not f.startswith("docs/") and f != "tests/test_references.py" and (ROOT / f).is_file()}
    assert {f: lines for f, lines in bad.items() if lines} == {}
