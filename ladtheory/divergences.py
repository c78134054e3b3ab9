r"""The f-divergence family: one registry of generators, each a sympy specification plus a stable runtime.

An f-divergence between distributions P and Q is

.. math::  D_f(P \| Q) = \sum_y Q(y)\, f\!\left(\frac{P(y)}{Q(y)}\right),

for a generator :math:`f:(0,\infty)\to\mathbb R` that is convex with :math:`f(1) = 0`.

Every generator here is a frozen :class:`FDivergence` holding

* ``expr``: the sympy expression in the symbol :data:`U` (``u > 0``). This is the **specification**;
  the tests check the runtime against it and against its symbolic derivative.
* ``f_log(z)`` / ``f_prime_log(z)``: :math:`f(e^z)` and :math:`f'(e^z)` written in log coordinates
  :math:`z = \log u`, so that ratios are never exponentiated before they are needed (STYLE.md 7).
  They accept numpy arrays and torch tensors (autograd flows through the torch path).
* ``f(u)`` / ``f_prime(u)``: the same in ordinary coordinates (``f_log(log u)``).

Built-ins (the paper's ablation, arXiv 2602.20132; ``[ours]`` marks additions beyond the paper's ablation):

==============  ==========================================  =====================================
name            f(u)                                        note
==============  ==========================================  =====================================
``kl``          :math:`u\log u`                             forward KL; FlowRL's case
``rkl``         :math:`-\log u`                             reverse KL
``js``          :math:`\tfrac12[u\log u-(u+1)\log\tfrac{u+1}2]` Jensen-Shannon (the default)
``hellinger``   :math:`(\sqrt u-1)^2`                       squared Hellinger, *without* the 1/2
``tv``          :math:`|u-1|`                               total variation, *without* the 1/2
``jeffreys``    :math:`(u-1)\log u`                         KL + reverse KL
``pearson``     :math:`(u-1)^2`                             Pearson :math:`\chi^2` [ours]
``neyman``      :math:`(u-1)^2/u`                           Neyman :math:`\chi^2` [ours]
``triangular``  :math:`(u-1)^2/(u+1)`                       triangular discrimination [ours]
==============  ==========================================  =====================================

plus :func:`alpha` (the Amari alpha family, [ours]).

Choices where the paper is open:

* Hellinger and TV are used without the factor 1/2, as in the paper's ablation (the factor only rescales
  the gradient; ``f2_at_1`` records the curvature that sets the GRPO-limit step size).
* TV is not differentiable at ``u = 1``. Convention: the subgradient ``f'(1) = 0`` (``sign(0) = 0``).
  The effective weight at ``rho = 1`` is then ``sign(A)``: a sample with zero advantage gets no push.

User generators: :func:`from_expression` / :func:`register` accept a string or a sympy expression in
``u``, check ``f(1) = 0`` and convexity on ``(0, inf)`` (:func:`validate`), and raise
:class:`DivergenceError` naming the failed condition. Their runtime is the sympy expression rewritten in
``z = log u`` and compiled with :func:`sympy.lambdify`; it is stable as far as that rewrite makes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import sympy as sp
import torch

U = sp.Symbol("u", positive=True)
"""The generator's argument ``u = P/Q`` (a likelihood ratio, so positive)."""

Z = sp.Symbol("z", real=True)
"""Log coordinate ``z = log u``."""

Array = Any  # numpy array or torch tensor


class DivergenceError(ValueError):
    """A user-supplied generator that cannot be used; the message names the failed condition."""


# --------------------------------------------------------------------------------------------------
# Dual numpy/torch elementary functions (runtime code dispatches on the argument type).


def _is_torch(x: Array) -> bool:
    return isinstance(x, torch.Tensor)


def _dual(numpy_fn: Callable, torch_fn: Callable) -> Callable:
    """One elementary function for numpy arrays and torch tensors alike (dispatch on the argument)."""
    return lambda x: torch_fn(x) if _is_torch(x) else numpy_fn(x)


_exp = _dual(np.exp, torch.exp)
_expm1 = _dual(np.expm1, torch.expm1)
_log = _dual(np.log, torch.log)
_sign = _dual(np.sign, torch.sign)
_abs = _dual(np.abs, torch.abs)
_sinh = _dual(np.sinh, torch.sinh)
# log(1 + e^x), stable for both signs and exact to float precision (torch's own softplus switches to the
# identity above x = 20, an absolute error of e^-20 that the spec tests would catch).
_softplus = _dual(lambda x: np.logaddexp(0.0, x), lambda x: torch.logaddexp(torch.zeros_like(x), x))


_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------------
# The generator object.


@dataclass(frozen=True)
class FDivergence:
    """A convex generator ``f`` with ``f(1) = 0``: the sympy spec and its stable log-space runtime.

    Attributes:
        name: registry key.
        expr: sympy expression in :data:`U`, the specification.
        f_log: ``z -> f(e^z)`` for numpy arrays or torch tensors.
        f_prime_log: ``z -> f'(e^z)``.
        description: one line for tables.
    """

    name: str
    expr: sp.Expr
    f_log: Callable[[Array], Array] = field(repr=False, compare=False)
    f_prime_log: Callable[[Array], Array] = field(repr=False, compare=False)
    description: str = ""

    def f(self, u: Array) -> Array:
        """``f(u)`` for ``u > 0``."""
        return self.f_log(_log(u))

    def f_prime(self, u: Array) -> Array:
        """``f'(u)`` for ``u > 0`` (TV: the subgradient convention ``f'(1) = 0``)."""
        return self.f_prime_log(_log(u))

    @property
    def f_prime_expr(self) -> sp.Expr:
        """The symbolic derivative ``f'(u)``."""
        return sp.diff(self.expr, U)

    @property
    def f_prime_at_1(self) -> float:
        """``f'(1)``. Zero for every built-in except ``kl`` (1) and ``rkl`` (-1). Where it is zero and ``f``
        is
        strictly convex at 1 (every built-in), the per-sample brake point of the LAD loss is exactly
        ``rho = e^{A/eta}``; otherwise it sits where ``f'(u) = 0`` (KL: ``u = 1/e``; reverse KL: nowhere, no
        brake), or, for a generator flat near 1, the step is zero around the target. Adding ``c (u - 1)`` to
        ``f`` changes no
        divergence between normalised distributions and adds only a zero-mean term to the gradient."""
        value = sp.simplify(sp.diff(self.expr, U).subs(U, 1))
        try:
            return float(value)
        except TypeError:  # e.g. TV: sign(0) -> convention 0
            return float(self.f_prime_log(np.zeros(1))[0])

    @property
    def f2_at_1(self) -> float:
        """``f''(1)``: the curvature that sets the GRPO small-step limit
        (``proofs/grpo_small_step_limit.py``).
        For TV (not twice differentiable at 1) this is ``nan``."""
        value = sp.simplify(sp.diff(self.expr, U, 2).subs(U, 1))
        try:
            return float(value)
        except TypeError:  # e.g. TV: DiracDelta(0), no second derivative at 1
            return float("nan")

    def __call__(self, u: Array) -> Array:
        return self.f(u)


# --------------------------------------------------------------------------------------------------
# Built-in generators. Each runtime is written by hand in z = log u; the tests compare it with `expr`.


def _kl() -> FDivergence:
    return FDivergence(
        "kl",
        U * sp.log(U),
        f_log=lambda z: z * _exp(z),
        f_prime_log=lambda z: z + 1.0,
        description="Kullback-Leibler, u log u",
    )


def _rkl() -> FDivergence:
    return FDivergence(
        "rkl",
        -sp.log(U),
        f_log=lambda z: -z,
        f_prime_log=lambda z: -_exp(-z),
        description="reverse KL, -log u",
    )


def _js_f_log(z):
    # 0.5 [u log u - (u+1) log((u+1)/2)] with u = e^z, rearranged to avoid cancellation:
    # = 0.5 [ e^z (log 2 - softplus(-z)) - softplus(z) + log 2 ]
    return 0.5 * (_exp(z) * (_LN2 - _softplus(-z)) - _softplus(z) + _LN2)


def _js() -> FDivergence:
    return FDivergence(
        "js",
        sp.Rational(1, 2) * (U * sp.log(U) - (U + 1) * sp.log((U + 1) / 2)),
        f_log=_js_f_log,
        # f'(u) = 0.5 log(2u / (u + 1)) = 0.5 (log 2 - softplus(-z))
        f_prime_log=lambda z: 0.5 * (_LN2 - _softplus(-z)),
        description="Jensen-Shannon, 0.5[u log u - (u+1) log((u+1)/2)] (default)",
    )


def _hellinger() -> FDivergence:
    return FDivergence(
        "hellinger",
        (sp.sqrt(U) - 1) ** 2,
        f_log=lambda z: _expm1(0.5 * z) ** 2,
        f_prime_log=lambda z: -_expm1(-0.5 * z),  # 1 - u^{-1/2}
        description="squared Hellinger, (sqrt u - 1)^2 (no 1/2)",
    )


def _tv() -> FDivergence:
    return FDivergence(
        "tv",
        sp.Abs(U - 1),
        f_log=lambda z: _abs(_expm1(z)),
        f_prime_log=lambda z: _sign(z),  # subgradient convention f'(1) = 0
        description="total variation, |u - 1| (no 1/2)",
    )


def _jeffreys() -> FDivergence:
    return FDivergence(
        "jeffreys",
        (U - 1) * sp.log(U),
        f_log=lambda z: _expm1(z) * z,
        f_prime_log=lambda z: z - _expm1(-z),  # log u + 1 - 1/u
        description="Jeffreys, (u - 1) log u = KL + reverse KL",
    )


def _pearson() -> FDivergence:
    return FDivergence(
        "pearson",
        (U - 1) ** 2,
        f_log=lambda z: _expm1(z) ** 2,
        f_prime_log=lambda z: 2.0 * _expm1(z),
        description="Pearson chi^2, (u - 1)^2",
    )


def _neyman() -> FDivergence:
    return FDivergence(
        "neyman",
        (U - 1) ** 2 / U,
        f_log=lambda z: 4.0 * _sinh(0.5 * z) ** 2,  # e^z - 2 + e^-z
        f_prime_log=lambda z: -_expm1(-2.0 * z),  # 1 - 1/u^2
        description="Neyman chi^2, (u - 1)^2 / u",
    )


def _triangular() -> FDivergence:
    # (u-1)^2/(u+1) = (e^z - 1)^2 / (e^z + 1) = expm1(z)^2 e^{-softplus(z)}
    # f'(u) = (u-1)(u+3)/(u+1)^2 = 1 - 4/(u+1)^2 = 1 - 4 e^{-2 softplus(z)}
    return FDivergence(
        "triangular",
        (U - 1) ** 2 / (U + 1),
        f_log=lambda z: _expm1(z) ** 2 * _exp(-_softplus(z)),
        f_prime_log=lambda z: 1.0 - 4.0 * _exp(-2.0 * _softplus(z)),
        description="triangular discrimination, (u - 1)^2 / (u + 1)",
    )


def alpha(a: float) -> FDivergence:
    r"""The Amari alpha family, ``f_a(u) = (u^a - a(u - 1) - 1) / (a(a - 1))`` for ``a`` not 0 or 1.

    ``a -> 1`` gives ``u log u - u + 1`` (KL up to an affine term that does not change the divergence
    between normalised distributions), ``a -> 0`` gives ``-log u + u - 1``, ``a = 2`` gives
    ``(u-1)^2 / 2`` (Pearson / 2), ``a = 1/2`` gives ``2 (sqrt u - 1)^2`` (Hellinger x 2). ``f''(1) = 1``
    for every ``a``. Runtime: ``f(e^z) = (expm1(a z) - a expm1(z)) / (a(a-1))`` and
    ``f'(e^z) = expm1((a-1) z) / (a - 1)``.
    """
    a_sym = sp.nsimplify(a)
    if a_sym in (0, 1):
        raise DivergenceError(f"alpha({a}): a must not be 0 or 1 (use 'rkl' or 'kl' for the limits)")
    a = float(a)
    expr = (U**a_sym - a_sym * (U - 1) - 1) / (a_sym * (a_sym - 1))
    return FDivergence(
        f"alpha:{a:g}",
        expr,
        f_log=lambda z: (_expm1(a * z) - a * _expm1(z)) / (a * (a - 1.0)),
        f_prime_log=lambda z: _expm1((a - 1.0) * z) / (a - 1.0),
        description=f"alpha family, a = {a:g}",
    )


_BUILTINS: tuple[Callable[[], FDivergence], ...] = (
    _kl,
    _rkl,
    _js,
    _hellinger,
    _tv,
    _jeffreys,
    _pearson,
    _neyman,
    _triangular,
)

_REGISTRY: dict[str, FDivergence] = {d.name: d for d in (make() for make in _BUILTINS)}
BUILTIN_NAMES: tuple[str, ...] = tuple(_REGISTRY)


# --------------------------------------------------------------------------------------------------
# Validation of user generators.


@dataclass(frozen=True)
class Validation:
    """The outcome of :func:`validate`.

    ``convexity_method`` is ``"symbolic"`` when sympy proved ``f''(u) >= 0`` for all ``u > 0``,
    ``"numeric grid"`` when it could not and convexity was checked numerically (grid plus asymptotics,
    :mod:`ladtheory.convexity`; a check, not a proof), ``"refuted"`` or ``"undecided"`` otherwise.
    """

    f_at_1_ok: bool
    convex: bool
    convexity_method: str
    message: str

    @property
    def ok(self) -> bool:
        return self.f_at_1_ok and self.convex


def validate(expr: sp.Expr | str, params: Mapping[str, tuple] | None = None) -> Validation:
    """Check that ``expr`` is a valid f-divergence generator: ``f(1) = 0`` and convex on ``(0, inf)``, for
    every value of the declared parameters (``{"a": (0, 1)}``: open ranges). Convexity is decided by
    :func:`ladtheory.convexity.convexity` (proved symbolically on exact input, or checked numerically on a
    grid plus the asymptotics, under a time budget); an undecided convexity is not valid."""
    from ladtheory import convexity as cx

    expr = cx.exact(_as_expr(expr, params=tuple(params or ())))
    symbols = {s.name: s for s in expr.free_symbols}
    ranges = {symbols[k]: v for k, v in (params or {}).items() if k in symbols}
    at_1, why = cx.budgeted(lambda: sp.simplify(expr.subs(U, 1)))
    f_at_1_ok = at_1 == 0
    if at_1 is None:
        at_1 = expr.subs(U, 1)
    if not f_at_1_ok and at_1.is_number:
        f_at_1_ok = abs(complex(sp.N(at_1, 40))) < 1e-35
    conv = cx.convexity(expr, U, ranges)
    method = {"proved": "symbolic", "checked": "numeric grid"}.get(conv.verdict, conv.verdict)
    problems = []
    if not f_at_1_ok:
        problems.append(f"f(1) = 0 fails: f(1) = {at_1}" + (f" ({why})" if why else ""))
    if conv.convex is False:
        problems.append(f"convexity on (0, inf) fails: {conv.detail}")
    elif conv.convex is None:
        problems.append(f"convexity on (0, inf) undecided: {conv.detail}")
    message = "; ".join(problems) if problems else f"valid (convexity {conv.verdict}: {conv.detail})"
    return Validation(f_at_1_ok, bool(conv.convex), method, message)


_ALLOWED = re.compile(r"^[0-9A-Za-z_+\-*/^().,<>=&|\s]*$")
_FUNCTIONS = {
    name: getattr(sp, name)
    for name in ("log", "exp", "sqrt", "Abs", "sin", "cos", "tanh", "sinh", "cosh", "pi", "E", "Rational",
                 "Piecewise", "Max", "Min", "sign")
}
_FUNCTIONS["max"] = sp.Max
_FUNCTIONS["min"] = sp.Min
_FUNCTIONS["abs"] = sp.Abs
_FUNCTIONS["ln"] = sp.log


def _as_expr(expr: sp.Expr | str, params: tuple[str, ...] = ()) -> sp.Expr:
    """Parse a generator given as text (in the variable ``u`` and the named real ``params``) or accept a
    sympy expression."""
    declared = {name: sp.Symbol(name, real=True) for name in params}
    if isinstance(expr, str):
        text = expr.strip()
        if not text:
            raise DivergenceError("cannot parse the generator: the expression is empty")
        if not _ALLOWED.match(text) or "__" in text:
            bad = sorted({c for c in text if not _ALLOWED.match(c)}) or ["__"]
            raise DivergenceError(f"cannot parse the generator {text!r}: unexpected characters {bad}")
        try:
            from sympy.parsing.sympy_parser import (
                convert_xor,
                implicit_multiplication,
                parse_expr,
                standard_transformations,
            )

            parsed = parse_expr(
                text,
                local_dict={"u": U, **_FUNCTIONS, **declared},
                global_dict={"Integer": sp.Integer, "Float": sp.Float, "Symbol": sp.Symbol,
                             "Function": sp.Function, "Rational": sp.Rational},
                transformations=standard_transformations + (convert_xor, implicit_multiplication),
            )
        except Exception as err:  # SyntaxError, TokenError, TypeError, ...: all mean "not an expression"
            raise DivergenceError(
                f"cannot parse the generator {text!r}: {type(err).__name__}: {err}"
            ) from None
        expr = parsed
    if not isinstance(expr, sp.Expr):
        raise DivergenceError(f"the generator must be an expression in u, got {type(expr).__name__}")
    # Rename any user symbol called u to our positive U.
    free = expr.free_symbols
    renames = {s: U for s in free if s.name == "u" and s is not U}
    expr = expr.xreplace(renames)
    expr = expr.xreplace({s: declared[s.name] for s in expr.free_symbols if s.name in declared})
    others = sorted(s.name for s in expr.free_symbols if s is not U and s.name not in declared)
    if others:
        raise DivergenceError(
            f"the generator must be a function of u only; unknown symbols: {', '.join(others)}"
        )
    undefined = sorted(
        str(f.func) for f in expr.atoms(sp.Function) if isinstance(f, sp.core.function.AppliedUndef)
    )
    if undefined:
        raise DivergenceError(f"the generator {expr} uses unknown functions: {', '.join(undefined)}")
    return expr


# Namespace for lambdify: elementary functions that work on numpy arrays and torch tensors alike.
_DUAL_NAMESPACE = {
    "exp": _exp,
    "log": _log,
    "sqrt": _dual(np.sqrt, torch.sqrt),
    "Abs": _abs,
    "sign": _sign,
    "sin": _dual(np.sin, torch.sin),
    "cos": _dual(np.cos, torch.cos),
    "tanh": _dual(np.tanh, torch.tanh),
    "sinh": _sinh,
    "cosh": _dual(np.cosh, torch.cosh),
    "pi": math.pi,
    "E": math.e,
}


def _compile_log_space(expr_u: sp.Expr) -> Callable[[Array], Array]:
    """``z -> expr(e^z)``: rewrite in z (log(e^z) -> z, sqrt(e^z) -> e^{z/2}) and compile."""
    in_z = sp.expand_log(sp.powsimp(expr_u.subs(U, sp.exp(Z)), force=True), force=True)
    # NumPy's printer (bare names, resolved in our dual namespace first) handles sign, Piecewise-free
    # expressions and constants; the dual namespace makes the same code run on torch tensors.
    fn = sp.lambdify(Z, in_z, modules=[_DUAL_NAMESPACE, "numpy"])

    def evaluate(z):
        out = fn(z)
        if _is_torch(z) and not _is_torch(out):  # constant expression
            return torch.full_like(z, float(out))
        if isinstance(z, np.ndarray) and np.ndim(out) == 0:
            return np.full_like(z, float(out), dtype=float)
        return out

    return evaluate


def from_expression(expr: sp.Expr | str, name: str | None = None) -> FDivergence:
    """Build an :class:`FDivergence` from a user generator (text in ``u`` or sympy), after validation.

    Raises:
        DivergenceError: the text does not parse, is not a function of ``u`` alone, ``f(1) != 0``, or
            ``f`` is not convex on ``(0, inf)``; the message names the failed condition.
    """
    expr = _as_expr(expr)
    report = validate(expr)
    if not report.ok:
        raise DivergenceError(f"invalid f-divergence generator {expr}: {report.message}")
    return FDivergence(
        name or str(expr),
        expr,
        f_log=_compile_log_space(expr),
        f_prime_log=_compile_log_space(sp.diff(expr, U)),
        description=f"user generator {expr} ({report.message})",
    )


def register(name: str, expr: sp.Expr | str | FDivergence, *, overwrite: bool = False) -> FDivergence:
    """Validate and add a generator to the registry under ``name``; returns it."""
    if not name or not re.match(r"^[A-Za-z_][A-Za-z0-9_:.\-]*$", name):
        raise DivergenceError(f"invalid divergence name {name!r}")
    if name in _REGISTRY and not overwrite:
        raise DivergenceError(
            f"divergence {name!r} is already registered (pass overwrite=True to replace it)"
        )
    if name in BUILTIN_NAMES:
        raise DivergenceError(f"{name!r} is a built-in divergence and cannot be replaced")
    div = expr if isinstance(expr, FDivergence) else from_expression(expr, name=name)
    if isinstance(expr, FDivergence) and not validate(expr.expr).ok:
        raise DivergenceError(f"invalid f-divergence generator {expr.expr}: {validate(expr.expr).message}")
    if div.name != name:
        div = FDivergence(name, div.expr, div.f_log, div.f_prime_log, div.description)
    _REGISTRY[name] = div
    return div


def unregister(name: str) -> None:
    """Remove a user-registered generator (built-ins stay)."""
    if name in BUILTIN_NAMES:
        raise DivergenceError(f"{name!r} is a built-in divergence and cannot be removed")
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """Registered generator names (built-ins first, then user generators)."""
    return list(_REGISTRY)


def get(name: str | FDivergence) -> FDivergence:
    """Look up a generator by name; ``alpha:A`` builds an alpha-family member; an FDivergence passes
    through unchanged."""
    if isinstance(name, FDivergence):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name, str) and name.startswith("alpha:"):
        try:
            a = float(name.split(":", 1)[1])
        except ValueError:
            raise DivergenceError(f"bad alpha divergence {name!r}: expected alpha:<number>") from None
        return alpha(a)
    raise DivergenceError(f"unknown divergence {name!r}; known: {', '.join(names())}, alpha:<a>")


__all__ = [
    "U",
    "Z",
    "BUILTIN_NAMES",
    "DivergenceError",
    "FDivergence",
    "Validation",
    "alpha",
    "from_expression",
    "get",
    "names",
    "register",
    "unregister",
    "validate",
]
