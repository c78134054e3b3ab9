"""Every result in proofs/ checks (steps, claims, links); the CLI reports honest counts and exits right.

The adversarial mutations live in tests/proofs/test_mutations.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ladtheory import proof
from ladtheory.proof import Derivation, DerivationReport, Status, load_results

PROOF_FILES = sorted(p for p in proof.PROOFS_DIR.glob("*.py") if not p.name.startswith("_"))
EXPECTED = {
    "lemma_3_1_trust_region",
    "equivalence_policy_advantage",
    "lemma_3_2_surrogate",
    "gradient_formula",
    "flowrl_special_case",
    "grpo_small_step_limit",
    "effective_weight_range",
    # issue 19: the theory of what is trained
    "brake_lemma",
    "lemma_3_2_uniqueness",
    "gibbs_inequality",
    "constrained_trust_region",
    "token_level_ratio",
    "iterated_lad",
    "grpo_limit_remainder",
}


@pytest.fixture(scope="module")
def results():
    return {r.name: r for r in load_results()}


@pytest.fixture(scope="module")
def reports(results):
    return {name: r.check() for name, r in results.items()}


def test_proofs_folder_holds_one_file_per_result(results):
    assert {p.stem for p in PROOF_FILES} == EXPECTED
    assert set(results) == EXPECTED


@pytest.mark.parametrize("path", PROOF_FILES, ids=lambda p: p.stem)
def test_proof_file_opens_with_statement_and_assumptions(path: Path):
    text = path.read_text()
    assert text.startswith('r"""'), "the file opens with its statement"
    doc = text.split('"""')[1]
    assert "Statement" in doc and "Assumptions" in doc and ":math:" in doc


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_step_of_every_result_checks(results, reports, name):
    report = reports[name]
    failed = [(p.name, [(s.index, s.rule, s.detail) for s in p.steps if s.status is Status.FAILED])
              if isinstance(p, DerivationReport) else (p.name, p.detail) for p in report.parts if not p.ok]
    assert failed == []
    assert [c.detail for c in report.claims if c.status is Status.FAILED] == []
    derivations = [p for p in results[name].parts if isinstance(p, Derivation)]
    assert derivations, "each result has at least one symbolic derivation"
    assert all(p.claim.status is Status.SYMBOLIC for p in report.parts if isinstance(p, DerivationReport))


def test_algebraic_steps_are_symbolic_not_numeric(reports):
    # Numeric status is allowed only for the 'evaluate' rule and for NumericCheck parts.
    numeric = [(r.name, p.name, s.index, s.rule) for r in reports.values() for p in r.parts
               if isinstance(p, DerivationReport) for s in p.steps
               if s.status is Status.NUMERIC and s.rule != "evaluate"]
    assert numeric == []


def test_cli_checks_everything_and_exits_zero(capsys):
    assert proof.main(["--only", "equivalence"]) == 0
    out = capsys.readouterr().out
    assert (
        "equivalence_policy_advantage" in out and "all derivations check (0 of 8 steps only numeric)" in out
    )
    assert "SSS S" in out  # per-step marks, then the claim's


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_cli_exits_one_on_a_false_step(tmp_path, capsys):
    _write(tmp_path, "bad.py", """
        import sympy as sp
        from ladtheory.proof import Derivation, Result
        x = sp.Symbol("x", positive=True)

        def result():
            d = Derivation("square", "square", (x + 1) ** 2, claim=sp.Eq((x + 1) ** 2, x**2 + x + 1))
            d.step(x**2 + x + 1, "algebra", "forgot the 2")
            return Result("bad", "Bad", [d.claim], [d])
    """)
    assert proof.main(["--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "step 1 [algebra] FAILED" in out and "FAILED: 2 part(s) or claim(s)" in out


def test_cli_reports_a_crashing_proof_file_with_its_line(tmp_path, capsys):
    path = _write(tmp_path, "crash.py", """
        def result():
            return 1 / 0
    """)
    assert proof.main(["--dir", str(tmp_path)]) == 1
    assert f"{path}:3: ZeroDivisionError" in capsys.readouterr().out


def test_cli_user_errors_exit_two(tmp_path, capsys):
    assert proof.main(["--dir", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert proof.main(["--only", "no-such-result"]) == 2
    _write(tmp_path, "badrule.py", """
        import sympy as sp
        from ladtheory.proof import Derivation, Result

        def result():
            d = Derivation("d", "d", sp.Integer(1), claim=sp.Eq(1, 1, evaluate=False)).step(1, "magic")
            return Result("r", "r", [d.claim], [d])
    """)
    assert proof.main(["--dir", str(tmp_path)]) == 2
    assert "unknown rule 'magic'" in capsys.readouterr().err


def test_markdown_rendering_of_real_results(results, reports):
    md = results["lemma_3_1_trust_region"].to_markdown(reports["lemma_3_1_trust_region"])
    assert "\\begin{aligned}" in md and "symbolic" in md and "numeric check" in md
