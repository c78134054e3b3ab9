r"""Try a new f-divergence in one command: validate it, derive its LAD weight, run it on the bandit.

``python -m ladtheory check "EXPR" [--name N] [--param "a in (0, 1)"]`` (Python: :func:`check`) takes a
generator ``f(u)`` as text in the variable ``u`` (``Abs``, ``Max``, ``Min``, ``Piecewise`` allowed; other
symbols only as declared parameters with open ranges) and reports, each verdict true or "undecided":

1. validity: ``f(1) = 0`` and convexity on ``(0, inf)`` by :func:`ladtheory.convexity.convexity`, on exact
   rationals (decimals are ``nsimplify``-ed first): **proved** symbolically, or **checked** numerically on a
   grid of ``u`` in ``[e^-60, e^60]``, near 1 down to ``10^-12`` and at every kink, *plus* the asymptotics of
   ``f''`` at ``0+`` and ``inf``; which one is said. With parameters, for every value in the declared ranges
   (symbolically through a positive reparametrisation of each range, numerically at values across each
   range, its ends approached to 1e-9);
2. ``f'(u)``; ``f'(1)`` and ``f''(1)`` from both sides (``"f''(1) undefined: left a, right b"`` where they
   differ; ``f''(1)`` sets the GRPO small-step limit, ``proofs/grpo_small_step_limit.py``), and whether ``f``
   is **strictly convex at 1**;
3. the brake: descent raises ``log pi(y)`` exactly while ``rho < e^{A/eta}`` and lowers it beyond **when
   f'(1) = 0 and f is strictly convex at 1**; otherwise the report says where the brake sits
   (``rho = u0 e^{A/eta}`` with ``f'(u0) = 0``), that there is none (``f'`` never vanishes), or that the step
   is 0 on a flat zone around the target;
4. the effective weight at ``rho = 1`` (:func:`ladtheory.objective.effective_weight`):

   .. math::  w(A) = -f'\big(e^{-A/\eta}\big),

   with its limits as ``A -> -inf`` (``u -> inf``) and ``A -> +inf`` (``u -> 0+``): ``sympy.limit`` when it
   answers within its budget, else ``-f'`` evaluated at ``u = e^{+-k}``, ``k`` up to 200, at 50 digits
   ("numeric"). Since ``f`` is convex, ``w`` is nondecreasing in ``A``;
5. the bandit (:mod:`ladtheory.bandit`, exact mode) with LAD under the new generator and under JS (not with
   parameters, nor when convexity is undecided).

Every sympy call runs under a time budget (:mod:`ladtheory.timebudget`); one that runs out is reported as
"undecided (timed out after N s)" and a numeric route takes over. Invalid input raises
:class:`ladtheory.divergences.DivergenceError` (the CLI: one line, exit 2); an undecided convexity is
reported with exit 1.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import sympy as sp

from ladtheory import bandit as bandit_mod
from ladtheory import convexity as cx
from ladtheory import divergences, flags
from ladtheory.divergences import DivergenceError, FDivergence

A = sp.Symbol("A", real=True)
"""The advantage, in the effective-weight expression."""

ETA = sp.Symbol("eta", positive=True)
"""The temperature, in the effective-weight expression."""

LIMIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Limit:
    """A limit of the effective weight: ``value`` (float, +-inf allowed) and how it was obtained."""

    value: float
    method: str  # "symbolic" or "numeric"
    expr: sp.Expr | None = None  # the sympy value when symbolic

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)

    def text(self) -> str:
        shown = str(self.expr) if self.expr is not None else f"{self.value:.6g}"
        return f"{shown} ({self.method})"


@dataclass(frozen=True)
class CheckReport:
    """Everything ``check`` found about one generator."""

    divergence: FDivergence | None  # None with parameters or an undecided convexity (nothing to compile)
    expr: sp.Expr  # the generator, exact (decimals as rationals)
    params: dict  # name -> (lo, hi)
    convexity: cx.Convexity
    at1: cx.AtOne
    brake: str
    f_prime: sp.Expr
    weight: sp.Expr  # w(A) = -f'(exp(-A/eta)), in A and eta
    weight_low: Limit  # A -> -inf
    weight_high: Limit  # A -> +inf
    bandit: dict[str, dict] | None  # method name -> summary (bandit.summarise) for the user's f and JS
    bandit_config: bandit_mod.BanditConfig | None
    bandit_error: str | None = None  # why the bandit could not run with this generator's runtime
    result: bandit_mod.BanditResult | None = field(default=None, repr=False, compare=False)  # for --out
    name: str = ""
    bandit_skipped: str | None = None  # why the bandit was not run (parameters, undecided convexity)

    @property
    def convexity_method(self) -> str:
        """``"symbolic"`` (proved), ``"numeric grid"`` (checked) or ``"undecided"``."""
        return {"proved": "symbolic", "checked": "numeric grid"}.get(self.convexity.verdict, "undecided")

    @property
    def f_prime_at_1(self) -> sp.Expr | None:
        return self.at1.f1

    @property
    def f2_at_1(self) -> float:
        """``f''(1)``; nan where the two sides differ or are unknown."""
        v = self.at1.f2
        return float(v) if v is not None and v.is_number else math.nan

    @property
    def bounded(self) -> bool:
        return self.weight_low.finite and self.weight_high.finite

    @property
    def brake_at_1(self) -> bool:
        """The exact brake at ``rho = e^{A/eta}``: ``f'(1) = 0`` and ``f`` strictly convex at 1."""
        f1 = self.at1.f1
        return f1 is not None and f1 == 0 and self.at1.strict is True

    @property
    def method_name(self) -> str:
        return f"lad:{self.name}"

    def _derivative_lines(self) -> list[str]:
        a = self.at1
        lines = []
        for k, (left, right) in ((1, (a.f1_left, a.f1_right)), (2, (a.f2_left, a.f2_right))):
            mark = "'" * k
            if left is not None and right is not None and sp.simplify(left - right) == 0:
                lines.append(f"f{mark}(1){' ' * (11 - k)}{right}")
            elif left is None or right is None:
                lines.append(f"f{mark}(1){' ' * (11 - k)}undecided (left {left}, right {right})")
            else:
                lines.append(f"f{mark}(1){' ' * (11 - k)}undefined: left {left}, right {right}")
        strict = {True: "yes", False: "no", None: "undecided"}[a.strict]
        lines.append(f"strictly convex at 1: {strict} ({a.strict_detail}; {a.method})")
        return lines

    def text(self) -> str:
        shown = ", ".join(f"{k} in ({lo}, {hi})" for k, (lo, hi) in self.params.items())
        lines = [
            f"generator      f(u) = {self.expr}    (name: {self.name})" + (f"; {shown}" if shown else ""),
            "f(1) = 0       yes",
        ]
        c = self.convexity
        if c.verdict == "proved":
            second = sp.diff(self.expr, divergences.U, 2)
            lines.append(
                f"convex         yes, proved symbolically: f''(u) = {second} >= 0 for u > 0 ({c.detail})"
            )
        elif c.verdict == "checked":
            lines.append(f"convex         yes, {c.detail}")
        else:
            lines.append(f"convex         undecided: {c.detail}")
        lines.append(f"f'(u)          {self.f_prime}")
        lines += self._derivative_lines()
        lines.append(f"brake          {self.brake}")
        lines.append(f"weight at rho=1  w(A) = -f'(exp(-A/eta)) = {self.weight}")
        lines.append(f"  A -> -inf: {self.weight_low.text()};  A -> +inf: {self.weight_high.text()}"
                     + ("  (w is nondecreasing in A since f is convex)" if c.convex else ""))
        if any(math.isnan(lim.value) for lim in (self.weight_low, self.weight_high)):
            lines.append("  bounded: undecided")
        elif self.bounded:
            lines.append(
                f"  bounded: yes, w(A) in [{self.weight_low.value:.6g}, {self.weight_high.value:.6g}]"
            )
        else:
            side = [
                s for s, lim in (("below", self.weight_low), ("above", self.weight_high)) if not lim.finite
            ]
            lines.append(f"  bounded: no (unbounded {' and '.join(side)})")
        if self.bandit_error is not None:
            lines.append(f"bandit         not run: {self.bandit_error}")
        elif self.bandit_skipped is not None:
            lines.append(f"bandit         not run: {self.bandit_skipped}")
        if self.bandit is not None and self.bandit_config is not None:
            cfg = self.bandit_config
            lines.append(
                f"bandit ({cfg.mode}, {cfg.steps} steps, lr {cfg.lr:g}, {cfg.optimizer}, eta {cfg.eta:g}): "
                "TV to P_A, modes recovered"
            )
            width = max(len(n) for n in self.bandit)
            for name, summ in self.bandit.items():
                tv = summ["tv"]
                tv_text = f"{tv:.4f}" if math.isfinite(tv) else f"{tv} (the run diverged)"
                lines.append(f"  {name:<{width}} TV {tv_text}   modes {summ['modes_recovered']}/3   "
                             f"largest arm {summ['max_prob']:.3f}")
        return "\n".join(lines)


def brake_statement(expr: sp.Expr, at1: cx.AtOne, params: dict) -> str:
    """What the per-sample brake does for this generator: true for every generator, or 'undecided'."""
    f1 = at1.f1
    if f1 is not None and f1 == 0:
        if at1.strict is True:
            return (
                "at the target: descent raises log pi(y) exactly while rho < e^{A/eta} and lowers it beyond "
                "(f'(1) = 0 and f strictly convex at 1)"
            )
        if at1.strict is False:
            return ("no exact brake at the target: f'(1) = 0 but f is not strictly convex at 1 "
                    f"({at1.strict_detail}), so the step is 0 on a zone around rho = e^{{A/eta}}")
        return "undecided: f'(1) = 0, but whether f is strictly convex at 1 is undecided"
    lo, hi = at1.f1_left, at1.f1_right
    if f1 is None and lo is not None and hi is not None and lo.is_number and hi.is_number and lo <= 0 <= hi:
        if at1.strict is True:
            return (f"at the target: descent raises log pi(y) while rho < e^{{A/eta}} and lowers it beyond "
                    f"(0 lies in [f'(1-), f'(1+)] = [{lo}, {hi}], f strictly convex at 1: a kink)")
    if params or f1 is None or not f1.is_number:
        return "undecided: f'(1) is not a number (parameters, or a kink at 1); see f'(1) above"
    root, why = cx.zero_of_f_prime(expr, divergences.U)
    if root is None:
        return (f"none: f'(1) = {f1} and f' never vanishes ({why}; numeric), so descent moves log pi(y) the "
                "same way at every ratio")
    return (f"at rho = {mpmath.nstr(root, 10)} * e^{{A/eta}} (f'(1) = {f1} != 0; f'(u0) = 0 at u0 = "
            f"{mpmath.nstr(root, 10)}, {why}), not at the target ratio")


# --------------------------------------------------------------------------------------------------


def _to_float(value: sp.Expr) -> float | None:
    if value in (sp.oo,):
        return math.inf
    if value in (-sp.oo,):
        return -math.inf
    if value.has(sp.zoo, sp.nan, sp.Limit, sp.AccumBounds) or value.free_symbols:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _numeric_limit(neg_fprime: sp.Expr, towards_zero: bool) -> Limit:
    """-f'(u) at u = e^{-+k}, k = 25, 50, 100, 200 (50 digits): finite if it settles, else +-inf."""
    fn = sp.lambdify(divergences.U, neg_fprime, modules="mpmath")
    mpmath.mp.dps = 50
    values = []
    for k in (25, 50, 100, 200):
        u = mpmath.e ** (-k if towards_zero else k)
        values.append(fn(u))
    last, before = values[-1], values[-2]
    if mpmath.isfinite(last) and abs(last - before) <= 1e-8 * max(1, abs(last)):
        return Limit(float(last), "numeric")
    return Limit(math.inf if last > before else -math.inf, "numeric")


def weight_limit(neg_fprime: sp.Expr, towards_zero: bool) -> Limit:
    """``lim -f'(u)`` as ``u -> 0+`` (``A -> +inf``) or ``u -> inf`` (``A -> -inf``)."""
    point, direction = (0, "+") if towards_zero else (sp.oo, "-")
    value, _ = cx.budgeted(lambda: sp.limit(neg_fprime, divergences.U, point, direction), LIMIT_TIMEOUT_S)
    if value is not None:
        as_float = _to_float(value)
        if as_float is not None:
            return Limit(as_float, "symbolic", value)
    if neg_fprime.free_symbols - {divergences.U}:
        return Limit(math.nan, "undecided")
    return _numeric_limit(neg_fprime, towards_zero)


def parse_param(text: str) -> tuple[str, tuple]:
    """``"a in (0, 1)"`` -> ``("a", (0, 1))``; ends may be ``-oo``/``oo``; the range is open."""
    m = re.fullmatch(r"\s*([A-Za-z]\w*)\s+in\s+\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*", text)
    if not m or m.group(1) == "u":
        raise DivergenceError(f'--param {text!r}: expected NAME in (LO, HI), e.g. "a in (0, 1)" (not u)')
    try:
        lo, hi = (sp.sympify(v, locals={"oo": sp.oo, "inf": sp.oo}) for v in (m.group(2), m.group(3)))
    except (sp.SympifyError, TypeError):
        raise DivergenceError(f"--param {text!r}: the ends must be numbers or -oo/oo") from None
    if not (lo.is_extended_real and hi.is_extended_real and lo < hi) or lo.free_symbols or hi.free_symbols:
        raise DivergenceError(f"--param {text!r}: need LO < HI, both real numbers or +-oo")
    return m.group(1), (lo, hi)


def check(expr: str | sp.Expr, *, name: str | None = None, run_bandit: bool = True,
          config: bandit_mod.BanditConfig | None = None, params: dict | None = None) -> CheckReport:
    """Validate a generator, derive its effective weight and brake, and run it next to JS on the bandit.

    Args:
        expr: ``f(u)`` as text (``"(u-1)**2"``) or a sympy expression in ``u``.
        name: a label for the generator (default: the expression). Nothing is registered.
        run_bandit: also train the bandit with it (not with parameters, nor if convexity is undecided).
        config: bandit settings (default :class:`ladtheory.bandit.BanditConfig`); its divergences and
            baselines are replaced by JS alone, next to the user's generator.
        params: declared parameters, ``{"a": (0, 1)}`` (open ranges); the verdicts hold for the whole range.

    Raises:
        DivergenceError: the generator is invalid (does not parse, ``f(1) != 0``, convexity refuted).
    """
    params = dict(params or {})
    parsed = cx.exact(divergences._as_expr(expr, params=tuple(params)))
    validation = divergences.validate(parsed, params)
    if not validation.f_at_1_ok or (not validation.convex and "undecided" not in validation.message):
        raise DivergenceError(f"invalid f-divergence generator {expr}: {validation.message}")
    label = name or str(expr)
    if f"lad:{label}" == "lad:js":
        raise DivergenceError("the name 'js' is the built-in it is compared with; choose another --name")
    symbols = {s.name: s for s in parsed.free_symbols}
    ranges = {symbols[k]: v for k, v in params.items() if k in symbols}
    conv = cx.convexity(parsed, divergences.U, ranges)
    u = divergences.U
    raw = sp.diff(parsed, u)
    f_prime, _ = cx.budgeted(lambda: sp.simplify(raw))
    f_prime = raw if f_prime is None else f_prime
    neg = -f_prime
    weight, _ = cx.budgeted(lambda: sp.simplify(neg.subs(u, sp.exp(-A / ETA))))
    weight = neg.subs(u, sp.exp(-A / ETA)) if weight is None else weight
    at1 = cx.at_one(parsed, u) if not ranges else _at_one_with_params(parsed, ranges)
    report = dict(
        divergence=None, expr=parsed, params=params, convexity=conv, at1=at1,
        brake=brake_statement(parsed, at1, params), f_prime=f_prime, weight=weight,
        weight_low=weight_limit(neg.xreplace(cx.parameter_map(ranges)), towards_zero=False),
        weight_high=weight_limit(neg.xreplace(cx.parameter_map(ranges)), towards_zero=True),
        bandit=None, bandit_config=None, name=label,
    )
    if ranges:
        report["bandit_skipped"] = "the generator has parameters; give them values to run the bandit"
    elif conv.convex is None:
        report["bandit_skipped"] = "convexity is undecided"
    else:
        div, why = cx.budgeted(lambda: divergences.from_expression(parsed, name=label), 4 * cx.BUDGET_S)
        report["divergence"] = div
        if div is None:
            report["bandit_skipped"] = f"compiling f for the runtime: {why}"
        elif run_bandit:
            base = config or bandit_mod.BanditConfig()
            cfg = bandit_mod.BanditConfig(**{**_config_fields(base), "divergences": ("js",), "baselines": ()})
            try:
                result = bandit_mod.run(cfg, extra=(div,))
            except (
                Exception
            ) as err:  # the generator's compiled runtime failing on tensors; reported, not raised
                report["bandit_error"] = (
                    f"the compiled runtime of f failed on torch tensors "
                    f"({type(err).__name__}: {' '.join(str(err).split())})"
                )
            else:
                report["bandit"] = {f"lad:{div.name}": result.summary[f"lad:{div.name}"],
                                    "lad:js": result.summary["lad:js"]}
                report["bandit_config"] = cfg
                report["result"] = result
    return CheckReport(**report)


def _at_one_with_params(expr: sp.Expr, ranges: dict) -> cx.AtOne:
    """One-sided derivatives at 1 as expressions in the parameters; strictness proved for the whole range
    from f''(1+-) > 0 under the positive reparametrisation, else undecided."""
    t = sp.Symbol("t_", positive=True)
    sides = []
    for sign in (1, -1):
        e = expr.subs(divergences.U, 1 + sign * t)
        for order in (1, 2):
            v, _ = cx.budgeted(lambda: sp.simplify(sp.limit(sp.diff(e, t, order), t, 0, "+")))
            sides.append(None if v is None else v * (sign if order == 1 else 1))
    (f1r, f2r, f1l, f2l) = sides
    mapped = [None if v is None else v.xreplace(cx.parameter_map(ranges)) for v in (f2l, f2r)]
    if all(v is not None and v.is_positive for v in mapped):
        return cx.AtOne(
            f1l, f1r, f2l, f2r, True, "f''(1+-) > 0 for every parameter value (symbolic)", "symbolic"
        )
    return cx.AtOne(f1l, f1r, f2l, f2r, None, "not proved for the whole parameter range", "symbolic")


def _config_fields(config: bandit_mod.BanditConfig) -> dict:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


# --------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ladtheory check",
        description="Validate a user f-divergence generator f(u), show its LAD weight, "
        "and try it on the bandit.",
    )
    p.add_argument("expr", help='the generator in the variable u, e.g. "(u-1)**2" or "u*log(u)"')
    p.add_argument("--name", default=None, help="a label for the generator (default: the expression)")
    flags.add_arguments(p, bandit_mod.BanditConfig, only=("eta", "steps", "mode", "seed"))  # its defaults
    p.add_argument("--param", action="append", default=[], metavar='"NAME in (LO, HI)"',
                   help="declare a parameter of f and its open range (repeatable), e.g. \"a in (0, 1)\"")
    p.add_argument("--no-bandit", action="store_true", help="skip the bandit run")
    p.add_argument("--out", default=None, help="also write bandit.json and bandit.png into this folder")
    return p


def _expression_last(argv: list[str], p: argparse.ArgumentParser) -> list[str]:
    """Let a generator that starts with '-' (``"-log(u)"``) be the positional argument: argparse would
    read it as an unknown option. Such a token (not an option, not an option's value) is moved after
    ``--``."""
    takes_value = {s for a in p._actions if a.nargs is None and a.option_strings for s in a.option_strings}
    known = {s for a in p._actions for s in a.option_strings}
    out, moved, i = [], [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            out += argv[i:]
            break
        if tok in takes_value:
            out += argv[i:i + 2]
            i += 2
            continue
        if tok.startswith("-") and tok.split("=")[0] not in known:
            moved.append(tok)
        else:
            out.append(tok)
        i += 1
    return out + (["--", *moved] if moved else [])


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(_expression_last(list(sys.argv[1:] if argv is None else argv), p))
    try:
        config = bandit_mod.BanditConfig(**flags.values(vars(args), bandit_mod.BanditConfig))
        import torch

        torch.set_num_threads(1)
        params = dict(parse_param(t) for t in args.param)
        report = check(args.expr, name=args.name, run_bandit=not args.no_bandit, config=config, params=params)
    except ValueError as err:  # DivergenceError (invalid generator) and bad bandit options
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    print(report.text())
    if report.bandit_error is not None or report.convexity.convex is None:
        return 1
    if args.out and report.result is not None:
        json_path, png_path = bandit_mod.write(report.result, Path(args.out))
        print(f"wrote {json_path} and {png_path}")
    return 0


__all__ = [
    "A",
    "ETA",
    "CheckReport",
    "Limit",
    "brake_statement",
    "check",
    "parse_param",
    "weight_limit",
    "main",
]
