"""The interface between the live protocol and whatever judges a session.

``livecheck/protocol.py`` feeds an :class:`Engine` the evidence of one session and asks it for an
:class:`Assessment`; the challenge engine (challenge outcomes only) and the full evidence engine
(``livecheck/evidence/``) both implement it. Everything here is pure: callers pass ``recv`` (the server's
monotonic receive time, seconds) and nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["Assessment", "ChallengeOutcome", "Engine", "Reason", "VerdictState"]

VerdictState = Literal["pending", "human", "at_risk", "violation"]


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason behind a verdict, in words a reviewer understands, with its numbers."""

    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChallengeOutcome:
    """How one challenge ended."""

    challenge_id: str
    action: str
    result: Literal["passed", "failed", "missed"]
    # Onset of the completing movement minus challenge.shown.t, sender's clock; None when not completed.
    reaction_ms: float | None = None
    # Codes of what counted against the session (e.g. "reaction_too_fast", "moved_before_shown").
    flags: tuple[str, ...] = ()


@dataclass(slots=True)
class Assessment:
    """The engine's current view of a session: state, confidence that a person drives, reasons."""

    state: VerdictState
    score: float
    reasons: list[Reason] = field(default_factory=list)
    # The engine's own action for this state (e.g. `require_label` for weak evidence); None: the policy's.
    action: str | None = None


class Engine(Protocol):
    """Judges one live session from its evidence. Implementations keep bounded state (< 20 KB)."""

    def on_tracking(
        self,
        ts: Sequence[float],
        channels: Mapping[str, Sequence[float]],
        face: Sequence[bool],
        recv: float,
    ) -> None: ...

    def on_chat(self, t: float, message_id: str, recv: float) -> None: ...

    def on_speech(self, t0: float, t1: float, reply_to: str | None, recv: float) -> None: ...

    def on_frame(self, t: float, pdq: bytes, quality: int, recv: float) -> None: ...

    def on_challenge(self, outcome: ChallengeOutcome) -> None: ...

    def on_lost(self, count: int) -> None:
        """``count`` messages were lost (a seq gap): evidence that never arrived."""
        ...

    def assess(self, now: float) -> Assessment: ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state for a checkpoint; ``restore`` of it continues the session."""
        ...
