"""Challenge statistics: missed, failed, too fast, too regular (reaction-time physiology).

Detection of each challenge is the protocol's job (``livecheck/challenge_engine.py``); this judges the
outcomes it reports. A person's simple visual reaction takes about 190-250 ms and reading a prompt and
choosing a movement takes longer; the spread between trials is tens to hundreds of milliseconds. A script
answers sooner than a person can perceive the prompt, with a near-constant delay, or not at all.
"""

from __future__ import annotations

import math
from typing import Any

from ..engine import ChallengeOutcome
from .base import Evidence, Override
from .policy import ChallengePolicy
from .ring import Ring

__all__ = ["Challenges"]


class Challenges:
    """Counts of outcomes and the last 32 reaction times."""

    __slots__ = ("_failed", "_flagged", "_flags", "_late", "_missed", "_passed", "_recent", "_rt", "p")

    def __init__(self, policy: ChallengePolicy) -> None:
        self.p = policy
        self._passed = 0
        self._failed = 0
        self._missed = 0
        self._late = 0  # passes whose movement began too late to be an answer (a coincidence)
        self._flagged = 0  # outcomes that carried a flag against the session (too fast, moved before shown)
        self._flags: dict[str, int] = {}  # flag code -> count (codes come from the challenge engine)
        self._rt = Ring("f", 32)  # reaction times of passed, unflagged challenges, ms
        self._recent = Ring("B", 8)  # the last outcomes: 1 = passed cleanly, 0 = anything else

    def on_outcome(self, o: ChallengeOutcome) -> None:
        late = o.result == "passed" and o.reaction_ms is not None and o.reaction_ms > self.p.late_ms
        self._recent.push(1 if o.result == "passed" and not o.flags and not late else 0)
        if o.flags:
            self._flagged += 1
            for f in o.flags[:4]:
                # Bounded: at most 16 distinct codes are kept (they are a small fixed vocabulary).
                if f in self._flags or len(self._flags) < 16:
                    self._flags[f] = self._flags.get(f, 0) + 1
        if o.result == "passed":
            self._passed += 1
            if late:
                self._late += 1
            elif o.reaction_ms is not None and not o.flags:
                self._rt.push(o.reaction_ms)
        elif o.result == "failed":
            self._failed += 1
        else:
            self._missed += 1

    @property
    def issued(self) -> int:
        return self._passed + self._failed + self._missed

    def evidence(self) -> list[Evidence]:
        p = self.p
        out: list[Evidence] = []
        clean_pass = max(self._passed - self._flagged - self._late, 0)
        if clean_pass:
            out.append(
                Evidence(
                    "challenge_passed",
                    "challenges",
                    p.passed_llr * clean_pass,
                    f"{clean_pass} of {self.issued} challenges answered in time",
                )
            )
        if self._late:
            out.append(
                Evidence(
                    "reaction_too_late",
                    "challenges",
                    p.late_llr * self._late,
                    f"{self._late} challenges were met only by a movement starting over "
                    f"{p.late_ms / 1000:.1f} s "
                    f"after the prompt: a coincidence, not an answer",
                )
            )
        if self._missed:
            out.append(
                Evidence(
                    "challenge_missed",
                    "challenges",
                    p.missed_llr * self._missed,
                    f"{self._missed} of {self.issued} challenges never shown to the operator in time",
                )
            )
        if self._failed:
            out.append(
                Evidence(
                    "challenge_failed",
                    "challenges",
                    p.failed_llr * self._failed,
                    f"{self._failed} of {self.issued} challenges not performed before the deadline",
                )
            )
        if self._flagged:
            codes = ", ".join(f"{k} ×{v}" for k, v in sorted(self._flags.items()))
            out.append(
                Evidence(
                    "reaction_too_fast",
                    "challenges",
                    p.flagged_llr * self._flagged,
                    f"{self._flagged} challenge answers came before a person could react ({codes})",
                )
            )
        rts = self._rt.values()
        if len(rts) >= p.min_reactions:
            mean = sum(rts) / len(rts)
            sd = math.sqrt(sum((x - mean) ** 2 for x in rts) / (len(rts) - 1))
            med = sorted(rts)[len(rts) // 2]
            if sd < 2 * p.regular_sd_ms:
                strength = min(1.0, (2 * p.regular_sd_ms - sd) / p.regular_sd_ms)
                out.append(
                    Evidence(
                        "reaction_too_regular",
                        "challenges",
                        p.regular_llr * strength,
                        f"challenge reactions are machine-regular: {len(rts)} reactions, "
                        f"{mean:.0f} ± {sd:.1f} ms",
                    )
                )
            if med < p.too_fast_ms:
                out.append(
                    Evidence(
                        "reaction_too_fast",
                        "challenges",
                        -2.0,
                        f"median reaction {med:.0f} ms is faster than a person can read a prompt",
                    )
                )
        return out

    def overrides(self) -> list[Override]:
        """Nobody answering challenges is the most direct sign that no person drives in real time.

        A person fails now and then (looked away, did too little); missing most of several in a row is
        what a renderer, a recording or an unattended stream does.
        """
        p = self.p
        last = self._recent.values()
        window = last[-p.unresponsive_window :]
        if len(window) >= p.unresponsive_window and sum(window) <= p.unresponsive_max_passed:
            return [
                Override(
                    "violation",
                    "unresponsive",
                    f"only {sum(window)} of the last {len(window)} challenges answered: "
                    "nobody responds in real time",
                )
            ]
        streak = last[-p.at_risk_streak :]
        if len(streak) >= p.at_risk_streak and not any(streak):
            return [Override("at_risk", "unresponsive", f"the last {len(streak)} challenges went unanswered")]
        return []

    def to_state(self) -> dict[str, Any]:
        return {
            "recent": self._recent.to_state(),
            "n": [self._passed, self._failed, self._missed, self._flagged, self._late],
            "flags": dict(self._flags),
            "rt": self._rt.to_state(),
        }

    @classmethod
    def from_state(cls, policy: ChallengePolicy, s: dict[str, Any]) -> Challenges:
        c = cls(policy)
        c._passed, c._failed, c._missed, c._flagged, c._late = (int(x) for x in s["n"])
        c._flags = {str(k): int(v) for k, v in s["flags"].items()}
        c._rt = Ring.from_state(s["rt"])
        c._recent = Ring.from_state(s["recent"])
        return c
