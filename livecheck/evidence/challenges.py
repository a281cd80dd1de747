"""Challenge statistics: missed, failed, flagged, too regular (reaction-time physiology).

Detection of each challenge is the protocol's job (``livecheck/challenges.py``); this judges the
outcomes it reports. A person's simple visual reaction takes about 190-250 ms and reading a prompt and
choosing a movement takes longer; the spread between trials is tens to hundreds of milliseconds. A script
answers sooner than a person can perceive the prompt, before the prompt is shown at all, with a
near-constant delay, with the same canned movement every time, or not at all.

Flags are judged as rates, not one by one: a person now and then blinks or glances just as a prompt
appears, which the challenge engine cannot tell from an answer, so one flagged answer among many clean
ones says little, while a session whose answers are mostly flagged says a lot (a binomial likelihood
ratio between a person's flag rate and a script's, never positive).
"""

from __future__ import annotations

import math
from typing import Any

from ..engine import ChallengeOutcome
from .base import Evidence, Override
from .policy import ChallengePolicy
from .ring import Ring

__all__ = ["ACTIONS", "TIMING_FLAGS", "Challenges"]

# Flags that mean the answer was not a person's reaction to the prompt (the challenge failed).
TIMING_FLAGS = ("reaction_too_fast", "moved_before_shown")
TEMPLATE_FLAG = "template_movement"
FACE_LOST_FLAG = "face_lost"
_MISSED = 2  # in the recent-outcomes ring: a challenge never shown
# Action index for the reaction-time ring (pooled spread is computed within each action).
ACTIONS = ("blink_twice", "turn_head_left", "turn_head_right", "nod", "open_mouth")
_DEFAULT_PERIOD_S = 1 / 30  # frame period assumed when the cadence is not known yet


class Challenges:
    """Counts of outcomes, flag counts with their reaction times, and the last 32 clean reaction times."""

    __slots__ = (
        "_answered",
        "_counted",
        "_failed",
        "_flag_ms",
        "_flags",
        "_late",
        "_missed",
        "_passed",
        "_recent",
        "_rt",
        "_rt_action",
        "_template",
        "_unseen",
        "_willing",
        "p",
    )

    def __init__(self, policy: ChallengePolicy) -> None:
        self.p = policy
        self._passed = 0  # passed without a timing flag (template-flagged passes included)
        self._failed = 0  # failed without a flag: not performed in time
        self._missed = 0
        self._late = 0  # passes whose movement began too late to be an answer (a coincidence)
        self._answered = 0  # outcomes with a movement: passes plus timing-flagged failures
        self._template = 0  # passes flagged template_movement
        self._unseen = 0  # failures while the tracker saw no face (face_lost): not counted as ignored
        self._counted = 0  # outcomes that count for responsiveness (all but face_lost failures)
        self._willing = 0  # ... of which answered in time by a person
        self._flags: dict[str, int] = {}  # timing flag code -> count
        self._flag_ms: dict[str, list[float]] = {}  # timing flag code -> its last 4 reaction times, ms
        self._rt = Ring("f", 32)  # reaction times of clean, timely passes, ms
        self._rt_action = Ring("B", 32)  # ... and the index of their action in ACTIONS (255: other)
        self._recent = Ring(
            "B", 8
        )  # the last outcomes: 1 = answered in time by a person, 2 = never shown, 0 = not

    def on_outcome(self, o: ChallengeOutcome) -> None:
        timing = [f for f in o.flags if f in TIMING_FLAGS]
        late = o.result == "passed" and o.reaction_ms is not None and o.reaction_ms > self.p.late_ms
        if o.result == "failed" and FACE_LOST_FLAG in o.flags:
            # The operator was out of view: a failure, but not a prompt ignored by someone watching it.
            self._unseen += 1
            return
        answered = 1 if o.result == "passed" and not timing and not late else 0
        self._recent.push(_MISSED if o.result == "missed" else answered)
        self._counted += 1
        self._willing += answered
        if timing:
            self._answered += 1
            for f in timing:
                self._flags[f] = self._flags.get(f, 0) + 1
                if o.reaction_ms is not None:
                    self._flag_ms[f] = [*self._flag_ms.get(f, [])[-3:], round(o.reaction_ms, 1)]
            return
        if o.result == "passed":
            self._passed += 1
            self._answered += 1
            if TEMPLATE_FLAG in o.flags:
                self._template += 1
            if late:
                self._late += 1
            elif o.reaction_ms is not None:
                self._rt.push(o.reaction_ms)
                self._rt_action.push(ACTIONS.index(o.action) if o.action in ACTIONS else 255)
        elif o.result == "failed":
            self._failed += 1
        else:
            self._missed += 1

    @property
    def issued(self) -> int:
        return self._passed + self._failed + self._missed + self._unseen + self._timing_flagged()

    def _timing_flagged(self) -> int:
        return self._answered - self._passed

    def evidence(self, frame_period_s: float | None = None) -> list[Evidence]:
        """The evidence so far; ``frame_period_s`` (the tracker's, when known) sets how much of the
        reaction-time spread is the sampling's own."""
        p = self.p
        out: list[Evidence] = []
        n = self.issued
        # A template answer is a pass (the action was done) but no evidence of a person.
        clean = self._passed - self._late - self._template
        if clean > 0:
            out.append(
                Evidence(
                    "challenge_passed",
                    "challenges",
                    p.passed_llr * clean,
                    f"{clean} of {n} challenges answered in time",
                )
            )
        if self._late:
            out.append(
                Evidence(
                    "reaction_too_late",
                    "challenges",
                    p.late_llr * self._late,
                    f"{self._late} of {n} challenges were met only by a movement starting over "
                    f"{p.late_ms / 1000:.1f} s after the prompt: a coincidence, not an answer",
                )
            )
        if self._missed:
            out.append(
                Evidence(
                    "challenge_missed",
                    "challenges",
                    p.missed_llr * self._missed,
                    f"{self._missed} of {n} challenges never shown to the operator in time",
                )
            )
        if self._failed:
            out.append(
                Evidence(
                    "challenge_failed",
                    "challenges",
                    p.failed_llr * self._failed,
                    f"{self._failed} of {n} challenges not performed before the deadline",
                )
            )
        if self._unseen:
            out.append(
                Evidence(
                    "challenge_face_lost",
                    "challenges",
                    p.face_lost_llr * self._unseen,
                    f"{self._unseen} of {n} challenges failed while the face was out of the tracker's view",
                )
            )
        out += self._flag_evidence()
        out += self._template_evidence()
        out += self._regularity_evidence(frame_period_s or _DEFAULT_PERIOD_S)
        return out

    def _flag_evidence(self) -> list[Evidence]:
        p = self.p
        k = self._timing_flagged()
        if not k:
            return []
        llr = _rate_llr(k, self._answered, p.flag_rate_human, p.flag_rate_bot)
        if llr >= 0:
            return []
        out = []
        for code in TIMING_FLAGS:
            kc = self._flags.get(code, 0)
            if not kc:
                continue
            ms = ", ".join(f"{x:.0f} ms" for x in self._flag_ms.get(code, []))
            if code == "reaction_too_fast":
                words = (
                    f"{kc} of {self._answered} answers began sooner after the prompt appeared than a person "
                    f"can react ({ms}; people need about 200 ms)"
                )
            else:
                words = (
                    f"{kc} of {self._answered} answers began after the challenge was sent but before it was "
                    f"shown ({ms} relative to the prompt): the client acted on the message, not a person "
                    "on the prompt"
                )
            out.append(Evidence(code, "challenges", llr * kc / k, words))
        return out

    def _template_evidence(self) -> list[Evidence]:
        p = self.p
        k = self._template
        if not k:
            return []
        llr = max(-p.template_cap, _rate_llr(k, self._passed, p.template_rate_human, p.template_rate_bot))
        if llr >= 0:
            return []
        return [
            Evidence(
                "template_movement",
                "challenges",
                llr,
                f"{k} of {self._passed} answers moved like a canned template (a straight ramp at the speed "
                "of an earlier answer, or without any sensor noise); people accelerate into a movement and "
                "never repeat one exactly",
            )
        ]

    def _regularity_evidence(self, period_s: float) -> list[Evidence]:
        p = self.p
        rts, acts = self._rt.values(), self._rt_action.values()
        if len(rts) < p.min_reactions:
            return []
        groups: dict[int, list[float]] = {}
        for rt, a in zip(rts, acts, strict=True):
            groups.setdefault(a, []).append(rt)
        # Pooled within-action spread: a script's canned movements reach the onset level at a different
        # point for each action, which is not a person's variability.
        ss = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in groups.values())
        df = len(rts) - len(groups)
        if df < p.min_reactions - 2:
            return []
        # Onsets are only seen at sample times: even a fixed delay spreads over one frame (uniform).
        q2 = (1000.0 * period_s) ** 2 / 12.0
        v_h = p.person_rt_sd_ms**2 + q2
        v_b = p.script_rt_sd_ms**2 + q2
        llr = 0.5 * df * math.log(v_b / v_h) + 0.5 * ss * (1.0 / v_b - 1.0 / v_h)
        if llr >= 0:
            return []
        sd = math.sqrt(ss / df)
        mean = sum(rts) / len(rts)
        return [
            Evidence(
                "reaction_too_regular",
                "challenges",
                max(p.regular_llr, llr),
                f"challenge reactions are machine-regular: {len(rts)} reactions around {mean:.0f} ms vary by "
                f"{sd:.1f} ms within each action, about what the {1000 * period_s:.0f} ms frame timing alone "
                "gives (people vary by tens of ms)",
            )
        ]

    def overrides(self) -> list[Override]:
        """Nobody answering challenges is the most direct sign that no person drives in real time.

        A person fails now and then (looked away, did too little); missing most of several in a row is
        what a renderer, a recording or an unattended stream does.
        """
        p = self.p
        last = self._recent.values()
        rarely = self._willing <= p.unresponsive_max_share * self._counted
        unseen = last[-p.unresponsive_missed :]
        if rarely and len(unseen) >= p.unresponsive_missed and all(v == _MISSED for v in unseen):
            return [
                Override(
                    "violation",
                    "unresponsive",
                    f"the last {len(unseen)} challenges were never shown to the operator "
                    f"({self._willing} of {self._counted} answered in the session): the client does not "
                    "put them in front of a person",
                )
            ]
        window = last[-p.unresponsive_window :]
        answered = sum(1 for v in window if v == 1)
        if len(window) >= p.unresponsive_window and answered <= p.unresponsive_max_passed and rarely:
            return [
                Override(
                    "violation",
                    "unresponsive",
                    f"only {answered} of the last {len(window)} challenges answered "
                    f"({self._willing} of {self._counted} in the session): nobody responds in real time",
                )
            ]
        streak = last[-p.at_risk_streak :]
        if len(streak) >= p.at_risk_streak and not any(v == 1 for v in streak):
            return [Override("at_risk", "unresponsive", f"the last {len(streak)} challenges went unanswered")]
        return []

    def to_state(self) -> dict[str, Any]:
        return {
            "recent": self._recent.to_state(),
            "n": [
                self._passed,
                self._failed,
                self._missed,
                self._late,
                self._answered,
                self._template,
                self._unseen,
                self._counted,
                self._willing,
            ],
            "flags": dict(self._flags),
            "flag_ms": {k: list(v) for k, v in self._flag_ms.items()},
            "rt": self._rt.to_state(),
            "rt_action": self._rt_action.to_state(),
        }

    @classmethod
    def from_state(cls, policy: ChallengePolicy, s: dict[str, Any]) -> Challenges:
        c = cls(policy)
        (
            c._passed,
            c._failed,
            c._missed,
            c._late,
            c._answered,
            c._template,
            c._unseen,
            c._counted,
            c._willing,
        ) = (int(x) for x in s["n"])
        c._flags = {str(k): int(v) for k, v in s["flags"].items() if k in TIMING_FLAGS}
        c._flag_ms = {
            str(k): [float(x) for x in v][-4:] for k, v in s["flag_ms"].items() if k in TIMING_FLAGS
        }
        c._rt = Ring.from_state(s["rt"])
        c._rt_action = Ring.from_state(s["rt_action"])
        c._recent = Ring.from_state(s["recent"])
        return c


def _rate_llr(k: int, n: int, q_person: float, q_script: float) -> float:
    """Log-likelihood ratio (person over script) of ``k`` flagged answers out of ``n``, at most 0."""
    n = max(n, k)
    llr = k * math.log(q_person / q_script) + (n - k) * math.log((1 - q_person) / (1 - q_script))
    return min(0.0, llr)
