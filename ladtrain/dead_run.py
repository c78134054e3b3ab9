"""No silent dead runs: warn when the rewards carry no learning signal, and say why.

Group-normalised advantages are zero in a group whose rewards are all equal, so a run whose rewards
never differ within a group computes a zero gradient at every step (it trains on nothing, and still
writes checkpoints). :class:`SignalWatch` watches the rewards of every RL step and fires once when

* every reward of the step is the same, on each of the first :data:`FIRST_STEPS` steps, or
* at least :data:`ZERO_ADV_SHARE` of the step's groups have all-equal rewards (zero advantage) on
  :data:`CONSECUTIVE_STEPS` consecutive steps.

The message gives the verifier's reason counts over those steps and the likely cause read from the
most common reason (:data:`CAUSES`: no ``<answer>`` tag, cut at ``--max-new-tokens``, everything
correct, ...), and points at ``samples.jsonl``. The trainer prints it once (a :class:`NoSignalWarning`)
and records it in ``summary.json``; with ``--stop-on-no-signal`` it is an error: the run stops after a
checkpoint (exit code 1), as for any fault it cannot skip.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

FIRST_STEPS = 3
CONSECUTIVE_STEPS = 10
ZERO_ADV_SHARE = 0.95

CAUSES: dict[str, str] = {
    "no_tag": "no completion contained the answer marker the scorer reads (<answer> tags, \\boxed{} or "
    "####): ask for it (the task's instruction=..., instruction_file=...) or use a chat model",
    "no_answer": "the scorer found nothing to read as an answer in the completions",
    "unparsable": "the answers could not be parsed by the scorer",
    "truncated": "the completions were cut at --max-new-tokens before an answer: raise --max-new-tokens",
    "timeout": "the checks ran out of time (raise the task's timeout=...)",
    "sandbox_error": "the sandbox failed to run the programs (see the sandbox section of the README)",
    "reward_error": "the reward function failed or returned None",
    "correct": "every completion is already correct: the task is too easy for this model",
    "wrong": "every completion is wrong: the task may be too hard for this model",
    "partial": "every completion gets the same partial credit",
}


class NoSignalWarning(UserWarning):
    """The rewards of a run carry no learning signal (printed once per run)."""


def likely_cause(reasons: Counter) -> str:
    """The cause read from the most common reason (``truncated`` and the marker reasons first)."""
    if not reasons:
        return "no sample was scored"
    top = reasons.most_common(1)[0][0]
    return CAUSES.get(top, f"most samples scored {top!r}")


def breakdown(reasons: Counter) -> str:
    """``"no_tag 96, truncated 32"``: the reason counts, most common first."""
    return ", ".join(f"{r} {n}" for r, n in reasons.most_common())


@dataclass
class SignalWatch:
    """Feed it every RL step (:meth:`step`); it returns the warning text once, when a condition of the
    module docstring holds, else None. ``state_dict``/``load_state_dict`` carry it across a resume."""

    first_steps: int = FIRST_STEPS
    consecutive: int = CONSECUTIVE_STEPS
    share: float = ZERO_ADV_SHARE
    equal_steps: int = 0  # leading steps whose rewards were all equal
    flat_steps: int = 0  # consecutive steps with >= share of groups at zero advantage
    reasons: Counter = field(default_factory=Counter)  # reason counts over the current flat stretch
    fired: str | None = None
    seen: int = 0

    def step(self, rewards: Sequence[float], group_size: int, reasons: Sequence[str]) -> str | None:
        """``rewards`` (B,) of one step with unscored samples already filled (as the advantages see
        them), prompt-major groups of ``group_size``; ``reasons`` (B,) the verifier's."""
        self.seen += 1
        values = [float(r) for r in rewards]
        groups = [values[i : i + group_size] for i in range(0, len(values), group_size)]
        all_equal = len(set(values)) <= 1
        flat = sum(len(set(g)) <= 1 for g in groups) >= self.share * max(1, len(groups))
        if self.seen == self.equal_steps + 1 and all_equal:
            self.equal_steps += 1
        self.flat_steps = self.flat_steps + 1 if flat else 0
        self.reasons = self.reasons + Counter(reasons) if flat else Counter()
        if self.fired is not None:
            return None
        if self.seen == self.first_steps and self.equal_steps == self.first_steps:
            what = (
                f"every reward of each of the first {self.first_steps} steps was the same ({values[0]:g}): "
                "every advantage is zero and the updates change nothing"
            )
        elif self.flat_steps >= self.consecutive:
            what = (
                f"on {self.flat_steps} consecutive steps at least {self.share:.0%} of the groups had equal "
                "rewards (zero advantage): almost no learning signal"
            )
        else:
            return None
        self.fired = (
            f"no learning signal: {what}. Reasons: {breakdown(self.reasons)}. Likely cause: "
            f"{likely_cause(self.reasons)}; see samples.jsonl"
        )
        return self.fired

    def state_dict(self) -> dict:
        return {
            "equal_steps": self.equal_steps,
            "flat_steps": self.flat_steps,
            "reasons": dict(self.reasons),
            "fired": self.fired,
            "seen": self.seen,
        }

    def load_state_dict(self, state: dict) -> None:
        self.equal_steps, self.flat_steps = state["equal_steps"], state["flat_steps"]
        self.reasons, self.fired, self.seen = Counter(state["reasons"]), state["fired"], state["seen"]


__all__ = [
    "CAUSES",
    "CONSECUTIVE_STEPS",
    "FIRST_STEPS",
    "NoSignalWarning",
    "SignalWatch",
    "ZERO_ADV_SHARE",
    "breakdown",
    "likely_cause",
]
