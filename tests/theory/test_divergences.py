"""Executable lemmas for the f-divergence registry: every runtime generator equals its sympy spec.

The oracle is the sympy expression itself, evaluated with mpmath at 50 digits (an implementation
independent of the hand-written log-space runtime). Tolerances are relative 1e-9 in float64: a sign
flip, a factor 2 or a wrong branch fails by many orders of magnitude (see the mutation tests below).
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences as D

BUILTINS = list(D.BUILTIN_NAMES)
ALPHAS = [-1.0, 0.5, 2.0, 3.0]
RTOL = 1e-9

mpmath.mp.dps = 50


def _oracle(expr: sp.Expr):
    fn = sp.lambdify(D.U, expr, modules="mpmath")

    def at_z(z: float) -> float:
        return float(fn(mpmath.e ** mpmath.mpf(z)))

    return at_z


def assert_runtime_matches_spec(div: D.FDivergence, zs) -> None:
    """f(e^z) and f'(e^z) of the runtime equal the sympy spec and its symbolic derivative."""
    f_ref, fp_ref = _oracle(div.expr), _oracle(sp.diff(div.expr, D.U))
    z = np.asarray(zs, dtype=np.float64)
    got_f, got_fp = div.f_log(z), div.f_prime_log(z)
    for zi, gf, gfp in zip(z, got_f, got_fp):
        rf, rfp = f_ref(zi), fp_ref(zi)
        assert math.isclose(gf, rf, rel_tol=RTOL, abs_tol=1e-12), f"{div.name}: f(e^{zi}) = {gf}, spec {rf}"
        assert math.isclose(gfp, rfp, rel_tol=RTOL, abs_tol=1e-12), (
            f"{div.name}: f'(e^{zi}) = {gfp}, spec {rfp}"
        )


Z_GRID = np.concatenate([np.linspace(-30, 30, 61), [-1e-3, -1e-8, 1e-8, 1e-3]])


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_f_at_1_is_zero(name):
    div = D.get(name)
    assert sp.simplify(div.expr.subs(D.U, 1)) == 0
    assert div.f_log(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-15)
    assert float(div.f_log(torch.zeros(1, dtype=torch.float64))[0]) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_is_convex(name):
    report = D.validate(D.get(name).expr)
    assert report.ok, report.message
    # and, independently of the validator, the runtime derivative is non-decreasing in u:
    fp = D.get(name).f_prime_log(np.linspace(-30, 30, 2001))
    assert np.all(np.diff(fp) >= -1e-12 * np.maximum(1.0, np.abs(fp[1:])))


def test_builtin_convexity_is_proved_symbolically_except_tv():
    methods = {n: D.validate(D.get(n).expr).convexity_method for n in BUILTINS}
    assert methods.pop("tv") == "numeric grid"  # |u-1| has no second derivative at 1
    assert set(methods.values()) == {"symbolic"}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_runtime_matches_sympy_spec_on_grid(name):
    assert_runtime_matches_spec(D.get(name), Z_GRID)


@pytest.mark.parametrize("name", BUILTINS)
@settings(max_examples=40, deadline=None)
@given(z=st.floats(min_value=-30, max_value=30, allow_nan=False).filter(lambda z: z == 0 or abs(z) > 1e-40))
def test_builtin_runtime_matches_sympy_spec_property(name, z):
    # |z| < 1e-40 is excluded: the 50-digit oracle rounds e^z to exactly 1 there, so TV's sign(u - 1)
    # would compare the runtime's correct sign(z) against the oracle's rounding artefact sign(0).
    assert_runtime_matches_spec(D.get(name), [z])


@pytest.mark.parametrize("a", ALPHAS)
def test_alpha_family_runtime_matches_spec(a):
    div = D.alpha(a)
    assert_runtime_matches_spec(div, np.linspace(-10, 10, 41))
    assert div.f2_at_1 == pytest.approx(1.0, abs=1e-12)
    assert D.validate(div.expr).ok


def test_alpha_family_special_members():
    z = np.linspace(-5, 5, 21)
    np.testing.assert_allclose(D.alpha(2.0).f_log(z), 0.5 * D.get("pearson").f_log(z), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        D.alpha(0.5).f_log(z), 2.0 * D.get("hellinger").f_log(z), rtol=1e-12, atol=1e-14
    )
    assert D.get("alpha:2").name == "alpha:2"
    with pytest.raises(D.DivergenceError, match="must not be 0 or 1"):
        D.alpha(1.0)


@pytest.mark.parametrize("name", BUILTINS)
def test_torch_and_numpy_runtimes_agree(name):
    div = D.get(name)
    z = np.linspace(-30, 30, 121)
    zt = torch.tensor(z, dtype=torch.float64)
    np.testing.assert_allclose(div.f_log(zt).numpy(), div.f_log(z), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(div.f_prime_log(zt).numpy(), div.f_prime_log(z), rtol=1e-12, atol=1e-15)
    u = np.exp(np.linspace(-5, 5, 11))
    np.testing.assert_allclose(div.f(u), div.f_log(np.log(u)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(div.f_prime(u), div.f_prime_log(np.log(u)), rtol=1e-12, atol=1e-15)


def test_tv_subgradient_convention_at_one():
    assert D.get("tv").f_prime_log(np.array([0.0]))[0] == 0.0


def test_curvature_at_one():
    expected = {"kl": 1, "rkl": 1, "js": 0.25, "hellinger": 0.5, "jeffreys": 2, "pearson": 2, "neyman": 2,
                "triangular": 1}
    for name, value in expected.items():
        assert D.get(name).f2_at_1 == pytest.approx(value, abs=1e-12), name
    assert math.isnan(D.get("tv").f2_at_1)


# ---- the tests above can fail: corrupted generators are caught -----------------------------------


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: replace(d, f_prime_log=lambda z: -d.f_prime_log(z)),  # flipped sign
        lambda d: replace(d, f_log=lambda z: 2.0 * d.f_log(z)),  # factor 2
        lambda d: replace(d, f_prime_log=lambda z: d.f_prime_log(z) * (1 + 1e-6)),  # tiny relative error
    ],
    ids=["sign", "factor2", "rel1e-6"],
)
def test_spec_check_catches_corrupted_runtime(corrupt):
    for name in BUILTINS:
        with pytest.raises(AssertionError):
            assert_runtime_matches_spec(corrupt(D.get(name)), Z_GRID)


# ---- user generators --------------------------------------------------------------------------------


def test_from_expression_accepts_valid_generator_and_compiles_runtime():
    div = D.from_expression("u*log(u) - u + 1", name="kl_affine")
    assert_runtime_matches_spec(div, np.linspace(-20, 20, 41))
    div2 = D.from_expression(sp.sympify("(u-1)**4"))
    assert_runtime_matches_spec(div2, np.linspace(-5, 5, 21))
    zt = torch.linspace(-3, 3, 7, dtype=torch.float64, requires_grad=True)
    div.f_log(zt).sum().backward()
    np.testing.assert_allclose(
        zt.grad.numpy(), (div.f_prime_log(zt) * torch.exp(zt)).detach().numpy(), rtol=1e-12
    )


def test_register_and_get_user_generator():
    name = "test_quartic"
    try:
        div = D.register(name, "(u - 1)^4")
        assert name in D.names() and D.get(name) is div
        with pytest.raises(D.DivergenceError, match="already registered"):
            D.register(name, "(u - 1)^4")
        with pytest.raises(D.DivergenceError, match="built-in"):
            D.register("js", "(u-1)^2", overwrite=True)
    finally:
        D.unregister(name)
    assert name not in D.names()


@pytest.mark.parametrize(
    "text, condition",
    [
        ("u*log(u) + 1", "f(1) = 0 fails"),
        ("-u*log(u)", "convexity on (0, inf) fails"),
        ("sin(u - 1)", "convexity on (0, inf) fails"),
        ("log(u", "cannot parse"),
        ("u +* 2", "cannot parse"),
        ("", "empty"),
        ("x*u", "unknown symbols: x"),
        ("__import__('os').system('true')", "cannot parse"),
        ("foo(u)", "unknown symbols: foo"),
    ],
)
def test_invalid_user_generator_names_the_failed_condition(text, condition):
    with pytest.raises(D.DivergenceError, match=condition.replace("(", r"\(").replace(")", r"\)")):
        D.from_expression(text)


def test_unknown_divergence_name():
    with pytest.raises(D.DivergenceError, match="unknown divergence"):
        D.get("nope")


def test_names_lists_builtins_from_a_fresh_interpreter():
    out = subprocess.run(
        [sys.executable, "-c", "import ladtheory; print(ladtheory.divergences.names())"],
        capture_output=True, text=True, check=True,
    ).stdout
    for name in ["kl", "rkl", "js", "hellinger", "tv", "jeffreys", "pearson", "neyman"]:
        assert f"'{name}'" in out


def test_user_generator_with_a_kink_compiles_for_numpy_and_torch():
    """|u - 1| typed by a user: its derivative contains sign(.), which must run on arrays and tensors."""
    div = D.from_expression("abs(u - 1)")
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(div.f_prime_log(z), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(div.f_prime_log(torch.tensor(z)).numpy(), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(div.f_log(z), D.get("tv").f_log(z), rtol=1e-12)
