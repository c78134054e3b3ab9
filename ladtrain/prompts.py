"""What the model sees: a task's prompt for this model, inside its chat template, with the system prompt.

* :func:`for_model`: when the tokenizer has a chat template, a task that knows a chat form
  (``task.for_chat()``: ``jsonl:`` adds the answer instruction that matches its extractor, Countdown
  becomes worded) is switched to it; otherwise the task is returned as it is.
* :func:`render`: the text given to the tokenizer. With a chat template, the prompt is the user message;
  ``system`` None leaves the system turn to the template (many add a default one when none is given:
  SmolLM2's "You are a helpful AI assistant named SmolLM..."), ``""`` (``--system-prompt none``) sends
  an empty system message (so a template that adds a default adds nothing), any other text is the
  system message. Without a chat template the prompt is used as it is and a system prompt is an error
  (there is nowhere to put it).
"""

from __future__ import annotations

from typing import Any


class PromptError(ValueError):
    """A prompt option that cannot be applied to this model (a user mistake: one line)."""


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def system_prompt(text: str | None) -> str | None:
    """``--system-prompt`` as :func:`render` takes it: ``default`` or None -> None (the template's
    default), ``none`` -> ``""`` (an empty system message), else the text (``\\n`` written as
    backslash-n becomes a newline)."""
    if text is None or text.strip().lower() == "default":
        return None
    if text.strip().lower() == "none":
        return ""
    return text.replace("\\n", "\n")


def system_of(cfg: Any) -> str | None:
    """The system prompt of a run configuration (its ``system_prompt`` field, :func:`system_prompt`)."""
    return system_prompt(getattr(cfg, "system_prompt", None))


def for_model(task: Any, tokenizer: Any) -> Any:
    """``task.for_chat()`` when ``tokenizer`` has a chat template and the task has a chat form, else
    ``task``."""
    if has_chat_template(tokenizer) and callable(getattr(task, "for_chat", None)):
        return task.for_chat()
    return task


def render(tokenizer: Any, prompt: str, system: str | None = None) -> str:
    """The text the model is given for ``prompt`` (see the module docstring)."""
    if not has_chat_template(tokenizer):
        if system is not None:
            raise PromptError("--system-prompt: the model's tokenizer has no chat template (nowhere to put a "
                              "system prompt)")
        return prompt
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


__all__ = ["PromptError", "for_model", "has_chat_template", "render", "system_of", "system_prompt"]
