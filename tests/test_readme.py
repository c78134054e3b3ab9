"""The README's promises: two set-up commands at the top, and the "Using the loss" example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_has_exactly_the_two_setup_commands_first():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == [
        'pip install -e ".[train]" && python -m ladtrain',
        'pip install -e ".[dev]" && python -m pytest',
    ]


def test_using_the_loss_example_runs(tmp_path):
    section = README.read_text().split("## Using the loss", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "quartic" in out.stdout and "log_ratio_mean" in out.stdout
