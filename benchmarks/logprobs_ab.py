"""The chunked log-probs at the 135M update's size: this checkout's ``ChunkedTokenLogprob`` against a
git revision's, forward and backward, interleaved on one thread.

    python benchmarks/logprobs_ab.py                  # against 084e99f (before the in-place chunks)
    python benchmarks/logprobs_ab.py --rev REV --calls 3

Prints each side's CPU seconds per call, the ratio of the medians, and the largest differences of the
log-probs and the gradients between the two (the same inputs, float32).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ladtrain import logprobs as current  # noqa: E402


def module_at(rev: str):
    """``ladtrain/logprobs.py`` as it was at ``rev``, imported under another name."""
    text = subprocess.run(["git", "show", f"{rev}:ladtrain/logprobs.py"], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "logprobs_at_rev.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("logprobs_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def call(module, h0, w0, b0, ids, g):
    h, w, b = (t.clone().requires_grad_() for t in (h0, w0, b0))
    start = time.process_time()
    out = module.ChunkedTokenLogprob.apply(h, w, b, ids, 1.0, module.chunk_rows(w.shape[0]))
    out.backward(g)
    return time.process_time() - start, (out.detach(), h.grad, w.grad, b.grad)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="084e99f")
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1297)  # the 135M shape's completion tokens per step
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    old = module_at(args.rev)
    n, hidden, vocab = args.rows, 576, 49152
    h0, w0, b0 = torch.randn(n, hidden) * 0.5, torch.randn(vocab, hidden) * 0.05, torch.randn(vocab) * 0.1
    ids, g = torch.randint(0, vocab, (n,)), torch.randn(n)
    times: dict[str, list[float]] = {args.rev: [], "this checkout": []}
    outs = {}
    for i in range(args.calls):
        order = [(args.rev, old), ("this checkout", current)]
        for name, module in order if i % 2 == 0 else order[::-1]:
            seconds, outs[name] = call(module, h0, w0, b0, ids, g)
            times[name].append(seconds)
    for name, values in times.items():
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name}: median {statistics.median(values):.2f} s CPU ({each})")
    print(f"ratio {args.rev} / this checkout: "
          f"{statistics.median(times[args.rev]) / statistics.median(times['this checkout']):.3f}")
    for label, a, b in zip(("log-probs", "grad hidden", "grad weight", "grad bias"), outs[args.rev],
                           outs["this checkout"]):
        diff, top = float((a - b).abs().max()), float(a.abs().max())
        print(f"{label}: max |difference| {diff:.2e} (max |value| {top:.2f})")


if __name__ == "__main__":
    main()
