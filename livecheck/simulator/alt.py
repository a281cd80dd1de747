"""A second, deliberately different bona fide generator: people as someone else would simulate them.

The main simulator (:mod:`livecheck.simulator.human`) was written together with the engine, so the engine
may fit its habits rather than people. ``AltHuman`` is written from DESIGN §6's public facts alone and
makes other modelling choices on purpose, each drawn per seed: head micro-motion as a random walk, an
Ornstein-Uhlenbeck drift with a breathing sine, or a few slow sines; frame times on a grid with Gaussian
or bounded uniform jitter (both are "sensor jitter" to somebody); blinks with a fixed or a varied
duration and a triangular or cosine profile; challenge answers that start 190-250 ms after the prompt and
follow a straight ramp, an eased or a minimum-jerk profile, with a fixed or a varied amplitude; a jaw that
articulates speech with a lag. The engine is never tuned on it: it measures robustness (``human_alt`` in
``bench/liveness_eval.py``).
"""

from __future__ import annotations

import math
import random

from .driver import Driver, Pose, Utterance, blink_profile, min_jerk
from .tracker import Frame, TrackerModel

__all__ = ["AltHuman"]


def _ease(style: str, u: float) -> float:
    """Position profile of a voluntary movement on [0, 1] in the given style."""
    u = min(1.0, max(0.0, u))
    if style == "linear":
        return u
    if style == "smooth":
        return u * u * (3.0 - 2.0 * u)
    return min_jerk(u)


class _Move:
    """One challenge answer: rise, hold, return of one channel (or two blinks)."""

    __slots__ = ("action", "amp", "fall", "gap", "hold", "rise", "start", "style")

    def __init__(
        self, action: str, start: float, amp: float, rise: float, hold: float, fall: float, style: str
    ) -> None:
        self.action, self.start, self.amp = action, start, amp
        self.rise, self.hold, self.fall, self.style = rise, hold, fall, style
        self.gap = hold  # blink_twice: time between the two blinks

    @property
    def end(self) -> float:
        if self.action == "blink_twice":
            return self.start + self.gap + self.rise + 0.05
        return self.start + self.rise + self.hold + self.fall

    def level(self, t: float) -> float:
        u = t - self.start
        if u <= 0 or t >= self.end:
            return 0.0
        if self.action == "blink_twice":
            v = 0.0
            for k in range(2):
                x = (u - k * self.gap) / self.rise
                if 0 < x < 1:
                    v = max(v, blink_profile(x, 0.4))
            return self.amp * v
        if u < self.rise:
            return self.amp * _ease(self.style, u / self.rise)
        if u < self.rise + self.hold:
            return self.amp
        return self.amp * (1.0 - _ease(self.style, (u - self.rise - self.hold) / self.fall))


class AltHuman(Driver):
    """A person in front of a camera tracker, modelled independently (see module docstring)."""

    def __init__(self, rng: random.Random, heldout: bool = False) -> None:
        self.rng = rng
        u = rng.uniform
        self.rate = rng.choice((30.0, 60.0, u(25.0, 60.0)))
        self.ts_style = rng.choice(("gauss", "gauss", "uniform"))
        self.ts_jit = u(0.0005, 0.003)
        self.head_noise = u(0.05, 0.4)
        self.eye_noise = u(0.005, 0.04)
        self.jaw_noise = u(0.005, 0.03)
        self.head_style = rng.choice(("walk", "ou_breath", "sines"))
        self.walk_sd = u(0.5, 2.0)  # deg per sqrt(s)
        self.breath_hz = u(0.2, 0.33)
        self.breath_amp = u(0.2, 1.0)
        self.sines = [
            [(u(0.3, 3.0), u(0.05, 0.5), u(0, 6.3)) for _ in range(rng.randint(2, 3))] for _ in range(3)
        ]
        self.head = [0.0, 0.0, 0.0]
        self.blink_rest = u(12.0, 22.0)  # per minute at rest
        self.blink_talk = u(20.0, 30.0)
        self.blink_sigma = u(0.3, 0.8)
        self.blink_partial = u(0.35, 0.65)
        self.blink_fixed = rng.random() < 0.4  # every blink the same duration
        self.blink_dur = u(0.12, 0.3)
        self.blink_tri = rng.random() < 0.5  # triangular rather than a cosine-shaped closure
        self.eye_rest = u(0.0, 0.15)
        self.next_blink = u(0.5, 3.0)
        self.blinks: list[tuple[float, float, float]] = []  # start, duration, peak
        self.talk_share = rng.choice((0.0, 0.1, 0.3, 0.5))
        self.speech: list[Utterance] = []
        self.out_speech: list[Utterance] = []
        self.next_talk = u(1.0, 8.0) if self.talk_share else math.inf
        self.jaw_lag = (u(-0.1, 0.1), u(0.03, 0.12))
        self.lags: dict[float, float] = {}
        self.reply_p = u(0.2, 0.6)
        self.reply_med, self.reply_sigma = u(2.0, 6.0), u(0.4, 0.8)
        self.rt_style = rng.choice(("uniform", "normal"))
        self.move_style = rng.choice(("linear", "smooth", "minjerk"))
        self.fixed_amp = rng.random() < 0.5
        self.miss_p = u(0.0, 0.05)
        self.moves: list[_Move] = []
        self.tracker = TrackerModel(rate_hz=self.rate, batch_s=rng.choice((0.1, 1 / 3, 0.5, 1.0)))
        self._next_frame = u(0.0, 0.03)
        self._k = 0
        self._t0 = self._next_frame
        self._last_t = -math.inf
        self._truth_t = 0.0

    # -- the person ---------------------------------------------------------------------------------------

    def _interval(self, talking: bool) -> float:
        mean = 60.0 / (self.blink_talk if talking else self.blink_rest)
        med = mean / math.exp(self.blink_sigma**2 / 2)
        return max(0.2, med * math.exp(self.rng.gauss(0.0, self.blink_sigma)))

    def _talking(self, t: float) -> bool:
        return any(s.t0 <= t <= s.t1 for s in self.speech[-2:])

    def _advance_speech(self, t: float) -> None:
        while t >= self.next_talk:
            dur = self.rng.uniform(1.0, 6.0)
            self._utter(self.next_talk, dur, None)
            mean_sil = 3.5 * (1 - self.talk_share) / self.talk_share
            self.next_talk = self.speech[-1].t1 + self.rng.expovariate(1.0 / mean_sil) + 0.3

    def _utter(self, t0: float, dur: float, reply_to: str | None) -> None:
        if self.speech and t0 < self.speech[-1].t1 + 0.3:
            t0 = self.speech[-1].t1 + self.rng.uniform(0.3, 1.0)
        u = Utterance(t0, t0 + dur, reply_to)
        self.speech.append(u)
        self.lags[t0] = self.rng.gauss(*self.jaw_lag)
        if len(self.speech) > 8:
            old = self.speech.pop(0)
            self.lags.pop(old.t0, None)

    def truth(self, t: float) -> tuple[Pose, bool]:
        rng = self.rng
        dt = max(0.0, t - self._truth_t)
        self._truth_t = t
        self._advance_speech(t)
        if self.head_style == "sines":
            head = [sum(a * math.sin(2 * math.pi * f * t + p) for a, f, p in ch) for ch in self.sines]
        else:
            for i in range(3):
                step = self.walk_sd * math.sqrt(dt) * rng.gauss(0.0, 1.0)
                pull = 0.05 * dt * self.head[i] if self.head_style == "walk" else dt / 8.0 * self.head[i]
                self.head[i] += step - pull
            head = list(self.head)
            if self.head_style == "ou_breath":
                head[1] += self.breath_amp * math.sin(2 * math.pi * self.breath_hz * t)
        talking = self._talking(t)
        while t >= self.next_blink:
            dur = self.blink_dur if self.blink_fixed else rng.uniform(0.1, 0.3)
            peak = rng.uniform(0.3, 0.75) if rng.random() < self.blink_partial else rng.uniform(0.9, 1.0)
            self.blinks.append((self.next_blink, dur, peak))
            self.next_blink += self._interval(talking)
        self.blinks = [b for b in self.blinks if b[0] + b[1] > t - 0.01]
        lid = 0.0
        for start, dur, peak in self.blinks:
            x = (t - start) / dur
            if 0 < x < 1:
                lid = max(lid, peak * ((1 - abs(2 * x - 1)) if self.blink_tri else blink_profile(x, 0.4)))
        eye = self.eye_rest + (1 - self.eye_rest) * lid
        jaw = 0.04
        for s in self.speech[-2:]:
            lag = self.lags.get(s.t0, 0.0)
            if s.t0 + lag <= t <= s.t1 + lag:
                x = t - s.t0 - lag
                jaw = max(jaw, 0.04 + 0.35 * (0.5 + 0.5 * math.sin(2 * math.pi * 4.5 * x - 1.5)))
        pose = [head[0], head[1], head[2], eye, eye, jaw]
        for m in self.moves:
            v = m.level(t)
            if m.action == "turn_head_left":
                pose[0] += v
            elif m.action == "turn_head_right":
                pose[0] -= v
            elif m.action == "nod":
                pose[1] += v
            elif m.action == "open_mouth":
                pose[5] = max(pose[5], v)
            else:
                pose[3] = max(pose[3], v)
                pose[4] = max(pose[4], v)
        self.moves = [m for m in self.moves if m.end > t]
        return (pose[0], pose[1], pose[2], pose[3], pose[4], pose[5]), True

    # -- its own tracker ----------------------------------------------------------------------------------

    def recorded_frames(self) -> bool:
        return True  # frame times and noise are this generator's own, not TrackerState's

    def frames_until(self, t: float) -> list[Frame]:
        rng = self.rng
        out: list[Frame] = []
        while True:
            nominal = self._t0 + self._k / self.rate
            if self.ts_style == "gauss":
                ft = nominal + rng.gauss(0.0, self.ts_jit)
            else:
                ft = nominal + rng.uniform(-self.ts_jit, self.ts_jit)
            ft = max(ft, self._last_t + 1e-4)
            if ft > t:
                return out
            self._k += 1
            self._last_t = ft
            (y, p, r, el, er, jaw), face = self.truth(ft)
            g = rng.gauss
            el = min(1.0, max(0.0, el + g(0.0, self.eye_noise)))
            er = min(1.0, max(0.0, er + g(0.0, self.eye_noise)))
            jaw = min(1.0, max(0.0, jaw + g(0.0, self.jaw_noise)))
            n = self.head_noise
            out.append(Frame(ft, y + g(0.0, n), p + g(0.0, n), r + g(0.0, n), el, er, jaw, face))

    # -- the world ----------------------------------------------------------------------------------------

    def utterances_until(self, t: float) -> list[Utterance]:
        self._advance_speech(t)
        done = [s for s in self.speech if s.t1 <= t and s not in self.out_speech]
        self.out_speech = (self.out_speech + done)[-8:]
        return done

    def on_chat(self, t: float, message_id: str) -> None:
        if self.rng.random() < self.reply_p:
            lat = self.reply_med * math.exp(self.rng.gauss(0.0, self.reply_sigma))
            self._utter(t + lat, self.rng.uniform(1.5, 5.0), message_id)

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        rng = self.rng
        shown = t + rng.uniform(0.05, 0.3)
        if rng.random() < self.miss_p:
            return shown
        rt = rng.uniform(0.19, 0.25) if self.rt_style == "uniform" else max(0.15, rng.gauss(0.22, 0.025))
        fixed = self.fixed_amp
        if action in ("turn_head_left", "turn_head_right"):
            amp = 25.0 if fixed else rng.uniform(20.0, 35.0)
            m = _Move(
                action, shown + rt, amp, 0.35 if fixed else rng.uniform(0.2, 0.5), 0.6, 0.4, self.move_style
            )
        elif action == "nod":
            amp = 15.0 if fixed else rng.uniform(12.0, 20.0)
            m = _Move(
                action, shown + rt, amp, 0.3 if fixed else rng.uniform(0.2, 0.4), 0.1, 0.35, self.move_style
            )
        elif action == "open_mouth":
            amp = 0.8 if fixed else rng.uniform(0.7, 0.95)
            m = _Move(
                action, shown + rt, amp, 0.2, 0.7 if fixed else rng.uniform(0.5, 1.0), 0.2, self.move_style
            )
        else:
            gap = 0.45 if fixed else rng.uniform(0.35, 0.6)
            m = _Move(
                action, shown + rt, 1.0 if fixed else rng.uniform(0.9, 1.0), 0.25, gap, 0.0, self.move_style
            )
        self.moves.append(m)
        return shown
