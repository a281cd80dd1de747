"""The live policy file: PROTOCOL.md defaults, the `session.accepted` policy object, refusals by key path."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from livecheck.challenges import ChallengeRules
from livecheck.policy import Policy, default_policy, load_policy, parse_policy
from registry.errors import Unprocessable


def refusal(text: str) -> Unprocessable:
    with pytest.raises(Unprocessable) as info:
        parse_policy(text)
    assert info.value.code == "policy_invalid"
    return info.value


class TestDefaults:
    def test_the_packaged_file_is_the_model_defaults(self) -> None:
        # The TOML file and the pydantic defaults say the same thing, so neither drifts.
        assert default_policy() == Policy()
        assert load_policy(None) == Policy()

    def test_the_packaged_file_sets_every_key(self) -> None:
        text = resources.files("livecheck").joinpath("default_policy.toml").read_text(encoding="utf-8")
        data = tomllib.loads(text)
        # The dump has every key of the model; equality means the file writes each one out.
        assert Policy.model_validate(data).model_dump() == data

    def test_protocol_defaults(self) -> None:
        p = default_policy()
        assert p.limits.max_frame_bytes == 65536
        assert p.challenges.min_reaction_ms == 150
        assert p.challenges.show_within_s == 5
        assert p.challenges.deadline_s == 6
        assert p.sessions.verdict_interval_s == 10
        assert p.sessions.resume_window_s == 60
        assert p.sessions.checkpoint_s == 5
        assert p.sessions.max_sessions_per_avatar == 1
        assert p.sessions.max_sessions_per_operator == 1
        assert p.state_actions.model_dump() == {
            "pending": "none",
            "human": "none",
            "at_risk": "warn",
            "violation": "terminate",
        }
        th = p.challenges.thresholds
        assert (th.turn_head_left.yaw_deg, th.turn_head_right.yaw_deg) == (15, 15)
        assert (th.nod.pitch_deg, th.nod.return_deg, th.nod.within_s) == (8, 3, 2)
        assert (th.blink_twice.closed, th.blink_twice.open, th.blink_twice.within_s) == (0.6, 0.3, 2.5)
        assert (th.open_mouth.jaw, th.open_mouth.hold_ms) == (0.6, 300)
        assert sorted(p.challenges.enabled) == sorted(
            ["blink_twice", "turn_head_left", "turn_head_right", "nod", "open_mouth"]
        )

    def test_action_per_state(self) -> None:
        p = default_policy()
        assert [p.action_for(s) for s in ("pending", "human", "at_risk", "violation")] == [
            "none",
            "none",
            "warn",
            "terminate",
        ]

    def test_challenge_rules_carry_the_thresholds(self) -> None:
        p = parse_policy(
            "[challenges]\nmin_reaction_ms = 120\ndeadline_s = 7\n"
            "[challenges.thresholds.nod]\npitch_deg = 10\n"
            "[challenges.thresholds.turn_head_right]\nyaw_deg = 20\n"
        )
        rules = p.challenge_rules()
        assert isinstance(rules, ChallengeRules)
        assert rules.nod.pitch_deg == 10
        assert rules.turn_head_right.yaw_deg == 20
        assert rules.turn_head_left.yaw_deg == 15
        assert rules.min_reaction_ms == 120
        assert rules.deadline_s == 7


class TestToWire:
    def test_session_accepted_policy_object(self) -> None:
        wire = default_policy().to_wire()
        # PROTOCOL.md's example values, as it writes them.
        assert wire["actions"]["turn_head_left"] == {"yaw_deg": 15}
        assert wire["actions"]["nod"] == {"pitch_deg": 8, "return_deg": 3, "within_s": 2}
        assert wire["actions"]["blink_twice"] == {"closed": 0.6, "open": 0.3, "within_s": 2.5}
        assert wire["actions"]["open_mouth"] == {"jaw": 0.6, "hold_ms": 300}
        assert wire["min_reaction_ms"] == 150
        assert wire["show_within_s"] == 5
        assert wire["deadline_s"] == 6
        assert wire["verdict_interval_s"] == 10
        assert wire["resume_window_s"] == 60
        assert wire["max_sessions_per_avatar"] == 1
        assert wire["max_sessions_per_operator"] == 1
        assert wire["challenge_actions"] == list(default_policy().challenges.enabled)
        assert isinstance(wire["min_reaction_ms"], int)

    def test_only_enabled_actions_are_listed(self) -> None:
        wire = parse_policy('[challenges]\nenabled = ["nod", "open_mouth"]\n').to_wire()
        assert wire["challenge_actions"] == ["nod", "open_mouth"]
        assert set(wire["actions"]) == {"nod", "open_mouth"}

    def test_fractions_stay_fractions(self) -> None:
        wire = parse_policy("[challenges]\ndeadline_s = 6.5\n").to_wire()
        assert wire["deadline_s"] == 6.5


class TestRefusals:
    def test_message_names_the_key_path(self) -> None:
        err = refusal("[challenges]\nmean_interval_s = 0\n")
        assert "challenges.mean_interval_s: Input should be greater than 0" in err.message
        assert {"loc": "challenges.mean_interval_s", "msg": "Input should be greater than 0"} in err.details

    def test_unknown_key_is_refused(self) -> None:
        err = refusal("[limits]\nmax_frame_byte = 1000\n")
        assert "limits.max_frame_byte: Extra inputs are not permitted" in err.message

    def test_unknown_table_is_refused(self) -> None:
        assert "surprise: Extra inputs are not permitted" in refusal("[surprise]\nx = 1\n").message

    def test_evidence_table_is_validated_by_its_model(self) -> None:
        # The [evidence] table is livecheck/evidence/policy.py's EvidencePolicy: closed, key paths named.
        assert "evidence.x: Extra inputs are not permitted" in refusal("[evidence]\nx = 1\n").message
        err = refusal("[evidence.verdict]\nmax_pending_s = -1\n")
        assert "evidence.verdict.max_pending_s: Input should be greater than 0" in err.message

    def test_wrong_type_is_refused(self) -> None:
        assert (
            "limits.max_sessions: Input should be a valid integer"
            in refusal('[limits]\nmax_sessions = "10"\n').message
        )
        assert (
            "limits.max_sessions: Input should be a valid integer"
            in refusal("[limits]\nmax_sessions = true\n").message
        )
        assert (
            "limits.max_sessions: Input should be a valid integer"
            in refusal("[limits]\nmax_sessions = 2.5\n").message
        )

    def test_unknown_action_is_refused(self) -> None:
        assert "challenges.enabled.0:" in refusal('[challenges]\nenabled = ["wink"]\n').message

    def test_no_action_enabled_is_refused(self) -> None:
        # An empty list would quietly switch challenges off: fail closed.
        assert "challenges.enabled:" in refusal("[challenges]\nenabled = []\n").message

    def test_repeated_action_is_refused(self) -> None:
        assert "enabled lists an action twice" in refusal('[challenges]\nenabled = ["nod", "nod"]\n').message

    def test_challenges_closer_than_show_plus_deadline_are_refused(self) -> None:
        err = refusal("[challenges]\nmean_interval_s = 20\njitter_s = 10\n")
        assert (
            "challenges: mean_interval_s - jitter_s (10) must be at least show_within_s + deadline_s (11)"
            in (err.message)
        )

    def test_nod_return_must_be_below_pitch(self) -> None:
        assert (
            "challenges.thresholds.nod: return_deg (9.0) must be below pitch_deg (8.0)"
            in refusal("[challenges.thresholds.nod]\nreturn_deg = 9\n").message
        )

    def test_blink_open_must_be_below_closed(self) -> None:
        assert (
            "open (0.7) must be below closed (0.6)"
            in refusal("[challenges.thresholds.blink_twice]\nopen = 0.7\n").message
        )

    def test_bad_state_action_is_refused(self) -> None:
        assert "state_actions.violation:" in refusal('[state_actions]\nviolation = "ban"\n').message

    @pytest.mark.parametrize(
        "text",
        [
            "[limits]\nmax_frame_bytes = 100\n",
            "[limits]\nkeepalive_s = 0\n",
            "[limits]\nmax_msgs_per_s = -1\n",
            "[sessions]\ncheckpoint_s = 0\n",
            "[sessions]\nmax_sessions_per_avatar = 0\n",
            "[challenges.thresholds.open_mouth]\njaw = 1.5\n",
            "[challenges]\nmean_interval_s = inf\n",
        ],
    )
    def test_limits_have_finite_sane_values(self, text: str) -> None:
        refusal(text)

    def test_every_problem_is_listed(self) -> None:
        err = refusal("[limits]\nkeepalive_s = 0\nmax_sessions = 0\n")
        assert {d["loc"] for d in err.details} == {"limits.keepalive_s", "limits.max_sessions"}

    def test_not_toml_is_refused(self) -> None:
        err = refusal("[limits\n")
        assert "not valid TOML" in err.message


class TestLoading:
    def test_load_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.toml"
        path.write_text("[limits]\nmax_sessions = 7\n", encoding="utf-8")
        p = load_policy(path)
        assert p.limits.max_sessions == 7
        assert p.challenges == Policy().challenges

    def test_a_bad_file_is_named(self, tmp_path: Path) -> None:
        path = tmp_path / "mine.toml"
        path.write_text("[limits]\nmax_sessions = 0\n", encoding="utf-8")
        with pytest.raises(Unprocessable, match=r"mine\.toml is invalid: limits\.max_sessions"):
            load_policy(path)

    def test_a_missing_file_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(Unprocessable, match="cannot read policy") as info:
            load_policy(tmp_path / "absent.toml")
        assert info.value.code == "policy_invalid"

    def test_an_empty_file_is_the_defaults(self) -> None:
        assert parse_policy("") == Policy()
