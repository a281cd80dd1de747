"""The live websocket server (``/v1/live``): a thin asyncio shell around :mod:`livecheck.protocol`.

It moves text frames between sockets and :class:`~livecheck.protocol.LiveConnection` (which parses,
validates and decides everything in PROTOCOL.md), runs each connection's timers at the core's
``next_deadline()``, and answers the core's events with I/O: admission and resumption
(:mod:`livecheck.admission`), persistence (:class:`livecheck.store.Recorder`), and coordination with
the registry and other nodes (:mod:`livecheck.control`). It is the only module that imports
``websockets`` (besides the VMC bridge, a client).

Handshake (PROTOCOL.md "Transport"): the key is checked in ``process_request``, before the upgrade — no
key or a bad one is HTTP 401, another role 403, another path 404, a draining node 503. The subprotocol
``avatar-live.v1`` is selected when offered; a client that offers none is served without one. A binary
frame closes the connection with 1003 (RFC 6455 §7.4.1: "cannot accept this type of data").

Time: the node clock is the event loop's monotonic clock shifted onto the database's clock (seconds since
the epoch) once at start, so it never jumps and every node's snapshots carry comparable times: a session
resumed on another node knows how long it was away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import signal
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from livecheck import admission, control, store
from livecheck.config import EngineChoice, LiveSettings, choose_engine, load_live_policy
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
from livecheck.recorder import Recorder
from livecheck.store import Tenure
from registry.db import create_pool
from registry.keys import store as key_store
from registry.roles import Role

__all__ = ["PATH", "SUBPROTOCOL", "Clock", "Node", "running_node", "serve_livecheck"]

_logger = logging.getLogger(__name__)

PATH: Final = "/v1/live"
SUBPROTOCOL: Final = Subprotocol("avatar-live.v1")
# RFC 6455 §7.4.1 close codes used by the shell (the core decides 1008 and 1009).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_UNSUPPORTED_DATA: Final = 1003
# Timers of one connection that fall due within this much of each other run in one tick.
_TIMER_SLACK_S: Final = 0.005
# A session's live_until is pushed this far past each checkpoint: its resume window plus slack for the
# next checkpoint to arrive late.
_CHECKPOINT_SLACK: Final = 2.0
# How often a node checks, besides NOTIFY, for sessions it serves that must end.
_RECONCILE_EVERY: Final = 5
_DB_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class Clock:
    """The node clock: ``loop.time()`` plus a fixed offset onto the database clock (module docstring)."""

    def __init__(self, offset: float = 0.0) -> None:
        self._loop = asyncio.get_running_loop()
        self.offset = offset

    @classmethod
    async def aligned(cls, pool: asyncpg.Pool) -> Clock:
        """A clock aligned to the database's, measured across one round trip (midpoint)."""
        loop = asyncio.get_running_loop()
        async with pool.acquire() as conn:
            t0 = loop.time()
            db = await store.db_epoch(conn)
            t1 = loop.time()
        return cls(db - (t0 + t1) / 2)

    def now(self) -> float:
        return self._loop.time() + self.offset

    def call_at(self, t: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Run ``callback`` at node time ``t``."""
        return self._loop.call_at(t - self.offset, callback)


@dataclass(frozen=True, slots=True)
class _Held:
    """A session this node serves: on which connection, and what control messages match it."""

    link: Link
    session: str
    avatar_id: str
    operator_id: str


class Link:
    """One websocket connection: feeds the protocol core, sends what it says, runs its timers."""

    __slots__ = (
        "__weakref__",
        "closing",
        "core",
        "key_id",
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
        if self.timer is not None and self.timer_at <= deadline:
            return
        self.cancel_timer()
        self.timer_at = deadline
        self.timer = self.node.clock.call_at(deadline + _TIMER_SLACK_S, self._tick)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_at = math.inf

    def _tick(self) -> None:
        self.timer, self.timer_at = None, math.inf
        self.core.tick(self.node.clock.now())
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


class Node:
    """One livecheck process: the websocket server, its sessions, and its place among other nodes.

    Build it with :func:`running_node` (tests, embedding) or run :func:`serve_livecheck`.
    """

    def __init__(
        self,
        settings: LiveSettings,
        policy: Policy,
        engine: EngineChoice,
        pool: asyncpg.Pool,
        dsn: str,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.engine = engine
        self.pool = pool
        self.clock = clock
        self.id = settings.node_name()
        self.url = settings.url()  # fixed once the port is known (port 0 in tests)
        s = policy.sessions
        self.live_for_s = s.resume_window_s + s.checkpoint_s * _CHECKPOINT_SLACK
        self.recorder = Recorder(
            pool,
            self.id,
            live_for_s=self.live_for_s,
            resume_window_s=s.resume_window_s,
            on_lost=self._on_lost,
        )
        self.listener = control.Listener(dsn, self._on_control, self.reconcile)
        self.links: set[Link] = set()
        self.sessions: dict[uuid.UUID, _Held] = {}  # sessions served here, by row id
        self.draining = False
        self.drain_requested = asyncio.Event()  # a signal or a `drain` control message asked to drain
        self.stopped = asyncio.Event()  # set when stop() has finished
        self._keys: weakref.WeakKeyDictionary[ServerConnection, uuid.UUID] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[Any]] = set()  # admissions, resumptions, control actions
        self._loops: list[asyncio.Task[Any]] = []  # recorder, listener, heartbeat, reaper
        self._releases: dict[uuid.UUID, asyncio.Future[None]] = {}  # resumes waiting for another node
        self._server: Server | None = None
        self._drain_task: asyncio.Task[None] | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Register, listen for control messages, and serve on the configured host and port."""
        st = self.settings
        self._server = await serve(
            self._handle,
            st.host,
            st.port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            compression="deflate" if st.compression else None,
            max_size=self.policy.limits.max_frame_bytes,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            server_header=None,
        )
        if st.public_url is None and st.port == 0:
            port = next(iter(self._server.sockets)).getsockname()[1]
            self.url = f"ws://{st.host}:{port}{PATH}"
        async with self.pool.acquire() as conn:
            await store.register_node(conn, self.id, self.url)
        self._loops = [
            asyncio.create_task(self.recorder.run(st.flush_s)),
            asyncio.create_task(self.listener.run()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._reaper()),
        ]
        await asyncio.wait_for(self.listener.ready.wait(), timeout=10.0)
        _logger.info("livecheck node %s serving %s (%s)", self.id, self.url, self.engine.note)

    async def stop(self, *, drain: bool = True) -> None:
        """Drain (sessions move to other nodes, or stay resumable), then stop; nothing is lost."""
        if drain:
            await self.drain()
        if self._server is not None:
            self._server.close(close_connections=True, code=CLOSE_GOING_AWAY, reason="node stopping")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=10.0)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10.0)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        try:
            await self.recorder.flush()
            async with self.pool.acquire() as conn:
                await store.mark_node_stopped(conn, self.id)
        except _DB_ERRORS:
            _logger.exception("node %s: final flush failed", self.id)
        self.stopped.set()

    def start_drain(self) -> None:
        """Begin draining in the background (a ``drain`` control message, a signal)."""
        if self._drain_task is None:
            self.drain_requested.set()
            self._drain_task = asyncio.create_task(self.drain())

    async def drain(self) -> None:
        """PROTOCOL.md ``reconnect``: tell every connection to resume its sessions on another node, wait
        (at most ``drain_timeout_s``) for them to move, then close what is left with 1001: those
        sessions are detached and checkpointed, resumable on any node. New connections get 503."""
        if self.draining:
            if self._drain_task is not None and asyncio.current_task() is not self._drain_task:
                await asyncio.shield(self._drain_task)
            return
        self.draining = True
        if self._server is not None:
            self._server.close(close_connections=False)  # stop accepting
        peer = None
        try:
            async with self.pool.acquire() as conn:
                await store.node_heartbeat(conn, self.id, draining=True)
                peer = await store.peer_url(conn, self.id, self.settings.node_timeout_s)
        except _DB_ERRORS:
            _logger.exception("node %s: cannot look up a peer to drain to", self.id)
        loop = asyncio.get_running_loop()
        if peer is None:
            # Nowhere to go now: clients come back here (a restart) within the resume window.
            _logger.warning("node %s drains with no other node alive; sessions stay resumable", self.id)
            url, wait_s = self.url, 0.5
        else:
            url, wait_s = peer, self.settings.drain_timeout_s
        now = self.clock.now()
        for link in list(self.links):
            link.core.drain(url, self.settings.reconnect_after_s, now)
            link.pump()
        deadline = loop.time() + wait_s
        while self.sessions and loop.time() < deadline:  # noqa: ASYNC110  # bounded poll; many writers
            await asyncio.sleep(0.05)
        for link in list(self.links):
            link.close(CLOSE_GOING_AWAY, "node draining")
        deadline = loop.time() + 5.0
        while self.links and loop.time() < deadline:  # noqa: ASYNC110  # bounded poll; many writers
            await asyncio.sleep(0.02)
        await self.recorder.flush()
        _logger.info("node %s drained to %s", self.id, url)

    # -- handshake and connections

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """PROTOCOL.md "Transport": refuse before the upgrade (401, 403, 404, 503)."""
        if urlsplit(request.path).path != PATH:
            return connection.respond(404, f"not found: the live endpoint is {PATH}\n")
        if self.draining:
            return connection.respond(503, "this node is draining; connect to another node\n")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            return _unauthorized(connection, "missing or malformed Authorization header (Bearer <key>)")
        async with self.pool.acquire() as conn:
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
        link = Link(self, ws, key_id)
        self.links.add(link)
        try:
            await link.serve()
        finally:
            self.links.discard(link)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an admission, resumption or control action; the node waits for them when it stops."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _logger.error("node %s: task failed", self.id, exc_info=task.exception())

    # -- admission and resumption

    async def open_session(self, link: Link, ev: OpenRequested) -> None:
        """Answer a ``session.open``: admit (reserving the session for this node) or reject."""
        try:
            if self.recorder.endings_pending:
                # Sessions that just ended here free their avatar and operator: write that first.
                await self.recorder.flush()
            result = await _retry_once(
                lambda: admission.open_session(
                    self.pool,
                    ingest_key_id=link.key_id,
                    node_id=self.id,
                    session=ev.session,
                    avatar_id=ev.avatar_id,
                    operator_id=ev.operator_id,
                    stream_id=ev.stream_id,
                    sessions=self.policy.sessions,
                    live_for_s=self.live_for_s,
                )
            )
        except _DB_ERRORS:
            _logger.exception("session %s: admission failed", ev.session)
            link.core.fail_pending(
                ev.session, "the session could not be admitted now; try again", self.clock.now()
            )
            link.pump()
            return
        if isinstance(result, admission.Rejection):
            link.rejecting[ev.session] = ("open", ev.avatar_id, ev.operator_id)
            if not link.core.reject(ev.session, result.reason, result.detail, self.clock.now()):
                link.rejecting.pop(ev.session, None)
            link.pump()
            return
        tenure = result.tenure
        link.tenures[ev.session] = tenure
        self.sessions[tenure.pk] = _Held(link, ev.session, ev.avatar_id, ev.operator_id)
        if link.core.admit(ev.session, self.clock.now(), result.references):
            link.pump()
            link.schedule()
            return
        # The connection dropped while the database decided: the session never started.
        del link.tenures[ev.session]
        self.sessions.pop(tenure.pk, None)
        with suppress(*_DB_ERRORS):
            async with self.pool.acquire() as conn, conn.transaction():
                await store.forget_session(conn, tenure.pk, tenure.holder)

    async def resume_session(self, link: Link, ev: ResumeRequested) -> None:
        """Answer a ``session.resume``: continue the session from its checkpoint, here."""
        result: admission.Resumable | admission.NotResumable | admission.Rejection | admission.HeldElsewhere
        try:
            take_over = False
            for _attempt in range(3):
                result = await admission.resume_session(
                    self.pool,
                    ingest_key_id=link.key_id,
                    node_id=self.id,
                    session=ev.session,
                    live_for_s=self.live_for_s,
                    node_timeout_s=self.settings.node_timeout_s,
                    take_over=take_over,
                )
                if not isinstance(result, admission.HeldElsewhere):
                    break
                if result.node_id == self.id:
                    # Held by another connection here, or its detach is not written yet.
                    self.release_local(result.pk)
                    await self.recorder.flush()
                elif not await self._ask_release(result.pk, result.node_id):
                    take_over = True  # the holder did not answer in time: fence it out
                if _attempt == 1:
                    take_over = True
        except _DB_ERRORS:
            _logger.exception("session %s: resume failed", ev.session)
            link.core.fail_pending(
                ev.session, "the session could not be resumed now; try again", self.clock.now()
            )
            link.pump()
            return
        now = self.clock.now()
        if isinstance(result, admission.HeldElsewhere):
            result = admission.NotResumable("the session is still held by another connection")
        if isinstance(result, admission.NotResumable):
            link.core.resume_unknown(ev.session, result.detail, now)
            link.pump()
            return
        if isinstance(result, admission.Rejection):
            link.rejecting[ev.session] = ("resume", None, None)
            if not link.core.reject(ev.session, result.reason, result.detail, now):
                link.rejecting.pop(ev.session, None)
            link.pump()
            return
        tenure = result.tenure
        link.tenures[ev.session] = tenure
        self.sessions[tenure.pk] = _Held(link, ev.session, result.avatar_id, result.operator_id)
        try:
            ok = link.core.resumed(ev.session, result.snapshot, now, away_s=max(0.0, now - result.taken_at_s))
        except (ValueError, KeyError, TypeError) as exc:
            _logger.warning("session %s: unreadable checkpoint: %s", ev.session, exc)
            link.core.resume_unknown(ev.session, "the session's checkpoint cannot be read", now)
            ok = False
        if ok:
            link.pump()
            link.schedule()
            return
        link.pump()
        del link.tenures[ev.session]
        self.sessions.pop(tenure.pk, None)
        with suppress(*_DB_ERRORS):
            async with self.pool.acquire() as conn:
                await store.let_go(conn, tenure.pk, tenure.holder, self.policy.sessions.resume_window_s)

    async def _ask_release(self, pk: uuid.UUID, holder_node: str) -> bool:
        """Ask ``holder_node`` to let a session go; whether it answered within ``release_timeout_s``."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._releases[pk] = waiter
        try:
            async with self.pool.acquire() as conn:
                await control.notify(conn, control.Release(session_pk=pk, node_id=holder_node, by=self.id))
            await asyncio.wait_for(waiter, timeout=self.settings.release_timeout_s)
            return True
        except TimeoutError:
            _logger.warning("node %s did not release session %s in time; taking it over", holder_node, pk)
            return False
        finally:
            self._releases.pop(pk, None)

    def release_local(self, pk: uuid.UUID) -> bool:
        """Detach a session served here (checkpointed by the recorder); whether it was here."""
        held = self.sessions.get(pk)
        if held is None:
            return False
        released = held.link.core.release(held.session, self.clock.now())
        held.link.pump()
        return released

    async def _release_and_answer(self, pk: uuid.UUID, to: str) -> None:
        self.release_local(pk)
        await self.recorder.flush()
        async with self.pool.acquire() as conn:
            await control.notify(conn, control.Released(session_pk=pk, to=to))

    def terminate(self, pk: uuid.UUID, reason: str) -> bool:
        """``session.terminate`` then ``session.summary`` for a session served here."""
        held = self.sessions.get(pk)
        if held is None:
            return False
        done = held.link.core.terminate(held.session, reason, self.clock.now())
        held.link.pump()
        if done:
            _logger.info("session %s terminated: %s", held.session, reason)
        return done

    def _on_lost(self, pks: set[uuid.UUID]) -> None:
        """The recorder found these sessions held by another tenure: stop serving them here, silently."""
        now = self.clock.now()
        for pk in pks:
            held = self.sessions.pop(pk, None)
            if held is None:
                continue
            _logger.warning("session %s was taken over by another node; released here", held.session)
            held.link.tenures.pop(held.session, None)
            held.link.core.release(held.session, now)
            held.link.pump()

    # -- control messages

    def _on_control(self, msg: control.ControlMessage) -> None:
        if isinstance(msg, control.AvatarStatus):
            if msg.status in ("suspended", "revoked"):
                reason = "avatar_revoked" if msg.status == "revoked" else "avatar_suspended"
                avatar = str(msg.avatar_id)
                for pk in [pk for pk, h in self.sessions.items() if h.avatar_id == avatar]:
                    self.terminate(pk, reason)
        elif isinstance(msg, control.OperatorRevoked):
            operator = str(msg.operator_id)
            for pk in [pk for pk, h in self.sessions.items() if h.operator_id == operator]:
                self.terminate(pk, "operator_revoked")
        elif isinstance(msg, control.Terminate):
            self.terminate(msg.session_pk, msg.reason)
        elif isinstance(msg, control.Release):
            if msg.node_id == self.id:
                self.spawn(self._release_and_answer(msg.session_pk, msg.by))
        elif isinstance(msg, control.Released):
            waiter = self._releases.get(msg.session_pk)
            if msg.to == self.id and waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(msg, control.Drain) and msg.node_id == self.id:
            self.start_drain()

    async def reconcile(self) -> None:
        """End sessions served here that must end (a control message missed while not listening)."""
        try:
            async with self.pool.acquire() as conn:
                due = await store.sessions_to_end(conn, self.id)
        except _DB_ERRORS:
            _logger.exception("node %s: reconcile failed", self.id)
            return
        for pk, reason in due:
            self.terminate(pk, reason)

    # -- background loops

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            beats += 1
            try:
                async with self.pool.acquire() as conn:
                    await store.node_heartbeat(conn, self.id, draining=self.draining)
            except _DB_ERRORS:
                _logger.exception("node %s: heartbeat failed", self.id)
            if beats % _RECONCILE_EVERY == 0:
                await self.reconcile()

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_s)
            try:
                await control.reap_once(
                    self.pool,
                    policy=self.policy,
                    restore_engine=self.engine.restore,
                    node_id=self.id,
                    node_timeout_s=self.settings.node_timeout_s,
                    now_s=self.clock.now(),
                )
            except _DB_ERRORS:
                _logger.exception("node %s: reaping failed", self.id)


def _select_subprotocol(connection: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
    """``avatar-live.v1`` when offered; otherwise no subprotocol (PROTOCOL.md "Transport")."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def _unauthorized(connection: ServerConnection, text: str) -> Response:
    response = connection.respond(401, text + "\n")
    response.headers["WWW-Authenticate"] = 'Bearer realm="livecheck"'
    return response


async def _retry_once(make: Any) -> Any:
    """Run ``make()`` again once after a short pause when the database hiccups."""
    try:
        return await make()
    except (OSError, asyncpg.InterfaceError, asyncpg.exceptions.ConnectionDoesNotExistError):
        await asyncio.sleep(0.2)
        return await make()


@asynccontextmanager
async def running_node(
    settings: LiveSettings,
    dsn: str,
    *,
    policy: Policy | None = None,
    engine: EngineChoice | None = None,
) -> AsyncIterator[Node]:
    """A started node (tests and embedding); stopped, with a drain, on exit."""
    policy = policy or load_live_policy(settings)
    engine = engine or choose_engine(settings, policy)
    pool = await create_pool(dsn, max_size=settings.db_pool_max)
    try:
        clock = await Clock.aligned(pool)
        node = Node(settings, policy, engine, pool, dsn, clock)
        await node.start()
        try:
            yield node
        finally:
            if not node.stopped.is_set():
                await node.stop(drain=True)
    finally:
        await pool.close()


async def serve_livecheck(
    settings: LiveSettings, dsn: str, *, policy: Policy | None = None, announce: bool = True
) -> None:
    """Run a node until SIGTERM/SIGINT or a ``drain`` control message; then drain and exit."""
    policy = policy or load_live_policy(settings)
    engine = choose_engine(settings, policy)
    async with running_node(settings, dsn, policy=policy, engine=engine) as node:
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
        await node.stop(drain=False)
