r"""Iterated LAD (pi_old refreshed each round) against the exact policy-gradient step, on a finite set.

**Iterated targets.** If every round moves the policy exactly to the practical loss's minimiser with the
previous policy as reference (Lemma 3.2: the same for every strictly convex generator), then with a
fixed advantage :math:`A`

.. math:: \pi_{k} = \frac{\pi_{k-1}e^{A/\eta}}{Z_{k-1}} \quad\Longrightarrow\quad
          \pi_k = \frac{\pi_0\, e^{kA/\eta}}{\sum_y \pi_0(y)e^{kA(y)/\eta}}
          \qquad(:func:`iterated_target`),

the one-round target at temperature :math:`\eta/k` (exponential weights). Two responses with equal
advantage keep their ratio :math:`\pi_0(y)/\pi_0(y')` in every round. With :math:`M = \arg\max A` and gap
:math:`\Delta = \max A - \max_{y\notin M}A(y)`, the odds against :math:`M` obey
:math:`(1-\pi_k(M))/\pi_k(M) \le \frac{1-\pi_0(M)}{\pi_0(M)}e^{-k\Delta/\eta}` (:func:`odds_bound`), and
:math:`\pi_k \to \pi_0(\cdot\mid M)`.

**Policy gradient.** For a softmax policy :math:`\pi = \mathrm{softmax}(\theta)` and per-response weights
:math:`c` (detached), the exact expected gradient of :math:`\sum_y\pi(y)c(y)` is
:math:`\pi_y(c_y - \mathbb E_\pi c)` (:func:`policy_gradient`). One ascent step of size :math:`\alpha` changes
the log-ratio of two responses with equal weight :math:`c` by :math:`\alpha(c - \mathbb E_\pi c)(\pi_y -
\pi_{y'})`
(:func:`ratio_change`): when :math:`c > \mathbb E_\pi c` the more probable response gains. The weights are
:math:`A` for REINFORCE, the normalised :math:`\hat A` for GRPO at ratio 1 (:func:`grpo_weights`), and
:math:`w(A,1) = -f'(e^{-A/\eta})` for one LAD step at :math:`\rho = 1` (:func:`lad_weights`).

Proofs: ``proofs/iterated_lad.py``; tests: ``tests/theory/test_iterated_lad.py``. Functions take 1-D
float64 numpy arrays.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from ladtheory import divergences
from ladtheory.divergences import FDivergence


def log_iterated_target(pi0: np.ndarray, A: np.ndarray, eta: float, k: float) -> np.ndarray:
    """``log pi_k = log pi0 + k A/eta - log Z_k``: ``k`` exact rounds of iterated LAD, in log space."""
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    logits = np.log(np.asarray(pi0, dtype=np.float64)) + k * np.asarray(A, dtype=np.float64) / eta
    return logits - logsumexp(logits)


def iterated_target(pi0: np.ndarray, A: np.ndarray, eta: float, k: float) -> np.ndarray:
    """``pi_k = pi0 e^{k A/eta} / Z_k`` (:func:`log_iterated_target` exponentiated)."""
    return np.exp(log_iterated_target(pi0, A, eta, k))


def best_set(A: np.ndarray, atol: float = 0.0) -> np.ndarray:
    """Boolean mask of ``argmax A`` (ties within ``atol``)."""
    A = np.asarray(A, dtype=np.float64)
    return A >= A.max() - atol


def odds_bound(pi0: np.ndarray, A: np.ndarray, eta: float, k: float, atol: float = 0.0) -> float:
    """``(1 - pi0(M))/pi0(M) e^{-k Delta/eta}``: a bound on the odds against ``M = argmax A`` after ``k``
    rounds; ``Delta`` is the gap between the best and the second-best advantage."""
    A = np.asarray(A, dtype=np.float64)
    best = best_set(A, atol)
    if best.all():
        return 0.0
    gap = A.max() - A[~best].max()
    mass = float(np.asarray(pi0)[best].sum())
    return (1.0 - mass) / mass * float(np.exp(-k * gap / eta))


def policy_gradient(logits: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``d/dtheta sum_y softmax(theta)_y c_y = pi (c - E_pi c)``: the exact expected score-function
    gradient with the weights ``c`` held fixed."""
    pi = softmax(np.asarray(logits, dtype=np.float64))
    c = np.asarray(c, dtype=np.float64)
    return pi * (c - pi @ c)


def ratio_change(logits: np.ndarray, c: np.ndarray, lr: float, y: int, y2: int) -> float:
    """Change of ``log pi(y) - log pi(y2)`` under one ascent step ``theta += lr policy_gradient``:
    exactly ``lr (pi_y (c_y - E c) - pi_y2 (c_y2 - E c))``; for ``c_y = c_y2 = c``,
    ``lr (c - E_pi c)(pi_y - pi_y2)``."""
    g = policy_gradient(logits, c)
    return float(lr * (g[y] - g[y2]))


def grpo_weights(pi: np.ndarray, A: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """GRPO's normalised advantage under the policy itself (population mean and std; the exact-expectation
    version of the group statistics): ``(A - E_pi A) / (std_pi A + eps)``."""
    pi, A = np.asarray(pi, dtype=np.float64), np.asarray(A, dtype=np.float64)
    mean = pi @ A
    return (A - mean) / (np.sqrt(pi @ (A - mean) ** 2) + eps)


def lad_weights(A: np.ndarray, eta: float, divergence: str | FDivergence = "js") -> np.ndarray:
    """``w(A, 1) = -f'(e^{-A/eta})``: one LAD step at ``rho = 1`` is a policy-gradient step with these
    weights (``ladtheory.objective.effective_weight`` at ``log rho = 0``)."""
    div = divergences.get(divergence)
    return -div.f_prime_log(-np.asarray(A, dtype=np.float64) / eta)


__all__ = [
    "iterated_target",
    "best_set",
    "odds_bound",
    "policy_gradient",
    "ratio_change",
    "grpo_weights",
    "lad_weights",
]
