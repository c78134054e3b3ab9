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
import math
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladtrain import study_verdicts as V

KINDS = ("main", "ablation")


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


# ------------------------------------------------------------------------------------------ markdown


def _cell(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ms(row: dict | None) -> str:
    if not row or row.get("mean") is None or math.isnan(row["mean"]):
        return "n/a"
    sd = row.get("std")
    return f"{row['mean']:.3f}" + ("" if sd is None or math.isnan(sd) else f" ± {sd:.3f}")


def _seed_stat(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[~np.isnan(a)]
    if not a.size:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else math.nan}


def study_tables(task: str, kind: str, res: dict, doc: dict, main: dict) -> list[str]:
    """The accuracy and diversity tables of one study: every arm and the base."""
    st = V.study(res, f"{task}-{kind}")
    k_max = st.k_max()
    arms = list(st.arms)
    table = res.get("table", {})
    grpo = doc["roles"]["grpo"]
    cost = res.get("cost", {})
    ref_s = (cost.get(grpo) or {}).get("step_seconds")
    ref_note = ""
    if ref_s is None:
        ref_s, ref_note = (main.get("cost", {}).get(grpo) or {}).get("step_seconds"), " †"
    cross = doc["crossovers"].get(task, {}).get(kind, {})
    ks = list(dict.fromkeys(["pass@1"] + (["pass@16"] if k_max > 16 else []) + [f"pass@{k_max}"]))
    lines = [
        f"Per-seed values are means over {len(st.problem_ids)} test problems; cells: mean ± std over "
        f"the {len(st.seeds)} seeds {list(st.seeds)}.",
        "",
        f"| arm | {' | '.join(ks)} | retained base answers | crossover k vs base, per seed "
        "| crossover k vs base, mean curves / interval below 0 | step time vs GRPO |",
        "|---|" + "---|" * (len(ks) + 4),
    ]
    for arm in ["base"] + arms:
        row = table.get(arm, {})
        if arm == "base":
            extra = ["(itself)", "-", "-", "-"]
        else:
            ret = _seed_stat([(r or {}).get("mean", math.nan) for r in res.get("retained", {}).get(arm, [])])
            per_seed = res.get("crossover", {}).get(arm)
            c = cross.get(arm, {})
            step = (cost.get(arm) or {}).get("step_seconds")
            ratio = step / ref_s if step is not None and ref_s else None
            extra = [
                _ms(ret),
                ", ".join("none" if k is None else str(k) for k in per_seed) if per_seed else "n/a",
                f"{c.get('crossover_k') or 'none'} / {c.get('significant_k') or 'none'}" if c else "n/a",
                (f"{ratio:.2f}{ref_note}" if ratio is not None else "n/a"),
            ]
        lines.append(
            f"| {arm} | "
            + " | ".join([_ms(row.get(m)) for m in ks] + extra)
            + " |"
        )
    lines += [
        "",
        "| arm | distinct correct | answer entropy (nats) | dist-2 | dist-3 | dist-4 "
        "| dist-2 | dist-3 | dist-4 |",
        "|---|---|---|---|---|---|---|---|---|",
        "| | | | distinct/total n-grams | | | distinct n-grams/generated token | | |",
    ]
    div = (
        "distinct_correct",
        "answer_entropy",
        "dist-2",
        "dist-3",
        "dist-4",
        "dist-2_per_token",
        "dist-3_per_token",
        "dist-4_per_token",
    )
    for arm in ["base"] + arms:
        lines.append(f"| {arm} | " + " | ".join(_ms(table.get(arm, {}).get(m)) for m in div) + " |")
    lines.append("")
    if ref_note:
        lines += [f"† relative to the main study's `{grpo}` (this study has none; times of another run).", ""]
    return lines


def _esc(text: str) -> str:
    """Text for a markdown table cell (a ``|`` would end the cell)."""
    return str(text).replace("|", "\\|")


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:+.4f}, {hi:+.4f}]"


def verdict_lines(doc: dict) -> list[str]:
    lines = [
        "| | task | verdict | compared (X - Y) | what differs | metric | estimate | 95% CI, bootstrap "
        "over seeds and problems | 95% t-CI over problems | per-seed means | rule |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for v in doc["verdicts"]:
        head = f"| {v['hypothesis']} | {v['task']} | **{v['verdict']}** |"
        if not v["rows"]:
            lines.append(f"{head} {_esc(v['reason'])} | | | | | | | | {v['rule']} |")
        for r in v["rows"]:
            if not r["decides"]:
                head = f"| {v['hypothesis']} | {v['task']} | (shown, not in the rule) |"
            seeds = ", ".join(f"{s}: {m:+.3f}" for s, m in zip(r["seeds"], r["seed_means"]))
            lines.append(
                f"{head} `{r['x']}` - `{r['y']}` | {_esc(r['differs'])} | {r['metric']} | "
                f"{r['estimate']:+.4f} | {_interval(r['lo'], r['hi'])} | {_interval(*r['t_ci'])} | "
                f"{seeds} | {v['rule']} |"
            )
        if v["hypothesis"] == "H2" and v["rows"]:
            fk = v["from_k"]
            notes.append(
                f"- H2, {v['task']}: every k >= {fk} has lo > 0."
                if fk
                else f"- H2, {v['task']}: no k from which every larger k has lo > 0 (k_max = {v['k']})."
            )
        if v["hypothesis"] == "H3" and v["rows"]:
            for c in v["crossovers"]:
                notes.append(
                    f"- H3, {v['task']}: `{c['arm']}` crossover k against the base: "
                    f"{c['crossover_k'] or 'none'} on the mean curves, {c['significant_k'] or 'none'} "
                    f"with the interval below 0 (k up to {c['ks'][-1]})."
                )
        if v["hypothesis"] == "H5" and v["rows"]:
            w = ", ".join(f"{r['metric']} {x:.4f}" for r, x in zip(v["rows"], v["widths"]))
            notes.append(f"- H5, {v['task']}: interval widths {w}.")
    return lines + [""] + notes + [""]


def _cpu(cpu: Any) -> str:
    """``cpu_seconds`` of a study: a number or ``{"test", "tuning", "total"}`` (seconds) -> hours."""
    if isinstance(cpu, (int, float)):
        return f"{cpu / 3600:.2f} h"
    if isinstance(cpu, dict) and all(
        isinstance(cpu.get(k), (int, float)) for k in ("test", "tuning", "total")
    ):
        h = {k: cpu[k] / 3600 for k in ("test", "tuning", "total")}
        return f"{h['total']:.2f} h (test runs {h['test']:.2f} h, tuning {h['tuning']:.2f} h)"
    return "not recorded"


def tuning_lines(tuning: dict) -> list[str]:
    """Per arm every grid point's validation score (mean and per tuning seed) and the chosen point; a
    tuning record of another layout is shown as JSON."""
    try:
        lines = [
            "| arm | setting | validation score: mean | per tuning seed | chosen |",
            "|---|---|---|---|---|",
        ]
        for arm, t in tuning.items():
            for row in t["grid"]:
                setting = ", ".join(f"{k}={v}" for k, v in row["setting"].items()) or "(defaults)"
                seeds = ", ".join(f"{x:.4f}" for x in row["per_seed"])
                chosen = "**yes**" if row["setting"] == t["chosen"] else ""
                lines.append(f"| {arm} | {setting} | {row['mean']:.4f} | {seeds} | {chosen} |")
        first = next(iter(tuning.values()))
        lines += [
            "",
            f"Score: `{first['select']}` on the `{first['split']}` split, tuning seeds "
            f"{first['seeds']}, {first['samples']} samples per problem.",
        ]
        return lines
    except (KeyError, TypeError, AttributeError, ValueError, StopIteration):
        return ["```json", json.dumps(tuning, indent=1, default=str), "```"]


def report(doc: dict, results: dict) -> str:
    """``report.md``: per task the tables of every study, then H1-H5, tuning and provenance."""
    lines = [
        "# The decisive study: does LAD keep what GRPO loses?",
        "",
        "Paired differences over the same test problems and seeds; 95% intervals by a seed-then-problem "
        f"bootstrap ({doc['replicates']} replicates, numpy seed {doc['bootstrap_seed']}); rules "
        f"pre-registered in `ladtrain/study_verdicts.py` (delta = {doc['delta']}). Crossover k: the "
        "smallest k with base pass@k >= the arm's. Retained base answers: the share of the base's "
        "correct answers the trained policy still produces (mean over seeds of each seed's mean).",
        "",
    ]
    for task, kinds in results.items():
        lines += [f"## {task}", ""]
        for kind in KINDS:
            if kind in kinds:
                lines += [f"### {kind} study (`{doc['studies'][task][kind]}`)", ""]
                lines += study_tables(task, kind, kinds[kind], doc, kinds["main"])
    lines += ["## Verdicts H1-H5", ""] + verdict_lines(doc)
    lines += ["![pass@k minus the base](pass_at_k_vs_base.png)", "", "![verdicts](verdicts_forest.png)", ""]
    tuned = [(t, k, r["tuning"]) for t, kinds in results.items() for k, r in kinds.items() if r.get("tuning")]
    if tuned:
        lines += ["## Tuning on validation", ""]
        for task, kind, tuning in tuned:
            lines += [f"{task}, {kind} study:", ""] + tuning_lines(tuning) + [""]
    lines += [
        "## Provenance",
        "",
        f"This report: `{doc['command']}` at code {doc['code']}, {doc['created']}.",
        "",
        "| task | study | command | code | CPU time | finished |",
        "|---|---|---|---|---|---|",
    ]
    for task, kinds in results.items():
        for kind, r in kinds.items():
            cpu = _cpu(r.get("cpu_seconds"))
            lines.append(
                f"| {task} | {kind} | `{r.get('command', 'not recorded')}` | "
                f"{r.get('code', 'not recorded')} | {cpu} | {r.get('finished', 'n/a')} |"
            )
    return "\n".join(lines) + "\n"


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
    if not mains:
        p.error("--main: at least one TASK=DIR")
    for flag, given in (("--main", mains), ("--ablation", abls)):
        for task, folder in given.items():
            if flag == "--ablation" and task not in mains:
                p.error(f"--ablation {task}: no --main {task}=DIR")
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
        t: {"main": Path(d), **({"ablation": Path(abls[t])} if t in abls else {})} for t, d in mains.items()
    }
    loaded = {}
    for task, kinds in inputs.items():
        for kind, folder in kinds.items():
            try:
                loaded[task, kind] = load({task: {kind: folder}})[1][task][kind]
                if kind == "ablation":
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
