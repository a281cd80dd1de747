"""Challenge statistics: passes, misses, too fast, too regular, too late, unresponsive."""

from livecheck.engine import ChallengeOutcome
from livecheck.evidence.challenges import Challenges
from livecheck.evidence.policy import ChallengePolicy


def _c(outcomes: list[tuple[str, float | None, tuple[str, ...]]]) -> Challenges:
    c = Challenges(ChallengePolicy())
    for i, (res, rt, flags) in enumerate(outcomes):
        c.on_outcome(ChallengeOutcome(f"c{i}", "nod", res, rt, flags))  # type: ignore[arg-type]  # test literal
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
    c = _c([("passed", 40.0, ("reaction_too_fast",))] * 2)
    codes = {e.code: e.llr for e in c.evidence()}
    assert codes["reaction_too_fast"] < 0
    assert "challenge_passed" not in codes


def test_machine_regular_reactions() -> None:
    c = _c([("passed", 250.0 + d, ()) for d in (0.0, 3.0, -2.0, 1.0)])
    assert {e.code for e in c.evidence()} >= {"reaction_too_regular"}


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

    c = _c([("passed", 500.0, ()), ("missed", None, ()), ("passed", 3000.0, ())])
    back = Challenges.from_state(ChallengePolicy(), json.loads(json.dumps(c.to_state())))
    assert back.evidence() == c.evidence()
