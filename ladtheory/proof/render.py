"""Markdown (with LaTeX) for derivations, numeric checks and results: what the book and ``--markdown`` show.

Every claim is rendered from its sympy object (``sp.latex(claim)``), never from a separate string.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from ladtheory.proof.chain import Derivation, DerivationReport, latex_line
from ladtheory.proof.result import NumericCheck, NumericReport, Result, ResultReport
from ladtheory.proof.rules import RULES


def claim_latex(claim: sp.Basic) -> str:
    if isinstance(claim, sp.Implies):
        return f"{claim_latex(claim.args[0])} \\;\\Longrightarrow\\; {claim_latex(claim.args[1])}"
    if isinstance(claim, sp.Equivalent):
        return f"{claim_latex(claim.args[0])} \\;\\Longleftrightarrow\\; {claim_latex(claim.args[1])}"
    return sp.latex(claim)


def rows(d: Derivation, report: DerivationReport | None = None) -> list[dict]:
    """One dict per line (keys ``relation``, ``latex``, ``rule``, ``why``, ``status``, ``method``,
    ``detail``)."""
    out = [dict(relation="", latex=sp.latex(d.start), rule="", why="start", status="", method="", detail="")]
    for k, st in enumerate(d.steps):
        r = report.steps[k] if report else None
        out.append(dict(relation=RULES[st.rule].relation, latex=latex_line(st), rule=st.rule, why=st.why,
                        status=r.status.value if r else "unchecked", method=r.method if r else "",
                        detail=r.detail if r else ""))
    return out


def _fact_line(f) -> str:
    where = f", proved in *{f.proved_by}*" if f.kind == "derived" else ""
    gloss = f": {f.text}" if f.text else ""
    return f"- ({f.name}, {f.kind}{where}) ${f.latex()}${gloss}"


def derivation_markdown(d: Derivation, report: DerivationReport | None = None) -> str:
    out = [f"**{d.title}**", "", f"Claim: ${claim_latex(d.claim)}$"]
    if report is not None:
        out[-1] += f" ({report.claim.status.value}: {report.claim.detail})"
        if report.hypotheses:
            out[-1] += "; under " + ", ".join(f"*{h}*" for h in report.hypotheses)
        for link in report.links:
            out.append(f"- {link.status.value}: {link.detail}")
    out.append("")
    if d.facts or d.assumptions:
        out.append("Assumptions and facts:")
        out += [f"- {a}" for a in d.assumptions]
        out += [_fact_line(f) for f in d.facts.values()]
        out.append("")
    lines = rows(d, report)
    body = [f"&{lines[0]['latex']}"] + [f"&{r['relation']} {r['latex']}" for r in lines[1:]]
    out += ["$$", "\\begin{aligned}", " \\\\\n".join(body), "\\end{aligned}", "$$", ""]
    out += ["| # | rule | why | check |", "|---|---|---|---|"]
    for k, r in enumerate(lines[1:], 1):
        check = f"{r['status']} ({r['method']})" if r["method"] else r["status"]
        out.append(f"| {k} | `{r['rule']}` | {r['why']} | {check} |")
    return "\n".join(out) + "\n"


def numeric_markdown(c: NumericCheck, report: NumericReport | None = None) -> str:
    out = [f"**{c.title}** (numeric check: evidence, not a proof)", "", f"Measured: ${c.claim}$", ""]
    if report is not None:
        out.append(f"Measured error {report.error:.3g} (tolerance {c.tolerance:.0e}): "
                   f"{report.status.value}. {report.detail}")
    return "\n".join(out) + "\n"


def summary_line(report: ResultReport) -> str:
    steps = sum(len(p.steps) for p in report.parts if isinstance(p, DerivationReport))
    numeric = report.numeric_steps
    checks = sum(isinstance(p, NumericReport) for p in report.parts)
    return (f"{steps} steps, {steps - numeric} proved symbolically, {numeric} only numeric; "
            f"{checks} numeric checks (evidence, not proof)")


def result_markdown(res: Result, report: ResultReport | None = None) -> str:
    out = [f"### {res.title}", "", "Claims:"]
    for k, c in enumerate(res.claims):
        verdict = f" ({report.claims[k].status.value}: {report.claims[k].detail})" if report else ""
        out.append(f"- ${claim_latex(c)}${verdict}")
    out.append("")
    hyps = res.hypotheses
    if res.assumptions or hyps:
        out += ["Assumptions:"] + [f"- {a}" for a in res.assumptions]
        out += [f"- ({f.name}, hypothesis) ${f.latex()}$" + (f": {f.text}" if f.text else "") for f in hyps]
        out.append("")
    if report is not None:
        out += [f"Checked: {summary_line(report)}.", ""]
    for k, part in enumerate(res.parts):
        rep = report.parts[k] if report else None
        out.append(
            derivation_markdown(part, rep) if isinstance(part, Derivation) else numeric_markdown(part, rep)
        )
    if res.notes:
        out += ["", res.notes]
    if res.source:
        out += ["", f"Source: `proofs/{Path(res.source).name}`"]
    return "\n".join(out) + "\n"

