"""Several livecheck nodes on one database (PROTOCOL.md "Resume", DESIGN §10): a session resumes on
another node with its evidence, a killed node's sessions resume elsewhere, staff and registry actions
reach whichever node holds a session, busy limits hold across nodes, and a draining node (SIGTERM,
``serve livecheck --drain``, or in process) moves its sessions without losing one.

Nodes run in this process (``running_node``) or as real ``avatar-registry serve livecheck`` processes
when the test needs a signal or a SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from livecheck.node import Node
from livecheck.store import snapshot_of
from registry.config import Settings
from tests.factories import auth
from tests.functional.live_helpers import (
    LiveClient,
    live_client,
    new_live_avatar,
    new_session_id,
    node,
    policy_with,
    tracking,
    wait_for,
)

Client = TestClient[Any, Any]

FAST = """
[sessions]
checkpoint_s = 0.3
resume_window_s = 20
"""
CLI = [sys.executable, "-m", "registry"]


@pytest.fixture
async def avatar(client: Client, platform_key: str, idp_dir: Path, settings: Settings) -> dict[str, Any]:
    return await new_live_avatar(client, platform_key, idp_dir, settings.audience)


@asynccontextmanager
async def two_nodes(dsn: str) -> AsyncIterator[tuple[Node, Node]]:
    async with node(dsn, policy_with(FAST)) as a, node(dsn, policy_with(FAST)) as b:
        yield a, b


async def accepted(c: LiveClient, avatar: dict[str, Any], sid: str | None = None) -> str:
    sid = sid or new_session_id()
    msg = await c.open(sid, avatar["avatar_id"], avatar["operator_id"])
    assert msg["type"] == "session.accepted", msg
    return sid


async def resume(c: LiveClient, sid: str, last_seq: int) -> dict[str, Any]:
    await c.send({"type": "session.resume", "session": sid, "last_seq": last_seq})
    msg = await c.until(lambda m: m.get("session") == sid and m["type"] in ("session.accepted", "error"))
    assert msg["type"] == "session.accepted", msg
    return msg


async def final_checkpoint(pool: asyncpg.Pool, sid: str) -> dict[str, Any]:
    async def ended() -> asyncpg.Record | None:
        async with pool.acquire() as conn:
            return await conn.fetchrow(
                """SELECT s.node_id, s.end_reason, c.snapshot FROM live_sessions s
                   JOIN session_checkpoints c ON c.session_pk = s.id
                   WHERE s.session = $1 AND s.state = 'ended'""",
                sid,
            )

    row = dict(await wait_for(ended))
    row["snapshot"] = snapshot_of(row["snapshot"])
    return row


def engine_samples(snapshot: dict[str, Any]) -> int:
    """Tracking samples the session's engine has seen (the evidence engine and the challenge engine
    both keep a count in their snapshots)."""
    engine = snapshot["engine"]
    return int(engine.get("samples", engine.get("received", -1)))


# ------------------------------------------------------------------------------------ resume across nodes


async def test_a_session_resumes_on_another_node_with_its_evidence(
    dsn: str, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
) -> None:
    async with two_nodes(dsn) as (a, b):
        async with live_client(a.url, ingest_key) as c:
            sid = await accepted(c, avatar)
            for seq in range(1, 11):
                await c.send(tracking(sid, seq, float(seq)))
            await asyncio.sleep(0.1)
        async with live_client(b.url, ingest_key) as c:
            back = await resume(c, sid, 10)
            verdict = await c.until("verdict")
            for seq in range(11, 16):
                await c.send(tracking(sid, seq, float(seq)))
            await c.send({"type": "session.close", "session": sid, "seq": 16})
            summary = await c.until("session.summary")
        row = await final_checkpoint(pool, sid)
    assert back["resume_from_seq"] == 11
    assert verdict["at_seq"] == 10
    assert not [m for m in c.seen if m["type"] == "error"]
    assert row["node_id"] == b.id and row["end_reason"] == "closed"
    assert engine_samples(row["snapshot"]) == 15 * 10  # what node A saw, then what node B saw
    assert summary["session"] == sid


async def test_resume_elsewhere_while_the_old_connection_is_still_open(
    dsn: str, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
) -> None:
    """A client that moves without closing its old connection: the old node lets the session go."""
    async with two_nodes(dsn) as (a, b), live_client(a.url, ingest_key) as old:
        sid = await accepted(old, avatar)
        for seq in range(1, 6):
            await old.send(tracking(sid, seq, float(seq)))
        await asyncio.sleep(0.1)
        async with live_client(b.url, ingest_key) as new:
            back = await resume(new, sid, 5)
            await old.send(tracking(sid, 6, 6.0))
            stale = await old.until("error")
            await new.send(tracking(sid, 6, 6.0))
            await new.send({"type": "session.close", "session": sid, "seq": 7})
            await new.until("session.summary")
        row = await final_checkpoint(pool, sid)
    assert back["resume_from_seq"] == 6
    assert (stale["code"], stale["session"]) == ("unknown_session", sid)
    assert engine_samples(row["snapshot"]) == 6 * 10 and row["node_id"] == b.id


# ------------------------------------------------------------------------------- nodes as real processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def node_process(
    dsn: str, tmp_path: Path, *, policy: str = FAST, **env: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``avatar-registry serve livecheck`` in its own process; yields it and its URL."""
    policy_file = tmp_path / f"policy-{_free_port()}.toml"
    policy_file.write_text(policy)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LIVECHECK_", "REGISTRY_"))}
    full.update(
        DATABASE_URL=dsn,
        LIVECHECK_PORT=str(_free_port()),
        LIVECHECK_POLICY_FILE=str(policy_file),
        LIVECHECK_HEARTBEAT_S="0.2",
        LIVECHECK_NODE_TIMEOUT_S="1.5",
        LIVECHECK_FLUSH_S="0.05",
        LIVECHECK_DRAIN_TIMEOUT_S="10",
        **env,
    )
    proc = subprocess.Popen(
        CLI + ["serve", "livecheck"], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "livecheck: ws://…  (node …, engine)"
    m = re.search(r"livecheck: (ws://\S+)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"node did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    try:
        yield proc, m.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


async def _wait_exit(proc: subprocess.Popen[str], within: float) -> int:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while proc.poll() is None:
        assert loop.time() < end, "the node did not exit in time"
        await asyncio.sleep(0.05)
    return proc.returncode


@pytest.mark.slow
async def test_a_killed_nodes_sessions_resume_elsewhere_with_their_evidence(
    dsn: str, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    sent = 20
    async with node(dsn, policy_with(FAST)) as a:
        with node_process(dsn, tmp_path) as (proc, url):
            async with live_client(url, ingest_key) as c:
                sid = await accepted(c, avatar)
                for seq in range(1, sent + 1):
                    await c.send(tracking(sid, seq, float(seq)))
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.4)  # at least one checkpoint
                proc.send_signal(signal.SIGKILL)
                await _wait_exit(proc, 5)
        async with live_client(a.url, ingest_key) as c:
            back = await resume(c, sid, sent)
            # Re-send what the dead node had not checkpointed (PROTOCOL.md "Resume").
            for seq in range(back["resume_from_seq"], sent + 1):
                await c.send(tracking(sid, seq, float(seq)))
            await c.send({"type": "session.close", "session": sid, "seq": sent + 1})
            await c.until("session.summary")
        row = await final_checkpoint(pool, sid)
    assert 2 <= back["resume_from_seq"] <= sent + 1
    assert not [m for m in c.seen if m["type"] == "error"]
    assert row["node_id"] == a.id
    assert engine_samples(row["snapshot"]) == sent * 10  # nothing lost, nothing counted twice


@pytest.mark.slow
async def test_sigterm_drains_to_another_node_and_exits_losing_none(
    dsn: str, ingest_key: str, avatar: dict[str, Any], client: Client, platform_key: str, idp_dir: Path,
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path,
) -> None:  # fmt: skip
    second = await new_live_avatar(client, platform_key, idp_dir, settings.audience)
    async with node(dsn, policy_with(FAST)) as a:
        with node_process(dsn, tmp_path) as (proc, url):
            async with live_client(url, ingest_key) as c:
                s1, s2 = await accepted(c, avatar), await accepted(c, second)
                for seq in (1, 2, 3):
                    await c.send(tracking(s1, seq, float(seq)))
                    await c.send(tracking(s2, seq, float(seq)))
                proc.send_signal(signal.SIGTERM)
                move = await c.until("reconnect", within=5.0)
            # As a client does: leave, then resume every session at the URL given.
            async with live_client(move["url"], ingest_key) as c2:
                r1, r2 = await resume(c2, s1, 3), await resume(c2, s2, 3)
                code = await _wait_exit(proc, 15)
                for sid in (s1, s2):
                    await c2.send({"type": "session.close", "session": sid, "seq": 4})
                    await c2.until(
                        lambda m, sid=sid: m.get("type") == "session.summary" and m["session"] == sid
                    )
        stopped = await _node_stopped(pool, url)
    assert move["url"] == a.url and move["after_s"] >= 0
    assert (r1["resume_from_seq"], r2["resume_from_seq"]) == (4, 4)
    assert code == 0 and stopped


async def _node_stopped(pool: asyncpg.Pool, url: str) -> bool:
    async with pool.acquire() as conn:
        return bool(
            await conn.fetchval("SELECT stopped_at IS NOT NULL FROM livecheck_nodes WHERE url = $1", url)
        )


@pytest.mark.slow
async def test_serve_livecheck_drain_asks_a_running_node_to_drain(
    dsn: str, ingest_key: str, avatar: dict[str, Any], tmp_path: Path
) -> None:
    async with node(dsn, policy_with(FAST)) as a:
        node_id = f"drained-{_free_port()}"
        with node_process(dsn, tmp_path, LIVECHECK_NODE_ID=node_id) as (proc, url):
            async with live_client(url, ingest_key) as c:
                sid = await accepted(c, avatar)
                env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECHECK_")} | {
                    "DATABASE_URL": dsn
                }
                drain = await asyncio.create_subprocess_exec(
                    *CLI, "serve", "livecheck", "--drain", "--node", node_id, "--timeout", "20", env=env,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                move = await c.until("reconnect", within=10.0)
            async with live_client(move["url"], ingest_key) as c2:
                await resume(c2, sid, 0)
                _, err = await asyncio.wait_for(drain.communicate(), 30)
            await _wait_exit(proc, 5)
    assert move["url"] == a.url
    assert drain.returncode == 0, err
    assert b"drained and stopped" in err


def test_a_bad_policy_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[challenges]\nmean_interval_s = -5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECHECK_")} | {
        "LIVECHECK_POLICY_FILE": str(bad),
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",  # never reached: the policy fails first
    }
    done = subprocess.run(CLI + ["serve", "livecheck"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "challenges.mean_interval_s" in done.stderr
    assert str(bad) in done.stderr


# --------------------------------------------------------------------------------- control across nodes


async def test_staff_terminate_reaches_the_node_that_holds_the_session(
    dsn: str, ingest_key: str, avatar: dict[str, Any], client: Client, staff_key: str, pool: asyncpg.Pool
) -> None:
    async with two_nodes(dsn) as (_, b), live_client(b.url, ingest_key) as c:
        sid = await accepted(c, avatar)
        async with pool.acquire() as conn:
            pk = await conn.fetchval("SELECT id FROM live_sessions WHERE session = $1", sid)
        loop = asyncio.get_running_loop()
        start = loop.time()
        r = await client.post(
            f"/v1/sessions/{pk}/terminate", json={"reason": "policy"}, headers=auth(staff_key)
        )
        assert r.status == 202, await r.text()
        term = await c.until("session.terminate", within=2.0)
        took = loop.time() - start
    assert term["reason"] == "staff_action" and took < 2.0


async def test_suspension_reaches_the_node_that_holds_the_session(
    dsn: str, ingest_key: str, avatar: dict[str, Any], client: Client, staff_key: str
) -> None:
    async with two_nodes(dsn) as (_, b), live_client(b.url, ingest_key) as c:
        sid = await accepted(c, avatar)
        r = await client.post(
            f"/v1/avatars/{avatar['avatar_id']}/status",
            json={"status": "suspended", "reason": "test"},
            headers=auth(staff_key),
        )
        assert r.status == 200, await r.text()
        term = await c.until("session.terminate", within=2.0)
    assert (term["session"], term["reason"]) == (sid, "avatar_suspended")


async def test_busy_limits_hold_across_nodes(dsn: str, ingest_key: str, avatar: dict[str, Any]) -> None:
    async with (
        two_nodes(dsn) as (a, b),
        live_client(a.url, ingest_key) as ca,
        live_client(b.url, ingest_key) as cb,
    ):
        await accepted(ca, avatar)
        msg = await cb.open(new_session_id(), avatar["avatar_id"], avatar["operator_id"])
    assert (msg["type"], msg["reason"]) == ("session.rejected", "avatar_busy")


async def test_in_process_drain_moves_sessions_and_stops(
    dsn: str, ingest_key: str, avatar: dict[str, Any], pool: asyncpg.Pool
) -> None:
    async with node(dsn, policy_with(FAST)) as a:
        async with node(dsn, policy_with(FAST)) as b:
            async with live_client(b.url, ingest_key) as c:
                sid = await accepted(c, avatar)
                await c.send(tracking(sid, 1, 1.0))
                b.start_drain()
                move = await c.until("reconnect")
            async with live_client(move["url"], ingest_key) as c2:
                back = await resume(c2, sid, 1)
                await b.drain()
                await c2.send(tracking(sid, 2, 2.0))
                await c2.send({"type": "session.close", "session": sid, "seq": 3})
                await c2.until("session.summary")
        row = await final_checkpoint(pool, sid)
    assert move["url"] == a.url and back["resume_from_seq"] == 2
    assert row["node_id"] == a.id and engine_samples(row["snapshot"]) == 20
