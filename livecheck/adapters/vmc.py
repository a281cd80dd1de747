"""VMC protocol → live protocol ``tracking`` messages: the pure half of the VMC bridge.

The VMC protocol (https://protocol.vmc.info/english, "Marionette" side) is OSC over UDP. A tracking app
(the "Performer": VSeeFace, VMagicMirror, Warudo, Virtual Motion Capture, …) sends, usually once per rendered
frame and bundled:

- ``/VMC/Ext/Bone/Pos (s){name} (f){p.x} (f){p.y} (f){p.z} (f){q.x} (f){q.y} (f){q.z} (f){q.w}``: the local
  pose of each Unity ``HumanBodyBones`` bone; we read ``Head`` (and ``Neck``, see :class:`VmcAccumulator`).
- ``/VMC/Ext/Blend/Val (s){name} (f){value}`` for every VRM BlendShapeProxy value, then
  ``/VMC/Ext/Blend/Apply`` once the set is complete (UniVRM's ``AccumulateValue`` then ``Apply``). One
  ``Apply`` is one frame here.
- ``/VMC/Ext/OK (i){loaded}``, V2.5 adds ``(i){calibration state} (i){calibration mode}``, V2.7 adds
  ``(i){tracking status}`` (1 = OK, 0 = bad).
- ``/VMC/Ext/T (f){time}``: the sender's relative time, a liveness signal only.

The spec says unknown addresses and extra arguments are ignored, and a message with too few arguments or
arguments of the wrong type is ignored too; :class:`VmcAccumulator` does exactly that and counts them.

Sample times are the bridge's receive times on its monotonic clock, not ``/VMC/Ext/T``: the server measures
reaction times as sample time minus ``challenge.shown.t``, so both must be on one clock (PROTOCOL.md, Time).

Everything here is pure: callers pass ``recv``/``now`` and nothing reads a clock or touches a socket.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from livecheck.messages import ARKIT_BLENDSHAPES

__all__ = [
    "MAX_SAMPLES_PER_MESSAGE",
    "LiveClient",
    "Sample",
    "SourceLock",
    "TrackingBatch",
    "TrackingBatcher",
    "VmcAccumulator",
    "VmcStats",
    "VmcStatus",
    "quat_to_ypr_degrees",
]

# PROTOCOL.md: a tracking message carries 1–120 samples.
MAX_SAMPLES_PER_MESSAGE = 120

# Channel names are livecheck's wire contract (livecheck/messages.py: REQUIRED_CHANNELS, and Apple ARKit's
# 52 blend shapes in lowerCamelCase, ARKIT_BLENDSHAPES). "PerfectSync" VRM models carry the latter as
# BlendShapeProxy clips with the first letter upper-cased (EyeBlinkLeft). Senders disagree on case
# (PerfectSync "EyeBlinkLeft", iFacialMocap-style "eyeBlinkLeft", old UniVRM "BLINK_L"), so every blend
# name is matched case-insensitively.
_ARKIT_BY_LOWER: dict[str, str] = {name.lower(): name for name in ARKIT_BLENDSHAPES}

# VRM 0.x presets and their VRM 1.0 expression names (protocol.vmc.info: receivers should accept both).
_BLINK_BOTH = "blink"
_BLINK_LEFT = ("blink_l", "blinkleft")
_BLINK_RIGHT = ("blink_r", "blinkright")
_VISEMES = ("a", "i", "u", "e", "o", "aa", "ih", "ou", "ee", "oh")

_ADDR_BONE = "/VMC/Ext/Bone/Pos"
_ADDR_BLEND_VAL = "/VMC/Ext/Blend/Val"
_ADDR_BLEND_APPLY = "/VMC/Ext/Blend/Apply"
_ADDR_OK = "/VMC/Ext/OK"
_ADDR_TIME = "/VMC/Ext/T"

# VMC "calibration state": Uncalibrated 0, WaitingForCalibrating 1, Calibrating 2, Calibrated 3.
_CALIBRATION_IN_PROGRESS = frozenset({1, 2})

# Wire precision: far finer than any tracker's noise (ARKit blend values are 32-bit floats; head micro-motion
# is tenths of a degree), and it keeps a 120-sample PerfectSync batch well under the 64 KiB frame limit.
_ANGLE_DECIMALS = 3
_BLEND_DECIMALS = 4
_TIME_DECIMALS = 6

_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Quaternion = tuple[float, float, float, float]


def quat_to_ypr_degrees(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    """Convert a VMC (Unity) head rotation quaternion to PROTOCOL.md's ``(headYaw, headPitch, headRoll)``.

    Frame: VMC carries Unity transforms. Unity is left-handed with +X right, +Y up, +Z forward, and UniVRM
    turns both VRM 0.x and 1.0 avatars to face +Z, so for the avatar +X is its own right, +Y up and +Z the
    way its nose points. Unity's quaternion product and ``q * v`` use the ordinary Hamilton formulas, so the
    rotation matrix of a unit ``q`` is the textbook one; handedness only decides what a positive angle looks
    like (left-hand rule: clockwise seen from the tip of the axis).

    Decomposition: Unity's Euler order, ``R = Ry(Y) · Rx(X) · Rz(Z)`` — turn about the vertical, then nod
    about the turned ear-to-ear axis, then tilt about the turned nose axis, the usual head convention.
    Multiplying out, ``R[1][2] = -sin X``, ``R[0][2] = sin Y cos X``, ``R[2][2] = cos Y cos X``,
    ``R[1][0] = cos X sin Z`` and ``R[1][1] = cos X cos Z``, so ``X = asin(-R12)``, ``Y = atan2(R02, R22)``
    and ``Z = atan2(R10, R11)``, with ``R02 = 2(xz + yw)``, ``R12 = 2(yz - xw)``, ``R22 = 1 - 2(x² + y²)``,
    ``R10 = 2(xy + zw)`` and ``R11 = 1 - 2(x² + z²)``.

    Signs, from what each elementary rotation does to the head:

    - ``Ry(θ)`` sends the nose ``(0, 0, 1)`` to ``(sin θ, 0, cos θ)``: θ > 0 turns it toward +X, the avatar's
      own right. PROTOCOL.md wants yaw > 0 toward the person's own left, so ``headYaw = -Y``.
    - ``Rx(θ)`` sends the nose to ``(0, -sin θ, cos θ)``: θ > 0 points it down, chin down, which is
      PROTOCOL.md's pitch > 0, so ``headPitch = +X``.
    - ``Rz(θ)`` sends the crown ``(0, 1, 0)`` to ``(-sin θ, cos θ, 0)``: θ > 0 tips it toward -X, i.e. the
      head tilts onto the avatar's left shoulder. PROTOCOL.md wants roll > 0 toward the right shoulder, so
      ``headRoll = -Z``.

    The avatar mirrors its operator (VTuber apps drive the avatar's left side from the person's left side, so
    the screen shows a mirror image), so the avatar's own left is the person's own left.

    Args:
        x, y, z, w: the quaternion as VMC sends it (``q.x q.y q.z q.w``); it need not be normalised.

    Returns:
        ``(yaw, pitch, roll)`` in degrees, yaw and roll in (-180, 180], pitch in [-90, 90].

    Raises:
        ValueError: a component is not finite, or the quaternion has (near) zero length.
    """
    if not all(math.isfinite(c) for c in (x, y, z, w)):
        raise ValueError(f"quaternion has a non-finite component: {(x, y, z, w)!r}")
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if norm < 1e-9:
        raise ValueError(f"quaternion has zero length: {(x, y, z, w)!r}")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    r02 = 2.0 * (x * z + y * w)
    r12 = 2.0 * (y * z - x * w)
    r22 = 1.0 - 2.0 * (x * x + y * y)
    r10 = 2.0 * (x * y + z * w)
    r11 = 1.0 - 2.0 * (x * x + z * z)
    # Rounding can push |R12| a hair past 1 at ±90° pitch.
    unity_x = math.degrees(math.asin(max(-1.0, min(1.0, -r12))))
    unity_y = math.degrees(math.atan2(r02, r22))
    unity_z = math.degrees(math.atan2(r10, r11))
    return -unity_y + 0.0, unity_x + 0.0, -unity_z + 0.0  # + 0.0 turns -0.0 into 0.0


def _quat_mul(a: Quaternion, b: Quaternion) -> Quaternion:
    """Hamilton product ``a ⊗ b`` of ``(x, y, z, w)`` quaternions: rotate by ``b``, then by ``a``."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def _is_number(value: object) -> bool:
    """An OSC int or float that is finite (bool is an int subclass, and never a VMC number)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class VmcStatus:
    """The sender's ``/VMC/Ext/OK``: is there a loaded model, and is it being driven by tracking now."""

    loaded: bool
    calibration_state: int | None = None  # V2.5+
    calibration_mode: int | None = None  # V2.5+
    tracking_ok: bool | None = None  # V2.7+

    @property
    def face_visible(self) -> bool:
        """Whether samples taken under this status are the tracker's live values.

        Not loaded, tracking status "bad", or a calibration in progress (waiting or calibrating: the avatar
        holds a calibration pose, not the person's) all mean no. "Uncalibrated" (0) does not: face-only
        performers such as VSeeFace have no VMC calibration step and may report 0 while tracking.
        """
        if not self.loaded or self.tracking_ok is False:
            return False
        return self.calibration_state not in _CALIBRATION_IN_PROGRESS


@dataclass(frozen=True, slots=True)
class Sample:
    """One frame: the channel values in force at a ``Blend/Apply``, and whether they are live evidence."""

    t: float
    channels: Mapping[str, float]
    face: bool


@dataclass(slots=True)
class VmcStats:
    """Counters for the operator and for tests; nothing here is an error by itself."""

    messages: int = 0  # every message fed
    frames: int = 0  # Blend/Apply seen
    samples: int = 0  # samples produced
    malformed: int = 0  # known address, too few arguments or wrong types: ignored per the spec
    unknown: int = 0  # addresses we do not use
    too_soon: int = 0  # Apply closer than min_sample_gap_s to the previous sample (rate cap)
    not_after: int = 0  # Apply whose receive time does not follow the previous sample's


class VmcAccumulator:
    """Turns decoded VMC messages into per-frame :class:`Sample` s, one per ``/VMC/Ext/Blend/Apply``.

    Channels (PROTOCOL.md names):

    - ``headYaw``/``headPitch``/``headRoll`` from the ``Head`` bone (:func:`quat_to_ypr_degrees`). Bone poses
      are local to the parent, and apps split a head turn between ``Neck`` and ``Head``, so when a ``Neck``
      pose is fresh the head's rotation relative to the chest, ``neck ⊗ head``, is used. Angles are relative
      to the bones' rest pose (normalised VRM 0.x bones rest at identity); any constant offset is removed by
      the server's baseline anyway. Senders send bones before ``Blend/Apply``; if one sends them after, the
      head lags one frame behind the face, which no check here depends on.
    - ``eyeBlinkLeft``/``eyeBlinkRight``: the PerfectSync ARKit value when the model has one, else the VRM
      presets: ``Blink`` closes both eyes and ``Blink_L``/``Blink_R`` one; UniVRM adds their weights, so the
      channel is ``min(1, Blink + Blink_L)`` (VRM 1.0: ``blink``, ``blinkLeft``, ``blinkRight``).
    - ``jawOpen``: the ARKit value when present, else the largest viseme ``A I U E O`` (VRM 1.0 ``aa ih ou
      ee oh``); senders with only ``A`` are covered by the same maximum.
    - every other ARKit blend shape the model sends, under its lowerCamelCase name.

    Blend values persist until the sender changes them (UniVRM keeps a clip's value until a later ``Apply``
    sets it), so a sender that only sends changed values still yields complete samples.

    ``face`` is false when ``/VMC/Ext/OK`` says the model is not being tracked (:class:`VmcStatus`), when no
    ``Head`` pose has arrived yet (the angles are then 0), or when the last one is older than
    ``stale_after_s``. Without any ``/VMC/Ext/OK`` the sender is assumed to be tracking, as the protocol's
    ``face`` default is.

    Sample times are the ``recv`` of the ``Apply``; samples less than ``min_sample_gap_s`` after the previous
    one are dropped (a cap on the rate a sender can push through the bridge; real trackers run at 30–60 Hz),
    and so is any whose time does not follow the previous one after rounding, so ``t`` strictly increases.
    """

    def __init__(self, *, min_sample_gap_s: float = 1 / 125, stale_after_s: float = 1.0) -> None:
        if min_sample_gap_s < 0 or stale_after_s <= 0:
            raise ValueError("min_sample_gap_s must be >= 0 and stale_after_s > 0")
        self.min_sample_gap_s = min_sample_gap_s
        self.stale_after_s = stale_after_s
        # Blend values received since the last Apply (lower-cased name → value).
        self._pending: dict[str, float] = {}
        # Blend values in force after the last Apply.
        self._blend: dict[str, float] = {}
        # Latest Head / Neck local rotations and when they arrived.
        self._head: Quaternion | None = None
        self._head_at = -math.inf
        self._neck: Quaternion | None = None
        self._neck_at = -math.inf
        # Latest /VMC/Ext/OK; None until the sender sends one.
        self.status: VmcStatus | None = None
        # Latest /VMC/Ext/T (sender's clock, informational).
        self.sender_time: float | None = None
        # Time of the last sample produced, to keep t strictly increasing.
        self._last_t: float | None = None
        self.stats = VmcStats()

    def feed(self, address: str, args: Sequence[Any], recv: float) -> Sample | None:
        """Take one decoded OSC message received at ``recv`` (seconds, the bridge's monotonic clock).

        Returns:
            The frame's :class:`Sample` on a ``Blend/Apply`` that is kept, else ``None``.

        Ignores (and counts in :attr:`stats`) unknown addresses and malformed messages, per the VMC spec.
        """
        self.stats.messages += 1
        if address == _ADDR_BONE:
            self._on_bone(args, recv)
        elif address == _ADDR_BLEND_VAL:
            self._on_blend_val(args)
        elif address == _ADDR_BLEND_APPLY:
            return self._on_apply(recv)
        elif address == _ADDR_OK:
            self._on_ok(args)
        elif address == _ADDR_TIME:
            if args and _is_number(args[0]):
                self.sender_time = float(args[0])
            else:
                self.stats.malformed += 1
        else:
            self.stats.unknown += 1
        return None

    def _on_bone(self, args: Sequence[Any], recv: float) -> None:
        if len(args) < 8 or not isinstance(args[0], str) or not all(_is_number(a) for a in args[1:8]):
            self.stats.malformed += 1
            return
        name = args[0]
        if name not in ("Head", "Neck"):
            return  # every HumanBodyBones bone is sent; we only need these two
        q = (float(args[4]), float(args[5]), float(args[6]), float(args[7]))
        norm = math.hypot(*q)
        if not math.isfinite(norm) or norm < 1e-9:
            self.stats.malformed += 1
            return
        # Stored normalised, so neck ⊗ head stays a unit quaternion whatever scale the sender used.
        q = (q[0] / norm, q[1] / norm, q[2] / norm, q[3] / norm)
        if name == "Head":
            self._head, self._head_at = q, recv
        else:
            self._neck, self._neck_at = q, recv

    def _on_blend_val(self, args: Sequence[Any]) -> None:
        if len(args) < 2 or not isinstance(args[0], str) or not _is_number(args[1]):
            self.stats.malformed += 1
            return
        self._pending[args[0].lower()] = min(1.0, max(0.0, float(args[1])))

    def _on_ok(self, args: Sequence[Any]) -> None:
        if not args or not _is_int(args[0]):
            self.stats.malformed += 1
            return
        # V2.5 and V2.7 add fields; a count that matches neither uses what it can (extra args are ignored).
        versioned = len(args) >= 3 and _is_int(args[1]) and _is_int(args[2])
        tracking = len(args) >= 4 and _is_int(args[3])
        self.status = VmcStatus(
            loaded=args[0] == 1,
            calibration_state=args[1] if versioned else None,
            calibration_mode=args[2] if versioned else None,
            tracking_ok=(args[3] == 1) if versioned and tracking else None,
        )

    def _on_apply(self, recv: float) -> Sample | None:
        self.stats.frames += 1
        self._blend.update(self._pending)
        self._pending.clear()
        t = round(recv, _TIME_DECIMALS)
        if self._last_t is not None:
            if t <= self._last_t:
                self.stats.not_after += 1
                return None
            if t - self._last_t < self.min_sample_gap_s:
                self.stats.too_soon += 1
                return None
        self._last_t = t
        self.stats.samples += 1
        return Sample(t=t, channels=self._channels(recv), face=self._face(recv))

    def _face(self, recv: float) -> bool:
        if self.status is not None and not self.status.face_visible:
            return False
        return self._head is not None and recv - self._head_at <= self.stale_after_s

    def _channels(self, recv: float) -> dict[str, float]:
        yaw = pitch = roll = 0.0
        if self._head is not None:
            q = self._head
            if self._neck is not None and recv - self._neck_at <= self.stale_after_s:
                q = _quat_mul(self._neck, q)
            yaw, pitch, roll = quat_to_ypr_degrees(*q)
        blend = self._blend
        channels: dict[str, float] = {
            "headYaw": round(yaw, _ANGLE_DECIMALS),
            "headPitch": round(pitch, _ANGLE_DECIMALS),
            "headRoll": round(roll, _ANGLE_DECIMALS),
        }
        both = blend.get(_BLINK_BOTH, 0.0)
        left = max(blend.get(k, 0.0) for k in _BLINK_LEFT)
        right = max(blend.get(k, 0.0) for k in _BLINK_RIGHT)
        channels["eyeBlinkLeft"] = round(min(1.0, both + left), _BLEND_DECIMALS)
        channels["eyeBlinkRight"] = round(min(1.0, both + right), _BLEND_DECIMALS)
        channels["jawOpen"] = round(max(blend.get(k, 0.0) for k in _VISEMES), _BLEND_DECIMALS)
        # PerfectSync values win over the presets: they are the tracker's own numbers, the presets a mix.
        for lower, value in blend.items():
            name = _ARKIT_BY_LOWER.get(lower)
            if name is not None:
                channels[name] = round(value, _BLEND_DECIMALS)
        return channels


class SourceLock:
    """Follows one VMC sender at a time: two apps sending to one port would interleave two faces.

    The first sender is followed; another is ignored until the followed one has been silent for
    ``takeover_s`` (an app restarted on a new source port takes over after that pause).
    """

    def __init__(self, *, takeover_s: float = 2.0) -> None:
        self.takeover_s = takeover_s
        # The followed sender's address and when it last sent.
        self.source: tuple[Any, ...] | None = None
        self._last = -math.inf
        # Datagrams ignored from other senders.
        self.ignored = 0

    def accept(self, source: tuple[Any, ...], recv: float) -> bool:
        """Whether a datagram from ``source`` received at ``recv`` should be used."""
        if self.source is None or source == self.source or recv - self._last > self.takeover_s:
            self.source, self._last = source, recv
            return True
        self.ignored += 1
        return False


@dataclass(frozen=True, slots=True)
class TrackingBatch:
    """The body of one ``tracking`` message: sample times, channel columns and face flags."""

    ts: tuple[float, ...]
    channels: Mapping[str, tuple[float, ...]]
    face: tuple[bool, ...]


class TrackingBatcher:
    """Groups :class:`Sample` s into :class:`TrackingBatch` es (PROTOCOL.md ``tracking``).

    A batch holds 1–``max_samples`` (≤ 120) samples with strictly increasing times (a sample not after
    the previous one is dropped and counted), all with one channel set: a sender that adds a blend shape
    mid-stream starts a new batch rather than leaving holes in a column. The open batch is released by
    :meth:`take` at most every ``interval_s``; a batch that fills up (``max_samples``, or the estimated JSON
    size would pass ``max_bytes``, the server's ``max_frame_bytes``) is closed at once and released by the
    next :meth:`take`.
    """

    # Conservative JSON sizes (compact separators, values rounded as VmcAccumulator rounds them):
    # a time "12345678.123456," or a value "-179.123," per sample, and per message the envelope (type,
    # session id ≤ 128 chars, seq, source) and each channel's '"name":[],'.
    _TS_BYTES = 18
    _VALUE_BYTES = 10
    _FACE_BYTES = 6
    _ENVELOPE_BYTES = 320
    _CHANNEL_OVERHEAD_BYTES = 28

    def __init__(
        self, *, interval_s: float = 0.2, max_samples: int = MAX_SAMPLES_PER_MESSAGE, max_bytes: int = 65_536
    ) -> None:
        if not 1 <= max_samples <= MAX_SAMPLES_PER_MESSAGE:
            raise ValueError(f"max_samples must be 1–{MAX_SAMPLES_PER_MESSAGE}, got {max_samples}")
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        # The open batch.
        self._open: list[Sample] = []
        self._open_keys: tuple[str, ...] = ()
        # Closed batches waiting for take().
        self._ready: deque[TrackingBatch] = deque()
        # Time of the last sample accepted and of the last release by take().
        self._last_t: float | None = None
        self._last_release: float | None = None
        self.dropped = 0

    def add(self, sample: Sample) -> None:
        """Append ``sample`` to the open batch, closing it first if the channel set changed or it is full."""
        if self._last_t is not None and sample.t <= self._last_t:
            self.dropped += 1
            return
        keys = tuple(sample.channels)
        if self._open and (keys != self._open_keys or not self._fits(len(self._open) + 1, len(keys))):
            self._close()
        if not self._fits(1, len(keys)):
            self.dropped += 1  # a single sample too big for a frame: nothing sensible to send
            return
        self._open.append(sample)
        self._open_keys = keys
        self._last_t = sample.t
        if len(self._open) >= self.max_samples:
            self._close()

    def take(self, now: float, *, force: bool = False) -> list[TrackingBatch]:
        """Release the closed batches, and the open one when ``interval_s`` has passed since the last
        release (or since its first sample, before any release) or when ``force`` (e.g. before closing)."""
        if self._open:
            since = self._last_release if self._last_release is not None else self._open[0].t
            # A nanosecond of slack so that float rounding (10.2 - 10.0 < 0.2) does not hold a batch back.
            if force or now - since >= self.interval_s - 1e-9:
                self._close()
        out = list(self._ready)
        self._ready.clear()
        if out:
            self._last_release = now
        return out

    @property
    def pending(self) -> int:
        """Samples not yet released."""
        return len(self._open) + sum(len(b.ts) for b in self._ready)

    def _fits(self, samples: int, channels: int) -> bool:
        per_sample = self._TS_BYTES + self._FACE_BYTES + channels * self._VALUE_BYTES
        size = self._ENVELOPE_BYTES + channels * self._CHANNEL_OVERHEAD_BYTES + samples * per_sample
        return size <= self.max_bytes

    def _close(self) -> None:
        samples = self._open
        self._open = []
        if not samples:
            return
        self._ready.append(
            TrackingBatch(
                ts=tuple(s.t for s in samples),
                channels={k: tuple(s.channels[k] for s in samples) for k in self._open_keys},
                face=tuple(s.face for s in samples),
            )
        )


@dataclass(slots=True)
class _Outbox:
    """Messages with a seq, kept for re-sending after ``session.resume``, and those not yet sent."""

    retained: deque[dict[str, Any]]
    unsent: deque[dict[str, Any]] = field(default_factory=deque)


class LiveClient:
    """The client side of one live-protocol session (PROTOCOL.md): builds its messages and numbers them.

    Every message of the session except ``session.open``/``session.resume`` gets the next ``seq`` (from 1)
    when it is built, and is kept (the last ``retain`` of them) so that after a reconnect it can be sent again
    from the server's ``resume_from_seq``. Messages built while no connection is accepted wait and go out on
    the next ``session.accepted``. The I/O layer sends :meth:`drain` in order on one connection.

    Args:
        session: the client-chosen session id, 1–128 chars of ``[A-Za-z0-9._:-]``.
        avatar_id, operator_id: who streams with which avatar (``session.open``).
        stream_id: optional opaque stream id.
        source: the tracker name sent in ``tracking.source`` (≤ 32 chars).
        retain: how many sent messages to keep for re-sending.

    Raises:
        ValueError: a malformed session id or source, or ``retain`` < 1.
    """

    def __init__(
        self,
        session: str,
        avatar_id: str,
        operator_id: str,
        *,
        stream_id: str | None = None,
        source: str = "vmc",
        retain: int = 1024,
    ) -> None:
        if not _SESSION_ID.fullmatch(session):
            raise ValueError(f"session id must be 1–128 characters of [A-Za-z0-9._:-], got {session!r}")
        if len(source) > 32:
            raise ValueError(f"source must be at most 32 characters, got {len(source)}")
        if retain < 1:
            raise ValueError(f"retain must be >= 1, got {retain}")
        self.session = session
        self.avatar_id = avatar_id
        self.operator_id = operator_id
        self.stream_id = stream_id
        self.source = source
        # The seq the next message gets.
        self.next_seq = 1
        # Whether the server has accepted the session once (then reconnects resume it), and whether the
        # current connection is accepted (then drain() releases messages).
        self.opened = False
        self.live = False
        # Whether session.close has been built.
        self.closing = False
        # The last seq the server says it processed (a verdict's at_seq): session.resume's last_seq.
        self.last_processed = 0
        self._box = _Outbox(retained=deque(maxlen=retain))

    def hello(self) -> dict[str, Any]:
        """The first message on a connection: ``session.open``, or ``session.resume`` once accepted."""
        if self.opened:
            return {"type": "session.resume", "session": self.session, "last_seq": self.last_processed}
        msg: dict[str, Any] = {
            "type": "session.open",
            "session": self.session,
            "avatar_id": self.avatar_id,
            "operator_id": self.operator_id,
        }
        if self.stream_id is not None:
            msg["stream_id"] = self.stream_id
        return msg

    def tracking(self, batch: TrackingBatch) -> dict[str, Any]:
        """Build (and queue) the ``tracking`` message for ``batch``."""
        return self._queue(
            {
                "type": "tracking",
                "ts": list(batch.ts),
                "channels": {name: list(values) for name, values in batch.channels.items()},
                "face": list(batch.face),
                "source": self.source,
            }
        )

    def challenge_shown(self, challenge_id: str, t: float) -> dict[str, Any]:
        """Build (and queue) ``challenge.shown``: the prompt was put before the operator at ``t``."""
        t = round(t, _TIME_DECIMALS)
        return self._queue({"type": "challenge.shown", "t": t, "challenge_id": challenge_id})

    def close(self) -> dict[str, Any]:
        """Build (and queue) ``session.close``."""
        self.closing = True
        return self._queue({"type": "session.close"})

    def on_accepted(self, resume_from_seq: int | None = None) -> None:
        """The server accepted the session on this connection.

        After ``session.resume`` the server names the seq to continue from: retained messages from there on
        are sent again (older ones it lacks become a gap it accounts for); if it asks for a seq beyond ours,
        numbering continues from there.
        """
        self.live = True
        if not self.opened:
            self.opened = True
            self._box.unsent = deque(self._box.retained)
            return
        # A resume reply without resume_from_seq: continue after what the server last said it processed.
        start = resume_from_seq if resume_from_seq is not None else self.last_processed + 1
        self._box.unsent = deque(m for m in self._box.retained if m["seq"] >= start)
        self.next_seq = max(self.next_seq, start)

    def on_disconnect(self) -> None:
        """The connection is gone: hold messages until the next ``session.accepted``."""
        self.live = False
        self._box.unsent.clear()

    def on_verdict(self, at_seq: int) -> None:
        """Remember the newest ``verdict.at_seq``: the last seq whose evidence the server has."""
        self.last_processed = max(self.last_processed, at_seq)

    def drain(self) -> list[dict[str, Any]]:
        """Messages to send now, in seq order (none while the connection is not accepted)."""
        if not self.live:
            return []
        out = list(self._box.unsent)
        self._box.unsent.clear()
        return out

    def _queue(self, body: dict[str, Any]) -> dict[str, Any]:
        msg = {"type": body.pop("type"), "session": self.session, "seq": self.next_seq, **body}
        self.next_seq += 1
        self._box.retained.append(msg)
        if self.live:
            self._box.unsent.append(msg)
        return msg
