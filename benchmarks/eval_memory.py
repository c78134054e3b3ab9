"""Peak memory and time of held-out evaluation at large k with the built-in model, on CPU.

Run (each size in its own subprocess, so the peak resident set size is that size's alone)::

    python benchmarks/eval_memory.py --problems 10,50,200 --k 1024           # the README's numbers
    python benchmarks/eval_memory.py --problems 2 --k 64                     # seconds

Per size it reports the peak RSS of the process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before
the evaluation (imports, the warmed-up built-in model, the problems) and after it, their difference
(what evaluating used), the wall and CPU seconds, and completions per second. The built-in model is
warmed up with the trainer's defaults (cached under ``$LADTRAIN_CACHE``; the first run warms it up).
``tracemalloc`` is not used: it does not see torch's tensor allocations. Memory is bounded by design
(:mod:`ladtrain.eval_sampling`: one batch of sequences plus one problem's samples in flight), so the
increase should not grow with the number of problems beyond the per-problem metric values kept.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def one(problems: int, k: int, batch: int, max_new_tokens: int, threads: int) -> dict:
    import torch

    from ladtrain import eval_sampling, models
    from ladtrain.config import TrainConfig
    from ladtrain.tasks import get_task
    from ladtrain.tasks.countdown import cache_dir

    torch.set_num_threads(threads)
    d = TrainConfig()
    task = get_task(d.task)
    warm = models.WarmUp(steps=d.warmup_steps, batch=d.warmup_batch, lr=d.warmup_lr, seed=d.seed,
                         share=d.warmup_share)
    model, tok, _ = models.base_policy(d.model, d.task, list(task.problems("train")), warm, cache_dir(),
                                       progress=False)
    model.eval()
    held = list(task.problems("test"))[:problems]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.time(), time.process_time()
    res = eval_sampling.evaluate(model, tok, task, held, samples=k, temperature=1.0,
                                 max_new_tokens=max_new_tokens, seed=1, batch=batch, progress=False)
    wall, cpu = time.time() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"problems": len(held), "k": k, "batch": batch, "max_new_tokens": max_new_tokens,
            "threads": threads,
            "rss_before_mib": round(before, 1), "rss_peak_mib": round(peak, 1),
            "rss_increase_mib": round(peak - before, 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "completions_per_s": round(len(held) * k / wall, 1), f"pass@{k}": res[f"pass@{k}"],
            "pass@1": res["pass@1"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="10,50,200", help="comma list of numbers of held-out problems")
    ap.add_argument("--k", type=int, default=1024, help="samples per problem")
    ap.add_argument("--batch", type=int, default=512, help="sequences per generate call (--eval-batch)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the worker
    ap.add_argument("--out", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, args.k, args.batch, args.max_new_tokens, args.threads)))
        return 0
    rows = []
    for p in [int(x) for x in args.problems.split(",")]:
        cmd = [sys.executable, __file__, "--one", str(p), "--k", str(args.k), "--batch", str(args.batch),
               "--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
