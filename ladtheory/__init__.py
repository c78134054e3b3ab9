"""ladtheory: the mathematics of Learning Advantage Distribution (LAD).

Every object is defined once here, proved (``proofs/``) and property-tested (``tests/theory``);
``ladtrain`` imports these very objects to train models.
"""

from ladtheory import divergences, objective
from ladtheory.objective import effective_weight, lad_loss

__all__ = ["divergences", "objective", "lad_loss", "effective_weight"]
