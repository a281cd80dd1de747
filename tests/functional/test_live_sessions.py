"""PROTOCOL.md "Meaning" over a real server and database: admission and every rejection reason,
challenges, verdicts, terminations (staff, suspension, revocation, violation), resumption, and what staff
see afterwards over HTTP (``/v1/sessions``)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from livecheck.node import Node
from registry.config import Settings
from registry.roles import Role
from tests.factories import auth, make_key, verified_operator
from tests.functional.avatar_helpers import encode, fresh_image, register
from tests.functional.live_helpers import (
    LiveClient,
    Streamer,
    live_client,
    new_live_avatar,
    new_session_id,
    node,
    policy_with,
    tracking,
    unverified_operator,
    wait_for,
)

Client = TestClient[Any, Any]

# Short windows so resumption, expiry and checkpoints happen within a test.
FAST = """
[sessions]
checkpoint_s = 0.3
resume_window_s = 1.5
verdict_interval_s = 0.5
"""
# One challenge action, issued two seconds after admission and every two seconds after.
CHALLENGING = """
[challenges]
mean_interval_s = 2
jitter_s = 0
show_within_s = 1
deadline_s = 1
enabled = ["turn_head_left"]
"""


@pytest.fixture(scope="module")
async def live(dsn: str) -> AsyncIterator[Node]:
    """The default busy limits (one session per avatar, one per operator), fast windows."""
    async with node(dsn, policy_with(FAST)) as n:
        yield n


@pytest.fixture
async def avatar(client: Client, platform_key: str, idp_dir: Path, settings: Settings) -> dict[str, Any]:
    return await new_live_avatar(client, platform_key, idp_dir, settings.audience)


async def accepted(c: LiveClient, avatar: dict[str, Any], sid: str | None = None) -> str:
    sid = sid or new_session_id()
    msg = await c.open(sid, avatar["avatar_id"], avatar["operator_id"])
    assert msg["type"] == "session.accepted", msg
    return sid


async def rejected(c: LiveClient, avatar_id: str, operator_id: str) -> dict[str, Any]:
    msg = await c.open(new_session_id(), avatar_id, operator_id)
    assert msg["type"] == "session.rejected", msg
    assert msg["detail"]
    return msg


async def set_status(client: Client, staff_key: str, avatar_id: str, status: str) -> None:
    r = await client.post(
        f"/v1/avatars/{avatar_id}/status", json={"status": status, "reason": "test"}, headers=auth(staff_key)
    )
    assert r.status == 200, await r.text()


async def staff_view(client: Client, staff_key: str, pk: str) -> dict[str, Any]:
    r = await client.get(f"/v1/sessions/{pk}", headers=auth(staff_key))
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def pk_of(pool: asyncpg.Pool, session: str) -> str:
    async with pool.acquire() as conn:
        return str(await conn.fetchval("SELECT id FROM live_sessions WHERE session = $1", session))


# -------------------------------------------------------------------------------------------- Admission


class TestAdmission:
    async def test_owner_and_delegate_are_admitted(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, platform_key: str,
        idp_dir: Path, settings: Settings,
    ) -> None:  # fmt: skip
        delegate = await verified_operator(client, platform_key, idp_dir, settings.audience)
        r = await client.put(
            f"/v1/avatars/{avatar['avatar_id']}/delegates/{delegate['id']}",
            headers=auth(avatar["operator_key"]),
        )
        assert r.status in (200, 201, 204), await r.text()
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            await c.send({"type": "session.close", "session": sid, "seq": 1})
            await c.until("session.summary")
            as_delegate = await c.open(new_session_id(), avatar["avatar_id"], delegate["id"])
        assert as_delegate["type"] == "session.accepted"

    async def test_unknown_avatar(self, live: Node, ingest_key: str, avatar: dict[str, Any]) -> None:
        async with live_client(live.url, ingest_key) as c:
            by_uuid = await rejected(c, "00000000-0000-4000-8000-000000000000", avatar["operator_id"])
            by_junk = await rejected(c, "not-an-avatar", avatar["operator_id"])
        assert by_uuid["reason"] == by_junk["reason"] == "avatar_unknown"

    async def test_unknown_operator(self, live: Node, ingest_key: str, avatar: dict[str, Any]) -> None:
        async with live_client(live.url, ingest_key) as c:
            msg = await rejected(c, avatar["avatar_id"], "00000000-0000-4000-8000-000000000001")
        assert msg["reason"] == "operator_unknown"

    async def test_unverified_operator(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, platform_key: str
    ) -> None:
        stranger = await unverified_operator(client, platform_key)
        async with live_client(live.url, ingest_key) as c:
            msg = await rejected(c, avatar["avatar_id"], stranger)
        assert msg["reason"] == "operator_unverified"  # before operator_not_authorized in the order

    async def test_neither_owner_nor_delegate(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, platform_key: str,
        idp_dir: Path, settings: Settings,
    ) -> None:  # fmt: skip
        other = await verified_operator(client, platform_key, idp_dir, settings.audience)
        async with live_client(live.url, ingest_key) as c:
            msg = await rejected(c, avatar["avatar_id"], other["id"])
        assert msg["reason"] == "operator_not_authorized"

    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            ("suspended", "avatar_suspended"),
            ("revoked", "avatar_revoked"),
            ("held_for_review", "avatar_suspended"),
        ],
    )
    async def test_an_avatar_that_is_not_active(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, staff_key: str,
        status: str, reason: str,
    ) -> None:  # fmt: skip
        await set_status(client, staff_key, avatar["avatar_id"], status)
        async with live_client(live.url, ingest_key) as c:
            msg = await rejected(c, avatar["avatar_id"], avatar["operator_id"])
            # When several apply, the first in the contract's order: the avatar before the operator.
            both = await rejected(c, avatar["avatar_id"], "00000000-0000-4000-8000-000000000002")
        assert msg["reason"] == both["reason"] == reason

    async def test_ids_are_never_reused_by_one_key(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        sid = new_session_id()
        async with live_client(live.url, ingest_key) as c:
            await accepted(c, avatar, sid)
            again_here = await c.open(sid, avatar["avatar_id"], avatar["operator_id"])
            await c.send({"type": "session.close", "session": sid, "seq": 1})
            await c.until("session.summary")
        async with live_client(live.url, ingest_key) as c:
            again_later = await c.open(sid, avatar["avatar_id"], avatar["operator_id"])
        assert again_here["reason"] == again_later["reason"] == "session_exists"

    async def test_another_key_may_use_the_same_id(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
    ) -> None:
        sid = new_session_id()
        other_key = await make_key(pool, Role.INGEST)
        async with live_client(live.url, ingest_key) as c:
            await accepted(c, avatar, sid)
            await c.send({"type": "session.close", "session": sid, "seq": 1})
            await c.until("session.summary")
        async with live_client(live.url, other_key) as c:
            msg = await c.open(sid, avatar["avatar_id"], avatar["operator_id"])
        assert msg["type"] == "session.accepted"

    async def test_avatar_busy_until_its_session_ends(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, platform_key: str,
        idp_dir: Path, settings: Settings,
    ) -> None:  # fmt: skip
        delegate = await verified_operator(client, platform_key, idp_dir, settings.audience)
        r = await client.put(
            f"/v1/avatars/{avatar['avatar_id']}/delegates/{delegate['id']}",
            headers=auth(avatar["operator_key"]),
        )
        assert r.status in (200, 201, 204)
        async with live_client(live.url, ingest_key) as a, live_client(live.url, ingest_key) as b:
            sid = await accepted(a, avatar)
            busy = await rejected(b, avatar["avatar_id"], delegate["id"])
            await a.send({"type": "session.close", "session": sid, "seq": 1})
            await a.until("session.summary")
            free = await b.open(new_session_id(), avatar["avatar_id"], delegate["id"])
        assert busy["reason"] == "avatar_busy"
        assert free["type"] == "session.accepted"

    async def test_operator_busy_driving_another_avatar(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client
    ) -> None:
        r = await register(
            client, avatar["operator_key"], [encode(fresh_image("illustration"))], name="Second"
        )
        assert r.status == 201, await r.text()
        second = (await r.json())["avatar"]["id"]
        async with live_client(live.url, ingest_key) as c:
            await accepted(c, avatar)
            msg = await rejected(c, second, avatar["operator_id"])
        assert msg["reason"] == "operator_busy"

    async def test_refusals_are_recorded(self, live: Node, ingest_key: str, pool: asyncpg.Pool) -> None:
        sid = new_session_id("refused")
        async with live_client(live.url, ingest_key) as c:
            await c.open(sid, "no-such-avatar", "no-such-operator")
        row = await wait_for(lambda: _admission(pool, sid))
        assert (row["accepted"], row["reason"], row["kind"]) == (False, "avatar_unknown", "open")


async def _admission(pool: asyncpg.Pool, session: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM live_admissions WHERE session = $1", session)


# ------------------------------------------------------------------------------------- Verdicts, challenges


class TestVerdicts:
    async def test_a_pending_verdict_follows_accepted_then_one_every_interval(
        self, live: Node, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            first = await c.recv()
            s = Streamer(c, sid)
            s.start()
            await asyncio.sleep(1.7)
            await s.stop()
            await c.send({"type": "session.close", "session": sid, "seq": s.next_seq()})
            await c.until("session.summary")
        verdicts = [m for m in c.seen if m["type"] == "verdict"]
        assert first["type"] == "verdict" and first["state"] == "pending" and first["at_seq"] == 0
        assert len(verdicts) >= 3  # verdict_interval_s = 0.5 over 1.7 s, plus the first
        assert all(
            set(v) == {"type", "session", "state", "score", "action", "reasons", "at_seq"} for v in verdicts
        )
        assert all(0.0 <= v["score"] <= 1.0 and v["reasons"] for v in verdicts)
        seqs = [v["at_seq"] for v in verdicts]
        assert seqs == sorted(seqs) and seqs[-1] > 0


class TestChallenges:
    async def test_a_challenge_answered_by_the_person_passes_with_its_reaction_time(
        self,
        dsn: str,
        ingest_key: str,
        avatar: dict[str, Any],
        client: Client,
        staff_key: str,
        pool: asyncpg.Pool,
    ) -> None:
        turn_at: list[float] = []

        def pose(t: float) -> dict[str, float]:
            # The person turns to their own left (yaw > 0), 25 degrees in 0.4 s, once prompted.
            if turn_at and t >= turn_at[0]:
                return {"headYaw": min(25.0, 62.5 * (t - turn_at[0]))}
            return {}

        async with node(dsn, policy_with(CHALLENGING)) as n, live_client(n.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            s = Streamer(c, sid, pose)
            s.start()
            challenge = await c.until("challenge", within=4.0)
            shown_t = s.clock()
            await s.send({"type": "challenge.shown", "t": shown_t, "challenge_id": challenge["challenge_id"]})
            turn_at.append(shown_t + 0.35)
            await asyncio.sleep(1.2)
            await s.stop()
            await c.send({"type": "session.close", "session": sid, "seq": s.next_seq()})
            summary = await c.until("session.summary")
            await n.recorder.flush()
        assert challenge["action"] == "turn_head_left"
        assert challenge["deadline_s"] == 1
        assert set(challenge) == {"type", "session", "challenge_id", "action", "deadline_s"}
        assert summary["challenges"]["issued"] >= 1 and summary["challenges"]["passed"] >= 1
        view = await staff_view(client, staff_key, await pk_of(pool, sid))
        first = next(ch for ch in view["challenges"] if ch["challenge_id"] == challenge["challenge_id"])
        assert first["result"] == "passed"
        # Onset = the first sample 20% of the way (3 of 15 degrees): 350 ms + 48 ms, on 30 Hz samples.
        assert 350 <= first["reaction_ms"] <= 480
        assert first["flags"] == []

    async def test_an_answer_faster_than_a_person_fails(
        self,
        dsn: str,
        ingest_key: str,
        avatar: dict[str, Any],
        client: Client,
        staff_key: str,
        pool: asyncpg.Pool,
    ) -> None:
        turn_at: list[float] = []

        def pose(t: float) -> dict[str, float]:
            return {"headYaw": 25.0} if turn_at and t >= turn_at[0] else {}

        async with node(dsn, policy_with(CHALLENGING)) as n, live_client(n.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            s = Streamer(c, sid, pose)
            s.start()
            challenge = await c.until("challenge", within=4.0)
            shown_t = s.clock()
            await s.send({"type": "challenge.shown", "t": shown_t, "challenge_id": challenge["challenge_id"]})
            turn_at.append(shown_t + 0.05)  # 50 ms: faster than min_reaction_ms (150)
            await asyncio.sleep(1.0)
            await s.stop()
            await c.send({"type": "session.close", "session": sid, "seq": s.next_seq()})
            summary = await c.until("session.summary")
            await n.recorder.flush()
        assert summary["challenges"]["failed"] >= 1
        view = await staff_view(client, staff_key, await pk_of(pool, sid))
        first = view["challenges"][0]
        assert first["result"] == "failed" and "reaction_too_fast" in first["flags"]

    async def test_a_challenge_never_shown_is_missed(
        self, dsn: str, ingest_key: str, avatar: dict[str, Any]
    ) -> None:
        async with node(dsn, policy_with(CHALLENGING)) as n, live_client(n.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            s = Streamer(c, sid)
            s.start()
            await c.until("challenge", within=4.0)
            await asyncio.sleep(1.3)  # show_within_s = 1 passes
            await s.stop()
            await c.send({"type": "session.close", "session": sid, "seq": s.next_seq()})
            summary = await c.until("session.summary")
        assert summary["challenges"]["missed"] >= 1
        assert summary["challenges"]["passed"] == 0


# ------------------------------------------------------------------------------------------- Terminations


async def _terminated(
    c: LiveClient, sid: str, within: float = 2.0
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """``session.terminate`` then ``session.summary`` within ``within`` seconds; and how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    term = await c.until(
        lambda m: m.get("type") == "session.terminate" and m["session"] == sid, within=within
    )
    took = loop.time() - start
    summary = await c.recv()
    assert summary["type"] == "session.summary" and summary["session"] == sid
    return term, summary, took


class TestTerminations:
    async def test_staff_terminate(
        self,
        live: Node,
        ingest_key: str,
        avatar: dict[str, Any],
        client: Client,
        staff_key: str,
        pool: asyncpg.Pool,
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            await c.send(tracking(sid, 1, 1.0))
            pk = await wait_for(lambda: pk_of(pool, sid))
            r = await client.post(
                f"/v1/sessions/{pk}/terminate", json={"reason": "abuse"}, headers=auth(staff_key)
            )
            assert r.status == 202, await r.text()
            term, summary, took = await _terminated(c, sid)
            await c.send(tracking(sid, 2, 2.0))
            late = await c.until("error")
        assert term["reason"] == "staff_action" and took < 2.0
        assert summary["final_state"] in ("pending", "human", "at_risk", "violation")
        assert (late["code"], late["session"]) == ("unknown_session", sid)
        row = await wait_for(lambda: _ended(pool, sid))
        assert row["end_reason"] == "staff_action" and row["summary"]["session"] == sid
        again = await client.post(
            f"/v1/sessions/{pk}/terminate", json={"reason": "again"}, headers=auth(staff_key)
        )
        assert again.status == 409 and (await again.json())["error"]["code"] == "session_ended"

    async def test_staff_terminate_of_a_detached_session_ends_it(
        self,
        live: Node,
        ingest_key: str,
        avatar: dict[str, Any],
        client: Client,
        staff_key: str,
        pool: asyncpg.Pool,
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            await c.send(tracking(sid, 1, 1.0))
            await asyncio.sleep(0.1)
        pk = await pk_of(pool, sid)
        await wait_for(lambda: _detached(pool, sid))
        r = await client.post(
            f"/v1/sessions/{pk}/terminate", json={"reason": "abuse"}, headers=auth(staff_key)
        )
        assert r.status == 202, await r.text()
        row = await wait_for(lambda: _ended(pool, sid), within=3.0)  # well before its resume window ends
        async with live_client(live.url, ingest_key) as c:
            await c.send({"type": "session.resume", "session": sid, "last_seq": 1})
            err = await c.until("error")
        assert row["end_reason"] == "staff_action" and row["summary"]["session"] == sid
        assert err["code"] == "unknown_session"

    async def test_suspension_ends_the_session_within_2_s(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, staff_key: str
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            await set_status(client, staff_key, avatar["avatar_id"], "suspended")
            term, _, took = await _terminated(c, sid)
        assert term["reason"] == "avatar_suspended" and took < 2.0

    async def test_identity_revocation_ends_the_session_within_2_s(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, staff_key: str
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            r = await client.post(
                f"/v1/operators/{avatar['operator_id']}/identity/revoke",
                json={"reason": "fraudulent identity"},
                headers=auth(staff_key),
            )
            assert r.status == 200, await r.text()
            term, _, took = await _terminated(c, sid)
        assert term["reason"] == "operator_revoked" and took < 2.0

    async def test_a_likeness_that_is_not_the_avatar_is_a_violation(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            for seq in range(1, 7):
                pdq = secrets.token_bytes(32).hex()  # another picture: ~128 bits from every reference
                await c.send(
                    {"type": "frame", "session": sid, "seq": seq, "t": float(seq), "pdq": pdq, "quality": 95}
                )
            verdict = await c.until(lambda m: m.get("type") == "verdict" and m["state"] == "violation")
            term, summary, _ = await _terminated(c, sid)
        assert verdict["action"] == "terminate" and verdict["reasons"]
        assert term["reason"] == "violation"
        assert summary["final_state"] == summary["worst_state"] == "violation"
        row = await wait_for(lambda: _ended(pool, sid))
        assert row["verdict_state"] == "violation"


async def _detached(pool: asyncpg.Pool, session: str) -> bool:
    async with pool.acquire() as conn:
        return bool(
            await conn.fetchval("SELECT state = 'detached' FROM live_sessions WHERE session = $1", session)
        )


async def _ended(pool: asyncpg.Pool, session: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT * FROM live_sessions WHERE session = $1 AND state = 'ended'", session
        )


# -------------------------------------------------------------------------------------------------- Resume


class TestResume:
    async def test_a_dropped_session_resumes_where_it_was(
        self,
        live: Node,
        ingest_key: str,
        avatar: dict[str, Any],
        client: Client,
        staff_key: str,
        pool: asyncpg.Pool,
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            for seq in range(1, 6):
                await c.send(tracking(sid, seq, float(seq)))
            await asyncio.sleep(0.2)
        # Dropped. While detached the session keeps its avatar busy.
        async with live_client(live.url, ingest_key) as c:
            busy = await c.open(new_session_id(), avatar["avatar_id"], avatar["operator_id"])
            await c.send({"type": "session.resume", "session": sid, "last_seq": 5})
            back = await c.until("session.accepted")
            verdict = await c.until("verdict")
            await c.send(tracking(sid, 6, 6.0))
            await _close(c, sid, 7)
            summary = await c.until("session.summary")
        assert busy["reason"] == "avatar_busy"
        assert back["resume_from_seq"] == 6 and back["policy"]["resume_window_s"] == 1.5
        assert verdict["at_seq"] == 5
        assert summary["session"] == sid and not [m for m in c.seen if m["type"] == "error"]
        await live.recorder.flush()
        view = await staff_view(client, staff_key, await pk_of(pool, sid))
        kinds = [e["kind"] for e in view["events"]]
        assert kinds[:2] == ["opened", "detached"] and "resumed" in kinds and kinds[-1] == "ended"
        assert [a["kind"] for a in view["admissions"] if a["accepted"]] == ["open", "resume"]

    async def test_a_running_session_is_checkpointed_every_checkpoint_s(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            for seq in range(1, 4):
                await c.send(tracking(sid, seq, float(seq)))
            first = await wait_for(lambda: _checkpoint(pool, sid))  # checkpoint_s = 0.3
            await c.send(tracking(sid, 4, 4.0))
            later = await wait_for(lambda: _checkpoint(pool, sid, after=first["taken_at"]))
            still = await _state(pool, sid)
        assert first["last_seq"] == 3 and later["last_seq"] == 4
        assert still == "active"  # written while the session runs, not only when it stops

    async def test_resume_of_an_unknown_or_ended_session_is_unknown_session(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
    ) -> None:
        other_key = await make_key(pool, Role.INGEST)
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            await _close(c, sid, 1)
            await c.until("session.summary")
            await c.send({"type": "session.resume", "session": sid, "last_seq": 1})
            ended = await c.until("error")
            await c.send({"type": "session.resume", "session": "never-was", "last_seq": 0})
            never = await c.until("error")
        async with live_client(live.url, other_key) as c:  # ids belong to the key that opened them
            await c.send({"type": "session.resume", "session": sid, "last_seq": 1})
            foreign = await c.until("error")
        for err in (ended, never, foreign):
            assert err["code"] == "unknown_session", err

    async def test_after_the_resume_window_it_ends_with_its_summary(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            await c.send(tracking(sid, 1, 1.0))
            await asyncio.sleep(0.1)
        row = await wait_for(lambda: _ended(pool, sid), within=6.0)  # window 1.5 s, reaped every 0.2 s
        async with live_client(live.url, ingest_key) as c:
            await c.send({"type": "session.resume", "session": sid, "last_seq": 1})
            err = await c.until("error")
            free = await c.open(new_session_id(), avatar["avatar_id"], avatar["operator_id"])
        assert row["end_reason"] == "resume_expired"
        assert row["summary"]["session"] == sid and set(row["summary"]["challenges"]) == {
            "issued", "passed", "failed", "missed", "open"
        }  # fmt: skip
        assert err["code"] == "unknown_session"
        assert free["type"] == "session.accepted"  # no longer busy


async def _checkpoint(pool: asyncpg.Pool, session: str, after: Any = None) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            """SELECT c.last_seq, c.taken_at FROM session_checkpoints c
               JOIN live_sessions s ON s.id = c.session_pk
               WHERE s.session = $1 AND ($2::timestamptz IS NULL OR c.taken_at > $2)""",
            session,
            after,
        )


async def _state(pool: asyncpg.Pool, session: str) -> str:
    async with pool.acquire() as conn:
        return str(await conn.fetchval("SELECT state FROM live_sessions WHERE session = $1", session))


async def _close(c: LiveClient, sid: str, seq: int) -> None:
    await c.send({"type": "session.close", "session": sid, "seq": seq})


# ---------------------------------------------------------------------------------------- Staff over HTTP


class TestStaffRoutes:
    async def test_listing_filters_and_pages(
        self, live: Node, ingest_key: str, avatar: dict[str, Any], client: Client, staff_key: str
    ) -> None:
        sids = []
        async with live_client(live.url, ingest_key) as c:
            for _ in range(3):
                sid = await accepted(c, avatar)
                await _close(c, sid, 1)
                await c.until("session.summary")
                sids.append(sid)
        await live.recorder.flush()
        seen: list[str] = []
        cursor = None
        while True:
            params = {"avatar_id": avatar["avatar_id"], "limit": "2"} | ({"cursor": cursor} if cursor else {})
            r = await client.get("/v1/sessions", params=params, headers=auth(staff_key))
            assert r.status == 200, await r.text()
            page = await r.json()
            seen += [item["session"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(sids))  # newest first, every one once
        r = await client.get(
            "/v1/sessions", params={"state": "ended", "session": sids[0]}, headers=auth(staff_key)
        )
        items = (await r.json())["items"]
        assert [(i["session"], i["state"], i["end_reason"]) for i in items] == [(sids[0], "ended", "closed")]
        assert items[0]["summary"]["session"] == sids[0] and items[0]["verdict"]["state"] == "pending"
        r = await client.get("/v1/sessions", params={"cursor": "garbage"}, headers=auth(staff_key))
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_cursor"

    async def test_detail_has_the_verdict_timeline(
        self,
        live: Node,
        ingest_key: str,
        avatar: dict[str, Any],
        client: Client,
        staff_key: str,
        pool: asyncpg.Pool,
    ) -> None:
        async with live_client(live.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            await _close(c, sid, 1)
            await c.until("session.summary")
        await live.recorder.flush()
        view = await staff_view(client, staff_key, await pk_of(pool, sid))
        assert view["session"] == sid and view["state"] == "ended"
        assert view["verdicts"][0]["state"] == "pending" and view["verdicts"][0]["reasons"]
        assert view["node_id"] == live.id

    async def test_unknown_session_is_404(self, client: Client, staff_key: str) -> None:
        r = await client.get("/v1/sessions/00000000-0000-4000-8000-000000000000", headers=auth(staff_key))
        assert r.status == 404
        r = await client.post(
            "/v1/sessions/00000000-0000-4000-8000-000000000000/terminate",
            json={"reason": "no such"},
            headers=auth(staff_key),
        )
        assert r.status == 404

    async def test_terminate_needs_a_reason(self, client: Client, staff_key: str) -> None:
        r = await client.post(
            "/v1/sessions/00000000-0000-4000-8000-000000000000/terminate", json={}, headers=auth(staff_key)
        )
        assert r.status == 400
