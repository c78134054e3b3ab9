"""The GRPO limit with a remainder bound (proofs/grpo_limit_remainder.py): 0 <= w_js(s) - s/4 <= s^2/16,
the generic Taylor bound, and the default-setting numbers (eta = 0.25, |A| up to 3)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences, reductions
from ladtheory.objective import effective_weight
from ladtheory.proof import PROOFS_DIR


def _proof_module():
    spec = importlib.util.spec_from_file_location(
        "grpo_limit_remainder", PROOFS_DIR / "grpo_limit_remainder.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@settings(max_examples=200, deadline=None)
@given(s=st.floats(-60, 60), eta=st.sampled_from([0.25, 1.0, 10.0]))
def test_grpo_limit_remainder_js_two_sided_bound(s, eta):
    rem = effective_weight(s * eta, 0.0, "js", eta) - reductions.first_order_weight(s * eta, eta, "js")
    assert rem >= -1e-15
    assert rem <= s**2 / 16 + 1e-12


@pytest.mark.parametrize("name", ["rkl", "hellinger", "pearson", "neyman", "jeffreys", "triangular"])
@settings(max_examples=40, deadline=None)
@given(s=st.floats(-6, 6))
def test_grpo_limit_remainder_generic_bound(name, s):
    w2 = _proof_module()._w_second(name)
    ts = np.linspace(-abs(s), abs(s), 2001)
    bound = 0.5 * s**2 * float(np.max(np.abs(w2(ts) * np.ones_like(ts))))
    rem = effective_weight(s, 0.0, name, 1.0) - reductions.first_order_weight(s, 1.0, name)
    assert abs(rem) <= bound * (1 + 1e-9) + 1e-13


def test_grpo_limit_remainder_second_order_coefficient_matches_the_registry():
    for name in ["js", "hellinger", "pearson", "rkl"]:
        w2 = _proof_module()._w_second(name)
        div = divergences.get(name)
        import sympy as sp

        f3 = float(sp.diff(div.expr, divergences.U, 3).subs(divergences.U, 1))
        assert float(w2(np.array(0.0))) == pytest.approx(-f3 - div.f2_at_1, abs=1e-12)


def test_grpo_limit_remainder_default_eta_table():
    rows = {r["A"]: r for r in _proof_module().default_table(0.25)}
    assert rows[3.0]["exact"] == pytest.approx(0.5 * np.log((1 + np.exp(12.0)) / 2), rel=1e-13)
    assert rows[3.0]["ratio"] == pytest.approx(1.884, abs=1e-3)
    assert rows[-3.0]["ratio"] == pytest.approx(0.1155, abs=1e-3)
    assert rows[3.0]["bound"] == pytest.approx(9.0) and abs(rows[3.0]["linear"]) == pytest.approx(3.0)
    # the linear term is within 10% only for |A|/eta <= 0.4
    assert abs(rows[0.1]["ratio"] - 1) < 0.1 and abs(rows[0.5]["ratio"] - 1) > 0.1
