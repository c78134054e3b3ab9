"""No tracked source or documentation file holds a control character (issue 14: a literal BEL byte once
stood where ``\\a`` of ``\\approx`` was meant, and the book showed ``&\\x07pprox``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = {
    ".py",
    ".md",
    ".txt",
    ".toml",
    ".yml",
    ".yaml",
    ".cfg",
    ".ini",
    ".json",
    ".jsonl",
    ".bib",
    ".sh",
    ".css",
}
ALLOWED = {9, 10, 13}  # tab, newline, carriage return


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if Path(line).suffix in TEXT or line.endswith("/run")]


def control_characters(path: Path) -> list[tuple[int, int]]:
    """(line, byte) of every control character but tab/newline/CR."""
    hits = []
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), 1):
        hits += [(lineno, b) for b in line if (b < 32 and b not in ALLOWED) or b == 127]
    return hits


def test_no_source_file_holds_control_characters():
    files = _tracked()
    assert len(files) > 50
    bad = {
        str(p.relative_to(ROOT)): control_characters(p)[:3]
        for p in files
        if p.is_file() and control_characters(p)
    }
    assert bad == {}


def test_the_check_sees_a_bel_byte(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_bytes(b'relation = "\x07pprox"\n')  # what r"\approx" written without the r became
    assert control_characters(sample) == [(1, 7)]
