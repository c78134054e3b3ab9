"""Regression tests, one per engine defect of issue 15: each input fooled the old engine; each is now
rejected.

Each test also runs a control (the honest version of the same chain passes), so the rejection is caused by
the defect's input alone.
"""

from __future__ import annotations

import pytest
import sympy as sp

from ladtheory.proof import Derivation, Fact, ProofError, Result, Status
from ladtheory.proof import rules as rules_mod

x = sp.Symbol("x", positive=True)
a = sp.Symbol("a", real=True)
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
p = sp.IndexedBase("p", positive=True)
w = sp.IndexedBase("w", positive=True)
W = sp.Symbol("W", positive=True)
f = sp.Function("f")
W_DEF = Fact("W", sp.Eq(W, sp.Sum(w[i], (i, 1, n))), "definition")
JENSEN_LEFT = sp.Sum(w[i] / W * f(p[i]), (i, 1, n))
JENSEN_RIGHT = f(sp.Sum(w[i] / W * p[i], (i, 1, n)))


def jensen(sign: int) -> Derivation:
    d = Derivation("j", "j", sign * JENSEN_LEFT, claim=sp.Ge(sign * JENSEN_LEFT, sign * JENSEN_RIGHT),
                   facts=[W_DEF], convex=[f])
    return d.step(sign * JENSEN_RIGHT, "jensen", function=f, weights_sum="W")


def test_jensen_with_every_line_negated_is_rejected():
    assert jensen(+1).check().ok  # control
    rep = jensen(-1).check()
    assert rep.steps[0].status is Status.FAILED and "outer coefficient" in rep.steps[0].detail


def test_multiply_after_an_inequality_no_longer_exists():
    d = jensen(+1)
    with pytest.raises(ProofError, match="unknown rule 'multiply'"):
        d.step(-JENSEN_RIGHT, "multiply", factor=-1)


def test_an_inequality_cannot_be_followed_by_a_step_against_its_direction():
    d = Derivation("s", "s", -x, claim=sp.Lt(-x, 0, evaluate=False)).step(0, "negative")
    assert d.check().ok  # control
    bad = jensen(+1)
    bad.claim = sp.Lt(JENSEN_LEFT, 0)
    bad.step(0, "negative")  # >= then < 0 proves nothing
    rep = bad.check()
    assert rep.claim.status is Status.FAILED and "cannot follow" in rep.claim.detail


def test_a_claim_is_compared_with_the_chain():
    good = Derivation("c", "c", (x + 1) ** 2, claim=sp.Eq((x + 1) ** 2, x**2 + 2 * x + 1))
    good.step(x**2 + 2 * x + 1, "algebra")
    assert good.check().ok
    stated = Derivation("c", "c", (x + 1) ** 2, claim=sp.Eq((x + 1) ** 2, x**2 + 1))  # claim not the chain's
    stated.step(x**2 + 2 * x + 1, "algebra")
    assert stated.check().claim.status is Status.FAILED
    with pytest.raises(ProofError, match="claim must be a sympy relation"):
        Derivation("c", "c", x, claim="x = x")


def test_a_derived_fact_must_be_the_claim_of_the_derivation_it_names():
    with pytest.raises(ProofError, match="names no proved_by"):
        Fact("v", sp.Eq(a, 1), "derived")
    square = sp.Eq((a + 1) ** 2, a**2 + 2 * a + 1)
    source = Derivation("source", "s", (a + 1) ** 2, claim=square).step(a**2 + 2 * a + 1, "algebra")

    def consumer(value) -> Derivation:
        fact = Fact("v", sp.Eq(a, value), "derived", proved_by="source")
        return Derivation("use", "u", a + 1, claim=sp.Eq(a + 1, value + 1), facts=[fact]).step(
            value + 1, "substitute", using="v")

    # the fact a = value is not what 'source' proves (a square expanded): both consumers, consistent with
    # their fact, fail
    for value in (1, 2):
        res = Result("r", "r", [sp.Eq(a + 1, value + 1)], [source, consumer(value)])
        assert not res.check().ok
    honest = Derivation("source", "s", a, claim=sp.Eq(a, 1), facts=[Fact("a=1", sp.Eq(a, 1))]).step(
        1, "substitute", using="a=1")
    res = Result("r", "r", [sp.Eq(a + 1, 2)], [honest, consumer(1)])
    assert res.check().ok  # control: the fact is the source's claim
    res = Result("r", "r", [sp.Eq(a + 1, 3)], [honest, consumer(2)])
    report = res.check()
    assert not report.ok and "is not what" in report.parts[1].links[0].detail


def test_a_result_claim_needs_a_part_that_proves_it():
    d = Derivation("d", "d", x, claim=sp.Eq(x, x, evaluate=False)).step(x, "algebra")
    assert Result("r", "r", [sp.Eq(x, x, evaluate=False)], [d]).check().ok
    assert not Result("r", "r", [sp.Eq(x, 2 * x)], [d]).check().ok


@pytest.mark.parametrize("left,right", [
    (sp.Max(x - 5, 0), sp.Integer(0)),  # false only for x > 5: the old sampler drew positive x in (0.2, 3)
    (sp.Piecewise((0, a < 10), (a - 10, True)), sp.Integer(0)),  # false only for a > 10; old range (-2, 2)
    (sp.Min(x, 1000), x),  # false only for x > 1000
    (sp.Abs(a - sp.Rational(1, 10**6)) - sp.Abs(a), sp.Rational(-1, 10**6)),  # false in a thin band near 0
])
def test_numeric_stand_in_samples_the_whole_domain_and_the_kinks(monkeypatch, left, right):
    monkeypatch.setattr("ladtheory.proof.equality.symbolic_zero", lambda e, doit=True: None)  # force numbers
    bad = Derivation("n", "n", left, claim=sp.Eq(left, right)).step(right, "algebra")
    assert bad.check().steps[0].status is Status.FAILED
    good = Derivation("n", "n", left, claim=sp.Eq(left, left, evaluate=False)).step(left + 0 * x, "algebra")
    assert good.check().steps[0].status is Status.NUMERIC  # control: never SYMBOLIC, never failed


def test_evaluate_tolerance_is_fixed_by_the_engine():
    with pytest.raises(ProofError, match="takes no parameters"):
        Derivation("e", "e", sp.exp(-4), claim=sp.Eq(1, 1, evaluate=False)).step(
            sp.Float(0.9), "evaluate", digits=0).check()
    wrong = Derivation("e", "e", sp.exp(-4), claim=rules_mod.approximately(sp.exp(-4), sp.Float(0.9)))
    assert wrong.step(sp.Float(0.9), "evaluate").check().steps[0].status is Status.FAILED
    value = sp.Float("0.018315638888734180293718021273", 30)
    good = Derivation("e", "e", sp.exp(-4), claim=rules_mod.approximately(sp.exp(-4), value))
    assert good.step(value, "evaluate").check().ok


def test_a_limit_is_not_confirmed_by_rerunning_sympy_limit(monkeypatch):
    d = Derivation("l", "l", sp.atan(a), claim=sp.Eq(sp.Limit(sp.atan(a), a, sp.oo), 0)).step(
        0, "limit", var=a, point=sp.oo)
    monkeypatch.setattr(rules_mod.sp, "limit", lambda *args, **kw: sp.Integer(0))  # a wrong sympy answer
    step = d.check().steps[0]
    assert step.status is Status.FAILED and ("leading term" in step.detail or "numerically" in step.detail)
