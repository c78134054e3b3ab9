"""The controlled bandit (docs/paper-notes.md section 7): LAD recovers the three modes of P_A, GRPO collapses.

Each loss of the bandit is also checked against an independent closed form of its expected gradient, so
a sign or factor error in the wiring (e.g. lad_loss's mean over arms vs the expectation over pi_old)
fails here rather than only shifting a curve.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy as sp
import torch

from ladtheory import bandit as bd
from ladtheory import divergences

torch.set_num_threads(1)

DEFAULT = bd.BanditConfig()


@pytest.fixture(scope="module")
def exact_run() -> bd.BanditResult:
    """The paper's setting, exact expected gradients: LAD(js), GRPO, FlowRL, 4000 steps at lr 5e-3."""
    return bd.run(bd.BanditConfig(divergences=("js",), baselines=("grpo", "flowrl")))


def random_logits(seed: int, k: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ setup


def test_target_is_softmax_of_advantage_over_eta_and_has_three_separated_modes():
    b = bd.build(DEFAULT)
    i = np.arange(50.0)
    a = (np.exp(-((i - 10) ** 2) / 8.0) + 0.8 * np.exp(-((i - 25) ** 2) / 12.5)
         + 0.9 * np.exp(-((i - 40) ** 2) / 8.0))
    np.testing.assert_allclose(b.advantage.numpy(), a, rtol=0, atol=1e-15)
    p = np.exp(a / 0.25) / np.exp(a / 0.25).sum()
    np.testing.assert_allclose(b.target.numpy(), p, rtol=1e-13, atol=0)
    assert b.windows == ((7, 13), (22, 28), (37, 43))
    masses = bd.mode_mass(b.target, b.windows)
    assert masses.min() > 0.2 and masses.sum() > 0.85  # three substantial, separated modes
    # local maxima of P_A are exactly the three centres
    t = b.target.numpy()
    peaks = [j for j in range(1, 49) if t[j] > t[j - 1] and t[j] > t[j + 1]]
    assert peaks == [10, 25, 40]


def test_modes_recovered_definition_on_reference_policies():
    b = bd.build(DEFAULT)
    one_hot = torch.zeros(50, dtype=torch.float64)
    one_hot[10] = 1.0
    uniform = torch.full((50,), 1 / 50, dtype=torch.float64)
    assert bd.summarise(b.target, b, DEFAULT)["modes_recovered"] == 3
    assert bd.summarise(one_hot, b, DEFAULT)["modes_recovered"] == 1
    assert bd.summarise(uniform, b, DEFAULT)["modes_recovered"] == 0
    # Any policy within TV 0.3 * min window mass of P_A recovers all three (|pi(S) - P_A(S)| <= TV):
    # move 0.07 of mass out of the smallest mode's window onto arm 0.
    moved = b.target.clone()
    lo, hi = b.windows[1]
    moved[lo:hi + 1] *= 1 - 0.07 / float(moved[lo:hi + 1].sum())
    moved[0] += 0.07
    s = bd.summarise(moved, b, DEFAULT)
    assert s["tv"] == pytest.approx(0.07, abs=1e-12) and s["modes_recovered"] == 3
    moved2 = b.target.clone()
    moved2[lo:hi + 1] *= 1 - 0.09 / float(moved2[lo:hi + 1].sum())
    moved2[0] += 0.09
    assert bd.summarise(moved2, b, DEFAULT)["mode_recovered"] == [True, False, True]


# ---------------------------------------------------------------------- losses vs closed-form gradients


@pytest.mark.parametrize("name", divergences.BUILTIN_NAMES)
def test_lad_exact_loss_is_the_expectation_over_uniform_pi_old_with_the_lad_gradient(name):
    """lad_loss over all K arms (level="sequence", T=1) must equal
    sum_i pi_old(i) e^{A_i/eta} f(pi(i)/(pi_old(i) e^{A_i/eta})) (the sympy spec, evaluated
    independently) and its logit gradient must be pi_j (f'(u_j) - sum_i pi_i f'(u_i))."""
    b = bd.build(DEFAULT)
    div = divergences.get(name)
    method = bd.lad_method(name)
    logits = random_logits(1).requires_grad_(True)
    loss, _ = method.loss(b, DEFAULT, logits, torch.zeros((), dtype=torch.float64), bd.Draw(None))
    (grad,) = torch.autograd.grad(loss, logits)

    pi = torch.softmax(logits.detach(), 0).numpy()
    g = np.exp(b.advantage.numpy() / DEFAULT.eta) / 50  # pi_old e^{A/eta}
    f = sp.lambdify(divergences.U, div.expr, "numpy")
    fp = sp.lambdify(divergences.U, sp.diff(div.expr, divergences.U), "numpy")
    u = pi / g
    expected = float(np.sum(g * f(u)))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)
    fprime = fp(u) if name != "tv" else np.sign(u - 1)
    expected_grad = pi * (fprime - np.sum(pi * fprime))
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-10, atol=1e-15)


def test_grpo_exact_gradient_is_minus_pi_times_normalised_advantage():
    """d/dtheta_j of -sum_i sg(pi_i) min(r_i Â_i, clip(r_i) Â_i) at r = 1 is -pi_j Â_j (E_pi Â = 0)."""
    b = bd.build(DEFAULT)
    logits = random_logits(2).requires_grad_(True)
    loss, _ = bd.BASELINE_METHODS["grpo"].loss(b, DEFAULT, logits, torch.zeros((), dtype=torch.float64),
                                               bd.Draw(None))
    (grad,) = torch.autograd.grad(loss, logits)
    pi = torch.softmax(logits.detach(), 0).numpy()
    a = b.advantage.numpy()
    mean = np.sum(pi * a)
    adv = (a - mean) / (np.sqrt(np.sum(pi * (a - mean) ** 2)) + 1e-6)
    np.testing.assert_allclose(grad.numpy(), -pi * adv, rtol=1e-10, atol=1e-15)


def test_flowrl_exact_gradient_is_twice_the_kl_gradient_at_the_optimal_log_z():
    """FlowRL Prop. 1 at bandit size: with log Z = log sum_i pi_ref e^{A/eta}, the on-policy TB gradient
    equals 2 grad KL(pi_theta || P_A); and (pi = P_A, log Z*) is a zero of the loss."""
    b = bd.build(DEFAULT)
    log_z_opt = torch.logsumexp(b.log_ref + b.advantage / DEFAULT.eta, 0)
    logits = random_logits(3).requires_grad_(True)
    loss, _ = bd.BASELINE_METHODS["flowrl"].loss(b, DEFAULT, logits, log_z_opt, bd.Draw(None))
    (grad,) = torch.autograd.grad(loss, logits)

    logits2 = logits.detach().clone().requires_grad_(True)
    p = torch.softmax(logits2, 0)
    kl = (p * (torch.log_softmax(logits2, 0) - b.target.log())).sum()
    (kl_grad,) = torch.autograd.grad(kl, logits2)
    np.testing.assert_allclose(grad.numpy(), 2 * kl_grad.numpy(), rtol=1e-10, atol=1e-14)

    at_target = (b.target.log()).clone().requires_grad_(True)
    loss0, _ = bd.BASELINE_METHODS["flowrl"].loss(b, DEFAULT, at_target, log_z_opt, bd.Draw(None))
    assert abs(float(loss0.detach())) < 1e-24


# --------------------------------------------------------------------------- the paper's claim (exact)


def test_bandit_exact_lad_js_recovers_all_three_modes(exact_run):
    s = exact_run.summary["lad:js"]
    assert s["tv"] < 0.05
    assert s["modes_recovered"] == 3
    assert s["entropy"] == pytest.approx(
        float(-(exact_run.bandit.target * exact_run.bandit.target.log()).sum()), abs=1e-3
    )


def test_bandit_exact_grpo_collapses_onto_the_best_arm(exact_run):
    s = exact_run.summary["grpo"]
    assert s["max_prob"] > 0.9
    assert s["argmax"] == 10  # the arm with the largest advantage
    assert s["modes_recovered"] == 1
    assert s["tv"] > 0.8  # 1 - P_A(10) = 0.86 for a full collapse


def test_bandit_exact_flowrl_reaches_target_and_learns_the_partition_function(exact_run):
    s = exact_run.summary["flowrl"]
    assert s["tv"] < 0.05 and s["modes_recovered"] == 3
    assert s["log_z"] == pytest.approx(s["log_z_optimal"], abs=1e-3)


def test_bandit_exact_distance_curves_are_recorded_and_lad_js_decreases(exact_run):
    tv = exact_run.history["lad:js"]["tv"]
    assert len(tv) == len(exact_run.history_steps) == DEFAULT.steps // DEFAULT.log_every + 1
    # curves are stored to 5 significant digits
    assert tv[0] == pytest.approx(0.5 * float((exact_run.bandit.target - 1 / 50).abs().sum()), rel=1e-5)
    assert tv[-1] < 1e-3 * tv[0]


@pytest.mark.slow
def test_bandit_exact_every_strictly_convex_builtin_reaches_p_a():
    """Lemma 3.2 on the bandit: for every strictly convex built-in the practical loss has the unique
    minimiser P_A, and exact-mode LAD gets there (measured: TV below 4e-7 for all eight after 4000 steps,
    Pearson slowest at 3.8e-7, the rest below 1e-9; threshold 1e-3). TV (not strictly convex) is the
    exception, tested below."""
    names = tuple(n for n in divergences.BUILTIN_NAMES if n != "tv")
    r = bd.run(bd.BanditConfig(divergences=names, baselines=()))
    for name in names:
        assert r.summary[f"lad:{name}"]["tv"] < 1e-3, name
        assert r.summary[f"lad:{name}"]["modes_recovered"] == 3, name


def test_plain_gradient_descent_at_the_paper_lr_does_not_reach_the_target():
    """Why the bandit uses Adam: SGD at lr 5e-3 moves the logits by ~lr * steps * pi_i = 0.4 in total
    (measured TV 0.45 after 4000 steps), far from P_A, which needs logit gaps of ~4."""
    r = bd.run(bd.BanditConfig(divergences=("js",), baselines=(), optimizer="sgd"))
    assert r.summary["lad:js"]["tv"] > 0.3


def test_lad_tv_practical_loss_has_a_flat_set_of_minimisers():
    """Lemma 3.2's 'same minimiser' needs a strictly convex f. For f = |u - 1| the practical loss is
    sum_i |pi_i - g_i| >= sum g - 1 with equality on the whole set {pi <= g}, g = pi_old e^{A/eta}.
    With A >= 0 (the default bumps) the uniform start already lies in that set: LAD(tv) never moves.
    With a centred advantage it moves into the set, reaching the minimum value, but not P_A."""
    r = bd.run(bd.BanditConfig(divergences=("tv",), baselines=()))
    assert r.summary["lad:tv"]["max_prob"] == pytest.approx(1 / 50, abs=1e-12)

    cfg = bd.BanditConfig(divergences=("tv",), baselines=(), centre_advantage=True)
    r = bd.run(cfg)
    b = bd.build(cfg)
    g = torch.exp(b.advantage / cfg.eta) / 50
    pi = r.probs[0]
    assert float((pi - g).abs().sum()) == pytest.approx(float(g.sum()) - 1, abs=1e-3)
    assert r.summary["lad:tv"]["tv"] > 0.2


# ------------------------------------------------------------------------- the paper's claim (sampled)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bandit_sampled_lad_js_recovers_modes_and_grpo_collapses(seed):
    """Sampled mode, G = 8 draws per step (LAD draws from pi_old, GRPO from the current policy).

    Measured over seeds 0-9 (4000 steps, lr 5e-3, Adam): LAD(js) final TV 0.027-0.060 (mean 0.041),
    at most 0.062 over the last 1000 steps, always 3 modes; GRPO largest arm 0.9956-0.9972, always one
    mode, TV 0.856-0.858. (FlowRL goes to TV 0: its per-sample loss vanishes at the optimum, so its
    gradient noise does too.) Thresholds: TV < 0.10 (1.6x the worst measured value; SGD noise at this lr
    sets the floor), which by the window argument also guarantees 3 modes below 0.071; GRPO above 0.9.
    """
    r = bd.run(bd.BanditConfig(mode="sampled", seed=seed, divergences=("js",), baselines=("grpo",)))
    lad, grpo = r.summary["lad:js"], r.summary["grpo"]
    assert lad["tv"] < 0.10
    assert lad["modes_recovered"] == 3
    assert grpo["max_prob"] > 0.9
    assert grpo["modes_recovered"] == 1


def test_bandit_sampled_lad_with_refreshed_rollout_policy_collapses_too():
    """With pi_old refreshed to the current policy every step (one update per group, as an LLM trainer
    does), rho = 1 whenever the gradient is taken, so the LAD gradient is the policy gradient with weight
    w(A, 1) = -f'(e^{-A/eta}), increasing in A: repeated tilting pi_old e^{A/eta} drives the policy to the
    best arm, like GRPO. The paper's bandit claim therefore needs the fixed reference.
    Measured (seeds 0, 1, 2): LAD(js) largest arm 0.946, 0.942, 0.973 (arm 10), one mode, TV 0.80-0.83;
    LAD(kl) alike. Threshold 0.8 on the largest arm; P_A's is 0.139."""
    r = bd.run(bd.BanditConfig(mode="sampled", reference="rollout", divergences=("js",), baselines=()))
    s = r.summary["lad:js"]
    assert s["max_prob"] > 0.8 and s["argmax"] == 10
    assert s["modes_recovered"] == 1


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    rc = bd.main(["--out", str(out), "--steps", "300", "--divergences", "js,kl", "--no-progress"])
    assert rc == 0
    data = json.loads((out / "bandit.json").read_text())
    assert set(data["methods"]) == {"lad:js", "lad:kl", "grpo", "flowrl"}
    for s in data["methods"].values():
        assert {"tv", "kl_target_learned", "entropy", "max_prob", "modes_recovered"} <= set(s)
        assert math.isclose(sum(s["probs"]), 1.0, rel_tol=1e-12)
    assert data["config"]["eta"] == 0.25 and data["config"]["steps"] == 300
    assert (out / "bandit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lad:js" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--mode", "bogus"], "--mode: must be exact or sampled"),
    (["--divergences", "nope"], "unknown divergence 'nope'"),
    (["--baselines", "ppo"], "unknown baseline"),
    (["--eta", "0"], "--eta: must be > 0"),
    (["--reference", "rollout"], "reference=rollout needs mode=sampled"),
])
def test_cli_rejects_bad_options_with_one_line_and_exit_2(tmp_path, capsys, argv, words):
    rc = bd.main(["--out", str(tmp_path), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
