"""What every feature family hands the combiner: one piece of evidence with its number and its words."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Evidence", "Override"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One feature's verdict on the session so far.

    ``llr`` is a natural-log likelihood ratio, person over automation: positive supports a person driving,
    negative supports a procedural, scripted, replayed or absent driver. ``detail`` gives the numbers a
    reviewer needs ("blink intervals look uniform, not log-normal: 41 blinks, KS p = 0.002").
    """

    code: str
    family: str
    llr: float
    detail: str


@dataclass(frozen=True, slots=True)
class Override:
    """A hard rule that sets a floor on the verdict regardless of the total (likeness, absent operator)."""

    state: str  # "at_risk" or "violation"
    code: str
    detail: str
