"""The challenge engine: PROTOCOL.md "Verdicts" judged from challenge outcomes and presence only."""

from __future__ import annotations

import json

import pytest

from livecheck.challenge_engine import ChallengeEngine, ChallengeEngineRules
from livecheck.engine import ChallengeOutcome, Engine
from livecheck.policy import parse_policy

NEUTRAL = {
    "headYaw": [0.0],
    "headPitch": [0.0],
    "headRoll": [0.0],
    "eyeBlinkLeft": [0.1],
    "eyeBlinkRight": [0.1],
    "jawOpen": [0.0],
}


def outcome(
    result: str, reaction_ms: float | None = None, flags: tuple[str, ...] = (), n: int = 1
) -> ChallengeOutcome:
    return ChallengeOutcome(f"c{n}", "nod", result, reaction_ms, flags)  # type: ignore[arg-type]  # test data


def feed(engine: ChallengeEngine, seconds: int, face: bool = True, start: float = 0.0) -> None:
    """One 10-sample tracking message a second."""
    for s in range(seconds):
        engine.on_tracking([start + s + i / 10 for i in range(10)], NEUTRAL, [face] * 10, start + s)


def codes(engine: ChallengeEngine, now: float) -> list[str]:
    return [r.code for r in engine.assess(now).reasons]


class TestVerdicts:
    def test_it_is_an_engine(self) -> None:
        engine: Engine = ChallengeEngine()
        assert engine.assess(0.0).state == "pending"

    def test_pending_until_a_challenge_is_answered(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        a = e.assess(5.0)
        assert (a.state, a.score) == ("pending", 0.5)
        assert [(r.code, r.detail) for r in a.reasons] == [
            ("awaiting_challenge", "no challenge answered yet")
        ]

    def test_a_passed_challenge_is_human(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        e.on_challenge(outcome("passed", 320.0))
        a = e.assess(5.0)
        assert a.state == "human"
        assert a.score == pytest.approx(2 / 3, abs=1e-3)
        assert a.reasons[0].detail == "1 of 1 challenges passed, median reaction 320 ms"

    def test_a_missed_challenge_is_at_risk(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        e.on_challenge(outcome("passed", 300.0, n=1))
        e.on_challenge(outcome("missed", n=2))
        a = e.assess(5.0)
        assert a.state == "at_risk"
        assert a.reasons[0].detail == "1 of 2 challenges missed"

    def test_two_of_three_missed_is_a_violation(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        for n, result in enumerate(("missed", "passed", "missed"), start=1):
            e.on_challenge(outcome(result, 300.0 if result == "passed" else None, n=n))
        a = e.assess(5.0)
        assert a.state == "violation"
        assert a.reasons[0].detail == "2 of 3 challenges missed"
        assert a.score == pytest.approx(2 / 5, abs=1e-3)

    def test_only_the_last_three_count(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        for n, result in enumerate(("missed", "missed", "passed", "passed", "passed"), start=1):
            e.on_challenge(outcome(result, 300.0 if result == "passed" else None, n=n))
        a = e.assess(5.0)
        assert a.state == "human"
        assert a.reasons[0].detail == "3 of the last 3 challenges passed, median reaction 300 ms"

    def test_too_fast_is_named_with_its_numbers(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        e.on_challenge(outcome("failed", 40.0, ("reaction_too_fast",)))
        a = e.assess(5.0)
        assert a.state == "at_risk"
        assert [(r.code, r.detail) for r in a.reasons] == [
            ("reaction_too_fast", "reaction 40 ms, faster than a person (150 ms)")
        ]

    def test_the_policy_min_reaction_is_quoted(self) -> None:
        e = ChallengeEngine.from_policy(parse_policy("[challenges]\nmin_reaction_ms = 120\n"))
        feed(e, 5)
        e.on_challenge(outcome("failed", 40.0, ("reaction_too_fast",)))
        assert e.assess(5.0).reasons[0].detail == "reaction 40 ms, faster than a person (120 ms)"

    def test_moved_before_shown_is_named(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        e.on_challenge(outcome("failed", -250.0, ("moved_before_shown",)))
        assert e.assess(5.0).reasons[0].detail == "moved 250 ms before the challenge was shown"

    def test_a_failed_challenge(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        e.on_challenge(outcome("failed"))
        assert e.assess(5.0).reasons[0].detail == "1 of 1 challenges not completed in time"


class TestPresence:
    def test_no_tracking_for_long_is_at_risk(self) -> None:
        e = ChallengeEngine()
        feed(e, 5)
        e.on_challenge(outcome("passed", 300.0))
        assert e.assess(14.0).state == "human"
        a = e.assess(16.0)
        assert a.state == "at_risk"
        assert ("no_tracking", "no tracking samples for 12 s") in [(r.code, r.detail) for r in a.reasons]

    def test_no_tracking_at_all(self) -> None:
        e = ChallengeEngine()
        e.assess(0.0)
        assert codes(e, 11.0)[-1] == "no_tracking"

    def test_a_face_seen_too_rarely_is_at_risk(self) -> None:
        e = ChallengeEngine()
        feed(e, 10, face=True)
        feed(e, 60, face=False, start=10.0)
        a = e.assess(70.0)
        assert a.state == "at_risk"
        detail = next(r.detail for r in a.reasons if r.code == "face_not_visible")
        assert detail.startswith("face visible in ") and detail.endswith("% of recent samples (minimum 50%)")

    def test_a_face_mostly_seen_is_fine(self) -> None:
        e = ChallengeEngine()
        feed(e, 30, face=True)
        feed(e, 5, face=False, start=30.0)
        assert "face_not_visible" not in codes(e, 35.0)

    def test_many_lost_messages_are_at_risk(self) -> None:
        e = ChallengeEngine()
        feed(e, 10)
        e.on_lost(5)
        a = e.assess(10.0)
        assert a.state == "at_risk"
        assert ("messages_lost", "5 of 15 messages lost (seq gaps)") in [
            (r.code, r.detail) for r in a.reasons
        ]

    def test_each_presence_problem_halves_the_score(self) -> None:
        e = ChallengeEngine()
        feed(e, 10)
        e.on_challenge(outcome("passed", 300.0))
        before = e.assess(10.0).score
        e.on_lost(5)
        assert e.assess(10.0).score == pytest.approx(before / 2, abs=1e-3)

    def test_chat_speech_and_frames_count_as_received(self) -> None:
        e = ChallengeEngine()
        feed(e, 2)
        e.on_chat(1.0, "m", 2.0)
        e.on_speech(1.0, 2.0, None, 2.0)
        e.on_frame(1.0, b"\x00" * 32, 90, 2.0)
        e.on_lost(1)
        # 1 of 6 lost is above 10%; 1 of 11 would not be.
        assert "messages_lost" in codes(e, 2.0)
        feed(e, 5, start=2.0)
        assert "messages_lost" not in codes(e, 7.0)


class TestSnapshot:
    def test_restore_continues(self) -> None:
        e = ChallengeEngine()
        feed(e, 10)
        e.on_challenge(outcome("passed", 300.0))
        e.on_challenge(outcome("missed"))
        e.on_lost(1)
        data = json.loads(json.dumps(e.snapshot()))
        r = ChallengeEngine.restore(data, shift_s=1000.0)
        a, b = e.assess(12.0), r.assess(1012.0)
        assert (a.state, a.score, a.reasons) == (b.state, b.score, b.reasons)
        assert r.snapshot()["totals"] == {"passed": 1, "failed": 0, "missed": 1}

    def test_times_are_shifted_to_the_new_clock(self) -> None:
        e = ChallengeEngine()
        feed(e, 3)
        r = ChallengeEngine.restore(e.snapshot(), shift_s=500.0)
        assert "no_tracking" not in codes(r, 505.0)
        assert "no_tracking" in codes(r, 515.0)

    def test_another_version_is_refused(self) -> None:
        data = ChallengeEngine().snapshot()
        data["v"] = 99
        with pytest.raises(ValueError, match="version 99"):
            ChallengeEngine.restore(data)

    def test_rules_can_be_tightened(self) -> None:
        e = ChallengeEngine(ChallengeEngineRules(window=2, violation_bad=1))
        feed(e, 3)
        e.on_challenge(outcome("passed", 300.0, n=1))
        e.on_challenge(outcome("missed", n=2))
        assert e.assess(3.0).state == "violation"
