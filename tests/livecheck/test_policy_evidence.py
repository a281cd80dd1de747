"""The live policy's `[evidence]` table: the evidence engine's operating point, validated with key paths,
one action table, and the engine the server builds from it."""

from __future__ import annotations

import pytest

from livecheck.config import LiveSettings, choose_engine
from livecheck.evidence import EvidenceEngine, EvidencePolicy
from livecheck.policy import Policy, default_policy, parse_policy
from registry.errors import Unprocessable


def refusal(text: str) -> Unprocessable:
    with pytest.raises(Unprocessable) as info:
        parse_policy(text)
    assert info.value.code == "policy_invalid"
    return info.value


def test_the_packaged_file_carries_the_published_operating_point() -> None:
    assert default_policy().evidence == EvidencePolicy()


def test_the_table_changes_the_engine_policy() -> None:
    p = parse_policy("[evidence.verdict]\nviolation_enter = -7\n[evidence.challenges]\nmissed_llr = -3\n")
    assert p.evidence.verdict.violation_enter == -7
    assert p.evidence.challenges.missed_llr == -3
    assert p.evidence.blink == EvidencePolicy().blink  # everything else keeps its default


def test_errors_name_the_key_path() -> None:
    err = refusal("[evidence.blink]\nclose_delta = 2\n")
    assert "evidence.blink.close_delta: Input should be less than 1" in err.message
    assert {"loc": "evidence.blink.close_delta", "msg": "Input should be less than 1"} in err.details
    err = refusal("[evidence.verdict]\nviolation_enter = 1\nhuman_exit = 0\n")
    assert "evidence.verdict: need violation_enter < human_exit <= human_enter" in err.message
    assert (
        "evidence.caps.bot: Input should be a valid dictionary"
        in refusal("[evidence.caps]\nbot = 3\n").message
    )


def test_state_actions_are_the_one_action_table() -> None:
    p = parse_policy('[state_actions]\nat_risk = "require_label"\n')
    assert p.evidence.actions["at_risk"] == "require_label"
    err = refusal('[state_actions]\nat_risk = "require_label"\n[evidence.actions]\nat_risk = "warn"\n')
    assert "evidence.actions" in err.message and "must equal state_actions" in err.message


def test_a_policy_built_in_code_follows_the_same_rule() -> None:
    assert Policy(state_actions={"violation": "warn"}).evidence.actions["violation"] == "warn"  # type: ignore[arg-type]  # pydantic coerces the dict


def test_the_server_builds_its_engines_from_the_table() -> None:
    p = parse_policy("[evidence]\nmax_reasons = 2\n[evidence.verdict]\nmin_observe_s = 45\n")
    choice = choose_engine(LiveSettings(engine="evidence"), p, seed=1)
    engine = choice.new([])
    assert choice.name == "evidence" and isinstance(engine, EvidenceEngine)
    assert engine.policy == p.evidence
    restored = choice.restore(engine.snapshot(), [], 0.0)
    assert isinstance(restored, EvidenceEngine) and restored.policy.verdict.min_observe_s == 45
