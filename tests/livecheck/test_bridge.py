"""Tests for livecheck/bridge.py: a real OSC sender over UDP loopback → the bridge → a websocket server.

The server is a small scripted stand-in for livecheck (which does not exist yet) speaking PROTOCOL.md's
server side on 127.0.0.1; it validates every client frame with livecheck's own strict wire models
(``livecheck.messages.parse_client_message``) and records it. The VMC stream comes from python-osc's
``SimpleUDPClient``, as bundles the way VSeeFace sends them and as loose messages. All ports are the OS's
choice. The bridge and the tests share one process, so ``time.monotonic()`` is one clock for both.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import math
import os
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from livecheck.bridge import (
    EXIT_CONNECT,
    EXIT_ENDED,
    EXIT_OK,
    EXIT_REJECTED,
    SUBPROTOCOL,
    challenge_prompt,
    parse_listen,
    run_vmc_bridge,
    summary_lines,
    verdict_lines,
)
from livecheck.messages import ARKIT_BLENDSHAPES, REQUIRED_CHANNELS, parse_client_message

KEY = "ingest-test-key-not-secret"
AVATAR = "avatar-1"
OPERATOR = "operator-1"
TEST_TIMEOUT_S = 15.0

# PROTOCOL.md "Client → server": required and optional fields of what the bridge sends.
FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "session.open": ({"type", "session", "avatar_id", "operator_id"}, {"stream_id"}),
    "session.resume": ({"type", "session", "last_seq"}, set()),
    "tracking": ({"type", "session", "seq", "ts", "channels"}, {"face", "source"}),
    "challenge.shown": ({"type", "session", "seq", "t", "challenge_id"}, set()),
    "session.close": ({"type", "session", "seq"}, set()),
}

WELCOME = {
    "type": "welcome",
    "protocol": 1,
    "connection_id": "conn-1",
    "keepalive_s": 20,
    "limits": {"max_frame_bytes": 65_536, "max_msgs_per_s": 50, "max_sessions": 8},
}
POLICY = {
    "challenge_actions": ["turn_head_left", "blink_twice"],
    "actions": {"turn_head_left": {"yaw_deg": 15}},
    "min_reaction_ms": 150,
    "show_within_s": 5,
    "deadline_s": 6,
    "verdict_interval_s": 10,
    "resume_window_s": 60,
}


def accepted(session: str, **extra: Any) -> dict[str, Any]:
    return {"type": "session.accepted", "session": session, "policy": POLICY, **extra}


def verdict(
    session: str, state: str, at_seq: int, reasons: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "type": "verdict",
        "session": session,
        "state": state,
        "score": 0.5 if state == "pending" else 0.93,
        "action": "none",
        "reasons": reasons or [],
        "at_seq": at_seq,
    }


def summary(session: str) -> dict[str, Any]:
    return {
        "type": "session.summary",
        "session": session,
        "duration_s": 2.5,
        "final_state": "human",
        "worst_state": "pending",
        "challenges": {"issued": 1, "passed": 1, "failed": 0, "missed": 0, "open": 0},
        "reasons": [],
    }


@dataclass
class StubConnection:
    """One client connection to the stub: what it sent (validated) and how to answer it."""

    ws: ServerConnection
    headers: Headers
    received: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def recv(self) -> dict[str, Any]:
        text = await self.ws.recv()
        assert isinstance(text, str), "the protocol uses text frames"
        parse_client_message(text)  # raises BadMessage on anything the real server would refuse
        msg: dict[str, Any] = json.loads(text)
        required, optional = FIELDS[msg["type"]]
        assert required <= set(msg) <= required | optional, msg
        self.received.append(msg)
        return msg

    async def recv_until(self, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while not done(msg := await self.recv()):
            pass
        return msg

    def count(self, kind: str) -> int:
        return sum(1 for m in self.received if m["type"] == kind)


Script = Callable[[StubConnection], Awaitable[None]]


@dataclass
class LiveStub:
    """A scripted livecheck on 127.0.0.1: each connection runs the next script (the last one repeats)."""

    scripts: list[Script]
    url: str = ""
    connections: list[StubConnection] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    def check_key(self, connection: ServerConnection, request: Request) -> Response | None:
        # PROTOCOL.md: a missing or bad key is refused during the handshake with 401, before any frame.
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return connection.respond(401, "bad key\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        conn = StubConnection(ws=ws, headers=ws.request.headers if ws.request else Headers())
        script = self.scripts[min(len(self.connections), len(self.scripts) - 1)]
        self.connections.append(conn)
        try:
            await script(conn)
        except ConnectionClosed:
            pass
        except BaseException as exc:  # surfaced by the test, which would otherwise only see a hang
            self.failures.append(exc)
            raise


@asynccontextmanager
async def live_stub(*scripts: Script) -> AsyncIterator[LiveStub]:
    stub = LiveStub(scripts=list(scripts))
    async with serve(
        stub.handler, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL], process_request=stub.check_key
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        stub.url = f"ws://127.0.0.1:{port}/v1/live"
        yield stub
    assert not stub.failures, stub.failures


def unity_yaw_quat(degrees: float) -> tuple[float, float, float, float]:
    """Quaternion.AngleAxis(degrees, Vector3.up): negative degrees turn the avatar to its own left."""
    half = math.radians(degrees) / 2
    return (0.0, math.sin(half), 0.0, math.cos(half))


def osc(address: str, *args: Any) -> Any:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build()


def vmc_frame(i: int, *, turned: bool, blink: bool) -> list[Any]:
    """One VMC frame in the order VMC senders use: bones, blend values, Apply, status, time.

    ``A`` carries the frame number (i / 1000) so the test can tell which frame a sample came from.
    """
    head = unity_yaw_quat(-20.0 if turned else 0.0)
    return [
        osc("/VMC/Ext/Root/Pos", "root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
        osc("/VMC/Ext/Bone/Pos", "Neck", 0.0, 1.4, 0.0, 0.0, 0.0, 0.0, 1.0),
        osc("/VMC/Ext/Bone/Pos", "Head", 0.0, 1.5, 0.0, *head),
        osc("/VMC/Ext/Blend/Val", "Blink_L", 1.0 if blink else 0.0),
        osc("/VMC/Ext/Blend/Val", "Blink_R", 0.0),
        osc("/VMC/Ext/Blend/Val", "A", i / 1000),
        osc("/VMC/Ext/Blend/Val", "MouthSmileLeft", 0.25),
        osc("/VMC/Ext/Blend/Apply"),
        osc("/VMC/Ext/OK", 1, 3, 0, 1),
        osc("/VMC/Ext/T", float(i) / 60),
    ]


def hostile_datagrams() -> list[bytes]:
    """Datagrams that are not usable OSC: garbage, a bad string, and bundles nested past Python's recursion
    limit (python-osc parses nested bundles recursively)."""
    apply = osc("/VMC/Ext/Blend/Apply").dgram
    nested = apply
    for _ in range(2500):
        nested = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", len(nested)) + nested
    bad_string = osc("/VMC/Ext/Blend/Val", "Blink_L", 1.0).dgram.replace(b"Blink_L", b"Blink\xff\xfe")
    return [b"\x00garbage, not OSC", bad_string, nested]


async def send_vmc(
    port: int, frames: int, *, turn_from: int, blink_every: int = 15, hz: float = 60.0
) -> None:
    """Send ``frames`` VMC frames to the bridge: even frames as one bundle, odd ones as loose messages, and
    hostile datagrams half-way through."""
    client = SimpleUDPClient("127.0.0.1", port)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(frames):
            msgs = vmc_frame(i, turned=i >= turn_from, blink=i % blink_every == 0)
            if i % 2 == 0:
                bundle = OscBundleBuilder(IMMEDIATELY)
                for msg in msgs:
                    bundle.add_content(msg)
                client.send(bundle.build())
            else:
                for msg in msgs:
                    client.send(msg)
            if i == frames // 2:
                for data in hostile_datagrams():
                    raw.sendto(data, ("127.0.0.1", port))
            await asyncio.sleep(1 / hz)
    finally:
        client.close()
        raw.close()


@dataclass
class BridgeRun:
    task: asyncio.Task[int]
    port: int
    stop: asyncio.Event
    out: io.StringIO


@asynccontextmanager
async def bridge(url: str, session: str | None = "sess-1", **kwargs: Any) -> AsyncIterator[BridgeRun]:
    loop = asyncio.get_running_loop()
    bound: asyncio.Future[tuple[str, int]] = loop.create_future()
    stop = asyncio.Event()
    out = io.StringIO()
    kwargs.setdefault("install_signal_handlers", False)
    task = asyncio.create_task(
        run_vmc_bridge(
            ("127.0.0.1", 0),
            url,
            kwargs.pop("key", KEY),
            AVATAR,
            OPERATOR,
            session,
            out,
            batch_interval_s=0.05,
            stop=stop,
            on_listening=bound.set_result,
            **kwargs,
        )
    )
    try:
        started: set[asyncio.Future[Any]] = {task, bound}
        await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
        port = bound.result()[1] if bound.done() else 0
        yield BridgeRun(task=task, port=port, stop=stop, out=out)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def tracking_samples(messages: list[dict[str, Any]]) -> list[tuple[float, dict[str, float], bool]]:
    out = []
    for m in messages:
        if m["type"] == "tracking":
            for k, t in enumerate(m["ts"]):
                out.append((t, {name: col[k] for name, col in m["channels"].items()}, m["face"][k]))
    return out


def assert_protocol_stream(messages: list[dict[str, Any]], *, first_seq: int = 1) -> None:
    """seq consecutive from ``first_seq``, ts strictly increasing within and across tracking messages."""
    numbered = [m for m in messages if "seq" in m]
    assert [m["seq"] for m in numbered] == list(range(first_seq, first_seq + len(numbered)))
    ts = [t for t, _, _ in tracking_samples(messages)]
    assert all(b > a for a, b in itertools.pairwise(ts)), "ts must increase strictly"
    for m in messages:
        if m["type"] == "tracking":
            assert 1 <= len(m["ts"]) <= 120
            assert (
                set(REQUIRED_CHANNELS)
                <= set(m["channels"])
                <= set(REQUIRED_CHANNELS) | set(ARKIT_BLENDSHAPES)
            )
            assert all(len(col) == len(m["ts"]) for col in m["channels"].values())
            assert len(m["face"]) == len(m["ts"]) and all(isinstance(f, bool) for f in m["face"])
            assert m["source"] == "vmc"


async def test_vmc_stream_becomes_protocol_messages_with_a_challenge_round_trip() -> None:
    timing: dict[str, float] = {}
    challenge_answered = asyncio.Event()

    async def script(conn: StubConnection) -> None:
        await conn.send(WELCOME)
        opened = await conn.recv()
        session = opened["session"]
        await conn.send(accepted(session))
        await conn.send(verdict(session, "pending", 0))
        await conn.recv_until(lambda _m: conn.count("tracking") >= 3)
        timing["issued"] = time.monotonic()
        await conn.send(
            {
                "type": "challenge",
                "session": session,
                "challenge_id": "ch-1",
                "action": "turn_head_left",
                "deadline_s": 6,
            }
        )
        shown = await conn.recv_until(lambda m: m["type"] == "challenge.shown")
        timing["received"] = time.monotonic()
        await conn.send(
            verdict(
                session,
                "human",
                shown["seq"],
                [{"code": "challenge_passed", "detail": "turned left in 0.4 s"}],
            )
        )
        challenge_answered.set()
        await conn.recv_until(lambda m: m["type"] == "session.close")
        await conn.send(summary(session))

    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        live_stub(script) as stub,
        bridge(stub.url, stream_id="room-7") as run,
    ):
        await send_vmc(run.port, 60, turn_from=30)
        await challenge_answered.wait()
        run.stop.set()
        code = await run.task

    assert code == EXIT_OK
    (conn,) = stub.connections
    assert conn.headers["Authorization"] == f"Bearer {KEY}"
    assert conn.ws.subprotocol == SUBPROTOCOL
    msgs = conn.received
    assert msgs[0] == {
        "type": "session.open",
        "session": "sess-1",
        "avatar_id": AVATAR,
        "operator_id": OPERATOR,
        "stream_id": "room-7",
    }
    assert msgs[-1] == {"type": "session.close", "session": "sess-1", "seq": msgs[-2]["seq"] + 1}
    assert_protocol_stream(msgs[1:])

    (shown,) = [m for m in msgs if m["type"] == "challenge.shown"]
    assert shown["challenge_id"] == "ch-1"
    # Stamped when the prompt was printed: after the server issued it, before the server got the answer.
    assert timing["issued"] <= shown["t"] <= timing["received"]

    samples = tracking_samples(msgs)
    assert len(samples) >= 45  # 60 frames sent over loopback; the bridge keeps nearly all
    for _t, ch, face in samples:
        i = round(ch["jawOpen"] * 1000)  # the frame number, carried in the A viseme
        assert ch["headYaw"] == pytest.approx(20.0 if i >= 30 else 0.0, abs=1e-3)
        assert ch["headPitch"] == pytest.approx(0.0, abs=1e-3)
        assert ch["headRoll"] == pytest.approx(0.0, abs=1e-3)
        assert ch["eyeBlinkLeft"] == (1.0 if i % 15 == 0 else 0.0)
        assert ch["eyeBlinkRight"] == 0.0
        assert ch["mouthSmileLeft"] == 0.25
        assert face is True
    frames_seen = sorted(round(ch["jawOpen"] * 1000) for _t, ch, _f in samples)
    assert frames_seen == sorted(set(frames_seen))  # each frame once

    text = run.out.getvalue()
    assert "CHALLENGE: turn your head to your left within 6 s" in text
    assert "verdict: human (score 0.93, action none)" in text
    assert "challenge_passed: turned left in 0.4 s" in text
    assert "session ended after 2.5 s: final human, worst pending" in text


async def test_reconnect_resumes_on_the_new_node_from_the_servers_seq() -> None:
    moved = asyncio.Event()
    resumed_at: dict[str, int] = {}

    async def new_node(conn: StubConnection) -> None:
        await conn.send({**WELCOME, "connection_id": "conn-2"})
        resume = await conn.recv()
        resumed_at["last_seq"] = resume["last_seq"]
        # This node's checkpoint stops one message short of what the old node had seen.
        await conn.send(accepted(resume["session"], resume_from_seq=resume["last_seq"] + 1))
        await conn.recv_until(lambda _m: conn.count("tracking") >= 3)
        moved.set()
        await conn.recv_until(lambda m: m["type"] == "session.close")
        await conn.send(summary(resume["session"]))

    async with asyncio.timeout(TEST_TIMEOUT_S), live_stub(new_node) as node_b:

        async def old_node(conn: StubConnection) -> None:
            await conn.send(WELCOME)
            opened = await conn.recv()
            await conn.send(accepted(opened["session"]))
            await conn.recv_until(lambda _m: conn.count("tracking") >= 4)
            await conn.send(verdict(opened["session"], "pending", 3))
            await conn.send({"type": "reconnect", "url": node_b.url, "after_s": 0.1})
            with pytest.raises(ConnectionClosed):  # the bridge leaves for the new node
                await conn.recv_until(lambda _m: False)

        async with live_stub(old_node) as node_a, bridge(node_a.url) as run:
            sender = asyncio.create_task(send_vmc(run.port, 90, turn_from=200))
            await moved.wait()
            run.stop.set()
            code = await run.task
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    assert code == EXIT_OK
    (a,) = node_a.connections
    (b,) = node_b.connections
    assert resumed_at["last_seq"] == 3
    assert b.received[0] == {"type": "session.resume", "session": "sess-1", "last_seq": 3}
    after = b.received[1:]
    assert_protocol_stream(after, first_seq=4)  # replays 4.. then goes on: no repeat, no hole
    old_seqs = [m["seq"] for m in a.received if "seq" in m]
    assert old_seqs[0] == 1 and max(old_seqs) >= 4
    # What the new node got from seq 4 on is what the old node had got from seq 4 on, then more.
    replayed = [m for m in after if m["seq"] <= max(old_seqs)]
    assert replayed == [m for m in a.received if m.get("seq", 0) >= 4]
    assert len(after) > len(replayed)
    assert "resumed" in run.out.getvalue()


async def test_dropped_connection_is_resumed_on_the_same_url() -> None:
    resumed = asyncio.Event()

    async def first(conn: StubConnection) -> None:
        await conn.send(WELCOME)
        opened = await conn.recv()
        await conn.send(accepted(opened["session"]))
        await conn.recv_until(lambda _m: conn.count("tracking") >= 2)
        await conn.ws.close()  # no reconnect message: the node just went away

    async def second(conn: StubConnection) -> None:
        await conn.send(WELCOME)
        resume = await conn.recv()
        assert resume["type"] == "session.resume"
        await conn.send(accepted(resume["session"], resume_from_seq=1))
        await conn.recv_until(lambda _m: conn.count("tracking") >= 3)
        resumed.set()
        await conn.recv_until(lambda m: m["type"] == "session.close")
        await conn.send(summary(resume["session"]))

    async with asyncio.timeout(TEST_TIMEOUT_S), live_stub(first, second) as stub, bridge(stub.url) as run:
        sender = asyncio.create_task(send_vmc(run.port, 120, turn_from=200))
        await resumed.wait()
        run.stop.set()
        code = await run.task
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

    assert code == EXIT_OK
    assert len(stub.connections) == 2
    assert_protocol_stream(stub.connections[1].received[1:], first_seq=1)
    assert "connection lost; retrying" in run.out.getvalue()


async def test_ctrl_c_closes_the_session() -> None:
    streaming = asyncio.Event()

    async def script(conn: StubConnection) -> None:
        await conn.send(WELCOME)
        opened = await conn.recv()
        await conn.send(accepted(opened["session"]))
        await conn.recv_until(lambda _m: conn.count("tracking") >= 2)
        streaming.set()
        await conn.recv_until(lambda m: m["type"] == "session.close")
        await conn.send(summary(opened["session"]))

    before = signal.getsignal(signal.SIGINT)
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        live_stub(script) as stub,
        bridge(stub.url, session=None, install_signal_handlers=True) as run,
    ):
        sender = asyncio.create_task(send_vmc(run.port, 120, turn_from=200))
        await streaming.wait()
        # Only with the bridge's handler in place, so a real Ctrl-C can never reach the test runner.
        assert signal.getsignal(signal.SIGINT) is not before
        os.kill(os.getpid(), signal.SIGINT)
        code = await run.task
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

    assert code == EXIT_OK
    assert signal.getsignal(signal.SIGINT) is before  # handlers removed again
    msgs = stub.connections[0].received
    assert msgs[0]["session"].startswith("vmc-")
    assert msgs[-1]["type"] == "session.close"
    assert_protocol_stream(msgs[1:])


async def test_a_refused_key_ends_the_bridge() -> None:
    async def never(conn: StubConnection) -> None:  # the handshake is refused before any script runs
        raise AssertionError("no connection should be accepted")

    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        live_stub(never) as stub,
        bridge(stub.url, key="wrong") as run,
    ):
        code = await run.task
    assert code == EXIT_CONNECT
    assert stub.connections == []
    assert "HTTP 401" in run.out.getvalue()


async def test_a_rejected_session_ends_the_bridge() -> None:
    async def script(conn: StubConnection) -> None:
        await conn.send(WELCOME)
        opened = await conn.recv()
        await conn.send(
            {
                "type": "session.rejected",
                "session": opened["session"],
                "reason": "operator_unverified",
                "detail": "identity not verified",
            }
        )
        await conn.ws.wait_closed()

    async with asyncio.timeout(TEST_TIMEOUT_S), live_stub(script) as stub, bridge(stub.url) as run:
        code = await run.task
    assert code == EXIT_REJECTED
    assert "session rejected: operator_unverified" in run.out.getvalue()


async def test_a_terminated_session_ends_the_bridge() -> None:
    async def script(conn: StubConnection) -> None:
        await conn.send(WELCOME)
        opened = await conn.recv()
        await conn.send(accepted(opened["session"]))
        await conn.send({"type": "session.terminate", "session": opened["session"], "reason": "staff_action"})
        await conn.send(summary(opened["session"]))
        await conn.ws.wait_closed()

    async with asyncio.timeout(TEST_TIMEOUT_S), live_stub(script) as stub, bridge(stub.url) as run:
        code = await run.task
    assert code == EXIT_ENDED
    assert "the platform ended this session: staff_action" in run.out.getvalue()


async def test_an_unreachable_server_ends_the_bridge() -> None:
    async with live_stub(lambda _c: asyncio.sleep(0)) as stub:
        url = stub.url  # the port is free again once the stub is gone
    async with asyncio.timeout(TEST_TIMEOUT_S), bridge(url) as run:
        code = await run.task
    assert code == EXIT_CONNECT
    assert "cannot reach the live server" in run.out.getvalue()


async def test_a_malformed_session_id_is_refused_before_connecting() -> None:
    out = io.StringIO()
    code = await run_vmc_bridge(("127.0.0.1", 0), "ws://127.0.0.1:9/", KEY, AVATAR, OPERATOR, "bad id", out)
    assert code == EXIT_CONNECT
    assert "session id must be" in out.getvalue()


class TestOperatorText:
    def test_challenge_prompts_name_the_operators_own_directions(self) -> None:
        assert challenge_prompt("turn_head_left", 6) == "CHALLENGE: turn your head to your left within 6 s"
        assert (
            challenge_prompt("turn_head_right", 4.5) == "CHALLENGE: turn your head to your right within 4.5 s"
        )
        assert challenge_prompt("blink_twice", 6) == "CHALLENGE: blink twice within 6 s"
        assert challenge_prompt("wave_hand", 6) == "CHALLENGE: wave hand within 6 s"  # a future action

    def test_verdict_and_summary_lines(self) -> None:
        lines = verdict_lines(
            verdict("s", "at_risk", 4, [{"code": "no_blinks", "detail": "no blink in 60 s"}])
        )
        assert lines == ["verdict: at_risk (score 0.93, action none)", "  - no_blinks: no blink in 60 s"]
        assert (
            summary_lines(summary("s"))[1] == "  challenges: issued 1, passed 1, failed 0, missed 0, open 0"
        )


class TestParseListen:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("127.0.0.1:39539", ("127.0.0.1", 39539)),
            ("0.0.0.0:0", ("0.0.0.0", 0)),
            ("[::1]:39540", ("::1", 39540)),
            ("39541", ("127.0.0.1", 39541)),
        ],
    )
    def test_accepted_forms(self, text: str, expected: tuple[str, int]) -> None:
        assert parse_listen(text) == expected

    @pytest.mark.parametrize("text", ["", "localhost", "host:", ":39539", "host:70000", "host:-1", "host:x"])
    def test_refused_forms(self, text: str) -> None:
        with pytest.raises(ValueError, match="--listen must be HOST:PORT"):
            parse_listen(text)
