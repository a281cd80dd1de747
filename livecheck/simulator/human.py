"""Bona fide drivers: people in front of a camera tracker, each with a personality drawn from a seed.

Parameters follow published physiology (sources in docs/liveness.md): spontaneous blinking ≈ 17/min at
rest and ≈ 26/min talking with right-skewed (log-normal) intervals, about half of blinks incomplete,
durations 100-400 ms; head posture that drifts (an Ornstein-Uhlenbeck process), sways with breathing at a
wandering rate, and jumps when the gaze moves (minimum-jerk movements); a jaw that moves around voice onset
with a varying lead or lag; choice reactions to a prompt of several hundred ms with person-to-person
spread; replies to some chat messages after seconds of reading and thinking. People also look away, wear
glasses, squint, talk a lot or little, and sometimes miss or under-do a challenge.

``heldout=True`` draws from shifted ranges (other tracker rates, more or less noise, other personalities)
that are never used for tuning.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .driver import Driver, Gesture, Pose, Utterance, blink_profile, gesture_for
from .tracker import TrackerModel

__all__ = ["BlinkModel", "HumanDriver", "HumanParams", "SpeechModel", "human_tracker"]


def human_tracker(rng: random.Random, heldout: bool) -> TrackerModel:
    """A camera tracker as people use them: 30 or 60 Hz (24/50 held out), jitter, drops, noise, smoothing."""
    rate = rng.choice((24.0, 30.0, 50.0, 60.0) if heldout else (30.0, 30.0, 60.0))
    return TrackerModel(
        rate_hz=rate,
        ts_jitter_ms=rng.uniform(0.3, 5.0) if heldout else rng.uniform(0.5, 4.0),
        drop_p=rng.uniform(0.0, 0.04),
        burst_p=rng.uniform(0.0, 0.004),
        noise="gauss",
        head_noise_deg=rng.uniform(0.03, 0.5) if heldout else rng.uniform(0.05, 0.4),
        eye_noise=rng.uniform(0.008, 0.05),
        jaw_noise=rng.uniform(0.005, 0.03),
        smoothing=rng.choice((0.0, 0.0, 0.3, 0.5, 0.7) if heldout else (0.0, 0.0, 0.3, 0.5)),
        round_ms=rng.random() < 0.25,
        linked_eyes=rng.random() < 0.1,
        batch_s=rng.choice((1 / 3, 0.5, 1.0)),
    )


class BlinkModel:
    """Spontaneous blinks: log-normal intervals, partial closures, varied durations, a small lid lag."""

    def __init__(
        self,
        rng: random.Random,
        *,
        rate_rest: float,
        talk_factor: float,
        sigma: float,
        partial_p: float,
        dur_median: float,
        glasses: bool,
        t0: float,
    ) -> None:
        self.rng = rng
        self.rate_rest = rate_rest  # blinks per minute at rest
        self.talk_factor = talk_factor  # rate multiplier while talking
        self.sigma = sigma  # log-normal shape of the intervals
        self.partial_p = partial_p
        self.dur_median = dur_median
        self.gain = rng.uniform(0.6, 0.9) if glasses else 1.0  # glasses hide part of the closure
        self.active: list[
            tuple[float, float, float, float, float, float]
        ] = []  # start, dur, pl, pr, lag, close
        self.next_t = t0 + rng.uniform(0.2, 4.0)

    def interval(self, talking: bool) -> float:
        rate = self.rate_rest * (self.talk_factor if talking else 1.0)
        mean = 60.0 / rate
        # Log-normal with this mean: median = mean / exp(sigma^2 / 2).
        med = mean / math.exp(self.sigma**2 / 2)
        return max(0.25, med * math.exp(self.rng.gauss(0.0, self.sigma)))

    def level(self, t: float, talking: bool) -> tuple[float, float]:
        rng = self.rng
        while t >= self.next_t:
            start = self.next_t
            dur = min(0.5, max(0.08, self.dur_median * math.exp(rng.gauss(0.0, 0.25))))
            full = rng.random() >= self.partial_p
            peak = rng.uniform(0.82, 1.0) if full else rng.uniform(0.35, 0.78)
            pl = min(1.0, max(0.0, peak * self.gain + rng.gauss(0.0, 0.03)))
            pr = min(1.0, max(0.0, peak * self.gain + rng.gauss(0.0, 0.03)))
            self.active.append((start, dur, pl, pr, rng.gauss(0.0, 0.004), rng.uniform(0.3, 0.45)))
            # Occasionally a quick second blink (blink bursts).
            self.next_t = start + (rng.uniform(0.35, 0.8) if rng.random() < 0.07 else self.interval(talking))
        el = er = 0.0
        keep = []
        for start, dur, pl, pr, lag, close in self.active:
            if t > start + dur + abs(lag) + 0.01:
                continue
            keep.append((start, dur, pl, pr, lag, close))
            el = max(el, pl * blink_profile((t - start) / dur, close))
            er = max(er, pr * blink_profile((t - start - lag) / dur, close))
        self.active = keep
        return el, er


class SpeechModel:
    """Spontaneous talk and chat replies, as planned utterances; a jaw that articulates them."""

    def __init__(
        self,
        rng: random.Random,
        *,
        talk_share: float,
        reply_p: float,
        reply_median: float,
        reply_sigma: float,
        lag_mu: float,
        lag_sd: float,
        send_reply_to: bool,
        t0: float,
    ) -> None:
        self.rng = rng
        self.talk_share = talk_share
        self.reply_p = reply_p
        self.reply_median = reply_median
        self.reply_sigma = reply_sigma
        self.lag_mu, self.lag_sd = lag_mu, lag_sd  # jaw onset relative to voice onset (s)
        self.send_reply_to = send_reply_to
        self.planned: list[Utterance] = []  # future and current utterances, in order
        self.done: list[Utterance] = []  # the last finished utterances (the jaw may still lag behind them)
        self.outbox: list[Utterance] = []  # finished utterances not yet handed out
        self.jaw_amp: dict[float, tuple[float, float, float]] = {}  # t0 -> (amplitude, rate, lag)
        self._next_spont = t0 + self._silence()

    def _silence(self) -> float:
        if self.talk_share <= 0:
            return math.inf
        mean_talk = 3.0
        mean_sil = mean_talk * (1 - self.talk_share) / self.talk_share
        return self.rng.expovariate(1.0 / max(mean_sil, 0.5)) + 0.3

    def _add(self, t0: float, dur: float, reply_to: str | None) -> None:
        # Never overlap: start after whatever is planned.
        if self.planned and t0 < self.planned[-1].t1 + 0.3:
            t0 = self.planned[-1].t1 + self.rng.uniform(0.3, 1.2)
        u = Utterance(t0, t0 + dur, reply_to)
        self.planned.append(u)
        self.jaw_amp[t0] = (
            self.rng.uniform(0.25, 0.6),
            self.rng.uniform(3.5, 6.0),
            self.rng.gauss(self.lag_mu, self.lag_sd),
        )

    def on_chat(self, t: float, message_id: str) -> None:
        if self.rng.random() < self.reply_p:
            lat = self.reply_median * math.exp(self.rng.gauss(0.0, self.reply_sigma))
            dur = min(15.0, 2.5 * math.exp(self.rng.gauss(0.0, 0.5)))
            self._add(t + lat, dur, message_id if self.send_reply_to else None)

    def advance(self, t: float) -> None:
        while t >= self._next_spont:
            dur = min(20.0, 3.0 * math.exp(self.rng.gauss(0.0, 0.6)))
            self._add(self._next_spont, dur, None)
            self._next_spont = self.planned[-1].t1 + self._silence()
        while self.planned and self.planned[0].t1 <= t:
            u = self.planned.pop(0)
            self.done = [*self.done[-1:], u]
            self.outbox.append(u)

    def talking(self, t: float) -> bool:
        return any(u.t0 <= t <= u.t1 for u in self.planned[:2])

    def jaw(self, t: float, rest: float) -> float:
        """Articulation: syllable-rate opening, starting and stopping around the voice with a lag."""
        v = rest
        for u in self.planned[:2] + self.done[-1:]:
            amp, rate, lag = self.jaw_amp.get(u.t0, (0.0, 1.0, 0.0))
            if u.t0 + lag <= t <= u.t1 + lag:
                x = t - u.t0 - lag
                env = min(1.0, x / 0.12, (u.t1 + lag - t) / 0.12)
                v = max(v, rest + amp * env * (0.55 + 0.45 * math.sin(2 * math.pi * rate * x - 1.2)))
        return v

    def take_done(self) -> list[Utterance]:
        """Finished utterances not yet handed out (each once)."""
        out, self.outbox = self.outbox, []
        return out


@dataclass(frozen=True, slots=True)
class HumanParams:
    """One person's personality (see module docstring)."""

    rate_rest: float
    talk_factor: float
    ibi_sigma: float
    partial_p: float
    dur_median: float
    glasses: bool
    eye_rest: float
    drift_tau: float
    drift_deg: float
    gaze_rate: float
    gaze_deg: float
    sway_deg: float
    sway_hz: float
    tremor_deg: float
    look_away_rate: float
    talk_share: float
    reply_p: float
    reply_median: float
    reply_sigma: float
    lag_mu: float
    lag_sd: float
    rt_median_ms: float
    rt_sigma: float
    miss_p: float
    show_delay_s: float

    @classmethod
    def draw(cls, rng: random.Random, heldout: bool = False) -> HumanParams:
        u = rng.uniform
        return cls(
            rate_rest=u(8.0, 28.0) if heldout else u(10.0, 25.0),
            talk_factor=u(1.2, 1.9),
            ibi_sigma=u(0.45, 1.0) if heldout else u(0.5, 0.9),
            partial_p=u(0.2, 0.7) if heldout else u(0.25, 0.65),
            dur_median=u(0.12, 0.3),
            glasses=rng.random() < 0.3,
            eye_rest=u(0.0, 0.2),
            drift_tau=u(4.0, 25.0),
            drift_deg=u(1.5, 9.0) if heldout else u(2.0, 8.0),
            gaze_rate=u(0.03, 0.4),
            gaze_deg=u(3.0, 15.0),
            sway_deg=u(0.1, 1.0),
            sway_hz=u(0.18, 0.35),
            tremor_deg=u(0.03, 0.25),
            look_away_rate=u(0.0, 1.5) / 60.0,
            talk_share=rng.choice((0.05, 0.15, 0.3, 0.5, 0.65)),
            reply_p=u(0.15, 0.75),
            reply_median=u(2.0, 6.0),
            reply_sigma=u(0.45, 0.85),
            lag_mu=u(-0.15, 0.1),
            lag_sd=u(0.05, 0.14),
            rt_median_ms=u(300.0, 700.0) if heldout else u(320.0, 650.0),
            rt_sigma=u(0.2, 0.45),
            miss_p=u(0.0, 0.08),
            show_delay_s=u(0.05, 0.6),
        )


class _OU:
    """Ornstein-Uhlenbeck process (exact discretisation): drift that returns toward zero."""

    __slots__ = ("rng", "sd", "tau", "x")

    def __init__(self, rng: random.Random, tau: float, sd: float) -> None:
        self.rng, self.tau, self.sd = rng, tau, sd
        self.x = rng.gauss(0.0, sd)

    def step(self, dt: float) -> float:
        if dt > 0:
            a = math.exp(-dt / self.tau)
            self.x = a * self.x + self.sd * math.sqrt(1 - a * a) * self.rng.gauss(0.0, 1.0)
        return self.x


class HumanDriver(Driver):
    """A person driving the avatar live (``responsive=False``: a recording that ignores the present)."""

    def __init__(
        self,
        rng: random.Random,
        params: HumanParams,
        tracker: TrackerModel,
        *,
        send_reply_to: bool = True,
        responsive: bool = True,
    ) -> None:
        self.rng = rng
        self.p = params
        self.tracker = tracker
        self.responsive = responsive
        p = params
        self.blinks = BlinkModel(
            rng,
            rate_rest=p.rate_rest,
            talk_factor=p.talk_factor,
            sigma=p.ibi_sigma,
            partial_p=p.partial_p,
            dur_median=p.dur_median,
            glasses=p.glasses,
            t0=0.0,
        )
        self.speech = SpeechModel(
            rng,
            talk_share=p.talk_share,
            reply_p=p.reply_p if responsive else 0.0,
            reply_median=p.reply_median,
            reply_sigma=p.reply_sigma,
            lag_mu=p.lag_mu,
            lag_sd=p.lag_sd,
            send_reply_to=send_reply_to,
            t0=0.0,
        )
        self.drift = [
            _OU(rng, p.drift_tau * k, p.drift_deg * s) for k, s in ((1.0, 1.0), (0.7, 0.6), (1.3, 0.4))
        ]
        self.tremor = [_OU(rng, 0.15, p.tremor_deg) for _ in range(3)]
        self.gaze_from = [0.0, 0.0]
        self.gaze_to = [0.0, 0.0]
        self.gaze_t, self.gaze_dur = 0.0, 0.5
        self.next_gaze = rng.expovariate(p.gaze_rate) if p.gaze_rate > 0 else math.inf
        self.sway_phase = rng.uniform(0, 2 * math.pi)
        self.sway_hz = p.sway_hz
        self.away_until = -1.0
        self.next_away = rng.expovariate(p.look_away_rate) if p.look_away_rate > 0 else math.inf
        self.smile_until, self.smile_amp = -1.0, 0.0
        self.gestures: list[Gesture] = []
        self.last_t = 0.0

    def truth(self, t: float) -> tuple[Pose, bool]:
        rng, p = self.rng, self.p
        dt = max(0.0, t - self.last_t)
        self.last_t = t
        self.speech.advance(t)
        # Gaze shifts: a new target now and then, reached with a minimum-jerk movement.
        if t >= self.next_gaze and not self.gestures:  # no glancing away mid-answer
            self.gaze_from = self._gaze(t)
            self.gaze_to = [rng.gauss(0.0, p.gaze_deg), rng.gauss(0.0, p.gaze_deg * 0.4)]
            self.gaze_t, self.gaze_dur = t, rng.uniform(0.25, 0.8)
            self.next_gaze = t + rng.expovariate(p.gaze_rate)
        # Breathing sway: its rate wanders (a person does not breathe like a metronome).
        self.sway_hz = min(0.45, max(0.12, self.sway_hz + rng.gauss(0.0, 0.02) * math.sqrt(dt)))
        self.sway_phase += 2 * math.pi * self.sway_hz * dt
        g = self._gaze(t)
        d = [o.step(dt) for o in self.drift]
        tr = [o.step(dt) for o in self.tremor]
        sway = p.sway_deg * math.sin(self.sway_phase)
        pose = [d[0] + g[0] + tr[0], d[1] + g[1] + sway + tr[1], d[2] + tr[2] + 0.3 * sway, 0.0, 0.0, 0.0]
        talking = self.speech.talking(t)
        el, er = self.blinks.level(t, talking)
        pose[3] = p.eye_rest + (1 - p.eye_rest) * el
        pose[4] = p.eye_rest + (1 - p.eye_rest) * er
        if t >= self.smile_until and rng.random() < 0.03 * dt:
            self.smile_until, self.smile_amp = t + rng.uniform(0.5, 2.5), rng.uniform(0.1, 0.35)
        rest = 0.03 + (self.smile_amp if t < self.smile_until else 0.0)
        pose[5] = self.speech.jaw(t, rest)
        for gst in self.gestures:
            gst.apply(t, pose)
        self.gestures = [x for x in self.gestures if x.end > t]
        # Looking away: the tracker loses the face for a few seconds.
        if t >= self.next_away:
            self.away_until = t + min(40.0, 3.0 * math.exp(rng.gauss(0.0, 0.8)))
            self.next_away = self.away_until + rng.expovariate(p.look_away_rate)
        return (pose[0], pose[1], pose[2], pose[3], pose[4], pose[5]), t >= self.away_until

    def _gaze(self, t: float) -> list[float]:
        u = min(1.0, (t - self.gaze_t) / self.gaze_dur)
        s = u * u * u * (10 + u * (-15 + 6 * u))
        return [a + (b - a) * s for a, b in zip(self.gaze_from, self.gaze_to, strict=True)]

    def utterances_until(self, t: float) -> list[Utterance]:
        self.speech.advance(t)
        return self.speech.take_done()

    def on_chat(self, t: float, message_id: str) -> None:
        if self.responsive:
            self.speech.on_chat(t, message_id)

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        rng, p = self.rng, self.p
        shown = t + p.show_delay_s * rng.uniform(0.5, 1.5)
        if not self.responsive or rng.random() < p.miss_p:
            return shown  # the prompt appears, but nobody acts on it
        rt = max(0.19, p.rt_median_ms / 1000.0 * math.exp(rng.gauss(0.0, p.rt_sigma)))
        self.gestures.append(gesture_for(action, shown + rt, rng, human=True))
        return shown
