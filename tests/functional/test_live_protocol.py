"""PROTOCOL.md over a real websocket server on loopback and a real PostgreSQL: "Transport", "Time",
"Client → server" and the error codes, one test per line of the contract.

Classes are named after the contract's sections (websockets' habit of naming protocol tests after the RFC
section they cover).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from livecheck.node import Node
from registry.config import Settings
from registry.roles import Role
from tests.factories import auth, make_key
from tests.functional.live_helpers import (
    LiveClient,
    live_client,
    new_live_avatar,
    new_session_id,
    node,
    policy_with,
    tracking,
)

Client = TestClient[Any, Any]

ROOMY = """
[sessions]
max_sessions_per_avatar = 1000
max_sessions_per_operator = 1000
"""


@pytest.fixture(scope="module")
async def live(dsn: str) -> AsyncIterator[Node]:
    """A node whose avatars may carry many sessions at once (the busy limits have their own tests)."""
    async with node(dsn, policy_with(ROOMY)) as n:
        yield n


@pytest.fixture(scope="module")
async def avatar(client: Client, platform_key: str, idp_dir: Path, settings: Settings) -> dict[str, Any]:
    return await new_live_avatar(client, platform_key, idp_dir, settings.audience)


async def opened(c: LiveClient, avatar: dict[str, Any], session: str | None = None) -> str:
    sid = session or new_session_id()
    msg = await c.open(sid, avatar["avatar_id"], avatar["operator_id"])
    assert msg["type"] == "session.accepted", msg
    first = await c.until("verdict")
    assert (first["session"], first["state"], first["at_seq"]) == (sid, "pending", 0)
    return sid


async def closed(c: LiveClient, sid: str, seq: int) -> dict[str, Any]:
    await c.send({"type": "session.close", "session": sid, "seq": seq})
    return await c.until(lambda m: m.get("type") == "session.summary" and m.get("session") == sid)


def errors_of(c: LiveClient, code: str | None = None) -> list[dict[str, Any]]:
    return [m for m in c.seen if m.get("type") == "error" and (code is None or m.get("code") == code)]


# ---------------------------------------------------------------------------------------------- Transport


class TestHandshake:
    """Transport: path, authentication before the upgrade, subprotocol, welcome."""

    async def _status(self, url: str, headers: dict[str, str] | None = None) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers or {}, open_timeout=5):
                pass
        return int(info.value.response.status_code)

    async def test_missing_key_is_401_without_upgrade(self, live: Node) -> None:
        assert await self._status(live.url) == 401

    async def test_malformed_or_unknown_key_is_401(self, live: Node) -> None:
        assert await self._status(live.url, {"Authorization": "Basic abc"}) == 401
        assert await self._status(live.url, {"Authorization": "Bearer ark_not-a-key"}) == 401

    async def test_revoked_ingest_key_is_401(self, live: Node, pool: asyncpg.Pool) -> None:
        key = await make_key(pool, Role.INGEST)
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_sha256 = sha256($1::text::bytea)", key
            )
        assert await self._status(live.url, auth(key)) == 401

    @pytest.mark.parametrize("role", [Role.STAFF, Role.PLATFORM, Role.ADMIN])
    async def test_a_key_of_another_role_is_403(self, live: Node, pool: asyncpg.Pool, role: Role) -> None:
        key = await make_key(pool, role)
        assert await self._status(live.url, auth(key)) == 403

    async def test_another_path_is_404(self, live: Node, ingest_key: str) -> None:
        assert await self._status(live.url.replace("/v1/live", "/v1/other"), auth(ingest_key)) == 404

    async def test_subprotocol_is_selected_when_offered(self, live: Node, ingest_key: str) -> None:
        async with live_client(live.url, ingest_key) as c:
            assert c.ws.subprotocol == "avatar-live.v1"

    async def test_a_client_offering_no_subprotocol_is_served_without_one(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key, subprotocols=[]) as c:
            assert c.ws.subprotocol is None
            await opened(c, avatar)

    async def test_the_first_message_is_welcome_with_the_limits(self, live: Node, ingest_key: str) -> None:
        async with connect(
            live.url, additional_headers=auth(ingest_key), subprotocols=["avatar-live.v1"]
        ) as ws:  # type: ignore[list-item]  # Subprotocol is a NewType of str
            welcome = json.loads(await ws.recv())
        limits = live.policy.limits
        assert welcome["type"] == "welcome"
        assert welcome["protocol"] == 1
        assert isinstance(welcome["connection_id"], str) and welcome["connection_id"]
        assert welcome["keepalive_s"] == limits.keepalive_s
        assert welcome["limits"] == {
            "max_frame_bytes": limits.max_frame_bytes,
            "max_msgs_per_s": limits.max_msgs_per_s,
            "max_sessions": limits.max_sessions,
        }

    async def test_a_binary_frame_closes_with_1003(self, live: Node, ingest_key: str) -> None:
        async with live_client(live.url, ingest_key) as c:
            await c.ws.send(b'{"type": "session.open"}')
            with pytest.raises(ConnectionClosed):
                await c.recv()
            assert c.ws.close_code == 1003


class TestMultiplexing:
    """Transport: one connection carries many sessions; one connection per stream works too."""

    async def test_one_connection_many_sessions(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sids = [await opened(c, avatar) for _ in range(3)]
            for i, sid in enumerate(sids):
                await c.send(tracking(sid, 1, 10.0 * i))
            summaries = [await closed(c, sid, 2) for sid in sids]
        assert [s["session"] for s in summaries] == sids
        assert not errors_of(c)

    async def test_one_connection_per_stream(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as a, live_client(live.url, ingest_key) as b:
            sa, sb = await opened(a, avatar), await opened(b, avatar)
            await a.send(tracking(sa, 1, 1.0))
            await b.send(tracking(sb, 1, 1.0))
            assert (await closed(a, sa, 2))["session"] == sa
            assert (await closed(b, sb, 2))["session"] == sb
        assert not errors_of(a) and not errors_of(b)


def padded(msg: dict[str, Any], size: int) -> str:
    """``msg`` as JSON padded with insignificant whitespace to exactly ``size`` UTF-8 bytes."""
    text = json.dumps(msg)
    pad = size - len(text.encode())
    assert pad >= 0
    return text[:-1] + " " * pad + "}"


class TestLimits:
    """Transport: message size (1009), message rate (rate_limited, then 1008), sessions per connection."""

    async def test_a_message_of_exactly_max_frame_bytes_is_processed(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        limit = live.policy.limits.max_frame_bytes
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            text = padded({"type": "chat", "session": sid, "seq": 1, "t": 1.0, "message_id": "m1"}, limit)
            assert len(text.encode()) == limit
            await c.send(text)
            summary = await closed(c, sid, 2)  # seq 2 follows: the big message used seq 1
        assert summary["session"] == sid
        assert not errors_of(c)

    async def test_one_byte_more_closes_with_1009(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        limit = live.policy.limits.max_frame_bytes
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            await c.send(
                padded({"type": "chat", "session": sid, "seq": 1, "t": 1.0, "message_id": "m"}, limit + 1)
            )
            with pytest.raises(ConnectionClosed):
                await c.until("never")
            assert c.ws.close_code == 1009

    async def test_size_counts_after_decompression(self, dsn: str, ingest_key: str) -> None:
        async with node(dsn, compression=True) as n:
            limit = n.policy.limits.max_frame_bytes
            async with live_client(n.url, ingest_key, compression="deflate") as c:
                # Compresses to a few hundred bytes on the wire; 1 byte over the limit once inflated.
                await c.send(
                    padded({"type": "chat", "session": "s", "seq": 1, "t": 1.0, "message_id": "m"}, limit + 1)
                )
                with pytest.raises(ConnectionClosed):
                    await c.until("never")
                assert c.ws.close_code == 1009

    async def test_permessage_deflate_is_not_negotiated_unless_configured(
        self, live: Node, ingest_key: str
    ) -> None:
        async with live_client(live.url, ingest_key, compression="deflate") as c:
            assert c.ws.response is not None
            assert "Sec-WebSocket-Extensions" not in c.ws.response.headers

    async def test_over_the_rate_messages_are_dropped_with_one_rate_limited_a_second(
        self, dsn: str, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with (
            node(dsn, policy_with("[limits]\nmax_msgs_per_s = 10\n" + ROOMY)) as n,
            live_client(n.url, ingest_key) as c,
        ):
            sid = await opened(c, avatar)
            for seq in range(1, 31):  # 30 at once against a burst of 10
                await c.send(tracking(sid, seq, float(seq)))
            first = await c.until("rate_limited" if False else (lambda m: m.get("code") == "rate_limited"))
            await asyncio.sleep(0.3)
            # Dropped messages were never processed: seq 11.. never arrived, so the next is a gap.
            await c.send({"type": "session.close", "session": sid, "seq": 31})
            summary = await c.until("session.summary")
        assert first["type"] == "error" and first["detail"]
        assert len(errors_of(c, "rate_limited")) == 1  # at most one a second
        gap = errors_of(c, "seq_gap")
        assert gap and gap[0]["ref_seq"] == 31
        assert summary["session"] == sid

    async def test_pings_do_not_count(self, dsn: str, ingest_key: str) -> None:
        async with (
            node(dsn, policy_with("[limits]\nmax_msgs_per_s = 5\n")) as n,
            live_client(n.url, ingest_key) as c,
        ):
            for _ in range(30):
                pong = await c.ws.ping()
                await asyncio.wait_for(pong, 2.0)
            await c.send({"type": "chat", "session": "nobody", "seq": 1, "t": 1.0, "message_id": "m"})
            reply = await c.until("error")
        assert reply["code"] == "unknown_session"  # not rate_limited: 30 pings spent no token

    @pytest.mark.slow
    async def test_drops_in_five_consecutive_seconds_close_with_1008(self, dsn: str, ingest_key: str) -> None:
        async with (
            node(dsn, policy_with("[limits]\nmax_msgs_per_s = 5\n")) as n,
            live_client(n.url, ingest_key) as c,
        ):
            bad = json.dumps({"type": "chat"})
            # Keep reading, as a client must: a client that stops reading never sees the close frame.
            reader = asyncio.create_task(c.until("never", within=15.0))
            with pytest.raises(ConnectionClosed):
                for _ in range(200):  # ~20 messages a second for up to 10 s
                    await c.send(bad)
                    await asyncio.sleep(0.05)
            with pytest.raises(ConnectionClosed):
                await reader
            assert c.ws.close_code == 1008
        assert 1 <= len(errors_of(c, "rate_limited")) <= 7  # one a second at most

    async def test_sessions_beyond_max_sessions_are_rejected(
        self, dsn: str, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with (
            node(dsn, policy_with("[limits]\nmax_sessions = 2\n" + ROOMY)) as n,
            live_client(n.url, ingest_key) as c,
        ):
            await opened(c, avatar)
            await opened(c, avatar)
            third = await c.open(new_session_id(), avatar["avatar_id"], avatar["operator_id"])
        assert third["type"] == "session.rejected"
        assert third["reason"] == "too_many_sessions"
        assert third["detail"]


class TestKeepalive:
    async def test_keepalive_when_the_server_was_silent(self, dsn: str, ingest_key: str) -> None:
        async with (
            node(dsn, policy_with("[limits]\nkeepalive_s = 0.3\n")) as n,
            live_client(n.url, ingest_key) as c,
        ):
            loop = asyncio.get_running_loop()
            start = loop.time()
            # Pongs are not messages: pinging does not hold the keepalive back.
            pong = await c.ws.ping()
            await pong
            msg = await c.recv(within=2.0)
            waited = loop.time() - start
        assert msg == {"type": "keepalive"}
        assert 0.25 <= waited < 1.5


# --------------------------------------------------------------------------------------------------- Time


class TestSeq:
    async def test_first_seq_is_1_and_each_next_one_more(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            for seq in (1, 2, 3):
                await c.send(tracking(sid, seq, float(seq)))
            await closed(c, sid, 4)
        assert not errors_of(c)

    async def test_a_repeat_or_a_step_back_is_bad_seq_and_the_session_goes_on(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            await c.send(tracking(sid, 1, 1.0))
            await c.send(tracking(sid, 2, 2.0))
            await c.send(tracking(sid, 2, 3.0))
            repeat = await c.until("error")
            await c.send(tracking(sid, 1, 4.0))
            back = await c.until("error")
            summary = await closed(c, sid, 3)
        assert (repeat["code"], repeat["session"], repeat["ref_seq"]) == ("bad_seq", sid, 2)
        assert (back["code"], back["ref_seq"]) == ("bad_seq", 1)
        assert summary["session"] == sid

    async def test_a_gap_is_accepted_counted_and_named(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            await c.send(tracking(sid, 1, 1.0))
            await c.send(tracking(sid, 5, 2.0))
            gap = await c.until("error")
            await c.send(tracking(sid, 6, 3.0))  # continues from the new seq
            await closed(c, sid, 7)
        assert (gap["code"], gap["session"], gap["ref_seq"]) == ("seq_gap", sid, 5)
        assert "2" in gap["detail"] and "4" in gap["detail"]
        assert len(errors_of(c)) == 1

    async def test_a_refused_message_uses_up_no_seq(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            bad = tracking(sid, 1, 1.0) | {"colour": "red"}
            await c.send(bad)
            refused = await c.until("error")
            await c.send(tracking(sid, 1, 1.0))  # the same seq again
            await closed(c, sid, 2)
        assert (refused["code"], refused["session"], refused["ref_seq"]) == ("bad_message", sid, 1)
        assert len(errors_of(c)) == 1

    async def test_ts_must_increase_across_messages(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            await c.send(tracking(sid, 1, 10.0))
            await c.send(tracking(sid, 2, 5.0))
            err = await c.until("error")
            await c.send(tracking(sid, 2, 11.0))
            await closed(c, sid, 3)
        assert (err["code"], err["ref_seq"]) == ("bad_message", 2)
        assert "ts" in err["detail"]

    async def test_ts_must_increase_within_a_message(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            msg = tracking(sid, 1, 10.0, n=3)
            msg["ts"] = [10.0, 10.1, 10.05]
            await c.send(msg)
            err = await c.until("error")
        assert (err["code"], err["ref_seq"]) == ("bad_message", 1)


# ------------------------------------------------------------------------------------------ Client → server


class TestClientMessages:
    async def test_every_client_message_is_accepted(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
    ) -> None:
        async with pool.acquire() as conn:
            ref = await conn.fetchval(
                "SELECT pdq FROM avatar_images WHERE avatar_id = $1::text::uuid LIMIT 1", avatar["avatar_id"]
            )
        async with live_client(live.url, ingest_key) as c:
            sid = new_session_id()
            accepted = await c.open(sid, avatar["avatar_id"], avatar["operator_id"], stream_id="stream-42")
            assert accepted["type"] == "session.accepted"
            full = tracking(sid, 1, 1.0, n=4, mouthSmileLeft=0.3, browInnerUp=0.1)
            full["face"] = [True, True, False, True]
            full["source"] = "arkit"
            await c.send(full)
            await c.send({"type": "chat", "session": sid, "seq": 2, "t": 2.0, "message_id": "m-1"})
            await c.send(
                {"type": "speech", "session": sid, "seq": 3, "t0": 2.5, "t1": 3.5, "reply_to": "m-1"}
            )
            await c.send({"type": "speech", "session": sid, "seq": 4, "t0": 4.0, "t1": 4.2})
            await c.send(
                {"type": "frame", "session": sid, "seq": 5, "t": 5.0, "pdq": ref.hex(), "quality": 90}
            )
            summary = await closed(c, sid, 6)
        assert not errors_of(c)
        assert summary["final_state"] == "pending"
        assert set(summary) == {
            "type",
            "session",
            "duration_s",
            "final_state",
            "worst_state",
            "challenges",
            "reasons",
        }

    @pytest.mark.parametrize(
        ("frame", "ref_seq"),
        [
            ("{not json", None),
            ('["a", "list"]', None),
            ('{"type": "session.teleport", "session": "x"}', None),
            ('{"type": "chat", "session": "bad id!", "seq": 1, "t": 1, "message_id": "m"}', 1),
            ('{"type": "chat", "session": "x", "seq": 1, "t": 1, "message_id": "m", "extra": 1}', 1),
            ('{"type": "chat", "session": "x", "seq": 1.5, "t": 1, "message_id": "m"}', None),
            ('{"type": "chat", "session": "x", "seq": 1, "t": NaN, "message_id": "m"}', 1),
            ('{"type": "tracking", "session": "x", "seq": 1, "ts": [1], "channels": {"headYaw": [0]}}', 1),
            ('{"type": "frame", "session": "x", "seq": 1, "t": 1, "pdq": "zz", "quality": 50}', 1),
            ('{"type": "session.open", "session": "x", "avatar_id": "a"}', None),
        ],
    )
    async def test_malformed_messages_are_bad_message(
        self, live: Node, ingest_key: str, frame: str, ref_seq: int | None
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            await c.send(frame)
            err = await c.until("error")
        assert err["code"] == "bad_message"
        assert err["detail"]
        assert err.get("ref_seq") == ref_seq

    async def test_bad_message_names_the_session_when_it_could_be_read(
        self, live: Node, ingest_key: str
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            await c.send({"type": "chat", "session": "known-id", "seq": 3, "t": 1, "message_id": "m", "x": 1})
            err = await c.until("error")
        assert (err["code"], err["session"], err["ref_seq"]) == ("bad_message", "known-id", 3)
        assert "x" in err["detail"]

    async def test_messages_of_an_unknown_session_are_unknown_session(
        self, live: Node, ingest_key: str
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            await c.send(tracking("never-opened", 7, 1.0))
            err = await c.until("error")
        assert (err["code"], err["session"], err["ref_seq"]) == ("unknown_session", "never-opened", 7)

    async def test_challenge_shown_for_a_challenge_never_issued_is_bad_message(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await opened(c, avatar)
            await c.send(
                {"type": "challenge.shown", "session": sid, "seq": 1, "t": 1.0, "challenge_id": "c9"}
            )
            err = await c.until("error")
            await closed(c, sid, 1)  # refused: seq 1 is still free
        assert (err["code"], err["ref_seq"]) == ("bad_message", 1)


class TestInternalError:
    async def test_an_open_the_server_cannot_decide_is_error_internal(
        self, dsn: str, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with node(dsn) as n, live_client(n.url, ingest_key) as c:
            await n.pool.close()  # the database goes away under the node
            sid = new_session_id()
            await c.send({"type": "session.open", "session": sid, "avatar_id": avatar["avatar_id"],
                          "operator_id": avatar["operator_id"]})  # fmt: skip
            err = await c.until("error")
            await c.send(tracking(sid, 1, 1.0))
            after = await c.until("error")
        assert (err["code"], err["session"]) == ("internal", sid)
        assert "try again" in err["detail"]
        assert after["code"] == "unknown_session"  # the open was not half-done
