"""Reward functions with the TRL signature, used by tests/train/test_rewards.py."""


def length_penalty(prompts, completions, **kwargs):
    """1 / (1 + len(completion)): a simple reward that depends only on the completion."""
    return [1.0 / (1.0 + len(c)) for c in completions]


def matches_answer_column(prompts, completions, answer, **kwargs):
    """1 if the completion contains the ``answer`` column of its problem; None when the column is missing."""
    return [None if a is None else float(str(a) in c) for c, a in zip(completions, answer)]


def wrong_length(prompts, completions, **kwargs):
    return [1.0]


def not_a_number(prompts, completions, **kwargs):
    return ["high"] * len(completions)


not_callable = 3


def nan_reward(prompts, completions, **kwargs):
    return [float("nan")] * len(completions)
