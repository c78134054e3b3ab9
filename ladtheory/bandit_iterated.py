r"""Bandit variants for iterated LAD: equal-height bumps, a refreshed reference, target vs gradient steps.

What it tests (``proofs/iterated_lad.py``): with :math:`\pi_{\mathrm{old}}` refreshed every round, LAD run to
its per-round target gives :math:`\pi_k\propto\pi_0e^{kA/\eta}`, so arms of *equal* advantage keep
:math:`\pi_0`'s ratios while the mass moves onto :math:`\arg\max A`; a plain gradient step (GRPO, and LAD
itself at one step per round) favours the more probable of two equal-advantage arms.

Setup (every number **[ours]**, a field of :class:`IteratedConfig`): ``K = 50`` arms, a tabular softmax
policy; advantage ``A`` = three Gaussian bumps of **equal height 1 and equal width 2** at arms 10, 25, 40
(``ladtheory.bandit.advantage``), so the arms ``10 + d``, ``25 + d``, ``40 + d`` have equal advantage (to
``1e-12``: the tails of the other bumps); the base policy ``pi_0 = softmax(-tilt * i / (K - 1))`` prefers low
arms (``tilt = log 4``): ``pi_0(25)/pi_0(10) = 4^{-15/49} = 0.654``, ``pi_0(40)/pi_0(10) = 0.428``;
``eta = 0.25``. Each round sets ``pi_old`` to the current policy (exact expectations, no sampling) and then:

* ``lad:js target``: L-BFGS on the exact practical loss ``sum_i pi_old e^{A/eta} f(rho e^{-A/eta})``
  (``ladtheory.reductions.lad_exact_loss``, the ``pi_old``-expectation of ``lad_loss`` at sequence
  level) until it reaches the round's target; ``rounds`` rounds;
* ``lad:js adam S``: ``S`` Adam steps per round on the same loss (several optimiser steps per rollout);
* ``lad:js sgd S``: ``S`` plain gradient steps per round at ``lr`` (``S = 1``: one update per rollout, where
  LAD is the policy gradient with weights ``w(A, 1)``);
* ``grpo sgd S``: ``S`` plain gradient steps per round on GRPO's exact clipped surrogate with the
  population-normalised advantage under ``pi_old`` (``ladtheory.bandit.grpo_surrogate``, ``normalised``);
* ``lad:js sampled G=8 seed s``: each round draws ``G`` arms from ``pi_old`` and takes ``sampled_steps``
  Adam steps on ``lad_loss`` itself over that group (what a trainer does with several updates on one
  sampled rollout); ``sampled_seeds`` seeds.

The SGD variants run ``step_rounds / S`` rounds (the same number of gradient steps). Reported per method:
the ratios ``pi(25)/pi(10)`` and ``pi(40)/pi(10)`` (peak arms) and of the mode-window masses, the mass on
the three windows, ``E_pi[A]``, the entropy, and for the target variants the total-variation distance
of each round's result from the round's exact target and of the last policy from ``pi_0 e^{kA/eta}/Z``.

``python -m ladtheory bandit-iterated --out results/bandit/iterated`` writes ``iterated.json`` and
``iterated.png`` (about 40 s of CPU on one thread; 2.7 min of wall time on a loaded 2-core machine).
Tests: ``tests/theory/test_bandit_iterated.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ladtheory import bandit, flags, options, reductions
from ladtheory.objective import lad_loss
from ladtheory.options import Choice, Int, Real, option

DTYPE = torch.float64
EQUAL_BUMPS = (bandit.Bump(10.0, 2.0, 1.0), bandit.Bump(25.0, 2.0, 1.0), bandit.Bump(40.0, 2.0, 1.0))
PEAKS = (10, 25, 40)


@dataclass(frozen=True)
class IteratedConfig:
    """One run of the iterated variants; each field's help is its CLI help."""

    eta: float = option(0.25, "temperature eta", Real(gt=0))
    tilt: float = option(math.log(4.0), "base policy pi_0 = softmax(-tilt * i / (K - 1))", Real(ge=0, le=20))
    divergence: str = option("js", "LAD generator", Choice("js", "hellinger", "pearson", "kl", "neyman"))
    rounds: int = option(30, "rounds of the target and Adam variants", Int(ge=1, le=10**4))
    lbfgs_iters: int = option(200, "L-BFGS iterations per round (target variant)", Int(ge=1, le=10**4))
    adam_steps: str = option("50,200", "Adam steps per round, comma-separated (one variant each)",
                             options.Listed(Int(ge=1, le=10**5)))
    adam_lr: float = option(0.05, "Adam learning rate", Real(gt=0))
    step_rounds: int = option(3000, "gradient steps of every SGD variant in total", Int(ge=1, le=10**6))
    sgd_steps: str = option("1,8", "SGD steps per round, comma-separated (one variant each)",
                            options.Listed(Int(ge=1, le=10**4)))
    lr: float = option(2.0, "plain gradient-step size of the SGD variants", Real(gt=0))
    clip_eps: float = option(0.2, "GRPO clip range", Real(gt=0, lt=1))
    group_size: int = option(8, "G, arms drawn from pi_old per round by the sampled variant",
                             Int(ge=1, le=10**4))
    sampled_steps: int = option(200, "Adam steps per round of the sampled variant", Int(ge=1, le=10**5))
    sampled_seeds: int = option(3, "seeds of the sampled variant (0 for none)", Int(ge=0, le=100))

    def __post_init__(self) -> None:
        options.validate(self, flags=False)


def _ints(text: str) -> list[int]:
    return [int(t) for t in str(text).split(",") if t.strip()]


@dataclass(frozen=True)
class Problem:
    advantage: torch.Tensor  # (K,)
    log_pi0: torch.Tensor  # (K,)
    windows: tuple[tuple[int, int], ...]


def problem(config: IteratedConfig) -> Problem:
    base = bandit.BanditConfig(bumps=EQUAL_BUMPS, eta=config.eta)
    adv = bandit.advantage(base)
    k = base.arms
    log_pi0 = torch.log_softmax(-config.tilt * torch.arange(k, dtype=DTYPE) / (k - 1), 0)
    return Problem(adv, log_pi0, bandit.build(base).windows)


# --------------------------------------------------------------------------------------------------
# One round of each method: logits (K,) in, logits out; pi_old is the policy at the start of the round.


def _lad(config: IteratedConfig, prob: Problem, x: torch.Tensor, log_old: torch.Tensor) -> torch.Tensor:
    return reductions.lad_exact_loss(torch.log_softmax(x, 0), log_old, prob.advantage, config.eta,
                                     config.divergence)


def _grpo(config: IteratedConfig, prob: Problem, x: torch.Tensor, log_old: torch.Tensor) -> torch.Tensor:
    weights = log_old.exp()  # (K,): the exact expectation over pi_old
    adv = bandit.normalised(prob.advantage, weights, unbiased=False)
    loss, _ = bandit.grpo_surrogate(torch.log_softmax(x, 0), log_old, adv, weights, clip_eps=config.clip_eps)
    return loss


def round_to_target(config: IteratedConfig, prob: Problem, theta: torch.Tensor) -> torch.Tensor:
    log_old = torch.log_softmax(theta, 0).detach()
    x = theta.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=config.lbfgs_iters, tolerance_grad=1e-14,
                            tolerance_change=0.0, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _lad(config, prob, x, log_old)
        loss.backward()
        return loss

    opt.step(closure)
    return x.detach()


def round_of_steps(config: IteratedConfig, prob: Problem, theta: torch.Tensor, loss_fn, steps: int,
                   optimiser: str) -> torch.Tensor:
    log_old = torch.log_softmax(theta, 0).detach()
    x = theta.detach().clone().requires_grad_(True)
    opt = (torch.optim.Adam([x], lr=config.adam_lr) if optimiser == "adam"
           else torch.optim.SGD([x], lr=config.lr))
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(config, prob, x, log_old).backward()
        opt.step()
    return x.detach()


def round_sampled(config: IteratedConfig, prob: Problem, theta: torch.Tensor,
                  gen: torch.Generator) -> torch.Tensor:
    """Draw G arms from pi_old and take ``sampled_steps`` Adam steps on ``lad_loss`` over that group (each arm
    a one-token response, ``level="sequence"``): the Monte-Carlo loss a trainer minimises on one rollout."""
    log_old = torch.log_softmax(theta, 0).detach()
    arms = torch.multinomial(log_old.exp(), config.group_size, replacement=True, generator=gen)  # (G,)
    mask = torch.ones((config.group_size, 1), dtype=torch.bool)
    x = theta.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=config.adam_lr)
    for _ in range(config.sampled_steps):
        opt.zero_grad()
        logp = torch.log_softmax(x, 0)[arms][:, None]  # (G, 1)
        loss, _ = lad_loss(logp, log_old[arms][:, None], prob.advantage[arms], mask,
                           divergence=config.divergence, eta=config.eta, level="sequence")
        loss.backward()
        opt.step()
    return x.detach()


def methods(config: IteratedConfig) -> list[tuple[str, int, object]]:
    """``(name, rounds, one_round)`` for every variant."""
    d = config.divergence
    out = [(f"lad:{d} target", config.rounds, lambda p, th: round_to_target(config, p, th))]
    for s in _ints(config.adam_steps):
        out.append((f"lad:{d} adam {s}", config.rounds,
                    lambda p, th, s=s: round_of_steps(config, p, th, _lad, s, "adam")))
    for name, fn in ((f"lad:{d}", _lad), ("grpo", _grpo)):
        for s in _ints(config.sgd_steps):
            out.append((f"{name} sgd {s}", max(1, config.step_rounds // s),
                        lambda p, th, s=s, fn=fn: round_of_steps(config, p, th, fn, s, "sgd")))
    for seed in range(config.sampled_seeds):
        gen = torch.Generator().manual_seed(seed)
        out.append((f"lad:{d} sampled G={config.group_size} seed {seed}", config.rounds,
                    lambda p, th, gen=gen: round_sampled(config, p, th, gen)))
    return out


# --------------------------------------------------------------------------------------------------
# Metrics and the run.


def metrics(log_pi: torch.Tensor, prob: Problem) -> dict:
    pi = log_pi.exp()
    mass = bandit.mode_mass(pi, prob.windows)
    a, b, c = PEAKS
    return {
        "ratio_25_10": float(torch.exp(log_pi[b] - log_pi[a])),
        "ratio_40_10": float(torch.exp(log_pi[c] - log_pi[a])),
        "window_ratio_25_10": float(mass[1] / mass[0]),
        "window_ratio_40_10": float(mass[2] / mass[0]),
        "window_mass": float(mass.sum()),
        "peak_mass": float(pi[list(PEAKS)].sum()),
        "expected_advantage": float(pi @ prob.advantage),
        "entropy": float(-(pi * log_pi).sum()),
        "max_prob": float(pi.max()),
        "argmax": int(pi.argmax()),
    }


def _tv(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    return float(0.5 * (log_p.exp() - log_q.exp()).abs().sum())


def equal_advantage_drift(log_pi: torch.Tensor, prob: Problem, floor: float = 1e-4) -> tuple[float, int]:
    """max over the pairs (10+d, 25+d), (10+d, 40+d), d in -3..3, whose two arms both hold at least
    ``floor`` of the mass, of |log(pi(a)/pi(b)) - log(pi_0(a)/pi_0(b))|; and how many pairs qualified
    (an optimiser fits the log of a negligible arm loosely: the loss hardly depends on it)."""
    worst, pairs = 0.0, 0
    for d in range(-3, 4):
        for other in (25, 40):
            if min(float(log_pi[other + d].exp()), float(log_pi[10 + d].exp())) < floor:
                continue
            now = log_pi[other + d] - log_pi[10 + d]
            base = prob.log_pi0[other + d] - prob.log_pi0[10 + d]
            worst, pairs = max(worst, float((now - base).abs())), pairs + 1
    return worst, pairs


def _recorded(rounds: int, points: int = 150) -> set[int]:
    """Rounds at which the history is recorded: every round up to ``points``, else log-spaced."""
    if rounds <= points:
        return set(range(1, rounds + 1))
    return {max(1, round(rounds ** (j / (points - 1)))) for j in range(points)} | {rounds}


def run(config: IteratedConfig = IteratedConfig()) -> dict:
    """Every variant from ``pi_0``: a JSON-ready dict (config, base ratios, per-method history, summary)."""
    prob = problem(config)
    start = time.perf_counter()
    out = {"methods": {}, "history": {}}
    for name, rounds, one_round in methods(config):
        theta = prob.log_pi0.clone()
        hist = {"round": [0], **{k: [v] for k, v in metrics(prob.log_pi0, prob).items()}}
        round_tv = 0.0
        recorded = _recorded(rounds)
        for k in range(1, rounds + 1):
            log_old = torch.log_softmax(theta, 0)
            theta = one_round(prob, theta)
            log_pi = torch.log_softmax(theta, 0)
            round_tv = max(round_tv, _tv(log_pi, torch.log_softmax(log_old + prob.advantage / config.eta, 0)))
            if k in recorded:
                hist["round"].append(k)
                for key, value in metrics(log_pi, prob).items():
                    hist[key].append(value)
        log_pi = torch.log_softmax(theta, 0)
        closed = torch.log_softmax(prob.log_pi0 + rounds * prob.advantage / config.eta, 0)
        steps_per_round = (0 if "target" in name else config.sampled_steps if "sampled" in name
                           else int(name.split()[-1]))
        out["methods"][name] = {**metrics(log_pi, prob), "rounds": rounds, "steps_per_round": steps_per_round,
                                "max_round_tv_to_target": round_tv, "tv_to_closed_form": _tv(log_pi, closed),
                                **dict(zip(("equal_advantage_log_ratio_drift", "equal_advantage_pairs"),
                                           equal_advantage_drift(log_pi, prob)))}
        out["history"][name] = hist
    cfg = dataclasses.asdict(config)
    out = {"config": cfg, "base": metrics(prob.log_pi0, prob),
           "advantage_peaks": [float(prob.advantage[i]) for i in PEAKS], **out,
           "seconds": round(time.perf_counter() - start, 2), "torch_threads": torch.get_num_threads(),
           "definitions": {"ratio_25_10": "pi(25)/pi(10), arms of equal advantage (the bump peaks)",
                           "window_ratio_25_10": "mass within 3 arms of 25 over mass within 3 arms of 10",
                           "max_round_tv_to_target": "max over rounds of TV(policy after the round, "
                                                     "pi_old e^{A/eta}/Z)",
                           "tv_to_closed_form": "TV(final policy, pi_0 e^{kA/eta}/Z) with k = rounds"}}
    return out


def plot(result: dict, path: Path) -> None:
    """The equal-advantage ratios pi(25)/pi(10) and pi(40)/pi(10) against progress, 1 - E_pi[A] (log scale,
    decreasing to the right), per method; pi_0's ratios dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for name, hist in result["history"].items():
        style = "-" if name.startswith("lad") else "--"
        gap = [max(1.0 - e, 1e-12) for e in hist["expected_advantage"]]
        for ax, key in zip(axes, ("ratio_25_10", "ratio_40_10")):
            ax.plot(gap, hist[key], style, lw=1.6, marker="." if "target" in name else None, label=name)
    for ax, key, arm in zip(axes, ("ratio_25_10", "ratio_40_10"), (25, 40)):
        ax.axhline(result["base"][key], color="0.3", lw=0.8, ls=":", label=r"$\pi_0$'s ratio")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_ylim(1e-9, 3.0)
        ax.set_xlabel(r"$1 - \mathbb{E}_\pi[A]$ (progress to the right)")
        ax.set_ylabel(rf"$\pi({arm})/\pi(10)$ (equal advantage)")
        ax.set_title(f"arm {arm} vs arm 10, reference refreshed every round")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(result: dict) -> str:
    rows = [f"{'method':<18} {'rounds':>6} {'pi25/pi10':>10} {'pi40/pi10':>10} {'E[A]':>7} {'windows':>8}"]
    base = result["base"]
    rows.append(f"{'pi_0':<18} {0:>6} {base['ratio_25_10']:>10.4f} {base['ratio_40_10']:>10.4f} "
                f"{base['expected_advantage']:>7.4f} {base['window_mass']:>8.4f}")
    for name, m in result["methods"].items():
        rows.append(f"{name:<18} {m['rounds']:>6} {m['ratio_25_10']:>10.4g} {m['ratio_40_10']:>10.4g} "
                    f"{m['expected_advantage']:>7.4f} {m['window_mass']:>8.4f}")
    return "\n".join(rows)


@dataclass(frozen=True)
class IteratedCommand:
    out: str = option(dataclasses.MISSING, "output folder for iterated.json and iterated.png",
                      options.Path(folder=True))


def main(argv: list[str] | None = None) -> int:
    p = flags.Parser(prog="python -m ladtheory bandit-iterated",
                     description="Iterated LAD vs GRPO on equal-height bumps with a refreshed reference.")
    flags.add_arguments(p, IteratedCommand)
    flags.add_arguments(p, IteratedConfig)
    try:
        ns = vars(p.parse_args(argv))
        command = options.validate(IteratedCommand(**flags.values(ns, IteratedCommand)))
        config = IteratedConfig(**flags.values(ns, IteratedConfig))
    except ValueError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    result = run(config)
    out = Path(command.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "iterated.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out / "iterated.png")
    print(table(result))
    print(f"\n{len(result['methods'])} variants in {result['seconds']:.1f} s; wrote {out / 'iterated.json'} "
          f"and {out / 'iterated.png'}")
    return 0


__all__ = ["IteratedConfig", "EQUAL_BUMPS", "PEAKS", "problem", "methods", "metrics", "run", "plot", "table",
           "main"]
