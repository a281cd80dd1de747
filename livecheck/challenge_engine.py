"""An :class:`~livecheck.engine.Engine` that judges a session from challenge outcomes and presence only.

It is the first real engine; the evidence engine (``livecheck/evidence/``) wraps or replaces it. It looks
at the last few challenges (a person passes them; an absent or automated operator misses them, fails them
or answers faster than a person can) and at presence (tracking keeps coming, a face is seen, few messages
are lost). Every verdict names its reasons in words with numbers, e.g. "2 of 3 challenges missed" or
"reaction 40 ms, faster than a person (150 ms)". Pure: callers pass ``now``/``recv``; state is a few
hundred bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, Any, Final

from livecheck.engine import Assessment, ChallengeOutcome, Reason, VerdictState

if TYPE_CHECKING:
    from livecheck.policy import Policy

__all__ = ["ChallengeEngine", "ChallengeEngineRules"]

_SNAPSHOT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class ChallengeEngineRules:
    """How challenge outcomes and presence turn into a state."""

    # Judge the last `window` challenges; `violation_bad` of them not passed (with the window full) is a
    # violation, any one of them not passed is at_risk.
    window: int = 3
    violation_bad: int = 2
    min_reaction_ms: float = 150.0
    # Presence: a face in at least this share of recent samples (exponentially weighted, half-life below),
    # judged once at least `min_samples` of weight have come in.
    min_face_fraction: float = 0.5
    presence_half_life_s: float = 30.0
    min_samples: float = 30.0
    # No tracking message for this long is at_risk.
    max_silence_s: float = 10.0
    # More than this share of the session's messages lost to seq gaps is at_risk.
    max_lost_fraction: float = 0.1


_RANK: Final[dict[str, int]] = {"pending": 0, "human": 0, "at_risk": 1, "violation": 2}


class ChallengeEngine:
    """Challenge outcomes and presence → :class:`~livecheck.engine.Assessment`."""

    __slots__ = (
        "_all_w",
        "_face_w",
        "_first_seen",
        "_last_track",
        "_lost",
        "_received",
        "_recent",
        "_totals",
        "rules",
    )

    def __init__(self, rules: ChallengeEngineRules | None = None) -> None:
        self.rules = rules or ChallengeEngineRules()
        # The last `window` outcomes as (result, reaction_ms, flags).
        self._recent: deque[tuple[str, float | None, tuple[str, ...]]] = deque(maxlen=self.rules.window)
        self._totals = {"passed": 0, "failed": 0, "missed": 0}  # over the whole session
        self._face_w = 0.0  # decayed count of face-visible samples
        self._all_w = 0.0  # decayed count of all samples
        self._last_track: float | None = None  # server time of the last tracking message
        self._first_seen: float | None = None  # server time this engine first saw anything
        self._received = 0  # evidence messages received
        self._lost = 0  # messages lost to seq gaps

    @classmethod
    def from_policy(cls, policy: Policy) -> ChallengeEngine:
        """An engine using ``policy``'s ``min_reaction_ms`` and the default rules otherwise."""
        return cls(ChallengeEngineRules(min_reaction_ms=policy.challenges.min_reaction_ms))

    # -- evidence

    def _seen(self, recv: float) -> None:
        self._received += 1
        if self._first_seen is None:
            self._first_seen = recv

    def on_tracking(
        self,
        ts: Sequence[float],
        channels: Mapping[str, Sequence[float]],
        face: Sequence[bool],
        recv: float,
    ) -> None:
        self._seen(recv)
        if self._last_track is not None:
            decay = 0.5 ** (max(0.0, recv - self._last_track) / self.rules.presence_half_life_s)
            self._face_w *= decay
            self._all_w *= decay
        self._face_w += sum(face)
        self._all_w += len(face)
        self._last_track = recv

    def on_chat(self, t: float, message_id: str, recv: float) -> None:
        self._seen(recv)

    def on_speech(self, t0: float, t1: float, reply_to: str | None, recv: float) -> None:
        self._seen(recv)

    def on_frame(self, t: float, pdq: bytes, quality: int, recv: float) -> None:
        self._seen(recv)

    def on_challenge(self, outcome: ChallengeOutcome) -> None:
        self._totals[outcome.result] += 1
        self._recent.append((outcome.result, outcome.reaction_ms, tuple(outcome.flags)))

    def on_lost(self, count: int) -> None:
        self._lost += count

    # -- judgement

    def assess(self, now: float) -> Assessment:
        """The state, score and reasons at ``now``."""
        r = self.rules
        if self._first_seen is None:
            self._first_seen = now
        reasons: list[Reason] = []
        recent = list(self._recent)
        n = len(recent)
        passed = sum(1 for res, _, _ in recent if res == "passed")
        bad = n - passed

        state: VerdictState = "pending"
        if n >= r.window and bad >= r.violation_bad:
            state = "violation"
        elif bad:
            state = "at_risk"
        elif passed:
            state = "human"
        reasons.extend(self._challenge_reasons(recent))

        presence = self._presence_reasons(now)
        if presence and _RANK[state] < _RANK["at_risk"]:
            state = "at_risk"
        reasons.extend(presence)

        # Laplace estimate of the share of challenges a person passes, halved per presence problem.
        score = (passed + 1) / (n + 2)
        score *= 0.5 ** len(presence)
        return Assessment(state=state, score=round(score, 3), reasons=reasons)

    def _challenge_reasons(self, recent: list[tuple[str, float | None, tuple[str, ...]]]) -> list[Reason]:
        n = len(recent)
        if n == 0:
            return [Reason("awaiting_challenge", "no challenge answered yet")]
        reasons: list[Reason] = []
        # "2 of 3 challenges missed" while there were only three; "of the last 3" once there were more.
        of = f"the last {n}" if sum(self._totals.values()) > n else f"{n}"
        missed = sum(1 for res, _, _ in recent if res == "missed")
        late = sum(1 for res, _, flags in recent if res == "failed" and not flags)
        unseen = sum(1 for res, _, flags in recent if res == "failed" and "face_lost" in flags)
        canned = sum(1 for res, _, flags in recent if res == "passed" and "template_movement" in flags)
        if missed:
            reasons.append(Reason("challenges_missed", f"{missed} of {of} challenges missed"))
        if late:
            reasons.append(Reason("challenges_failed", f"{late} of {of} challenges not completed in time"))
        if unseen:
            reasons.append(
                Reason("face_lost", f"{unseen} of {of} challenges failed while the face was out of view")
            )
        if canned:
            reasons.append(
                Reason(
                    "template_movement",
                    f"{canned} of {of} challenges answered with a canned movement (a straight ramp repeating "
                    "an earlier answer's speed, or without sensor noise)",
                )
            )
        for res, ms, flags in recent:
            if res != "failed" or ms is None:
                continue
            if "reaction_too_fast" in flags:
                reasons.append(
                    Reason(
                        "reaction_too_fast",
                        f"reaction {ms:.0f} ms, faster than a person ({self.rules.min_reaction_ms:.0f} ms)",
                    )
                )
            if "moved_before_shown" in flags:
                reasons.append(
                    Reason(
                        "moved_before_shown",
                        f"moved {-ms:.0f} ms before the challenge was shown",
                    )
                )
        passed = [ms for res, ms, _ in recent if res == "passed" and ms is not None]
        if passed:
            reasons.append(
                Reason(
                    "challenges_passed",
                    f"{len(passed)} of {of} challenges passed, median reaction {median(passed):.0f} ms",
                )
            )
        return reasons

    def _presence_reasons(self, now: float) -> list[Reason]:
        r = self.rules
        reasons: list[Reason] = []
        since = self._last_track if self._last_track is not None else self._first_seen
        assert since is not None  # set in assess
        silent = now - since
        if silent > r.max_silence_s:
            reasons.append(Reason("no_tracking", f"no tracking samples for {silent:.0f} s"))
        if self._all_w >= r.min_samples:
            share = self._face_w / self._all_w
            if share < r.min_face_fraction:
                reasons.append(
                    Reason(
                        "face_not_visible",
                        f"face visible in {share:.0%} of recent samples (minimum {r.min_face_fraction:.0%})",
                    )
                )
        total = self._received + self._lost
        if total and self._lost / total > r.max_lost_fraction:
            reasons.append(Reason("messages_lost", f"{self._lost} of {total} messages lost (seq gaps)"))
        return reasons

    # -- checkpoints

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state; :meth:`restore` continues from it.

        Server times are kept as they are: ``restore`` takes how far the clock moved.
        """
        return {
            "v": _SNAPSHOT_VERSION,
            "recent": [[res, ms, list(flags)] for res, ms, flags in self._recent],
            "totals": dict(self._totals),
            "face_w": self._face_w,
            "all_w": self._all_w,
            "last_track": self._last_track,
            "first_seen": self._first_seen,
            "received": self._received,
            "lost": self._lost,
        }

    @classmethod
    def restore(
        cls, data: Mapping[str, Any], rules: ChallengeEngineRules | None = None, *, shift_s: float = 0.0
    ) -> ChallengeEngine:
        """An engine continuing from :meth:`snapshot`.

        ``shift_s`` is added to the stored server times: a snapshot taken on another node (another
        monotonic clock) is re-based by the caller as ``now_here - now_there``.

        Raises:
            ValueError: the snapshot's version is not this module's.
        """
        if data.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"challenge engine snapshot version {data.get('v')!r}, expected 1")
        eng = cls(rules)
        for res, ms, flags in data["recent"]:
            eng._recent.append((str(res), None if ms is None else float(ms), tuple(flags)))
        eng._totals = {k: int(data["totals"][k]) for k in ("passed", "failed", "missed")}
        eng._face_w = float(data["face_w"])
        eng._all_w = float(data["all_w"])
        eng._last_track = None if data["last_track"] is None else float(data["last_track"]) + shift_s
        eng._first_seen = None if data["first_seen"] is None else float(data["first_seen"]) + shift_s
        eng._received = int(data["received"])
        eng._lost = int(data["lost"])
        return eng
