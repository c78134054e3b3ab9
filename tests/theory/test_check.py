"""``python -m ladtheory check``: validation, the effective weight at rho = 1 and its bounds, the bandit run.

The weight is checked against :func:`ladtheory.objective.effective_weight` (a second implementation of
``-rho f'(rho e^{-A/eta})``) and against the closed forms in paper-notes.md section 2 (JS: 0.5 log((1 +
e^{A/eta})/2), bounded below by -0.5 log 2; TV: sign(A)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from ladtheory import bandit as bd
from ladtheory import check as ck
from ladtheory import divergences
from ladtheory.objective import effective_weight

torch.set_num_threads(1)

JS_TEXT = "0.5*(u*log(u) - (u+1)*log((u+1)/2))"


def weight_values(report: ck.CheckReport, a_values, eta: float) -> np.ndarray:
    fn = sp.lambdify((ck.A, ck.ETA), report.weight, "numpy")
    return np.array([float(fn(a, eta)) for a in a_values])


def test_check_pearson_is_proved_convex_and_its_weight_is_unbounded_below():
    r = ck.check("(u-1)**2", run_bandit=False)
    assert r.convexity_method == "symbolic"
    u = divergences.U
    assert sp.simplify(r.f_prime - (2 * u - 2)) == 0
    assert sp.simplify(r.weight - (2 - 2 * sp.exp(-ck.A / ck.ETA))) == 0
    assert r.f2_at_1 == pytest.approx(2.0, abs=1e-15)
    assert r.weight_low.value == -math.inf and r.weight_high.value == pytest.approx(2.0, abs=1e-15)
    assert not r.bounded and r.brake_at_1
    assert "bounded: no (unbounded below)" in r.text() and "proved symbolically" in r.text()


def test_check_js_weight_matches_effective_weight_and_the_closed_form():
    r = ck.check(JS_TEXT, run_bandit=False)
    a = np.linspace(-3.0, 3.0, 13)
    for eta in (0.25, 1.0):
        got = weight_values(r, a, eta)
        np.testing.assert_allclose(got, effective_weight(a, 0.0, "js", eta), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(got, 0.5 * np.log((1 + np.exp(a / eta)) / 2), rtol=1e-12, atol=1e-13)
    assert r.weight_low.value == pytest.approx(-0.5 * math.log(2), rel=1e-12)
    assert r.weight_high.value == math.inf
    assert not r.bounded


@pytest.mark.parametrize("name", ["kl", "rkl", "hellinger", "pearson", "neyman", "triangular", "jeffreys"])
def test_check_weight_of_every_builtin_matches_effective_weight(name):
    """The sympy weight w(A) = -f'(e^{-A/eta}) from the spec agrees with the runtime effective weight."""
    r = ck.check(divergences.get(name).expr, run_bandit=False)
    a = np.linspace(-2.0, 2.0, 9)
    np.testing.assert_allclose(weight_values(r, a, 0.25), effective_weight(a, 0.0, name, 0.25),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("text, low, high", [
    ("-log(u)", 0.0, math.inf),  # reverse KL: w = e^{A/eta}
    ("u*log(u)", -math.inf, math.inf),  # KL: w = A/eta - 1
    ("(u-1)**2/(u+1)", -1.0, 3.0),  # triangular: w = 4/(1 + e^{-A/eta})^2 - 1
    ("(sqrt(u)-1)**2", -1.0, math.inf),  # Hellinger: w = e^{A/(2 eta)} - 1
])
def test_check_weight_limits(text, low, high):
    r = ck.check(text, run_bandit=False)
    assert r.weight_low.value == pytest.approx(low, abs=1e-12)
    assert r.weight_high.value == pytest.approx(high, abs=1e-12)
    assert r.bounded == (math.isfinite(low) and math.isfinite(high))


def test_check_tv_convexity_is_only_checked_on_a_grid_and_its_weight_is_sign_a():
    r = ck.check("abs(u-1)", run_bandit=False)
    assert r.convexity_method == "numeric grid"
    assert "checked numerically on a dense grid" in r.text()
    assert r.bounded and r.weight_low.value == -1.0 and r.weight_high.value == 1.0
    a = np.array([-2.0, -0.1, 0.1, 2.0])
    np.testing.assert_array_equal(weight_values(r, a, 0.25), np.sign(a))


def test_numeric_limit_fallback_agrees_with_sympy():
    u = divergences.U
    neg_js = -sp.diff(divergences.get("js").expr, u)
    lim = ck._numeric_limit(neg_js, towards_zero=False)
    assert lim.method == "numeric" and lim.value == pytest.approx(-0.5 * math.log(2), rel=1e-10)
    assert ck._numeric_limit(neg_js, towards_zero=True).value == math.inf
    assert ck._numeric_limit(-(2 * u - 2), towards_zero=False).value == -math.inf


def test_check_runs_the_bandit_and_reports_tv_next_to_js():
    r = ck.check("(u-1)**2", name="pearson_user")
    assert set(r.bandit) == {"lad:pearson_user", "lad:js"}
    assert r.bandit["lad:js"]["tv"] < 0.05 and r.bandit["lad:js"]["modes_recovered"] == 3
    assert r.bandit["lad:pearson_user"]["tv"] < 0.05  # strictly convex: same minimiser P_A (Lemma 3.2)
    # the user's (u-1)^2 is the built-in Pearson: the same run as the built-in
    builtin = bd.run(bd.BanditConfig(divergences=("pearson",), baselines=()))
    np.testing.assert_allclose(r.bandit["lad:pearson_user"]["probs"], builtin.summary["lad:pearson"]["probs"],
                               rtol=1e-9, atol=1e-12)
    assert "lad:pearson_user" in r.text() and "lad:js" in r.text()


# ------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("expr, words", [
    ("u**2", "f(1) = 0 fails: f(1) = 1"),
    ("1 - u**2", "convexity on (0, inf) fails"),
    ("u**(", "cannot parse the generator"),
    ("(u-1)**2 + v", "unknown symbols: v"),
    ("", "the expression is empty"),
    ("__import__('os')", "cannot parse the generator"),
])
def test_cli_rejects_invalid_generators_with_one_line_and_exit_2(capsys, expr, words):
    rc = ck.main([expr, "--no-bandit"])
    captured = capsys.readouterr()
    assert rc == 2
    assert words in captured.err
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and captured.out == ""


def test_cli_reports_a_valid_generator(capsys, tmp_path):
    rc = ck.main(["(u-1)**2", "--steps", "300", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    for words in ("f'(u)          2*u - 2", "proved symbolically", "bounded: no (unbounded below)",
                  "lad:js", "TV"):
        assert words in out
    assert (tmp_path / "bandit.json").exists() and (tmp_path / "bandit.png").exists()


def test_cli_accepts_a_generator_starting_with_a_minus_sign(capsys):
    rc = ck.main(["--name", "rev", "-log(u)", "--no-bandit"])
    out = capsys.readouterr().out
    assert rc == 0 and "(name: rev)" in out and "exp(A/eta)" in out


def test_cli_reports_a_runtime_failure_in_one_line(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(bd, "run", broken)
    rc = ck.main(["(u-1)**2"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "bandit         not run: the compiled runtime of f failed on torch tensors (RuntimeError: boom second line)" in out
