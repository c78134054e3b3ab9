r"""Token-level ratios: what the default per-token LAD loss optimises; when it agrees with the sequence level.

Setup. A response :math:`y = (y_1..y_T)` of :math:`T = |y|` tokens, :math:`h_t = (x, y_{<t})`, per-token
log-ratios :math:`d_t = \log\pi_\theta(y_t|h_t) - \log\pi_{\mathrm{old}}(y_t|h_t)`, sequence log-ratio
:math:`\log\rho = \sum_t d_t`, :math:`a = A(y)/\eta` broadcast to every token. Per response,
``level="token"`` is :math:`\ell_{\mathrm{tok}} = \sum_t e^{a} f(e^{d_t - a})` (``lad_loss`` then divides the
batch sum by the token count :math:`N`), ``level="sequence"`` is :math:`\ell_{\mathrm{seq}} =
e^{a}f(e^{\log\rho - a})`
(divided by :math:`B` sequences). Throughout :math:`f'(1) = 0` and :math:`f` strictly convex at 1.

Statement.

1. (agreement at the rollout policy) At :math:`\theta = \theta_{\mathrm{old}}` (every :math:`d_t = 0`),
   :math:`\partial\ell_{\mathrm{tok}}/\partial d_t = \partial\ell_{\mathrm{seq}}/\partial d_t = f'(e^{-a})`
   for
   every token, so :math:`\nabla L_{\mathrm{tok}} = (B/N)\,\nabla L_{\mathrm{seq}}`: one update per rollout
   (the default) takes the same direction at either level, up to a global step-size factor.
2. (per-token targets) :math:`\ell_{\mathrm{tok}}` is stationary in every :math:`d_t` iff :math:`d_t = a`
for all
   :math:`t`, i.e. the implied sequence ratio is :math:`\rho = e^{|y|A/\eta}`; :math:`\ell_{\mathrm{seq}}` is
   stationary iff :math:`\rho = e^{A/\eta}`. ``level="sequence_mean"`` (mean log-ratio) is stationary iff
   :math:`\frac1T\sum_t d_t = a`: again :math:`\rho = e^{|y|A/\eta}`. The per-sample brake points agree iff
   :math:`|y| = 1` or :math:`A = 0`. At a prefix that only one sampled response visits (in LLM training
   every prefix past the first few tokens), a policy free at every prefix minimises the sampled
   token-level loss by putting that token at its own target :math:`d_t = a` wherever
   :math:`\pi_{\mathrm{old}}(y_t|h_t)e^{a} < 1` (the unnormalised case of ``proofs/lemma_3_2_uniqueness.py``:
   the term depends on that one conditional probability only).
3. (expected minimiser, fully expressive policy) With a free conditional :math:`\pi(\cdot|h)` at every
   prefix, the expected token-level loss separates over prefixes; at prefix :math:`h` the conditional
   minimises :math:`\sum_v \pi_{\mathrm{old}}(v|h)\,\mathbb E[e^{a}f(r_v e^{-a})\mid hv]` over
   distributions, :math:`r_v = \pi(v|h)/\pi_{\mathrm{old}}(v|h)`. For ``kl`` this is
   :math:`\pi(v|h) \propto \pi_{\mathrm{old}}(v|h)\,e^{\mathbb E[A|hv]/\eta}`, while the sequence-level target
   :math:`\pi^*\propto\pi_{\mathrm{old}}e^{A/\eta}` has conditionals
   :math:`\pi^*(v|h)\propto\pi_{\mathrm{old}}(v|h)\,\mathbb E[e^{A/\eta}\mid hv]`. If :math:`A` is fixed by
   the first
   token (responses of length 1 included), both levels have the same minimiser for every strictly convex
   :math:`f` (Lemma 3.2 at each prefix: tilt at the first token, :math:`\pi_{\mathrm{old}}` below it);
   when :math:`A` still varies after :math:`hv` they differ (numeric check below).

Consequence for long responses. At token level the brake bounds each token's ratio, not the response's:
a 200-token response with :math:`A/\eta = 4` is braked token by token only when its sequence ratio
reaches :math:`e^{800}`, where the sequence level brakes at :math:`e^{4}`. With negative advantages the push
down compounds the same way (:math:`e^{-|y||A|/\eta}`). Neither matters at one update per rollout, where
:math:`\rho = 1` and only statement 1 applies.

Assumptions: :math:`f` convex, differentiable, :math:`f'(1) = 0`, strictly convex at 1 (so :math:`f'(u) = 0`
iff :math:`u = 1`, ``proofs/brake_lemma.py``); for 3, a tabular autoregressive policy and exact
expectations over :math:`\pi_{\mathrm{old}}`.

Proof. 1: differentiate both per-response losses in :math:`d_1` (the other tokens enter the sequence
loss only through :math:`R = \sum_{t\ge2} d_t`) and set :math:`d = 0`. 2: :math:`e^{d_t}f'(e^{d_t - a}) = 0`
iff :math:`e^{d_t - a} = 1`; sum over :math:`t`. 3: the loss is a sum over prefixes of terms that depend on
that prefix's conditional only; for ``kl``, :math:`e^{a}f(re^{-a}) = r(\log r - a)` is linear in :math:`a`, so
its conditional expectation is :math:`r(\log r - \mathbb E[a|hv])` and the prefix problem is Gibbs'.
Runtime: ``ladtheory.objective.lad_loss``; tests: ``tests/theory/test_token_level_ratio.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
from scipy.optimize import minimize

from ladtheory import divergences
from ladtheory.objective import lad_loss
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

a = sp.Symbol("a", real=True)
d1, R, dt = sp.symbols("d_1 R d_t", real=True)
T = sp.Symbol("T", integer=True, positive=True)
t, j = sp.symbols("t j", integer=True)
J = sp.Symbol("J", integer=True, positive=True)
dvec = sp.IndexedBase("d", real=True)
w = sp.IndexedBase("w", positive=True)
aj = sp.IndexedBase("a", real=True)
r, abar, lam = sp.symbols(r"r \bar{a} log_rho", positive=True)
x = sp.Symbol("x", positive=True)
f = sp.Function("f")
log_rho = sp.Symbol("log_rho", real=True)

AT_ROLLOUT = [
    Fact("d_1 = 0", sp.Eq(d1, 0), "hypothesis", r"$\theta = \theta_{old}$"),
    Fact("R = 0", sp.Eq(R, 0), "hypothesis", r"the other tokens too"),
]
LOG_RHO = Fact("log rho", sp.Eq(log_rho, sp.Sum(dvec[t], (t, 1, T))), "definition")
W_SUM = Fact(
    "weights", sp.Eq(sp.Sum(w[j], (j, 1, J)), 1), "hypothesis", r"$w_j$: the law of the continuations of $hv$"
)
ABAR = Fact(
    "mean advantage",
    sp.Eq(abar, sp.Sum(w[j] * aj[j], (j, 1, J))),
    "definition",
    r"$\bar a = \mathbb E[A|hv]/\eta$",
)


def _fprime_at(arg):
    return sp.Subs(sp.Derivative(f(x), x), x, arg)


def token_slope_at_rollout() -> Derivation:
    d = Derivation(
        "token level at rho = 1",
        r"$\partial_{d_1}\, e^{a} f(e^{d_1 - a}) = f'(e^{-a})$ at $d_1 = 0$",
        sp.exp(a) * f(sp.exp(d1 - a)),
        claim=sp.Eq(sp.Derivative(sp.exp(a) * f(sp.exp(d1 - a)), d1), _fprime_at(sp.exp(-a))),
        facts=AT_ROLLOUT,
    )
    d.step(
        sp.exp(d1) * _fprime_at(sp.exp(d1 - a)),
        "diff",
        "chain rule (the other tokens do not depend on $d_1$)",
        var=d1,
    )
    d.step(_fprime_at(sp.exp(-a)), "substitute", r"at the rollout policy", using="d_1 = 0")
    return d


def sequence_slope_at_rollout() -> Derivation:
    d = Derivation(
        "sequence level at rho = 1",
        r"$\partial_{d_1}\, e^{a} f(e^{d_1 + R - a}) = f'(e^{-a})$ at $d = 0$",
        sp.exp(a) * f(sp.exp(d1 + R - a)),
        claim=sp.Eq(sp.Derivative(sp.exp(a) * f(sp.exp(d1 + R - a)), d1), _fprime_at(sp.exp(-a))),
        facts=AT_ROLLOUT,
    )
    d.step(sp.exp(d1 + R) * _fprime_at(sp.exp(d1 + R - a)), "diff", r"chain rule: $\rho f'(u)$", var=d1)
    d.step(_fprime_at(sp.exp(-a)), "substitute", r"at the rollout policy", using=["d_1 = 0", "R = 0"])
    return d


def per_token_target() -> Derivation:
    d = Derivation(
        "per-token stationary point",
        r"$f'(e^{d_t - a}) = 0 \iff e^{d_t - a} = 1 \iff d_t = a$",
        sp.Eq(sp.exp(dt - a), 1),
        claim=sp.Equivalent(sp.Eq(sp.exp(dt - a), 1), sp.Eq(dt, a)),
        assumptions=[r"$f'(u) = 0 \iff u = 1$ (strict convexity at 1, $f'(1) = 0$: proofs/brake_lemma.py)"],
    )
    d.step(sp.Eq(dt, a), "solve", "the exponential is injective on the reals", var=dt)
    return d


def implied_sequence_ratio() -> Derivation:
    d = Derivation(
        "implied sequence ratio e^{|y| A/eta}",
        r"every token at its target: $\log\rho = \sum_t d_t = |y|\,a$",
        sp.Eq(dvec[t], a),
        claim=sp.Implies(sp.Eq(dvec[t], a), sp.Eq(log_rho, T * a)),
        facts=[LOG_RHO],
    )
    d.step(
        sp.Eq(sp.Sum(dvec[t], (t, 1, T)), T * a),
        "sum_both_sides",
        "sum over the tokens",
        index=t,
        limits=(1, T),
    )
    d.step(sp.Eq(log_rho, T * a), "substitute", r"definition of $\log\rho$", using="log rho")
    return d


def sequence_mean_target() -> Derivation:
    d = Derivation(
        "sequence_mean has the same per-sample target",
        r"$\frac1T\sum_t d_t = a \iff \log\rho = T a$",
        sp.Eq(sp.Sum(dvec[t], (t, 1, T)) / T, a),
        claim=sp.Equivalent(sp.Eq(sp.Sum(dvec[t], (t, 1, T)) / T, a), sp.Eq(log_rho, T * a)),
        facts=[LOG_RHO],
    )
    d.step(sp.Eq(log_rho / T, a), "substitute", r"definition of $\log\rho$", using="log rho")
    d.step(sp.Eq(log_rho, T * a), "solve", r"times $T > 0$", var=log_rho)
    return d


def kl_prefix_tilt() -> Derivation:
    kl_term = sp.exp(aj[j]) * divergences.get("kl").expr.subs(divergences.U, r * sp.exp(-aj[j]))
    d = Derivation(
        "kl: the prefix problem sees E[A|hv]",
        r"$\mathbb E[e^{a}f(re^{-a})\mid hv] = r(\log r - \bar a)$ for $f = u\log u$",
        sp.Sum(w[j] * kl_term, (j, 1, J)),
        claim=sp.Eq(sp.Sum(w[j] * kl_term, (j, 1, J)), r * sp.log(r) - r * abar),
        facts=[W_SUM, ABAR],
    )
    d.step(sp.Sum(w[j] * r * (sp.log(r) - aj[j]), (j, 1, J)), "algebra", r"$e^{a}\cdot re^{-a} = r$")
    d.step(
        r * sp.log(r) * sp.Sum(w[j], (j, 1, J)) - r * sp.Sum(w[j] * aj[j], (j, 1, J)),
        "linearity",
        "split the sum",
    )
    d.step(
        r * sp.log(r) - r * abar,
        "substitute",
        r"$\sum_j w_j = 1$; definition of $\bar a$",
        using=["weights", "mean advantage"],
    )
    return d


# ------------------------------------------------------------------------------------------------ numerics

BRAKING = ("js", "hellinger", "jeffreys", "pearson", "neyman", "triangular")


def _grad(
    level: str,
    name: str,
    logp: np.ndarray,
    logp_old: np.ndarray,
    adv: np.ndarray,
    mask: np.ndarray,
    eta: float,
) -> np.ndarray:
    lp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    loss, _ = lad_loss(
        lp,
        torch.tensor(logp_old),
        torch.tensor(adv),
        torch.tensor(mask, dtype=torch.bool),
        divergence=name,
        eta=eta,
        level=level,
    )
    (g,) = torch.autograd.grad(loss, lp)
    return g.numpy()


def _check_rollout_agreement() -> tuple[float, str]:
    rng = np.random.default_rng(51)
    worst, control = 0.0, 0.0
    for _ in range(8):
        b, tmax = int(rng.integers(2, 6)), int(rng.integers(2, 9))
        lengths = rng.integers(1, tmax + 1, b)
        mask = (np.arange(tmax)[None, :] < lengths[:, None]).astype(float)
        logp_old = -rng.uniform(0.1, 3.0, (b, tmax))
        adv = rng.normal(0.0, 1.0, b)
        for name in BRAKING + ("kl",):
            g_tok = _grad("token", name, logp_old, logp_old, adv, mask, 0.25)
            g_seq = _grad("sequence", name, logp_old, logp_old, adv, mask, 0.25)
            scale = b / mask.sum()
            worst = max(worst, float(np.abs(g_tok - scale * g_seq).max()))
            # off the rollout policy the two differ (control: the check can fail)
            moved = logp_old + 0.3 * mask
            control = max(
                control,
                float(
                    np.abs(
                        _grad("token", name, moved, logp_old, adv, mask, 0.25)
                        - scale * _grad("sequence", name, moved, logp_old, adv, mask, 0.25)
                    ).max()
                ),
            )
    if not control > 1e-4:
        return float(
            "inf"
        ), f"control: token and sequence gradients agreed off the rollout policy ({control:.2e})"
    return worst, (
        f"8 batches x 7 generators: max |grad_tok - (B/N) grad_seq| at rho = 1 {worst:.1e}; "
        f"off rho = 1 they differ (max difference {control:.2e})"
    )


def _per_sample_minimiser(level: str, name: str, a_: float, length: int) -> np.ndarray:
    """Minimise one response's loss over free per-token log-ratios d (L-BFGS on lad_loss itself)."""
    eta = 0.5
    adv = torch.tensor([a_ * eta], dtype=torch.float64)
    mask = torch.ones((1, length), dtype=torch.bool)

    def fun(dv: np.ndarray):
        lp = torch.tensor(dv[None, :], dtype=torch.float64, requires_grad=True)
        loss, _ = lad_loss(lp, torch.zeros_like(lp), adv, mask, divergence=name, eta=eta, level=level)
        (g,) = torch.autograd.grad(loss, lp)
        return float(loss.detach()), g.numpy()[0]

    start = np.linspace(-0.2, 0.3, length)
    return minimize(fun, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 0.0}).x


def _check_per_token_targets() -> tuple[float, str]:
    worst = 0.0
    for name in ("js", "hellinger", "pearson"):
        for a_ in (0.8, -0.6):
            d_tok = _per_sample_minimiser("token", name, a_, 5)
            d_mean = _per_sample_minimiser("sequence_mean", name, a_, 5)
            d_seq = _per_sample_minimiser("sequence", name, a_, 5)
            worst = max(
                worst, float(np.abs(d_tok - a_).max()), abs(d_mean.sum() - 5 * a_), abs(d_seq.sum() - a_)
            )
    return worst, (
        "|y| = 5: token level d_t -> A/eta each, sequence_mean sum d -> 5 A/eta, "
        f"sequence sum d -> A/eta; max deviation {worst:.1e}"
    )


def _tree_minimiser(level: str, name: str, adv: np.ndarray, eta: float) -> np.ndarray:
    """A 2-token tree (vocabulary 2 at each step, 4 responses), pi_old uniform, so lad_loss's mean over the
    4 rows is the exact expectation. Minimise over the 3 free conditionals (root, and one per first token);
    return pi(y) for the 4 responses in order (1,1), (1,2), (2,1), (2,2)."""
    old = torch.full((4, 2), np.log(0.5), dtype=torch.float64)
    mask = torch.ones((4, 2), dtype=torch.bool)
    adv_t = torch.tensor(adv, dtype=torch.float64)

    def logp_of(th: torch.Tensor) -> torch.Tensor:
        root = torch.log_softmax(torch.stack([th[0], -th[0]]), 0)
        second = [torch.log_softmax(torch.stack([th[k], -th[k]]), 0) for k in (1, 2)]
        rows = [torch.stack([root[v], second[v][w_]]) for v in (0, 1) for w_ in (0, 1)]
        return torch.stack(rows)  # (4, 2)

    def fun(th_np: np.ndarray):
        th = torch.tensor(th_np, dtype=torch.float64, requires_grad=True)
        loss, _ = lad_loss(logp_of(th), old, adv_t, mask, divergence=name, eta=eta, level=level)
        (g,) = torch.autograd.grad(loss, th)
        return float(loss.detach()), g.numpy()

    res = minimize(fun, np.zeros(3), jac=True, method="L-BFGS-B", options={"gtol": 1e-14, "ftol": 0.0})
    return torch.exp(logp_of(torch.tensor(res.x)).sum(-1)).numpy()


def _check_tree() -> tuple[float, str]:
    eta = 0.5
    star = lambda adv: np.exp(adv / eta) / np.exp(adv / eta).sum()  # noqa: E731  pi_old uniform
    # A varies after the first token: the levels differ; kl's token-level optimum is the E[A|v] tilt.
    adv = np.array([1.0, -1.0, 0.2, 0.0])
    kl_tok = _tree_minimiser("token", "kl", adv, eta)
    mean_v = np.array([adv[:2].mean(), adv[2:].mean()])
    root = np.exp(mean_v / eta) / np.exp(mean_v / eta).sum()
    second = [
        np.exp(adv[2 * v : 2 * v + 2] / eta) / np.exp(adv[2 * v : 2 * v + 2] / eta).sum() for v in (0, 1)
    ]
    closed = np.array([root[v] * second[v][w_] for v in (0, 1) for w_ in (0, 1)])
    err_closed = float(np.abs(kl_tok - closed).max())
    gaps = {
        name: float(np.abs(_tree_minimiser("token", name, adv, eta) - star(adv)).max())
        for name in ("kl", "js")
    }
    err_seq = float(np.abs(_tree_minimiser("sequence", "js", adv, eta) - star(adv)).max())
    # A fixed by the first token: both levels reach pi*.
    first = np.array([0.7, 0.7, -0.4, -0.4])
    err_first = max(
        float(np.abs(_tree_minimiser("token", name, first, eta) - star(first)).max()) for name in ("kl", "js")
    )
    if not min(gaps.values()) > 1e-2:
        return float("inf"), f"token level reached pi* although A varies after the first token: {gaps}"
    return max(err_closed, err_seq, err_first), (
        f"kl token optimum vs E[A|v]-tilt {err_closed:.1e}; sequence-level js vs pi* {err_seq:.1e}; "
        f"A fixed by the first token: token vs pi* {err_first:.1e}; A varying: token vs pi* "
        f"kl {gaps['kl']:.3f}, js {gaps['js']:.3f}"
    )


def result() -> Result:
    return Result(
        name="token_level_ratio",
        title="Token-level ratios: per-token targets, the length-dependent tilt, and when the levels agree",
        claims=[token_slope_at_rollout().claim, sequence_slope_at_rollout().claim, per_token_target().claim,
                implied_sequence_ratio().claim, sequence_mean_target().claim, kl_prefix_tilt().claim],
        assumptions=(
            r"$f'(1) = 0$, $f$ strictly convex at 1",
            r"sequence advantage broadcast to every token",
            r"statement 3: a tabular autoregressive policy, exact expectations",
        ),
        parts=[
            token_slope_at_rollout(),
            sequence_slope_at_rollout(),
            per_token_target(),
            implied_sequence_ratio(),
            sequence_mean_target(),
            kl_prefix_tilt(),
            NumericCheck(
                "levels agree at rho = 1",
                "lad_loss token vs sequence gradients at the rollout policy",
                r"\|\nabla L_{tok} - \tfrac{B}{N}\nabla L_{seq}\|_\infty \le 10^{-12}",
                _check_rollout_agreement,
                1e-12,
            ),
            NumericCheck(
                "per-sample targets",
                "minimising one response's loss over free token log-ratios",
                r"d_t \to a\ (tok),\ \textstyle\sum_t d_t \to |y|a\ (mean),\ \sum_t d_t \to a\ (seq)",
                _check_per_token_targets,
                1e-6,
            ),
            NumericCheck(
                "expected minimiser on a 2-token tree",
                "token level = pi* iff A is fixed by the first token",
                r"\pi_{tok} = \pi^* \text{ (A fixed by } y_1),\ \pi_{tok} \ne \pi^* \text{ otherwise}",
                _check_tree,
                1e-6,
            ),
        ],
        notes="The implied target of the per-token loss is e^{|y|A/eta} per sample; in expectation, for a "
              "fully "
        "expressive policy, normalisation at each prefix removes the length factor but replaces "
        "E[e^{A/eta}|hv] by a generator-dependent average (for kl: e^{E[A|hv]/eta}).",
    )
