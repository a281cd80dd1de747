"""Capped family sums and the verdict state machine (hysteresis, dwell, hard rules)."""

from livecheck.evidence.base import Evidence, Override
from livecheck.evidence.combine import VerdictMachine, combine, reasons_for, score_of
from livecheck.evidence.policy import EvidencePolicy, FamilyCaps, VerdictPolicy


def test_families_are_capped_and_summed() -> None:
    caps = FamilyCaps(bot={"a": 2.0, "b": 1.0}, human={"a": 1.0, "b": 1.0})
    ev = [Evidence("x", "a", -5.0, ""), Evidence("y", "a", -1.0, ""), Evidence("z", "b", 0.4, "")]
    c = combine(ev, caps, prior=0.5)
    assert c.families == {"a": -2.0, "b": 0.4}
    assert abs(c.total - (0.5 - 2.0 + 0.4)) < 1e-9


def test_an_unknown_family_can_never_decide() -> None:
    c = combine([Evidence("x", "new", -50.0, "")], FamilyCaps(), 0.0)
    assert c.total == -1.0


def test_score_is_a_probability() -> None:
    assert score_of(0.0) == 0.5
    assert 0.99 < score_of(10.0) <= 1.0
    assert 0.0 <= score_of(-1000.0) < 1e-6
    assert score_of(2.0) > score_of(1.0)


def _machine() -> VerdictMachine:
    return VerdictMachine(VerdictPolicy())


def test_pending_until_the_minimum_observation() -> None:
    m = _machine()
    assert m.step(10.0, [], elapsed=10.0, now=10.0) == "pending"
    assert m.step(10.0, [], elapsed=31.0, now=31.0) == "human"


def test_undecided_sessions_become_at_risk_by_the_deadline() -> None:
    m = _machine()
    assert m.step(0.5, [], elapsed=60.0, now=60.0) == "pending"
    assert m.step(0.5, [], elapsed=91.0, now=91.0) == "at_risk"


def test_hysteresis_keeps_human_through_a_dip() -> None:
    p = VerdictPolicy()
    m = _machine()
    m.step(p.human_enter + 1, [], 40.0, 40.0)
    assert m.step((p.human_exit + p.human_enter) / 2, [], 50.0, 50.0) == "human"
    # Below the exit level it must hold for the dwell before at_risk is announced.
    assert m.step(p.human_exit - 0.5, [], 60.0, 60.0) == "human"
    assert m.step(p.human_exit - 0.5, [], 60.0 + p.dwell_s, 60.0 + p.dwell_s) == "at_risk"


def test_violation_needs_its_dwell_and_is_final() -> None:
    p = VerdictPolicy()
    m = _machine()
    low = p.violation_enter - 1
    assert m.step(low, [], 40.0, 40.0) == "pending"
    assert m.step(low, [], 40.0 + p.dwell_s, 40.0 + p.dwell_s) == "violation"
    assert m.step(50.0, [], 100.0, 100.0) == "violation"


def test_a_brief_low_dip_does_not_terminate() -> None:
    p = VerdictPolicy()
    m = _machine()
    m.step(5.0, [], 40.0, 40.0)
    assert m.step(p.violation_enter - 1, [], 45.0, 45.0) == "human"
    assert m.step(5.0, [], 47.0, 47.0) == "human"
    assert m.step(p.violation_enter - 1, [], 50.0, 50.0) == "human"


def test_hard_rules_set_a_floor() -> None:
    m = _machine()
    m.step(5.0, [], 40.0, 40.0)
    assert m.step(5.0, [Override("at_risk", "absent_operator", "")], 50.0, 50.0) == "at_risk"
    assert m.step(5.0, [Override("violation", "likeness_mismatch", "")], 51.0, 51.0) == "violation"
    m2 = _machine()
    assert m2.step(5.0, [Override("violation", "likeness_mismatch", "")], 5.0, 5.0) == "violation"


def test_reasons_follow_the_state() -> None:
    p = EvidencePolicy()
    ev = [Evidence("good", "a", 2.0, "good detail"), Evidence("bad", "b", -3.0, "bad detail")]
    c = combine(ev, p.caps, 0.0)
    assert [r.code for r in reasons_for("human", c, [], p, "")] == ["good"]
    assert [r.code for r in reasons_for("at_risk", c, [], p, "")] == ["bad"]
    o = Override("violation", "likeness_mismatch", "not the registered avatar")
    assert [r.code for r in reasons_for("violation", c, [o], p, "")][:2] == ["likeness_mismatch", "bad"]
    assert reasons_for("pending", c, [], p, "collecting")[0].code == "collecting_evidence"


def test_machine_state_round_trip() -> None:
    m = _machine()
    m.step(5.0, [], 40.0, 40.0)
    m.step(-5.0, [], 45.0, 45.0)
    back = VerdictMachine.from_state(VerdictPolicy(), m.to_state())
    assert (back.state, back.cand, back.cand_since) == (m.state, m.cand, m.cand_since)
