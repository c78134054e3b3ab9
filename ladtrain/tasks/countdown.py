r"""Countdown: reach a target from given numbers, each used exactly once, with ``+ - *`` and no parentheses.

The built-in default task. Several different expressions are often correct, so diversity is measurable:
with 4 numbers from 1..6 (the default) 42% of the distinct problems have two or more genuinely different
solutions (45% with numbers from 1..5, whose ~820 problems a 1M-parameter model memorises within a few
minutes of RL; 1..6 gives ~1250 problems and a held-out gain that held across RL seeds, see the issue-5
note; with 3 numbers about 13% have several solutions).

* **Problems** come from ``reasoning-gym``'s countdown generator (numbers and target); its generator
  builds left-to-right expressions that may need parentheses, so we keep only problems that have a
  parenthesis-free solution, de-duplicate them by (multiset of numbers, target), and cache the result as
  JSON under the cache directory (``$LADTRAIN_CACHE`` or ``~/.cache/ladtrain``).
* **Held-out split**: a problem is in ``test`` when a stable hash of its key falls in the test fraction,
  so the split does not depend on the generator's seed or order, and train and test never share a
  (numbers, target) pair. ``validation_fraction=V`` (default 0: none) moves the next V of the hash range
  from train to a ``validation`` split, for choosing settings without looking at test
  (``--eval-split validation``); the test split is the same for every V.
* **All solutions** of every problem are enumerated (every ordering of the numbers times every operator
  sequence) and stored as canonical expressions in ``problem.meta["solutions"]``: the warm-up draws
  uniformly among them, and evaluation counts distinct correct answers.
* **Scoring is safe**: the completion is tokenised by a small regular expression into integers and
  operators and evaluated by our own two-level (sum of products) evaluator; model text is never passed
  to ``eval`` (reasoning-gym's own scorer calls sympy's ``parse_expr``, which does, so we do not use it).

Two expressions are *the same answer* when they are equal up to commutativity and associativity: the
canonical form is the multiset of signed products, rendered with factors in descending order, positive
terms first, terms in descending order of their factors (``5+4*3-2``). Reward is 1 for a correct
expression, else 0.

Prompts (``prompt=compact|worded|auto``, default ``auto``):

* **compact** (every character is a token of the built-in model): ``5 2 4 3 -> 15\n``; the built-in
  model completes it with the expression and an end-of-sequence token. The answer is the inside of
  ``<answer>...</answer>`` if present, else the first non-empty line of the completion.
* **worded**, for chat models: the rules in a sentence and an instruction to give only the expression
  inside ``<answer></answer>`` tags (:data:`WORDED`); the answer must be in the tags (reason ``no_tag``
  otherwise), so reasoning text before it is never read as the answer.
* **auto**: compact, and worded once the trainer calls :meth:`CountdownTask.for_chat` (the tokenizer has
  a chat template). Problem ids, splits and references are the same in every style.

Reasons: ``correct``; ``wrong`` (other numbers, or another value); ``unparsable`` (not ``n (op n)*``);
``no_answer`` (nothing to read); ``no_tag`` (worded prompt, no tags).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from ladtrain.tasks import TaskError
from ladtrain.tasks.base import Problem, Score, cached_rows, check_split

PROMPT = "{numbers} -> {target}\n"  # compact: every character is a token for the built-in model
WORDED = ("Use the numbers {numbers}, each exactly once, and only the operators +, - and * (no parentheses; "
          "* binds tighter than + and -) to write an expression that equals {target}."
          "\n\nThink briefly, then give only the expression inside <answer></answer> tags.")
STYLES = ("auto", "compact", "worded")
_TOKEN = re.compile(r"\s*(?:([0-9]+)|([-+*]))")  # ASCII digits only: \d would read "٣" (Arabic-Indic) as 3
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)

Term = tuple[int, tuple[int, ...]]  # (sign +1/-1, factors sorted descending)


def cache_dir() -> Path:
    """``$LADTRAIN_CACHE`` or ``~/.cache/ladtrain``."""
    return Path(os.environ.get("LADTRAIN_CACHE") or Path.home() / ".cache" / "ladtrain")


class ExpressionError(ValueError):
    """A completion that is not an expression of the allowed form."""


def parse(text: str) -> tuple[list[int], list[str]]:
    """Tokenise ``n (op n)*`` into numbers and operators; raise :class:`ExpressionError` otherwise."""
    numbers: list[int] = []
    ops: list[str] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected character {text[pos]!r}")
        number, op = m.groups()
        expect_number = len(numbers) == len(ops)
        if (number is not None) != expect_number:
            raise ExpressionError("expected a number" if expect_number else "expected an operator")
        if number is not None:
            if len(number) > 6:
                raise ExpressionError("number too long")
            numbers.append(int(number))
        else:
            ops.append(op)
        pos = m.end()
    if not numbers or len(numbers) != len(ops) + 1:
        raise ExpressionError("empty expression" if not numbers else "expression ends with an operator")
    return numbers, ops


def terms_of(numbers: list[int] | tuple[int, ...], ops: list[str] | tuple[str, ...]) -> tuple[Term, ...]:
    """The expression as a sorted tuple of signed products (``*`` binds tighter than ``+ -``)."""
    terms: list[Term] = []
    sign, factors = 1, [numbers[0]]
    for op, n in zip(ops, numbers[1:]):
        if op == "*":
            factors.append(n)
        else:
            terms.append((sign, tuple(sorted(factors, reverse=True))))
            sign, factors = (1 if op == "+" else -1), [n]
    terms.append((sign, tuple(sorted(factors, reverse=True))))
    return tuple(sorted(terms, key=lambda t: (-t[0], tuple(-f for f in t[1]))))


def value_of(terms: tuple[Term, ...]) -> int:
    return sum(sign * math.prod(factors) for sign, factors in terms)


def render(terms: tuple[Term, ...]) -> str:
    """Canonical text: positive terms first, each term's factors in descending order."""
    parts = []
    for i, (sign, factors) in enumerate(terms):
        parts.append(("" if i == 0 and sign > 0 else "+" if sign > 0 else "-") + "*".join(map(str, factors)))
    return "".join(parts)


@lru_cache(maxsize=None)
def solutions_by_target(numbers: tuple[int, ...], ops: str = "+-*") -> dict[int, tuple[str, ...]]:
    """Every distinct canonical expression over ``numbers`` (each used once), grouped by value."""
    found: dict[int, set[str]] = {}
    for perm in set(itertools.permutations(numbers)):
        for op_seq in itertools.product(ops, repeat=len(numbers) - 1):
            terms = terms_of(perm, op_seq)
            if terms[0][0] < 0:  # no positive term: only reachable with a leading unary minus
                continue
            found.setdefault(value_of(terms), set()).add(render(terms))
    return {v: tuple(sorted(s)) for v, s in found.items()}


def extract_answer(completion: str) -> str:
    """The answer text: the inside of ``<answer>...</answer>`` if present, else the first non-empty line."""
    tagged = _ANSWER_TAG.findall(completion)
    if tagged:
        return tagged[-1].strip()
    for line in completion.splitlines():
        if line.strip():
            return line.strip()
    return ""


def split_of(key: str, test_fraction: float, validation_fraction: float = 0.0) -> str:
    """``test`` when a stable hash of ``key`` falls in the first ``test_fraction`` of the hash range,
    ``validation`` in the next ``validation_fraction``, else ``train`` (so validation is carved out of what
    would be train, and the test split does not depend on ``validation_fraction``)."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 10_000
    if h < test_fraction * 10_000:
        return "test"
    return "validation" if h < (test_fraction + validation_fraction) * 10_000 else "train"


@dataclass(frozen=True)
class CountdownTask:
    """Countdown over ``n_numbers`` numbers from 1..``max_value`` with ``+ - *`` and no parentheses."""

    n_numbers: int = 4
    max_value: int = 6
    draws: int = 3000
    test_fraction: float = 0.15
    validation_fraction: float = 0.0
    seed: int = 1234
    name: str = "countdown"
    prompt: str = "auto"
    _splits: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.prompt not in STYLES:
            raise TaskError(f"countdown: prompt={self.prompt!r}; known: {', '.join(STYLES)}")
        if not (0 < self.test_fraction < 1 and 0 <= self.validation_fraction < 1
                and self.test_fraction + self.validation_fraction < 1):
            raise TaskError(f"countdown: test_fraction={self.test_fraction}, validation_fraction="
                            f"{self.validation_fraction}: need 0 < test, 0 <= validation, "
                            "test + validation < 1")

    @property
    def worded(self) -> bool:
        return self.prompt == "worded"

    def for_chat(self) -> CountdownTask:
        """This task for a chat model: ``prompt=auto`` becomes ``worded``; an explicit style is kept."""
        return self if self.prompt != "auto" else replace(self, prompt="worded", _splits={})

    def render_prompt(self, numbers: list[int], target: int) -> str:
        if self.worded:
            return WORDED.format(numbers=", ".join(map(str, numbers)), target=target)
        return PROMPT.format(numbers=" ".join(map(str, numbers)), target=target)

    def _cache_file(self) -> Path:
        key = f"v1-n{self.n_numbers}-max{self.max_value}-draws{self.draws}-seed{self.seed}"
        return cache_dir() / "countdown" / f"{key}.json"

    def _generate(self) -> list[dict]:
        """Draw problems with reasoning-gym's generator; keep the parenthesis-free solvable ones."""
        from reasoning_gym.games.countdown import CountdownConfig, CountdownDataset

        config = CountdownConfig(
            min_numbers=self.n_numbers, max_numbers=self.n_numbers, min_value=1, max_value=self.max_value,
            min_target=1, max_target=self.max_value**self.n_numbers, operators=("+", "-", "*"),
            shuffle=True, seed=self.seed, size=self.draws,
        )
        dataset = CountdownDataset(config)
        rows, seen = [], set()
        for i in range(self.draws):
            meta = dataset[i]["metadata"]
            numbers, target = list(meta["numbers"]), int(meta["target"])
            key = (tuple(sorted(numbers)), target)
            if key in seen or target not in solutions_by_target(key[0]):
                continue
            seen.add(key)
            rows.append({"numbers": numbers, "target": target})
        return rows

    def _rows(self) -> list[dict]:
        return cached_rows(self._cache_file(), self._generate)

    def problems(self, split: str) -> list[Problem]:
        check_split(split)
        if not self._splits:
            splits: dict[str, list[Problem]] = {"train": [], "validation": [], "test": []}
            for row in self._rows():
                numbers, target = row["numbers"], row["target"]
                key = f"{'-'.join(map(str, sorted(numbers)))}={target}"
                problem = Problem(
                    id=key,
                    prompt=self.render_prompt(numbers, target),
                    reference=target,
                    meta={"numbers": numbers, "target": target,
                          "solutions": list(solutions_by_target(tuple(sorted(numbers)))[target])},
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
            numbers, ops = parse(text)
        except ExpressionError as err:
            return Score(0.0, None, str(err), "unparsable")
        terms = terms_of(numbers, ops)
        answer = render(terms)
        if sorted(numbers) != sorted(problem.meta["numbers"]):
            return Score(0.0, answer, "numbers do not match", "wrong")
        if value_of(terms) != problem.meta["target"]:
            return Score(0.0, answer, "wrong value", "wrong")
        return Score(1.0, answer, "correct", "correct")


def make(arg: str | None = None, **options) -> CountdownTask:
    """Registry factory: ``countdown`` or ``countdown:N`` (N numbers); options are CountdownTask fields."""
    if arg:
        if not arg.isdigit() or not 2 <= int(arg) <= 6:
            raise TaskError(f"countdown:{arg}: the argument is the number of numbers, 2..6")
        options["n_numbers"] = int(arg)
    return CountdownTask(**options)


__all__ = ["PROMPT", "STYLES", "WORDED", "CountdownTask", "ExpressionError", "make", "parse", "render",
           "solutions_by_target", "terms_of"]
