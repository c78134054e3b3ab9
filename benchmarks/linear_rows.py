"""A linear layer's product: ``F.linear`` against a contiguous ``W.T`` copy and against oneDNN.

Decoding multiplies each linear layer's weight by 1-16 rows (one per live sequence); the update by
hundreds. Which product is fastest depends on the CPU (``ladtrain/transposed_linears.py`` and
``ladtrain/onednn_linears.py`` measure it and decide per run). This script shows it: for each weight shape
and row count, the median of ``--calls`` calls of ``F.linear(x, W, b)``, of
``torch.addmm(b, x, W.T.contiguous())`` (the copy made once, outside the timing) and of oneDNN's product
(``ladtrain.onednn_linears.linear``: with the weight as it is, and reordered once for oneDNN as the
sampler does), interleaved, on one thread. The shapes are SmolLM2-135M's (hidden 576, MLP 1536,
vocabulary 49,152) and the built-in 6.4M model's (hidden 256, MLP 688).

    python benchmarks/linear_rows.py              # a table, ~1 minute
    python benchmarks/linear_rows.py --calls 5    # quicker

The ratios are F.linear's time over each other's (above 1: faster than ``F.linear``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = {  # name: (in, out)
    "135m mlp up": (576, 1536),
    "135m mlp down": (1536, 576),
    "135m lm_head": (576, 49152),
    "6.4m mlp up": (256, 688),
}
ROWS = (1, 4, 8, 15, 16, 1281)


def median_ms(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=11)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread, median of {args.calls} calls (ms)")
    from ladtrain import onednn_linears

    onednn = onednn_linears.available()
    print(f"{'product':<16}{'rows':>6}{'F.linear':>11}{'copy':>9}{'ratio':>8}"
          + (f"{'oneDNN':>9}{'ratio':>8}{'reordered':>11}{'ratio':>8}" if onednn else "  (no oneDNN)"))
    for name, (n_in, n_out) in SHAPES.items():
        w, b = torch.randn(n_out, n_in), torch.randn(n_out)
        copy = w.T.contiguous()
        for rows in ROWS:
            if rows > 16 and n_out > 10_000:
                continue  # the output layer never sees the update's rows in the sampler
            x = torch.randn(rows, n_in)
            assert torch.allclose(F.linear(x, w, b), torch.addmm(b, x, copy), rtol=1e-4, atol=1e-3)
            ways = {"F.linear": lambda: F.linear(x, w, b), "copy": lambda: torch.addmm(b, x, copy)}
            if onednn:
                reordered = torch.ops.mkldnn._reorder_linear_weight(w, rows)
                ways["oneDNN"] = lambda: onednn_linears.linear(x, w, b)
                ways["reordered"] = lambda: onednn_linears.linear(x, reordered, b)
                for way in ("oneDNN", "reordered"):
                    assert torch.allclose(F.linear(x, w, b), ways[way](), rtol=1e-4, atol=1e-3)
            times: dict[str, list[float]] = {k: [] for k in ways}
            for _ in range(2):  # interleaved: the machine's load drifts
                for k, fn in ways.items():
                    times[k].append(median_ms(fn, args.calls))
            best = {k: min(v) for k, v in times.items()}
            p = best["F.linear"]
            cells = "".join(f"{best[k]:>{9 if k != 'reordered' else 11}.3f}{p / best[k]:>8.2f}"
                            for k in ways if k != "F.linear")
            print(f"{name:<16}{rows:>6}{p:>11.3f}{cells}")


if __name__ == "__main__":
    main()
