"""Scoring throughput of the code sandbox: HumanEval canonical solutions scored per second.

Scores the first ``--n`` HumanEval canonical solutions through the public task API
(``get_task("humaneval,...").score_batch``) ``--repeat`` times and prints one JSON object: programs per
second for each repeat, their median, and how many passed. It uses only the public API, so the same
script times any version of ``ladtrain`` (point ``PYTHONPATH`` at the checkout to time). On a shared
machine, interleave the versions and compare medians (ratios), not single numbers.

    PYTHONPATH=. python benchmarks/sandbox_throughput.py --n 40 --repeat 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="problems scored per repeat (first N of HumanEval)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from ladtrain.tasks import get_task

    task = get_task(f"humaneval,test_every=0,workers={args.workers}")
    problems = list(task.problems("train"))[: args.n]
    solutions = [p.reference["canonical_solution"] for p in problems]
    rates, passed = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        scores = task.score_batch(problems, solutions)
        rates.append(len(problems) / (time.perf_counter() - t0))
        passed.append(sum(s.reward == 1.0 for s in scores))
    print(json.dumps({"n": len(problems), "workers": args.workers,
                      "programs_per_s": [round(r, 2) for r in rates],
                      "median_programs_per_s": round(statistics.median(rates), 2), "passed": passed}))


if __name__ == "__main__":
    main()
