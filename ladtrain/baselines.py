"""The baseline losses (GRPO, Dr. GRPO, DAPO, GSPO, FlowRL), re-exported from :mod:`ladtheory.baselines`.

They are defined once, in ``ladtheory/baselines.py`` (it imports only torch), so that the controlled
bandit (``ladtheory/bandit.py``, which must not import ``ladtrain``) and the trainer run the very same
functions. This module keeps ``ladtrain.baselines`` importable for the trainer, the losses registry and
the tests; it defines nothing.
"""

from __future__ import annotations

from ladtheory.baselines import AGGREGATIONS, Aggregation, BaselineError, flowrl_loss, grpo_loss, gspo_loss

__all__ = ["AGGREGATIONS", "Aggregation", "BaselineError", "flowrl_loss", "grpo_loss", "gspo_loss"]
