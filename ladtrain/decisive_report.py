"""The decisive study's report (``python -m ladtrain.decisive_report``): from finished ``compare`` studies
(per task a main study and optionally an ablation study, each a folder with ``results.json``), the verdicts
H1-H5 of :mod:`ladtrain.study_verdicts`, ``report.md``, ``verdicts.json`` and the figures of
:mod:`ladtrain.decisive_figures`.

``verdicts.json`` holds the studies' paths relative to itself, the roles, the one-line ``differs`` of each
role pair and every verdict, so that :func:`recompute` (used by the book's decisive-study page) can
rebuild every verdict from the committed per-problem data and compare.

Bad input (a flag's format, a missing or unreadable ``results.json``, studies that cannot be paired) is
one line naming the flag, exit 2, and nothing is written."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladtrain import study_verdicts as V
from ladtrain.decisive_controls import controls
from ladtrain.decisive_markdown import report


def load(inputs: dict[str, dict[str, Path]]) -> tuple[dict, dict]:
    """``(results, studies)``: ``results[task][kind]`` the parsed ``results.json``, ``studies[task][kind]``
    the checked :class:`~ladtrain.study_verdicts.Study` (``None`` for a missing ablation)."""
    results, studies = {}, {}
    for task, kinds in inputs.items():
        results[task], studies[task] = {}, {"ablation": None}
        for kind, folder in kinds.items():
            res = json.loads((Path(folder) / "results.json").read_text())
            results[task][kind] = res
            studies[task][kind] = V.study(res, f"{task}-{kind}")
    return results, studies


def _differs_keys(differs: dict[tuple[str, str], str]) -> dict[str, str]:
    return {f"{x},{y}": text for (x, y), text in differs.items()}


def curves(st: V.Study, replicates: int = V.REPLICATES) -> dict[str, dict[str, list]]:
    """Per arm: pass@k minus the base (paired over seeds and problems) at every k both have."""
    out = {}
    for arm in st.arms:
        ks = [k for k in st.ks(arm) if k in st.ks()]
        rows = [V.difference(st, arm, st, None, f"pass@{k}", replicates=replicates) for k in ks]
        out[arm] = {
            "ks": ks,
            "estimate": [r["estimate"] for r in rows],
            "lo": [r["lo"] for r in rows],
            "hi": [r["hi"] for r in rows],
        }
    return out


def build(
    inputs: dict[str, dict[str, Path]],
    out: Path,
    roles: dict[str, str] | None = None,
    differs: dict[tuple[str, str], str] | None = None,
    command: str = "",
    replicates: int = V.REPLICATES,
) -> tuple[dict[str, Any], dict]:
    """``(verdicts.json content, results)``; raises VerdictError / OSError / ValueError on bad input."""
    from ladtrain.study_collect import code_revision

    results, studies = load(inputs)
    roles = {**V.DEFAULT_ROLES, **(roles or {})}
    doc = {
        "command": command or "ladtrain.decisive_report.build (called from Python)",
        "code": code_revision(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "delta": V.DELTA,
        "replicates": replicates,
        "bootstrap_seed": V.BOOTSTRAP_SEED,
        "roles": roles,
        "differs": _differs_keys(differs or {}),
        "studies": {
            t: {k: os.path.relpath(Path(d).resolve(), Path(out).resolve()) for k, d in ks.items()}
            for t, ks in inputs.items()
        },
        "verdicts": V.verdicts(studies, roles, differs, replicates),
        "controls": {t: controls(kinds, replicates) for t, kinds in studies.items() if kinds.get("controls")},
        "curves": {
            t: {k: curves(st, replicates) for k, st in kinds.items() if st is not None and st.base}
            for t, kinds in studies.items()
        },
        "crossovers": {
            t: {
                k: {a: V.crossovers(st, a, replicates) for a in st.arms}
                for k, st in kinds.items()
                if st is not None and st.base
            }
            for t, kinds in studies.items()
        },
    }
    return normalised(doc), results


def normalised(doc: Any) -> Any:
    """``doc`` as it reads back from JSON (tuples become lists, numpy numbers Python numbers)."""
    return json.loads(json.dumps(doc, default=_json_default))


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def recompute(folder: str | Path) -> tuple[list, list]:
    """``(committed, recomputed)`` verdicts of ``folder/verdicts.json``: the second rebuilt from the
    per-problem data of the studies it names, with its roles, differs and number of replicates."""
    folder = Path(folder)
    doc = json.loads((folder / "verdicts.json").read_text())
    inputs = {t: {k: folder / p for k, p in kinds.items()} for t, kinds in doc["studies"].items()}
    _, studies = load(inputs)
    differs = {tuple(k.split(",", 1)): v for k, v in doc["differs"].items()}
    return doc["verdicts"], normalised(V.verdicts(studies, doc["roles"], differs, doc["replicates"]))


def recompute_controls(folder: str | Path) -> tuple[dict, dict]:
    """``(committed, recomputed)`` controls of ``folder/verdicts.json``
    (:mod:`ladtrain.decisive_controls`), the second rebuilt from the committed per-problem data."""
    folder = Path(folder)
    doc = json.loads((folder / "verdicts.json").read_text())
    inputs = {t: {k: folder / p for k, p in kinds.items()} for t, kinds in doc["studies"].items()}
    _, studies = load(inputs)
    again = {t: controls(kinds, doc["replicates"]) for t, kinds in studies.items() if kinds.get("controls")}
    return doc.get("controls", {}), normalised(again)


# ------------------------------------------------------------------------------------------ command line


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"decisive_report: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _pairs(values: Sequence[str], flag: str, parser: _Parser) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key or not val:
            parser.error(f"{flag} {v!r}: expected NAME=VALUE")
        if key in out:
            parser.error(f"{flag} {key}: given twice")
        out[key] = val
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from ladtrain.atomic import write_atomically
    from ladtrain.decisive_figures import figures

    argv = list(sys.argv[1:] if argv is None else argv)
    p = _Parser(prog="python -m ladtrain.decisive_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--main", action="append", default=[], metavar="TASK=DIR", help="a task's main study")
    p.add_argument("--ablation", action="append", default=[], metavar="TASK=DIR", help="its ablation study")
    p.add_argument("--controls", action="append", default=[], metavar="TASK=DIR",
                   help="its controls study (ladtrain/decisive_controls.py)")
    p.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="ROLE=LABEL",
        help=f"arm label of a role ({', '.join(V.ROLES)}); defaults {V.DEFAULT_ROLES}",
    )
    p.add_argument(
        "--differs",
        action="append",
        default=[],
        metavar="ROLE,ROLE=TEXT",
        help="what differs between two roles' arms (default: loss only)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.md, verdicts.json, PNGs")
    a = p.parse_args(argv)
    mains, abls = _pairs(a.main, "--main", p), _pairs(a.ablation, "--ablation", p)
    ctls = _pairs(a.controls, "--controls", p)
    if not mains:
        p.error("--main: at least one TASK=DIR")
    for flag, given in (("--main", mains), ("--ablation", abls), ("--controls", ctls)):
        for task, folder in given.items():
            if flag != "--main" and task not in mains:
                p.error(f"{flag} {task}: no --main {task}=DIR")
            if not (Path(folder) / "results.json").is_file():
                p.error(f"{flag} {task}={folder}: no results.json there")
    roles = _pairs(a.role, "--role", p)
    unknown = sorted(set(roles) - set(V.ROLES))
    if unknown:
        p.error(f"--role {unknown[0]}: not a role ({', '.join(V.ROLES)})")
    differs = {}
    for key, text in _pairs(a.differs, "--differs", p).items():
        pair = tuple(key.split(","))
        if len(pair) != 2 or not set(pair) <= set(V.ROLES) | {"base"}:
            p.error(f"--differs {key}: expected ROLE,ROLE=TEXT with roles among {', '.join(V.ROLES)}, base")
        differs[pair] = text
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {out}: exists and is not a folder")
    inputs = {
        t: {"main": Path(d), **({"ablation": Path(abls[t])} if t in abls else {}),
            **({"controls": Path(ctls[t])} if t in ctls else {})} for t, d in mains.items()
    }
    loaded = {}
    for task, kinds in inputs.items():
        for kind, folder in kinds.items():
            try:
                loaded[task, kind] = load({task: {kind: folder}})[1][task][kind]
                if kind in ("ablation", "controls"):
                    V.aligned(loaded[task, "main"], loaded[task, kind])
                loaded[task, kind].k_max()
            except (V.VerdictError, ValueError, KeyError, TypeError, OSError) as err:
                p.error(f"--{kind} {task}={folder}: {_one_line(err)}")
    for role, label in roles.items():
        if not any(label in st.arms for st in loaded.values()):
            p.error(f"--role {role}={label}: no study has an arm {label}")
    command = "python -m ladtrain.decisive_report " + " ".join(shlex.quote(x) for x in argv)
    try:
        doc, results = build(inputs, out, roles, differs, command)
    except (V.VerdictError, ValueError, KeyError, OSError) as err:
        p.error(f"--main: {_one_line(err)}")
    out.mkdir(parents=True, exist_ok=True)
    figures(doc, out)
    write_atomically(out / "verdicts.json", json.dumps(doc, indent=1))
    write_atomically(out / "report.md", report(doc, results))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
