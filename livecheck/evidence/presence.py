"""Presence: is there a face in front of the tracker, is tracking arriving at all?

People look away, lean out of frame and take short breaks; a session where nobody is in front of the
tracker for minutes is not driven by a person in real time. Face visibility is kept per second of the
sender's clock for the last 256 s (uint8 percentages); continuous absence is measured on the server's
receive clock, so a client that stops sending cannot stop the clock.
"""

from __future__ import annotations

from typing import Any

from .base import Evidence, Override
from .policy import PresencePolicy
from .ring import Ring

__all__ = ["Presence"]


class Presence:
    """Per-second face share and the time of the last face-visible sample."""

    __slots__ = ("_cur", "_face", "_first_recv", "_last_seen", "_ring", "_tot", "p")

    def __init__(self, policy: PresencePolicy) -> None:
        self.p = policy
        self._ring = Ring("B", 256)  # per second: percent of samples with a face (0-100)
        self._cur = -1  # second (floor of sender time) being filled
        self._face = 0  # face-visible samples in that second
        self._tot = 0  # samples in that second
        self._last_seen: float | None = None  # server receive time of the last face-visible sample
        self._first_recv: float | None = None  # server receive time of the first message of the session

    def touch(self, recv: float) -> None:
        """Any message arrived: starts the absence clock at the session's first message."""
        if self._first_recv is None:
            self._first_recv = recv

    def update(self, ts: Any, face: Any, recv: float) -> None:
        self.touch(recv)
        cur, fc, tot, ring = self._cur, self._face, self._tot, self._ring
        seen = False
        for t, f in zip(ts, face, strict=True):
            s = int(t)
            if s != cur:
                if cur >= 0 and tot:
                    ring.push(100 * fc // tot)
                    for _ in range(min(s - cur - 1, 256)):
                        ring.push(0)
                cur, fc, tot = s, 0, 0
            tot += 1
            if f:
                fc += 1
                seen = True
        self._cur, self._face, self._tot = cur, fc, tot
        if seen:
            self._last_seen = recv

    def absent_for(self, now: float) -> float:
        """Seconds (server clock) since the last face-visible sample, or since the session began."""
        ref = self._last_seen if self._last_seen is not None else self._first_recv
        return 0.0 if ref is None else max(0.0, now - ref)

    def evidence(self) -> list[Evidence]:
        win = int(self.p.window_s)
        vals = self._ring.values()[-win:]
        if len(vals) < win // 2:
            return []
        absent = sum(100 - v for v in vals) / 100.0
        if absent >= self.p.absent_share * len(vals):
            return [
                Evidence(
                    "face_absent",
                    "presence",
                    -1.0
                    - 2.0 * (absent / len(vals) - self.p.absent_share) / (1 - self.p.absent_share + 1e-9),
                    f"no face in front of the tracker for {absent:.0f} of the last {len(vals)} s",
                )
            ]
        return []

    def overrides(self, now: float) -> list[Override]:
        gone = self.absent_for(now)
        if gone >= self.p.violation_after_s:
            return [
                Override("violation", "absent_operator", f"no face tracked for {gone:.0f} s: nobody drives")
            ]
        if gone >= self.p.at_risk_after_s:
            return [Override("at_risk", "absent_operator", f"no face tracked for {gone:.0f} s")]
        return []

    def to_state(self) -> dict[str, Any]:
        return {
            "ring": self._ring.to_state(),
            "cur": [self._cur, self._face, self._tot],
            "seen": self._last_seen,
            "first": self._first_recv,
        }

    @classmethod
    def from_state(cls, policy: PresencePolicy, s: dict[str, Any]) -> Presence:
        p = cls(policy)
        p._ring = Ring.from_state(s["ring"])
        p._cur, p._face, p._tot = (int(x) for x in s["cur"])
        p._last_seen = None if s["seen"] is None else float(s["seen"])
        p._first_recv = None if s["first"] is None else float(s["first"])
        return p
