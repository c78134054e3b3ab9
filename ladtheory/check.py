r"""Try a new f-divergence in one command: validate it, derive its LAD weight, run it on the bandit.

``python -m ladtheory check "EXPR" [--name N]`` (Python: :func:`check`) takes a generator ``f(u)`` as text
in the variable ``u`` and reports:

1. validity, by :func:`ladtheory.divergences.validate`: ``f(1) = 0`` and convexity on ``(0, inf)``, the
   latter **proved** symbolically (sympy shows ``f''(u) >= 0``) where sympy can, otherwise **checked** on a
   dense log-spaced grid of ``u`` in ``[e^-30, e^30]`` (a check, not a proof); the report says which;
2. ``f'(u)`` and ``f''(1)`` (the curvature that sets the GRPO small-step limit, paper-notes section 6);
3. the effective weight at ``rho = 1`` (the coefficient LAD puts on ``grad log pi(y)`` for a fresh
   sample, GRPO's being ``A``; :func:`ladtheory.objective.effective_weight`):

   .. math::  w(A) = -f'\big(e^{-A/\eta}\big),

   as a sympy expression in ``A`` and ``eta``, with its limits as ``A -> -inf`` (``u -> inf``) and
   ``A -> +inf`` (``u -> 0+``). Because ``f`` is convex, ``f'`` is nondecreasing, so ``w`` is
   nondecreasing in ``A`` and these limits are its infimum and supremum: ``w`` is bounded exactly when
   both are finite. Limits come from :func:`sympy.limit` when it answers within a few seconds, otherwise
   from evaluating ``-f'`` at ``u = e^{+-k}``, ``k`` up to 200, in 50-digit arithmetic (reported as
   "numeric");
4. the bandit (:mod:`ladtheory.bandit`, exact mode, the paper's 4000 steps at lr 5e-3 by default) with
   LAD under the new generator and under JS, and their total-variation distances to ``P_A``.

Invalid input (does not parse, other symbols than ``u``, ``f(1) != 0``, not convex) raises
:class:`ladtheory.divergences.DivergenceError`; the CLI prints its one-line reason and exits with 2.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import sympy as sp

from ladtheory import bandit as bandit_mod
from ladtheory import divergences, options
from ladtheory.divergences import DivergenceError, FDivergence

A = sp.Symbol("A", real=True)
"""The advantage, in the effective-weight expression."""

ETA = sp.Symbol("eta", positive=True)
"""The temperature, in the effective-weight expression."""

LIMIT_TIMEOUT_S = 5


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

    divergence: FDivergence
    convexity_method: str  # "symbolic" (proved) or "numeric grid" (checked)
    f_prime: sp.Expr
    f_prime_at_1: sp.Expr
    f2_at_1: float
    weight: sp.Expr  # w(A) = -f'(exp(-A/eta)), in A and eta
    weight_low: Limit  # A -> -inf
    weight_high: Limit  # A -> +inf
    bandit: dict[str, dict] | None  # method name -> summary (bandit.summarise) for the user's f and JS
    bandit_config: bandit_mod.BanditConfig | None
    bandit_error: str | None = None  # why the bandit could not run with this generator's runtime
    result: bandit_mod.BanditResult | None = field(default=None, repr=False, compare=False)  # for --out

    @property
    def bounded(self) -> bool:
        return self.weight_low.finite and self.weight_high.finite

    @property
    def brake_at_1(self) -> bool:
        """``f'(1) = 0`` (to 1e-12, for generators written with decimals): descent stops growing
        ``pi(y)`` exactly at the target ratio ``rho = e^{A/eta}``."""
        return abs(complex(sp.N(self.f_prime_at_1))) < 1e-12

    @property
    def method_name(self) -> str:
        return f"lad:{self.divergence.name}"

    def text(self) -> str:
        d = self.divergence
        lines = [f"generator      f(u) = {d.expr}    (name: {d.name})", "f(1) = 0       yes"]
        if self.convexity_method == "symbolic":
            lines.append(f"convex         yes, proved symbolically: f''(u) = {sp.simplify(sp.diff(d.expr, divergences.U, 2))}"
                         " >= 0 for u > 0")
        else:
            lines.append("convex         yes, checked numerically on a dense grid of u in [e^-30, e^30] "
                         "(sympy could not prove it; a check, not a proof)")
        lines.append(f"f'(u)          {self.f_prime}")
        lines.append(f"f'(1)          {self.f_prime_at_1}" + (
            "" if self.brake_at_1 else "   (nonzero: the brake sits where f'(u) = 0, not at u = 1)"))
        lines.append(f"f''(1)         {self.f2_at_1:.6g}")
        lines.append(f"weight at rho=1  w(A) = -f'(exp(-A/eta)) = {self.weight}")
        lines.append(f"  A -> -inf: {self.weight_low.text()};  A -> +inf: {self.weight_high.text()}"
                     "  (w is nondecreasing in A since f is convex)")
        if self.bounded:
            lines.append(f"  bounded: yes, w(A) in [{self.weight_low.value:.6g}, {self.weight_high.value:.6g}]")
        else:
            side = [s for s, lim in (("below", self.weight_low), ("above", self.weight_high)) if not lim.finite]
            lines.append(f"  bounded: no (unbounded {' and '.join(side)})")
        if self.bandit_error is not None:
            lines.append(f"bandit         not run: {self.bandit_error}")
        if self.bandit is not None and self.bandit_config is not None:
            c = self.bandit_config
            lines.append(f"bandit ({c.mode}, {c.steps} steps, lr {c.lr:g}, {c.optimizer}, eta {c.eta:g}): "
                         "TV to P_A, modes recovered")
            width = max(len(n) for n in self.bandit)
            for name, s in self.bandit.items():
                tv = s["tv"]
                shown = f"{tv:.4f}" if math.isfinite(tv) else f"{tv} (the run diverged)"
                lines.append(f"  {name:<{width}} TV {shown}   modes {s['modes_recovered']}/3   "
                             f"largest arm {s['max_prob']:.3f}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


@contextmanager
def _time_limit(seconds: int):
    """Raise TimeoutError after ``seconds`` (main thread on POSIX only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


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
    try:
        with _time_limit(LIMIT_TIMEOUT_S):
            value = sp.limit(neg_fprime, divergences.U, point, direction)
        as_float = _to_float(value)
        if as_float is not None:
            return Limit(as_float, "symbolic", value)
    except (TimeoutError, NotImplementedError, ValueError, TypeError, RecursionError):
        pass
    return _numeric_limit(neg_fprime, towards_zero)


def check(expr: str | sp.Expr, *, name: str | None = None, run_bandit: bool = True,
          config: bandit_mod.BanditConfig | None = None) -> CheckReport:
    """Validate a generator, derive its effective weight, and run it next to JS on the bandit.

    Args:
        expr: ``f(u)`` as text (``"(u-1)**2"``) or a sympy expression in ``u``.
        name: a label for the generator (default: the expression). Nothing is registered.
        run_bandit: also train the bandit with it.
        config: bandit settings (default :class:`ladtheory.bandit.BanditConfig`); its divergences and
            baselines are replaced by JS alone, next to the user's generator.

    Raises:
        DivergenceError: the generator is invalid; the message names the failed condition.
    """
    validation = divergences.validate(expr)
    if not validation.ok:
        raise DivergenceError(f"invalid f-divergence generator {expr}: {validation.message}")
    div = divergences.from_expression(expr, name=name)
    if f"lad:{div.name}" == "lad:js":
        raise DivergenceError("the name 'js' is the built-in it is compared with; choose another --name")
    u = divergences.U
    f_prime = sp.simplify(sp.diff(div.expr, u))
    neg = -f_prime
    weight = sp.simplify(neg.subs(u, sp.exp(-A / ETA)))
    report = dict(
        divergence=div,
        convexity_method=validation.convexity_method,
        f_prime=f_prime,
        f_prime_at_1=sp.simplify(f_prime.subs(u, 1)),
        f2_at_1=div.f2_at_1,
        weight=weight,
        weight_low=weight_limit(neg, towards_zero=False),
        weight_high=weight_limit(neg, towards_zero=True),
        bandit=None,
        bandit_config=None,
    )
    if run_bandit:
        base = config or bandit_mod.BanditConfig()
        cfg = bandit_mod.BanditConfig(**{**_config_fields(base), "divergences": ("js",), "baselines": ()})
        try:
            result = bandit_mod.run(cfg, extra=(div,))
        except Exception as err:  # the generator's compiled runtime failing on tensors; reported, not raised
            report["bandit_error"] = (f"the compiled runtime of f failed on torch tensors "
                                      f"({type(err).__name__}: {' '.join(str(err).split())})")
        else:
            report["bandit"] = {f"lad:{div.name}": result.summary[f"lad:{div.name}"],
                                "lad:js": result.summary["lad:js"]}
            report["bandit_config"] = cfg
            report["result"] = result
    return CheckReport(**report)


def _config_fields(config: bandit_mod.BanditConfig) -> dict:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


# --------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ladtheory check",
        description="Validate a user f-divergence generator f(u), show its LAD weight, and try it on the bandit.")
    p.add_argument("expr", help='the generator in the variable u, e.g. "(u-1)**2" or "u*log(u)"')
    p.add_argument("--name", default=None, help="a label for the generator (default: the expression)")
    options.add_arguments(p, bandit_mod.BanditConfig, only=("eta", "steps", "mode", "seed"))  # its defaults
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
        config = bandit_mod.BanditConfig(**options.values(vars(args), bandit_mod.BanditConfig))
        import torch

        torch.set_num_threads(1)
        report = check(args.expr, name=args.name, run_bandit=not args.no_bandit, config=config)
    except ValueError as err:  # DivergenceError (invalid generator) and bad bandit options
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    print(report.text())
    if report.bandit_error is not None:
        return 1
    if args.out and report.result is not None:
        json_path, png_path = bandit_mod.write(report.result, Path(args.out))
        print(f"wrote {json_path} and {png_path}")
    return 0


__all__ = ["A", "ETA", "CheckReport", "Limit", "check", "weight_limit", "main"]
