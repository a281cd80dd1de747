"""Challenge detection, pure: did the operator do what the prompt asked, when, and how fast?

Follows ``PROTOCOL.md`` "Challenges", "Head angles" and the deadlines there:

- Baseline: per channel, the median of the face-visible samples in the second before ``challenge.shown.t``;
  when there are none, the first face-visible sample after it. Blink and jaw levels are absolute, head
  angles relative to the baseline.
- ``turn_head_left`` / ``turn_head_right``: yaw moves ≥ ``yaw_deg`` toward the person's own left (yaw > 0)
  / right. ``nod``: pitch goes down (> 0 is chin down) ≥ ``pitch_deg`` and comes back to within
  ``return_deg`` of the baseline within ``within_s`` of going down. ``blink_twice``: two blinks (both eyes ≥
  ``closed``, then both ≤ ``open``), from the first one's onset to the second one's reopening within
  ``within_s``. ``open_mouth``: ``jawOpen`` ≥ ``jaw`` held ≥ ``hold_ms``.
- Onset: the first sample of the completing movement that has moved 20% of the way from the baseline to the
  threshold. Reaction time = onset − ``shown.t`` (sender's clock); under ``min_reaction_ms`` the challenge
  fails as ``reaction_too_fast``. A movement already under way at ``shown.t`` does not complete it.
  A *movement* is what moves fast: for the head and the jaw, one that rises by at least ``FAST_SHARE`` of
  the way to the threshold per second (a turn runs at 30-200 °/s, a drifting head at a few). A head that
  has merely drifted 20% of the way (posture, a slow glance) is not a movement under way at the anchor,
  and an answer that starts from such a drifted position has its onset 20% of the way from where its
  final rise began, not where the drift crossed the onset level. Blinks are always movements.
- A completing movement that began after the issue (on the sender's clock: ``shown.t`` minus the server
  time between issuing and receiving ``challenge.shown``) but before ``shown.t`` fails the challenge as
  ``moved_before_shown``; it is measured from a baseline taken in the second before the issue instant.
  For ``blink_twice`` both blinks must have begun in that interval, so that one natural blink just before
  the prompt appeared is not held against a person.
- A passed challenge whose completing movement looks like a template — a noiseless straight ramp, or a
  constant-speed ramp repeating the speed of an earlier answer of the same kind — carries the flag
  ``template_movement`` (it stays passed: the action was done, but not the way a person does it). People
  accelerate into a movement and out of it (a bell-shaped speed profile), a tracker adds noise to every
  sample, and no two answers of a person are alike; a script replays one ramp. Blinks are not judged.
- A challenge that fails while the tracker saw no face for most of its time carries the flag
  ``face_lost`` (the operator looked away or left; the engine weighs that apart from an ignored prompt).
- Deadlines: ``challenge.shown`` arriving later than ``show_within_s`` after issue (server clock) → missed;
  samples arriving later than ``deadline_s`` + 2 s after the ``challenge.shown`` arrival, or lying later
  than ``deadline_s`` after ``shown.t``, cannot complete it → failed.

:class:`ChallengeTracker` keeps a bounded window of samples (what the baselines and the open challenge
need) and judges them as they stream in, so a session costs a few kilobytes. Nothing reads a clock:
callers pass ``now`` (server monotonic seconds); ``ts`` and ``t`` are the sender's.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any, Final, Literal

from livecheck.engine import ChallengeOutcome

__all__ = [
    "ACTIONS",
    "ARRIVAL_GRACE_S",
    "BlinkRule",
    "ChallengeRules",
    "ChallengeTracker",
    "MouthRule",
    "NodRule",
    "TurnRule",
]

ACTIONS: Final = ("blink_twice", "turn_head_left", "turn_head_right", "nod", "open_mouth")
# PROTOCOL.md: the completing samples must arrive within deadline_s + 2 s of the challenge.shown arrival.
ARRIVAL_GRACE_S: Final = 2.0
BASELINE_S: Final = 1.0  # the baseline is taken over the second before its anchor
ONSET_FRACTION: Final = 0.2  # onset: 20% of the way from the baseline to the threshold
# With no challenge open, keep a little more than the baseline second, so that the pre-issue baseline of
# the next challenge is still there even when samples arrive in batches.
KEEP_S: Final = BASELINE_S + 0.5
# Hard cap on the window (6.7 s at 60 Hz): about 12 KB at 29 bytes a sample, and only while a challenge
# waits to be shown; the steady state is KEEP_S of samples.
MAX_WINDOW: Final = 400
# A jaw already open at the baseline is measured from half the threshold, so an open mouth has to close
# part way before a new opening can count.
JAW_REST_FRACTION: Final = 0.5
_EPS: Final = 1e-9  # float slack for time comparisons (0.1 + 0.2 ≠ 0.3)
# Head and jaw movements against drift: a movement rises at least this share of the way to the threshold
# per second (22.5 °/s for a 15° turn; people turn at 30-200 °/s, a head drifts at a few), give or take
# this share of the way for sensor noise; "under way at the anchor" looks at the window before it, and
# the start of an answer's final rise is looked for at most this far back.
FAST_SHARE: Final = 1.5
FAST_WINDOW_S: Final = 0.2
RISE_TOLERANCE: Final = 0.1
RISE_LOOKBACK_S: Final = 1.5
# A failed challenge is flagged ``face_lost`` when fewer than this share of at least this many samples
# between shown.t and the deadline saw a face (a third of the time out of view can hide the answer).
FACE_LOST_SHARE: Final = 2 / 3
FACE_LOST_MIN_SAMPLES: Final = 3
# Template movements (the ``template_movement`` flag). The rise of a completing movement is fitted with a
# straight line from where it left 10% of the way to the threshold up to the threshold; it needs this many
# samples, and the noise is measured over the half second before it (second differences).
TEMPLATE_START: Final = 0.1
TEMPLATE_MIN_SAMPLES: Final = 4
TEMPLATE_NOISE_S: Final = 0.5
# A fit this close is a constant-speed ramp: residual RMS within this many noise SDs plus this share of
# the way to the threshold (frame timing and float32 storage blur even a perfect ramp a little).
TEMPLATE_FIT_NOISE: Final = 2.0
TEMPLATE_FIT_SPAN: Final = 0.02
# ... and its curvature is within this many standard errors of none.
TEMPLATE_BEND_SE: Final = 2.5
# Below this share of the way to the threshold, a ramp and the half second before it carry no noise.
TEMPLATE_NOISELESS: Final = 1e-3
# Two constant-speed answers of one kind whose speeds differ by less than this share are one template.
TEMPLATE_SAME_SPEED: Final = 0.06
# Speeds of earlier answers kept (kind, speed), for the comparison.
TEMPLATE_MEMORY: Final = 8


@dataclass(frozen=True, slots=True)
class TurnRule:
    yaw_deg: float = 15.0


@dataclass(frozen=True, slots=True)
class NodRule:
    pitch_deg: float = 8.0
    return_deg: float = 3.0
    within_s: float = 2.0


@dataclass(frozen=True, slots=True)
class BlinkRule:
    closed: float = 0.6
    open: float = 0.3
    within_s: float = 2.5


@dataclass(frozen=True, slots=True)
class MouthRule:
    jaw: float = 0.6
    hold_ms: float = 300.0


@dataclass(frozen=True, slots=True)
class ChallengeRules:
    """What completes each action, and the timing rules (PROTOCOL.md defaults)."""

    turn_head_left: TurnRule = TurnRule()
    turn_head_right: TurnRule = TurnRule()
    nod: NodRule = NodRule()
    blink_twice: BlinkRule = BlinkRule()
    open_mouth: MouthRule = MouthRule()
    min_reaction_ms: float = 150.0
    show_within_s: float = 5.0
    deadline_s: float = 6.0


# A sample as the detectors see it: (t, yaw, pitch, eyeBlinkLeft, eyeBlinkRight, jawOpen).
_Sample = tuple[float, float, float, float, float, float]
# A baseline: the per-channel medians (yaw, pitch, eyeBlinkLeft, eyeBlinkRight, jawOpen).
_Base = tuple[float, float, float, float, float]
# A completion: (onset of the movement, onset of its last part — the second blink —, completion time).
_Done = tuple[float, float, float]


# ------------------------------------------------------------------------------------------- detectors


class _Detector:
    """Follows one action's movement sample by sample from an anchor time on.

    A "run" is a stretch of samples at least ``onset`` of the way toward the threshold; a run that was
    already going at the anchor (``prime``) is tainted and cannot complete the action.
    """

    __slots__ = ("in_run", "onset", "run_start", "tainted")

    def __init__(self, onset: float) -> None:
        self.onset = onset  # the onset level, in this detector's units
        self.in_run = False  # the latest sample is at or past the onset level
        self.run_start = 0.0  # time of the first sample of the current run
        self.tainted = False  # the current run began before the anchor

    def level(self, s: _Sample) -> float:
        raise NotImplementedError

    def prime(self, s: _Sample, moving: bool = True) -> None:
        """Note the last sample before the anchor: a run under way there does not count. A level past the
        onset that is not ``moving`` (a drifted head) starts a run that may still complete."""
        if self.level(s) >= self.onset:
            self.in_run = True
            self.run_start = s[0]
            self.tainted = moving

    def run(self, t: float, x: float) -> bool:
        """Advance the run with level ``x`` at ``t``; whether an untainted run is going on."""
        if x >= self.onset:
            if not self.in_run:
                self.in_run = True
                self.run_start = t
                self.tainted = False
            return not self.tainted
        self.in_run = False
        self.tainted = False
        return False

    def feed(self, s: _Sample) -> _Done | None:
        raise NotImplementedError

    def busy(self) -> bool:
        """Whether a movement that began earlier may still complete."""
        return self.in_run and not self.tainted

    def span(self) -> tuple[float, float] | None:
        """(rest level, threshold) of the movement, in :meth:`level` units; ``None``: not judged as a
        template (blinks)."""
        return None


class _Turn(_Detector):
    __slots__ = ("base", "sign", "thr")

    def __init__(self, rule: TurnRule, left: bool, base: _Base) -> None:
        super().__init__(ONSET_FRACTION * rule.yaw_deg)
        self.base = base[0]
        # PROTOCOL.md "Head angles": headYaw > 0 when the head turns to the person's own left.
        self.sign = 1.0 if left else -1.0
        self.thr = rule.yaw_deg

    def level(self, s: _Sample) -> float:
        return self.sign * (s[1] - self.base)

    def span(self) -> tuple[float, float] | None:
        return 0.0, self.thr

    def feed(self, s: _Sample) -> _Done | None:
        x = self.sign * (s[1] - self.base)
        if self.run(s[0], x) and x >= self.thr:
            return (self.run_start, self.run_start, s[0])
        return None


class _Nod(_Detector):
    __slots__ = ("attempt_onset", "base", "down_at", "ret", "thr", "within")

    def __init__(self, rule: NodRule, base: _Base) -> None:
        super().__init__(ONSET_FRACTION * rule.pitch_deg)
        self.base = base[1]
        self.thr = rule.pitch_deg
        self.ret = rule.return_deg
        self.within = rule.within_s
        self.down_at: float | None = None  # when pitch first reached the threshold in this attempt
        self.attempt_onset = 0.0  # onset of the run that went down

    def level(self, s: _Sample) -> float:
        # PROTOCOL.md "Head angles": headPitch > 0 when the chin goes down.
        return s[2] - self.base

    def span(self) -> tuple[float, float] | None:
        return 0.0, self.thr

    def feed(self, s: _Sample) -> _Done | None:
        t, x = s[0], s[2] - self.base
        if self.down_at is not None:
            if t - self.down_at > self.within + _EPS:
                # Did not come back in time: this run is spent; a new nod needs a new run.
                self.down_at = None
                self.run(t, x)
                self.tainted = self.in_run
                return None
            if abs(x) <= self.ret:
                return (self.attempt_onset, self.attempt_onset, t)
            self.run(t, x)
            return None
        if self.run(t, x) and x >= self.thr:
            self.down_at = t
            self.attempt_onset = self.run_start
        return None

    def busy(self) -> bool:
        return self.down_at is not None or super().busy()


class _Blinks(_Detector):
    __slots__ = ("blink_onset", "closed", "closed_lvl", "open_lvl", "prev_onset", "within")

    def __init__(self, rule: BlinkRule, base: _Base) -> None:
        rest = min(base[2], base[3], rule.open)
        super().__init__(rest + ONSET_FRACTION * (rule.closed - rest))
        self.closed_lvl = rule.closed
        self.open_lvl = rule.open
        self.within = rule.within_s
        self.closed = False  # both eyes went past `closed` and have not both reopened yet
        self.blink_onset = 0.0  # onset of the blink in progress
        self.prev_onset: float | None = None  # onset of the last complete blink, awaiting a second one

    def level(self, s: _Sample) -> float:
        return min(s[3], s[4])

    def prime(self, s: _Sample, moving: bool = True) -> None:
        super().prime(s)  # a lid past the onset level is always a blink under way
        if self.tainted and min(s[3], s[4]) >= self.closed_lvl:
            self.closed = True

    def feed(self, s: _Sample) -> _Done | None:
        t, lo, hi = s[0], min(s[3], s[4]), max(s[3], s[4])
        if self.closed:
            if hi > self.open_lvl:
                return None
            self.closed = False
            self.in_run = False
            if self.tainted:  # a blink under way at the anchor does not count
                self.tainted = False
                return None
            first = self.prev_onset
            if first is not None and t - first <= self.within + _EPS:
                return (first, self.blink_onset, t)
            self.prev_onset = self.blink_onset
            return None
        if lo >= self.onset:
            if not self.in_run:
                self.in_run = True
                self.run_start = t
                self.tainted = False
            if lo >= self.closed_lvl:
                self.closed = True
                self.blink_onset = self.run_start
        else:
            self.in_run = False
            self.tainted = False
        return None

    def busy(self) -> bool:
        return not self.tainted and (self.closed or self.in_run)


class _Mouth(_Detector):
    __slots__ = ("hold_s", "hold_start", "thr")

    def __init__(self, rule: MouthRule, base: _Base) -> None:
        rest = min(base[4], JAW_REST_FRACTION * rule.jaw)
        super().__init__(rest + ONSET_FRACTION * (rule.jaw - rest))
        self.thr = rule.jaw
        self.hold_s = rule.hold_ms / 1000.0
        self.hold_start: float | None = None  # first sample of the current stretch at or over `thr`

    def level(self, s: _Sample) -> float:
        return s[5]

    def span(self) -> tuple[float, float] | None:
        # The onset level is 20% of the way from the rest level: invert it.
        return (self.onset - ONSET_FRACTION * self.thr) / (1.0 - ONSET_FRACTION), self.thr

    def feed(self, s: _Sample) -> _Done | None:
        t, x = s[0], s[5]
        if self.run(t, x) and x >= self.thr:
            if self.hold_start is None:
                self.hold_start = t
            if t - self.hold_start >= self.hold_s - _EPS:
                return (self.run_start, self.run_start, t)
        else:
            self.hold_start = None
        return None


_DETECTORS: Final[dict[str, type[_Detector]]] = {
    "turn_head_left": _Turn,
    "turn_head_right": _Turn,
    "nod": _Nod,
    "blink_twice": _Blinks,
    "open_mouth": _Mouth,
}


def _line_fit(ts: Sequence[float], vs: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through (ts, vs): its slope and the RMS of the residuals."""
    n = len(ts)
    mt, mv = sum(ts) / n, sum(vs) / n
    stt = sum((t - mt) ** 2 for t in ts)
    if stt <= 0:
        return 0.0, math.inf
    slope = sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / stt
    resid = math.sqrt(sum((v - mv - slope * (t - mt)) ** 2 for t, v in zip(ts, vs, strict=True)) / n)
    return slope, resid


def _curvature(ts: Sequence[float], vs: Sequence[float], noise: float) -> tuple[float, float]:
    """How far a least-squares parabola through (ts, vs) bends away from a line over the span (half the
    quadratic coefficient times the squared half-span, absolute), and its standard error for white noise
    of SD ``noise``."""
    n = len(ts)
    mt = sum(ts) / n
    x = [t - mt for t in ts]
    s2 = sum(a * a for a in x)
    s3 = sum(a**3 for a in x)
    s4 = sum(a**4 for a in x)
    sy = sum(vs)
    sxy = sum(a * v for a, v in zip(x, vs, strict=True))
    sx2y = sum(a * a * v for a, v in zip(x, vs, strict=True))
    # Normal equations for v = c0 + c1 x + c2 x² with Σx = 0: solve for c2 (Cramer's rule).
    det = n * (s2 * s4 - s3 * s3) - s2 * (s2 * s2)
    if det <= 0:
        return 0.0, math.inf
    c2 = (n * (s2 * sx2y - s3 * sxy) - s2 * s2 * sy) / det
    var_c2 = noise * noise * n * s2 / det  # (M⁻¹)₃₃ = n s2 / det
    half = 0.5 * (max(ts) - min(ts))
    return abs(c2) * half * half, math.sqrt(max(var_c2, 0.0)) * half * half


def _make_detector(action: str, rules: ChallengeRules, base: _Base) -> _Detector:
    if action == "turn_head_left":
        return _Turn(rules.turn_head_left, True, base)
    if action == "turn_head_right":
        return _Turn(rules.turn_head_right, False, base)
    if action == "nod":
        return _Nod(rules.nod, base)
    if action == "blink_twice":
        return _Blinks(rules.blink_twice, base)
    if action == "open_mouth":
        return _Mouth(rules.open_mouth, base)
    raise ValueError(f"unknown challenge action {action!r}")


def _slots(cls: type) -> list[str]:
    return [name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())]


def _dump_detector(d: _Detector) -> dict[str, Any]:
    return {name: getattr(d, name) for name in _slots(type(d))}


def _load_detector(action: str, data: Mapping[str, Any]) -> _Detector:
    cls = _DETECTORS[action]
    d = cls.__new__(cls)
    for name in _slots(cls):
        setattr(d, name, data[name])
    return d


# --------------------------------------------------------------------------------------------- tracker


class _Open:
    """The one open challenge: issued, maybe shown, being judged."""

    __slots__ = (
        "action",
        "challenge_id",
        "face_seen",
        "fed_upto",
        "issue_est",
        "issued_at",
        "keep_from",
        "main",
        "pre",
        "pre_done",
        "samples_seen",
        "shown_at",
        "shown_t",
    )

    def __init__(self, challenge_id: str, action: str, issued_at: float, keep_from: float) -> None:
        self.challenge_id = challenge_id
        self.action = action
        self.issued_at = issued_at  # server clock
        self.keep_from = keep_from  # sender clock: samples from here on are kept until it is shown
        self.shown_t: float | None = None  # challenge.shown.t, sender clock
        self.shown_at: float | None = None  # arrival of challenge.shown, server clock
        self.issue_est = 0.0  # issue instant estimated on the sender's clock (set when shown)
        self.pre: _Detector | None = None  # movement from the issue instant on (moved_before_shown)
        self.pre_done = False  # no pre-shown movement can complete any more
        self.main: _Detector | None = None  # movement from shown.t on
        self.fed_upto = -math.inf  # ts of the last sample given to the detectors
        self.samples_seen = 0  # samples from shown.t to the deadline (sender clock) ...
        self.face_seen = 0  # ... and how many of them saw a face


class ChallengeTracker:
    """Judges one session's challenges from its tracking samples. One challenge is open at a time.

    Every method that can end a challenge returns the :class:`ChallengeOutcome` list (at most one item).
    Samples must be given in increasing ``ts`` order across calls (the protocol guarantees it).
    """

    __slots__ = ("_bl", "_br", "_face", "_jaw", "_open", "_pitch", "_speeds", "_ts", "_yaw", "rules")

    def __init__(self, rules: ChallengeRules) -> None:
        self.rules = rules
        # The sample window, one array per channel: float64 times, float32 values (plenty for degrees
        # and 0–1 levels), one byte per face flag.
        self._ts = array("d")
        self._yaw = array("f")
        self._pitch = array("f")
        self._bl = array("f")
        self._br = array("f")
        self._jaw = array("f")
        self._face = array("b")
        self._open: _Open | None = None
        # Speeds of earlier constant-speed answers: (kind, speed in level units per second), newest last.
        self._speeds: list[tuple[str, float]] = []

    # -- queries

    @property
    def open_challenge(self) -> str | None:
        """The id of the open challenge, if any."""
        return self._open.challenge_id if self._open is not None else None

    def awaiting_show(self, challenge_id: str) -> bool:
        """Whether ``challenge_id`` is open and its ``challenge.shown`` has not come yet."""
        ch = self._open
        return ch is not None and ch.challenge_id == challenge_id and ch.shown_t is None

    def next_deadline(self) -> float | None:
        """The first server time at which :meth:`check` misses or fails the open challenge, if one is open.

        The deadlines are inclusive ("within 5 s"), so this is the float just after them.
        """
        ch = self._open
        if ch is None:
            return None
        if ch.shown_at is None:
            return math.nextafter(ch.issued_at + self.rules.show_within_s, math.inf)
        return math.nextafter(ch.shown_at + self.rules.deadline_s + ARRIVAL_GRACE_S, math.inf)

    def window_size(self) -> int:
        """How many samples are kept."""
        return len(self._ts)

    # -- events

    def issue(self, challenge_id: str, action: str, now: float) -> None:
        """A challenge was sent at server time ``now``.

        Raises:
            ValueError: another challenge is still open, or ``action`` is unknown.
        """
        if self._open is not None:
            raise ValueError(f"challenge {self._open.challenge_id} is still open")
        if action not in _DETECTORS:
            raise ValueError(f"unknown challenge action {action!r}")
        keep_from = self._ts[-1] - KEEP_S if self._ts else -math.inf
        self._open = _Open(challenge_id, action, now, keep_from)

    def shown(self, challenge_id: str, t: float, now: float) -> list[ChallengeOutcome]:
        """``challenge.shown`` for the open challenge arrived at ``now`` with sender time ``t``.

        A ``challenge.shown`` arriving after ``show_within_s`` finds the challenge already missed; call
        :meth:`awaiting_show` first to tell a late or repeated one from a valid one.

        Raises:
            ValueError: ``challenge_id`` is not open, or was shown already.
        """
        out = self.check(now)
        ch = self._open
        if ch is None or ch.challenge_id != challenge_id or ch.shown_t is not None:
            if out:
                return out
            raise ValueError(f"challenge {challenge_id} is not waiting to be shown")
        ch.shown_t = t
        ch.shown_at = now
        ch.issue_est = t - (now - ch.issued_at)
        return self._advance()

    def add_samples(
        self,
        ts: Sequence[float],
        channels: Mapping[str, Sequence[float]],
        face: Sequence[bool] | None,
        now: float,
    ) -> list[ChallengeOutcome]:
        """Samples of one ``tracking`` message arrived at server time ``now``."""
        out = self.check(now)
        self._ts.extend(ts)
        self._yaw.extend(channels["headYaw"])
        self._pitch.extend(channels["headPitch"])
        self._bl.extend(channels["eyeBlinkLeft"])
        self._br.extend(channels["eyeBlinkRight"])
        self._jaw.extend(channels["jawOpen"])
        if face is None:
            self._face.frombytes(b"\x01" * len(ts))
        else:
            self._face.extend(face)
        if self._open is not None and self._open.shown_t is not None:
            out += self._advance()
        self._trim()
        return out

    def check(self, now: float) -> list[ChallengeOutcome]:
        """Apply the server-clock deadlines at ``now``."""
        ch = self._open
        if ch is None:
            return []
        if ch.shown_at is None:
            if now > ch.issued_at + self.rules.show_within_s:
                return [self._resolve("missed")]
        elif now > ch.shown_at + self.rules.deadline_s + ARRIVAL_GRACE_S:
            return [self._resolve("failed", flags=self._unseen(ch))]
        return []

    @staticmethod
    def _unseen(ch: _Open) -> tuple[str, ...]:
        """``("face_lost",)`` for a failed challenge during which the tracker mostly saw no face (the
        operator looked away, or left): it still failed, but it is not the same as being ignored."""
        if ch.samples_seen >= FACE_LOST_MIN_SAMPLES and ch.face_seen < FACE_LOST_SHARE * ch.samples_seen:
            return ("face_lost",)
        return ()

    def close(self, now: float) -> tuple[list[ChallengeOutcome], int]:
        """The session ends at ``now``: outcomes due by then, and how many challenges stay open (0 or 1)."""
        out = self.check(now)
        return out, 0 if self._open is None else 1

    # -- judging

    def _resolve(
        self,
        result: Literal["passed", "failed", "missed"],
        reaction_s: float | None = None,
        flags: tuple[str, ...] = (),
    ) -> ChallengeOutcome:
        ch = self._open
        assert ch is not None  # callers check
        self._open = None
        reaction_ms = None if reaction_s is None else round(reaction_s * 1000.0, 1)
        return ChallengeOutcome(ch.challenge_id, ch.action, result, reaction_ms, flags)

    def _sample(self, i: int) -> _Sample:
        return (self._ts[i], self._yaw[i], self._pitch[i], self._bl[i], self._br[i], self._jaw[i])

    def _baseline(self, anchor: float, stop: int) -> tuple[_Base, _Sample] | None:
        """Medians of the face-visible samples in [anchor − 1 s, anchor) and the last of them."""
        ts, face = self._ts, self._face
        lo = bisect_left(ts, anchor - BASELINE_S, 0, stop)
        hi = bisect_left(ts, anchor, lo, stop)
        idx = [i for i in range(lo, hi) if face[i]]
        if not idx:
            return None
        base = (
            median(self._yaw[i] for i in idx),
            median(self._pitch[i] for i in idx),
            median(self._bl[i] for i in idx),
            median(self._br[i] for i in idx),
            median(self._jaw[i] for i in idx),
        )
        return base, self._sample(idx[-1])

    def _start(self, action: str, anchor: float, i: int) -> tuple[_Detector, bool]:
        """A detector anchored at ``anchor`` whose first sample at or after it is ``i``.

        Returns the detector and whether sample ``i`` still has to be fed to it (it has not when it
        served as the baseline because the second before the anchor had no face-visible sample).
        """
        found = self._baseline(anchor, i)
        if found is None:
            s = self._sample(i)
            d = _make_detector(action, self.rules, s[1:])  # type: ignore[arg-type]  # 5 values
            d.prime(s)
            return d, False
        base, last = found
        d = _make_detector(action, self.rules, base)
        k = bisect_left(self._ts, last[0], 0, i)
        d.prime(last, self._moving(d, k))
        return d, True

    def _moving(self, d: _Detector, k: int) -> bool:
        """Whether sample ``k`` ends a movement for ``d``: the level rose at ``FAST_SHARE`` of the way to
        the threshold per second over the ``FAST_WINDOW_S`` before it (see the module docstring)."""
        span = d.span()
        if span is None:
            return True
        ts = self._ts
        t = ts[k]
        j = bisect_left(ts, t - FAST_WINDOW_S - _EPS, 0, k)
        if j >= k or t - ts[j] < 0.5 * FAST_WINDOW_S - 1e-6:
            return True  # too little history to tell: assume the worst, as before
        need = FAST_SHARE * (span[1] - span[0])
        rise = d.level(self._sample(k)) - d.level(self._sample(j))
        return rise >= need * (t - ts[j]) - RISE_TOLERANCE * (span[1] - span[0])

    def _rise_onset(self, d: _Detector, onset: float, end: int) -> float:
        """The onset of the completing movement whose run began at ``onset`` and completed at sample
        ``end`` (see the module docstring): the start of the final rise is the earliest sample from which
        the level keeps rising at ``FAST_SHARE`` of the way per second (within ``RISE_TOLERANCE``) up to
        the threshold, and the onset is the first sample after it that has moved 20% of the way from there
        to the threshold (and past the onset level). For a movement from rest that is ``onset`` itself."""
        span = d.span()
        if span is None:
            return onset
        rest, thr = span
        width = thr - rest
        need, tol = FAST_SHARE * width, RISE_TOLERANCE * width
        ts, face = self._ts, self._face
        first = bisect_left(ts, onset - _EPS, 0, end + 1)
        idx = [k for k in range(bisect_left(ts, onset - RISE_LOOKBACK_S, 0, first), end + 1) if face[k]]
        lv = [d.level(self._sample(k)) for k in idx]
        top = next((j for j, k in enumerate(idx) if ts[k] >= onset - _EPS and lv[j] >= thr - _EPS), None)
        if top is None:
            return onset
        start = top
        for j in range(top - 1, -1, -1):
            tj, vj = ts[idx[j]], lv[j]
            if all(lv[m] >= vj + need * (ts[idx[m]] - tj) - tol for m in range(j + 1, top + 1)):
                start = j
            else:
                break
        level = max(d.onset, lv[start] + ONSET_FRACTION * (thr - lv[start]))
        for j in range(start, top + 1):
            if lv[j] >= level - _EPS:
                return max(onset, ts[idx[j]])
        return onset

    def _advance(self) -> list[ChallengeOutcome]:
        """Feed the not yet judged samples to the open, shown challenge's detectors."""
        ch = self._open
        assert ch is not None and ch.shown_t is not None  # callers check
        shown_t, deadline = ch.shown_t, ch.shown_t + self.rules.deadline_s
        ts, face = self._ts, self._face
        for i in range(bisect_right(ts, ch.fed_upto), len(ts)):
            t = ts[i]
            ch.fed_upto = t
            if shown_t <= t <= deadline + _EPS:
                ch.samples_seen += 1
                ch.face_seen += face[i]
            if not face[i]:
                continue  # a sample without a face carries no evidence
            if t > deadline + _EPS:
                return [self._resolve("failed", flags=self._unseen(ch))]
            if not ch.pre_done and t >= ch.issue_est:
                s = self._sample(i)
                feed = True
                if ch.pre is None:
                    ch.pre, feed = self._start(ch.action, ch.issue_est, i)
                done = ch.pre.feed(s) if feed else None
                if done is not None:
                    ch.pre_done = True
                    began = self._rise_onset(ch.pre, done[1], i)
                    if began < shown_t:
                        first = min(done[0], began) if done[0] != done[1] else began
                        return [self._resolve("failed", first - shown_t, ("moved_before_shown",))]
                elif t >= shown_t and not ch.pre.busy():
                    ch.pre_done = True
            if t >= shown_t:
                s = self._sample(i)
                feed = True
                if ch.main is None:
                    ch.main, feed = self._start(ch.action, shown_t, i)
                done = ch.main.feed(s) if feed else None
                if done is not None:
                    onset = self._rise_onset(ch.main, done[0], i)
                    reaction = onset - shown_t
                    if reaction * 1000.0 < self.rules.min_reaction_ms - _EPS:
                        return [self._resolve("failed", reaction, ("reaction_too_fast",))]
                    return [self._resolve("passed", reaction, self._template(ch.action, ch.main, onset, i))]
        return []

    def _template(self, action: str, det: _Detector, onset: float, end: int) -> tuple[str, ...]:
        """``("template_movement",)`` when the completing movement (onset ``onset``, its last sample
        ``end``) is a noiseless straight ramp or a constant-speed ramp at the speed of an earlier answer of
        the same kind (see the module docstring); else ``()``."""
        span = det.span()
        if span is None:
            return ()
        rest, thr = span
        width = thr - rest
        if width <= 0:
            return ()
        ts, face = self._ts, self._face
        lo = bisect_left(ts, onset - TEMPLATE_NOISE_S - 1.0, 0, end + 1)
        idx = [k for k in range(lo, end + 1) if face[k]]
        lv = [det.level(self._sample(k)) for k in idx]
        # The rise: from the last sample under 10% of the way (before the onset) to the first at the
        # threshold (a nod completes on its way back, a mouth after its hold).
        top = next((j for j, k in enumerate(idx) if ts[k] >= onset - _EPS and lv[j] >= thr - _EPS), None)
        if top is None:
            return ()
        start_level = rest + TEMPLATE_START * width
        below = [j for j in range(top) if lv[j] < start_level]
        if not below:
            return ()
        first = below[-1] + 1
        rise_t = [ts[idx[j]] for j in range(first, top + 1)]
        rise_v = lv[first : top + 1]
        pre = [lv[j] for j in range(first) if ts[idx[j]] >= ts[idx[first]] - TEMPLATE_NOISE_S]
        if len(rise_v) < TEMPLATE_MIN_SAMPLES or len(pre) < 4:
            return ()
        speed, resid = _line_fit(rise_t, rise_v)
        d2 = [pre[j] - 2 * pre[j + 1] + pre[j + 2] for j in range(len(pre) - 2)]
        noise = math.sqrt(sum(x * x for x in d2) / len(d2) / 6.0)  # var(Δ²) = 6 σ² for white noise
        noiseless = noise <= TEMPLATE_NOISELESS * width and resid <= TEMPLATE_NOISELESS * width
        # Constant speed: the fit's residual is about the noise, and the rise shows no curvature beyond
        # what the noise allows (a person's accelerating start bends it by a degree or more).
        bend, bend_se = _curvature(rise_t, rise_v, noise)
        constant = resid <= TEMPLATE_FIT_NOISE * noise + TEMPLATE_FIT_SPAN * width and (
            bend <= TEMPLATE_BEND_SE * bend_se or bend <= TEMPLATE_NOISELESS * width
        )
        kind = "turn" if action.startswith("turn_head") else action
        repeated = constant and any(
            k == kind and abs(speed - v) <= TEMPLATE_SAME_SPEED * max(abs(speed), abs(v))
            for k, v in self._speeds
        )
        if constant:
            self._speeds = [*self._speeds[-(TEMPLATE_MEMORY - 1) :], (kind, speed)]
        return ("template_movement",) if noiseless or repeated else ()

    def _trim(self) -> None:
        ts = self._ts
        if not ts:
            return
        keep_from = ts[-1] - KEEP_S
        ch = self._open
        if ch is not None:
            if ch.shown_t is None:
                keep_from = min(keep_from, ch.keep_from)
            elif ch.main is None:  # the baselines are not taken yet
                keep_from = min(keep_from, min(ch.issue_est, ch.shown_t) - BASELINE_S - _EPS)
        cut = max(bisect_left(ts, keep_from), len(ts) - MAX_WINDOW)
        if cut > 0:
            for arr in (ts, self._yaw, self._pitch, self._bl, self._br, self._jaw, self._face):
                del arr[:cut]

    # -- checkpoints

    def snapshot(self, now: float) -> dict[str, Any]:
        """JSON-serialisable state; server times are stored as ages at ``now``."""
        ch = self._open
        open_: dict[str, Any] | None = None
        if ch is not None:
            open_ = {
                "challenge_id": ch.challenge_id,
                "action": ch.action,
                "issued_ago": now - ch.issued_at,
                "keep_from": None if ch.keep_from == -math.inf else ch.keep_from,
                "shown_t": ch.shown_t,
                "shown_ago": None if ch.shown_at is None else now - ch.shown_at,
                "issue_est": ch.issue_est,
                "pre": None if ch.pre is None else _dump_detector(ch.pre),
                "pre_done": ch.pre_done,
                "main": None if ch.main is None else _dump_detector(ch.main),
                "fed_upto": None if ch.fed_upto == -math.inf else ch.fed_upto,
                "seen": [ch.samples_seen, ch.face_seen],
            }
        return {
            "ts": self._ts.tolist(),
            "yaw": self._yaw.tolist(),
            "pitch": self._pitch.tolist(),
            "blink_left": self._bl.tolist(),
            "blink_right": self._br.tolist(),
            "jaw": self._jaw.tolist(),
            "face": self._face.tolist(),
            "open": open_,
            "speeds": [[k, v] for k, v in self._speeds],
        }

    @classmethod
    def restore(
        cls, data: Mapping[str, Any], rules: ChallengeRules, now: float, away_s: float = 0.0
    ) -> ChallengeTracker:
        """Rebuild a tracker from :meth:`snapshot`; ``away_s`` server seconds passed since it was taken.

        Raises:
            KeyError, ValueError, TypeError: the snapshot is not one this module wrote.
        """
        tr = cls(rules)
        tr._ts.extend(data["ts"])
        tr._yaw.extend(data["yaw"])
        tr._pitch.extend(data["pitch"])
        tr._bl.extend(data["blink_left"])
        tr._br.extend(data["blink_right"])
        tr._jaw.extend(data["jaw"])
        tr._face.extend(data["face"])
        n = len(tr._ts)
        if any(len(a) != n for a in (tr._yaw, tr._pitch, tr._bl, tr._br, tr._jaw, tr._face)):
            raise ValueError("snapshot channels differ in length")
        # Snapshots from before template detection have no speeds: nothing to compare with yet.
        tr._speeds = [(str(k), float(v)) for k, v in data.get("speeds", [])][-TEMPLATE_MEMORY:]
        o = data["open"]
        if o is not None:
            keep_from = -math.inf if o["keep_from"] is None else float(o["keep_from"])
            ch = _Open(str(o["challenge_id"]), str(o["action"]), now - away_s - o["issued_ago"], keep_from)
            ch.shown_t = o["shown_t"]
            ch.shown_at = None if o["shown_ago"] is None else now - away_s - o["shown_ago"]
            ch.issue_est = float(o["issue_est"])
            ch.pre = None if o["pre"] is None else _load_detector(ch.action, o["pre"])
            ch.pre_done = bool(o["pre_done"])
            ch.main = None if o["main"] is None else _load_detector(ch.action, o["main"])
            ch.fed_upto = -math.inf if o["fed_upto"] is None else float(o["fed_upto"])
            ch.samples_seen, ch.face_seen = (int(x) for x in o.get("seen", (0, 0)))
            tr._open = ch
        return tr
