r"""A small engine for step-checked derivations that cannot be told a claim it has not proved.

How to write a result (one file ``proofs/NAME.py`` that defines ``result() -> Result``):

.. code-block:: python

    import sympy as sp
    from ladtheory.proof import Derivation, Fact, Result

    x = sp.Symbol("x", positive=True)
    Z = sp.Symbol("Z", positive=True)
    Z_DEF = Fact("Z", sp.Eq(Z, 2 * x), "definition")

    def half() -> Derivation:
        d = Derivation("half", "x is half of Z", x / Z,
                       claim=sp.Eq(x / Z, sp.Rational(1, 2)),   # what the chain must prove
                       facts=[Z_DEF])
        d.step(sp.Rational(1, 2), "substitute", "definition of Z", using="Z")
        return d

    def result() -> Result:
        return Result(name="example", title="An example", claims=[half().claim], parts=[half()])

The rules:

1. **A claim is a sympy relation, and it is checked, not declared.** Each :class:`Derivation` carries
   ``claim=``: ``Eq``/``Ge``/``Gt``/``Lt``/``Le`` for an expression chain, ``Implies``/``Equivalent`` for an
   equation chain. The engine computes what the chain proves from its first line, its last line and the
   relations of its steps (``ladtheory/proof/chain.py`` says how) and fails the derivation unless that is
   exactly the claim. A :class:`Result` lists its ``claims``; each must be the claim of one of its checked
   derivations. The book and ``--markdown`` render claims from these objects.
2. **Facts are typed.** A :class:`Fact` is a ``definition`` (names an expression), a ``hypothesis`` (an
   assumption: listed as one wherever the result is shown) or ``derived``: then ``proved_by`` names the
   derivation that proves it, ``"part name"`` in the same result or ``"file_stem: part name"`` in another
   proof file, and the engine checks the fact *is* that derivation's claim (or the conclusion of its
   implication) and that it checks. Two parts of one result that define the same name must agree. Share
   objects between parts (one Lagrangian, one summand) by building them once at module level.
3. **Order-preserving steps prove their side conditions**: ``jensen`` needs a positive outer coefficient,
   nonnegative weights that sum to one (from a stated fact) and a declared-convex function; ``positive``/
   ``negative`` decide a sign from sympy's assumptions; an inequality cannot be differentiated, and a step
   against the chain's direction breaks it.
4. **Numbers are evidence, not proof.** Where sympy cannot decide an equality, a 40-digit check over the
   whole declared domain of every symbol (both signs, 0, magnitudes 1e-9..1e9, kinks) stands in and the
   step is ``NUMERIC``; ``evaluate`` compares a constant at 50 digits with a fixed tolerance 1e-12; a
   ``limit`` is confirmed by a leading-term expansion (where sympy gives one) and by evaluation ever closer to
   the point. Tolerances are the engine's. Every summary says how many steps are only numeric.
   :class:`NumericCheck` parts (experiments, runtime-versus-sympy comparisons) are always ``NUMERIC``.

The rules available: ``algebra``, ``linearity``, ``substitute`` (``using=``), ``diff`` (``var=``),
``partial_separable`` (``base=``, ``index=``), ``solve`` (``var=``), ``sum_both_sides`` (``index=``,
``limits=``, ``as_index=``), ``series`` (``var=``, ``point=``, ``order=``), ``limit`` (``var=``, ``point=``,
``dir=``), ``stationary``, ``positive``, ``negative``, ``evaluate``, ``jensen`` (``function=``,
``weights_sum=``); :data:`RULES` holds them with their descriptions.

API for renderers (the book): :func:`load_results`; ``Result.check() -> ResultReport`` (``ok``, ``parts``
aligned with ``Result.parts``, ``claims``, ``numeric_steps``); ``Result.to_markdown(report)``;
``Derivation.rows(report)``; :func:`summary_line`.
"""

from __future__ import annotations

from ladtheory.proof.chain import Derivation, DerivationReport, StepReport
from ladtheory.proof.cli import main
from ladtheory.proof.core import Fact, ProofError, Status, Step, Verdict
from ladtheory.proof.equality import numeric_equal, same_relation
from ladtheory.proof.render import claim_latex, summary_line
from ladtheory.proof.result import (
                                    PROOFS_DIR,
                                    NumericCheck,
                                    NumericReport,
                                    Result,
                                    ResultReport,
                                    load_file,
                                    load_results,
)
from ladtheory.proof.rules import RULES, Rule, approximately

__all__ = [
    "Status", "Fact", "Step", "Verdict", "Rule", "RULES", "Derivation", "DerivationReport", "StepReport",
    "NumericCheck", "NumericReport", "Result", "ResultReport", "ProofError", "PROOFS_DIR", "load_file",
    "load_results", "main", "numeric_equal", "same_relation", "approximately", "claim_latex", "summary_line",
]
