"""What one token's draw costs the rollout sampler (``ladtrain.compact_sampler.draw``): generate's
exponentials (``draws="generate"``, what ``torch.multinomial`` does) against the inverse-CDF draw
(``draws="inverse-cdf"``, ``--sampler-draws inverse-cdf``), after the same softmax, at a batch and a
vocabulary; interleaved calls in one process, one thread, CPU milliseconds per token, medians.

    python benchmarks/draws.py                         # 16 rows x 49,152 (the SmolLM2-135M shape)
    python benchmarks/draws.py --rows 16 --vocab 151936 # Qwen2.5's vocabulary
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from ladtrain.compact_sampler import draw  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=49_152)
    ap.add_argument("--calls", type=int, default=200, help="draws per timing (one token each)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    logits = torch.randn(args.rows, args.vocab) * 3
    live = torch.arange(args.rows)
    times: dict[str, list[float]] = {"softmax": [], "generate": [], "inverse-cdf": []}

    def timed(f) -> float:
        start = time.process_time()
        for _ in range(args.calls):
            f()
        return 1e3 * (time.process_time() - start) / args.calls

    probs = torch.softmax(logits, dim=-1)
    for i in range(args.repeats):
        order = list(times) if i % 2 == 0 else list(times)[::-1]
        for k in order:
            if k == "softmax":
                times[k].append(timed(lambda: torch.softmax(logits, dim=-1)))
            else:
                times[k].append(timed(lambda k=k: draw(probs, live, args.rows, k)))
    print(f"{args.rows} rows x {args.vocab} tokens, {args.calls} calls x {args.repeats} interleaved repeats, "
          f"torch {torch.__version__}")
    for k, v in times.items():
        print(f"{k:>12}: median {statistics.median(v):.3f} ms CPU per token "
              f"(min {min(v):.3f}, max {max(v):.3f})")
    g, c = statistics.median(times["generate"]), statistics.median(times["inverse-cdf"])
    print(f"inverse-cdf / generate: {c / g:.3f} of the draw's time")


if __name__ == "__main__":
    main()
