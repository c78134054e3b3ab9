"""The arms of a study and its tuning grid: what each trained configuration is, and how settings are chosen
on validation (:mod:`ladtrain.study` runs them).

* **An arm** is a loss spec plus the per-arm settings that differ from the study's base configuration.
  ``--losses lad:js,grpo`` gives one arm per loss; ``--arms "grpo;lad:js;lad:js,mini_batches=4"`` gives
  arms with settings (``LOSS[,KEY=VALUE]...``, arms separated by ``;``; the keys are :data:`ARM_KEYS`).
  Labels: the loss's canonical name, then ``@eta=V`` for eta, ``/mbK`` for ``mini_batches``, ``/uN`` for
  ``updates_per_rollout`` and ``/KEY=V`` for any other key (``lad:js/mb4``).
* **The grid** (``--grid "lr=5e-5,1e-4,2e-4"``; several keys separated by ``;`` give their product) is
  the settings tried for every arm that does not fix the key itself. Each arm is trained at each grid point
  with the tuning seeds (``--tune-seeds``) and evaluated on the task's **validation** split (never test)
  with ``--tune-samples`` samples per problem; the point with the highest ``--select`` metric, averaged
  over the tuning seeds, is chosen (ties: the earlier point in grid order). Test runs then use only the
  chosen point, so test numbers are computed once, for settings chosen without them.
* **Selection metrics** (:func:`score`): a metric name of the evaluation (``pass@1``, ``pass@64``,
  ``distinct_correct``, ...), or ``pass_auc``: the mean of pass@k over k = 1, 2, 4, ... up to the
  samples per problem, i.e. the area under the pass@k curve on a log2 k axis, which rewards accuracy and
  coverage alike (the default: a choice that favours neither GRPO's pass@1 nor LAD's diversity).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ladtheory import options
from ladtrain.config import ConfigError, TrainConfig, convert

# the settings an arm may change and the grid may sweep (everything else is held equal across arms)
ARM_KEYS = ("eta", "lr", "mini_batches", "updates_per_rollout", "clip_eps", "clip_eps_high", "max_grad_norm",
            "level", "adv_scale", "flowrl_beta", "lr_schedule", "weight_decay")
_SHORT = {"eta": "@eta=", "mini_batches": "/mb", "updates_per_rollout": "/u"}


@dataclass(frozen=True)
class Arm:
    """One trained configuration of the study: its label, loss, eta and updates per rollout (the values it
    trains with) and ``overrides``: every setting the arm fixes itself (key -> value, keys of
    :data:`ARM_KEYS`; eta and updates_per_rollout included when the arm sets them), which the grid leaves
    alone."""

    label: str
    loss: str
    eta: float
    updates: int
    overrides: dict = field(default_factory=dict)

    def config(self, base: TrainConfig, **more: Any) -> TrainConfig:
        """``base`` with this arm's settings (and ``more``), validated."""
        from dataclasses import replace

        rest = {k: v for k, v in self.overrides.items() if k not in ("eta", "updates_per_rollout")}
        return replace(base, loss=self.loss, eta=self.eta, updates_per_rollout=self.updates,
                       **{**rest, **more}).validate()


def label_of(loss: str, settings: dict[str, Any]) -> str:
    """``lad:js`` + ``@eta=0.1`` / ``/mb4`` / ``/u4`` / ``/lr=0.0002`` in the order given."""
    out = loss
    for key, value in settings.items():
        text = f"{value:g}" if isinstance(value, float) else str(value)
        out += _SHORT[key] + text if key in _SHORT else f"/{key}={text}"
    return out


def _setting(pair: str, where: str) -> tuple[str, Any]:
    key, eq, value = pair.partition("=")
    key = key.strip().replace("-", "_")
    if not eq or key not in ARM_KEYS:
        raise ConfigError(f"{where}: {pair!r}: expected KEY=VALUE with KEY one of {', '.join(ARM_KEYS)}")
    try:
        return key, convert(key, value.strip())
    except ConfigError as err:
        raise ConfigError(f"{where}: {pair!r}: {str(err).split(': ', 1)[-1]}") from None


def parse_arms(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``"grpo;lad:js,mini_batches=4"`` -> ``[("grpo", {}), ("lad:js", {"mini_batches": 4})]``
    (ConfigError naming ``--arms``; the loss names are canonicalised later)."""
    from ladtrain.config import check_loss

    out = []
    for part in [p.strip() for p in text.split(";") if p.strip()]:
        loss, *pairs = [x.strip() for x in part.split(",")]
        try:
            check_loss(loss)
        except (ValueError, options.Invalid) as err:
            raise ConfigError(f"--arms: {loss!r}: {err}") from None
        item = (loss, dict(_setting(p, "--arms") for p in pairs))
        if item in out:
            raise ConfigError(f"--arms: {part!r} is given twice")
        out.append(item)
    if not out:
        raise ConfigError("--arms: no arm given")
    return out


def parse_grid(text: str | None) -> list[dict[str, Any]]:
    """``"lr=1e-4,2e-4;eta=0.25,1"`` -> the product ``[{lr, eta}, ...]`` in order (``[{}]`` for none)."""
    if not text:
        return [{}]
    axes: dict[str, list] = {}
    for part in [p.strip() for p in text.split(";") if p.strip()]:
        key, eq, values = part.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in ARM_KEYS:
            raise ConfigError(f"--grid: {part!r}: expected KEY=V1,V2,... with KEY one of "
                              f"{', '.join(ARM_KEYS)}")
        if key in axes:
            raise ConfigError(f"--grid: {key} is given twice")
        vals = [_setting(f"{key}={v}", "--grid")[1] for v in values.split(",") if v.strip()]
        if len(set(vals)) != len(vals) or not vals:
            raise ConfigError(f"--grid: {part!r}: give distinct values")
        axes[key] = vals
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def arm_grid(arm: Arm, grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The grid points that apply to ``arm``: keys the arm fixes itself are dropped (eta also for losses
    that do not use it), duplicates removed, order kept."""
    from ladtrain import losses

    fixed = set(arm.overrides)
    if not losses.get(arm.loss).uses_eta:
        fixed.add("eta")
    out: list[dict[str, Any]] = []
    for point in grid:
        kept = {k: v for k, v in point.items() if k not in fixed}
        if kept not in out:
            out.append(kept)
    return out


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n`` (and ``n``)."""
    ks = [2**i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []
    return ks + ([n] if n not in ks else [])


def score(trained: dict[str, Any], metric: str) -> float:
    """The selection value of one evaluation (``summary.json``'s ``trained``): ``pass_auc`` or a metric."""
    if metric == "pass_auc":
        ks = [k for k in ks_up_to(int(trained["samples_per_problem"])) if f"pass@{k}" in trained]
        if not ks:
            raise ConfigError("--select pass_auc: the evaluation has no pass@k")
        return float(sum(trained[f"pass@{k}"] for k in ks) / len(ks))
    if metric not in trained:
        raise ConfigError(f"--select: {metric!r} is not a metric of the evaluation")
    return float(trained[metric])


def choose(points: list[dict[str, Any]], values: list[list[float]]) -> int:
    """Index of the point whose mean over tuning seeds is highest (first on ties; NaN counts as -inf)."""
    means = [sum(v) / len(v) if v and not any(math.isnan(x) for x in v) else -math.inf for v in values]
    return max(range(len(points)), key=lambda i: (means[i], -i))


__all__ = ["ARM_KEYS", "Arm", "arm_grid", "choose", "ks_up_to", "label_of", "parse_arms", "parse_grid",
           "score"]
