"""A livecheck node's sessions and its place among other nodes (DESIGN §10), without sockets.

The websocket shell (``livecheck/server.py``) feeds it the protocol core's events of each connection; the
node answers them with I/O: admission and resumption (:mod:`livecheck.admission`), persistence
(:class:`livecheck.recorder.Recorder`), and coordination with the registry and other nodes
(:mod:`livecheck.control`: control messages, hand-over of a session resumed elsewhere, heartbeats,
reaping sessions no node serves, draining).

Time: the node clock is the event loop's monotonic clock shifted onto the database's clock (seconds since
the epoch) once at start, so it never jumps and every node's snapshots carry comparable times: a session
resumed on another node knows how long it was away.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final, Protocol

import asyncpg

from livecheck import admission, control, store
from livecheck.config import EngineChoice, LiveSettings
from livecheck.policy import Policy
from livecheck.protocol import LiveConnection, OpenRequested, ResumeRequested
from livecheck.recorder import Recorder
from livecheck.store import Tenure

__all__ = ["CLOSE_GOING_AWAY", "Clock", "Connection", "Node"]

_logger = logging.getLogger(__name__)

# RFC 6455 §7.4.1: a draining node closes what is left with "going away".
CLOSE_GOING_AWAY: Final = 1001
# A session admitted or resumed stays live this long without news (a node that dies before the first
# checkpoint): its resume window plus this many checkpoint intervals.
_CHECKPOINT_SLACK: Final = 2.0
# How often a node checks, besides NOTIFY, for sessions it serves that must end (in heartbeats).
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


class Connection(Protocol):
    """What the node needs of one connection of the websocket shell (``livecheck.server.Link``)."""

    core: LiveConnection  # the protocol core of the connection
    key_id: uuid.UUID  # its ingest key
    tenures: dict[str, Tenure]  # sessions served on it
    rejecting: dict[str, tuple[str, str | None, str | None]]  # context of a refusal about to be sent

    def pump(self) -> None:
        """Act on the core's events and send its frames."""

    def schedule(self) -> None:
        """Make sure the core's timers run at its next deadline."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection after what is queued."""


@dataclass(frozen=True, slots=True)
class _Held:
    """A session this node serves: on which connection, and what control messages match it."""

    link: Connection
    session: str
    avatar_id: str
    operator_id: str


class Node:
    r"""One livecheck process's sessions and its place among other nodes: admission and resumption,
    hand-over between nodes, control messages, heartbeats and reaping, draining.

    It knows no sockets: the websocket shell (``livecheck/server.py``) gives it :class:`Connection`\ s and
    a way to stop accepting new ones. Build both with ``livecheck.server.running_node``.
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
        self.url = settings.url()  # set by the shell once the port is known (port 0 in tests)
        s = policy.sessions
        self.live_for_s = s.resume_window_s + s.checkpoint_s * _CHECKPOINT_SLACK
        self.recorder = Recorder(
            pool,
            self.id,
            resume_window_s=s.resume_window_s,
            on_lost=self._on_lost,
        )
        self.listener = control.Listener(dsn, self._on_control, self.reconcile)
        self.links: set[Connection] = set()  # open connections
        self.sessions: dict[uuid.UUID, _Held] = {}  # sessions served here, by row id
        self.draining = False
        self.drain_requested = asyncio.Event()  # a signal or a `drain` control message asked to drain
        self.stopped = asyncio.Event()  # set when stop() has finished
        self.stop_accepting: Callable[[], None] = lambda: None  # set by the shell
        self._tasks: set[asyncio.Task[Any]] = set()  # admissions, resumptions, control actions
        self._loops: list[asyncio.Task[Any]] = []  # recorder, listener, heartbeat, reaper
        self._releases: dict[uuid.UUID, asyncio.Future[None]] = {}  # resumes waiting for another node
        self._drain_task: asyncio.Task[None] | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Register this node (at ``url``) and start listening for control messages and the loops."""
        async with self.pool.acquire() as conn:
            await store.register_node(conn, self.id, self.url)
        self._loops = [
            asyncio.create_task(self.recorder.run(self.settings.flush_s)),
            asyncio.create_task(self.listener.run()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._reaper()),
        ]
        await asyncio.wait_for(self.listener.ready.wait(), timeout=10.0)
        _logger.info("livecheck node %s serving %s (%s)", self.id, self.url, self.engine.note)

    async def stop(self) -> None:
        """After the shell closed its connections: finish pending work, write everything, deregister."""
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
        self.stop_accepting()
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

    async def open_session(self, link: Connection, ev: OpenRequested) -> None:
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
                    node_timeout_s=self.settings.node_timeout_s,
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

    async def resume_session(self, link: Connection, ev: ResumeRequested) -> None:
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
                    window_s=self.policy.sessions.resume_window_s,
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


async def _retry_once(make: Any) -> Any:
    """Run ``make()`` again once after a short pause when the database hiccups."""
    try:
        return await make()
    except (OSError, asyncpg.InterfaceError, asyncpg.exceptions.ConnectionDoesNotExistError):
        await asyncio.sleep(0.2)
        return await make()
