"""The challenge engine's flags beyond PROTOCOL.md's two: ``template_movement`` (a canned answer),
``face_lost`` (a failure while out of view), and onsets measured from a movement, not from a drift."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

import pytest

from livecheck.challenges import ChallengeTracker
from livecheck.engine import ChallengeOutcome

from .test_challenges import NEUTRAL, Stream, blinks, judged, pose, ramp

Pose = Callable[[float], dict[str, float]]


def min_jerk(t: float, start: float, peak: float, rise: float, hold: float = 0.6, fall: float = 0.5) -> float:
    """A person's turn: minimum-jerk rise (bell-shaped speed), hold, minimum-jerk return."""

    def mj(u: float) -> float:
        u = min(1.0, max(0.0, u))
        return u * u * u * (10 + u * (-15 + 6 * u))

    d = t - start
    if d < 0:
        return 0.0
    if d < rise:
        return peak * mj(d / rise)
    if d < rise + hold:
        return peak
    return peak * (1 - mj((d - rise - hold) / fall))


def noisy(fn: Callable[[float], float], sd: float, seed: int) -> Callable[[float], float]:
    """``fn`` plus Gaussian sensor noise, the same value for the same ``t`` (samples are asked once)."""
    rng = random.Random(seed)
    cache: dict[float, float] = {}

    def at(t: float) -> float:
        if t not in cache:
            cache[t] = fn(t) + rng.gauss(0.0, sd)
        return cache[t]

    return at


def two_answers(action: str, first: Pose, second: Pose) -> list[ChallengeOutcome]:
    """Two challenges of ``action`` (issued at 10 s and 30 s), answered by ``first`` then ``second``."""
    s = Stream()
    s.challenge(action, at=first)
    s.run(29.0, first)
    s.run(30.0, second)
    s.tr.issue("c2", action, 30.0)
    s.run(30.15 - s.lag, second)
    s.outcomes += s.tr.shown("c2", 30.1, 30.15)
    s.run(40.0, second)
    assert len(s.outcomes) == 2, s.outcomes
    return s.outcomes


class TestTemplateMovement:
    def test_a_noiseless_straight_ramp_is_a_template(self) -> None:
        # A script's ramp with no sensor noise at all, before or during the movement.
        out = judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 10.4, 25, rise=0.3)))
        assert out.result == "passed"
        assert out.flags == ("template_movement",)

    def test_a_repeated_constant_speed_ramp_is_a_template(self) -> None:
        # Sensor noise on both, the same ramp speed both times: the second answer repeats the first.
        a = pose(headYaw=noisy(lambda t: ramp(t, 10.4, 25, rise=0.3), 0.2, 1))
        b = pose(headYaw=noisy(lambda t: ramp(t, 30.5, 25, rise=0.3), 0.2, 2))
        first, second = two_answers("turn_head_left", a, b)
        assert (first.result, first.flags) == ("passed", ())
        assert (second.result, second.flags) == ("passed", ("template_movement",))

    def test_left_and_right_turns_are_one_kind(self) -> None:
        s = Stream()
        a = pose(headYaw=noisy(lambda t: ramp(t, 10.4, 25, rise=0.3), 0.2, 3))
        b = pose(headYaw=noisy(lambda t: -ramp(t, 30.5, 25, rise=0.3), 0.2, 4))
        s.challenge("turn_head_left", at=a)
        s.run(30.0, a)
        s.tr.issue("c2", "turn_head_right", 30.0)
        s.run(30.1, b)
        s.outcomes += s.tr.shown("c2", 30.1, 30.15)
        s.run(40.0, b)
        assert [o.flags for o in s.outcomes] == [(), ("template_movement",)]

    def test_people_accelerate_and_never_repeat_themselves(self) -> None:
        # Minimum-jerk turns of different size and speed, with sensor noise: no flag on either.
        a = pose(headYaw=noisy(lambda t: min_jerk(t, 10.4, 24.0, 0.45), 0.2, 5))
        b = pose(headYaw=noisy(lambda t: min_jerk(t, 30.5, 33.0, 0.6), 0.2, 6))
        first, second = two_answers("turn_head_left", a, b)
        assert (first.result, first.flags) == ("passed", ())
        assert (second.result, second.flags) == ("passed", ())

    def test_a_different_speed_is_not_a_repeat(self) -> None:
        a = pose(headYaw=noisy(lambda t: ramp(t, 10.4, 25, rise=0.3), 0.2, 7))
        b = pose(headYaw=noisy(lambda t: ramp(t, 30.5, 25, rise=0.5), 0.2, 8))
        assert [o.flags for o in two_answers("turn_head_left", a, b)] == [(), ()]

    def test_blinks_are_not_judged(self) -> None:
        assert judged("blink_twice", blinks(10.5, 11.0)).flags == ()

    def test_the_memory_of_speeds_survives_a_checkpoint(self) -> None:
        s = Stream()
        a = pose(headYaw=noisy(lambda t: ramp(t, 10.4, 25, rise=0.3), 0.2, 9))
        s.challenge("turn_head_left", at=a)
        s.run(29.0, a)
        snap = json.loads(json.dumps(s.tr.snapshot(29.0)))
        assert snap["speeds"] and snap["speeds"][0][0] == "turn"
        s.tr = ChallengeTracker.restore(snap, s.tr.rules, 29.0)
        b = pose(headYaw=noisy(lambda t: ramp(t, 30.5, 25, rise=0.3), 0.2, 10))
        s.run(30.0, b)
        s.tr.issue("c2", "turn_head_left", 30.0)
        s.run(30.1, b)
        s.outcomes += s.tr.shown("c2", 30.1, 30.15)
        s.run(40.0, b)
        assert s.outcomes[-1].flags == ("template_movement",)

    def test_a_snapshot_without_speeds_still_restores(self) -> None:
        s = Stream()
        s.run(5.0)
        snap = s.tr.snapshot(5.0)
        del snap["speeds"]  # written before template detection existed
        assert ChallengeTracker.restore(snap, s.tr.rules, 5.0).window_size() == s.tr.window_size()


class TestDriftIsNotAMovement:
    def test_a_drifted_head_can_still_answer(self) -> None:
        # The head drifts slowly to the left (4°/s) across the onset level before the prompt; the turn
        # starts 400 ms after shown.t. Not a movement under way: the turn completes the challenge.
        def yaw(t: float) -> float:
            return min(4.5, max(0.0, 4.0 * (t - 9.2))) + ramp(t, 10.5, 25, rise=0.3)

        out = judged("turn_head_left", pose(headYaw=yaw))
        assert out.result == "passed"
        assert out.flags == ()
        # The onset is 20% of the way from where the rise began (4.5°) to the threshold (6.6°): the
        # sample at 10.5333 (7.3°), not the drift's crossing of 3° at 9.95.
        assert out.reaction_ms == pytest.approx(433.3, abs=0.1)

    def test_a_drift_just_after_the_prompt_is_not_a_fast_reaction(self) -> None:
        # Drifting at 3°/s, the head crosses 3° (20% of 15°) 50 ms after shown.t; the real turn starts
        # at 10.45. The onset is the turn's, not the drift's crossing, so this is no reaction_too_fast.
        def yaw(t: float) -> float:
            return max(0.0, 3.0 * (t - 9.15)) + ramp(t, 10.45, 25, rise=0.3)

        out = judged("turn_head_left", pose(headYaw=yaw))
        assert out.result == "passed"
        assert out.reaction_ms is not None and out.reaction_ms > 300

    def test_a_drift_before_the_prompt_is_not_moving_before_shown(self) -> None:
        # Issued at 10.0 (≈ 9.95 on the sender's clock), shown at 10.6: the head drifts across the onset
        # level in between, and the turn itself starts after the prompt.
        def yaw(t: float) -> float:
            return max(0.0, 3.0 * (t - 9.3)) + ramp(t, 10.9, 25, rise=0.3)

        out = judged("turn_head_left", pose(headYaw=yaw), shown_t=10.6, shown_recv=10.65)
        assert out.flags == ()
        assert out.result == "passed"

    def test_a_real_movement_under_way_still_does_not_count(self) -> None:
        # Turning fast (25°/s) through the anchor: under way, not an answer (PROTOCOL.md).
        out = judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 9.5, 25, rise=1.0, hold=1.0)))
        assert (out.result, out.flags) == ("failed", ())


class TestFaceLost:
    def test_a_failure_out_of_view_is_flagged(self) -> None:
        s = Stream()
        s.challenge("nod")
        s.run(20.0, face=lambda t: not 10.3 < t < 15.0)
        out = s.only()
        assert (out.result, out.flags) == ("failed", ("face_lost",))

    def test_a_failure_in_view_is_not(self) -> None:
        s = Stream()
        s.challenge("nod")
        s.run(20.0)
        assert (s.only().result, s.only().flags) == ("failed", ())

    def test_the_count_survives_a_checkpoint(self) -> None:
        s = Stream()
        s.challenge("nod")
        s.run(12.0, face=lambda t: t < 10.3)
        snap = json.loads(json.dumps(s.tr.snapshot(12.0)))
        assert snap["open"]["seen"][0] > snap["open"]["seen"][1]
        s.tr = ChallengeTracker.restore(snap, s.tr.rules, 12.0)
        s.run(20.0, face=lambda t: t < 10.3)
        assert s.only().flags == ("face_lost",)


def test_neutral_pose_is_still() -> None:
    # The helpers' neutral pose has no motion at all: the noiseless-ramp test above depends on it.
    assert all(math.isfinite(v) for v in NEUTRAL.values())
    assert pose()(1.0) == pose()(2.0)
