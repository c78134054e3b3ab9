"""Plug-ins that run LAD inside other trainers; each imports its host only when imported itself.

* :mod:`ladtrain.integrations.trl`: ``LADGRPOTrainer``, TRL's ``GRPOTrainer`` with the LAD loss
  (extra ``lad[trl]``).
* :mod:`ladtrain.integrations.verl`: the verl policy loss ``"lad"`` (``register_policy_loss``), loaded
  through verl's ``verl.plugins`` entry point (verl installed separately).

Both call :func:`ladtheory.objective.lad_loss` itself; neither holds a copy of the formula.
"""

__all__: list[str] = []
