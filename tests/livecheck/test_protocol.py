"""The live protocol state machine, section by section of PROTOCOL.md, with plain calls and explicit `now`."""

from __future__ import annotations

import gc
import itertools
import json
import random
import tracemalloc
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from livecheck.engine import Assessment, ChallengeOutcome, Reason, VerdictState
from livecheck.policy import Policy
from livecheck.protocol import (
    ChallengeIssued,
    ChallengeResolved,
    CheckpointDue,
    CloseConnection,
    Event,
    LiveConnection,
    OpenRequested,
    ResumeRequested,
    SessionDetached,
    SessionEnded,
    SessionRejected,
    SessionState,
    SessionStored,
    VerdictChanged,
    expire_session,
)


def policy(**tables: dict[str, Any]) -> Policy:
    """The default policy with challenges far apart (so they stay out of the way) plus `tables`."""
    data: dict[str, Any] = {"challenges": {"mean_interval_s": 100_000.0, "jitter_s": 0.0}}
    for name, table in tables.items():
        data[name] = {**data.get(name, {}), **table}
    return Policy.model_validate(data)


QUIET = policy()
CHALLENGING = policy(challenges={"mean_interval_s": 20.0, "jitter_s": 5.0})
NEUTRAL = {
    "headYaw": 0.0,
    "headPitch": 0.0,
    "headRoll": 0.0,
    "eyeBlinkLeft": 0.1,
    "eyeBlinkRight": 0.1,
    "jawOpen": 0.05,
}


class ScriptedEngine:
    """An Engine whose state the test sets; it records what the protocol gives it."""

    def __init__(self, state: VerdictState = "pending", score: float = 0.5) -> None:
        self.state: VerdictState = state
        self.score = score
        # The engine's own action, when it names one (None: the policy decides).
        self.action: str | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.lost = 0
        self.outcomes: list[ChallengeOutcome] = []

    def on_tracking(
        self, ts: Sequence[float], channels: Mapping[str, Sequence[float]], face: Sequence[bool], recv: float
    ) -> None:
        self.calls.append(("tracking", list(ts), dict(channels), list(face), recv))

    def on_chat(self, t: float, message_id: str, recv: float) -> None:
        self.calls.append(("chat", t, message_id, recv))

    def on_speech(self, t0: float, t1: float, reply_to: str | None, recv: float) -> None:
        self.calls.append(("speech", t0, t1, reply_to, recv))

    def on_frame(self, t: float, pdq: bytes, quality: int, recv: float) -> None:
        self.calls.append(("frame", t, pdq, quality, recv))

    def on_challenge(self, outcome: ChallengeOutcome) -> None:
        self.outcomes.append(outcome)

    def on_lost(self, count: int) -> None:
        self.lost += count

    def assess(self, now: float) -> Assessment:
        return Assessment(
            self.state, self.score, [Reason("scripted", f"the test says {self.state}")], action=self.action
        )

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "score": self.score, "lost": self.lost}


def restore_scripted(data: Mapping[str, Any], references: Sequence[bytes], shift_s: float) -> ScriptedEngine:
    engine = ScriptedEngine(data["state"], data["score"])
    engine.lost = data["lost"]
    return engine


class Client:
    """Drives one LiveConnection the way a client and the shell would."""

    def __init__(self, pol: Policy = QUIET, now: float = 0.0, seed: int = 7, **kw: Any) -> None:
        self.conn = LiveConnection(pol, connection_id="conn-1", rng=random.Random(seed), now=now, **kw)
        self.seqs: dict[str, int] = {}
        self.clock: dict[str, float] = {}  # next sample time per session (sender clock)
        self.welcome = self.out()

    def out(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.conn.messages_to_send()]

    def events(self) -> list[Event]:
        return self.conn.events_received()

    def raw(self, text: str, now: float) -> list[dict[str, Any]]:
        self.conn.receive_text(text, now)
        return self.out()

    def send(self, now: float, **msg: Any) -> list[dict[str, Any]]:
        return self.raw(json.dumps(msg), now)

    def seq(self, sid: str) -> int:
        self.seqs[sid] = self.seqs.get(sid, 0) + 1
        return self.seqs[sid]

    def open(
        self, sid: str, now: float = 0.0, engine: Any = None, admit: bool = True
    ) -> list[dict[str, Any]]:
        self.send(now, type="session.open", session=sid, avatar_id="av-1", operator_id="op-1")
        if admit:
            assert self.conn.admit(sid, now, engine=engine)
        return self.out()

    def track(
        self,
        sid: str,
        now: float,
        n: int = 10,
        seq: int | None = None,
        face: list[bool] | None = None,
        **values: float,
    ) -> list[dict[str, Any]]:
        t0 = self.clock.get(sid, 1000.0)
        ts = [t0 + i / 10 for i in range(n)]
        self.clock[sid] = t0 + n / 10
        channels = {name: [values.get(name, v)] * n for name, v in NEUTRAL.items()}
        msg: dict[str, Any] = {
            "type": "tracking",
            "session": sid,
            "seq": self.seq(sid) if seq is None else seq,
            "ts": ts,
            "channels": channels,
        }
        if face is not None:
            msg["face"] = face
        return self.send(now, **msg)

    def msg(
        self, sid: str, kind: str, now: float, seq: int | None = None, **fields: Any
    ) -> list[dict[str, Any]]:
        return self.send(now, type=kind, session=sid, seq=self.seq(sid) if seq is None else seq, **fields)


def types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in messages]


def of(kind: type, events: list[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


class TestTransport:
    def test_welcome_is_the_first_message(self) -> None:
        c = Client(policy(limits={"max_sessions": 3, "max_msgs_per_s": 50.0, "keepalive_s": 15.0}))
        assert c.welcome == [
            {
                "type": "welcome",
                "protocol": 1,
                "connection_id": "conn-1",
                "keepalive_s": 15.0,
                "limits": {"max_frame_bytes": 65536, "max_msgs_per_s": 50.0, "max_sessions": 3},
            }
        ]

    def _frame_of(self, size: int) -> str:
        text = json.dumps({"type": "session.open", "session": "s", "avatar_id": "a", "operator_id": "o"})
        return text[:-1] + " " * (size - len(text)) + "}"

    def test_message_size_limit_is_inclusive(self) -> None:
        c = Client(policy(limits={"max_frame_bytes": 1024}))
        c.raw(self._frame_of(1024), 0.0)
        assert of(OpenRequested, c.events())
        c.raw(self._frame_of(1025).replace('"s"', '"t"'), 0.1)
        assert c.events() == [CloseConnection(1009, "message over 1024 bytes")]
        assert c.conn.closed

    def test_size_is_counted_in_utf8_bytes(self) -> None:
        c = Client(policy(limits={"max_frame_bytes": 1024}))
        text = json.dumps(
            {"type": "chat", "session": "s", "seq": 1, "t": 1, "message_id": "é" * 600}, ensure_ascii=False
        )
        assert len(text) < 1024 < len(text.encode())
        c.raw(text, 0.0)
        assert of(CloseConnection, c.events()) == [CloseConnection(1009, "message over 1024 bytes")]

    def test_nothing_is_received_after_a_close(self) -> None:
        c = Client(policy(limits={"max_frame_bytes": 1024}))
        c.raw(self._frame_of(2000), 0.0)
        c.events()
        assert c.send(0.1, type="session.open", session="s", avatar_id="a", operator_id="o") == []
        assert c.events() == []
        assert c.conn.next_deadline() is None

    def test_over_the_rate_a_message_is_dropped_and_answered_once_a_second(self) -> None:
        c = Client(policy(limits={"max_msgs_per_s": 5.0}))
        for i in range(5):
            assert types(c.msg("x", "session.close", 0.0, seq=i + 1)) == [
                "error"
            ]  # unknown_session: processed
        out = c.send(0.0, type="session.open", session="s", avatar_id="a", operator_id="o")
        assert out == [
            {"type": "error", "code": "rate_limited", "detail": "over 5 messages/s: message dropped"}
        ]
        assert c.events() == []  # dropped unprocessed
        assert (
            c.send(0.1, type="session.open", session="s", avatar_id="a", operator_id="o") == []
        )  # no 2nd error
        # 1 s later the bucket has refilled.
        c.send(1.1, type="session.open", session="s", avatar_id="a", operator_id="o")
        assert of(OpenRequested, c.events())

    def test_rate_limited_again_after_a_second(self) -> None:
        c = Client(policy(limits={"max_msgs_per_s": 1.0}))
        c.msg("x", "session.close", 0.0)
        assert c.msg("x", "session.close", 0.0)[0]["code"] == "rate_limited"
        assert c.msg("x", "session.close", 0.5) == []
        c.msg("x", "session.close", 1.0)  # a refilled token: processed (unknown_session)
        assert c.msg("x", "session.close", 1.0)[0]["code"] == "rate_limited"

    def test_drops_in_5_consecutive_seconds_close_with_1008(self) -> None:
        c = Client(policy(limits={"max_msgs_per_s": 2.0}))
        for second in range(5):
            for k in range(4):
                c.msg("x", "session.close", second + 0.1 + k * 0.01)
            closes = of(CloseConnection, c.events())
            if second < 4:
                assert closes == []
        assert closes == [CloseConnection(1008, "messages over the rate limit in 5 consecutive seconds")]
        assert c.conn.closed

    def test_a_clean_second_restarts_the_count(self) -> None:
        c = Client(policy(limits={"max_msgs_per_s": 2.0}))
        for second in (0, 1, 2, 3, 5, 6, 7, 8):
            for k in range(4):
                c.msg("x", "session.close", second + 0.1 + k * 0.01)
        assert of(CloseConnection, c.events()) == []

    def test_invalid_messages_count_too(self) -> None:
        c = Client(policy(limits={"max_msgs_per_s": 2.0}))
        assert c.raw("{", 0.0)[0]["code"] == "bad_message"
        assert c.raw("{", 0.0)[0]["code"] == "bad_message"
        assert c.raw("{", 0.0)[0]["code"] == "rate_limited"

    def test_keepalive_after_keepalive_s_of_silence(self) -> None:
        c = Client(policy(limits={"keepalive_s": 20.0}))
        assert c.conn.next_deadline() == 20.0
        c.conn.tick(19.9)
        assert c.out() == []
        c.conn.tick(20.0)
        assert c.out() == [{"type": "keepalive"}]
        assert c.conn.next_deadline() == 40.0

    def test_any_message_sent_postpones_the_keepalive(self) -> None:
        c = Client(policy(limits={"keepalive_s": 20.0}))
        c.raw("{", 12.0)  # answered with an error at 12
        c.conn.tick(20.0)
        assert c.out() == []
        assert c.conn.next_deadline() == 32.0

    def test_sessions_per_connection(self) -> None:
        c = Client(policy(limits={"max_sessions": 2}))
        c.open("s1")
        c.open("s2", admit=False)  # pending ones count
        out = c.send(1.0, type="session.open", session="s3", avatar_id="a", operator_id="o")
        assert out == [
            {
                "type": "session.rejected",
                "session": "s3",
                "reason": "too_many_sessions",
                "detail": "this connection already carries 2 sessions",
            }
        ]
        assert of(SessionRejected, c.events()) == [
            SessionRejected("s3", "too_many_sessions", "this connection already carries 2 sessions")
        ]

    def test_one_connection_carries_many_sessions(self) -> None:
        c = Client()
        a, b = ScriptedEngine(), ScriptedEngine()
        c.open("s1", engine=a)
        c.open("s2", engine=b)
        c.track("s1", 1.0)
        c.track("s2", 1.0)
        c.track("s1", 2.0)
        assert (len(a.calls), len(b.calls)) == (2, 1)
        assert c.conn.session_state("s1") is SessionState.ACTIVE


class TestTime:
    def test_seq_starts_at_1_and_steps_by_1(self) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        assert c.track("s", 1.0, seq=1) == []
        assert c.track("s", 2.0, seq=2) == []
        assert len(e.calls) == 2

    @pytest.mark.parametrize("again", [2, 1])
    def test_a_repeat_or_step_back_is_bad_seq_and_the_session_goes_on(self, again: int) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        c.track("s", 1.0, seq=1)
        c.track("s", 2.0, seq=2)
        out = c.msg("s", "chat", 3.0, seq=again, t=1.0, message_id="m")
        assert out == [
            {
                "type": "error",
                "code": "bad_seq",
                "detail": f"seq {again} is not after 2",
                "session": "s",
                "ref_seq": again,
            }
        ]
        assert c.track("s", 4.0, seq=3) == []
        assert [call[0] for call in e.calls] == ["tracking", "tracking", "tracking"]

    def test_a_gap_is_accepted_and_counted_as_lost(self) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        c.track("s", 1.0, seq=1)
        out = c.track("s", 2.0, seq=5)
        assert out == [
            {
                "type": "error",
                "code": "seq_gap",
                "detail": "missing seq 2–4 (3 lost)",
                "session": "s",
                "ref_seq": 5,
            }
        ]
        assert e.lost == 3
        assert len(e.calls) == 2  # the message itself is processed
        assert c.track("s", 3.0, seq=6) == []

    def test_a_gap_of_one(self) -> None:
        c = Client()
        c.open("s", engine=ScriptedEngine())
        c.track("s", 1.0, seq=1)
        assert c.track("s", 2.0, seq=3)[0]["detail"] == "missing seq 2 (1 lost)"

    def test_a_gap_at_the_start(self) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        assert c.track("s", 1.0, seq=3)[0]["detail"] == "missing seq 1–2 (2 lost)"
        assert e.lost == 2

    def test_bad_message_uses_up_no_seq(self) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        out = c.msg("s", "chat", 1.0, seq=1, t=1.0, message_id="m", extra=True)
        assert out == [
            {
                "type": "error",
                "code": "bad_message",
                "detail": "chat.extra: unknown field",
                "session": "s",
                "ref_seq": 1,
            }
        ]
        assert c.msg("s", "chat", 1.1, seq=1, t=1.0, message_id="m") == []
        assert e.calls == [("chat", 1.0, "m", 1.1)]

    def test_ts_must_increase_across_messages(self) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        c.track("s", 1.0, seq=1)  # ts 1000.0 … 1000.9
        c.clock["s"] = 1000.9  # the next message starts at the previous one's last ts
        out = c.track("s", 2.0, seq=2)
        assert out == [
            {
                "type": "error",
                "code": "bad_message",
                "detail": "ts must increase across the messages of a session",
                "session": "s",
                "ref_seq": 2,
            }
        ]
        c.clock["s"] = 1000.95
        assert c.track("s", 3.0, seq=2) == []  # the refused seq is free
        assert len(e.calls) == 2

    def test_seq_is_per_session(self) -> None:
        c = Client()
        c.open("a", engine=ScriptedEngine())
        c.open("b", engine=ScriptedEngine())
        assert c.track("a", 1.0, seq=1) == []
        assert c.track("b", 1.0, seq=1) == []


class TestClientToServer:
    def test_session_open_asks_the_shell(self) -> None:
        c = Client()
        c.send(0.5, type="session.open", session="s", avatar_id="av", operator_id="op", stream_id="st")
        c.send(0.6, type="session.open", session="t", avatar_id="av", operator_id="op")
        assert c.events() == [OpenRequested("s", "av", "op", "st"), OpenRequested("t", "av", "op", None)]
        assert c.conn.session_state("s") is SessionState.AWAITING_ADMISSION

    def test_a_message_for_an_unknown_session(self) -> None:
        c = Client()
        assert c.msg("nope", "chat", 1.0, seq=4, t=1.0, message_id="m") == [
            {
                "type": "error",
                "code": "unknown_session",
                "detail": "no such session on this connection",
                "session": "nope",
                "ref_seq": 4,
            }
        ]

    def test_unknown_type_is_bad_message_with_what_is_known(self) -> None:
        c = Client()
        assert c.send(1.0, type="gesture", session="s", seq=3) == [
            {
                "type": "error",
                "code": "bad_message",
                "detail": "unknown message type",
                "session": "s",
                "ref_seq": 3,
            }
        ]

    def test_malformed_json_is_bad_message(self) -> None:
        assert Client().raw("not json", 1.0) == [
            {"type": "error", "code": "bad_message", "detail": "malformed JSON"}
        ]

    def test_evidence_reaches_the_engine(self) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        c.track("s", 1.0, n=2)
        c.track("s", 2.0, n=2, face=[True, False])
        c.msg("s", "chat", 3.0, t=1001.0, message_id="m1")
        c.msg("s", "speech", 4.0, t0=1001.5, t1=1003.0, reply_to="m1")
        c.msg("s", "speech", 4.5, t0=1003.5, t1=1004.0)
        c.msg("s", "frame", 5.0, t=1004.0, pdq="0f" * 32, quality=90)
        assert e.calls[0] == (
            "tracking",
            [1000.0, 1000.1],
            {k: [v] * 2 for k, v in NEUTRAL.items()},
            [True, True],
            1.0,
        )
        assert e.calls[1][3] == [True, False]
        assert e.calls[2:] == [
            ("chat", 1001.0, "m1", 3.0),
            ("speech", 1001.5, 1003.0, "m1", 4.0),
            ("speech", 1003.5, 1004.0, None, 4.5),
            ("frame", 1004.0, bytes([0x0F] * 32), 90, 5.0),
        ]

    def test_session_close_ends_with_a_summary(self) -> None:
        c = Client()
        c.open("s", now=1.0, engine=ScriptedEngine("human"))
        c.track("s", 2.0)
        c.out()
        out = c.msg("s", "session.close", 31.0)
        assert out[-1] == {
            "type": "session.summary",
            "session": "s",
            "duration_s": 30.0,
            "final_state": "human",
            "worst_state": "pending",
            "challenges": {"issued": 0, "passed": 0, "failed": 0, "missed": 0, "open": 0},
            "reasons": [{"code": "scripted", "detail": "the test says human"}],
        }
        ended = of(SessionEnded, c.events())
        assert len(ended) == 1
        assert (ended[0].reason, ended[0].summary["duration_s"], ended[0].at) == ("closed", 30.0, 31.0)
        assert ended[0].snapshot["last_seq"] == 2  # checkpointed on close too
        assert ended[0].summary == {k: v for k, v in out[-1].items() if k != "type"}
        assert "session.terminate" not in types(out)
        assert c.msg("s", "chat", 32.0, t=1.0, message_id="m")[0]["code"] == "unknown_session"


class TestSessionRejected:
    def test_an_id_open_here_is_session_exists(self) -> None:
        c = Client()
        c.open("s")
        c.out()
        out = c.send(1.0, type="session.open", session="s", avatar_id="a", operator_id="o")
        assert out == [
            {
                "type": "session.rejected",
                "session": "s",
                "reason": "session_exists",
                "detail": "a session with this id is open or pending here",
            }
        ]
        assert c.conn.session_state("s") is SessionState.ACTIVE  # the open one goes on

    def test_an_id_pending_here_is_session_exists(self) -> None:
        c = Client()
        c.open("s", admit=False)
        assert c.send(1.0, type="session.resume", session="s", last_seq=0)[0]["reason"] == "session_exists"

    def test_session_exists_comes_before_too_many_sessions(self) -> None:
        c = Client(policy(limits={"max_sessions": 1}))
        c.open("s")
        c.out()
        assert c.send(1.0, type="session.open", session="s", avatar_id="a", operator_id="o")[0]["reason"] == (
            "session_exists"
        )
        assert c.send(1.0, type="session.open", session="t", avatar_id="a", operator_id="o")[0]["reason"] == (
            "too_many_sessions"
        )

    def test_the_shell_rejects_with_its_reason(self) -> None:
        c = Client()
        c.open("s", admit=False)
        c.track("s", 0.5)  # waits for admission
        c.events()
        assert c.conn.reject("s", "avatar_suspended", "the avatar is suspended", 1.0)
        assert c.out() == [
            {
                "type": "session.rejected",
                "session": "s",
                "reason": "avatar_suspended",
                "detail": "the avatar is suspended",
            }
        ]
        assert c.events() == [SessionRejected("s", "avatar_suspended", "the avatar is suspended")]
        assert c.track("s", 2.0)[0]["code"] == "unknown_session"  # the waiting message went with it

    def test_only_contract_reasons(self) -> None:
        c = Client()
        c.open("s", admit=False)
        with pytest.raises(ValidationError):
            c.conn.reject("s", "because", "", 1.0)

    def test_an_active_session_cannot_be_rejected(self) -> None:
        c = Client()
        c.open("s")
        assert not c.conn.reject("s", "avatar_busy", "", 1.0)
        assert not c.conn.reject("ghost", "avatar_busy", "", 1.0)


class TestAdmission:
    def test_messages_wait_for_admission(self) -> None:
        c = Client()
        e = ScriptedEngine("human")
        c.open("s", now=0.0, admit=False)
        assert c.track("s", 0.1) == []
        assert c.msg("s", "chat", 0.2, t=1.0, message_id="m") == []
        assert e.calls == []
        assert c.conn.admit("s", 0.3, engine=e)
        out = c.out()
        assert types(out) == ["session.accepted", "verdict", "verdict"]
        assert out[1]["state"] == "pending" and out[1]["at_seq"] == 0
        assert out[2]["state"] == "human" and out[2]["at_seq"] == 1  # judged after the first one
        assert [call[0] for call in e.calls] == ["tracking", "chat"]

    def test_the_wait_is_bounded(self) -> None:
        c = Client(policy(limits={"max_pending_messages": 2}))
        e = ScriptedEngine()
        c.open("s", admit=False)
        for now in (0.1, 0.2, 0.3):
            c.track("s", now)
        c.conn.admit("s", 0.5, engine=e)
        c.out()
        assert len(e.calls) == 2
        # The dropped one (seq 3) shows up as a gap.
        assert c.track("s", 1.0)[0] == {
            "type": "error",
            "code": "seq_gap",
            "detail": "missing seq 3 (1 lost)",
            "session": "s",
            "ref_seq": 4,
        }

    def test_admission_of_a_session_no_longer_waiting(self) -> None:
        c = Client()
        c.open("s", admit=False)
        c.conn.detach(1.0)
        assert not c.conn.admit("s", 2.0)
        assert not Client().conn.admit("ghost", 2.0)

    def test_references_are_pdq_hashes(self) -> None:
        c = Client()
        c.open("s", admit=False)
        with pytest.raises(ValueError, match="expected 32"):
            c.conn.admit("s", 1.0, [b"\x00" * 31])

    def test_session_stored_event(self) -> None:
        c = Client()
        c.send(0.0, type="session.open", session="s", avatar_id="av", operator_id="op", stream_id="st")
        c.conn.admit("s", 0.5, [b"\x01" * 32])
        stored = of(SessionStored, c.events())
        assert stored == [SessionStored("s", "av", "op", "st", False, 0.5)]


class TestVerdicts:
    def test_a_first_pending_verdict_follows_session_accepted(self) -> None:
        c = Client()
        out = c.open("s", now=2.0, engine=ScriptedEngine("human", 0.9))
        assert out[0]["type"] == "session.accepted"
        assert out[0]["policy"] == QUIET.to_wire()
        assert "resume_from_seq" not in out[0]
        assert out[1] == {
            "type": "verdict",
            "session": "s",
            "state": "pending",
            "score": 0.9,
            "action": "none",
            "reasons": [{"code": "scripted", "detail": "the test says human"}],
            "at_seq": 0,
        }
        assert of(VerdictChanged, c.events())[0].state == "pending"

    def test_a_verdict_on_every_change_of_state(self) -> None:
        c = Client()
        e = ScriptedEngine()
        c.open("s", engine=e)
        assert c.track("s", 1.0) == []  # still pending: nothing to say
        e.state = "at_risk"
        out = c.track("s", 2.0)
        assert [(m["state"], m["action"], m["at_seq"]) for m in out] == [("at_risk", "warn", 2)]
        assert c.track("s", 3.0) == []
        e.state = "human"
        assert [m["state"] for m in c.track("s", 4.0)] == ["human"]
        changes = [(v.state, v.action, v.at_seq) for v in of(VerdictChanged, c.events())]
        assert changes == [("pending", "none", 0), ("at_risk", "warn", 2), ("human", "none", 4)]

    def test_the_action_comes_from_the_policy(self) -> None:
        c = Client(policy(state_actions={"at_risk": "require_label"}))
        e = ScriptedEngine("at_risk")
        c.open("s", engine=e)
        assert c.track("s", 1.0)[0]["action"] == "require_label"

    def test_an_action_the_engine_names_wins_over_the_policy(self) -> None:
        c = Client()
        e = ScriptedEngine("at_risk")
        c.open("s", engine=e)
        assert c.track("s", 1.0)[0]["action"] == "warn"
        e.action = "require_label"  # weak evidence: the engine asks for a label, same state
        out = c.track("s", 2.0)
        assert [(m["state"], m["action"]) for m in out] == [("at_risk", "require_label")]

    def test_at_least_every_verdict_interval(self) -> None:
        c = Client(policy(sessions={"checkpoint_s": 300.0}))
        e = ScriptedEngine("human")
        c.open("s", now=0.0, engine=e)
        c.track("s", 1.0)
        c.out()
        assert c.conn.next_deadline() == 11.0
        c.conn.tick(10.9)
        assert c.out() == []
        c.conn.tick(11.0)
        assert [(m["type"], m["state"], m["at_seq"]) for m in c.out()] == [("verdict", "human", 1)]
        assert of(VerdictChanged, c.events())[-1].at == 1.0  # a repeat is no change
        assert c.conn.next_deadline() == 21.0

    def test_violation_terminates(self) -> None:
        c = Client()
        e = ScriptedEngine("human")
        c.open("s", engine=e)
        c.track("s", 1.0)
        e.state = "violation"
        out = c.track("s", 2.0)
        assert types(out) == ["verdict", "session.terminate", "session.summary"]
        assert (out[0]["state"], out[0]["action"]) == ("violation", "terminate")
        assert out[1] == {"type": "session.terminate", "session": "s", "reason": "violation"}
        assert (out[2]["final_state"], out[2]["worst_state"]) == ("violation", "violation")
        assert of(SessionEnded, c.events())[0].reason == "violation"
        assert c.track("s", 3.0)[0]["code"] == "unknown_session"

    def test_a_violation_that_only_warns_by_policy(self) -> None:
        c = Client(policy(state_actions={"violation": "warn"}))
        e = ScriptedEngine("violation")
        c.open("s", engine=e)
        assert types(c.track("s", 1.0)) == ["verdict"]
        assert c.conn.session_state("s") is SessionState.ACTIVE

    def test_worst_state_order(self) -> None:
        # human < pending < at_risk < violation: a session that only went human is "worst: pending".
        c = Client()
        e = ScriptedEngine("human")
        c.open("s", engine=e)
        c.track("s", 1.0)
        c.msg("s", "session.close", 2.0)
        assert of(SessionEnded, c.events())[0].summary["worst_state"] == "pending"

        c = Client()
        e = ScriptedEngine("human")
        c.open("s", engine=e)
        c.track("s", 1.0)
        e.state = "at_risk"
        c.track("s", 2.0)
        e.state = "human"
        c.track("s", 3.0)
        summary = c.msg("s", "session.close", 4.0)[-1]
        assert (summary["final_state"], summary["worst_state"]) == ("human", "at_risk")


def run_challenges(c: Client, sid: str, until: float, respond: Any = None) -> list[dict[str, Any]]:
    """Tick at every deadline (sending a tracking batch each second) until `until`; `respond(challenge,
    now)` may answer each challenge. Returns every message sent."""
    sent: list[dict[str, Any]] = []
    now = 0.0
    next_batch = 1.0
    while now < until:
        deadline = c.conn.next_deadline()
        assert deadline is not None
        assert deadline > now or deadline == next_batch, "tick made no progress"
        now = min(deadline, next_batch)
        if now == next_batch:
            sent += c.track(sid, now)
            next_batch += 1.0
        c.conn.tick(now)
        for m in c.out():
            sent.append(m)
            if m["type"] == "challenge" and respond is not None:
                sent += respond(m, now)
    return sent


def next_challenge(c: Client, now: float = 0.0) -> tuple[dict[str, Any], float]:
    """Tick at each deadline (no tracking) until a challenge is sent; it and the time it was sent."""
    for _ in range(100):
        deadline = c.conn.next_deadline()
        assert deadline is not None and deadline >= now
        now = deadline
        c.conn.tick(now)
        challenges = [m for m in c.out() if m["type"] == "challenge"]
        if challenges:
            return challenges[0], now
    raise AssertionError("no challenge was issued")


class TestChallenges:
    def test_challenges_come_at_random_times_far_enough_apart(self) -> None:
        c = Client(CHALLENGING)
        c.open("s", engine=ScriptedEngine())
        run_challenges(c, "s", 400.0)
        issued = of(ChallengeIssued, c.events())
        times = [e.at for e in issued]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) >= 14
        assert all(15.0 - 1.0 <= g <= 25.0 + 1.0 for g in gaps)  # mean 20 ± 5 (ticks land ≤ 1 s late)
        assert all(g >= 11.0 for g in gaps)  # show_within_s + deadline_s
        assert len({round(g, 3) for g in gaps}) > len(gaps) // 2  # not a fixed cadence
        actions = {e.action for e in issued}
        assert actions <= set(CHALLENGING.challenges.enabled) and len(actions) >= 3
        assert [e.challenge_id for e in issued] == [f"c{i}" for i in range(1, len(issued) + 1)]

    def test_the_rng_decides(self) -> None:
        def issue_times(seed: int) -> list[float]:
            c = Client(CHALLENGING, seed=seed)
            c.open("s", engine=ScriptedEngine())
            run_challenges(c, "s", 100.0)
            return [e.at for e in of(ChallengeIssued, c.events())]

        assert issue_times(1) == issue_times(1)
        assert issue_times(1) != issue_times(2)

    def test_the_challenge_message(self) -> None:
        c = Client(CHALLENGING)
        c.open("s", engine=ScriptedEngine())
        sent = run_challenges(c, "s", 40.0)
        challenge = next(m for m in sent if m["type"] == "challenge")
        assert challenge == {
            "type": "challenge",
            "session": "s",
            "challenge_id": "c1",
            "action": challenge["action"],
            "deadline_s": 6.0,
        }

    def test_a_challenge_not_shown_in_time_is_missed(self) -> None:
        c = Client(CHALLENGING)
        e = ScriptedEngine()
        c.open("s", engine=e)
        run_challenges(c, "s", 40.0)
        events = c.events()
        issued = of(ChallengeIssued, events)[0]
        resolved = of(ChallengeResolved, events)[0]
        assert resolved.outcome.result == "missed"
        assert resolved.at == pytest.approx(issued.at + 5.0, abs=1e-9)  # at the next_deadline tick
        assert e.outcomes[0] == resolved.outcome

    def test_a_turn_passes_and_the_session_is_human(self) -> None:
        c = Client(CHALLENGING)
        c.open("s")  # the default ChallengeEngine

        def respond(challenge: dict[str, Any], now: float) -> list[dict[str, Any]]:
            t = c.clock["s"]
            out = c.msg("s", "challenge.shown", now + 0.05, t=t, challenge_id=challenge["challenge_id"])
            moves = {
                "turn_head_left": {"headYaw": 25.0},
                "turn_head_right": {"headYaw": -25.0},
                "nod": {},
                "open_mouth": {},
                "blink_twice": {},
            }[challenge["action"]]
            if challenge["action"] == "nod":
                out += c.track("s", now + 0.5, n=3)
                out += c.track("s", now + 0.8, n=3, headPitch=12.0)
                out += c.track("s", now + 1.1, n=4)
            elif challenge["action"] == "open_mouth":
                out += c.track("s", now + 0.5, n=3)
                out += c.track("s", now + 1.0, n=5, jawOpen=0.8)
            elif challenge["action"] == "blink_twice":
                out += c.track("s", now + 0.5, n=3)
                for _ in range(2):
                    out += c.track("s", now + 0.7, n=2, eyeBlinkLeft=0.9, eyeBlinkRight=0.9)
                    out += c.track("s", now + 0.9, n=2)
            else:
                out += c.track("s", now + 0.5, n=3)
                out += c.track("s", now + 1.0, n=3, **moves)
            return out

        sent = run_challenges(c, "s", 120.0, respond)
        events = c.events()
        results = [e.outcome.result for e in of(ChallengeResolved, events)]
        assert results and set(results) == {"passed"}
        assert all(
            o.outcome.reaction_ms is not None and o.outcome.reaction_ms >= 300
            for o in of(ChallengeResolved, events)
        )
        verdicts = [m for m in sent if m["type"] == "verdict"]
        assert verdicts[-1]["state"] == "human"
        assert "challenges passed" in verdicts[-1]["reasons"][0]["detail"]

    def test_shown_for_a_challenge_never_issued_is_bad_message(self) -> None:
        c = Client(CHALLENGING)
        c.open("s", engine=ScriptedEngine())
        for cid in ("c1", "x", "c0", "c01", "c", "C1"):
            out = c.msg("s", "challenge.shown", 1.0, seq=1, t=1.0, challenge_id=cid)
            assert out == [
                {
                    "type": "error",
                    "code": "bad_message",
                    "detail": "challenge_id: no such challenge",
                    "session": "s",
                    "ref_seq": 1,
                }
            ]

    def _issued(self) -> tuple[Client, ScriptedEngine, float]:
        c = Client(CHALLENGING)
        e = ScriptedEngine()
        c.open("s", engine=e)
        c.out()
        _, at = next_challenge(c)
        return c, e, at

    def test_shown_twice_is_bad_message(self) -> None:
        c, _, at = self._issued()
        assert c.msg("s", "challenge.shown", at + 0.1, seq=1, t=1.0, challenge_id="c1") == []
        assert c.msg("s", "challenge.shown", at + 0.2, seq=2, t=1.1, challenge_id="c1")[0]["detail"] == (
            "challenge_id: already shown"
        )

    def test_a_late_shown_is_accepted_and_changes_nothing(self) -> None:
        c, e, at = self._issued()
        c.conn.tick(at + 5.01)
        assert [o.result for o in e.outcomes] == ["missed"]
        errors = c.msg("s", "challenge.shown", at + 6.0, seq=1, t=1.0, challenge_id="c1")
        errors += c.msg("s", "chat", at + 6.1, seq=2, t=2.0, message_id="m")  # seq 1 was used
        assert [m for m in errors if m["type"] == "error"] == []
        assert len(e.outcomes) == 1

    def test_summary_counts_challenges_including_open_ones(self) -> None:
        c, _, at = self._issued()
        c.conn.tick(at + 5.01)  # c1 missed
        challenge, at2 = next_challenge(c, at + 5.01)
        assert challenge["challenge_id"] == "c2"
        c.msg("s", "challenge.shown", at2 + 0.1, t=2000.0, challenge_id="c2")
        summary = c.msg("s", "session.close", at2 + 1.0)[-1]
        assert summary["challenges"] == {"issued": 2, "passed": 0, "failed": 0, "missed": 1, "open": 1}

    def test_one_open_challenge_at_a_time(self) -> None:
        # c1 is shown and runs to its full deadline (6 + 2 s after the shown arrival); c2 waits for it.
        c, e, at = self._issued()
        c.msg("s", "challenge.shown", at + 4.9, seq=1, t=1.0, challenge_id="c1")
        c.conn.tick(at + 12.0)
        assert of(ChallengeIssued, c.events())[-1].challenge_id == "c1"
        c.conn.tick(at + 12.91)
        assert [o.result for o in e.outcomes] == ["failed"]


class TestSessionTerminate:
    def test_the_server_ends_a_session(self) -> None:
        c = Client()
        c.open("s", now=0.0, engine=ScriptedEngine("human"))
        c.out()
        assert c.conn.terminate("s", "staff_action", 12.5)
        out = c.out()
        # The engine's view changed since the first pending verdict: it is sent before the end.
        assert types(out) == ["verdict", "session.terminate", "session.summary"]
        assert out[-2] == {"type": "session.terminate", "session": "s", "reason": "staff_action"}
        assert out[-1]["duration_s"] == 12.5
        ended = of(SessionEnded, c.events())
        assert ended[0].reason == "staff_action"
        assert c.track("s", 13.0)[0]["code"] == "unknown_session"
        assert not c.conn.terminate("s", "staff_action", 14.0)

    def test_terminate_of_a_session_not_here(self) -> None:
        assert not Client().conn.terminate("ghost", "avatar_suspended", 1.0)


class TestReconnect:
    def test_drain_sends_reconnect(self) -> None:
        c = Client()
        c.conn.drain("wss://node-2.example/v1/live", 3.0, 1.0)
        assert c.out() == [{"type": "reconnect", "url": "wss://node-2.example/v1/live", "after_s": 3.0}]


class TestResume:
    def _session(self, engine: ScriptedEngine | None = None) -> Client:
        c = Client(restore_engine=restore_scripted)
        c.open("s", now=0.0, engine=engine or ScriptedEngine("human"))
        for i in range(1, 4):
            c.track("s", float(i))
        c.out()
        c.events()
        return c

    def test_checkpoints_every_checkpoint_s(self) -> None:
        c = self._session()
        assert c.conn.next_deadline() == 5.0
        c.conn.tick(5.0)
        due = of(CheckpointDue, c.events())
        assert [d.session for d in due] == ["s"]
        snap = json.loads(json.dumps(due[0].snapshot))  # JSON-serialisable
        assert (snap["last_seq"], snap["state"], snap["engine"]["state"]) == (3, "human", "human")
        assert c.conn.next_deadline() == 10.0

    def test_a_dropped_connection_leaves_sessions_resumable(self) -> None:
        c = self._session()
        c.open("p", now=3.5, admit=False)
        c.events()
        c.conn.detach(4.0)
        detached = c.events()
        assert [(type(d), d.session) for d in detached] == [(SessionDetached, "s")]
        assert detached[0].snapshot["last_seq"] == 3
        assert c.conn.next_deadline() is None
        assert c.track("s", 5.0) == []  # nothing more is received

    def _resumed(
        self, snapshot: dict[str, Any], last_seq: int, now: float = 100.0
    ) -> tuple[Client, list[dict[str, Any]]]:
        c = Client(restore_engine=restore_scripted, now=now)
        out = c.send(now, type="session.resume", session="s", last_seq=last_seq)
        assert out == []
        assert c.events() == [ResumeRequested("s", last_seq)]
        assert c.conn.resumed("s", json.loads(json.dumps(snapshot)), now + 0.1)
        return c, c.out()

    def test_resume_continues_at_resume_from_seq(self) -> None:
        old = self._session()
        old.conn.detach(4.0)
        snapshot = old.events()[0].snapshot
        c, out = self._resumed(snapshot, last_seq=3)
        assert out[0] == {
            "type": "session.accepted",
            "session": "s",
            "policy": QUIET.to_wire(),
            "resume_from_seq": 4,
        }
        assert (out[1]["type"], out[1]["state"], out[1]["at_seq"]) == ("verdict", "human", 3)
        assert of(SessionStored, c.events()) == [SessionStored("s", "av-1", "op-1", None, True, 100.1)]
        c.clock["s"], c.seqs["s"] = old.clock["s"], 3
        assert c.track("s", 101.0) == []  # seq 4
        assert c.track("s", 102.0, seq=2)[0]["code"] == "bad_seq"

    def test_resume_from_an_older_checkpoint_asks_for_the_rest_again(self) -> None:
        old = self._session()
        old.conn.tick(5.0)
        checkpoint = of(CheckpointDue, old.events())[0].snapshot  # holds seq 1–3
        old.track("s", 6.0)  # seq 4 processed but never checkpointed: the node dies
        c, out = self._resumed(checkpoint, last_seq=4)
        assert out[0]["resume_from_seq"] == 4
        c.clock["s"] = 1003.0  # after the checkpoint's last ts: the client re-sends seq 4
        assert c.track("s", 101.0, seq=4) == []

    def test_what_cannot_be_resent_is_a_gap(self) -> None:
        old = self._session()
        old.conn.tick(5.0)
        checkpoint = of(CheckpointDue, old.events())[0].snapshot
        c, _ = self._resumed(checkpoint, last_seq=3)
        c.clock["s"] = 1010.0
        assert c.track("s", 101.0, seq=7)[0]["detail"] == "missing seq 4–6 (3 lost)"

    def test_ts_must_continue_after_the_checkpoint(self) -> None:
        old = self._session()
        old.conn.detach(4.0)
        c, _ = self._resumed(old.events()[0].snapshot, last_seq=3)
        c.clock["s"] = 1002.0  # before the last ts the server has
        assert c.track("s", 101.0, seq=4)[0]["code"] == "bad_message"

    def test_the_open_challenge_survives_a_resume(self) -> None:
        old = Client(CHALLENGING)
        old.open("s")
        old.out()
        _, deadline = next_challenge(old)
        old.conn.detach(deadline + 1.0)
        snapshot = old.events()[-1].snapshot

        c = Client(CHALLENGING, now=500.0)
        c.send(500.0, type="session.resume", session="s", last_seq=0)
        assert c.conn.resumed("s", snapshot, 500.0, away_s=1.0)
        c.out()
        c.events()
        # Issued 1 s before the snapshot, away 1 s: 3 s of the 5 s to show it are left.
        assert c.conn.next_deadline() == pytest.approx(503.0)
        c.conn.tick(503.01)
        resolved = of(ChallengeResolved, c.events())
        assert [(r.outcome.challenge_id, r.outcome.result) for r in resolved] == [("c1", "missed")]

    def test_messages_wait_for_the_resume(self) -> None:
        old = self._session()
        old.conn.detach(4.0)
        snapshot = old.events()[0].snapshot
        c = Client(restore_engine=restore_scripted, now=50.0)
        c.send(50.0, type="session.resume", session="s", last_seq=3)
        c.clock["s"], c.seqs["s"] = old.clock["s"], 3
        c.track("s", 50.1)
        c.conn.resumed("s", snapshot, 50.2)
        out = c.out()
        assert types(out) == ["session.accepted", "verdict"]
        assert c.conn.session_state("s") is SessionState.ACTIVE
        c.conn.tick(60.2)
        assert [m["at_seq"] for m in c.out() if m["type"] == "verdict"] == [4]

    def test_a_session_that_is_not_resumable(self) -> None:
        c = Client()
        c.send(1.0, type="session.resume", session="gone", last_seq=9)
        assert c.conn.resume_unknown("gone", "no resumable session with this id", 1.5)
        assert c.out() == [
            {
                "type": "error",
                "code": "unknown_session",
                "detail": "no resumable session with this id",
                "session": "gone",
            }
        ]
        assert c.conn.session_state("gone") is None

    def test_a_snapshot_of_another_session_is_refused(self) -> None:
        old = self._session()
        old.conn.detach(4.0)
        snapshot = old.events()[0].snapshot
        c = Client(restore_engine=restore_scripted)
        c.send(1.0, type="session.resume", session="other", last_seq=0)
        with pytest.raises(ValueError, match="snapshot is of session 's'"):
            c.conn.resumed("other", snapshot, 2.0)

    def test_the_default_engine_survives_a_resume(self) -> None:
        old = Client()
        old.open("s")
        old.track("s", 1.0)
        old.conn.detach(2.0)
        snapshot = old.events()[-1].snapshot
        c = Client(now=9.0)
        c.send(9.0, type="session.resume", session="s", last_seq=1)
        assert c.conn.resumed("s", json.loads(json.dumps(snapshot)), 9.0)
        assert c.out()[0]["resume_from_seq"] == 2

    def test_a_session_not_resumed_in_time_ends_with_its_summary(self) -> None:
        old = Client(CHALLENGING)
        old.open("s")
        old.track("s", 1.0)
        old.out()
        _, deadline = next_challenge(old)
        old.conn.detach(deadline + 1.0)
        snapshot = old.events()[-1].snapshot
        ended = expire_session(json.loads(json.dumps(snapshot)), CHALLENGING, away_s=60.0)
        assert ended.reason == "resume_expired"
        assert ended.summary["challenges"] == {"issued": 1, "passed": 0, "failed": 0, "missed": 1, "open": 0}
        assert ended.summary["duration_s"] == pytest.approx(deadline + 1.0, abs=1e-3)
        assert ended.summary["final_state"] == "at_risk"  # 1 of 1 challenges missed
        assert ended.snapshot["session"] == "s"


class TestSessionState:
    def test_a_session_stays_small(self) -> None:
        # DESIGN §9: < 20 KB per session including the engine. 200 sessions, 30 s of 10 Hz tracking each.
        pol = policy(limits={"max_sessions": 300, "max_msgs_per_s": 100_000.0})
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            c = Client(pol)
            for i in range(200):
                c.open(f"s{i}")
            for second in range(1, 31):
                for i in range(200):
                    c.track(f"s{i}", float(second))
                c.events()
            c.out()
            gc.collect()
            per_session = (tracemalloc.get_traced_memory()[0] - before) / 200
        finally:
            tracemalloc.stop()
        assert per_session < 20_000, per_session
