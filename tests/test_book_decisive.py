"""The decisive-study page (book/decisive-study.md) on a folder built from synthetic studies
(tests/train/decisive_fixture.py) by ``python -m ladtrain.decisive_report``: it renders the report, the
figures and the recomputed verdicts; a forged verdict, forged per-problem data or a missing verdicts.json
fails it (each shown to pass the rest of the page: only the recomputation catches it)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the book extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the book extra is not installed")

from ladtheory.book import BOOK, REPO  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
import decisive_fixture as F  # noqa: E402  (tests/train/decisive_fixture.py)


def _run(folder: Path, monkeypatch) -> tuple[list, str | None]:
    """The page's outputs and the failing cell's message (None when every cell ran)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    monkeypatch.setenv("LAD_BOOK_DECISIVE", str(folder))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = jupytext.read(BOOK / "decisive-study.md")
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(BOOK)}})
    try:
        client.execute()
        failure = None
    except nbclient.exceptions.CellExecutionError as err:
        failure = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])], failure


@pytest.fixture(scope="module")
def decisive(tmp_path_factory):
    from ladtrain import decisive_report

    root = tmp_path_factory.mktemp("book-decisive")
    studies = F.decisive(root)
    args = [a for t, kinds in studies.items() for k, d in kinds.items() for a in (f"--{k}", f"{t}={d}")]
    assert decisive_report.main(args + ["--out", str(root / "decisive")]) == 0
    return root


def test_the_page_renders_the_report_figures_and_recomputed_verdicts(decisive, monkeypatch):
    outputs, failure = _run(decisive / "decisive", monkeypatch)
    assert failure is None, failure[-3000:]
    markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert "**The decisive study: does LAD keep what GRPO loses?**" in markdown and "\n#" not in markdown
    assert "| H3 | countdown | **supported** |" in markdown and "- countdown: H1 **" in markdown
    assert "distinct n-grams/generated token" in markdown and "![" not in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "recomputed 10 verdicts from 4 studies" in text and "identical" in text
    assert not [o for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_forged_verdict_fails_the_page(decisive, monkeypatch, tmp_path):
    """The word and the report are forged together, so only the recomputation can tell."""
    root = _copy(decisive, tmp_path / "forged")
    folder = root / "decisive"
    doc = json.loads((folder / "verdicts.json").read_text())
    v = next(v for v in doc["verdicts"] if v["hypothesis"] == "H3" and v["task"] == "countdown")
    v["verdict"] = "refuted"
    (folder / "verdicts.json").write_text(json.dumps(doc))
    report = (folder / "report.md").read_text()
    (folder / "report.md").write_text(report.replace("| H3 | countdown | **supported** |",
                                                     "| H3 | countdown | **refuted** |"))
    _, failure = _run(folder, monkeypatch)
    assert failure and "does not follow from the committed per-problem data" in failure


def test_forged_per_problem_data_fails_the_page(decisive, monkeypatch, tmp_path):
    root = _copy(decisive, tmp_path / "forged-data")
    path = root / "countdown-main" / "results.json"
    res = json.loads(path.read_text())
    lad = res["per_problem"]["lad:js"]
    lad["pass@1"] = [[x - 0.2 for x in row] for row in lad["pass@1"]]
    path.write_text(json.dumps(res))
    _, failure = _run(root / "decisive", monkeypatch)
    assert failure and "does not follow from the committed per-problem data" in failure


def test_a_missing_verdicts_file_fails_loudly(monkeypatch, tmp_path):
    _, failure = _run(tmp_path, monkeypatch)
    assert failure and "FileNotFoundError" in failure and "verdicts.json is missing" in failure
