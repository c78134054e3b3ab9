"""Adversarial mutations of every proof file: each one must be rejected by the engine (issue 15, item 5).

A mutation is a plausible wrong proof: a claim changed without its chain, every line of a chain negated
consistently, a derived fact changed together with all its consumers, a part switched to the other KL
direction, a coefficient changed in a definition and everywhere that part uses it, a dropped assumption, a
wrong limit or growth class. Each is built from the real proof module (freshly loaded), and the unmutated
result passes the same check (the controls), so a rejection is caused by the mutation alone. The summary
test prints how many were tried and rejected.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import sympy as sp

from ladtheory.proof import PROOFS_DIR, Derivation, Fact, ProofError, Result
from ladtheory.proof.core import Step

STEMS = (
    "lemma_3_1_trust_region",
    "equivalence_policy_advantage",
    "lemma_3_2_surrogate",
    "flowrl_special_case",
    "gradient_formula",
    "grpo_small_step_limit",
    "effective_weight_range",
)


def fresh(stem: str):
    """The proof module, newly executed (module-level tables can be mutated without leaking)."""
    spec = importlib.util.spec_from_file_location(f"mutated_{stem}", PROOFS_DIR / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def derivations(m) -> Result:
    """The module's result without its numeric experiments (unaffected by any mutation here)."""
    res = m.result()
    res.parts = [p for p in res.parts if isinstance(p, Derivation)]
    res.source = str(PROOFS_DIR / f"{m.__name__.removeprefix('mutated_')}.py")
    return res


def rejected(res: Result) -> bool:
    try:
        return not res.check().ok
    except ProofError:  # a malformed proof (e.g. a step using a fact it no longer states) is rejected too
        return True


def replace(res: Result, name: str, new: Derivation) -> Result:
    new.name = name
    res.parts = [new if p.name == name else p for p in res.parts]
    return res


def rebuild(d: Derivation, start=None, claim=None, lines=None, facts=None, rules=None) -> Derivation:
    """A copy of ``d`` with another start, claim, step lines (same rules and parameters), facts."""
    out = copy.copy(d)
    out.start = d.start if start is None else start
    out.claim = d.claim if claim is None else claim
    if facts is not None:
        out.facts = {f.name: f for f in facts}
    lines = [st.expr for st in d.steps] if lines is None else lines
    rules = [st.rule for st in d.steps] if rules is None else rules
    out.steps = [Step(e, r, st.why, st.params) for e, r, st in zip(lines, rules, d.steps)]
    return out


def neg(e):
    return sp.Eq(-e.lhs, -e.rhs, evaluate=False) if isinstance(e, sp.Equality) else -e


# --- the mutations ------------------------------------------------------------------------------------------


def l31_claim_without_chain(m):  # the reverse maximiser claimed to be the exponential one
    res = derivations(m)
    bad = sp.Implies(m.STATIONARY_REVERSE, sp.Eq(m.pi[m.k], m.PI_STAR_FORWARD))
    res.claims = tuple(bad if c == res.claims[2] else c for c in res.claims)
    return replace(res, "reverse: stationary point", rebuild(m.reverse_stationarity(), claim=bad))


def l31_result_claim_only(m):
    res = derivations(m)
    res.claims = (sp.Implies(m.STATIONARY_REVERSE, sp.Eq(m.pi[m.k], m.PI_STAR_FORWARD)),) + res.claims[1:]
    return res


def l31_concavity_other_direction(m):  # the forward concavity part replaced by the reverse one
    return replace(derivations(m), "forward: strict concavity", m.reverse_concavity())


def l31_concavity_start_other_direction(m):
    d = m.forward_concavity()
    return replace(derivations(m), d.name, rebuild(d, start=m.L_REVERSE))


def l31_concavity_negated(
    m,
):  # every line negated, the sign rule and the claim adjusted: true, but not the claim
    d = m.forward_concavity()
    total, lam = m.L_FORWARD.as_independent(sp.Sum, as_Add=True)[1], m.lam
    negated = sp.Sum(-total.function, total.limits[0]) - lam  # -L written as one sum, as an author would
    lines = [neg(st.expr) for st in d.steps]
    mutated = rebuild(d, start=negated, claim=sp.Gt(sp.Derivative(negated, (m.pi[m.k], 2)), 0),
                      lines=lines, rules=["partial_separable", "diff", "positive"])
    assert mutated.check().ok  # the negated chain is true on its own: only the result's claim rejects it
    return replace(derivations(m), d.name, mutated)


def l31_derived_fact_and_consumer(m):  # lambda = eta log Z (no -eta), and the closed form changed to match
    d = m.forward_solution()
    wrong = Fact("lambda", sp.Eq(m.lam, m.eta * sp.log(m.Z)), "derived", proved_by="forward: multiplier")
    end = sp.Eq(m.pi[m.k], m.q[m.k] * sp.exp(m.A[m.k] / m.eta) / (sp.E * m.Z))
    lines = [sp.Eq(m.pi[m.k], m.q[m.k] * sp.exp(m.A[m.k] / m.eta) * sp.exp(-sp.log(m.Z) - 1)), end]
    mutated = rebuild(
        d, claim=sp.Implies(sp.Eq(m.pi[m.k], m.PI_K_OF_LAMBDA), end), lines=lines, facts=[wrong]
    )
    return replace(derivations(m), d.name, mutated)


def l31_fact_names_missing_part(m):
    d = m.forward_solution()
    fact = Fact("lambda", m.LAMBDA_FORWARD.eq, "derived", proved_by="forward: no such part")
    return replace(derivations(m), d.name, rebuild(d, facts=[fact]))


def l31_fact_proves_itself(m):
    d = m.forward_multiplier()
    fact = Fact("lambda", m.LAMBDA_FORWARD.eq, "derived", proved_by="forward: multiplier")
    return replace(derivations(m), d.name, rebuild(d, facts=[*d.facts.values(), fact]))


def l31_dropped_positivity(m):  # pi no longer positive: the sign step cannot be decided
    d = m.forward_concavity()
    loose = sp.IndexedBase("pi", real=True)
    sub = {m.pi: loose}
    mutated = rebuild(d, start=d.start.xreplace(sub), claim=d.claim.xreplace(sub),
                      lines=[st.expr.xreplace(sub) for st in d.steps])
    res = derivations(m)
    res.claims = tuple(c.xreplace(sub) for c in res.claims)
    return replace(res, d.name, mutated)


def l31_counterexample_sign(m):
    d = m.counterexample()[0]
    gap = m.REVERSE_C - m.FORWARD_C
    res = derivations(m)
    res.claims = tuple(sp.Gt(gap, 0, evaluate=False) if c == d.claim else c for c in res.claims)
    return replace(res, d.name, rebuild(d, start=gap, claim=sp.Gt(gap, 0, evaluate=False)))


def l31_evaluate_loose(m):  # the old engine let an author pass 0 digits: a wrong value must fail at 1e-12
    d = m.counterexample()[1]
    return replace(derivations(m), d.name, rebuild(d, claim=m.approximately(d.start, sp.Float("0.0178")),
                                                   lines=[sp.Float("0.0178")]))


def l31_multiplier_wrong(m):
    d = m.forward_multiplier()
    end = sp.Eq(m.lam, m.eta * sp.log(m.Z))
    lines = [st.expr for st in d.steps][:-1] + [end]
    return replace(derivations(m), d.name, rebuild(d, claim=sp.Implies(d.start, end), lines=lines))


def l31_normalisation_without_eta(m):
    d = m.reverse_normalisation()
    wrong = sp.Eq(1, sp.Sum(m.q[m.y] / (m.lam - m.A[m.y]), (m.y, 1, m.n)))
    lines = [d.steps[0].expr, wrong]
    return replace(derivations(m), d.name, rebuild(d, claim=sp.Implies(d.start, wrong), lines=lines))


def l31_limit_wrong(m):
    d = m.reverse_multiplier_unique()[1]
    t = sorted(d.start.free_symbols, key=str)[2]
    return replace(
        derivations(m), d.name, rebuild(d, claim=sp.Eq(sp.Limit(d.start, t, 0, "+"), 0), lines=[0])
    )


def eq_negated(m):  # -P_theta = -P_A is true, but it is not the stated claim
    d = m.forward_direction()
    mutated = rebuild(
        d, start=-d.start, claim=sp.Eq(-m.P_THETA, -m.P_A), lines=[neg(st.expr) for st in d.steps]
    )
    return replace(derivations(m), d.name, mutated)


def eq_fact_and_consumer(m):
    d = m.converse_conclusion()
    wrong = Fact("S_pi value", sp.Eq(m.S_pi, m.S_A * m.Z), "derived",
                 proved_by="P_theta = P_A implies pi = pi*: normaliser")
    end = sp.Eq(m.pi[m.y], m.q[m.y] * sp.exp(m.A[m.y] / m.eta) * m.Z)
    return replace(
        derivations(m), d.name, rebuild(d, claim=sp.Implies(d.start, end), lines=[end], facts=[wrong])
    )


def eq_solve_wrong(m):
    d = m.converse_solve()
    end = sp.Eq(m.pi[m.y], m.q[m.y] * sp.exp(m.A[m.y] / m.eta) * m.S_A / m.S_pi)
    return replace(derivations(m), d.name, rebuild(d, claim=sp.Implies(d.start, end), lines=[end]))


def l32_negated(m):  # the Jensen chain with every line negated: the outer coefficient -Z_g is negative
    d = m.lower_bound()
    mutated = rebuild(d, start=-m.LOSS, claim=sp.Ge(-m.LOSS, -m.Zg * m.f(1 / m.Zg)),
                      lines=[neg(st.expr) for st in d.steps])
    res = derivations(m)
    res.claims = (mutated.claim,) + res.claims[1:]
    return replace(res, d.name, mutated)


def l32_claim_flipped(m):
    d = m.lower_bound()
    res = derivations(m)
    res.claims = (sp.Le(m.LOSS, m.Zg * m.f(1 / m.Zg)),) + res.claims[1:]
    return replace(res, d.name, rebuild(d, claim=res.claims[0]))


def l32_definition_coefficient(m):  # Z_g = 2 sum g in one part, and that part's lines and claim follow it
    d = m.bound_attained()
    two = Fact("Z_g", sp.Eq(m.Zg, 2 * sp.Sum(m.g[m.y], (m.y, 1, m.n))), "definition")
    end = m.Zg * m.f(1 / m.Zg) / 2
    lines = [st.expr for st in d.steps][:-1] + [end]
    mutated = rebuild(d, claim=sp.Eq(m.LOSS, end), lines=lines, facts=[two, m.PROPORTIONAL])
    res = derivations(m)
    res.claims = tuple(sp.Eq(m.LOSS, end) if c == d.claim else c for c in res.claims)
    return replace(res, d.name, mutated)


def l32_dropped_hypothesis(m):
    d = m.equality_case()
    return replace(derivations(m), d.name, rebuild(d, facts=[m.ZG_DEF]))


def l32_not_convex(m):
    d = m.lower_bound()
    mutated = rebuild(d)
    mutated.convex = frozenset()
    return replace(derivations(m), d.name, mutated)


def flow_fact_and_consumer(m):  # "the score has mean 1", and Prop. 1's last line follows it
    d = m.prop_1()
    wrong = Fact("score has mean 0", sp.Eq(m.SCORE_SUM, 1), "derived", proved_by="score has mean zero")
    end = m.c - sp.log(m.Z) - 1
    lines = [st.expr for st in d.steps][:-1] + [end]
    res = derivations(m)
    res.claims = tuple(sp.Eq(m.TB_MINUS_KL, end) if c == d.claim else c for c in res.claims)
    return replace(res, d.name, rebuild(d, claim=sp.Eq(m.TB_MINUS_KL, end), lines=lines, facts=[wrong]))


def flow_hypothesis_changed(m):  # beta = 2 / eta: the last substitution no longer holds
    d = m.special_case()
    beta2 = Fact("beta", sp.Eq(m.beta, 2 / m.eta), "hypothesis")
    facts = [beta2 if f.name == "beta" else f for f in d.facts.values()]
    return replace(derivations(m), d.name, rebuild(d, facts=facts))


def grad_claim_factor(m):
    d = m.gradient()
    bad = sp.Eq(sp.Derivative(m.LOSS, m.theta), 2 * m.GRADIENT)
    res = derivations(m)
    res.claims = (bad,) + res.claims[1:]
    return replace(res, d.name, rebuild(d, claim=bad))


def grad_negated(m):
    d = m.per_sample()
    mutated = rebuild(
        d,
        start=-m.PER_SAMPLE,
        claim=sp.Eq(sp.Derivative(-m.PER_SAMPLE, m.S_LOG), -m.PER_SAMPLE_SLOPE),
        lines=[-st.expr for st in d.steps],
    )
    return replace(derivations(m), d.name, mutated)


def grpo_series_half(m):  # f''(1)/2 in place of f''(1), chain and claim consistent
    d = m.generic_weight()
    x = m.x
    half = -m.fp(1) + m.a * m.eps * sp.diff(m.fp(x), x).subs(x, 1) / 2
    end = -m.c1 + m.c2 * m.a * m.eps / 2
    mutated = rebuild(d, claim=sp.Eq(m.W_GENERIC, end + sp.O(m.eps**2)), lines=[half, end])
    res = derivations(m)
    res.claims = (mutated.claim,) + res.claims[1:]
    return replace(res, d.name, mutated)


def grpo_fact_wrong_file(m):
    d = m.expected_direction()
    fact = Fact("score has mean 0", m.SCORE_MEAN_ZERO.eq, "derived",
                proved_by=("lemma_3_2_surrogate", "score has mean zero"))
    return replace(derivations(m), d.name, rebuild(d, facts=[fact]))


def grpo_fact_and_consumer(m):
    d = m.expected_direction()
    wrong = Fact("score has mean 0", sp.Eq(m.SCORE_MEAN_ZERO.eq.lhs, 1), "derived",
                 proved_by=("flowrl_special_case", "score has mean zero"))
    end = -m.c1 + m.GRPO_DIRECTION
    res = derivations(m)
    res.claims = tuple(sp.Eq(m.DIRECTION, end) if c == d.claim else c for c in res.claims)
    lines = [d.steps[0].expr, end]
    return replace(res, d.name, rebuild(d, claim=sp.Eq(m.DIRECTION, end), lines=lines, facts=[wrong]))


def grpo_js_curvature(m):  # JS with f''(1) = 1/2 (it is 1/4)
    d = m.builtin_weight("js")
    w = d.start
    end = m.a * m.eps / 2
    res = derivations(m)
    res.claims = tuple(sp.Eq(w, end + sp.O(m.eps**2)) if c == d.claim else c for c in res.claims)
    return replace(res, d.name, rebuild(d, claim=sp.Eq(w, end + sp.O(m.eps**2)), lines=[end]))


def ew_all_bounded(m):  # label KL bounded on both sides
    m.TABLE["kl"] = (-1, 1, None, None)
    return derivations(m)


def ew_hellinger_weak(m):  # place Hellinger by a rate of 1
    m.TABLE["hellinger"] = (-1, sp.oo, None, ("exp", 1))
    return derivations(m)


def ew_js_low(m):
    m.TABLE["js"] = (-sp.log(2), sp.oo, None, ("linear", sp.Rational(1, 2)))
    return derivations(m)


def ew_linear_as_exp(m):  # KL's linear growth claimed exponential
    m.TABLE["kl"] = (-sp.oo, sp.oo, ("linear", 1), ("exp", 1))
    return derivations(m)


MUTATIONS = {
    "lemma_3_1_trust_region": [
        l31_claim_without_chain,
        l31_result_claim_only,
        l31_concavity_other_direction,
        l31_concavity_start_other_direction,
        l31_concavity_negated,
        l31_derived_fact_and_consumer,
        l31_fact_names_missing_part,
        l31_fact_proves_itself,
        l31_dropped_positivity,
        l31_counterexample_sign,
        l31_evaluate_loose,
        l31_multiplier_wrong,
        l31_normalisation_without_eta,
        l31_limit_wrong,
    ],
    "equivalence_policy_advantage": [eq_negated, eq_fact_and_consumer, eq_solve_wrong],
    "lemma_3_2_surrogate": [
        l32_negated,
        l32_claim_flipped,
        l32_definition_coefficient,
        l32_dropped_hypothesis,
        l32_not_convex,
    ],
    "flowrl_special_case": [flow_fact_and_consumer, flow_hypothesis_changed],
    "gradient_formula": [grad_claim_factor, grad_negated],
    "grpo_small_step_limit": [
        grpo_series_half,
        grpo_fact_wrong_file,
        grpo_fact_and_consumer,
        grpo_js_curvature,
    ],
    "effective_weight_range": [ew_all_bounded, ew_hellinger_weak, ew_js_low, ew_linear_as_exp],
}
ALL = [(stem, fn) for stem, fns in MUTATIONS.items() for fn in fns]
OUTCOMES: dict[str, bool] = {}


def test_every_proof_file_is_mutated():
    assert set(MUTATIONS) == set(STEMS) == {p.stem for p in PROOFS_DIR.glob("*.py") if p.stem in STEMS}
    assert len(ALL) >= 30


@pytest.mark.parametrize("stem", STEMS)
def test_control_unmutated_result_passes_the_same_check(stem):
    assert not rejected(derivations(fresh(stem)))


@pytest.mark.slow  # ~2 min on 2 cores; CI runs the slow tests
@pytest.mark.parametrize("stem,mutation", ALL, ids=[fn.__name__ for _, fn in ALL])
def test_mutation_is_rejected(stem, mutation):
    OUTCOMES[mutation.__name__] = rejected(mutation(fresh(stem)))
    assert OUTCOMES[mutation.__name__], f"{stem}: mutation {mutation.__name__} passed the engine"


@pytest.mark.slow
def test_mutation_summary(capsys):
    """Runs last in this file: reports tried / rejected (the parametrised tests above fill OUTCOMES)."""
    tried = len(OUTCOMES)
    with capsys.disabled():
        print(f"\nmutation suite: {tried} tried, {sum(OUTCOMES.values())} rejected (of {len(ALL)} defined)")
    assert tried == 0 or all(OUTCOMES.values())
