r"""The controlled bandit: with a fixed reference LAD recovers a multimodal target, GRPO collapses.

Setup (docs/paper-notes.md section 7; the paper states only "50 arms, three Gaussian bumps, 4000 steps at
learning rate 5e-3"; every number below is **[ours]** and is a field of :class:`BanditConfig`):

* ``K = 50`` arms ``i = 0..K-1``; the policy is ``pi_theta = softmax(theta)`` over a logit vector
  ``theta`` in R^K, initialised at 0 (uniform).
* Advantage: a mixture of three Gaussian bumps,

  .. math::  A(i) = s \sum_{j=1}^{3} h_j \exp\!\Big(-\frac{(i - c_j)^2}{2 w_j^2}\Big),

  with centres ``c = (10, 25, 40)``, widths ``w = (2, 2.5, 2)``, heights ``h = (1, 0.8, 0.9)`` and
  advantage scale ``s = 1``. No noise: pulling arm ``i`` returns ``A(i)``.
* Reference (behaviour) policy ``pi_old``: the initial uniform policy, **held fixed** (``reference =
  "initial"``). Then Lemma 3.1's trust-region solution and the target of every method is

  .. math::  P_A(i) = \frac{\pi_{\mathrm{old}}(i)\, e^{A(i)/\eta}}{\sum_k \pi_{\mathrm{old}}(k) e^{A(k)/\eta}}
             = \mathrm{softmax}(A/\eta)_i ,\qquad \eta = 0.25 .

  With these numbers ``P_A`` puts 0.39, 0.24 and 0.28 of its mass within 3 arms of the three centres
  (0.10 elsewhere); its largest arm (10) has probability 0.139; its entropy is 3.11 nats (uniform: 3.91).
  (``reference = "rollout"``, sampled mode only, instead sets ``pi_old`` to the current policy at every
  step, as an LLM trainer that refreshes its rollout policy each iteration does. Then ``rho = 1`` when the
  gradient is taken, the LAD gradient is the policy gradient with weight ``w(A, 1) = -f'(e^{-A/eta})``,
  increasing in ``A``, and the policy drifts to the best arm like GRPO: measured, LAD(js) ends with
  0.94-0.97 on arm 10 after 4000 steps (seeds 0-2). The paper's claim needs the fixed reference.)

Methods (all trained by the same optimiser on the same logits):

* ``lad:<divergence>`` for each registered f-divergence: the practical loss
  ``E_{i~pi_old}[e^{A/eta} f(rho e^{-A/eta})]``, ``rho = pi_theta/pi_old``, computed by
  :func:`ladtheory.objective.lad_loss` itself, each arm being a response of length 1 (``level =
  "sequence"``, ``B`` = arms, ``T = 1``). *Exact* mode passes all ``K`` arms; because ``pi_old`` is
  uniform, lad_loss's mean over the ``B = K`` rows *is* the expectation over ``pi_old``, so autograd
  gives the exact expected gradient ``sum_i pi_theta(i) f'(u_i) grad log pi_theta(i)``
  (tests/theory/test_bandit.py checks it against this closed form). *Sampled* mode passes ``G`` arms
  drawn from ``pi_old`` (Eq. 8's Monte-Carlo estimate, unbiased).
* ``grpo``: GRPO-style advantage maximisation through the trainer's own
  :func:`ladtheory.baselines.grpo_loss` (:func:`grpo_surrogate`, one-token responses):
  normalised advantage ``Â = (A - mean)/(std + 1e-6)`` and the PPO clipped surrogate
  ``-E[min(r Â, clip(r, 1-eps, 1+eps) Â)]`` with ``r = pi_theta/pi_old`` and ``pi_old`` = the policy
  that drew the samples (the current one: GRPO refreshes it each step; no KL penalty, beta = 0, the
  common modern setting). Exact mode: the expectation over ``i ~ pi_theta`` with the population mean
  and standard deviation; sampled mode: ``G`` draws from ``pi_theta``, group mean and (Bessel) std.
  With one update per group ``r = 1`` when the gradient is taken, so the clip never binds here; it is
  kept so the surrogate is GRPO's.
* ``flowrl``: trajectory balance (the trainer's :func:`ladtheory.baselines.flowrl_loss`, through
  :func:`trajectory_balance`) with a learned scalar ``log Z`` (a bandit has one prompt, so FlowRL's
  MLP head ``log Z_phi(x)`` is one number), in the settings under which FlowRL and LAD(kl) coincide
  (docs/paper-notes.md section 5): ``pi_ref = pi_old``, ``beta = 1/eta``, ``r_hat = A``:
  ``E_{i~pi_theta}[w (log Z + log pi_theta(i) - A(i)/eta - log pi_ref(i))^2]`` with the detached
  importance weight ``w = clip(r, 1-eps, 1+eps) = 1`` on policy. Exact: expectation over ``pi_theta``
  (detached); sampled: ``G`` draws from ``pi_theta``. Responses have length 1, so FlowRL's 1/|y|
  length normalisation is the identity. Its minimiser is ``pi_theta = P_A``, ``log Z = log E_old e^{A/eta}``.

Optimiser: **Adam** (betas 0.9, 0.999), lr 5e-3, 4000 steps, for every method. Plain gradient descent
at lr 5e-3 does *not* converge in 4000 steps: the logit gradient is ``pi_i (f'(u_i) - E_pi f')`` with
``pi_i`` about 1/50, so the logits move by about lr x steps x 0.02 = 0.4 in total, far short of the
``log(e^{4}) = 4`` they must travel (measured: LAD(js) ends at TV 0.45 with SGD, below 1e-3 with Adam).
The paper does not name its optimiser; Adam is torch's default choice and is what reaches ``P_A``.
``optimizer = "sgd"`` reproduces the failure.

Definitions of the reported numbers (per method, at the last step):

* ``tv = 0.5 sum_i |pi_theta(i) - P_A(i)|``; ``kl_target_learned = KL(P_A || pi_theta)`` (infinite in
  the limit of a collapse; large for it); ``kl_learned_target = KL(pi_theta || P_A)``; ``entropy`` of
  ``pi_theta`` in nats; ``max_prob`` and ``argmax``.
* **Mode recovered**: mode ``j`` is recovered if ``pi_theta`` puts at least ``recovered_fraction``
  (0.7) of the target's mass into the window ``S_j`` of ``window`` (3) arms either side of its centre:
  ``pi_theta(S_j) >= 0.7 P_A(S_j)``. The windows do not overlap. Since ``|pi(S) - P_A(S)| <= TV`` for
  any set ``S``, every policy within TV ``0.3 x 0.237 = 0.071`` of ``P_A`` recovers all three modes; the
  uniform policy (mass 7/50 = 0.14 per window, thresholds 0.273, 0.166, 0.194) recovers none; a policy
  collapsed onto one arm inside a window recovers exactly one.

``python -m ladtheory bandit --out DIR`` writes ``DIR/bandit.json`` and ``DIR/bandit.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ladtheory import baselines, divergences, flags, options
from ladtheory.divergences import FDivergence
from ladtheory.objective import lad_loss
from ladtheory.options import Choice, Flag, Int, Real, Several, Text, option

DTYPE = torch.float64


@dataclass(frozen=True)
class Bump:
    """One Gaussian bump of the advantage: ``height * exp(-(i - centre)^2 / (2 width^2))``."""

    centre: float
    width: float
    height: float


DEFAULT_BUMPS = (Bump(10.0, 2.0, 1.0), Bump(25.0, 2.5, 0.8), Bump(40.0, 2.0, 0.9))
BASELINES = ("grpo", "flowrl")


@dataclass(frozen=True)
class Bumps(options.Domain):
    """A non-empty tuple of :class:`Bump` with finite centres and heights and positive finite widths."""

    def problem(self, value) -> str | None:
        if not isinstance(value, tuple) or not value or not all(isinstance(b, Bump) for b in value):
            return "expected a non-empty tuple of Bump"
        finite = (math.isfinite(x) for b in value for x in (b.centre, b.height, b.width))
        if not all(finite) or not all(b.width > 0 for b in value):
            return "every bump needs a finite centre and height and a finite width > 0"
        return None

    def describe(self) -> str:
        return "Bump(centre, width, height), ..."


def check_baseline(name: str) -> None:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")


DIVERGENCE_NAMES = Text(lookup="ladtheory.divergences:get", hint="divergences")
BASELINE_NAMES = Text(lookup="ladtheory.bandit:check_baseline", hint="grpo, flowrl")


@dataclass(frozen=True)
class BanditConfig:
    """One bandit run. Each field declares its help (the CLI help) and its domain
    (:mod:`ladtheory.options`)."""

    arms: int = option(50, "number of arms K", Int(ge=2, le=10**6), cli=False)
    bumps: tuple[Bump, ...] = option(DEFAULT_BUMPS, "advantage bumps (Python API only)", Bumps(), cli=False)
    adv_scale: float = option(1.0, "advantage scale s: A = s * sum of bumps", Real(ge=0, le=100))
    centre_advantage: bool = option(False, "subtract the mean over arms from A (as group normalisation "
                                           "would); P_A is unchanged", Flag())
    eta: float = option(0.25, "temperature eta; target P_A = softmax(A/eta)", Real(gt=0))
    steps: int = option(4000, "optimiser steps", Int(ge=1))
    lr: float = option(5e-3, "learning rate", Real(gt=0))
    optimizer: str = option("adam", "adam or sgd (plain gradient descent)", Choice("adam", "sgd"))
    mode: str = option("exact", "exact (expected gradients over all arms) or sampled (G draws per step)",
                       Choice("exact", "sampled"))
    group_size: int = option(8, "G, draws per step in sampled mode (at most 10^7: they are held at once)",
                             Int(ge=2, le=10**7, why="GRPO normalises within the group"))
    seed: int = option(0, "random seed (sampled mode)", Int(ge=0, le=2**32 - 1))
    divergences: tuple[str, ...] = option(tuple(divergences.BUILTIN_NAMES),
                                          "LAD divergences, comma-separated (default: every built-in)",
                                          Several(DIVERGENCE_NAMES))
    baselines: tuple[str, ...] = option(BASELINES, "baselines among grpo,flowrl ('none' for none)",
                                        Several(BASELINE_NAMES))
    reference: str = option("initial", "LAD's pi_old: initial (the uniform start, fixed; target P_A) or "
                                       "rollout (current policy)", Choice("initial", "rollout"))
    clip_eps: float = option(0.2, "clip range of GRPO's surrogate and FlowRL's weight", Real(gt=0, lt=1))
    window: int = option(3, "a mode's window: arms within this distance of its centre", Int(ge=0))
    recovered_fraction: float = option(0.7, "a mode is recovered if the policy's window mass is at least "
                                            "this fraction of P_A's", Real(gt=0, le=1))
    log_every: int = option(20, "record distances every this many steps", Int(ge=1))

    def __post_init__(self) -> None:
        options.validate(self, flags=False)  # every field against its declared domain (an OptionError)
        if self.reference == "rollout" and self.mode == "exact":
            # lad_loss averages its rows uniformly; an exact expectation over a non-uniform pi_old would
            # need per-row weights, which the one definition of the loss does not take.
            raise options.OptionError("reference=rollout needs mode=sampled (the exact mode assumes a "
                                      "uniform pi_old)")


OPTIMIZERS: dict[str, Callable[[list[torch.Tensor], float], torch.optim.Optimizer]] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
}


# --------------------------------------------------------------------------------------------------
# The problem: advantage, reference, target.


@dataclass(frozen=True)
class Bandit:
    """The fixed quantities of one configuration (float64 tensors of shape (K,))."""

    advantage: torch.Tensor
    log_ref: torch.Tensor  # log pi_old for reference="initial": log(1/K)
    target: torch.Tensor  # P_A = softmax(log pi_old + A/eta)
    windows: tuple[tuple[int, int], ...]  # inclusive arm ranges of the modes

    @property
    def arms(self) -> int:
        return self.advantage.shape[0]


def advantage(config: BanditConfig) -> torch.Tensor:
    """``A(i) = s sum_j h_j exp(-(i - c_j)^2 / (2 w_j^2))`` for ``i = 0..K-1`` (minus its mean over arms
    if ``centre_advantage``); shape (K,)."""
    i = torch.arange(config.arms, dtype=DTYPE)
    bumps = [b.height * torch.exp(-((i - b.centre) ** 2) / (2.0 * b.width**2)) for b in config.bumps]
    adv = config.adv_scale * torch.stack(bumps).sum(0)  # (K,)
    return adv - adv.mean() if config.centre_advantage else adv


def build(config: BanditConfig) -> Bandit:
    """Advantage, uniform reference, target ``P_A`` and mode windows for ``config``."""
    adv = advantage(config)
    log_ref = torch.full((config.arms,), -math.log(config.arms), dtype=DTYPE)
    target = torch.softmax(log_ref + adv / config.eta, 0)
    windows = tuple(
        (max(0, round(b.centre) - config.window), min(config.arms - 1, round(b.centre) + config.window))
        for b in config.bumps
    )
    return Bandit(adv, log_ref, target, windows)


# --------------------------------------------------------------------------------------------------
# Losses. Tensor in, tensor out: (loss, terms). Samples are indexed by N (N = K arms in exact mode,
# N = G draws in sampled mode); ``weights`` (N,) sum to 1 and say how each sample enters the expectation.


def grpo_surrogate(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                   weights: torch.Tensor, *, clip_eps: float | None = 0.2) -> tuple[torch.Tensor, dict]:
    r"""GRPO's clipped surrogate at bandit size: :func:`ladtheory.baselines.grpo_loss` itself (the
    trainer's function, ``norm="grpo"``) on one-token responses, shape ``(N, 1)`` with mask ones:

    .. math::  \mathcal L = -\sum_n w_n \min\big(r_n \hat A_n,\ \mathrm{clip}(r_n, 1-\epsilon, 1+\epsilon)
               \hat A_n\big), \qquad r_n = e^{\log\pi_\theta(y_n) - \log\pi_{\mathrm{old}}(y_n)} .

    Args: ``logp`` (N,) with grad; ``logp_old`` (N,); ``advantages`` (N,) already normalised;
    ``weights`` (N,) summing to 1 (``1/G`` for a sampled group, ``pi_old(i)`` in exact mode);
    ``clip_eps`` in (0, 1), or ``None`` for no clip (``-sum_n w_n r_n A_n``). Returns grpo_loss's
    ``(loss, terms)`` (its terms are uniform means over the N rows, not ``w``-weighted).
    """
    ones = torch.ones_like(logp)[:, None]  # (N, 1)
    return baselines.grpo_loss(logp[:, None], logp_old[:, None], advantages, ones, clip_eps=clip_eps,
                               norm="grpo", weights=weights)


def trajectory_balance(logp: torch.Tensor, logp_ref: torch.Tensor, log_z: torch.Tensor,
                       rewards: torch.Tensor, weights: torch.Tensor, *, beta: float,
                       clip_eps: float | None = None) -> tuple[torch.Tensor, dict]:
    r"""FlowRL's trajectory-balance loss at bandit size: :func:`ladtheory.baselines.flowrl_loss` itself
    (the trainer's function) on responses of length 1 (shape ``(N, 1)``, mask ones, so no 1/|y|):

    .. math::  \mathcal L = \sum_n w_n\, \bar w_n \big(\log Z + \log\pi_\theta(y_n) - \beta \hat r_n
               - \log\pi_{\mathrm{ref}}(y_n)\big)^2 ,

    with ``w_n`` the expectation weights (N,) and ``\bar w_n`` FlowRL's detached importance weight
    against the on-policy ``pi_old = pi_theta`` (``logp.detach()``, so ``\bar w_n = 1`` exactly),
    clamped to ``[1 - clip_eps, 1 + clip_eps]`` when ``clip_eps`` is given (unclamped for None).
    ``log_z`` is a 0-dim tensor with grad (one prompt), broadcast to the N rows.
    Returns flowrl_loss's ``(loss, terms)``.
    """
    n = logp.shape[0]
    lo, hi = (None, None) if clip_eps is None else (1.0 - clip_eps, 1.0 + clip_eps)
    return baselines.flowrl_loss(logp[:, None], logp_ref[:, None], logp.detach()[:, None], rewards,
                                 torch.ones_like(logp)[:, None], log_z.expand(n), beta=beta,
                                 weight_max=hi, weight_min=lo, weights=weights)


def normalised(values: torch.Tensor, weights: torch.Tensor, *, unbiased: bool) -> torch.Tensor:
    """``(v - mean) / (std + 1e-6)`` under the weights (N,) (Bessel-corrected for a sampled group)."""
    mean = (weights * values).sum()
    var = (weights * (values - mean) ** 2).sum()
    if unbiased:
        n = values.shape[0]
        var = var * n / (n - 1)
    return (values - mean) / (var.sqrt() + 1e-6)


# --------------------------------------------------------------------------------------------------
# Methods: a registry of small frozen objects. Each turns one policy row into a loss for one step.


@dataclass(frozen=True)
class Draw:
    """What one step of one method sees: the sampled arm indices, shape (G,), or None in exact mode."""

    arms: torch.Tensor | None


@dataclass(frozen=True)
class Method:
    """A training method of the bandit. ``loss(bandit, config, logits, log_z, draw)`` -> (loss, terms);
    ``samples_from`` says which distribution the sampled mode draws its group from."""

    name: str
    loss: Callable[..., tuple[torch.Tensor, dict]]
    samples_from: str  # "reference" (LAD with reference="initial") or "policy"
    divergence: FDivergence | None = None


def _lad_loss(div: FDivergence):
    def loss(bandit: Bandit, config: BanditConfig, logits: torch.Tensor, log_z: torch.Tensor, draw: Draw):
        logp_all = torch.log_softmax(logits, 0)  # (K,)
        log_old_all = bandit.log_ref if config.reference == "initial" else logp_all.detach()
        idx = torch.arange(bandit.arms) if draw.arms is None else draw.arms  # (N,)
        logp = logp_all[idx][:, None]  # (N, 1): each arm is a response of one token
        logp_old = log_old_all[idx][:, None]  # (N, 1)
        mask = torch.ones_like(logp, dtype=torch.bool)  # (N, 1)
        return lad_loss(logp, logp_old, bandit.advantage[idx], mask, divergence=div, eta=config.eta,
                        level="sequence")

    return loss


def _grpo_loss(bandit: Bandit, config: BanditConfig, logits: torch.Tensor, log_z: torch.Tensor, draw: Draw):
    logp_all = torch.log_softmax(logits, 0)  # (K,)
    if draw.arms is None:
        weights = logp_all.detach().exp()  # (K,): expectation over pi_old = current policy
        adv = normalised(bandit.advantage, weights, unbiased=False)
        return grpo_surrogate(logp_all, logp_all.detach(), adv, weights, clip_eps=config.clip_eps)
    g = draw.arms.shape[0]
    weights = torch.full((g,), 1.0 / g, dtype=DTYPE)  # (G,)
    adv = normalised(bandit.advantage[draw.arms], weights, unbiased=True)
    logp = logp_all[draw.arms]  # (G,)
    return grpo_surrogate(logp, logp.detach(), adv, weights, clip_eps=config.clip_eps)


def _flowrl_loss(bandit: Bandit, config: BanditConfig, logits: torch.Tensor, log_z: torch.Tensor, draw: Draw):
    logp_all = torch.log_softmax(logits, 0)  # (K,)
    if draw.arms is None:
        weights = logp_all.detach().exp()  # (K,): on-policy expectation
        return trajectory_balance(logp_all, bandit.log_ref, log_z, bandit.advantage, weights,
                                  beta=1.0 / config.eta)
    g = draw.arms.shape[0]
    logp = logp_all[draw.arms]  # (G,)
    return trajectory_balance(logp, bandit.log_ref[draw.arms], log_z, bandit.advantage[draw.arms],
                              torch.full((g,), 1.0 / g, dtype=DTYPE), beta=1.0 / config.eta,
                              clip_eps=config.clip_eps)


def lad_method(divergence: str | FDivergence, *, reference: str = "initial") -> Method:
    div = divergences.get(divergence)
    return Method(f"lad:{div.name}", _lad_loss(div), "reference" if reference == "initial" else "policy", div)


BASELINE_METHODS: dict[str, Method] = {
    "grpo": Method("grpo", _grpo_loss, "policy"),
    "flowrl": Method("flowrl", _flowrl_loss, "policy"),
}


def methods_for(config: BanditConfig, extra: tuple[FDivergence, ...] = ()) -> list[Method]:
    """The LAD methods for ``config.divergences`` (+ ``extra`` user generators), then the baselines."""
    out = [lad_method(name, reference=config.reference) for name in config.divergences]
    out += [lad_method(div, reference=config.reference) for div in extra]
    out += [BASELINE_METHODS[name] for name in config.baselines]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate methods: {names}")
    return out


# --------------------------------------------------------------------------------------------------
# Metrics.


def distances(probs: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Row-wise distances of ``probs`` (M, K) to ``target`` (K,): TV and both KL directions."""
    tiny = torch.finfo(DTYPE).tiny
    log_p = probs.clamp(min=tiny).log()
    log_t = target.log()
    return {
        "tv": 0.5 * (probs - target).abs().sum(-1),
        "kl_target_learned": (target * (log_t - log_p)).sum(-1),
        "kl_learned_target": torch.where(
            probs > 0, probs * (log_p - log_t), torch.zeros((), dtype=DTYPE)
        ).sum(-1),
    }


def mode_mass(probs: torch.Tensor, windows: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Mass of ``probs`` (..., K) inside each mode window: (..., n_modes)."""
    return torch.stack([probs[..., lo:hi + 1].sum(-1) for lo, hi in windows], -1)


def summarise(probs: torch.Tensor, bandit: Bandit, config: BanditConfig) -> dict:
    """The reported numbers for one final policy ``probs`` (K,)."""
    d = {k: float(v) for k, v in distances(probs[None], bandit.target).items()}
    mass = mode_mass(probs, bandit.windows)
    target_mass = mode_mass(bandit.target, bandit.windows)
    recovered = (mass >= config.recovered_fraction * target_mass).tolist()
    positive = probs[probs > 0]
    return {
        **d,
        "entropy": float(-(positive * positive.log()).sum()),
        "max_prob": float(probs.max()),
        "argmax": int(probs.argmax()),
        "mode_mass": [round(float(m), 6) for m in mass],
        "mode_recovered": recovered,
        "modes_recovered": int(sum(recovered)),
        "probs": [float(p) for p in probs],
    }


# --------------------------------------------------------------------------------------------------
# The experiment.


@dataclass
class BanditResult:
    """Final policies, summaries and the distance curves of one run."""

    config: BanditConfig
    bandit: Bandit
    methods: list[str]
    probs: torch.Tensor  # (M, K) final policies
    summary: dict[str, dict]
    history_steps: list[int]
    history: dict[str, dict[str, list[float]]]  # method -> {"tv": [...], "kl_target_learned": [...]}
    seconds: float

    def to_json(self) -> dict:
        cfg = dataclasses.asdict(self.config)
        cfg["bumps"] = [dataclasses.asdict(b) for b in self.config.bumps]
        return {
            "config": cfg,
            "target": {
                "advantage": [float(a) for a in self.bandit.advantage],
                "p_a": [float(p) for p in self.bandit.target],
                "mode_windows": [list(w) for w in self.bandit.windows],
                "mode_mass": [float(m) for m in mode_mass(self.bandit.target, self.bandit.windows)],
                "entropy": float(-(self.bandit.target * self.bandit.target.log()).sum()),
                "max_prob": float(self.bandit.target.max()),
            },
            "definitions": {
                "tv": "0.5 * sum_i |pi(i) - P_A(i)|",
                "kl_target_learned": "KL(P_A || pi)",
                "kl_learned_target": "KL(pi || P_A)",
                "entropy": "-sum_i pi(i) log pi(i) (nats)",
                "mode_recovered": (f"sum of pi over arms within {self.config.window} of the bump centre >= "
                                   f"{self.config.recovered_fraction} x the same sum of P_A"),
                "target": "P_A = softmax(log pi_old + A/eta), pi_old uniform",
            },
            "methods": self.summary,
            "history": {"step": self.history_steps, **self.history},
            "timing": {"seconds": round(self.seconds, 3), "methods": len(self.methods),
                       "steps": self.config.steps, "mode": self.config.mode,
                       "torch_threads": torch.get_num_threads()},
        }


def run(config: BanditConfig = BanditConfig(), *, extra: tuple[FDivergence, ...] = (),
        progress: bool = False) -> BanditResult:
    """Train every method of ``config`` (+ user generators ``extra``) on the bandit.

    All methods' logits are rows of one (M, K) parameter trained by one optimiser; each row's loss
    depends on that row only, and Adam/SGD act elementwise, so this equals M separate runs.
    """
    from tqdm import tqdm

    bandit = build(config)
    methods = methods_for(config, extra)
    m, k = len(methods), config.arms
    logits = torch.zeros((m, k), dtype=DTYPE, requires_grad=True)  # (M, K): uniform start
    log_z = torch.zeros((m,), dtype=DTYPE, requires_grad=True)  # (M,): FlowRL's log Z (others ignore it)
    opt = OPTIMIZERS[config.optimizer]([logits, log_z], config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    uniform = torch.full((k,), 1.0 / k, dtype=DTYPE)

    steps_logged: list[int] = []
    curves = {meth.name: {"tv": [], "kl_target_learned": []} for meth in methods}

    def log(step: int) -> None:
        with torch.no_grad():
            d = distances(torch.softmax(logits, -1), bandit.target)
        steps_logged.append(step)
        for row, meth in enumerate(methods):
            curves[meth.name]["tv"].append(float(f"{float(d['tv'][row]):.5g}"))  # 5 digits: a curve
            curves[meth.name]["kl_target_learned"].append(float(f"{float(d['kl_target_learned'][row]):.5g}"))

    start = time.perf_counter()
    log(0)
    for step in tqdm(range(1, config.steps + 1), disable=not progress, desc=f"bandit ({config.mode})",
                     unit="step", mininterval=0.5):
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=DTYPE)
        if config.mode == "sampled":
            with torch.no_grad():
                policy = torch.softmax(logits, -1)  # (M, K)
        for row, meth in enumerate(methods):
            if config.mode == "exact":
                draw = Draw(None)
            else:
                source = uniform if meth.samples_from == "reference" else policy[row]
                draw = Draw(
                    torch.multinomial(source, config.group_size, replacement=True, generator=gen)
                )  # (G,)
            loss, _ = meth.loss(bandit, config, logits[row], log_z[row], draw)
            total = total + loss
        total.backward()
        opt.step()
        if step % config.log_every == 0 or step == config.steps:
            log(step)
    seconds = time.perf_counter() - start

    with torch.no_grad():
        probs = torch.softmax(logits, -1)  # (M, K)
    summary = {meth.name: summarise(probs[row], bandit, config) for row, meth in enumerate(methods)}
    for meth in methods:
        if meth.name == "flowrl":
            summary["flowrl"]["log_z"] = float(log_z.detach()[methods.index(meth)])
            summary["flowrl"]["log_z_optimal"] = float(
                torch.logsumexp(bandit.log_ref + bandit.advantage / config.eta, 0))
    return BanditResult(config, bandit, [m_.name for m_ in methods], probs, summary, steps_logged, curves,
                        seconds)


# --------------------------------------------------------------------------------------------------
# Output.


def plot(result: BanditResult, path: Path) -> None:
    """Three panels: advantage and target; target vs learned distributions; TV to P_A vs step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = np.arange(result.bandit.arms)
    target = result.bandit.target.numpy()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))

    ax = axes[0]
    ax.plot(arms, result.bandit.advantage.numpy(), color="0.3", label="advantage A(i)")
    ax.set_xlabel("arm i")
    ax.set_ylabel("A(i)")
    ax2 = ax.twinx()
    ax2.bar(arms, target, color="tab:orange", alpha=0.5, label=r"target $P_A$")
    for lo, hi in result.bandit.windows:
        ax2.axvspan(lo - 0.5, hi + 0.5, color="tab:green", alpha=0.08)
    ax2.set_ylabel(r"$P_A(i)$")
    ax.set_title(rf"advantage and target $P_A=\mathrm{{softmax}}(A/\eta)$, $\eta$={result.config.eta:g}")

    ax = axes[1]
    ax.bar(arms, target, color="0.8", label=r"target $P_A$")
    highlight = [n for n in ("lad:js", "grpo", "flowrl") if n in result.methods]
    others = [n for n in result.methods if n not in highlight]
    for name in others:
        ax.plot(arms, result.probs[result.methods.index(name)].numpy(), color="0.5", lw=0.6, alpha=0.5)
    styles = {"lad:js": ("tab:blue", "-"), "grpo": ("tab:red", "-"), "flowrl": ("tab:purple", "--")}
    for name in highlight:
        color, ls = styles[name]
        s = result.summary[name]
        ax.plot(arms, result.probs[result.methods.index(name)].numpy(), color=color, ls=ls, lw=1.8,
                label=f"{name}: TV {s['tv']:.3f}, modes {s['modes_recovered']}")
    if others:
        ax.plot([], [], color="0.5", lw=0.6, label="other LAD divergences")
    top = max(target.max() * 1.6, 0.3)
    ax.set_ylim(0, top)
    grpo_max = result.summary.get("grpo", {}).get("max_prob")
    if grpo_max is not None and grpo_max > top:
        ax.annotate(f"grpo: {grpo_max:.2f} on arm {result.summary['grpo']['argmax']}",
                    xy=(result.summary["grpo"]["argmax"], top * 0.97), ha="center", va="top", color="tab:red")
    ax.set_xlabel("arm i")
    ax.set_ylabel("probability")
    ax.set_title(f"learned policies after {result.config.steps} steps ({result.config.mode})")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[2]
    steps = result.history_steps
    for name in result.methods:
        tv = result.history[name]["tv"]
        if name in styles:
            color, ls = styles[name]
            ax.plot(steps, tv, color=color, ls=ls, lw=1.8, label=name)
        else:
            ax.plot(steps, tv, lw=0.9, alpha=0.8, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"TV($\pi_\theta$, $P_A$)")
    ax.set_title("distance to the target")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: BanditResult, out: Path) -> tuple[Path, Path]:
    """Write ``bandit.json`` and ``bandit.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "bandit.json", out / "bandit.png"
    json_path.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    plot(result, png_path)
    return json_path, png_path


def table(result: BanditResult) -> str:
    """A plain-text table of the final numbers."""
    rows = [f"{'method':<18} {'TV':>8} {'KL(P_A||pi)':>12} {'entropy':>8} {'max p':>7} {'modes':>6}"]
    for name in result.methods:
        s = result.summary[name]
        kl = max(s["kl_target_learned"], 0.0)  # >= 0; rounding can give -1e-17 at the optimum
        rows.append(f"{name:<18} {s['tv']:>8.4f} {kl:>12.4f} {s['entropy']:>8.3f} "
                    f"{s['max_prob']:>7.3f} {s['modes_recovered']:>4}/{len(result.bandit.windows)}")
    t = result.bandit.target
    rows.append(f"{'target P_A':<18} {0.0:>8.4f} {0.0:>12.4f} {float(-(t * t.log()).sum()):>8.3f} "
                f"{float(t.max()):>7.3f}")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------------
# CLI.


@dataclass(frozen=True)
class BanditCommand:
    """``python -m ladtheory bandit``'s own options (the run's are :class:`BanditConfig`'s)."""

    out: str = option(dataclasses.MISSING, "output folder for bandit.json and bandit.png",
                      options.Path(folder=True))
    progress: bool = option(True, "show a progress bar", Flag())


def parser() -> argparse.ArgumentParser:
    p = flags.Parser(prog="python -m ladtheory bandit",
                       description="The 50-arm bandit: LAD (every divergence) vs GRPO vs FlowRL. Each "
                                   "option's help ends with its domain and default in brackets.")
    flags.add_arguments(p, BanditCommand)
    flags.add_arguments(p, BanditConfig)
    return p


def parse(argv: list[str] | None = None) -> tuple[BanditConfig, BanditCommand]:
    """The run's configuration and the command's options; OptionError (``--flag: ...``) for a bad value."""
    ns = vars(parser().parse_args(argv))
    command = options.validate(BanditCommand(**flags.values(ns, BanditCommand)))
    return BanditConfig(**flags.values(ns, BanditConfig)), command


def main(argv: list[str] | None = None) -> int:
    try:
        config, command = parse(argv)
    except ValueError as err:  # OptionError, and DivergenceError for an unknown divergence name
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    result = run(config, progress=command.progress)
    json_path, png_path = write(result, Path(command.out))
    print(table(result))
    print(f"\n{len(result.methods)} methods x {config.steps} steps ({config.mode}) in {result.seconds:.1f} s")
    print(f"wrote {json_path} and {png_path}")
    return 0


__all__ = ["Bump", "BanditCommand", "BanditConfig", "Bandit", "BanditResult", "Method", "advantage", "build",
           "run", "grpo_surrogate", "trajectory_balance", "lad_method", "methods_for", "distances",
           "mode_mass", "summarise", "write", "plot", "parse", "main"]
