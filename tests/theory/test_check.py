"""``python -m ladtheory check``: validation, the effective weight at rho = 1 and its bounds, the bandit run.

The weight is checked against :func:`ladtheory.objective.effective_weight` (a second implementation of
``-rho f'(rho e^{-A/eta})``) and against the closed forms (proofs/effective_weight_range.py; JS: 0.5 log((1 +
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
    assert "checked numerically on a grid plus the asymptotics (a check, not a proof)" in r.text()
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
    assert (
        "bandit         not run: the compiled runtime of f failed on torch tensors "
        "(RuntimeError: boom second line)" in out
    )


# ------------------------------------------------------- issue 15: every verdict right, or "undecided"

FOOL_FLOAT = "(u-1)**2 + 1e-7*(100000*(u-1))**2/(1 + (100000*(u-1))**2)"
BEYOND_GRID = "(u-1)**2 - 1e-20*(u-1)**3"
PSEUDO_HUBER = "Abs(u-1) - log(1 + Abs(u-1))"
HUBER_ABS = "Piecewise(((u-1)**2/2, Abs(u-1) <= 1), (Abs(u-1) - 1/2, True))"
FACTOR_HANG = "(u-1)**2 + 0.001*(1 - exp(-1000000*(u-1)**2))"
DEAD_ZONE = "Max(Abs(u-1) - 1/10, 0)**2"


def test_float_coefficients_do_not_fool_the_convexity_proof():
    """Was reported *proved* convex; f''(1 + 1e-5) = -498. Exact rationals first, then the grid near 1."""
    with pytest.raises(divergences.DivergenceError, match="convexity on \\(0, inf\\) fails: f''"):
        ck.check(FOOL_FLOAT, run_bandit=False)


def test_non_convexity_beyond_the_old_grid_is_found():
    """Non-convex for u > 3.3e19 (beyond e^30): was accepted, with 'A -> -inf: oo' next to 'unbounded
    below'."""
    with pytest.raises(divergences.DivergenceError, match="convexity on \\(0, inf\\) fails"):
        ck.check(BEYOND_GRID, run_bandit=False)


@pytest.mark.parametrize("expr", [PSEUDO_HUBER, HUBER_ABS])
def test_one_sided_second_derivative_of_huber_shapes_is_one(expr):
    """Was f''(1) = 0 (the Abs derivative's DiracDelta); the true value from both sides is 1."""
    r = ck.check(expr, run_bandit=False)
    assert r.at1.f2_left == 1 and r.at1.f2_right == 1 and r.f2_at_1 == 1.0
    assert r.brake_at_1 and r.convexity.verdict in ("proved", "checked")


def test_the_factor_hang_ends_in_time_with_a_true_verdict():
    """sp.factor on this f'' ran for more than 300 s; every sympy call now has a budget. The generator is
    not convex (f''(0.998) < 0), and the verdict says so."""
    with pytest.raises(divergences.DivergenceError, match="fails: f''"):
        ck.check(FACTOR_HANG, run_bandit=False)


def test_piecewise_max_and_min_are_accepted():
    r = ck.check("Piecewise(((u-1)**2, u > 1), (0, True))", run_bandit=False)  # convex, flat below 1
    assert r.convexity.convex and r.at1.f2_left == 0 and r.at1.f2_right == 2
    assert "f''(1)         undefined: left 0, right 2" in r.text()
    r = ck.check("Max(u-1, 0)**2", run_bandit=False)  # was an obscure TypeError
    assert r.convexity.convex and not r.brake_at_1
    r = ck.check("Max(u - 1, 1 - u, (u-1)**2)", run_bandit=False)
    assert r.convexity.convex
    with pytest.raises(divergences.DivergenceError, match="fails"):
        ck.check("Min(u - 1, 1 - u)", run_bandit=False)  # -|u - 1|: concave


def test_parameters_with_declared_ranges():
    assert ck.parse_param("a in (0, 1)") == ("a", (0, 1))
    r = ck.check("a*(u-1)**2 + (1-a)*u*log(u) - (1-a)*(u-1)", params={"a": (0, 1)}, run_bandit=False)
    assert r.convexity.verdict == "proved" and "for every parameter value" in r.convexity.detail
    assert r.brake_at_1 and r.bandit_skipped
    with pytest.raises(divergences.DivergenceError, match="fails"):  # a in (-1, 1): a < 0 breaks convexity
        ck.check("a*(u-1)**2", params={"a": (-1, 1)}, run_bandit=False)
    with pytest.raises(divergences.DivergenceError, match="unknown symbols: a"):  # undeclared: refused
        ck.check("a*(u-1)**2", run_bandit=False)
    with pytest.raises(divergences.DivergenceError, match="--param"):
        ck.parse_param("a between 0 and 1")


def test_no_brake_is_claimed_where_f_prime_never_vanishes():
    """'-log(u)' was told "the brake sits where f'(u) = 0" although f' = -1/u never vanishes."""
    r = ck.check("-log(u)", run_bandit=False)
    assert r.brake.startswith("none: f'(1) = -1 and f' never vanishes") and not r.brake_at_1
    kl = ck.check("u*log(u)", run_bandit=False)
    assert kl.brake.startswith("at rho = 0.3678794412")  # e^-1: KL's brake point


def test_dead_zone_generator_has_no_brake_at_the_target():
    """f'(1) = 0 but flat near 1: the README's 'raises log pi exactly while rho < e^{A/eta}' needs strict
    convexity at 1, and check reports its absence."""
    r = ck.check(DEAD_ZONE, run_bandit=False)
    assert r.at1.f1 == 0 and r.at1.strict is False and not r.brake_at_1
    assert "no exact brake at the target" in r.brake and "strictly convex at 1: no" in r.text()
    pearson = ck.check("(u-1)**2", run_bandit=False)
    assert pearson.brake_at_1 and "strictly convex at 1: yes" in pearson.text()


def test_cli_param_and_undecided_exit_codes(capsys, monkeypatch):
    assert ck.main(["a*(u-1)**2", "--param", "a in (0, oo)", "--no-bandit"]) == 0
    assert "a in (0, oo)" in capsys.readouterr().out
    assert ck.main(["a*(u-1)**2", "--param", "a in 0..1", "--no-bandit"]) == 2
    assert "--param" in capsys.readouterr().err

    from ladtheory import convexity as cx

    def undecided(*args, **kwargs):
        return cx.Convexity("undecided", "the numeric grid timed out after 32 s")

    monkeypatch.setattr(cx, "convexity", undecided)
    assert ck.main(["(u-1)**2", "--no-bandit"]) == 1
    out = capsys.readouterr().out
    assert "convex         undecided: the numeric grid timed out" in out
