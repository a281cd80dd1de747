"""Challenge statistics: passes, misses, flag rates, templates, too regular, too late, unresponsive."""

import pytest

from livecheck.engine import ChallengeOutcome
from livecheck.evidence.challenges import Challenges
from livecheck.evidence.policy import ChallengePolicy


def _c(outcomes: list[tuple[str, float | None, tuple[str, ...]]], action: str = "nod") -> Challenges:
    c = Challenges(ChallengePolicy())
    for i, (res, rt, flags) in enumerate(outcomes):
        c.on_outcome(ChallengeOutcome(f"c{i}", action, res, rt, flags))  # type: ignore[arg-type]  # test literal
    return c


def _total(c: Challenges) -> float:
    return sum(e.llr for e in c.evidence())


def test_varied_passes_support_a_person() -> None:
    c = _c([("passed", rt, ()) for rt in (420.0, 610.0, 380.0, 900.0)])
    assert _total(c) > 0
    assert c.overrides() == []


def test_misses_and_failures_count_against() -> None:
    assert _total(_c([("missed", None, ())])) < _total(_c([("failed", None, ())])) < 0


def test_flagged_answers_count_against_even_when_passed() -> None:
    c = _c([("passed", 40.0, ("reaction_too_fast",))] * 3)
    codes = {e.code: e.llr for e in c.evidence()}
    assert codes["reaction_too_fast"] < 0
    assert "challenge_passed" not in codes


def test_machine_regular_reactions() -> None:
    c = _c([("passed", 250.0 + d, ()) for d in (0.0, 3.0, -2.0, 1.0, -1.0, 2.0)])
    ev = {e.code: e for e in c.evidence(1 / 60)}
    assert ev["reaction_too_regular"].llr <= -1.5
    assert (
        "60 Hz" not in ev["reaction_too_regular"].detail
        and "17 ms frame" in ev["reaction_too_regular"].detail
    )


def test_a_person_from_a_simple_generator_is_not_too_regular() -> None:
    # Reactions drawn from 190-250 ms (a published range, spread ≈ 17 ms) are not a script's.
    rts = [205.0, 238.0, 212.0, 247.0, 196.0, 229.0, 221.0, 243.0]
    assert "reaction_too_regular" not in {
        e.code for e in _c([("passed", r, ()) for r in rts]).evidence(1 / 30)
    }


def test_regularity_is_judged_within_each_action() -> None:
    # A script's fixed delay reaches the onset level at a different point for each action: 40 ms apart
    # between the two actions, but each one constant.
    c = Challenges(ChallengePolicy())
    for i, (action, rt) in enumerate([("nod", 300.0), ("open_mouth", 340.0)] * 4):
        c.on_outcome(ChallengeOutcome(f"c{i}", action, "passed", rt + (i % 3) * 0.5))
    assert "reaction_too_regular" in {e.code for e in c.evidence(1 / 60)}


def test_the_frame_timing_sets_what_regular_means() -> None:
    # A spread of about 10 ms is what one 24 Hz frame alone gives a fixed delay (a script), but more
    # than a fixed delay shows at 60 Hz.
    rts = [300.0, 320.0, 300.0, 320.0, 310.0, 300.0, 320.0, 310.0]
    at_24 = {e.code: e.llr for e in _c([("passed", r, ()) for r in rts]).evidence(1 / 24)}
    at_60 = {e.code: e.llr for e in _c([("passed", r, ()) for r in rts]).evidence(1 / 60)}
    assert at_24.get("reaction_too_regular", 0.0) < -1
    assert at_60.get("reaction_too_regular", 0.0) > -0.2


def test_one_flag_among_many_clean_answers_is_a_coincidence() -> None:
    outcomes = [("passed", 400.0 + 37 * i, ()) for i in range(7)] + [("failed", 60.0, ("reaction_too_fast",))]
    codes = {e.code for e in _c(outcomes).evidence()}
    assert "reaction_too_fast" not in codes
    assert _c(outcomes).overrides() == []


def test_mostly_flagged_answers_are_a_script() -> None:
    outcomes = [("failed", 60.0, ("reaction_too_fast",))] * 3 + [
        ("failed", -300.0, ("moved_before_shown",))
    ] * 2
    ev = {e.code: e for e in _c(outcomes).evidence()}
    assert ev["reaction_too_fast"].llr < -3 and ev["moved_before_shown"].llr < -2
    assert "60 ms" in ev["reaction_too_fast"].detail
    assert "before it was shown" in ev["moved_before_shown"].detail


def test_template_answers_weigh_little_and_are_capped() -> None:
    c = _c([("passed", 300.0 + 41 * i, ("template_movement",)) for i in range(8)])
    ev = {e.code: e.llr for e in c.evidence()}
    assert ev["template_movement"] == pytest.approx(-ChallengePolicy().template_cap)
    assert "challenge_passed" not in ev  # a canned answer passes but says nothing for a person
    assert c.overrides() == []  # the action was done: not unresponsive


def test_failures_out_of_view_are_not_ignored_prompts() -> None:
    lost = ("failed", None, ("face_lost",))
    c = _c([("passed", 500.0, ())] + [lost] * 6)
    assert c.overrides() == []
    ev = {e.code: e.llr for e in c.evidence()}
    assert -6 * 1.0 < ev["challenge_face_lost"] < 0


def test_a_person_who_answered_most_is_warned_not_ended() -> None:
    answered = [("passed", 400.0 + 29 * i, ()) for i in range(8)]
    c = _c(answered + [("failed", None, ())] * 6)
    (o,) = c.overrides()
    assert o.state == "at_risk"
    c = _c(answered[:2] + [("failed", None, ())] * 6)
    (o,) = c.overrides()
    assert o.state == "violation" and "2 of 8 in the session" in o.detail


def test_a_client_that_never_shows_challenges_is_caught_sooner() -> None:
    c = _c([("missed", None, ())] * 4)
    (o,) = c.overrides()
    assert o.state == "violation" and "never shown" in o.detail
    c = _c([("failed", None, ())] * 4)
    assert [o.state for o in c.overrides()] == ["at_risk"]


def test_late_passes_are_coincidences() -> None:
    c = _c([("passed", 3500.0, ())] * 2)
    codes = {e.code: e.llr for e in c.evidence()}
    assert codes["reaction_too_late"] < 0
    assert "challenge_passed" not in codes


def test_unresponsive_streak_and_window() -> None:
    c = _c([("passed", 500.0, ())] + [("missed", None, ())] * 3)
    assert [o.state for o in c.overrides()] == ["at_risk"]
    c = _c([("passed", 500.0, ())] + [("failed", None, ())] * 5)
    (o,) = c.overrides()
    assert o.state == "violation" and o.code == "unresponsive"
    c = _c([("passed", 500.0, ()), ("missed", None, ())] * 3)
    assert c.overrides() == []


def test_state_round_trip() -> None:
    import json

    c = _c(
        [
            ("passed", 500.0, ()),
            ("missed", None, ()),
            ("passed", 3000.0, ()),
            ("failed", 50.0, ("reaction_too_fast",)),
            ("failed", None, ("face_lost",)),
            ("passed", 420.0, ("template_movement",)),
        ]
    )
    back = Challenges.from_state(ChallengePolicy(), json.loads(json.dumps(c.to_state())))
    assert back.evidence() == c.evidence()
    assert back.overrides() == c.overrides()
