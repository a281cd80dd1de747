"""EvidencePolicy: validated, strict, defaults are a consistent operating point."""

import pytest
from pydantic import ValidationError

from livecheck.evidence import EvidencePolicy


def test_defaults_are_valid_and_ordered() -> None:
    p = EvidencePolicy()
    v = p.verdict
    assert v.violation_enter < v.human_exit <= v.human_enter
    assert set(p.actions) == {"pending", "human", "at_risk", "violation"}
    assert p.actions["violation"] == "terminate"


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ValidationError, match="extra"):
        EvidencePolicy.model_validate({"blink": {"close_delta": 0.3, "typo_threshold": 1}})


def test_threshold_order_is_checked() -> None:
    with pytest.raises(ValidationError, match="violation_enter < human_exit"):
        EvidencePolicy.model_validate({"verdict": {"violation_enter": 1.0, "human_exit": 0.0}})


def test_missing_action_is_an_error() -> None:
    with pytest.raises(ValidationError, match="actions missing"):
        EvidencePolicy.model_validate({"actions": {"human": "none"}})


def test_at_risk_asks_for_a_label_when_the_total_is_low() -> None:
    p = EvidencePolicy()
    assert p.action_for("at_risk", 0.0) == "warn"
    assert p.action_for("at_risk", p.verdict.label_below - 0.1) == "require_label"
    assert p.action_for("violation", -20.0) == "terminate"
    assert p.action_for("human", 5.0) == "none"
