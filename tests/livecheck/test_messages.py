"""Wire models: PROTOCOL.md "Client → server" (what is accepted, exactly) and "Server → client"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from livecheck.messages import (
    ARKIT_BLENDSHAPES,
    REQUIRED_CHANNELS,
    BadMessage,
    ChallengeShown,
    Chat,
    ErrorMsg,
    Frame,
    Keepalive,
    SessionAccepted,
    SessionClose,
    SessionOpen,
    SessionRejected,
    SessionResume,
    Speech,
    Tracking,
    VerdictMsg,
    Welcome,
    dump,
    parse_client_message,
)


def tracking(n: int = 3, **over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "tracking",
        "session": "s-1",
        "seq": 1,
        "ts": [10.0 + i / 30 for i in range(n)],
        "channels": {
            "headYaw": [1.5] * n,
            "headPitch": [-2.0] * n,
            "headRoll": [0.0] * n,
            "eyeBlinkLeft": [0.1] * n,
            "eyeBlinkRight": [0.1] * n,
            "jawOpen": [0.0] * n,
        },
    }
    msg.update(over)
    return msg


VALID: list[tuple[dict[str, Any], type]] = [
    ({"type": "session.open", "session": "s-1", "avatar_id": "a1", "operator_id": "o1"}, SessionOpen),
    (
        {
            "type": "session.open",
            "session": "s-1",
            "avatar_id": "a1",
            "operator_id": "o1",
            "stream_id": "x y",
        },
        SessionOpen,
    ),
    ({"type": "session.resume", "session": "s-1", "last_seq": 0}, SessionResume),
    (tracking(), Tracking),
    ({"type": "chat", "session": "s-1", "seq": 2, "t": 11.5, "message_id": "m-9"}, Chat),
    ({"type": "speech", "session": "s-1", "seq": 3, "t0": 12.0, "t1": 13.5}, Speech),
    ({"type": "speech", "session": "s-1", "seq": 3, "t0": 12.0, "t1": 13.5, "reply_to": "m-9"}, Speech),
    ({"type": "frame", "session": "s-1", "seq": 4, "t": 14.0, "pdq": "a" * 64, "quality": 100}, Frame),
    (
        {"type": "challenge.shown", "session": "s-1", "seq": 5, "t": 15.0, "challenge_id": "c1"},
        ChallengeShown,
    ),
    ({"type": "session.close", "session": "s-1", "seq": 6}, SessionClose),
]


def refused(msg: dict[str, Any] | str) -> BadMessage:
    text = msg if isinstance(msg, str) else json.dumps(msg)
    with pytest.raises(BadMessage) as info:
        parse_client_message(text)
    return info.value


class TestClientToServer:
    @pytest.mark.parametrize(
        ("msg", "model"), VALID, ids=[f"{m['type']}-{i}" for i, (m, _) in enumerate(VALID)]
    )
    def test_each_message_parses_to_its_model(self, msg: dict[str, Any], model: type) -> None:
        parsed = parse_client_message(json.dumps(msg))
        assert type(parsed) is model
        # Nothing added, nothing lost (1 == 1.0, so whole-number times compare equal).
        assert parsed.model_dump(exclude_none=True) == msg

    def test_tracking_values_come_through(self) -> None:
        msg = parse_client_message(json.dumps(tracking(face=[True, False, True], source="arkit")))
        assert isinstance(msg, Tracking)
        assert msg.ts == pytest.approx([10.0, 10.0 + 1 / 30, 10.0 + 2 / 30])
        assert msg.channels["headYaw"] == [1.5, 1.5, 1.5]
        assert msg.face == [True, False, True]
        assert msg.source == "arkit"

    def test_face_defaults_to_absent(self) -> None:
        msg = parse_client_message(json.dumps(tracking()))
        assert isinstance(msg, Tracking)
        assert msg.face is None

    def test_json_integers_are_accepted_as_floats(self) -> None:
        # JavaScript's JSON.stringify(1.0) is "1": a client must be able to send whole numbers.
        msg = parse_client_message(json.dumps(tracking(n=2, ts=[1, 2])))
        assert isinstance(msg, Tracking)
        assert msg.ts == [1.0, 2.0]

    def test_unknown_type_is_bad_message(self) -> None:
        err = refused({"type": "tracking.v2", "session": "s-1", "seq": 1})
        assert err.detail == "unknown message type"
        assert err.session == "s-1"
        assert err.seq == 1

    def test_missing_type_is_bad_message(self) -> None:
        assert "type" in refused({"session": "s-1", "seq": 1}).detail

    def test_unknown_field_is_bad_message(self) -> None:
        err = refused({**VALID[4][0], "extra": 1})
        assert err.detail == "chat.extra: unknown field"
        assert (err.session, err.seq) == ("s-1", 2)

    def test_malformed_json_is_bad_message(self) -> None:
        err = refused('{"type": "chat", "session": "s-1",')
        assert err.detail == "malformed JSON"
        assert err.session is None
        assert err.seq is None

    @pytest.mark.parametrize("text", ["[]", "1", '"tracking"', "null"])
    def test_not_an_object_is_bad_message(self, text: str) -> None:
        assert "JSON object" in refused(text).detail

    @pytest.mark.parametrize("session", ["a", "A-z_0.9:x", "x" * 128])
    def test_session_id_alphabet_and_length_accepted(self, session: str) -> None:
        msg = parse_client_message(json.dumps({**VALID[0][0], "session": session}))
        assert msg.session == session

    @pytest.mark.parametrize("session", ["", "x" * 129, "a b", "a/b", "é", "a\n", 7, None])
    def test_malformed_session_id_is_bad_message(self, session: Any) -> None:
        err = refused({**VALID[0][0], "session": session})
        assert err.detail.startswith("session.open.session:")
        assert err.session is None

    @pytest.mark.parametrize("seq", [1.0, True, 0, -1, "1", None])
    def test_seq_is_an_integer_of_at_least_one(self, seq: Any) -> None:
        err = refused(tracking(seq=seq))
        assert err.detail.startswith("tracking.seq:")
        assert err.seq is None

    def test_last_seq_may_be_zero_but_not_negative(self) -> None:
        assert parse_client_message(json.dumps(VALID[2][0])).last_seq == 0  # type: ignore[union-attr]  # SessionResume
        refused({**VALID[2][0], "last_seq": -1})

    @pytest.mark.parametrize("n", [1, 120])
    def test_ts_length_bounds_accepted(self, n: int) -> None:
        msg = parse_client_message(json.dumps(tracking(n=n)))
        assert len(msg.ts) == n  # type: ignore[union-attr]  # Tracking

    def test_ts_empty_or_over_120_is_bad_message(self) -> None:
        assert refused(tracking(n=0)).detail.startswith("tracking.ts:")
        assert refused(tracking(n=121)).detail.startswith("tracking.ts:")

    @pytest.mark.parametrize("ts", [[1.0, 1.0, 2.0], [1.0, 3.0, 2.0]])
    def test_ts_must_increase_strictly(self, ts: list[float]) -> None:
        assert "ts must increase strictly" in refused(tracking(ts=ts)).detail

    @pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400"])
    def test_non_finite_numbers_are_bad_message(self, bad: str) -> None:
        # Python's json writes NaN/Infinity, which are not JSON; both they and overflow are refused.
        text = json.dumps(tracking(n=1, ts=[0.0])).replace("[0.0]", f"[{bad}]", 1)
        assert refused(text).detail == "tracking.ts.0: Input should be a finite number"

    @pytest.mark.parametrize("name", REQUIRED_CHANNELS)
    def test_each_required_channel_is_required(self, name: str) -> None:
        msg = tracking()
        del msg["channels"][name]
        assert refused(msg).detail == f"tracking.channels.{name}: Field required"

    def test_all_52_arkit_blendshapes_are_accepted(self) -> None:
        msg = tracking()
        msg["channels"].update({name: [0.5] * 3 for name in ARKIT_BLENDSHAPES})
        parsed = parse_client_message(json.dumps(msg))
        assert set(parsed.channels) == set(ARKIT_BLENDSHAPES) | set(REQUIRED_CHANNELS)  # type: ignore[union-attr]

    def test_arkit_names_are_the_52_lower_camel_case_ones(self) -> None:
        assert len(ARKIT_BLENDSHAPES) == len(set(ARKIT_BLENDSHAPES)) == 52
        assert all(name[0].islower() and name.isalpha() for name in ARKIT_BLENDSHAPES)
        assert {"mouthSmileLeft", "browInnerUp", "tongueOut", "cheekPuff", "noseSneerRight"} <= set(
            ARKIT_BLENDSHAPES
        )

    @pytest.mark.parametrize("name", ["MouthSmileLeft", "mouth_smile_left", "headYawDeg", "eyeBlink"])
    def test_unknown_channel_is_bad_message(self, name: str) -> None:
        msg = tracking()
        msg["channels"][name] = [0.0] * 3
        assert refused(msg).detail == f"tracking.channels.{name}: unknown field"

    def test_channel_length_must_match_ts(self) -> None:
        msg = tracking()
        msg["channels"]["mouthSmileLeft"] = [0.0] * 2
        assert "channels.mouthSmileLeft has 2 values, ts has 3" in refused(msg).detail

    @pytest.mark.parametrize(
        ("name", "value"), [("jawOpen", 1.01), ("eyeBlinkLeft", -0.01), ("browInnerUp", 2.0)]
    )
    def test_blendshapes_are_levels_from_0_to_1(self, name: str, value: float) -> None:
        msg = tracking()
        msg["channels"][name] = [value] * 3
        assert refused(msg).detail.startswith(f"tracking.channels.{name}.0:")

    @pytest.mark.parametrize("value", [180.5, -181.0])
    def test_head_angles_are_bounded_degrees(self, value: float) -> None:
        msg = tracking()
        msg["channels"]["headRoll"] = [value] * 3
        assert refused(msg).detail.startswith("tracking.channels.headRoll.0:")

    def test_face_must_match_ts_and_be_booleans(self) -> None:
        assert "face has 2 values, ts has 3" in refused(tracking(face=[True, False])).detail
        assert refused(tracking(face=[1, 0, 1])).detail.startswith("tracking.face.0:")

    def test_source_is_at_most_32_chars(self) -> None:
        assert parse_client_message(json.dumps(tracking(source="s" * 32))).source == "s" * 32  # type: ignore[union-attr]
        assert refused(tracking(source="s" * 33)).detail.startswith("tracking.source:")

    @pytest.mark.parametrize("pdq", ["a" * 63, "a" * 65, "g" * 64, ""])
    def test_pdq_is_64_hex_chars(self, pdq: str) -> None:
        assert refused({**VALID[7][0], "pdq": pdq}).detail.startswith("frame.pdq:")

    @pytest.mark.parametrize("quality", [-1, 101, 50.0, True])
    def test_quality_is_an_integer_0_to_100(self, quality: Any) -> None:
        assert refused({**VALID[7][0], "quality": quality}).detail.startswith("frame.quality:")

    def test_speech_interval_must_not_run_backwards(self) -> None:
        assert "t1 must not be before t0" in refused({**VALID[5][0], "t0": 5.0, "t1": 4.0}).detail

    @pytest.mark.parametrize(
        ("msg", "field"),
        [
            ({"type": "session.open", "session": "s", "avatar_id": "a"}, "operator_id"),
            ({"type": "chat", "session": "s", "seq": 1, "t": 1.0}, "message_id"),
            ({"type": "challenge.shown", "session": "s", "seq": 1, "t": 1.0}, "challenge_id"),
            ({"type": "session.close", "session": "s"}, "seq"),
        ],
    )
    def test_required_fields_are_required(self, msg: dict[str, Any], field: str) -> None:
        assert refused(msg).detail.endswith(f".{field}: Field required")

    def test_detail_never_echoes_the_value(self) -> None:
        err = refused({**VALID[4][0], "message_id": "SECRET-VALUE" * 20})
        assert "SECRET" not in err.detail
        assert len(err.detail) <= 200


class TestServerToClient:
    def test_optional_fields_are_left_out_when_unknown(self) -> None:
        assert json.loads(dump(ErrorMsg(code="bad_message", detail="malformed JSON"))) == {
            "type": "error",
            "code": "bad_message",
            "detail": "malformed JSON",
        }
        assert json.loads(dump(SessionAccepted(session="s", policy={}))) == {
            "type": "session.accepted",
            "session": "s",
            "policy": {},
        }

    def test_keepalive_has_only_its_type(self) -> None:
        assert json.loads(dump(Keepalive())) == {"type": "keepalive"}

    def test_welcome_announces_protocol_1(self) -> None:
        body = json.loads(
            dump(
                Welcome(
                    connection_id="c",
                    keepalive_s=20,
                    limits={"max_frame_bytes": 65536, "max_msgs_per_s": 100, "max_sessions": 4},  # type: ignore[arg-type]  # validated into Limits
                )
            )
        )
        assert body["protocol"] == 1
        assert body["limits"] == {"max_frame_bytes": 65536, "max_msgs_per_s": 100.0, "max_sessions": 4}

    def test_rejection_reasons_are_the_contract_ones(self) -> None:
        with pytest.raises(ValidationError):
            SessionRejected(session="s", reason="nope", detail="")  # type: ignore[arg-type]  # the point
        assert SessionRejected(session="s", reason="operator_busy", detail="d").reason == "operator_busy"

    def test_verdict_score_is_between_0_and_1(self) -> None:
        with pytest.raises(ValidationError):
            VerdictMsg(session="s", state="human", score=1.5, action="none", reasons=[], at_seq=0)
