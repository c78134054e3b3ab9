r"""The trust-region lemma (paper Lemma 3.1) in both KL directions: closed forms and a numeric optimiser.

Over distributions :math:`\pi` on a finite response set, with advantages :math:`A`, temperature
:math:`\eta > 0` and rollout policy :math:`\pi_{\mathrm{old}} > 0`:

* **forward** (the direction that gives the paper's exponential target):

  .. math:: \max_\pi\; \mathbb E_\pi[A] - \eta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{old}})
            \quad\Longrightarrow\quad
            \pi^*(y) = \frac{\pi_{\mathrm{old}}(y)\, e^{A(y)/\eta}}{Z_A},\qquad
            Z_A = \sum_y \pi_{\mathrm{old}}(y) e^{A(y)/\eta};

* **reverse** (the direction the paper *writes*; paper-notes.md section 1):

  .. math:: \max_\pi\; \mathbb E_\pi[A] - \eta\,\mathrm{KL}(\pi_{\mathrm{old}}\,\|\,\pi)
            \quad\Longrightarrow\quad
            \pi^*(y) = \frac{\eta\, \pi_{\mathrm{old}}(y)}{\lambda - A(y)},

  with :math:`\lambda > \max_y A(y)` the unique root of :math:`\sum_y \eta\pi_{\mathrm{old}}(y)/(\lambda - A(y)) = 1`.

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


def maximise(pi_old: np.ndarray, A: np.ndarray, eta: float, direction: str) -> np.ndarray:
    """Numerically maximise the trust-region objective over the simplex (independent of the closed forms).

    Parametrisation ``pi = softmax(theta)`` (the simplex interior), L-BFGS-B on ``-objective`` with the
    exact gradient ``grad_theta = pi * (v - <pi, v>)``, ``v = d objective / d pi``, started at the uniform
    distribution.
    """
    pi_old, A = _check(pi_old, A, eta)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    log_old = np.log(pi_old)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_pi = theta - logsumexp(theta)
        pi = np.exp(log_pi)
        if direction == "forward":
            val = pi @ A - eta * pi @ (log_pi - log_old)
            v = A - eta * (log_pi - log_old + 1.0)
        else:
            val = pi @ A - eta * pi_old @ (log_old - log_pi)
            v = A + eta * pi_old / pi
        grad = pi * (v - pi @ v)
        return -float(val), -grad

    res = minimize(fun, np.zeros_like(A), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "ftol": 0.0, "gtol": 1e-14, "maxcor": 30})
    return softmax(res.x)


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
    "forward_solution",
    "kl",
    "maximise",
    "objective",
    "policy_induced",
    "reverse_solution",
]
