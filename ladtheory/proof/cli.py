"""``python -m ladtheory proofs``: check every result in ``proofs/`` and print a table with honest counts."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from ladtheory.proof.chain import DerivationReport
from ladtheory.proof.core import ProofError, Status
from ladtheory.proof.result import PROOFS_DIR, load_file, proof_files

_MARK = {Status.SYMBOLIC: "S", Status.NUMERIC: "N", Status.FAILED: "F"}


def _error_location(exc: BaseException, path: Path) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == path.resolve():
            return f"{path}:{frame.lineno}"
    return f"{path}:1"


def _part_line(res, part, rep) -> str:
    if isinstance(rep, DerivationReport):
        marks = "".join(_MARK[s.status] for s in rep.steps) + " " + _MARK[rep.claim.status]
        if rep.links:
            marks += "".join(_MARK[v.status] for v in rep.links)
        n = len(rep.steps)
    else:
        marks, n = _MARK[rep.status], 1
    return f"{res.name:<32} {part.name:<44} {n:>5}  {marks:<16} {rep.seconds:6.2f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ladtheory proofs",
        description="Check every step-checked derivation in proofs/ and print a table. Marks: one per step, "
        "then one for the claim (the chain proves exactly the stated claim), then one per derived "
        "fact (it is the claim of the derivation it names). S symbolic (sympy), N numeric only "
        "(evidence, not proof), F failed.",
    )
    parser.add_argument(
        "--dir", default=None, help="folder of proof files (default: the repository's proofs/)"
    )
    parser.add_argument("--only", action="append", default=[], help="check only results whose file "
                        "name contains this text (repeatable)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every step with its method")
    parser.add_argument("--markdown", action="store_true", help="print the checked derivations as Markdown")
    args = parser.parse_args(argv)
    directory = Path(args.dir) if args.dir else PROOFS_DIR
    if not directory.is_dir():
        print(f"error: --dir {directory}: no such directory", file=sys.stderr)
        return 2
    files = proof_files(directory)
    if args.only:
        files = [p for p in files if any(o in p.stem for o in args.only)]
        if not files:
            print(f"error: --only {args.only}: no proof file matches", file=sys.stderr)
            return 2
    failed = 0
    steps = {Status.SYMBOLIC: 0, Status.NUMERIC: 0, Status.FAILED: 0}
    checks = {"ok": 0, "failed": 0}
    t_all = time.perf_counter()
    print(f"{'result':<32} {'part':<44} {'steps':>5}  {'marks':<16} {'time':>7}")
    print("-" * 110)
    for path in files:
        try:
            res = load_file(path)
            report = res.check()
        except ProofError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # a proof file that crashes is a failed result, with its location
            print(
                f"{path.stem:<32} FAILED to build: {_error_location(exc, path)}: {type(exc).__name__}: {exc}"
            )
            failed += 1
            continue
        for part, rep in zip(res.parts, report.parts):
            print(_part_line(res, part, rep))
            if isinstance(rep, DerivationReport):
                for s in rep.steps:
                    steps[s.status] += 1
                problems = [s for s in rep.steps if s.status is Status.FAILED or args.verbose]
                for s in problems:
                    print(f"    step {s.index} [{s.rule}] {s.status.value.upper()}: {s.method}: {s.detail}")
                for v in (rep.claim, *rep.links):
                    if v.status is Status.FAILED or args.verbose:
                        print(f"    {v.method} {v.status.value.upper()}: {v.detail}")
            else:
                checks["ok" if rep.ok else "failed"] += 1
                if not rep.ok or args.verbose:
                    print(
                        f"    check {rep.status.value.upper()}: "
                        f"error {rep.error:.3g} <= {rep.tolerance:.0e}? {rep.detail}"
                    )
            failed += not rep.ok
        hyps = [f.name for f in res.hypotheses]
        if hyps:
            print(f"{'':<32} assumptions (hypotheses, not proved): {', '.join(hyps)}"[:110])
        for k, v in enumerate(report.claims):
            if v.status is Status.FAILED or args.verbose:
                print(f"    result claim {k + 1} {v.status.value.upper()}: {v.detail}")
            failed += v.status is Status.FAILED
        if args.markdown:
            print(res.to_markdown(report))
    print("-" * 110)
    total = sum(steps.values())
    print(
        f"{total} steps: {steps[Status.SYMBOLIC]} proved symbolically, {steps[Status.NUMERIC]} only numeric "
        f"(evidence, not proof), {steps[Status.FAILED]} failed; {checks['ok'] + checks['failed']} numeric "
        f"checks, {checks['failed']} failed; {len(files)} results in {time.perf_counter() - t_all:.1f}s"
    )
    if failed:
        print(f"FAILED: {failed} part(s) or claim(s) do not check")
        return 1
    print(f"all derivations check ({steps[Status.NUMERIC]} of {total} steps only numeric)")
    return 0
