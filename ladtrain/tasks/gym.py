"""Any ``reasoning-gym`` generator as a task, scored by that generator's own ``score_answer``.

Spec: ``reasoning_gym:NAME[,KEY=VALUE]...``. The keys ``size`` (train problems, default 1000),
``test_size`` (default 200), ``seed`` (default 0), ``instruction`` and ``instruction_file`` are ours;
every other key goes to the generator's config class (for example
``reasoning_gym:basic_arithmetic,max_terms=4``), which validates it; a bad key or value is a one-line
:class:`~ladtrain.tasks.TaskError`.

* **Split**: train is generated with ``seed``, test with ``seed + 1_000_003``; test problems whose question
  also occurs in train are dropped, so the splits are disjoint.
* **Prompt**: the generator's question, a blank line, and an instruction to put the final answer in
  ``<answer>...</answer>`` (:data:`INSTRUCTION`; it matches the extractor, and is added for every model,
  with or without a chat template). ``instruction=TEXT`` or ``instruction_file=PATH`` replaces it,
  ``instruction=none`` leaves the question alone; the chat template, if any, is applied by the trainer.
* **Score**: the text inside the last ``<answer>`` tags (reasoning-gym's ``extract_answer``), given to
  the generator's ``score_answer``; partial credit in [0, 1] is kept as the reward. Reasons: ``no_tag``
  (no ``<answer>`` tags), ``no_answer`` (empty tags), ``unparsable`` (the generator's scorer raised on
  the text), ``correct`` (1), ``partial`` (between 0 and 1), ``wrong`` (0).
* **Scorers that would evaluate model text** (``eval`` or sympy's ``parse_expr`` on the answer: n_queens,
  spiral_matrix, binary_matrix, string_insertion, number_sorting, the integration and polynomial
  generators, puzzle24, countdown) are guarded (:func:`guard_scorers`): literals only for ``eval``, plain
  arithmetic only for ``parse_expr``; anything else scores as a wrong answer and never runs. (So an
  integration answer ``Integral(f, x) + C``, which reasoning-gym's own scorer would accept, scores 0.)
"""

from __future__ import annotations

import ast
import builtins
import importlib
import math
import threading
from dataclasses import dataclass
from typing import Any

from ladtrain.tasks import TaskError
from ladtrain.tasks.base import HeldOutSplit, Problem, Score, instruction_text, with_instruction

INSTRUCTION = "Think step by step, then give only the final answer inside <answer></answer> tags."
_TEST_SEED_OFFSET = 1_000_003

# ---------------------------------------------------------------- scorers that evaluate model text
#
# Some reasoning-gym scorers (audited for reasoning-gym 0.1.25; tests/train/test_tasks_gym.py re-runs the
# audit on the installed version) pass the model's answer to Python's ``eval`` or to sympy's
# ``parse_expr`` (which calls ``eval`` too): a completion ``__import__('os').system(...)`` would run in
# the trainer. Before any such generator is used, the module's own name is rebound:
#   "eval":        ``eval`` -> ast.literal_eval (lists, strings, numbers: the partial-credit formats)
#   "parse_expr" / "sympy" / "sp": ``parse_expr`` -> a guard that first checks the answer against an
#                  arithmetic allow-list (:func:`safe_expression`), then calls sympy's parse_expr.
GUARDED_SCORERS: dict[str, str] = {
    "reasoning_gym.algorithmic.number_sorting": "eval",  # evaluates the reference (a list literal)
    "reasoning_gym.algorithmic.string_insertion": "eval",
    "reasoning_gym.algorithmic.spiral_matrix": "eval",
    "reasoning_gym.algorithmic.binary_matrix": "eval",
    "reasoning_gym.games.n_queens": "eval",
    "reasoning_gym.algebra.simple_integration": "sympy",
    "reasoning_gym.algebra.intermediate_integration": "sympy",
    "reasoning_gym.algebra.polynomial_multiplication": "sp",
    "reasoning_gym.games.puzzle24": "parse_expr",
    "reasoning_gym.games.countdown": "parse_expr",
}
SAFE_FUNCTIONS = frozenset(
    "sin cos tan cot sec csc asin acos atan sinh cosh tanh asinh acosh atanh exp log ln sqrt Abs abs".split()
)
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitXor, ast.USub, ast.UAdd)
_MAX_DIGITS = 10_000  # largest number (in decimal digits) an answer may make sympy compute
_BUILTIN_NAMES = frozenset(dir(builtins))


def _digits(node: ast.AST) -> float:
    """An upper bound on log10 |value| of a numeric subexpression (symbols count as 1: they stay symbolic)."""
    if isinstance(node, ast.Constant):
        return math.log10(abs(node.value) + 1) if isinstance(node.value, (int, float)) else 0.0
    if isinstance(node, ast.UnaryOp):
        return _digits(node.operand)
    if isinstance(node, ast.BinOp):
        left, right = _digits(node.left), _digits(node.right)
        if isinstance(node.op, ast.Pow):
            if right > 6:
                return math.inf
            return max(left, 1.0) * 10 ** right
        return left + right + 1
    if isinstance(node, ast.Call):
        return max((_digits(a) for a in node.args), default=0.0)
    return 1.0


def safe_expression(text: str) -> bool:
    """True if ``text`` is plain arithmetic: numbers, symbols, + - * / // % ** ^, calls to
    :data:`SAFE_FUNCTIONS`; no attributes, subscripts, strings, lambdas, builtins or dunder names, at most
    1000 characters, and no number beyond 10^10000 (so ``9**9**9**9`` is refused, not computed)."""
    if len(text) > 1000:
        return False
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load) + _OPS):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)) \
                and not isinstance(node.value, bool):
            continue
        if isinstance(node, ast.Name) and not node.id.startswith("_") and (
                node.id not in _BUILTIN_NAMES or node.id in SAFE_FUNCTIONS):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SAFE_FUNCTIONS \
                and not node.keywords:
            continue
        return False
    return _digits(tree.body) <= _MAX_DIGITS


def _literal_eval(source, *_args, **_kwargs):
    """Stands in for ``eval`` in scorers that only need a literal (list of characters, matrix)."""
    if not isinstance(source, str):
        raise TypeError("only strings are evaluated")
    return ast.literal_eval(source.strip())


def _guarded_parse_expr(text, *args, **kwargs):
    from sympy.parsing.sympy_parser import parse_expr

    if not isinstance(text, str) or not safe_expression(text):
        raise ValueError("answer is not a plain arithmetic expression")
    return parse_expr(text, *args, **kwargs)


class _GuardedSympy:
    """The ``sympy`` module as seen by a guarded scorer: everything but ``parse_expr`` passes through."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return _guarded_parse_expr if name == "parse_expr" else getattr(self._module, name)


_GUARD_LOCK = threading.Lock()


def guard_scorers() -> None:
    """Rebind ``eval`` / ``parse_expr`` in every module of :data:`GUARDED_SCORERS` (idempotent)."""
    with _GUARD_LOCK:
        for module_name, kind in GUARDED_SCORERS.items():
            module = importlib.import_module(module_name)
            if kind == "eval":
                module.eval = _literal_eval
            elif kind == "parse_expr":
                module.parse_expr = _guarded_parse_expr
            elif not isinstance(getattr(module, kind), _GuardedSympy):
                setattr(module, kind, _GuardedSympy(getattr(module, kind)))


@dataclass(frozen=True)
class GymTask(HeldOutSplit):
    """A reasoning-gym generator; ``reference`` is the generator's entry (question, answer, metadata)."""

    name: str
    train: tuple[Problem, ...]
    test: tuple[Problem, ...]
    dataset: Any  # the reasoning_gym ProceduralDataset whose score_answer scores both splits

    def score(self, problem: Problem, completion: str) -> Score:
        from reasoning_gym.utils import extract_answer

        answer = extract_answer(completion, tag_name="answer")
        if answer is None:
            return Score(0.0, None, "no <answer> tag", "no_tag")
        if not answer.strip():
            return Score(0.0, None, "empty <answer> tags", "no_answer")
        try:
            reward = float(self.dataset.score_answer(answer=answer, entry=problem.reference))
        except Exception as e:  # a scorer that chokes on odd text: the answer is wrong, not the run
            return Score(0.0, answer, f"scorer error: {type(e).__name__}", "unparsable")
        return Score(reward, answer, "correct" if reward == 1.0 else f"score {reward:g}")


def _dataset(name: str, spec: str, **config):
    import reasoning_gym

    try:
        return reasoning_gym.create_dataset(name, **config)
    except (TypeError, AssertionError, ValueError) as e:
        raise TaskError(f"{spec}: {type(e).__name__}: {e}") from None


def make(arg: str | None = None, size: int = 1000, test_size: int = 200, seed: int = 0,
         instruction: str | None = INSTRUCTION, instruction_file: str = "", **config) -> GymTask:
    """Registry factory for ``reasoning_gym:NAME``."""
    from reasoning_gym.factory import DATASETS

    guard_scorers()
    spec = f"reasoning_gym:{arg}"
    if not arg:
        raise TaskError(f"reasoning_gym: give a generator name; known: {', '.join(sorted(DATASETS))}")
    if arg not in DATASETS:
        raise TaskError(f"{spec}: unknown generator; known: {', '.join(sorted(DATASETS))}")
    for key, value in (("size", size), ("test_size", test_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key != "seed" else 0):
            raise TaskError(f"{spec}: option {key}={value!r} must be a positive integer")
    given = "auto" if instruction == INSTRUCTION else str(instruction)
    text = instruction_text(given, instruction_file, spec)
    text = INSTRUCTION if text is None else text
    train_ds = _dataset(arg, spec, size=size, seed=seed, **config)
    test_ds = _dataset(arg, spec, size=test_size, seed=seed + _TEST_SEED_OFFSET, **config)
    train = tuple(Problem(f"{arg}/train/{i}", with_instruction(e["question"], text), e,
                          {"answer": e["answer"]})
                  for i, e in enumerate(train_ds))
    seen = {p.reference["question"] for p in train}
    test = tuple(Problem(f"{arg}/test/{i}", with_instruction(e["question"], text), e, {"answer": e["answer"]})
                 for i, e in enumerate(test_ds) if e["question"] not in seen)
    if not test:
        raise TaskError(f"{spec}: every test problem also occurs in train; use a larger generator config")
    return GymTask(spec, train, test, train_ds)


__all__ = ["GymTask", "INSTRUCTION", "make"]
