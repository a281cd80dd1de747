"""A client written by another team from PROTOCOL.md alone — the VMC bridge (``livecheck/bridge.py``) —
against the real server: it opens a session, streams a VTuber tracking app's VMC data, follows a draining
node's ``reconnect`` to another node, resumes there, and closes the session on stop."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from livecheck.bridge import EXIT_OK, run_vmc_bridge
from livecheck.store import snapshot_of
from registry.config import Settings
from tests.functional.live_helpers import new_live_avatar, new_session_id, node, policy_with, wait_for
from tests.livecheck.test_bridge import send_vmc

Client = TestClient[Any, Any]


async def test_the_vmc_bridge_streams_moves_with_a_draining_node_and_closes(
    dsn: str, ingest_key: str, client: Client, platform_key: str, idp_dir: Path, settings: Settings,
    pool: asyncpg.Pool,
) -> None:  # fmt: skip
    avatar = await new_live_avatar(client, platform_key, idp_dir, settings.audience)
    sid = new_session_id("bridge")
    policy = policy_with("[sessions]\ncheckpoint_s = 0.3\n")
    async with node(dsn, policy) as a, node(dsn, policy) as b:
        loop = asyncio.get_running_loop()
        bound: asyncio.Future[tuple[str, int]] = loop.create_future()
        stop = asyncio.Event()
        out = io.StringIO()
        bridge = asyncio.create_task(
            run_vmc_bridge(
                ("127.0.0.1", 0), b.url, ingest_key, avatar["avatar_id"], avatar["operator_id"], sid, out,
                batch_interval_s=0.05, stop=stop, install_signal_handlers=False,
                on_listening=bound.set_result,
            )
        )  # fmt: skip
        port = (await asyncio.wait_for(bound, 5))[1]
        vmc = asyncio.create_task(send_vmc(port, 240, turn_from=10_000))  # 4 s of a tracking app at 60 Hz
        await wait_for(lambda: _state(pool, sid, "active", b.id))
        await asyncio.sleep(0.8)
        b.start_drain()
        await wait_for(lambda: _state(pool, sid, "active", a.id), within=10.0)
        await vmc
        stop.set()
        code = await asyncio.wait_for(bridge, 10)
        ended = await wait_for(lambda: _state(pool, sid, "ended", a.id))
    text = out.getvalue()
    assert code == EXIT_OK, text
    assert a.url in text  # it said where it moved
    assert ended["end_reason"] == "closed"
    async with pool.acquire() as conn:
        kinds = [r["kind"] for r in await conn.fetch(
            "SELECT kind FROM session_events WHERE session_pk = $1 ORDER BY id", ended["id"]
        )]  # fmt: skip
        snapshot = snapshot_of(
            await conn.fetchval("SELECT snapshot FROM session_checkpoints WHERE session_pk = $1", ended["id"])
        )
    samples = snapshot["engine"]["samples"]
    assert kinds[0] == "opened" and "resumed" in kinds and kinds[-1] == "ended"
    assert samples > 100  # the tracking data of both nodes reached one engine


async def _state(pool: asyncpg.Pool, session: str, state: str, node_id: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT id, end_reason FROM live_sessions WHERE session = $1 AND state = $2 AND node_id = $3",
            session,
            state,
            node_id,
        )
