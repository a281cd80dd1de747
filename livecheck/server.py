"""The live websocket server (``/v1/live``): a thin asyncio shell around :mod:`livecheck.protocol`.

It moves text frames between sockets and :class:`~livecheck.protocol.LiveConnection` (which parses,
validates and decides everything in PROTOCOL.md), runs each connection's timers at the core's
``next_deadline()``, and hands the core's events to the :class:`~livecheck.node.Node`, which answers
them with I/O (admission, persistence, coordination with other nodes). It is the only module that
imports ``websockets`` (besides the VMC bridge, a client).

Handshake (PROTOCOL.md "Transport"): the key is checked in ``process_request``, before the upgrade — no
key or a bad one is HTTP 401, another role 403, another path 404, a draining node 503. The subprotocol
``avatar-live.v1`` is selected when offered; a client that offers none is served without one. A binary
frame closes the connection with 1003 (RFC 6455 §7.4.1: "cannot accept this type of data").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import secrets
import signal
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Final
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from livecheck.config import EngineChoice, LiveSettings, choose_engine, load_live_policy
from livecheck.node import CLOSE_GOING_AWAY, Clock, Node
from livecheck.policy import Policy
from livecheck.protocol import (
    CloseConnection,
    LiveConnection,
    OpenRequested,
    ResumeRequested,
    SessionDetached,
    SessionEnded,
    SessionRejected,
)
from livecheck.store import Tenure
from registry.db import create_pool
from registry.keys import store as key_store
from registry.roles import Role

__all__ = ["PATH", "SUBPROTOCOL", "Link", "LiveServer", "running_node", "serve_livecheck"]

_logger = logging.getLogger(__name__)

PATH: Final = "/v1/live"
SUBPROTOCOL: Final = Subprotocol("avatar-live.v1")
# RFC 6455 §7.4.1: a binary frame is data this endpoint cannot accept (the core decides 1008 and 1009).
CLOSE_UNSUPPORTED_DATA: Final = 1003
# A connection's timers run at most this often: a tick visits every session of the connection, so with
# a hundred sessions on one connection, ticking at each session's own deadline costs more than their
# messages do (measured: a tenth of the node's time at 0.1 s, 5,000 sessions over 50 connections).
# Server-side deadlines (verdict cadence, checkpoints, challenge issue and expiry) are kept to within
# this; a session's deadlines are also checked whenever one of its messages arrives.
TICK_S: Final = 0.25


class Link:
    """One websocket connection: feeds the protocol core, sends what it says, runs its timers."""

    __slots__ = (
        "__weakref__",
        "closing",
        "core",
        "key_id",
        "last_tick",
        "node",
        "outbox",
        "rejecting",
        "tenures",
        "timer",
        "timer_at",
        "wake",
        "ws",
    )

    def __init__(self, node: Node, ws: ServerConnection, key_id: uuid.UUID) -> None:
        self.node = node
        self.ws = ws
        self.key_id = key_id  # the ingest key: session ids are unique per key
        self.core = LiveConnection(
            node.policy,
            connection_id=secrets.token_hex(8),
            rng=random.Random(secrets.randbits(64)),
            now=node.clock.now(),
            restore_engine=node.engine.restore,
            new_engine=node.engine.new,
        )
        self.outbox: deque[str] = deque()  # frames the writer sends, in order
        self.wake = asyncio.Event()  # the writer has something to do
        self.tenures: dict[str, Tenure] = {}  # sessions served here → their row and fencing token
        # Context of a refusal the shell is about to send (kind, avatar, operator), for live_admissions.
        self.rejecting: dict[str, tuple[str, str | None, str | None]] = {}
        self.timer: asyncio.TimerHandle | None = None  # the next tick
        self.timer_at = math.inf  # node time of the next tick
        self.last_tick = -math.inf  # node time of the last tick
        self.closing: tuple[int, str] | None = None  # close code and reason once decided

    # -- the core's output

    def pump(self) -> None:
        """Act on the core's events and hand its frames to the writer. Call after every core call."""
        node = self.node
        for ev in self.core.events_received():
            if isinstance(ev, OpenRequested):
                node.spawn(node.open_session(self, ev))
            elif isinstance(ev, ResumeRequested):
                node.spawn(node.resume_session(self, ev))
            elif isinstance(ev, SessionRejected):
                kind, avatar, operator = self.rejecting.pop(ev.session, (None, None, None))
                node.recorder.add_rejection(
                    self.key_id, ev.session, kind, avatar, operator, ev.reason, ev.detail
                )
            elif isinstance(ev, CloseConnection):
                self.closing = (ev.code, ev.reason)
            else:
                tenure = self.tenures.get(ev.session)
                if tenure is None:  # fenced out and released: nothing of it is written any more
                    continue
                node.recorder.add(tenure, ev)
                if isinstance(ev, SessionDetached | SessionEnded):
                    del self.tenures[ev.session]
                    node.sessions.pop(tenure.pk, None)
        out = self.core.messages_to_send()
        if out:
            self.outbox.extend(out)
            self.wake.set()
        elif self.closing is not None:
            self.wake.set()

    def schedule(self) -> None:
        """Make sure a tick runs at the core's next deadline (an earlier pending tick is kept)."""
        deadline = self.core.next_deadline()
        if deadline is None:
            self.cancel_timer()
            return
        deadline = max(deadline, self.last_tick + TICK_S)
        if self.timer is not None and self.timer_at <= deadline:
            return
        self.cancel_timer()
        self.timer_at = deadline
        self.timer = self.node.clock.call_at(deadline, self._tick)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_at = math.inf

    def _tick(self) -> None:
        self.timer, self.timer_at = None, math.inf
        self.last_tick = now = self.node.clock.now()
        self.core.tick(now)
        self.pump()
        self.schedule()

    # -- the socket

    async def serve(self) -> None:
        """Read frames until the connection ends; then every session still here is detached."""
        writer = asyncio.create_task(self._write())
        self.pump()  # welcome
        self.schedule()
        try:
            async for data in self.ws:
                if isinstance(data, bytes):
                    self.closing = (CLOSE_UNSUPPORTED_DATA, "text frames only")
                    self.wake.set()
                    break
                self.core.receive_text(data, self.node.clock.now())
                self.pump()
                if self.timer is None:
                    self.schedule()
                if self.closing is not None:
                    break
        except ConnectionClosed:
            pass
        finally:
            if self.closing is not None:
                # Let the writer send what the core said before closing with the core's code.
                with suppress(TimeoutError, ConnectionClosed):
                    await asyncio.wait_for(asyncio.shield(writer), timeout=5.0)
            writer.cancel()
            with suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            self.detach()

    def detach(self) -> None:
        """The connection is gone: its sessions stay resumable (checkpointed by the recorder)."""
        self.cancel_timer()
        self.core.detach(self.node.clock.now())
        self.pump()

    async def _write(self) -> None:
        ws, outbox = self.ws, self.outbox
        while True:
            await self.wake.wait()
            self.wake.clear()
            while outbox:
                await ws.send(outbox.popleft())
            if self.closing is not None:
                code, reason = self.closing
                await ws.close(code, reason)
                return

    def close(self, code: int, reason: str) -> None:
        """Close the connection after what is queued (its sessions are then detached)."""
        if self.closing is None:
            self.closing = (code, reason)
        self.wake.set()


class LiveServer:
    """The websocket side of a node: the listening socket, the handshake, one :class:`Link` per
    connection."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._keys: weakref.WeakKeyDictionary[ServerConnection, uuid.UUID] = weakref.WeakKeyDictionary()
        self._server: Server | None = None

    async def start(self) -> None:
        """Listen on the configured host and port, then start the node."""
        node, st = self.node, self.node.settings
        self._server = await serve(
            self._handle,
            st.host,
            st.port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            compression="deflate" if st.compression else None,
            max_size=node.policy.limits.max_frame_bytes,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            server_header=None,
        )
        if st.public_url is None and st.port == 0:
            port = next(iter(self._server.sockets)).getsockname()[1]
            node.url = f"ws://{st.host}:{port}{PATH}"
        node.stop_accepting = self._stop_accepting
        await node.start()

    def _stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=False)

    async def stop(self, *, drain: bool = True) -> None:
        """Drain (sessions move to other nodes, or stay resumable), close, stop; nothing is lost."""
        if drain:
            await self.node.drain()
        if self._server is not None:
            self._server.close(close_connections=True, code=CLOSE_GOING_AWAY, reason="node stopping")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=10.0)
        await self.node.stop()

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """PROTOCOL.md "Transport": refuse before the upgrade (401, 403, 404, 503)."""
        if urlsplit(request.path).path != PATH:
            return connection.respond(404, f"not found: the live endpoint is {PATH}\n")
        if self.node.draining:
            return connection.respond(503, "this node is draining; connect to another node\n")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            return _unauthorized(connection, "missing or malformed Authorization header (Bearer <key>)")
        async with self.node.pool.acquire() as conn:
            principal = await key_store.principal_for_key(conn, token.strip())
        if principal is None:
            return _unauthorized(connection, "unknown or revoked API key")
        if principal.role is not Role.INGEST:
            return connection.respond(
                403, f"a {principal.role} key may not open live sessions (ingest only)\n"
            )
        self._keys[connection] = principal.key_id
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        key_id = self._keys.pop(ws, None)
        if key_id is None:  # process_request always sets it; defensive for a refused handshake
            return
        link = Link(self.node, ws, key_id)
        self.node.links.add(link)
        try:
            await link.serve()
        finally:
            self.node.links.discard(link)


def _select_subprotocol(connection: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
    """``avatar-live.v1`` when offered; otherwise no subprotocol (PROTOCOL.md "Transport")."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def _unauthorized(connection: ServerConnection, text: str) -> Response:
    response = connection.respond(401, text + "\n")
    response.headers["WWW-Authenticate"] = 'Bearer realm="livecheck"'
    return response


@asynccontextmanager
async def running_node(
    settings: LiveSettings,
    dsn: str,
    *,
    policy: Policy | None = None,
    engine: EngineChoice | None = None,
) -> AsyncIterator[Node]:
    """A started node serving websockets (tests, embedding); drained and stopped on exit."""
    policy = policy or load_live_policy(settings)
    engine = engine or choose_engine(settings, policy)
    pool = await create_pool(dsn, max_size=settings.db_pool_max)
    try:
        clock = await Clock.aligned(pool)
        node = Node(settings, policy, engine, pool, dsn, clock)
        server = LiveServer(node)
        await server.start()
        try:
            yield node
        finally:
            if not node.stopped.is_set():
                await server.stop(drain=True)
    finally:
        await pool.close()


async def serve_livecheck(
    settings: LiveSettings, dsn: str, *, policy: Policy | None = None, announce: bool = True
) -> None:
    """Run a node until SIGTERM/SIGINT or a ``drain`` control message; then drain and exit."""
    policy = policy or load_live_policy(settings)
    engine = choose_engine(settings, policy)
    async with running_node(settings, dsn, policy=policy, engine=engine) as node:
        # Everything built so far (modules, pools, the server) lives as long as the process: keep it out
        # of the garbage collector's generations, so full collections only walk what sessions allocate.
        gc.freeze()
        if announce:
            print(f"livecheck: {node.url}  (node {node.id}, {engine.note})", flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.start_drain)
        try:
            await node.drain_requested.wait()
            await node.drain()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    # Leaving running_node closed what was left and stopped the node.
