r"""Puzzle 24: make 24 from four numbers, each used exactly once, with ``+ - * /`` and parentheses.

A task whose problems have many valid answers (measured below), scored exactly by our own parser.

* **Problems** come from ``reasoning-gym``'s ``puzzle24`` generator (four numbers and a left-to-right
  expression that reaches 24), de-duplicated by the multiset of numbers and kept only if our own exact
  enumeration finds a solution; cached as JSON (with the solutions) under the cache directory
  (``$LADTRAIN_CACHE`` or ``~/.cache/ladtrain``). The generator's config caps the numbers at 10, which
  gives at most 715 multisets (566 solvable); we widen the range to 1..13 (the classic card game, 1820
  multisets) by relaxing only that check, so that the test split can hold >= 200 problems and a
  validation split >= 100. The generator is slow (sympy, ~45 ms a draw): the first load of the default
  6000 draws takes 4-8 minutes, later loads read the cache.
* **Splits** by a stable hash of the problem key (the sorted numbers): ``test`` is the first
  ``test_fraction`` of the hash range, ``validation`` the next ``validation_fraction`` (default 0: none),
  ``train`` the rest; so the test split does not depend on ``validation_fraction`` or the generator's order.
* **All solutions** are enumerated: every binary expression tree over the four numbers with ``+ - * /``
  in exact :class:`fractions.Fraction` arithmetic (division by zero skipped), each rendered in a
  **canonical form**: sums and products are flattened (``a-b`` is ``a+(-b)``, ``a/b`` is ``a*(1/b)``, so
  ``a-(b-c)`` is ``a-b+c`` and ``a/(b/c)`` is ``a*c/b``) and their operands sorted, so two expressions
  equal up to commutativity and associativity are the same answer; parentheses only where a sum is a
  factor (``8*(4-1)``). ``problem.meta["solutions"]`` holds the canonical forms of at most
  :data:`MAX_ANSWER_CHARS` characters (the warm-up draws among them; all of them fit, measured below).
* **Scoring is safe**: a recursive-descent parser for integers, ``+ - * /`` and parentheses (no unary
  minus, no other character; at most :data:`MAX_CHARS` characters and :data:`MAX_DEPTH` nested
  parentheses); model text never reaches ``eval`` or sympy (reasoning-gym's scorer calls sympy's
  ``parse_expr``). Reward 1 iff the expression uses exactly the given numbers, each once, and equals 24
  exactly; ``Score.answer`` is the canonical form. Reasons: ``correct``; ``wrong`` (other numbers, another
  value, division by zero); ``unparsable``; ``no_answer``; ``no_tag`` (worded prompt without tags).

Prompts (``prompt=compact|worded|auto`` as for countdown): compact ``4 7 8 8 -> 24\n`` (every character
is a token of the built-in model; the longest prompt, 18 characters, plus 16 new tokens fits its 64
positions); worded (:data:`WORDED`) with the answer inside ``<answer></answer>`` tags, for chat models;
auto is compact until the trainer calls :meth:`Puzzle24Task.for_chat`.

Measured on the default task (6000 draws, seed 1234: 1011 distinct solvable problems; test 214,
validation 98 at ``validation_fraction=0.1``, 111 at 0.11, 118 at 0.12; ``python -c "from
ladtrain.tasks.puzzle24 import answer_stats; print(answer_stats())"``), distinct valid answers per
test problem: mean 3.91, median 3, 79% have >= 2, 29% have >= 5, max 22 (train: mean 3.83, 81% >= 2).
Countdown's default task: 42% have >= 2. (Over all 1362 solvable multisets of 1..13 the mean is 3.28 and
71% have >= 2: the generator favours problems with a left-to-right solution.) Canonical solutions have 7
to 15 characters, so none is dropped from the warm-up.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from ladtrain.tasks import TaskError
from ladtrain.tasks.base import Problem, Score, cached_rows, check_split
from ladtrain.tasks.countdown import cache_dir, extract_answer, split_of

TARGET = 24
PROMPT = "{numbers} -> 24\n"  # compact: every character is a token for the built-in model
WORDED = ("Use the numbers {numbers}, each exactly once, with the operators +, -, *, / and parentheses "
          "(exact division; no other operators, no unary minus) to write an expression that equals 24."
          "\n\nThink briefly, then give only the expression inside <answer></answer> tags.")
STYLES = ("auto", "compact", "worded")
MAX_CHARS = 200  # longer answers are unparsable (bounds the parser's work)
MAX_DEPTH = 16  # nested parentheses beyond this are unparsable (bounds the parser's recursion)
MAX_ANSWER_CHARS = 15  # warm-up solutions: the answer plus EOS fits 16 new tokens
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_TOKEN = re.compile(r"\s*(?:([0-9]+)|([-+*/()]))")  # ASCII digits only (\d takes any Unicode digit)

# A canonical expression node: ("n", value) a number; ("s", ((sign, node), ...)) a flattened sum of
# signed terms; ("p", ((exponent, node), ...)) a flattened product of factors with exponent +1 or -1.
# The items are sorted (:func:`_order`), so equal nodes are the same answer.
Node = tuple


class ExpressionError(ValueError):
    """A completion that is not an expression of the allowed form."""


def _order(item: tuple[int, Node]) -> tuple:
    """Positive terms (numerator factors) first; numbers before compound operands, larger first."""
    sign, node = item
    return (-sign, 0, -node[1], "") if node[0] == "n" else (-sign, 1, 0, render(node))


def combine(op: str, a: Node, b: Node) -> Node:
    """The canonical node of ``a op b``: sums and products flattened, operands sorted."""
    kind = "s" if op in "+-" else "p"
    flip = -1 if op in "-/" else 1

    def items(x: Node, s: int) -> list[tuple[int, Node]]:
        return [(s * si, c) for si, c in x[1]] if x[0] == kind else [(s, x)]

    return (kind, tuple(sorted(items(a, 1) + items(b, flip), key=_order)))


@lru_cache(maxsize=200_000)
def render(node: Node) -> str:
    """Canonical text with minimal parentheses (only a sum inside a product has them)."""
    if node[0] == "n":
        return str(node[1])
    out = []
    for i, (sign, child) in enumerate(node[1]):
        text = render(child)
        if node[0] == "s":
            out.append(text if i == 0 and sign > 0 else ("+" if sign > 0 else "-") + text)
        else:
            text = f"({text})" if child[0] == "s" else text
            out.append(text if i == 0 and sign > 0 else ("*" if sign > 0 else "/") + text)
    return "".join(out)


def value(node: Node) -> Fraction | None:
    """The exact value, None when a division by zero occurs."""
    if node[0] == "n":
        return Fraction(node[1])
    total = Fraction(0 if node[0] == "s" else 1)
    for sign, child in node[1]:
        v = value(child)
        if v is None or (node[0] == "p" and sign < 0 and v == 0):
            return None
        total = total + sign * v if node[0] == "s" else (total * v if sign > 0 else total / v)
    return total


def numbers_of(node: Node) -> list[int]:
    """The numbers used, sorted."""
    return sorted([node[1]] if node[0] == "n" else [n for _, c in node[1] for n in numbers_of(c)])


def parse(text: str) -> Node:
    """Parse integers, ``+ - * /`` and parentheses into a canonical node; :class:`ExpressionError`
    otherwise (also past :data:`MAX_CHARS` characters or :data:`MAX_DEPTH` nested parentheses)."""
    text = text.strip()
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"longer than {MAX_CHARS} characters")
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected character {text[pos]!r}")
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
    at = 0

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def expression(depth: int) -> Node:
        nonlocal at
        node = term(depth)
        while peek() in ("+", "-"):
            at += 1
            node = combine(tokens[at - 1], node, term(depth))
        return node

    def term(depth: int) -> Node:
        nonlocal at
        node = factor(depth)
        while peek() in ("*", "/"):
            at += 1
            node = combine(tokens[at - 1], node, factor(depth))
        return node

    def factor(depth: int) -> Node:
        nonlocal at
        token = peek()
        if token is None:
            raise ExpressionError("expression ends early")
        at += 1
        if token[0] in "0123456789":
            if len(token) > 6:
                raise ExpressionError("number too long")
            return ("n", int(token))
        if token != "(":
            raise ExpressionError(f"expected a number, got {token!r}")
        if depth >= MAX_DEPTH:
            raise ExpressionError(f"more than {MAX_DEPTH} nested parentheses")
        node = expression(depth + 1)
        if peek() != ")":
            raise ExpressionError("missing ')'")
        at += 1
        return node

    if not tokens:
        raise ExpressionError("empty expression")
    node = expression(0)
    if at != len(tokens):
        raise ExpressionError(f"unexpected {tokens[at]!r}")
    return node


@lru_cache(maxsize=4096)
def _results(numbers: tuple[int, ...]) -> dict[Fraction, frozenset]:
    """Every canonical node over ``numbers`` (each used once), grouped by exact value."""
    if len(numbers) == 1:
        return {Fraction(numbers[0]): frozenset([("n", numbers[0])])}
    out: dict[Fraction, set] = {}
    for va, vb, a_nodes, b_nodes in _pairs(numbers):
        for op in "+-*/":
            v = _apply(op, va, vb)
            if v is not None:
                out.setdefault(v, set()).update(combine(op, a, b) for a in a_nodes for b in b_nodes)
    return {v: frozenset(s) for v, s in out.items()}


def _pairs(numbers: tuple[int, ...]):
    """``(value_a, value_b, nodes_a, nodes_b)`` over every split of ``numbers`` into two ordered parts."""
    n = len(numbers)
    for mask in range(1, 2**n - 1):
        left = tuple(x for i, x in enumerate(numbers) if mask >> i & 1)
        right = tuple(x for i, x in enumerate(numbers) if not mask >> i & 1)
        for va, a_nodes in _results(left).items():
            for vb, b_nodes in _results(right).items():
                yield va, vb, a_nodes, b_nodes


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    if op == "/":
        return None if b == 0 else a / b
    return a + b if op == "+" else a - b if op == "-" else a * b


def solutions(numbers) -> list[str]:
    """Every distinct canonical expression over ``numbers`` (each once) that equals 24, sorted."""
    numbers = tuple(sorted(numbers))
    found: set[str] = set()
    for va, vb, a_nodes, b_nodes in _pairs(numbers):
        for op in "+-*/":
            if _apply(op, va, vb) == TARGET:
                found.update(render(combine(op, a, b)) for a in a_nodes for b in b_nodes)
    return sorted(found, key=lambda s: (len(s), s))


@dataclass(frozen=True)
class Puzzle24Task:
    """Puzzle 24 over four numbers from ``min_value``..``max_value``."""

    min_value: int = 1
    max_value: int = 13
    draws: int = 6000
    test_fraction: float = 0.2
    validation_fraction: float = 0.0
    seed: int = 1234
    name: str = "puzzle24"
    prompt: str = "auto"
    _splits: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.prompt not in STYLES:
            raise TaskError(f"puzzle24: prompt={self.prompt!r}; known: {', '.join(STYLES)}")
        if not 1 <= self.min_value <= self.max_value <= 13:
            raise TaskError(f"puzzle24: min_value={self.min_value}, max_value={self.max_value}: need "
                            "1 <= min_value <= max_value <= 13")
        if not (0 < self.test_fraction < 1 and 0 <= self.validation_fraction < 1
                and self.test_fraction + self.validation_fraction < 1):
            raise TaskError(f"puzzle24: test_fraction={self.test_fraction}, validation_fraction="
                            f"{self.validation_fraction}: need 0 < test, 0 <= validation, "
                            "test + validation < 1")
        if self.draws < 1:
            raise TaskError(f"puzzle24: draws={self.draws} must be >= 1")

    @property
    def worded(self) -> bool:
        return self.prompt == "worded"

    def for_chat(self) -> Puzzle24Task:
        """This task for a chat model: ``prompt=auto`` becomes ``worded``; an explicit style is kept."""
        return self if self.prompt != "auto" else replace(self, prompt="worded", _splits={})

    def render_prompt(self, numbers: list[int]) -> str:
        if self.worded:
            return WORDED.format(numbers=", ".join(map(str, numbers)))
        return PROMPT.format(numbers=" ".join(map(str, numbers)))

    def _cache_file(self) -> Path:
        key = f"v1-min{self.min_value}-max{self.max_value}-draws{self.draws}-seed{self.seed}"
        return cache_dir() / "puzzle24" / f"{key}.json"

    def _generate(self) -> list[dict]:
        """Draw with reasoning-gym's generator; keep one problem per multiset, if solvable."""
        from reasoning_gym.games.puzzle24 import Puzzle24Config, Puzzle24Dataset

        class WideConfig(Puzzle24Config):
            def validate(self) -> None:  # reasoning-gym caps max_value at 10; ours is checked above
                assert 1 <= self.min_value <= self.max_value and self.size > 0

        config = WideConfig(min_value=self.min_value, max_value=self.max_value, seed=self.seed,
                            size=self.draws)
        dataset = Puzzle24Dataset(config)
        rows, seen = [], set()
        for i in range(self.draws):
            numbers = [int(n) for n in dataset[i]["metadata"]["numbers"]]
            key = tuple(sorted(numbers))
            if key in seen:
                continue
            seen.add(key)
            sols = solutions(key)
            if sols:
                rows.append({"numbers": numbers, "solutions": sols})
        return rows

    def _rows(self) -> list[dict]:
        return cached_rows(self._cache_file(), self._generate)

    def problems(self, split: str) -> list[Problem]:
        check_split(split)
        if not self._splits:
            splits: dict[str, list[Problem]] = {"train": [], "validation": [], "test": []}
            for row in self._rows():
                numbers, sols = row["numbers"], row["solutions"]
                key = "-".join(map(str, sorted(numbers)))
                problem = Problem(
                    id=key, prompt=self.render_prompt(numbers), reference=TARGET,
                    meta={"numbers": numbers, "target": TARGET, "n_answers": len(sols),
                          "solutions": [s for s in sols if len(s) <= MAX_ANSWER_CHARS]},
                )
                splits[split_of(key, self.test_fraction, self.validation_fraction)].append(problem)
            self._splits.update(splits)
        return self._splits[split]

    def score(self, problem: Problem, completion: str) -> Score:
        if self.worded and not _ANSWER_TAG.search(completion):
            return Score(0.0, None, "no <answer> tag", "no_tag")
        text = extract_answer(completion)
        if not text:
            return Score(0.0, None, "no expression", "no_answer")
        try:
            node = parse(text)
        except ExpressionError as err:
            return Score(0.0, None, str(err), "unparsable")
        answer = render(node)
        if numbers_of(node) != sorted(problem.meta["numbers"]):
            return Score(0.0, answer, "numbers do not match", "wrong")
        v = value(node)
        if v is None:
            return Score(0.0, answer, "division by zero", "wrong")
        if v != TARGET:
            return Score(0.0, answer, "wrong value", "wrong")
        return Score(1.0, answer, "correct", "correct")


def answer_stats(task: Puzzle24Task | None = None, split: str = "test") -> dict:
    """Distinct valid answers per problem of ``split``: count, mean, median, shares with >= 2 and >= 5,
    max; and the longest canonical solution."""
    problems = (task or Puzzle24Task()).problems(split)
    counts = [p.meta["n_answers"] for p in problems]
    longest = max(len(s) for row in (task or Puzzle24Task())._rows() for s in row["solutions"])
    def share(k: int) -> float:
        return round(sum(c >= k for c in counts) / len(counts), 3)

    return {"problems": len(counts), "mean": round(statistics.mean(counts), 2),
            "median": statistics.median(counts), "share_ge2": share(2), "share_ge5": share(5),
            "max": max(counts), "longest_solution_chars": longest}


def make(arg: str | None = None, **options) -> Puzzle24Task:
    """Registry factory: ``puzzle24[,KEY=VALUE]...``; options are :class:`Puzzle24Task` fields."""
    if arg:
        raise TaskError(f"puzzle24:{arg}: takes no argument (options: puzzle24,max_value=10,...)")
    return Puzzle24Task(**options)


__all__ = ["MAX_ANSWER_CHARS", "MAX_CHARS", "MAX_DEPTH", "PROMPT", "STYLES", "WORDED", "ExpressionError",
           "Puzzle24Task", "answer_stats", "combine", "make", "numbers_of", "parse", "render", "solutions",
           "value"]
