"""A minimal stand-in for the server's challenge scheduler and detector, for the bench and tests.

It issues challenges at random times and judges them from the tracking samples by PROTOCOL.md's default
completion rules (baseline = median of the second before ``challenge.shown.t``; turn ≥ 15°; nod ≥ 8° down
and back within 3° in 2 s; two blinks ≥ 0.6 then ≤ 0.3 within 2.5 s; jaw ≥ 0.6 held 300 ms; onset = the
first sample 20% of the way to the threshold; a movement under way at ``shown`` does not count). The real
server's ``livecheck/challenge_engine.py`` replaces it once the bench streams through the server.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..engine import ChallengeOutcome

__all__ = ["ACTIONS", "Referee"]

ACTIONS = ("blink_twice", "turn_head_left", "turn_head_right", "nod", "open_mouth")


@dataclass(slots=True)
class _Challenge:
    cid: str
    action: str
    issued: float  # server time
    deadline_s: float
    shown_t: float | None = None  # sender clock
    shown_recv: float | None = None  # server time challenge.shown arrived


class Referee:
    """Issues challenges (mean interval, jitter, minimum spacing) and judges their outcomes."""

    def __init__(
        self,
        rng: random.Random,
        *,
        mean_interval_s: float = 30.0,
        first_within_s: float = 20.0,
        show_within_s: float = 5.0,
        deadline_s: float = 6.0,
        min_reaction_ms: float = 150.0,
    ) -> None:
        self.rng = rng
        self.mean_interval_s = mean_interval_s
        self.show_within_s = show_within_s
        self.deadline_s = deadline_s
        self.min_reaction_ms = min_reaction_ms
        self.next_at = rng.uniform(0.4, 1.0) * first_within_s
        self.open: list[_Challenge] = []
        self.n = 0
        # Face-visible samples of the last 20 s: (t, yaw, pitch, eyeL, eyeR, jaw).
        self.samples: deque[tuple[float, float, float, float, float, float]] = deque()
        self.latest_t = float("-inf")

    def on_message(self, msg: dict[str, Any], recv: float) -> None:
        kind = msg.get("type")
        if kind == "tracking":
            ch = msg["channels"]
            face = msg.get("face") or [True] * len(msg["ts"])
            for i, t in enumerate(msg["ts"]):
                if face[i]:
                    self.samples.append(
                        (
                            t,
                            ch["headYaw"][i],
                            ch["headPitch"][i],
                            ch["eyeBlinkLeft"][i],
                            ch["eyeBlinkRight"][i],
                            ch["jawOpen"][i],
                        )
                    )
                self.latest_t = max(self.latest_t, t)
            while self.samples and self.samples[0][0] < self.latest_t - 20.0:
                self.samples.popleft()
        elif kind == "challenge.shown":
            for c in self.open:
                if (
                    c.cid == msg["challenge_id"]
                    and c.shown_t is None
                    and recv - c.issued <= self.show_within_s
                ):
                    c.shown_t, c.shown_recv = float(msg["t"]), recv

    def poll(self, now: float, session: str) -> tuple[list[dict[str, Any]], list[ChallengeOutcome]]:
        """Server messages to send now (new challenges) and outcomes decided now."""
        out: list[dict[str, Any]] = []
        if now >= self.next_at:
            self.n += 1
            c = _Challenge(f"c{self.n}", self.rng.choice(ACTIONS), now, self.deadline_s)
            self.open.append(c)
            out.append(
                {
                    "type": "challenge",
                    "session": session,
                    "challenge_id": c.cid,
                    "action": c.action,
                    "deadline_s": c.deadline_s,
                }
            )
            gap = self.mean_interval_s * self.rng.uniform(0.5, 1.5)
            self.next_at = now + max(gap, self.show_within_s + self.deadline_s)
        done: list[ChallengeOutcome] = []
        for c in list(self.open):
            if c.shown_t is None:
                if now - c.issued > self.show_within_s:
                    done.append(ChallengeOutcome(c.cid, c.action, "missed"))
                    self.open.remove(c)
                continue
            assert c.shown_recv is not None
            if self.latest_t < c.shown_t + c.deadline_s and now < c.shown_recv + c.deadline_s + 2.0:
                continue
            onset = self._judge(c)
            self.open.remove(c)
            if onset is None:
                done.append(ChallengeOutcome(c.cid, c.action, "failed"))
                continue
            rt = 1000.0 * (onset - c.shown_t)
            flags = ("reaction_too_fast",) if rt < self.min_reaction_ms else ()
            done.append(ChallengeOutcome(c.cid, c.action, "passed", rt, flags))
        return out, done

    def _judge(self, c: _Challenge) -> float | None:
        """Onset time of the completing movement, or None when it was not completed in time."""
        assert c.shown_t is not None
        s0, end = c.shown_t, c.shown_t + c.deadline_s
        pre = [s for s in self.samples if s0 - 1.0 <= s[0] < s0]
        post = [s for s in self.samples if s0 <= s[0] <= end]
        if not post:
            return None
        if not pre:
            pre = post[:1]

        def med(i: int) -> float:
            v = sorted(s[i] for s in pre)
            return v[len(v) // 2]

        a = c.action
        if a in ("turn_head_left", "turn_head_right"):
            base, sign = med(1), (1.0 if a == "turn_head_left" else -1.0)
            return _reach([(s[0], sign * (s[1] - base)) for s in post], 15.0)
        if a == "nod":
            base = med(2)
            sig = [(s[0], s[2] - base) for s in post]
            onset = None
            armed = sig[0][1] < 1.6
            down_at = None
            for t, v in sig:
                if down_at is None:
                    if v < 1.6:
                        armed, onset = True, None
                    elif armed and onset is None:
                        onset = t
                    if armed and v >= 8.0:
                        down_at = t
                elif t - down_at > 2.0:
                    down_at, onset, armed = None, None, v < 1.6
                elif v <= 3.0:
                    return onset
            return None
        if a == "open_mouth":
            lvl = med(5) + 0.2 * max(0.0, 0.6 - med(5))  # 20% of the way from the baseline to 0.6
            sig = [(s[0], s[5]) for s in post]
            onset, armed, run = None, sig[0][1] < lvl, None
            for t, v in sig:
                if v < lvl:
                    armed, onset = True, None
                elif armed and onset is None:
                    onset = t
                if v >= 0.6:
                    run = t if run is None else run
                    if armed and t - run >= 0.3:
                        return onset
                else:
                    run = None
            return None
        # blink_twice: both eyes >= 0.6 then <= 0.3, twice, within 2.5 s.
        base_eye = min(med(3), med(4))
        lvl = base_eye + 0.2 * max(0.0, 0.6 - base_eye)
        onset, armed, closed, first = None, min(post[0][3], post[0][4]) < lvl, False, None
        blinks = 0
        for s in post:
            t, lo = s[0], min(s[3], s[4])
            if not closed and blinks == 0:
                if lo < lvl:
                    armed, onset = True, None
                elif armed and onset is None:
                    onset = t
            if not closed and lo >= 0.6 and armed:
                closed = True
                first = t if first is None else first
            elif closed and max(s[3], s[4]) <= 0.3:
                closed = False
                blinks += 1
                if blinks == 2:
                    if first is not None and t - first <= 2.5:
                        return onset
                    blinks, first, onset = 1, t, None
        return None


def _reach(sig: list[tuple[float, float]], thr: float) -> float | None:
    onset, armed = None, sig[0][1] < 0.2 * thr
    for t, v in sig:
        if v < 0.2 * thr:
            armed, onset = True, None
        elif armed and onset is None:
            onset = t
        if armed and v >= thr:
            return onset
    return None
