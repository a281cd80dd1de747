"""What every simulated driver provides, and the movement shapes they share.

A driver is the ground truth behind an avatar: a person, a renderer, a script. The session
(:mod:`livecheck.simulator.session`) asks it for its pose at each tracker frame time (in increasing
order), for utterances that have ended, and tells it about chat messages and challenges.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .tracker import Frame, TrackerModel

__all__ = [
    "Driver",
    "Gesture",
    "Utterance",
    "blink_profile",
    "gesture_for",
    "min_jerk",
]

Pose = tuple[float, float, float, float, float, float]  # yaw, pitch, roll, eyeL, eyeR, jaw


@dataclass(frozen=True, slots=True)
class Utterance:
    """The avatar spoke in [t0, t1] (sender clock, before the clock offset), maybe replying to a chat."""

    t0: float
    t1: float
    reply_to: str | None = None


def min_jerk(u: float) -> float:
    """Minimum-jerk position profile on [0, 1] (Flash & Hogan 1985), the shape of a voluntary movement."""
    if u <= 0.0:
        return 0.0
    if u >= 1.0:
        return 1.0
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def blink_profile(u: float, close_frac: float) -> float:
    """Lid closure (0-1 of the peak) at phase ``u`` of a blink: fast closing, slower reopening."""
    if u <= 0.0 or u >= 1.0:
        return 0.0
    if u < close_frac:
        return math.sin(0.5 * math.pi * u / close_frac)
    return 0.5 + 0.5 * math.cos(math.pi * (u - close_frac) / (1.0 - close_frac))


@dataclass(frozen=True, slots=True)
class Gesture:
    """A challenge answer: a movement of one channel starting at ``start`` (driver clock)."""

    action: str
    start: float
    amplitude: float  # degrees for head actions, level for eyes and jaw
    rise_s: float  # time to reach the amplitude
    hold_s: float  # time held there
    fall_s: float  # time to return
    linear: bool = False  # a script's straight-line ramp instead of a minimum-jerk profile

    @property
    def end(self) -> float:
        return self.start + self.rise_s + self.hold_s + self.fall_s

    def level(self, t: float) -> float:
        """0-1 of the amplitude at time ``t``."""
        u = t - self.start
        if u <= 0 or t >= self.end:
            return 0.0
        shape = (lambda x: min(1.0, max(0.0, x))) if self.linear else min_jerk
        if u < self.rise_s:
            return shape(u / self.rise_s)
        u -= self.rise_s
        if u < self.hold_s:
            return 1.0
        return 1.0 - shape((u - self.hold_s) / self.fall_s)

    def apply(self, t: float, pose: list[float]) -> None:
        """Add this gesture's contribution at ``t`` to ``pose`` (in place)."""
        if t < self.start or t >= self.end:
            return
        if self.action == "blink_twice":
            # Two full blinks, ``hold_s`` apart, each ``rise_s`` long.
            for k in range(2):
                u = (t - self.start - k * self.hold_s) / self.rise_s
                if 0 < u < 1:
                    v = self.amplitude * blink_profile(u, 0.4)
                    pose[3] = max(pose[3], v)
                    pose[4] = max(pose[4], v)
            return
        v = self.level(t) * self.amplitude
        if self.action == "turn_head_left":
            pose[0] += v
        elif self.action == "turn_head_right":
            pose[0] -= v
        elif self.action == "nod":
            pose[1] += v
        elif self.action == "open_mouth":
            pose[5] = max(pose[5], v)


def gesture_for(action: str, start: float, rng: random.Random, *, human: bool) -> Gesture:
    """A plausible answer to ``action``: varied for a person, a fixed template for a script."""
    if not human:
        table = {
            "turn_head_left": (25.0, 0.25, 0.6, 0.25),
            "turn_head_right": (25.0, 0.25, 0.6, 0.25),
            "nod": (15.0, 0.2, 0.1, 0.2),
            "blink_twice": (1.0, 0.3, 0.5, 0.3),
            "open_mouth": (0.9, 0.15, 0.6, 0.15),
        }
        a, r, h, f = table[action]
        return Gesture(action, start, a, r, h, f, linear=True)
    short = rng.random() < 0.06  # sometimes a person does too little
    if action in ("turn_head_left", "turn_head_right"):
        amp = rng.uniform(10.0, 14.0) if short else rng.uniform(18.0, 40.0)
        return Gesture(
            action, start, amp, rng.uniform(0.3, 0.8), rng.uniform(0.2, 1.0), rng.uniform(0.4, 1.0)
        )
    if action == "nod":
        amp = rng.uniform(5.0, 7.0) if short else rng.uniform(10.0, 22.0)
        return Gesture(
            action, start, amp, rng.uniform(0.25, 0.5), rng.uniform(0.0, 0.25), rng.uniform(0.3, 0.6)
        )
    if action == "blink_twice":
        return Gesture(
            action, start, rng.uniform(0.85, 1.0), rng.uniform(0.18, 0.32), rng.uniform(0.35, 0.7), 0.3
        )
    amp = rng.uniform(0.45, 0.58) if short else rng.uniform(0.68, 0.98)
    return Gesture(action, start, amp, rng.uniform(0.15, 0.35), rng.uniform(0.45, 1.3), rng.uniform(0.2, 0.4))


class Driver:
    """Base driver: subclasses override :meth:`truth` and what they react to."""

    tracker: TrackerModel

    def truth(self, t: float) -> tuple[Pose, bool]:
        """Pose and face visibility at driver time ``t`` (called with increasing ``t``)."""
        raise NotImplementedError

    def recorded_frames(self) -> bool:
        """True when the driver replays recorded frames (with their own times) instead of posing live."""
        return False

    def frames_until(self, t: float) -> list[Frame]:
        """Recorded frames up to ``t`` (only when :meth:`recorded_frames`)."""
        return []

    def utterances_until(self, t: float) -> list[Utterance]:
        """Utterances that ended by ``t``, each returned once."""
        return []

    def on_chat(self, t: float, message_id: str) -> None:
        """A viewer's chat message became visible at ``t``."""

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        """A challenge arrived at ``t``: the time it is shown (driver clock), or None if never shown."""
        return None
