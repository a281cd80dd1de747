"""The evidence engine: liveness as a presentation-attack detector (DESIGN §6, docs/liveness.md).

One module per feature family (``blinks``, ``motion``, ``cadence``, ``mouth``, ``replies``,
``challenges``, ``presence``, ``likeness``), ``combine`` for the transparent model and the verdict state
machine, ``policy`` for every threshold, and ``engine`` tying them into :class:`EvidenceEngine`.
"""

from .engine import EvidenceEngine
from .policy import EvidencePolicy

__all__ = ["EvidenceEngine", "EvidencePolicy"]
