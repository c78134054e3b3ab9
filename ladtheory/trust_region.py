r"""The trust-region lemma (paper Lemma 3.1) in both KL directions: closed forms and a numeric optimiser.

Over distributions :math:`\pi` on a finite response set, with advantages :math:`A`, temperature
:math:`\eta > 0` and rollout policy :math:`\pi_{\mathrm{old}} > 0`:

* **forward** (the direction that gives the paper's exponential target):

  .. math:: \max_\pi\; \mathbb E_\pi[A] - \eta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{old}})
            \quad\Longrightarrow\quad
            \pi^*(y) = \frac{\pi_{\mathrm{old}}(y)\, e^{A(y)/\eta}}{Z_A},\qquad
            Z_A = \sum_y \pi_{\mathrm{old}}(y) e^{A(y)/\eta};

* **reverse** (the direction the paper *writes*; docs/paper-notes.md section 1):

  .. math:: \max_\pi\; \mathbb E_\pi[A] - \eta\,\mathrm{KL}(\pi_{\mathrm{old}}\,\|\,\pi)
            \quad\Longrightarrow\quad
            \pi^*(y) = \frac{\eta\, \pi_{\mathrm{old}}(y)}{\lambda - A(y)},

  with :math:`\lambda > \max_y A(y)` the unique root of :math:`\sum_y \eta\pi_{\mathrm{old}}(y)/(\lambda -
  A(y)) = 1`.

Both objectives are strictly concave on the simplex, so each stationary point is the unique maximiser.
Proofs: ``proofs/lemma_3_1_trust_region.py`` (symbolic KKT in both directions, plus a numeric
counterexample showing the two maximisers differ); the equivalence ``pi = pi* <=> P_theta = P_A`` is in
``proofs/equivalence_policy_advantage.py``. Tests: ``tests/theory/test_lemma_3_1_trust_region.py``.

All functions take 1-D float64 numpy arrays of one length ``n`` (the response set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize
from scipy.special import logsumexp, softmax

DIRECTIONS = ("forward", "reverse")
"""``forward``: penalty KL(pi || pi_old); ``reverse``: penalty KL(pi_old || pi)."""


def _check(pi_old: np.ndarray, A: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    pi_old = np.asarray(pi_old, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if pi_old.ndim != 1 or pi_old.shape != A.shape:
        raise ValueError(f"pi_old and A must be 1-D of one length; got {pi_old.shape} and {A.shape}")
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    if np.any(pi_old <= 0) or abs(pi_old.sum() - 1.0) > 1e-9:
        raise ValueError("pi_old must be a strictly positive distribution")
    return pi_old, A


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(p || q) = sum_y p log(p / q)`` (0 log 0 = 0)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = p > 0
    return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def objective(pi: np.ndarray, pi_old: np.ndarray, A: np.ndarray, eta: float, direction: str) -> float:
    """``E_pi[A] - eta KL(pi || pi_old)`` (forward) or ``E_pi[A] - eta KL(pi_old || pi)`` (reverse)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    pen = kl(pi, pi_old) if direction == "forward" else kl(pi_old, pi)
    return float(np.dot(pi, A) - eta * pen)


def forward_solution(pi_old: np.ndarray, A: np.ndarray, eta: float) -> np.ndarray:
    """``pi*(y) = pi_old(y) e^{A(y)/eta} / Z_A`` computed in log space."""
    pi_old, A = _check(pi_old, A, eta)
    logits = np.log(pi_old) + A / eta
    return np.exp(logits - logsumexp(logits))


@dataclass(frozen=True)
class ReverseSolution:
    pi: np.ndarray
    lam: float  # the multiplier lambda > max A of the normalisation constraint


def reverse_solution(pi_old: np.ndarray, A: np.ndarray, eta: float) -> ReverseSolution:
    """``pi*(y) = eta pi_old(y) / (lambda - A(y))`` with ``sum_y pi*(y) = 1``.

    ``h(lambda) = sum_y eta pi_old / (lambda - A) - 1`` decreases strictly on ``(max A, inf)``; with
    ``j = argmax A`` it is ``>= 0`` at ``max A + eta pi_old(j)`` and ``<= 0`` at ``max A + eta`` (each
    term is then at most ``pi_old(y)``), so the root is bracketed and unique.
    """
    pi_old, A = _check(pi_old, A, eta)
    j = int(np.argmax(A))
    top = A[j]

    def h(lam: float) -> float:
        return float(np.sum(eta * pi_old / (lam - A)) - 1.0)

    lo, hi = top + eta * pi_old[j], top + eta
    lam = lo if h(lo) == 0.0 else brentq(h, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    pi = eta * pi_old / (lam - A)
    return ReverseSolution(pi / pi.sum(), float(lam))


def _objective_and_slope(pi_old: np.ndarray, A: np.ndarray, eta: float, direction: str):
    """``(F(log pi), dF/dpi)`` of the trust-region objective, in log coordinates of pi."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    log_old = np.log(pi_old)

    def fun(log_pi: np.ndarray) -> tuple[float, np.ndarray]:
        pi = np.exp(log_pi)
        if direction == "forward":
            return pi @ A - eta * pi @ (log_pi - log_old), A - eta * (log_pi - log_old + 1.0)
        return pi @ A - eta * pi_old @ (log_old - log_pi), A + eta * pi_old / pi

    return fun


def maximise(pi_old: np.ndarray, A: np.ndarray, eta: float, direction: str, *,
             method: str = "kkt") -> np.ndarray:
    """Numerically maximise the trust-region objective over the simplex, without the closed forms.

    ``method="kkt"``: the exact convex solver :func:`argmax_separable` on the slopes
    ``dF/dpi(y)`` (forward ``A - eta(log(pi/pi_old) + 1)``, reverse ``A + eta pi_old / pi``).
    ``method="scipy"``: ``pi = softmax(theta)``, L-BFGS-B on ``-F`` with the exact gradient
    ``pi * (v - <pi, v>)``, started at the uniform distribution (slow when ``pi*`` has entries far below
    1e-6; use it for small instances).
    """
    pi_old, A = _check(pi_old, A, eta)
    fun = _objective_and_slope(pi_old, A, eta, direction)
    if method == "kkt":
        return argmax_separable(lambda pi: fun(np.log(pi))[1], len(A))
    if method != "scipy":
        raise ValueError(f"method must be 'kkt' or 'scipy', got {method!r}")

    def neg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_pi = theta - logsumexp(theta)
        pi = np.exp(log_pi)
        val, v = fun(log_pi)
        return -float(val), -pi * (v - pi @ v)

    theta = np.zeros_like(A)  # the uniform distribution
    for _ in range(4):
        res = minimize(neg, theta, jac=True, method="L-BFGS-B",
                       options={"maxiter": 3000, "ftol": 0.0, "gtol": 1e-12, "maxcor": 30})
        pi = softmax(res.x)
        # The softmax gradient pi (v - <pi, v>) vanishes where L-BFGS has driven an entry to ~1e-12, so it
        # can stop there. Restart from pi mixed with 1% uniform: from an interior point the strictly concave
        # objective is climbed again; a restart that ends where it started changes nothing.
        theta = np.log(0.99 * pi + 0.01 / len(A))
    return pi


def argmax_separable(slope, n: int) -> np.ndarray:
    r"""Exact solver for ``max_pi sum_y phi_y(pi_y)`` over the simplex, each ``phi_y`` strictly concave.

    ``slope(pi)`` returns the vector ``phi_y'(pi_y)`` (strictly decreasing in each ``pi_y``). KKT: at
    the maximiser ``phi_y'(pi_y) = lambda`` for every ``y`` (interior) with ``sum_y pi_y = 1``.
    For fixed ``lambda`` each ``pi_y(lambda)`` is found by bisection in ``log pi_y`` on
    ``[-740, 0]`` (vectorised); ``sum_y pi_y(lambda)`` decreases in ``lambda`` and is bracketed by
    ``lambda = min_y phi_y'(1)`` (sum >= 1) and ``lambda = max_y phi_y'(1/n)`` (sum <= 1); the outer
    root is found by bisection too. Uses only the slopes, never a closed form.
    """

    def pi_of(lam: float) -> np.ndarray:
        lo, hi = np.full(n, -740.0), np.zeros(n)
        for _ in range(64):  # 740 / 2^64 < 1e-16: log pi_y to double precision
            mid = 0.5 * (lo + hi)
            above = slope(np.exp(mid)) > lam  # slope still above lambda: pi_y must grow
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return np.exp(0.5 * (lo + hi))

    with np.errstate(all="ignore"):  # extreme trial points may overflow; the comparisons stay valid
        lam_lo = float(np.min(slope(np.ones(n))))
        lam_hi = float(np.max(slope(np.full(n, 1.0 / n))))
        for _ in range(400):
            lam = 0.5 * (lam_lo + lam_hi)
            if pi_of(lam).sum() > 1.0:
                lam_lo = lam
            else:
                lam_hi = lam
            if lam_hi - lam_lo <= 4 * np.finfo(float).eps * max(1.0, abs(lam)):
                break
        pi = pi_of(0.5 * (lam_lo + lam_hi))
    return pi / pi.sum()


def policy_induced(pi: np.ndarray, pi_old: np.ndarray) -> np.ndarray:
    """``P_theta(y) = (pi(y) / pi_old(y)) / sum_y' pi(y') / pi_old(y')``."""
    r = np.log(np.asarray(pi, dtype=np.float64)) - np.log(np.asarray(pi_old, dtype=np.float64))
    return np.exp(r - logsumexp(r))


def advantage_induced(A: np.ndarray, eta: float) -> np.ndarray:
    """``P_A(y) = e^{A(y)/eta} / sum_y' e^{A(y')/eta}``."""
    a = np.asarray(A, dtype=np.float64) / eta
    return np.exp(a - logsumexp(a))


__all__ = [
    "DIRECTIONS",
    "ReverseSolution",
    "advantage_induced",
    "argmax_separable",
    "forward_solution",
    "kl",
    "maximise",
    "objective",
    "policy_induced",
    "reverse_solution",
]
