"""Tests for livecheck/adapters/vmc.py: VMC → live-protocol conversion, sign conventions, batching, seq.

Head-angle signs are checked against geometry, not against the formula: each synthetic quaternion is applied
to the avatar's nose (+Z) and crown (+Y) in Unity's frame (+X = the avatar's own right), and the direction
the nose or crown ends up in must match PROTOCOL.md's sign for that angle.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from livecheck.adapters.vmc import (
    MAX_SAMPLES_PER_MESSAGE,
    LiveClient,
    Sample,
    SourceLock,
    TrackingBatch,
    TrackingBatcher,
    VmcAccumulator,
    quat_to_ypr_degrees,
)
from livecheck.messages import ARKIT_BLENDSHAPES, REQUIRED_CHANNELS, Tracking, parse_client_message

BONE = "/VMC/Ext/Bone/Pos"
VAL = "/VMC/Ext/Blend/Val"
APPLY = "/VMC/Ext/Blend/Apply"
OK = "/VMC/Ext/OK"

Quat = tuple[float, float, float, float]


def axis_quat(axis: str, degrees: float) -> Quat:
    """Unity's Quaternion.AngleAxis(degrees, Vector3.right/up/forward) as (x, y, z, w)."""
    half = math.radians(degrees) / 2
    s = math.sin(half)
    v = {"x": (s, 0.0, 0.0), "y": (0.0, s, 0.0), "z": (0.0, 0.0, s)}[axis]
    return (*v, math.cos(half))


def mul(a: Quat, b: Quat) -> Quat:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def rotate(q: Quat, v: tuple[float, float, float]) -> tuple[float, float, float]:
    """q · v · q⁻¹ (Unity's `q * v`), computed independently of the module under test."""
    conj = (-q[0], -q[1], -q[2], q[3])
    x, y, z, _ = mul(mul(q, (*v, 0.0)), conj)
    return x, y, z


NOSE = (0.0, 0.0, 1.0)
CROWN = (0.0, 1.0, 0.0)


def bone(name: str, q: Quat) -> list[Any]:
    return [name, 0.0, 1.5, 0.0, *q]


class TestHeadAngleSigns:
    """PROTOCOL.md "Head angles": yaw > 0 = own left, pitch > 0 = chin down, roll > 0 = toward own right."""

    def test_identity_faces_the_camera(self) -> None:
        assert quat_to_ypr_degrees(0.0, 0.0, 0.0, 1.0) == (0.0, 0.0, 0.0)

    def test_turn_to_own_left_is_positive_yaw(self) -> None:
        q = axis_quat("y", -20.0)
        nose = rotate(q, NOSE)
        assert nose[0] < -0.3  # the nose points toward -X: the avatar's (and mirrored operator's) left
        yaw, pitch, roll = quat_to_ypr_degrees(*q)
        assert yaw == pytest.approx(20.0)
        assert pitch == pytest.approx(0.0, abs=1e-9)
        assert roll == pytest.approx(0.0, abs=1e-9)

    def test_turn_to_own_right_is_negative_yaw(self) -> None:
        q = axis_quat("y", 35.0)
        assert rotate(q, NOSE)[0] > 0.5
        assert quat_to_ypr_degrees(*q)[0] == pytest.approx(-35.0)

    def test_chin_down_is_positive_pitch(self) -> None:
        q = axis_quat("x", 10.0)
        assert rotate(q, NOSE)[1] < -0.15  # the nose points down
        yaw, pitch, roll = quat_to_ypr_degrees(*q)
        assert pitch == pytest.approx(10.0)
        assert yaw == pytest.approx(0.0, abs=1e-9)
        assert roll == pytest.approx(0.0, abs=1e-9)

    def test_chin_up_is_negative_pitch(self) -> None:
        q = axis_quat("x", -25.0)
        assert rotate(q, NOSE)[1] > 0.4
        assert quat_to_ypr_degrees(*q)[1] == pytest.approx(-25.0)

    def test_tilt_toward_own_right_shoulder_is_positive_roll(self) -> None:
        q = axis_quat("z", -12.0)
        assert rotate(q, CROWN)[0] > 0.2  # the crown moves toward +X: onto the right shoulder
        yaw, pitch, roll = quat_to_ypr_degrees(*q)
        assert roll == pytest.approx(12.0)
        assert yaw == pytest.approx(0.0, abs=1e-9)
        assert pitch == pytest.approx(0.0, abs=1e-9)

    def test_tilt_toward_own_left_shoulder_is_negative_roll(self) -> None:
        q = axis_quat("z", 30.0)
        assert rotate(q, CROWN)[0] < -0.4
        assert quat_to_ypr_degrees(*q)[2] == pytest.approx(-30.0)

    def test_combined_pose_round_trips_in_unity_order(self) -> None:
        rng = random.Random(7)
        for _ in range(500):
            yaw, pitch, roll = rng.uniform(-170, 170), rng.uniform(-85, 85), rng.uniform(-170, 170)
            # Unity's Euler order: R = Ry · Rx · Rz; PROTOCOL yaw = -Y, pitch = +X, roll = -Z.
            q = mul(mul(axis_quat("y", -yaw), axis_quat("x", pitch)), axis_quat("z", -roll))
            got = quat_to_ypr_degrees(*q)
            assert got == pytest.approx((yaw, pitch, roll), abs=1e-6)

    def test_scale_and_sign_of_the_quaternion_do_not_matter(self) -> None:
        q = mul(axis_quat("y", -15.0), axis_quat("x", 8.0))
        expected = quat_to_ypr_degrees(*q)
        assert quat_to_ypr_degrees(*(3.0 * c for c in q)) == pytest.approx(expected)
        assert quat_to_ypr_degrees(*(-c for c in q)) == pytest.approx(expected)

    def test_straight_down_does_not_fail(self) -> None:
        yaw, pitch, roll = quat_to_ypr_degrees(*axis_quat("x", 90.0))
        assert pitch == pytest.approx(90.0)
        assert math.isfinite(yaw) and math.isfinite(roll)

    @pytest.mark.parametrize(
        "q", [(0.0, 0.0, 0.0, 0.0), (math.nan, 0.0, 0.0, 1.0), (0.0, math.inf, 0.0, 1.0)]
    )
    def test_degenerate_quaternion_is_refused(self, q: Quat) -> None:
        with pytest.raises(ValueError, match="quaternion has"):
            quat_to_ypr_degrees(*q)


def frame(acc: VmcAccumulator, recv: float, values: dict[str, float] | None = None) -> Sample | None:
    for name, value in (values or {}).items():
        acc.feed(VAL, [name, value], recv)
    return acc.feed(APPLY, [], recv)


class TestVmcAccumulatorChannels:
    def test_sample_is_made_on_apply_only(self) -> None:
        acc = VmcAccumulator()
        assert acc.feed(VAL, ["Blink_L", 1.0], 1.0) is None
        sample = acc.feed(APPLY, [], 1.0)
        assert sample is not None
        assert sample.t == 1.0
        assert tuple(sample.channels)[:6] == REQUIRED_CHANNELS

    def test_vrm0_presets_map_to_arkit_channels(self) -> None:
        acc = VmcAccumulator()
        sample = frame(acc, 1.0, {"Blink_L": 1.0, "Blink_R": 0.25, "A": 0.3, "O": 0.6, "Joy": 1.0})
        assert sample is not None
        assert sample.channels["eyeBlinkLeft"] == 1.0
        assert sample.channels["eyeBlinkRight"] == 0.25
        assert sample.channels["jawOpen"] == 0.6  # the widest viseme
        assert set(sample.channels) == set(REQUIRED_CHANNELS)  # Joy is not an ARKit channel

    def test_blink_closes_both_eyes_and_adds_to_the_one_eye_clips(self) -> None:
        acc = VmcAccumulator()
        sample = frame(acc, 1.0, {"Blink": 0.5, "Blink_R": 0.3})
        assert sample is not None
        assert sample.channels["eyeBlinkLeft"] == 0.5
        assert sample.channels["eyeBlinkRight"] == 0.8
        sample = frame(acc, 1.1, {"Blink": 0.9, "Blink_R": 0.9})
        assert sample is not None
        assert sample.channels["eyeBlinkRight"] == 1.0  # clipped, as UniVRM clips the weight

    def test_vrm1_names_and_any_case_are_accepted(self) -> None:
        acc = VmcAccumulator()
        sample = frame(acc, 1.0, {"blinkLeft": 0.7, "BLINK_R": 0.4, "aa": 0.2, "oh": 0.45})
        assert sample is not None
        assert sample.channels["eyeBlinkLeft"] == 0.7
        assert sample.channels["eyeBlinkRight"] == 0.4
        assert sample.channels["jawOpen"] == 0.45

    def test_perfect_sync_names_become_lower_camel_case_and_win_over_presets(self) -> None:
        acc = VmcAccumulator()
        sample = frame(
            acc,
            1.0,
            {
                "Blink_L": 1.0,
                "EyeBlinkLeft": 0.35,
                "JawOpen": 0.1,
                "A": 0.9,
                "MouthSmileLeft": 0.6,
                "tongueOut": 1,
            },
        )
        assert sample is not None
        assert sample.channels["eyeBlinkLeft"] == 0.35
        assert sample.channels["jawOpen"] == 0.1
        assert sample.channels["mouthSmileLeft"] == 0.6
        assert sample.channels["tongueOut"] == 1.0
        assert set(sample.channels) <= set(REQUIRED_CHANNELS) | set(ARKIT_BLENDSHAPES)

    def test_values_persist_until_changed_and_are_clamped(self) -> None:
        acc = VmcAccumulator()
        frame(acc, 1.0, {"Blink_L": 1.7, "A": -0.2})
        sample = frame(acc, 1.1)
        assert sample is not None
        assert sample.channels["eyeBlinkLeft"] == 1.0
        assert sample.channels["jawOpen"] == 0.0
        sample = frame(acc, 1.2, {"Blink_L": 0.2})
        assert sample is not None
        assert sample.channels["eyeBlinkLeft"] == 0.2

    def test_head_bone_gives_protocol_angles(self) -> None:
        acc = VmcAccumulator()
        acc.feed(BONE, bone("Head", mul(axis_quat("y", -20.0), axis_quat("x", 5.0))), 1.0)
        sample = frame(acc, 1.0)
        assert sample is not None
        assert sample.channels["headYaw"] == pytest.approx(20.0, abs=1e-3)
        assert sample.channels["headPitch"] == pytest.approx(5.0, abs=1e-3)
        assert sample.channels["headRoll"] == pytest.approx(0.0, abs=1e-3)

    def test_neck_and_head_rotations_add_up(self) -> None:
        acc = VmcAccumulator()
        acc.feed(BONE, bone("Neck", axis_quat("y", -8.0)), 1.0)
        acc.feed(BONE, bone("Head", axis_quat("y", -12.0)), 1.0)
        sample = frame(acc, 1.0)
        assert sample is not None
        assert sample.channels["headYaw"] == pytest.approx(20.0, abs=1e-3)

    def test_a_stale_neck_pose_is_not_used(self) -> None:
        acc = VmcAccumulator(stale_after_s=1.0)
        acc.feed(BONE, bone("Neck", axis_quat("y", -8.0)), 1.0)
        acc.feed(BONE, bone("Head", axis_quat("y", -12.0)), 2.5)
        sample = frame(acc, 2.5)
        assert sample is not None
        assert sample.channels["headYaw"] == pytest.approx(12.0, abs=1e-3)

    def test_other_bones_are_ignored_silently(self) -> None:
        acc = VmcAccumulator()
        acc.feed(BONE, bone("LeftHand", axis_quat("y", -50.0)), 1.0)
        sample = frame(acc, 1.0)
        assert sample is not None
        assert sample.channels["headYaw"] == 0.0
        assert acc.stats.malformed == 0 and acc.stats.unknown == 0


class TestVmcAccumulatorFace:
    def head(self, acc: VmcAccumulator, recv: float) -> None:
        acc.feed(BONE, bone("Head", (0.0, 0.0, 0.0, 1.0)), recv)

    def test_no_head_pose_yet_is_not_a_face(self) -> None:
        sample = frame(VmcAccumulator(), 1.0)
        assert sample is not None and sample.face is False

    def test_fresh_head_without_status_is_a_face(self) -> None:
        acc = VmcAccumulator()
        self.head(acc, 1.0)
        sample = frame(acc, 1.0)
        assert sample is not None and sample.face is True

    def test_stale_head_is_not_a_face(self) -> None:
        acc = VmcAccumulator(stale_after_s=1.0)
        self.head(acc, 1.0)
        late = frame(acc, 2.01)
        assert late is not None and late.face is False

    @pytest.mark.parametrize(
        ("args", "face"),
        [
            ([1], True),
            ([0], False),  # no model loaded
            ([1, 3, 0], True),  # calibrated
            ([1, 0, 0], True),  # face trackers never calibrate in VMC's sense
            ([1, 1, 0], False),  # waiting for calibration: a held pose
            ([1, 2, 0], False),  # calibrating
            ([1, 3, 0, 1], True),  # V2.7 tracking OK
            ([1, 3, 0, 0], False),  # V2.7 tracking bad
            ([1, 3, 0, 1, "extra"], True),  # extra arguments are ignored
        ],
    )
    def test_vmc_ext_ok_decides_the_face_flag(self, args: list[Any], face: bool) -> None:
        acc = VmcAccumulator()
        self.head(acc, 1.0)
        acc.feed(OK, args, 1.0)
        sample = frame(acc, 1.0)
        assert sample is not None and sample.face is face


class TestVmcAccumulatorInput:
    @pytest.mark.parametrize(
        ("address", "args"),
        [
            (BONE, ["Head", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),  # too few arguments
            (BONE, ["Head", 0.0, 0.0, 0.0, "x", 0.0, 0.0, 1.0]),  # wrong type
            (BONE, ["Head", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),  # zero quaternion
            (BONE, ["Head", 0.0, 0.0, 0.0, math.nan, 0.0, 0.0, 1.0]),
            (BONE, [7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
            (VAL, ["Blink_L"]),
            (VAL, ["Blink_L", "1"]),
            (VAL, ["Blink_L", math.inf]),
            (VAL, ["Blink_L", True]),
            (OK, []),
            (OK, [1.0]),
            ("/VMC/Ext/T", ["now"]),
        ],
    )
    def test_malformed_messages_are_ignored_and_counted(self, address: str, args: list[Any]) -> None:
        acc = VmcAccumulator()
        acc.feed(BONE, bone("Head", axis_quat("y", -10.0)), 1.0)
        acc.feed(VAL, ["Blink_L", 0.5], 1.0)
        acc.feed(OK, [1], 1.0)
        acc.feed(address, args, 1.0)
        sample = frame(acc, 1.0)
        assert acc.stats.malformed == 1
        assert sample is not None
        assert sample.channels["headYaw"] == pytest.approx(10.0, abs=1e-3)
        assert sample.channels["eyeBlinkLeft"] == 0.5
        assert sample.face is True

    def test_unknown_addresses_are_counted_not_used(self) -> None:
        acc = VmcAccumulator()
        acc.feed("/VMC/Ext/Cam", ["Camera", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 60.0], 1.0)
        acc.feed("/VMC/Ext/Root/Pos", ["root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], 1.0)
        assert acc.stats.unknown == 2
        assert acc.stats.malformed == 0

    def test_extra_bone_arguments_are_ignored(self) -> None:
        acc = VmcAccumulator()
        acc.feed(BONE, [*bone("Head", axis_quat("x", 9.0)), 1.0, 2.0, "x"], 1.0)
        sample = frame(acc, 1.0)
        assert sample is not None
        assert sample.channels["headPitch"] == pytest.approx(9.0, abs=1e-3)

    def test_sample_times_strictly_increase_and_the_rate_is_capped(self) -> None:
        acc = VmcAccumulator(min_sample_gap_s=0.005)
        times = [1.0, 1.0, 0.99, 1.003, 1.006, 1.0060000001, 1.02]
        kept = [s.t for t in times if (s := frame(acc, t)) is not None]
        assert kept == [1.0, 1.006, 1.02]
        assert acc.stats.not_after == 3  # 1.0 again, 0.99, and 1.0060000001 after rounding to µs
        assert acc.stats.too_soon == 1  # 1.003
        assert acc.stats.frames == len(times)

    def test_the_sender_clock_is_recorded_not_used_for_times(self) -> None:
        acc = VmcAccumulator()
        acc.feed("/VMC/Ext/T", [12345.5], 3.0)
        sample = frame(acc, 3.0)
        assert acc.sender_time == 12345.5
        assert sample is not None and sample.t == 3.0


def sample(t: float, channels: dict[str, float] | None = None, face: bool = True) -> Sample:
    base = dict.fromkeys(REQUIRED_CHANNELS, 0.0)
    base.update(channels or {})
    return Sample(t=t, channels=base, face=face)


class TestTrackingBatcher:
    def test_batches_hold_at_most_120_samples_in_order(self) -> None:
        batcher = TrackingBatcher(interval_s=1000.0)
        for i in range(300):
            batcher.add(sample(i / 60))
        batches = batcher.take(5.0, force=True)
        assert [len(b.ts) for b in batches] == [MAX_SAMPLES_PER_MESSAGE, MAX_SAMPLES_PER_MESSAGE, 60]
        ts = [t for b in batches for t in b.ts]
        assert ts == [i / 60 for i in range(300)]
        for b in batches:
            assert all(len(col) == len(b.ts) for col in b.channels.values())
            assert len(b.face) == len(b.ts)

    def test_the_open_batch_is_released_at_most_every_interval(self) -> None:
        batcher = TrackingBatcher(interval_s=0.2)
        batcher.add(sample(10.0))
        assert batcher.take(10.1) == []
        first = batcher.take(10.2)
        assert [b.ts for b in first] == [(10.0,)]
        batcher.add(sample(10.25))
        batcher.add(sample(10.3))
        assert batcher.take(10.35) == []  # 0.15 s after the last release
        second = batcher.take(10.4)
        assert [b.ts for b in second] == [(10.25, 10.3)]
        assert batcher.take(11.0) == []  # nothing pending, nothing sent

    def test_a_new_channel_starts_a_new_batch(self) -> None:
        batcher = TrackingBatcher(interval_s=1000.0)
        batcher.add(sample(1.0))
        batcher.add(sample(1.1))
        batcher.add(sample(1.2, {"mouthSmileLeft": 0.5}))
        batches = batcher.take(2.0, force=True)
        assert [b.ts for b in batches] == [(1.0, 1.1), (1.2,)]
        assert "mouthSmileLeft" not in batches[0].channels
        assert batches[1].channels["mouthSmileLeft"] == (0.5,)

    def test_samples_not_after_the_previous_are_dropped(self) -> None:
        batcher = TrackingBatcher(interval_s=0.0)
        batcher.add(sample(1.0))
        batcher.take(1.0)
        batcher.add(sample(1.0))
        batcher.add(sample(0.5))
        batcher.add(sample(1.5))
        assert [b.ts for b in batcher.take(2.0)] == [(1.5,)]
        assert batcher.dropped == 2

    def test_messages_fit_the_servers_frame_limit(self) -> None:
        # A PerfectSync model sends all 52 ARKit channels; the worst-case numbers are long ones.
        client = LiveClient("s" * 128, "avatar-1", "operator-1")
        client.on_accepted()
        max_bytes = 9_000
        batcher = TrackingBatcher(interval_s=1000.0, max_bytes=max_bytes)
        full = {name: 0.1234 for name in ARKIT_BLENDSHAPES} | {"headYaw": -179.123, "headPitch": -89.999}
        for i in range(240):
            batcher.add(sample(12_345_678.123456 + i / 60, full, face=False))
        batches = batcher.take(0.0, force=True)
        assert len(batches) > 2
        assert sum(len(b.ts) for b in batches) == 240
        for b in batches:
            text = json.dumps(client.tracking(b), separators=(",", ":"))
            assert len(text.encode()) <= max_bytes

    def test_bad_settings_are_refused(self) -> None:
        with pytest.raises(ValueError, match="max_samples must be"):
            TrackingBatcher(max_samples=121)
        with pytest.raises(ValueError, match="interval_s must be"):
            TrackingBatcher(interval_s=-1)


def batch(*ts: float) -> TrackingBatch:
    return TrackingBatch(
        ts=ts,
        channels={name: tuple(0.0 for _ in ts) for name in REQUIRED_CHANNELS},
        face=tuple(True for _ in ts),
    )


class TestLiveClient:
    def test_session_open_has_exactly_the_protocol_fields(self) -> None:
        assert LiveClient("s-1", "av-1", "op-1").hello() == {
            "type": "session.open",
            "session": "s-1",
            "avatar_id": "av-1",
            "operator_id": "op-1",
        }
        with_stream = LiveClient("s-1", "av-1", "op-1", stream_id="room-7").hello()
        assert with_stream["stream_id"] == "room-7"

    def test_every_message_gets_the_next_seq_from_one(self) -> None:
        client = LiveClient("s-1", "av-1", "op-1")
        client.on_accepted()
        client.tracking(batch(1.0, 1.1))
        client.challenge_shown("ch-1", 1.15)
        client.tracking(batch(1.2))
        client.close()
        sent = client.drain()
        assert [m["seq"] for m in sent] == [1, 2, 3, 4]
        assert [m["type"] for m in sent] == ["tracking", "challenge.shown", "tracking", "session.close"]
        assert sent[1] == {
            "type": "challenge.shown",
            "session": "s-1",
            "seq": 2,
            "t": 1.15,
            "challenge_id": "ch-1",
        }
        assert sent[3] == {"type": "session.close", "session": "s-1", "seq": 4}
        assert client.drain() == []

    def test_tracking_messages_pass_the_servers_wire_model(self) -> None:
        client = LiveClient("s-1", "av-1", "op-1")
        msg = client.tracking(batch(1.0, 1.05, 1.1))
        parsed = parse_client_message(json.dumps(msg))
        assert isinstance(parsed, Tracking)
        assert set(msg) == {"type", "session", "seq", "ts", "channels", "face", "source"}
        assert msg["source"] == "vmc"

    def test_messages_wait_until_the_session_is_accepted(self) -> None:
        client = LiveClient("s-1", "av-1", "op-1")
        client.tracking(batch(1.0))
        client.tracking(batch(1.1))
        assert client.drain() == []
        client.on_accepted()
        assert [m["seq"] for m in client.drain()] == [1, 2]

    def test_resume_replays_from_the_servers_seq(self) -> None:
        client = LiveClient("s-1", "av-1", "op-1")
        client.on_accepted()
        for i in range(5):
            client.tracking(batch(1.0 + i))
        assert len(client.drain()) == 5
        client.on_verdict(3)
        client.on_verdict(2)  # an older verdict does not move it back
        client.on_disconnect()
        client.tracking(batch(7.0))  # built while offline: seq 6
        assert client.drain() == []
        assert client.hello() == {"type": "session.resume", "session": "s-1", "last_seq": 3}
        client.on_accepted(resume_from_seq=4)
        replay = client.drain()
        assert [m["seq"] for m in replay] == [4, 5, 6]
        assert [m["ts"] for m in replay] == [[4.0], [5.0], [7.0]]
        client.challenge_shown("c", 8.0)
        assert [m["seq"] for m in client.drain()] == [7]

    def test_resume_beyond_what_is_retained_leaves_a_gap_and_continues(self) -> None:
        client = LiveClient("s-1", "av-1", "op-1", retain=2)
        client.on_accepted()
        for i in range(5):
            client.tracking(batch(1.0 + i))
        client.drain()
        client.on_disconnect()
        client.on_accepted(resume_from_seq=2)
        assert [m["seq"] for m in client.drain()] == [4, 5]  # 2 and 3 are gone: the server counts a gap
        client.on_disconnect()
        client.on_accepted(resume_from_seq=9)  # the server is ahead: continue from there
        client.close()
        assert [m["seq"] for m in client.drain()] == [9]

    def test_resume_reply_without_resume_from_seq_continues_after_the_last_verdict(self) -> None:
        client = LiveClient("s-1", "av-1", "op-1")
        client.on_accepted()
        for i in range(4):
            client.tracking(batch(1.0 + i))
        client.drain()
        client.on_verdict(2)
        client.on_disconnect()
        client.on_accepted(None)
        assert [m["seq"] for m in client.drain()] == [3, 4]

    @pytest.mark.parametrize("session", ["", "has space", "a/b", "x" * 129, "ünï"])
    def test_malformed_session_ids_are_refused(self, session: str) -> None:
        with pytest.raises(ValueError, match="session id must be"):
            LiveClient(session, "av-1", "op-1")


class TestSourceLock:
    def test_one_sender_is_followed_until_it_falls_silent(self) -> None:
        lock = SourceLock(takeover_s=2.0)
        a, b = ("127.0.0.1", 5000), ("127.0.0.1", 6000)
        assert lock.accept(a, 1.0)
        assert not lock.accept(b, 1.5)
        assert lock.accept(a, 2.0)
        assert not lock.accept(b, 3.9)
        assert lock.accept(b, 4.1)  # a has been silent for more than 2 s
        assert not lock.accept(a, 4.2)
        assert lock.ignored == 3
