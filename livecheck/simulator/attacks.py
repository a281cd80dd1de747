"""Attack species: what drives an avatar when no person does (or a recording of one does).

- ``live2d_idle``: the Live2D Cubism SDK sample defaults — ``CubismEyeBlink`` (interval uniform on
  ``[0, 2 * 4.0 - 1)`` s after each blink, closing 0.1 s, closed 0.05 s, opening 0.15 s, both eyes one
  parameter) and ``CubismBreath`` as set up by ``LAppModel`` (ParamAngleX 15 at 6.5345 s, ParamAngleY 8 at
  3.5345 s, ParamAngleZ 10 at 5.5345 s, BodyAngleX 4 at 15.5345 s, each weight 0.5), sometimes with a
  looping idle motion; rendered on a fixed clock with no noise or uniform jitter; challenges ignored.
- ``ai_driver``: a script animating the avatar — sines or smoothed random keyframes for the head,
  clocked blinks with uniform jitter, uniform value jitter, fixed or uniformly jittered cadence, and
  programmatic challenge answers (fixed delay, template movement).
- ``llm_tts``: a language model answering chat through speech synthesis, mouth driven by loudness
  (an instant function of the audio), machine reply latencies, idle or scripted motion.
- ``replay``: a recorded human session streamed again, sometimes looped; it cannot answer what happens now.
- ``careful_bot``: a script that imitates human blink statistics, tracker noise and frame-time wobble,
  with procedural head motion and mostly programmatic challenge answers.
- ``likeness_swap``: a person driving, but the stream shows another avatar than the registered one.
"""

from __future__ import annotations

import math
import random

from .driver import Driver, Gesture, Pose, Utterance, gesture_for
from .human import BlinkModel, HumanDriver, HumanParams, SpeechModel, human_tracker
from .tracker import Frame, TrackerModel, TrackerState

__all__ = [
    "AIDriver",
    "CarefulBot",
    "CubismEyeBlink",
    "LLMTTSDriver",
    "Live2DIdle",
    "ReplayDriver",
]

# LAppModel's CubismBreath parameters: (peak, cycle s), all with weight 0.5.
CUBISM_BREATH = {
    "yaw": (15.0, 6.5345),
    "pitch": (8.0, 3.5345),
    "roll": (10.0, 5.5345),
    "body": (4.0, 15.5345),
}


class CubismEyeBlink:
    """Port of the timing of Live2D Cubism's ``CubismEyeBlink`` (returns lid closure 0-1, not openness)."""

    INTERVAL_S = 4.0
    CLOSING_S = 0.1
    CLOSED_S = 0.05
    OPENING_S = 0.15

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.start = self._next(0.0)  # start of the next (or current) blink

    def _next(self, t: float) -> float:
        # DeterminNextBlinkingTiming: now + r * (2 * interval - 1), r uniform on [0, 1).
        return t + self.rng.random() * (2.0 * self.INTERVAL_S - 1.0)

    def closure(self, t: float) -> float:
        total = self.CLOSING_S + self.CLOSED_S + self.OPENING_S
        while t >= self.start + total:
            self.start = self._next(self.start + total)
        u = t - self.start
        if u < 0:
            return 0.0
        if u < self.CLOSING_S:
            return u / self.CLOSING_S
        if u < self.CLOSING_S + self.CLOSED_S:
            return 1.0
        return 1.0 - (u - self.CLOSING_S - self.CLOSED_S) / self.OPENING_S


class _Procedural:
    """Head motion of a renderer or script: Cubism breath, sines, or smoothed random keyframes."""

    def __init__(self, rng: random.Random, kind: str, heldout: bool) -> None:
        self.kind = kind
        self.rng = rng
        self.w = rng.choice((0.5, 1.0)) if heldout else 0.5
        self.body = rng.random() < 0.5
        self.loop = None
        if kind == "cubism" and rng.random() < 0.3:
            period = rng.uniform(8.0, 15.0)
            self.loop = (period, [(rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)) for _ in range(3)])
        self.sines = [
            [
                (rng.uniform(0.5, 6.0), rng.uniform(2.0, 12.0), rng.uniform(0, 6.3))
                for _ in range(rng.randint(2, 4))
            ]
            for _ in range(3)
        ]
        self.key_s = rng.uniform(0.8, 2.5)
        self.keys: dict[int, list[float]] = {}
        self.key_amp = rng.uniform(3.0, 10.0)

    def _key(self, k: int) -> list[float]:
        if k not in self.keys:
            self.keys[k] = [self.rng.uniform(-self.key_amp, self.key_amp) for _ in range(3)]
            if len(self.keys) > 8:
                del self.keys[min(self.keys)]
        return self.keys[k]

    def head(self, t: float) -> list[float]:
        if self.kind == "cubism":
            out = []
            for name in ("yaw", "pitch", "roll"):
                peak, cycle = CUBISM_BREATH[name]
                out.append(self.w * peak * math.sin(2 * math.pi * t / cycle))
            if self.body:
                peak, cycle = CUBISM_BREATH["body"]
                out[0] += self.w * peak * math.sin(2 * math.pi * t / cycle)
            if self.loop:
                period, harm = self.loop
                out[0] += sum(
                    a * math.sin(2 * math.pi * (k + 1) * t / period + ph) for k, (a, ph) in enumerate(harm)
                )
            return out
        if self.kind == "sines":
            return [sum(a * math.sin(2 * math.pi * t / p + ph) for a, p, ph in ch) for ch in self.sines]
        # Smoothed random keyframes (value noise with cosine easing).
        k = int(t / self.key_s)
        u = t / self.key_s - k
        s = 0.5 - 0.5 * math.cos(math.pi * u)
        a, b = self._key(k), self._key(k + 1)
        return [x + (y - x) * s for x, y in zip(a, b, strict=True)]


def _bot_tracker(rng: random.Random, *, noise: bool, ts_jitter: bool) -> TrackerModel:
    return TrackerModel(
        rate_hz=rng.choice((30.0, 60.0)),
        ts_jitter_ms=0.0,
        ts_uniform_ms=rng.uniform(1.0, 8.0) if ts_jitter else 0.0,
        drop_p=0.0,
        burst_p=0.0,
        noise="uniform" if noise else "none",
        head_noise_deg=rng.uniform(0.1, 1.0),
        eye_noise=rng.uniform(0.01, 0.05),
        jaw_noise=rng.uniform(0.005, 0.03),
        round_ms=rng.random() < 0.3,
        batch_s=rng.choice((1 / 3, 0.5, 1.0)),
    )


class _ScriptedChallenges:
    """How a bot's client handles challenges: never shown, shown and ignored, or answered by a script."""

    def __init__(
        self,
        rng: random.Random,
        mode: str,
        *,
        rt_s: float = 0.2,
        rt_sd: float = 0.0,
        human_moves: bool = False,
    ) -> None:
        self.rng, self.mode = rng, mode
        self.delay = rng.uniform(0.02, 0.15)
        self.rt_s, self.rt_sd = rt_s, rt_sd
        self.human_moves = human_moves
        self.gestures: list[Gesture] = []

    def on_challenge(self, action: str, t: float) -> float | None:
        if self.mode == "never_shown":
            return None
        shown = t + self.delay
        if self.mode == "answer":
            rt = max(
                0.0,
                self.rt_s + (self.rng.gauss(0.0, self.rt_sd) if self.rt_sd else self.rng.uniform(0, 0.01)),
            )
            self.gestures.append(gesture_for(action, shown + rt, self.rng, human=self.human_moves))
        return shown

    def apply(self, t: float, pose: list[float]) -> None:
        for g in self.gestures:
            g.apply(t, pose)
        self.gestures = [g for g in self.gestures if g.end > t]


class Live2DIdle(Driver):
    """The Live2D Cubism sample's idle: breath sines, uniform-interval identical blinks, nobody home."""

    def __init__(self, rng: random.Random, heldout: bool = False) -> None:
        self.rng = rng
        self.motion = _Procedural(rng, "cubism", heldout)
        self.blink = CubismEyeBlink(rng)
        self.tracker = _bot_tracker(rng, noise=rng.random() < 0.4, ts_jitter=False)
        self.challenges = _ScriptedChallenges(rng, rng.choice(("never_shown", "never_shown", "ignored")))

    def truth(self, t: float) -> tuple[Pose, bool]:
        h = self.motion.head(t)
        c = self.blink.closure(t)
        return (h[0], h[1], h[2], c, c, 0.0), True

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        return self.challenges.on_challenge(action, t)


class AIDriver(Driver):
    """A script animating the avatar: clocked blinks, procedural head, programmatic challenge answers."""

    def __init__(self, rng: random.Random, heldout: bool = False) -> None:
        self.rng = rng
        self.motion = _Procedural(rng, rng.choice(("sines", "keys")), heldout)
        self.period = rng.uniform(2.5, 5.0)
        self.jit = rng.uniform(0.0, 1.5)
        self.uniform_ibi = rng.random() < 0.3
        self.dur = rng.uniform(0.12, 0.3)
        self.peak = rng.choice((1.0, 1.0, 0.9))
        self.next_blink = rng.uniform(0.5, 3.0)
        self.blink_start = -10.0
        self.tracker = _bot_tracker(rng, noise=rng.random() < 0.7, ts_jitter=rng.random() < 0.5)
        lo, hi = (0.03, 0.4) if heldout else (0.05, 0.35)
        self.challenges = _ScriptedChallenges(rng, "answer", rt_s=rng.uniform(lo, hi))

    def truth(self, t: float) -> tuple[Pose, bool]:
        while t >= self.next_blink:
            self.blink_start = self.next_blink
            if self.uniform_ibi:
                self.next_blink += self.rng.uniform(1.0, 2 * self.period - 1.0)
            else:
                self.next_blink += self.period + self.rng.uniform(-self.jit, self.jit)
        u = (t - self.blink_start) / self.dur
        c = self.peak * (1 - abs(2 * u - 1)) if 0 <= u <= 1 else 0.0
        h = self.motion.head(t)
        pose = [h[0], h[1], h[2], c, c, 0.0]
        self.challenges.apply(t, pose)
        return (pose[0], pose[1], pose[2], pose[3], pose[4], pose[5]), True

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        return self.challenges.on_challenge(action, t)


class _TTS:
    """Speech synthesis answering chat: machine latencies, loudness lip-sync with no lag."""

    def __init__(self, rng: random.Random, heldout: bool, *, careful: bool = False) -> None:
        self.rng = rng
        self.careful = careful
        self.reply_p = rng.uniform(0.5, 0.9) if careful else rng.uniform(0.9, 1.0)
        self.lat_med = rng.uniform(0.8, 3.5) if heldout else rng.uniform(1.0, 3.0)
        self.lat_sigma = rng.uniform(0.35, 0.6) if careful else rng.uniform(0.05, 0.25)
        self.send_reply_to = rng.random() < 0.7
        self.speech = SpeechModel(
            rng,
            talk_share=rng.uniform(0.2, 0.6),
            reply_p=0.0,
            reply_median=1.0,
            reply_sigma=0.1,
            lag_mu=0.0,
            lag_sd=0.0,
            send_reply_to=False,
            t0=0.0,
        )
        self.gain = rng.uniform(0.6, 1.0)
        self.lip_lag: dict[float, float] = {}

    def on_chat(self, t: float, message_id: str) -> None:
        if self.rng.random() < self.reply_p:
            lat = self.lat_med * math.exp(self.rng.gauss(0.0, self.lat_sigma))
            dur = min(15.0, 3.0 * math.exp(self.rng.gauss(0.0, 0.4)))
            self.speech._add(t + lat, dur, message_id if self.send_reply_to else None)

    def jaw(self, t: float) -> float:
        """Loudness of the synthetic voice at ``t`` times a gain: zero outside speech, no smoothing."""
        for u in self.speech.planned[:2] + self.speech.done[-1:]:
            lag = 0.0
            if self.careful:
                lag = self.lip_lag.setdefault(u.t0, self.rng.gauss(0.06, 0.06))
            if u.t0 + lag <= t <= u.t1 + lag:
                x = t - u.t0 - lag
                frame = int(x / 0.02)
                r = random.Random(frame * 7919 + int(u.t0 * 1000)).random()
                loud = (0.55 + 0.45 * math.sin(2 * math.pi * 4.5 * x)) * (0.5 + 0.5 * r)
                return min(1.0, self.gain * loud)
        return 0.0


class LLMTTSDriver(Driver):
    """A language model + speech synthesis on an idle or scripted avatar."""

    def __init__(self, rng: random.Random, heldout: bool = False) -> None:
        self.rng = rng
        self.idle = Live2DIdle(rng, heldout) if rng.random() < 0.5 else AIDriver(rng, heldout)
        self.tracker = self.idle.tracker
        self.tts = _TTS(rng, heldout)
        mode = rng.choice(("never_shown", "answer"))
        self.challenges = _ScriptedChallenges(rng, mode, rt_s=rng.uniform(0.05, 0.35))

    def truth(self, t: float) -> tuple[Pose, bool]:
        self.tts.speech.advance(t)
        (y, p, r, el, er, _), face = self.idle.truth(t)
        pose = [y, p, r, el, er, self.tts.jaw(t)]
        self.challenges.apply(t, pose)
        return (pose[0], pose[1], pose[2], pose[3], pose[4], pose[5]), face

    def utterances_until(self, t: float) -> list[Utterance]:
        self.tts.speech.advance(t)
        return self.tts.speech.take_done()

    def on_chat(self, t: float, message_id: str) -> None:
        self.tts.on_chat(t, message_id)

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        return self.challenges.on_challenge(action, t)


class ReplayDriver(Driver):
    """A recorded human session streamed again (times shifted), looped when the recording is short."""

    def __init__(self, rng: random.Random, heldout: bool = False) -> None:
        self.rng = rng
        rec_rng = random.Random(rng.getrandbits(32))
        self.inner = HumanDriver(
            rec_rng, HumanParams.draw(rec_rng, heldout), human_tracker(rec_rng, heldout), responsive=False
        )
        self.tracker = self.inner.tracker
        self.loop_s = rng.uniform(60.0, 150.0) if rng.random() < 0.5 else math.inf
        self.rec_tracker = TrackerState(self.tracker, rec_rng, 0.0)
        self.frames: list[Frame] = []  # the recording so far (kept whole only when it loops)
        self.utts: list[Utterance] = []
        self.rec_t = 0.0  # recorded up to here
        self.pos = 0  # next frame to replay
        self.upos = 0
        self.loops = 0
        self.show = rng.random() < 0.5

    def recorded_frames(self) -> bool:
        return True

    def _record(self, until: float) -> None:
        while self.rec_t < min(until, self.loop_s):
            t, ok = self.rec_tracker.next_time()
            self.rec_t = t
            if t >= self.loop_s:
                break
            truth, face = self.inner.truth(t)
            if ok:
                self.frames.append(self.rec_tracker.distort(t, truth, face))
        self.utts += [u for u in self.inner.utterances_until(min(until, self.loop_s)) if u.t1 < self.loop_s]

    def frames_until(self, t: float) -> list[Frame]:
        out: list[Frame] = []
        while True:
            base = self.loops * self.loop_s if self.loop_s < math.inf else 0.0
            self._record(t - base)
            while self.pos < len(self.frames) and self.frames[self.pos].t + base <= t:
                f = self.frames[self.pos]
                out.append(Frame(f.t + base, f.yaw, f.pitch, f.roll, f.eye_l, f.eye_r, f.jaw, f.face))
                self.pos += 1
            if self.loop_s < math.inf and t - base >= self.loop_s and self.pos >= len(self.frames):
                self.loops += 1
                self.pos = 0
                self.upos = 0
                continue
            if self.loop_s == math.inf and self.pos > 4096:
                del self.frames[: self.pos]  # not looping: nothing to keep
                self.pos = 0
            return out

    def truth(self, t: float) -> tuple[Pose, bool]:
        raise RuntimeError("a replay has no live pose; use frames_until")

    def utterances_until(self, t: float) -> list[Utterance]:
        base = self.loops * self.loop_s if self.loop_s < math.inf else 0.0
        out = []
        while self.upos < len(self.utts) and self.utts[self.upos].t1 + base <= t:
            u = self.utts[self.upos]
            out.append(Utterance(u.t0 + base, u.t1 + base, None))
            self.upos += 1
        return out

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        return t + 0.1 if self.show else None


class CarefulBot(Driver):
    """A script that imitates human blink statistics, sensor noise and frame-time wobble."""

    def __init__(self, rng: random.Random, heldout: bool = False) -> None:
        self.rng = rng
        self.blinks = BlinkModel(
            rng,
            rate_rest=rng.uniform(12.0, 22.0),
            talk_factor=1.0,
            sigma=rng.uniform(0.5, 0.8),
            partial_p=rng.uniform(0.3, 0.6),
            dur_median=rng.uniform(0.15, 0.25),
            glasses=False,
            t0=0.0,
        )
        self.sines = (
            [
                [
                    (rng.uniform(0.5, 3.0), rng.uniform(2.5, 9.0), rng.uniform(0, 6.3))
                    for _ in range(rng.randint(1, 3))
                ]
                for _ in range(3)
            ]
            if rng.random() < 0.6
            else [[], [], []]
        )
        tau = rng.uniform(5.0, 15.0)
        sd = rng.uniform(2.0, 6.0)
        self.drift = [[rng.gauss(0, sd), tau, sd] for _ in range(3)]
        self.tracker = TrackerModel(
            rate_hz=rng.choice((30.0, 60.0)),
            ts_jitter_ms=rng.uniform(0.5, 3.0),
            drop_p=rng.uniform(0.005, 0.02),
            noise="gauss",
            head_noise_deg=rng.uniform(0.05, 0.3),
            eye_noise=rng.uniform(0.01, 0.03),
            jaw_noise=rng.uniform(0.005, 0.02),
            batch_s=rng.choice((1 / 3, 0.5, 1.0)),
        )
        self.tts = _TTS(rng, heldout, careful=True) if rng.random() < 0.5 else None
        mode = rng.choice(("answer", "answer", "answer_human", "ignored"))
        if mode == "answer_human":
            self.challenges = _ScriptedChallenges(rng, "answer", rt_s=0.45, rt_sd=0.12, human_moves=True)
        elif mode == "answer":
            self.challenges = _ScriptedChallenges(rng, "answer", rt_s=rng.uniform(0.25, 0.4), rt_sd=0.02)
        else:
            self.challenges = _ScriptedChallenges(rng, "ignored")
        self.last_t = 0.0

    def truth(self, t: float) -> tuple[Pose, bool]:
        dt = max(0.0, t - self.last_t)
        self.last_t = t
        head = []
        for ch, d in zip(self.sines, self.drift, strict=True):
            a = math.exp(-dt / d[1])
            d[0] = a * d[0] + d[2] * math.sqrt(1 - a * a) * self.rng.gauss(0.0, 1.0)
            head.append(d[0] + sum(amp * math.sin(2 * math.pi * t / p + ph) for amp, p, ph in ch))
        talking = False
        jaw = 0.03
        if self.tts:
            self.tts.speech.advance(t)
            talking = self.tts.speech.talking(t)
            jaw = max(jaw, self.tts.jaw(t))
        el, er = self.blinks.level(t, talking)
        pose = [head[0], head[1], head[2], el, er, jaw]
        self.challenges.apply(t, pose)
        return (pose[0], pose[1], pose[2], pose[3], pose[4], pose[5]), True

    def utterances_until(self, t: float) -> list[Utterance]:
        if not self.tts:
            return []
        self.tts.speech.advance(t)
        return self.tts.speech.take_done()

    def on_chat(self, t: float, message_id: str) -> None:
        if self.tts:
            self.tts.on_chat(t, message_id)

    def on_challenge(self, challenge_id: str, action: str, deadline_s: float, t: float) -> float | None:
        return self.challenges.on_challenge(action, t)
