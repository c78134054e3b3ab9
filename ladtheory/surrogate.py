r"""Lemma 3.2: the practical LAD loss has the same minimiser as the theoretical one.

With the unnormalised weight :math:`g(y) = \pi_{\mathrm{old}}(y)\, e^{A(y)/\eta}` and
:math:`Z_g = \sum_y g(y)`, for every strictly convex generator :math:`f` (``f(1) = 0`` is not even
needed here):

.. math:: \min_{\pi\in\Delta}\; \sum_y g(y)\, f\!\left(\frac{\pi(y)}{g(y)}\right)
          \quad\text{is attained exactly at}\quad \pi = \frac{g}{Z_g} = \pi^*,

the forward-KL trust-region solution of Lemma 3.1. Proof (Jensen, ``proofs/lemma_3_2_surrogate.py``):
:math:`\sum_y g f(\pi/g) = Z_g \sum_y \tfrac{g}{Z_g} f(\pi/g) \ge Z_g f(\sum_y \pi / Z_g) = Z_g f(1/Z_g)`,
with equality iff :math:`\pi/g` is constant, i.e. :math:`\pi \propto g`.

The practical loss is the exact :math:`\pi_{\mathrm{old}}`-expectation of the per-sample LAD loss:
:math:`\sum_y g f(\pi/g) = \mathbb E_{y\sim\pi_{\mathrm{old}}}[e^{A/\eta} f(\rho e^{-A/\eta})]` with
:math:`\rho = \pi/\pi_{\mathrm{old}}` (the quantity ``ladtheory.objective.lad_loss`` estimates from a group).

Tests: ``tests/theory/test_lemma_3_2_surrogate.py``. Functions take 1-D float64 numpy arrays.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from ladtheory import divergences
from ladtheory.divergences import FDivergence
from ladtheory.trust_region import argmax_separable


def log_weights(pi_old: np.ndarray, A: np.ndarray, eta: float) -> np.ndarray:
    """``log g(y) = log pi_old(y) + A(y)/eta``."""
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    return np.log(np.asarray(pi_old, dtype=np.float64)) + np.asarray(A, dtype=np.float64) / eta


def practical_loss(pi: np.ndarray, log_g: np.ndarray, divergence: str | FDivergence = "js") -> float:
    """``sum_y g(y) f(pi(y) / g(y))``, evaluated as ``g * f_log(log pi - log g)`` (log coordinates)."""
    div = divergences.get(divergence)
    log_g = np.asarray(log_g, dtype=np.float64)
    z = np.log(np.asarray(pi, dtype=np.float64)) - log_g
    return float(np.sum(np.exp(log_g) * div.f_log(z)))


def target(log_g: np.ndarray) -> np.ndarray:
    """The claimed minimiser ``g / Z_g``."""
    log_g = np.asarray(log_g, dtype=np.float64)
    return np.exp(log_g - logsumexp(log_g))


def minimise(log_g: np.ndarray, divergence: str | FDivergence = "js", *, method: str = "kkt") -> np.ndarray:
    """Numerically minimise the practical loss over the simplex, using only ``f'`` (not the claim).

    ``method="kkt"``: :func:`ladtheory.trust_region.argmax_separable` on the slopes
    ``-f'(pi(y) / g(y))`` (strictly decreasing when ``f`` is strictly convex).
    ``method="scipy"``: ``pi = softmax(theta)``, L-BFGS-B with the exact gradient (small instances).
    """
    div = divergences.get(divergence)
    log_g = np.asarray(log_g, dtype=np.float64)
    if method == "kkt":
        return argmax_separable(lambda pi: -div.f_prime_log(np.log(pi) - log_g), len(log_g))
    if method != "scipy":
        raise ValueError(f"method must be 'kkt' or 'scipy', got {method!r}")
    g = np.exp(log_g)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_pi = theta - logsumexp(theta)
        pi = np.exp(log_pi)
        z = log_pi - log_g
        v = div.f_prime_log(z)  # d loss / d pi(y) = f'(pi / g)
        return float(np.sum(g * div.f_log(z))), pi * (v - pi @ v)

    res = minimize(fun, np.zeros_like(log_g), jac=True, method="L-BFGS-B",
                   options={"maxiter": 3000, "ftol": 0.0, "gtol": 1e-12, "maxcor": 30})
    return softmax(res.x)


__all__ = ["log_weights", "minimise", "practical_loss", "target"]
