r"""The constrained trust region: maximise E_pi[A] subject to KL(pi || pi_old) <= delta.

With :math:`\pi_\eta = \pi_{\mathrm{old}} e^{A/\eta}/Z(\eta)` (Lemma 3.1's penalised solution,
``ladtheory.trust_region.forward_solution``) and :math:`K(\eta) = \mathrm{KL}(\pi_\eta\|\pi_{\mathrm{old}})
= \mathbb E_{\pi_\eta}[A]/\eta - \log Z(\eta)`:

* :math:`K'(\eta) = -\mathrm{Var}_{\pi_\eta}(A)/\eta^3 < 0` when :math:`A` is not constant, and
  :math:`K(\eta)\to 0` as :math:`\eta\to\infty`, :math:`K(\eta)\to -\log\pi_{\mathrm{old}}(M)` as
  :math:`\eta\to 0^+`, with :math:`M = \arg\max A`. So for every radius
  :math:`0 < \delta < -\log\pi_{\mathrm{old}}(M)` there is exactly one :math:`\eta(\delta) > 0` with
  :math:`K(\eta(\delta)) = \delta` (:func:`temperature_for_radius`), and :math:`\pi_{\eta(\delta)}` is the
  unique constrained maximiser, of value :math:`\eta\log Z(\eta) + \eta\delta`. For
  :math:`\delta \ge -\log\pi_{\mathrm{old}}(M)` the constraint does not bind:
  :math:`\pi_{\mathrm{old}}(\cdot\mid M)`
  is a maximiser (value :math:`\max A`).
* The penalised optimum is :math:`\max_\pi \mathbb E_\pi[A] - \eta\mathrm{KL}(\pi\|\pi_{\mathrm{old}})
  = \eta\log Z(\eta)`, and :math:`\frac{d}{d\eta}[\eta\log Z(\eta) + \eta\delta] = \delta - K(\eta)`: the
  Lagrange dual is minimised exactly at :math:`\eta(\delta)`.

Proofs: ``proofs/constrained_trust_region.py``; tests: ``tests/theory/test_constrained_trust_region.py``.
Functions take 1-D float64 numpy arrays (``pi_old > 0`` summing to one).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp

from ladtheory.trust_region import forward_solution, kl


def radius(pi_old: np.ndarray, A: np.ndarray, eta: float) -> float:
    """``K(eta) = KL(pi_eta || pi_old)``, summed directly (``E_{pi_eta}[A]/eta - log Z`` cancels badly for
    small ``eta``)."""
    return kl(forward_solution(pi_old, A, eta), pi_old)


def max_radius(pi_old: np.ndarray, A: np.ndarray, *, atol: float = 1e-12) -> float:
    """``-log pi_old(M)``, ``M = argmax A`` (ties within ``atol``): the supremum of ``K``."""
    A = np.asarray(A, dtype=np.float64)
    return float(-np.log(np.asarray(pi_old)[A >= A.max() - atol].sum()))


def temperature_for_radius(pi_old: np.ndarray, A: np.ndarray, delta: float) -> float:
    """The unique ``eta > 0`` with ``KL(pi_eta || pi_old) = delta``, for ``0 < delta < max_radius``."""
    top = max_radius(pi_old, A)
    if not 0.0 < delta < top:
        raise ValueError(f"delta must lie in (0, -log pi_old(argmax A)) = (0, {top:.6g}), got {delta}")
    spread = float(np.ptp(np.asarray(A, dtype=np.float64)))
    lo, hi = spread * 1e-4, spread * 1e4
    while radius(pi_old, A, lo) < delta:  # K decreases in eta: shrink until K(lo) >= delta
        lo /= 10.0
    while radius(pi_old, A, hi) > delta:
        hi *= 10.0
    return float(brentq(lambda e: radius(pi_old, A, e) - delta, lo, hi, xtol=1e-14, rtol=1e-13, maxiter=500))


def constrained_solution(pi_old: np.ndarray, A: np.ndarray, delta: float) -> tuple[np.ndarray, float]:
    """``(pi_eta, eta)`` with ``eta = temperature_for_radius(delta)``: the constrained maximiser."""
    eta = temperature_for_radius(pi_old, A, delta)
    return forward_solution(pi_old, A, eta), eta


def dual(pi_old: np.ndarray, A: np.ndarray, eta: float, delta: float) -> float:
    """The Lagrange dual ``eta log Z(eta) + eta delta`` (an upper bound on the constrained value)."""
    return float(eta * logsumexp(np.log(pi_old) + np.asarray(A, dtype=np.float64) / eta) + eta * delta)


__all__ = ["radius", "max_radius", "temperature_for_radius", "constrained_solution", "dual", "kl"]
