"""Challenge detection: PROTOCOL.md "Challenges" (baseline, the five actions, reaction time, too fast,
moved before shown, a movement under way, deadlines) and "Head angles" (sign conventions)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace

import pytest

from livecheck.challenges import (
    KEEP_S,
    MAX_WINDOW,
    ChallengeRules,
    ChallengeTracker,
)
from livecheck.engine import ChallengeOutcome

HZ = 30
NEUTRAL = {
    "headYaw": 0.0,
    "headPitch": 0.0,
    "headRoll": 0.0,
    "eyeBlinkLeft": 0.1,
    "eyeBlinkRight": 0.1,
    "jawOpen": 0.05,
}
Pose = Callable[[float], dict[str, float]]


def ramp(
    t: float, start: float, peak: float, rise: float = 0.2, hold: float = 0.8, fall: float = 0.2
) -> float:
    """0 until `start`, up to `peak` over `rise`, held for `hold`, back to 0 over `fall`."""
    d = t - start
    if d < 0:
        return 0.0
    if d < rise:
        return peak * d / rise
    if d < rise + hold:
        return peak
    if d < rise + hold + fall:
        return peak * (1 - (d - rise - hold) / fall)
    return 0.0


def pose(**fns: Callable[[float], float]) -> Pose:
    def at(t: float) -> dict[str, float]:
        values = dict(NEUTRAL)
        for name, fn in fns.items():
            values[name] = fn(t)
        return values

    return at


def still(t: float) -> dict[str, float]:
    return dict(NEUTRAL)


def blinks(
    *starts: float, closed: float = 0.9, dur: float = 0.15, left: bool = True, right: bool = True
) -> Pose:
    def level(t: float) -> float:
        return closed if any(s <= t < s + dur for s in starts) else 0.1

    return pose(
        eyeBlinkLeft=level if left else (lambda t: 0.1),
        eyeBlinkRight=level if right else (lambda t: 0.1),
    )


class Stream:
    """Tracking samples at 30 Hz in batches of 0.1 s, received `lag` after their last sample.

    The sender's clock equals the server's here (only differences matter to the tracker).
    """

    def __init__(self, rules: ChallengeRules | None = None, lag: float = 0.05) -> None:
        self.tr = ChallengeTracker(rules or ChallengeRules())
        self.k = 0  # index of the next sample: t = k / HZ
        self.lag = lag
        self.outcomes: list[ChallengeOutcome] = []

    @property
    def t(self) -> float:
        return self.k / HZ

    def run(
        self,
        until: float,
        at: Pose = still,
        face: Callable[[float], bool] | None = None,
        lag: float | None = None,
    ) -> None:
        while self.k / HZ < until - 1e-9:
            ts = [(self.k + i) / HZ for i in range(3)]
            self.k += 3
            values = [at(t) for t in ts]
            channels = {name: [v[name] for v in values] for name in NEUTRAL}
            flags = None if face is None else [face(t) for t in ts]
            recv = ts[-1] + (self.lag if lag is None else lag)
            self.outcomes += self.tr.add_samples(ts, channels, flags, recv)

    def challenge(
        self,
        action: str,
        issued: float = 10.0,
        shown_t: float = 10.1,
        shown_recv: float = 10.15,
        at: Pose = still,
    ) -> None:
        """Issue at server time `issued`; run until the shown arrival; then `challenge.shown`."""
        self.run(issued, at)
        self.tr.issue("c1", action, issued)
        self.run(shown_recv - self.lag, at)
        self.outcomes += self.tr.shown("c1", shown_t, shown_recv)

    def only(self) -> ChallengeOutcome:
        assert len(self.outcomes) == 1, self.outcomes
        return self.outcomes[0]


def judged(action: str, at: Pose, until: float = 20.0, **kw: float) -> ChallengeOutcome:
    s = Stream()
    s.challenge(action, at=at, **kw)
    s.run(until, at)
    return s.only()


class TestHeadAngles:
    """Yaw > 0 is the person's own left; pitch > 0 is chin down; challenges name the person's directions."""

    def test_turn_head_left_is_positive_yaw(self) -> None:
        out = judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 10.4, 25)))
        assert out.result == "passed"
        # First sample ≥ 3° (20% of 15°): 10.4333 (the one at 10.4 is still 0).
        assert out.reaction_ms == pytest.approx(333.3, abs=0.1)

    def test_turn_head_left_is_not_completed_by_turning_right(self) -> None:
        out = judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 10.4, -25)))
        assert out.result == "failed"
        assert out.reaction_ms is None

    def test_turn_head_right_is_negative_yaw(self) -> None:
        assert judged("turn_head_right", pose(headYaw=lambda t: ramp(t, 10.4, -25))).result == "passed"
        assert judged("turn_head_right", pose(headYaw=lambda t: ramp(t, 10.4, 25))).result == "failed"

    def test_nod_is_chin_down_then_back(self) -> None:
        assert judged("nod", pose(headPitch=lambda t: ramp(t, 10.4, 12, hold=0.3))).result == "passed"

    def test_chin_up_is_not_a_nod(self) -> None:
        assert judged("nod", pose(headPitch=lambda t: ramp(t, 10.4, -12, hold=0.3))).result == "failed"

    def test_roll_does_not_complete_a_turn(self) -> None:
        assert judged("turn_head_left", pose(headRoll=lambda t: ramp(t, 10.4, 40))).result == "failed"


class TestChallengeCompletion:
    def test_turn_needs_the_full_threshold(self) -> None:
        assert judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 10.4, 14.5))).result == "failed"
        assert judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 10.4, 15.0))).result == "passed"

    def test_angles_are_relative_to_the_baseline(self) -> None:
        # Head already 10° to the left: reaching 20° is only a 10° turn.
        base = 10.0
        assert judged("turn_head_left", pose(headYaw=lambda t: base + ramp(t, 10.4, 10))).result == "failed"
        assert judged("turn_head_left", pose(headYaw=lambda t: base + ramp(t, 10.4, 16))).result == "passed"

    def test_nod_must_come_back_within_2_s_of_going_down(self) -> None:
        # Down at ≈ 10.6 and held: back only after 2.5 s.
        slow = judged("nod", pose(headPitch=lambda t: ramp(t, 10.4, 12, hold=2.5)))
        assert slow.result == "failed"

    def test_nod_back_to_within_3_degrees_is_enough(self) -> None:
        # Down 12°, back to 2.5° below the baseline (within 3°).
        def pitch(t: float) -> float:
            return ramp(t, 10.4, 9.5, hold=0.3) + (2.5 if t >= 10.4 else 0.0)

        assert judged("nod", pose(headPitch=pitch)).result == "passed"

    def test_a_slow_nod_then_a_good_one(self) -> None:
        def pitch(t: float) -> float:
            return ramp(t, 10.4, 12, hold=2.5) + ramp(t, 14.0, 12, hold=0.3)

        out = judged("nod", pose(headPitch=pitch))
        assert out.result == "passed"
        assert out.reaction_ms == pytest.approx(3933.3, abs=0.1)

    def test_two_blinks_within_2_5_s(self) -> None:
        out = judged("blink_twice", blinks(10.5, 11.0))
        assert out.result == "passed"
        assert out.reaction_ms == pytest.approx(400.0, abs=0.1)

    def test_one_blink_is_not_enough(self) -> None:
        assert judged("blink_twice", blinks(10.5)).result == "failed"

    def test_two_blinks_too_far_apart(self) -> None:
        assert judged("blink_twice", blinks(10.5, 13.5)).result == "failed"

    def test_the_second_and_third_blinks_may_make_the_pair(self) -> None:
        out = judged("blink_twice", blinks(10.5, 13.5, 14.0))
        assert out.result == "passed"
        assert out.reaction_ms == pytest.approx(3400.0, abs=0.1)

    def test_both_eyes_must_blink(self) -> None:
        assert judged("blink_twice", blinks(10.5, 11.0, right=False)).result == "failed"

    def test_a_partial_blink_does_not_count(self) -> None:
        assert judged("blink_twice", blinks(10.5, 11.0, closed=0.55)).result == "failed"

    def test_open_mouth_held_300_ms(self) -> None:
        out = judged("open_mouth", pose(jawOpen=lambda t: 0.05 + ramp(t, 10.5, 0.75, rise=0.1, hold=0.4)))
        assert out.result == "passed"

    def test_open_mouth_too_short(self) -> None:
        out = judged("open_mouth", pose(jawOpen=lambda t: 0.05 + ramp(t, 10.5, 0.75, rise=0.1, hold=0.2)))
        assert out.result == "failed"

    def test_open_mouth_not_wide_enough(self) -> None:
        out = judged("open_mouth", pose(jawOpen=lambda t: 0.05 + ramp(t, 10.5, 0.5, rise=0.1, hold=1.0)))
        assert out.result == "failed"

    def test_custom_thresholds_apply(self) -> None:
        rules = replace(ChallengeRules(), turn_head_left=replace(ChallengeRules().turn_head_left, yaw_deg=30))
        s = Stream(rules)
        s.challenge("turn_head_left")
        s.run(20, pose(headYaw=lambda t: ramp(t, 10.4, 25)))
        assert s.only().result == "failed"


class TestBaseline:
    def test_baseline_is_the_median_of_the_second_before_shown(self) -> None:
        # One wild sample at 9.9 (yaw 40) does not move the median of the ≈30 samples before shown.t.
        def yaw(t: float) -> float:
            return 40.0 if abs(t - 9.9) < 1e-6 else ramp(t, 10.4, 16)

        assert judged("turn_head_left", pose(headYaw=yaw)).result == "passed"

    def test_samples_without_a_face_are_not_the_baseline(self) -> None:
        # The second before shown.t has yaw 20 but no face: the baseline falls back to the first
        # face-visible sample after shown.t (yaw 0), so a turn to 16° completes.
        s = Stream()
        s.challenge("turn_head_left")
        s.run(
            20,
            pose(headYaw=lambda t: 20.0 if t < 10.1 else ramp(t, 10.4, 16)),
            face=lambda t: t >= 10.1,
        )
        assert s.only().result == "passed"

    def test_without_a_baseline_second_the_first_sample_after_is_used(self) -> None:
        s = Stream()
        s.run(10.0, face=lambda t: False)
        s.tr.issue("c1", "turn_head_left", 10.0)
        s.outcomes += s.tr.shown("c1", 10.1, 10.15)
        # Head at 10° from shown.t on, then a 16° turn: relative to the first sample (10°) it is 16°.
        s.run(20, pose(headYaw=lambda t: 10.0 + ramp(t, 10.5, 16)))
        assert s.only().result == "passed"

    def test_samples_without_a_face_carry_no_evidence(self) -> None:
        s = Stream()
        s.challenge("turn_head_left")
        s.run(20, pose(headYaw=lambda t: ramp(t, 10.4, 25)), face=lambda t: not 10.3 < t < 11.5)
        assert s.only().result == "failed"


class TestReactionTime:
    def test_reaction_is_onset_minus_shown_t(self) -> None:
        out = judged(
            "turn_head_left", pose(headYaw=lambda t: ramp(t, 10.8, 25)), shown_t=10.3, shown_recv=10.35
        )
        assert out.reaction_ms == pytest.approx(533.3, abs=0.1)

    def test_faster_than_min_reaction_fails(self) -> None:
        out = judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 10.15, 25)))
        assert out.result == "failed"
        assert out.flags == ("reaction_too_fast",)
        # First sample ≥ 3°: 10.2 (the one at 10.1667 is at 2.1°).
        assert out.reaction_ms == pytest.approx(100.0, abs=0.1)

    @pytest.mark.parametrize(
        ("min_ms", "result"), [(166.6, "passed"), (1000 / 6, "passed"), (166.7, "failed")]
    )
    def test_min_reaction_is_the_boundary(self, min_ms: float, result: str) -> None:
        # Onset at the sample 10.2667 (the first ≥ 3°): 166.67 ms after shown.t = 10.1.
        s = Stream(replace(ChallengeRules(), min_reaction_ms=min_ms))
        at = pose(headYaw=lambda t: 0.0 if t < 10.24 else 20.0)
        s.challenge("turn_head_left", at=at)
        s.run(20, at)
        assert s.only().reaction_ms == pytest.approx(166.7, abs=0.1)
        assert s.only().result == result

    def test_onset_is_the_start_of_the_completing_run(self) -> None:
        # A small wobble (5°) that comes back, then the real turn: the onset is the real turn's.
        def yaw(t: float) -> float:
            return ramp(t, 10.4, 5, hold=0.2) + ramp(t, 11.5, 25)

        assert judged("turn_head_left", pose(headYaw=yaw)).reaction_ms == pytest.approx(1433.3, abs=0.1)


class TestMovementUnderWay:
    def test_a_movement_under_way_at_shown_does_not_complete(self) -> None:
        # Started before the issue (9.5), still turning at shown.t: not the answer, not held against.
        out = judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 9.5, 25, rise=1.0, hold=1.0)))
        assert out.result == "failed"
        assert out.flags == ()

    def test_after_the_head_comes_back_a_new_turn_completes(self) -> None:
        def yaw(t: float) -> float:
            return ramp(t, 9.5, 25, rise=1.0, hold=1.0) + ramp(t, 12.5, 25)

        out = judged("turn_head_left", pose(headYaw=yaw))
        assert out.result == "passed"
        # Measured from the baseline (the median of a second of the first turn, ≈ 3°), not from 0.
        assert out.reaction_ms is not None and 2400 < out.reaction_ms < 2600

    def test_eyes_closed_at_shown_do_not_count_as_a_blink(self) -> None:
        # Closed at shown.t (a blink from 9.95 to 10.25), then one blink: only one counts.
        assert judged("blink_twice", blinks(9.95, 10.9, dur=0.3)).result == "failed"
        assert judged("blink_twice", blinks(9.95, 10.9, 11.4, dur=0.3)).result == "passed"


class TestMovedBeforeShown:
    def test_a_movement_between_issue_and_shown_fails(self) -> None:
        # Issued at 10.0; shown.t = 10.6 arriving at 10.65, so the issue instant on the sender's clock is
        # 10.6 − 0.65 = 9.95. The turn begins at 10.2: after the issue, before the prompt was shown.
        out = judged(
            "turn_head_left",
            pose(headYaw=lambda t: ramp(t, 10.2, 25, hold=1.5)),
            shown_t=10.6,
            shown_recv=10.65,
        )
        assert out.result == "failed"
        assert out.flags == ("moved_before_shown",)
        assert out.reaction_ms == pytest.approx(-366.7, abs=0.1)

    def test_a_movement_before_the_issue_is_not_held_against(self) -> None:
        out = judged(
            "turn_head_left",
            pose(headYaw=lambda t: ramp(t, 9.0, 25, rise=0.4, hold=1.8)),
            shown_t=10.6,
            shown_recv=10.65,
        )
        assert out.flags == ()

    def test_the_issue_instant_uses_the_server_delay(self) -> None:
        # Same sender times, but challenge.shown arrives 1 s after the issue: the issue instant is
        # 10.6 − 1.0 = 9.6 on the sender's clock, and a turn starting at 9.8 began after it.
        s = Stream()
        s.run(9.6)
        s.tr.issue("c1", "turn_head_left", 9.6)
        s.run(10.6, pose(headYaw=lambda t: ramp(t, 9.8, 25, hold=1.5)))
        s.outcomes += s.tr.shown("c1", 10.6, 10.6)
        s.run(20, pose(headYaw=lambda t: ramp(t, 9.8, 25, hold=1.5)))
        assert s.only().flags == ("moved_before_shown",)

    def test_one_natural_blink_before_shown_is_not_held_against(self) -> None:
        # A blink between issue and shown, then the two asked for: both blinks of a pair must have begun
        # before shown.t for it to count as moved before shown.
        out = judged("blink_twice", blinks(10.2, 10.9, 11.4), shown_t=10.5, shown_recv=10.55)
        assert out.result == "passed"
        assert out.reaction_ms == pytest.approx(400.0, abs=0.1)

    def test_both_blinks_before_shown_fail(self) -> None:
        out = judged("blink_twice", blinks(10.1, 10.5), shown_t=10.8, shown_recv=10.85)
        assert out.result == "failed"
        assert out.flags == ("moved_before_shown",)


class TestDeadlines:
    def test_not_shown_within_show_within_s_is_missed(self) -> None:
        s = Stream()
        s.run(10.0)
        s.tr.issue("c1", "nod", 10.0)
        assert s.tr.next_deadline() == math.nextafter(15.0, math.inf)  # the first instant after 5 s
        assert s.tr.check(15.0) == []  # "within 5 s" is inclusive
        out = s.tr.check(15.001)
        assert [o.result for o in out] == ["missed"]
        assert s.tr.open_challenge is None

    def test_a_late_shown_finds_it_missed(self) -> None:
        s = Stream()
        s.run(10.0)
        s.tr.issue("c1", "nod", 10.0)
        out = s.tr.shown("c1", 15.5, 15.5)
        assert [o.result for o in out] == ["missed"]

    def test_completion_later_than_deadline_s_after_shown_t_fails(self) -> None:
        out = judged("turn_head_left", pose(headYaw=lambda t: ramp(t, 16.0, 25)))
        assert out.result == "failed"
        assert out.reaction_ms is None

    def test_completion_just_within_deadline_s_passes(self) -> None:
        # Completing sample (≥ 15°) at 16.1 = shown.t + 6.0.
        out = judged("turn_head_left", pose(headYaw=lambda t: 20.0 if t >= 16.09 else 0.0))
        assert out.result == "passed"

    def test_samples_arriving_after_deadline_plus_2_s_fail(self) -> None:
        # The movement lies within deadline_s of shown.t, but its samples arrive 8.5 s after they were
        # taken: after challenge.shown's arrival (10.15) + deadline_s + 2 s.
        s = Stream()
        s.challenge("turn_head_left")
        s.run(12.0, pose(headYaw=lambda t: ramp(t, 11.0, 25)), lag=8.5)
        assert [o.result for o in s.outcomes] == ["failed"]

    def test_server_deadline_after_shown(self) -> None:
        s = Stream()
        s.challenge("nod")
        assert s.tr.next_deadline() == pytest.approx(10.15 + 6 + 2, abs=1e-9)
        assert s.tr.check(18.15) == []
        assert [o.result for o in s.tr.check(18.16)] == ["failed"]

    def test_open_at_the_end_when_within_deadline(self) -> None:
        s = Stream()
        s.challenge("nod")
        s.run(12.0)
        assert s.tr.close(12.0) == ([], 1)
        outcomes, still_open = s.tr.close(30.0)
        assert [o.result for o in outcomes] == ["failed"]
        assert still_open == 0


class TestChallengeTracker:
    def test_one_challenge_at_a_time(self) -> None:
        s = Stream()
        s.tr.issue("c1", "nod", 1.0)
        with pytest.raises(ValueError, match="still open"):
            s.tr.issue("c2", "nod", 2.0)

    def test_unknown_action_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown challenge action"):
            Stream().tr.issue("c1", "wink", 1.0)

    def test_shown_of_another_or_twice(self) -> None:
        s = Stream()
        s.run(10.0)
        s.tr.issue("c1", "nod", 10.0)
        assert s.tr.awaiting_show("c1") and not s.tr.awaiting_show("c2")
        with pytest.raises(ValueError, match="not waiting to be shown"):
            s.tr.shown("c2", 10.1, 10.1)
        s.tr.shown("c1", 10.1, 10.1)
        assert not s.tr.awaiting_show("c1")
        with pytest.raises(ValueError, match="not waiting to be shown"):
            s.tr.shown("c1", 10.2, 10.2)

    def test_shown_before_the_samples_arrive(self) -> None:
        # challenge.shown comes first; the baseline second and the movement arrive later, in one batch.
        s = Stream()
        s.run(9.0)
        s.tr.issue("c1", "turn_head_left", 9.5)
        s.outcomes += s.tr.shown("c1", 9.6, 9.7)
        assert s.outcomes == []
        s.run(20, pose(headYaw=lambda t: ramp(t, 10.0, 25)), lag=0.0)
        assert s.only().result == "passed"

    def test_the_window_stays_small_without_a_challenge(self) -> None:
        s = Stream()
        s.run(120.0)
        assert s.tr.window_size() <= round(KEEP_S * HZ) + 3

    def test_the_window_is_capped_while_waiting_to_be_shown(self) -> None:
        s = Stream()
        s.run(10.0)
        s.tr.issue("c1", "nod", 10.0)
        s.run(60.0)  # a client that never shows it (the server deadline would have missed it)
        assert s.tr.window_size() <= MAX_WINDOW

    def test_the_window_shrinks_back_once_judging(self) -> None:
        s = Stream()
        s.challenge("nod", issued=10.0, shown_t=14.0, shown_recv=14.05)
        s.run(15.0)
        assert s.tr.window_size() <= round(KEEP_S * HZ) + 3


class TestSnapshot:
    def test_restore_mid_challenge_gives_the_same_outcome(self) -> None:
        at = pose(headPitch=lambda t: ramp(t, 10.4, 12, hold=0.6))
        straight = Stream()
        straight.challenge("nod")
        straight.run(20, at)

        split = Stream()
        split.challenge("nod")
        split.run(10.7, at)  # pitch down, not back yet
        assert split.outcomes == []
        data = json.loads(json.dumps(split.tr.snapshot(now=10.75)))
        split.tr = ChallengeTracker.restore(data, ChallengeRules(), now=500.0)
        split.run(20, lambda t: at(t))
        assert split.only() == straight.only()

    def test_deadlines_keep_running_while_away(self) -> None:
        s = Stream()
        s.run(10.0)
        s.tr.issue("c1", "nod", 10.0)
        data = s.tr.snapshot(now=11.0)
        tr = ChallengeTracker.restore(data, ChallengeRules(), now=100.0, away_s=3.0)
        # Issued 1 s before the snapshot, away 3 s: 1 s of the 5 s to show it is left.
        assert tr.next_deadline() == pytest.approx(101.0, abs=1e-9)
        assert [o.result for o in tr.check(101.01)] == ["missed"]

    def test_snapshot_is_json_and_bounded(self) -> None:
        s = Stream()
        s.run(60.0)
        text = json.dumps(s.tr.snapshot(now=60.0))
        assert len(text) < 8000
        assert math.isfinite(len(text))

    def test_a_damaged_snapshot_is_refused(self) -> None:
        s = Stream()
        s.run(2.0)
        data = s.tr.snapshot(now=2.0)
        data["yaw"] = data["yaw"][:-1]
        with pytest.raises(ValueError, match="differ in length"):
            ChallengeTracker.restore(data, ChallengeRules(), now=0.0)
