r"""Iterated LAD (pi_old refreshed each round) keeps equal-advantage ratios; policy gradient does not.

Statement. Let :math:`A` be fixed, :math:`a = A/\eta`, and let each round move the policy exactly to the
practical loss's minimiser with the previous policy as :math:`\pi_{\mathrm{old}}` (Lemma 3.2: the same
target :math:`\pi_{k}\propto\pi_{k-1}e^{a}` for every strictly convex generator).

(a) :math:`\log\pi_k(y) = \log\pi_0(y) + k\,a(y) - C_k`, i.e. :math:`\pi_k\propto\pi_0 e^{kA/\eta}`; hence for
    :math:`A(y) = A(y')`: :math:`\pi_k(y)/\pi_k(y') = \pi_0(y)/\pi_0(y')` **exactly, for every strictly convex
    generator and every** :math:`k`. The same holds with round-dependent advantages :math:`A_k` as long as
    :math:`A_k(y) = A_k(y')` every round (e.g. group-normalised rewards when :math:`y, y'` earn the same
    reward):
    then :math:`\pi_k\propto\pi_0 e^{\sum_{j<k}A_j/\eta}`.
(b) with unequal advantages the log-odds of :math:`y` against a best response :math:`y^*` fall by exactly
    :math:`(A(y^*) - A(y))/\eta` per round; so with :math:`M = \arg\max A` and gap :math:`\Delta`,
    :math:`(1 - \pi_k(M))/\pi_k(M) \le \frac{1-\pi_0(M)}{\pi_0(M)}e^{-k\Delta/\eta}` and
    :math:`\pi_k\to\pi_0(\cdot\mid M)`: mass concentrates on :math:`M` geometrically, at rate
    :math:`e^{-\Delta/\eta}` per round, and *inside* :math:`M` it keeps :math:`\pi_0`'s proportions.
(c) in contrast, for a softmax policy :math:`\pi = \mathrm{softmax}(\theta)` and detached per-response weights
    :math:`c` (REINFORCE: :math:`c = A`; GRPO at ratio 1: :math:`c = \hat A`; one LAD step at :math:`\rho =
    1`:
    :math:`c = w(A,1) = -f'(e^{-A/\eta})`), the exact expected gradient is
    :math:`\partial_{\theta_y}\mathbb E_\pi[c] = \pi_y(c_y - \bar c)`, :math:`\bar c = \mathbb E_\pi c`,
    and one
    ascent step of size :math:`\alpha` changes the log-ratio of two responses with :math:`c_y = c_{y'} = c` by

    .. math:: \Delta\log\frac{\pi(y)}{\pi(y')} = \alpha\,(c - \bar c)\,(\pi_y - \pi_{y'}),

    positive when :math:`c > \bar c` and :math:`\pi_y > \pi_{y'}`: rich get richer among above-average
    responses (below average, :math:`c < \bar c`, the more probable one loses more and the ratio moves
    towards 1).

Prediction for verifiable rewards. All correct answers in a group share one reward, hence one advantage.
LAD's exact per-round target keeps the base model's relative preferences among correct answers (a) while
moving mass onto correct answers (b); a policy-gradient step (GRPO, and LAD itself at one gradient step
per rollout, which is a reweighted policy gradient (c)) favours the already-likely correct answers.
What breaks (a) in practice: the target is reached only with several optimiser steps per rollout (one
step per rollout is (c)); sampled groups (unsampled responses are moved only through normalisation or
shared parameters); shared parameters (a step on one response moves others); adaptive optimisers (Adam
rescales coordinates, so even (c) is not what is applied). The regime that approaches (a) is several
optimiser steps per rollout over the same rollout (minibatch epochs), with a policy that can represent
the target. The bandit variants (``ladtheory/bandit_iterated.py``) measure each regime.

Assumptions: finite response set, :math:`\pi_0 > 0`, :math:`\eta > 0`; (a), (b) exact per-round minimisation;
(c) a softmax (tabular) policy, exact expectations, plain gradient steps.

Proof. (a) induction: substitute the hypothesis for round :math:`k` into the round-:math:`k+1` target;
equal advantages cancel in the log-ratio. (b) the log-odds difference is linear in :math:`k` with slope
:math:`-(A(y^*) - A(y))/\eta`; sum the odds of :math:`y \notin M`, each at most
:math:`\frac{\pi_0(y)}{\pi_0(M)}e^{-k\Delta/\eta}`. (c) differentiate :math:`(e^{\theta_1}c_1 +
S_c)/(e^{\theta_1} + S)`
(:math:`S, S_c` the other responses' terms), take the step and subtract. Runtime twin:
``ladtheory/iteration.py``; tests: ``tests/theory/test_iterated_lad.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from ladtheory import bandit, iteration, reductions, surrogate
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

y = sp.Symbol("y", integer=True)
lp0 = sp.IndexedBase("log_pi_0", real=True)
Lk = sp.IndexedBase("log_pi_k", real=True)
av = sp.IndexedBase("a", real=True)
k = sp.Symbol("k", nonnegative=True)
Ck, logZk = sp.symbols("C_k log_Z_k", real=True)
p01, p02, a1, a2 = sp.symbols("log_pi_0(y) log_pi_0(y') a_y a_y'", real=True)
p0s, a_star = sp.symbols("log_pi_0(y^*) a^*", real=True)
gap = sp.Symbol("Delta_y", positive=True)  # (A(y*) - A(y))/eta > 0
th1, th2, S, Sc, c1, c2, cbar, alpha = sp.symbols(r"theta_1 theta_2 S S_c c c_2 \bar{c} alpha", real=True)
S = sp.Symbol("S", positive=True)
alpha = sp.Symbol("alpha", positive=True)
pi1, pi2 = sp.symbols("pi_y pi_y'", positive=True)
E_, G_ = sp.symbols("E G", positive=True)

HYP_K = Fact("round k", sp.Eq(Lk[y], lp0[y] + k * av[y] - Ck), "hypothesis", "induction hypothesis", forall=y)
EQUAL = Fact("equal advantage", sp.Eq(a2, a1), "hypothesis", r"$A(y') = A(y)$")
BEST = Fact("best", sp.Eq(a_star, a1 + gap), "hypothesis", r"$A(y^*) - A(y) = \eta\Delta_y > 0$")
EQUAL_C = Fact("equal weight", sp.Eq(c2, c1), "hypothesis", r"$c_{y'} = c_y = c$")
ABOVE = Fact("above average", sp.Eq(E_, c1 - cbar), "hypothesis", r"$c > \bar c$")
RICHER = Fact("more probable", sp.Eq(G_, pi1 - pi2), "hypothesis", r"$\pi_y > \pi_{y'}$")


def induction_step() -> Derivation:
    d = Derivation(
        "one round: pi_{k+1} from pi_k",
        r"the target of round $k+1$ is $\pi_0 e^{(k+1)a}$ up to normalisation",
        Lk[y] + av[y] - logZk,
        claim=sp.Eq(Lk[y] + av[y] - logZk, lp0[y] + (k + 1) * av[y] - (Ck + logZk)),
        facts=[HYP_K],
        assumptions=[
            r"round $k+1$ reaches its target $\pi_k e^{a}/Z_k$ (Lemma 3.2, any strictly convex $f$)"
        ],
    )
    d.step(lp0[y] + k * av[y] - Ck + av[y] - logZk, "substitute", "induction hypothesis", using="round k")
    d.step(lp0[y] + (k + 1) * av[y] - (Ck + logZk), "algebra", r"$C_{k+1} = C_k + \log Z_k$")
    return d


def equal_ratio() -> Derivation:
    d = Derivation(
        "equal advantages keep their ratio",
        r"$\log\pi_k(y) - \log\pi_k(y') = \log\pi_0(y) - \log\pi_0(y')$",
        (p01 + k * a1 - Ck) - (p02 + k * a2 - Ck),
        claim=sp.Eq((p01 + k * a1 - Ck) - (p02 + k * a2 - Ck), p01 - p02),
        facts=[EQUAL],
    )
    d.step(p01 - p02 + k * (a1 - a2), "algebra", r"the normaliser $C_k$ cancels")
    d.step(p01 - p02, "substitute", r"$a_{y'} = a_y$", using="equal advantage")
    return d


def log_odds_fall() -> Derivation:
    d = Derivation(
        "log-odds against a best response fall linearly",
        r"$\log\frac{\pi_k(y)}{\pi_k(y^*)}$ drops by $\Delta_y$ per round",
        (p01 + k * a1 - Ck) - (p0s + k * a_star - Ck),
        claim=sp.Lt(sp.Derivative((p01 + k * a1 - Ck) - (p0s + k * a_star - Ck), k), 0),
        facts=[BEST],
    )
    d.step(p01 - p0s - k * gap, "substitute", r"$a^* = a_y + \Delta_y$", using="best")
    d.step(-gap, "diff", "linear in $k$", var=k)
    d.step(sp.Integer(0), "negative", r"$\Delta_y > 0$")
    return d


def softmax_gradient() -> Derivation:
    pi_1 = sp.exp(th1) / (sp.exp(th1) + S)
    mean = (sp.exp(th1) * c1 + Sc) / (sp.exp(th1) + S)
    d = Derivation(
        "softmax policy gradient",
        r"$\partial_{\theta_y}\mathbb E_\pi[c] = \pi_y(c_y - \bar c)$",
        (sp.exp(th1) * c1 + Sc) / (sp.exp(th1) + S),
        claim=sp.Eq(sp.Derivative((sp.exp(th1) * c1 + Sc) / (sp.exp(th1) + S), th1),
                    sp.exp(th1) / (sp.exp(th1) + S) * (c1 - (sp.exp(th1) * c1 + Sc) / (sp.exp(th1) + S))),
        assumptions=[
            r"$S = \sum_{y\ne 1}e^{\theta_y}$, $S_c = \sum_{y\ne1}e^{\theta_y}c_y$ do not depend on "
            r"$\theta_1$"
        ],
    )
    d.step(pi_1 * (c1 - mean), "diff", "quotient rule", var=th1)
    return d


def pg_ratio_change() -> Derivation:
    d = Derivation(
        "one policy-gradient step on two equal-weight responses",
        r"$\Delta\log(\pi_y/\pi_{y'}) = \alpha(c - \bar c)(\pi_y - \pi_{y'})$",
        (th1 + alpha * pi1 * (c1 - cbar)) - (th2 + alpha * pi2 * (c2 - cbar)) - (th1 - th2),
        claim=sp.Eq((th1 + alpha * pi1 * (c1 - cbar)) - (th2 + alpha * pi2 * (c2 - cbar)) - (th1 - th2),
                    alpha * (c1 - cbar) * (pi1 - pi2)),
        facts=[EQUAL_C],
        assumptions=[r"$\log\pi_y - \log\pi_{y'} = \theta_y - \theta_{y'}$ (softmax)"],
    )
    d.step(
        alpha * pi1 * (c1 - cbar) - alpha * pi2 * (c1 - cbar),
        "substitute",
        r"$c_{y'} = c_y$",
        using="equal weight",
    )
    d.step(alpha * (c1 - cbar) * (pi1 - pi2), "algebra", "common factor")
    return d


def rich_get_richer() -> Derivation:
    d = Derivation(
        "the more probable response gains",
        r"$c > \bar c$, $\pi_y > \pi_{y'}$: the ratio grows",
        alpha * (c1 - cbar) * (pi1 - pi2),
        claim=sp.Gt(alpha * (c1 - cbar) * (pi1 - pi2), 0),
        facts=[ABOVE, RICHER],
    )
    d.step(
        alpha * E_ * G_,
        "substitute",
        r"$E = c - \bar c > 0$, $G = \pi_y - \pi_{y'} > 0$",
        using=["above average", "more probable"],
    )
    d.step(sp.Integer(0), "positive", r"$\alpha, E, G > 0$")
    return d


# ------------------------------------------------------------------------------------------------ numerics

GENERATORS = ("js", "hellinger", "pearson", "kl", "neyman")


def _check_iterated_exact() -> tuple[float, str]:
    """k rounds of the exact KKT minimiser (surrogate.minimise, from f' only) vs pi0 e^{kA/eta}."""
    rng = np.random.default_rng(61)
    worst, worst_ratio = 0.0, 0.0
    for _ in range(3):
        size = int(rng.integers(3, 12))
        pi0 = rng.dirichlet(np.ones(size))
        A = rng.normal(0.0, 1.0, size)
        A[1] = A[0]  # a pair with equal advantage
        eta = float(rng.choice([0.5, 1.0, 2.0]))
        for name in GENERATORS:
            pi = pi0.copy()
            for k_ in range(1, 6):
                pi = surrogate.minimise(surrogate.log_weights(pi, A, eta), name)
                worst = max(
                    worst,
                    float(np.abs(np.log(pi) - np.log(iteration.iterated_target(pi0, A, eta, k_))).max()),
                )
            worst_ratio = max(worst_ratio, abs(np.log(pi[0] / pi[1]) - np.log(pi0[0] / pi0[1])))
    return max(worst, worst_ratio), (
        f"3 instances x {len(GENERATORS)} generators x 5 rounds: max |log pi_k - "
        f"log(pi0 e^(kA/eta)/Z)| {worst:.1e}; equal-A log-ratio drift {worst_ratio:.1e}"
    )


def _check_odds() -> tuple[float, str]:
    rng = np.random.default_rng(62)
    worst = 0.0
    for _ in range(30):
        size = int(rng.integers(2, 10))
        pi0 = rng.dirichlet(np.ones(size))
        A = rng.normal(0.0, 1.0, size)
        eta = float(rng.choice([0.25, 1.0]))
        best = iteration.best_set(A)
        for k_ in (0, 1, 5, 20):
            pk = iteration.iterated_target(pi0, A, eta, k_)
            odds = pk[~best].sum() / pk[best].sum()
            worst = max(worst, odds / iteration.odds_bound(pi0, A, eta, k_) - 1.0)
    return max(
        worst, 0.0
    ), f"30 instances, k = 0, 1, 5, 20: max relative violation of the bound {max(worst, 0.0):.1e}"


def _check_rate() -> tuple[float, str]:
    """odds_k e^{k Delta/eta} -> pi0(second best)/pi0(M); advantage levels 0.3 apart so the third level's
    share, e^{-k 0.3/eta}, is below 1.3e-4 at the k used."""
    rng = np.random.default_rng(64)
    worst = 0.0
    for _ in range(20):
        size = int(rng.integers(3, 10))
        pi0 = rng.dirichlet(np.ones(size))
        A = rng.permutation(np.cumsum(rng.uniform(0.3, 1.0, size)))
        eta = float(rng.choice([0.25, 1.0]))
        best = iteration.best_set(A)
        gap = A.max() - A[~best].max()
        k_ = 30.0 * eta / gap
        pk = iteration.iterated_target(pi0, A, eta, k_)
        scaled = pk[~best].sum() / pk[best].sum() * np.exp(k_ * gap / eta)
        limit = pi0[A == A[~best].max()].sum() / pi0[best].sum()
        worst = max(worst, abs(scaled / limit - 1.0))
    return (
        worst,
        f"20 instances at k Delta/eta = 30: max |odds e^(k Delta/eta) / (pi0(2nd)/pi0(M)) - 1| {worst:.1e}",
    )


def _check_pg_steps() -> tuple[float, str]:
    """The bandit's exact GRPO surrogate and the exact LAD loss at rho = 1, by autograd, against
    policy_gradient with c = A_hat and c = w(A, 1); the ratio-change formula; the sign (rich get richer)."""
    rng = np.random.default_rng(63)
    worst, gains = 0.0, 0
    for _ in range(10):
        size = int(rng.integers(3, 12))
        logits = rng.normal(0.0, 1.0, size)
        A = rng.normal(0.0, 1.0, size)
        A[1] = A[0] = A.max() + 0.5  # two above-average responses with equal advantage
        eta = 0.25
        th = torch.tensor(logits, requires_grad=True)
        logp = torch.log_softmax(th, 0)
        weights = logp.detach().exp()
        adv = bandit.normalised(torch.tensor(A), weights, unbiased=False)
        loss, _ = bandit.grpo_surrogate(logp, logp.detach(), adv, weights)
        (g_grpo,) = torch.autograd.grad(-loss, th)
        c_hat = iteration.grpo_weights(weights.numpy(), A)
        worst = max(worst, float(np.abs(g_grpo.numpy() - iteration.policy_gradient(logits, c_hat)).max()))
        th2 = torch.tensor(logits, requires_grad=True)
        lp2 = torch.log_softmax(th2, 0)
        lad = reductions.lad_exact_loss(lp2, lp2.detach(), torch.tensor(A), eta, "js")
        (g_lad,) = torch.autograd.grad(-lad, th2)
        worst = max(
            worst,
            float(
                np.abs(g_lad.numpy() - iteration.policy_gradient(logits, iteration.lad_weights(A, eta))).max()
            ),
        )
        pi = weights.numpy()
        lr = 0.1
        for c in (c_hat, iteration.lad_weights(A, eta)):
            step = logits + lr * iteration.policy_gradient(logits, c)
            measured = (step[0] - step[1]) - (logits[0] - logits[1])
            formula = lr * (c[0] - pi @ c) * (pi[0] - pi[1])
            worst = max(worst, abs(measured - formula))
            gains += int(np.sign(measured) == np.sign(pi[0] - pi[1]))
    if gains != 20:
        return float(
            "inf"
        ), f"the more probable of two above-average equal-A responses gained in only {gains}/20"
    return (
        worst,
        f"10 instances: GRPO and LAD(js) exact gradients and the ratio formula within {worst:.1e}; 20/20 "
        f"rich get richer",
    )


def result() -> Result:
    return Result(
        name="iterated_lad",
        title="Iterated LAD keeps equal-advantage ratios; the policy-gradient step does not",
        claims=[induction_step().claim, equal_ratio().claim, log_odds_fall().claim, softmax_gradient().claim,
                pg_ratio_change().claim, rich_get_richer().claim],
        assumptions=(
            r"finite response set, $\pi_0 > 0$",
            r"(a), (b): each round reaches its target exactly",
            r"(c): softmax policy, exact expectations, one plain gradient step",
        ),
        parts=[
            induction_step(),
            equal_ratio(),
            log_odds_fall(),
            softmax_gradient(),
            pg_ratio_change(),
            rich_get_richer(),
            NumericCheck(
                "iterated exact minimisers",
                "5 rounds of the exact per-round minimiser, 5 generators",
                r"\max|\log\pi_k - \log(\pi_0e^{kA/\eta}/Z)| \le 10^{-6}",
                _check_iterated_exact,
                1e-6,
            ),
            NumericCheck(
                "odds bound",
                "the odds against argmax A fall at least geometrically",
                r"\tfrac{1-\pi_k(M)}{\pi_k(M)} \le \tfrac{1-\pi_0(M)}{\pi_0(M)}e^{-k\Delta/\eta}",
                _check_odds,
                1e-12,
            ),
            NumericCheck(
                "asymptotic rate",
                "the rate e^{-Delta/eta} per round is exact",
                r"\tfrac{1-\pi_k(M)}{\pi_k(M)}e^{k\Delta/\eta} \to \tfrac{\pi_0(M_2)}{\pi_0(M)}",
                _check_rate,
                1e-3,
            ),
            NumericCheck(
                "policy-gradient steps",
                "GRPO and one-step LAD: exact gradients and the ratio change",
                r"\Delta\log\tfrac{\pi_y}{\pi_{y'}} = \alpha(c - \bar c)(\pi_y - \pi_{y'})",
                _check_pg_steps,
                1e-12,
            ),
        ],
        notes="Iterated exact LAD is exponential weights (Hedge) with step 1/eta: after k rounds it is the "
        "one-round target at temperature eta/k, so it does not prevent concentration on argmax A; what it "
        "preserves is pi_0's proportions among responses of equal advantage.",
    )
