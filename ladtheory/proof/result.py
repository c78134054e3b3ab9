"""A :class:`Result`: one theorem (one file in ``proofs/``), its claims, its parts; links between results."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import sympy as sp

from ladtheory.proof.chain import Derivation, DerivationReport
from ladtheory.proof.core import Fact, ProofError, Status, Verdict
from ladtheory.proof.equality import canonical_sums, same_relation

PROOFS_DIR = Path(__file__).resolve().parent.parent.parent / "proofs"


@dataclass(frozen=True)
class NumericReport:
    name: str
    error: float
    tolerance: float
    detail: str
    seconds: float

    @property
    def status(self) -> Status:
        return Status.NUMERIC if self.error <= self.tolerance else Status.FAILED

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAILED


@dataclass(frozen=True)
class NumericCheck:
    """A numeric experiment: ``run()`` returns ``(error, detail)``; it passes when ``error <= tolerance``.

    Always reported as NUMERIC (evidence), never as a proof; ``claim`` (LaTeX) says what is measured.
    """

    name: str
    title: str
    claim: str
    run: Callable[[], tuple[float, str]]
    tolerance: float

    def check(self) -> NumericReport:
        t = time.perf_counter()
        try:
            error, detail = self.run()
            error = float(error)
        except Exception as exc:
            error, detail = float("inf"), f"{type(exc).__name__}: {exc}"
        if error != error:  # NaN never passes
            error = float("inf")
        return NumericReport(self.name, error, self.tolerance, detail, time.perf_counter() - t)

    def to_markdown(self, report: NumericReport | None = None) -> str:
        from ladtheory.proof.render import numeric_markdown

        return numeric_markdown(self, report)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


@dataclass(frozen=True)
class ResultReport:
    name: str
    parts: tuple  # DerivationReport | NumericReport, aligned with Result.parts
    claims: tuple[Verdict, ...]  # one per Result.claims entry: which part proves it
    seconds: float

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts) and all(c.status is not Status.FAILED for c in self.claims)

    @property
    def numeric_steps(self) -> int:
        return sum(p.numeric_steps for p in self.parts if isinstance(p, DerivationReport))


@dataclass
class Result:
    """One theorem: its ``claims`` (sympy relations, each proved by one derivation part), its parts.

    ``assumptions`` are prose conditions; the hypothesis facts of the parts are listed with them.
    """

    name: str
    title: str
    claims: Sequence[sp.Basic]
    parts: list
    assumptions: tuple[str, ...] = ()
    notes: str = ""
    source: str = ""  # the proof file (set by load_results)
    doc: str = ""  # the proof file's docstring
    _reports: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if isinstance(self.claims, sp.Basic):
            self.claims = (self.claims,)
        self.claims = tuple(self.claims)
        if not self.claims:
            raise ProofError(f"result {self.name!r} states no claim")
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ProofError(f"result {self.name!r}: two parts share a name")

    def derivation(self, name: str) -> Derivation:
        for p in self.parts:
            if isinstance(p, Derivation) and p.name == name:
                return p
        raise ProofError(f"result {self.name!r} has no derivation {name!r}")

    @property
    def hypotheses(self) -> list[Fact]:
        """Every hypothesis fact of the parts, once (derived facts are not assumptions)."""
        seen: dict[str, Fact] = {}
        for p in self.parts:
            if isinstance(p, Derivation):
                for f in p.facts.values():
                    if f.kind == "hypothesis":
                        seen.setdefault(f.name, f)
        return list(seen.values())

    def check(self) -> ResultReport:
        t = time.perf_counter()
        reports = {p.name: p.check() for p in self.parts}
        _check_shared_definitions(self, reports)
        for p in self.parts:
            if isinstance(p, Derivation):
                links = tuple(_link(self, p, f, reports) for f in p.facts.values() if f.kind == "derived")
                if links:
                    reports[p.name] = _with_links(reports[p.name], links)
        claims = tuple(_claim_proved(c, self, reports) for c in self.claims)
        self._reports = reports
        return ResultReport(
            self.name, tuple(reports[p.name] for p in self.parts), claims, time.perf_counter() - t
        )

    def to_markdown(self, report: ResultReport | None = None) -> str:
        from ladtheory.proof.render import result_markdown

        return result_markdown(self, report)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _with_links(rep: DerivationReport, links: tuple[Verdict, ...]) -> DerivationReport:
    return DerivationReport(rep.name, rep.steps, rep.claim, rep.proved, rep.hypotheses, rep.seconds,
                            rep.links + links)


def _check_shared_definitions(res: Result, reports: dict) -> None:
    """Two parts of one result that define the same name must define the same thing."""
    seen: dict[str, tuple[str, Fact]] = {}
    for p in res.parts:
        if not isinstance(p, Derivation):
            continue
        for f in p.facts.values():
            if f.kind != "definition":
                continue
            if f.name in seen and not same_relation(seen[f.name][1].eq, f.eq):
                v = Verdict(
                    Status.FAILED,
                    "shared definition",
                    f"definition {f.name!r} differs from the one in part {seen[f.name][0]!r}",
                )
                reports[p.name] = _with_links(reports[p.name], (v,))
            seen.setdefault(f.name, (p.name, f))


def _claim_proved(claim: sp.Basic, res: Result, reports: dict) -> Verdict:
    """A result's claim is the claim of one checked part, or (for ``Implies(P, C)``) a chain of checked parts'
    implications ``P => X_1 => ... => C`` (at most four links)."""
    good = [p for p in res.parts if isinstance(p, Derivation) and reports[p.name].ok]

    def status(names):
        numeric = any(reports[n].numeric_steps for n in names)
        return Status.NUMERIC if numeric else Status.SYMBOLIC

    def under(names) -> str:
        hyps = list(dict.fromkeys(h for n in names for h in reports[n].hypotheses))
        return f"; under {', '.join(hyps)}" if hyps else ""

    for compare in (_written_alike, same_relation):  # the cheap structural pass first
        verdict = _claim_search(claim, good, compare, status, under)
        if verdict is not None:
            return verdict
    return Verdict(Status.FAILED, "claim", f"no checked part of {res.name!r} proves {sp.sstr(claim)}")


def _written_alike(a: sp.Basic, b: sp.Basic) -> bool:
    return canonical_sums(a) == canonical_sums(b)


def _claim_search(claim, good, same, status, under) -> Verdict | None:
    for p in good:
        if same(claim, p.claim):
            return Verdict(status([p.name]), "claim", f"proved by part {p.name!r}{under([p.name])}")
    if isinstance(claim, sp.Implies):
        arrows = [(p.name, p.claim.args[0], p.claim.args[1]) for p in good if isinstance(p.claim, sp.Implies)]
        arrows += [(p.name, a, b) for p in good if isinstance(p.claim, sp.Equivalent)
                   for a, b in (p.claim.args, p.claim.args[::-1])]
        frontier = [(claim.args[0], [])]
        for _ in range(4):
            nxt = []
            for premise, path in frontier:
                for name, a, b in arrows:
                    if name not in path and same(premise, a):
                        if same(b, claim.args[1]):
                            return Verdict(status(path + [name]), "claim", "proved by the chain of parts "
                                           + " => ".join(path + [name]) + under(path + [name]))
                        nxt.append((b, path + [name]))
            frontier = nxt
    return None


# --- links: a derived fact is the claim of the derivation that proves it ---------------------------------

_LOADED: dict[Path, tuple[float, Result, dict]] = {}


def _other_result(stem: str, res: Result) -> tuple[Result, dict]:
    folder = Path(res.source).parent if res.source else PROOFS_DIR
    path = (folder / f"{stem}.py").resolve()
    if not path.is_file():
        raise ProofError(f"no proof file {path}")
    mtime = path.stat().st_mtime
    cached = _LOADED.get(path)
    if cached is None or cached[0] != mtime:
        other = load_file(path)
        other.check()
        cached = _LOADED[path] = (mtime, other, other._reports)
    return cached[1], cached[2]


def _link(res: Result, part: Derivation, fact: Fact, reports: dict) -> Verdict:
    if isinstance(fact.proved_by, tuple):
        stem, pname = fact.proved_by
        if Path(res.source).stem == stem:
            other, other_reports = res, reports
        else:
            try:
                other, other_reports = _other_result(stem, res)
            except ProofError as exc:
                return Verdict(Status.FAILED, "link", f"fact {fact.name!r}: {exc}")
    else:
        other, other_reports, pname = res, reports, fact.proved_by
    where = f"{Path(other.source).stem or other.name}: {pname}"
    try:
        source = other.derivation(pname)
    except ProofError:
        return Verdict(Status.FAILED, "link", f"fact {fact.name!r} names {where!r}, which does not exist")
    if source is part:
        return Verdict(Status.FAILED, "link", f"fact {fact.name!r} is used to prove itself")
    if not other_reports[pname].ok:
        return Verdict(Status.FAILED, "link", f"fact {fact.name!r}: {where!r} does not check")
    claim = source.claim
    if same_relation(fact.eq, claim):
        return Verdict(Status.SYMBOLIC, "link", f"fact {fact.name!r} is the claim of {where!r}")
    sides = [claim.args] if isinstance(claim, sp.Implies) else (
        [claim.args, claim.args[::-1]] if isinstance(claim, sp.Equivalent) else [])
    for premise, conclusion in sides:
        if same_relation(fact.eq, conclusion):
            return Verdict(Status.SYMBOLIC, "link", f"fact {fact.name!r} is the conclusion of {where!r} "
                           f"(under its premise {sp.sstr(premise)})")
    return Verdict(
        Status.FAILED,
        "link",
        f"fact {fact.name!r} ({sp.sstr(fact.eq)}) is not what {where!r} proves ({sp.sstr(claim)})",
    )


# --- loading proofs/ ------------------------------------------------------------------------------------


def load_file(path: Path) -> Result:
    spec = importlib.util.spec_from_file_location(f"ladproofs.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "result"):
        raise ProofError(f"{path}:1: defines no result() function")
    res = module.result()
    res.source = str(path)
    res.doc = module.__doc__ or ""
    return res


def proof_files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")]


def load_results(directory: str | Path | None = None) -> list[Result]:
    """Every ``proofs/*.py`` file's ``result()``, sorted by file name."""
    directory = Path(directory) if directory else PROOFS_DIR
    if not directory.is_dir():
        raise ProofError(f"{directory}: no such directory")
    return [load_file(p) for p in proof_files(directory)]
