"""Shared by the live tests: nodes on loopback, a small protocol client, avatars to stream with."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from websockets.asyncio.client import ClientConnection, connect

from livecheck.config import LiveSettings, choose_engine
from livecheck.node import Node
from livecheck.policy import Policy, default_policy, parse_policy
from livecheck.server import running_node
from tests.factories import auth, make_operator
from tests.functional.avatar_helpers import encode, fresh_image, new_owner, register

__all__ = [
    "MS",
    "LiveClient",
    "Streamer",
    "live_client",
    "live_settings",
    "new_live_avatar",
    "node",
    "policy_with",
    "tracking",
]

# Time unit of the I/O tests (websockets' tests/utils.py habit): every wait is a multiple of it.
MS = 0.001
_SEQ = itertools.count(1)


def live_settings(**overrides: Any) -> LiveSettings:
    """Settings of a test node: any free port, fast heartbeats, flushes and reaping."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "node_id": f"test-node-{next(_SEQ)}-{secrets.token_hex(2)}",
        "flush_s": 0.05,
        "heartbeat_s": 0.2,
        "node_timeout_s": 1.5,
        "reap_s": 0.2,
        "release_timeout_s": 1.0,
        "drain_timeout_s": 5.0,
        "db_pool_max": 4,
        "engine": "auto",
    }
    values.update(overrides)
    return LiveSettings(**values)


def policy_with(toml: str = "") -> Policy:
    """The default policy with some keys changed (TOML text)."""
    return parse_policy(toml) if toml else default_policy()


@asynccontextmanager
async def node(dsn: str, policy: Policy | None = None, **overrides: Any) -> AsyncIterator[Node]:
    settings = live_settings(**overrides)
    policy = policy or default_policy()
    async with running_node(settings, dsn, policy=policy, engine=choose_engine(settings, policy)) as n:
        yield n
    # Writes fail only through a bug (the database is up): that must fail the test, not just log.
    assert n.recorder.failed == 0, f"{n.recorder.failed} flushes of session events failed"


class LiveClient:
    """A protocol client over a real websocket: send JSON, receive JSON, wait for a kind of message."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []  # every message received, in order

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        text = await asyncio.wait_for(self.ws.recv(), within)
        assert isinstance(text, str), "the server sends text frames only"
        msg: dict[str, Any] = json.loads(text)
        self.seen.append(msg)
        return msg

    async def until(
        self, pred: Callable[[dict[str, Any]], bool] | str, within: float = 5.0
    ) -> dict[str, Any]:
        """The next message matching ``pred`` (a type name or a predicate), skipping others."""
        test = (lambda m: m.get("type") == pred) if isinstance(pred, str) else pred
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            msg = await self.recv(max(0.001, end - loop.time()))
            if test(msg):
                return msg

    async def open(self, session: str, avatar_id: str, operator_id: str, **extra: Any) -> dict[str, Any]:
        """``session.open`` and its answer (``session.accepted`` or ``session.rejected``)."""
        await self.send(
            {"type": "session.open", "session": session, "avatar_id": avatar_id, "operator_id": operator_id}
            | extra
        )
        return await self.until(
            lambda m: (
                m.get("type") in ("session.accepted", "session.rejected") and m.get("session") == session
            )
        )


@asynccontextmanager
async def live_client(
    url: str, key: str, *, subprotocols: list[str] | None = None, **kw: Any
) -> AsyncIterator[LiveClient]:
    """Connect with an ingest key and read ``welcome``."""
    async with connect(
        url,
        additional_headers={"Authorization": f"Bearer {key}"},
        # An empty list offers none (no header at all).
        subprotocols=(subprotocols if subprotocols is not None else ["avatar-live.v1"]) or None,  # type: ignore[arg-type]  # Subprotocol is a NewType of str
        open_timeout=5,
        close_timeout=1,
        **kw,
    ) as ws:
        c = LiveClient(ws)
        welcome = await c.recv()
        assert welcome["type"] == "welcome", welcome
        yield c


def tracking(
    session: str, seq: int, t0: float, n: int = 10, *, dt: float = 1 / 30, **values: float
) -> dict[str, Any]:
    """A ``tracking`` message of ``n`` samples from sender time ``t0`` (neutral pose unless given)."""
    ts = [round(t0 + i * dt, 6) for i in range(n)]
    base = {"headYaw": 0.0, "headPitch": 0.0, "headRoll": 0.0, "eyeBlinkLeft": 0.05, "eyeBlinkRight": 0.05,
            "jawOpen": 0.02}  # fmt: skip
    base.update(values)
    return {
        "type": "tracking",
        "session": session,
        "seq": seq,
        "ts": ts,
        "channels": {k: [v + 0.001 * (i % 3) for i in range(n)] for k, v in base.items()},
    }


async def new_live_avatar(
    client: TestClient[Any, Any], platform_key: str, idp_dir: Path, audience: str
) -> dict[str, Any]:
    """A verified owner and an active avatar: {"avatar_id", "operator_id", "operator_key"}."""
    owner = await new_owner(client, platform_key, idp_dir, audience)
    r = await register(client, owner["key"], [encode(fresh_image("illustration"))], name="Live Tester")
    body = await r.json()
    assert r.status == 201, body
    return {"avatar_id": body["avatar"]["id"], "operator_id": owner["id"], "operator_key": owner["key"]}


async def unverified_operator(client: TestClient[Any, Any], platform_key: str) -> str:
    return str((await make_operator(client, platform_key))["id"])


async def session_row(pool: asyncpg.Pool, key_session: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM live_sessions WHERE session = $1", key_session)


def new_session_id(prefix: str = "s") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


async def wait_for(pred: Callable[[], Any], within: float = 5.0, every: float = 20 * MS) -> Any:
    """Poll an async or sync predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)


def staff_headers(key: str) -> dict[str, str]:
    return auth(key)


class Streamer:
    """Streams one session's tracking at 30 Hz in batches (every 0.1 s) from a pose function of sender
    time, numbering every message (tracking or not) with one seq counter, as a client must."""

    def __init__(
        self,
        c: LiveClient,
        session: str,
        pose: Callable[[float], dict[str, float]] | None = None,
        *,
        rate_hz: float = 30.0,
        batch_s: float = 0.1,
    ) -> None:
        self.c = c
        self.session = session
        self.pose = pose or (lambda t: {})
        self.dt = 1.0 / rate_hz
        self.batch_s = batch_s
        self.seq = 0
        self.t = asyncio.get_running_loop().time()  # the sender clock: this loop's monotonic time
        self._task: asyncio.Task[None] | None = None

    def clock(self) -> float:
        return asyncio.get_running_loop().time()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def send(self, msg: dict[str, Any]) -> int:
        """Send a non-tracking message of this session with the next seq; returns the seq."""
        seq = self.next_seq()
        await self.c.send(msg | {"session": self.session, "seq": seq})
        return seq

    async def _batch(self) -> None:
        now = self.clock()
        ts: list[float] = []
        while self.t + self.dt <= now:
            self.t += self.dt
            ts.append(round(self.t, 6))
        if not ts:
            return
        rows = [neutral(t) | self.pose(t) for t in ts]
        channels = {k: [r[k] for r in rows] for k in rows[0]}
        await self.c.send(
            {
                "type": "tracking",
                "session": self.session,
                "seq": self.next_seq(),
                "ts": ts,
                "channels": channels,
            }
        )

    async def _run(self) -> None:
        while True:
            await self._batch()
            await asyncio.sleep(self.batch_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def neutral(t: float) -> dict[str, float]:
    """A still face with a little sensor noise (deterministic in t)."""
    wobble = math.sin(t * 7.3) * 0.3
    return {
        "headYaw": wobble,
        "headPitch": 0.5 * math.sin(t * 5.1),
        "headRoll": 0.2 * math.sin(t * 3.7),
        "eyeBlinkLeft": 0.05,
        "eyeBlinkRight": 0.05,
        "jawOpen": 0.02,
    }
