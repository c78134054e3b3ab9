"""What each part of issue 24 costs at one shape: the samplers on one rollout (the compacting one with and
without transposed weight copies and with the earlier copying row drop, and generate), and the update's
log-probs (forward and backward) with packing, chunking and buckets switched off one by one; interleaved
calls in one process, CPU seconds, medians.

    python benchmarks/small_shape_parts.py                  # the built-in 6.4M model, 6 calls each
    python benchmarks/small_shape_parts.py --model smollm2-135m --calls 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import shapes  # noqa: E402
import step_profile as sp  # noqa: E402
import torch  # noqa: E402

from ladtrain import kv_buffer, models, transposed_linears  # noqa: E402
from ladtrain.compact_sampler import CompactSampler  # noqa: E402
from ladtrain.rollout import HFSampler, token_logprobs  # noqa: E402

VARIANTS = {  # token_logprobs keywords
    "default": {},
    "no packing": {"pack": False},
    "(B, T, V) logits": {"chunked": False},
    "one pass": {"pack": False, "buckets": []},
    "all three off (before issue 24)": {"pack": False, "chunked": False, "buckets": []},
}


def interleaved(calls: int, named: dict) -> dict[str, list[float]]:
    """CPU seconds of ``calls`` calls of each function in ``named``, in alternating order."""
    times: dict[str, list[float]] = {k: [] for k in named}
    for i in range(calls):
        for k in list(named) if i % 2 == 0 else list(named)[::-1]:
            start = time.process_time()
            named[k]()
            times[k].append(time.process_time() - start)
    return times


def show(kind: str, times: dict[str, list[float]]) -> None:
    for k, v in times.items():
        print(f"{kind} {k}: median {statistics.median(v):.3f} s CPU (min {min(v):.3f}, max {max(v):.3f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="6m", help="6m, tiny or a benchmarks/shapes.py shape")
    ap.add_argument("--calls", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.model in shapes.SHAPES:
        s = shapes.SHAPES[args.model]
        setup = sp.Setup(model=args.model, prompts=s.prompts, group=s.group, max_new_tokens=s.max_new_tokens)
    else:
        setup = sp.Setup(model=args.model)
    model, tok = sp.build_model(setup)
    _, problems = sp.training_problems(tok)
    texts = [models.format_prompt(tok, p.prompt) for p in sp.step_problems(setup, problems)]
    rollouts = {}

    def sampler(name, inner):
        def run():
            torch.manual_seed(setup.seed + 1)
            rollouts[name] = inner.sample(texts, setup.group)
        return run

    def copying(inner):  # the row drop as before: ascending order, the kept rows copied to new buffers
        def run():
            fill_order = kv_buffer.fill_order
            kv_buffer.fill_order = lambda going: going.nonzero().squeeze(1)
            try:
                inner()
            finally:
                kv_buffer.fill_order = fill_order
        return run

    T = setup.max_new_tokens
    show("sampler", interleaved(args.calls, {
        "compact": sampler("compact", CompactSampler(model, tok, 1.0, T)),
        "compact, no transposed copies": sampler("plain", CompactSampler(model, tok, 1.0, T,
                                                                         transposed=False)),
        "compact, rows dropped by copying": copying(sampler("copying", CompactSampler(model, tok, 1.0, T))),
        "generate": sampler("generate", HFSampler(model, tok, 1.0, T)),
    }))
    same = all(torch.equal(r.completion_ids, rollouts["generate"].completion_ids) for r in rollouts.values())
    pays = transposed_linears.pays(model, setup.prompts * setup.group)
    print(f"transposed copies measured faster here: {pays}; every sampler drew generate's tokens: {same}")
    rollout = rollouts["compact"]
    print(f"completion tokens {int(rollout.lengths.sum())} of {rollout.completion_ids.numel()}")
    with torch.no_grad():  # a reference only: no graph to keep
        reference = token_logprobs(model, rollout)

    def update(keywords):
        def run():
            model.zero_grad(set_to_none=True)
            logp = token_logprobs(model, rollout, 1.0, **keywords)
            (logp * rollout.completion_mask).sum().backward()
            assert torch.allclose(logp.detach(), reference, atol=1e-4)  # the same log-probs
        return run

    show("update log-probs", interleaved(args.calls, {k: update(v) for k, v in VARIANTS.items()}))


if __name__ == "__main__":
    main()
