"""How livecheck nodes hear from the registry and from each other (DESIGN §10): ``NOTIFY live_control``.

Payloads are JSON objects with a ``kind``; each is a pydantic model here, parsed once at the edge
(:func:`parse_control`). Sent by the registry: ``avatar_status`` (``registry/avatars/service.py``, on a
status change), ``operator_revoked`` (``registry/api/operators.py``), ``terminate`` (staff,
``registry/api/sessions.py``). Sent by nodes: ``release`` (a resume elsewhere asks the node holding a
session to let it go), ``released`` (it did), ``drain`` (``avatar-registry serve livecheck --drain``).
Unknown kinds are ignored, so the registry may add new ones; extra fields are ignored too.

:class:`Listener` keeps one dedicated connection listening and reconnects when it drops; after each
(re)connect it calls ``on_connect`` so the node can reconcile what it may have missed. :func:`reap_once`
ends sessions no node serves any more (resume window passed, node died, or ended early while detached).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal, TypeAlias

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from livecheck import store
from livecheck.policy import Policy
from livecheck.protocol import EngineRestorer, expire_session
from registry.db import init_connection

__all__ = [
    "CHANNEL",
    "AvatarStatus",
    "ControlMessage",
    "Drain",
    "Listener",
    "OperatorRevoked",
    "Release",
    "Released",
    "Terminate",
    "notify",
    "parse_control",
    "reap_once",
]

_logger = logging.getLogger(__name__)

CHANNEL: Final = "live_control"
# Wait between attempts to re-open the listening connection.
_RETRY_FIRST_S: Final = 0.2
_RETRY_MAX_S: Final = 5.0


class _Control(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AvatarStatus(_Control):
    """An avatar's status changed; ``suspended`` and ``revoked`` end its live sessions."""

    kind: Literal["avatar_status"] = "avatar_status"
    avatar_id: uuid.UUID
    status: str


class OperatorRevoked(_Control):
    """An operator's identity was revoked: its live sessions end."""

    kind: Literal["operator_revoked"] = "operator_revoked"
    operator_id: uuid.UUID


class Terminate(_Control):
    """Staff ended a session: the node holding it sends ``session.terminate`` (``reason``)."""

    kind: Literal["terminate"] = "terminate"
    session_pk: uuid.UUID
    reason: str = "staff_action"


class Release(_Control):
    """``by`` wants to resume a session ``node_id`` holds: let it go (checkpointed) and answer."""

    kind: Literal["release"] = "release"
    session_pk: uuid.UUID
    node_id: str
    by: str


class Released(_Control):
    """The answer to :class:`Release`: the session is detached and checkpointed."""

    kind: Literal["released"] = "released"
    session_pk: uuid.UUID
    to: str


class Drain(_Control):
    """Node ``node_id`` should drain (move its sessions to other nodes) and stop."""

    kind: Literal["drain"] = "drain"
    node_id: str


ControlMessage: TypeAlias = AvatarStatus | OperatorRevoked | Terminate | Release | Released | Drain
_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[ControlMessage, Field(discriminator="kind")],
)
_KINDS: Final = {"avatar_status", "operator_revoked", "terminate", "release", "released", "drain"}


def parse_control(payload: str) -> ControlMessage | None:
    """One ``live_control`` payload, or ``None`` for a kind this node does not act on (or a bad one,
    which is logged: a sender's bug must not stop the node)."""
    try:
        kind = json.loads(payload).get("kind")
    except (ValueError, AttributeError):
        _logger.warning("live_control: payload is not a JSON object")
        return None
    if kind not in _KINDS:
        return None
    try:
        message: ControlMessage = _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        _logger.warning("live_control: bad %s message: %s", kind, exc.errors(include_input=False)[0]["msg"])
        return None
    return message


async def notify(conn: asyncpg.Connection, message: ControlMessage) -> None:
    """Send a control message (delivered when the caller's transaction commits)."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, message.model_dump_json())


class Listener:
    """Listens on ``live_control`` on a connection of its own, reconnecting after a drop.

    Args:
        dsn: the database.
        on_message: called for each message this node acts on (in the loop, not awaited).
        on_connect: awaited after every (re)connect, once listening: reconcile what may have been missed.
    """

    def __init__(
        self,
        dsn: str,
        on_message: Callable[[ControlMessage], None],
        on_connect: Callable[[], Awaitable[None]],
    ) -> None:
        self._dsn = dsn
        self._on_message = on_message
        self._on_connect = on_connect
        self.ready = asyncio.Event()  # set while listening

    def _received(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        message = parse_control(payload)
        if message is not None:
            self._on_message(message)

    async def run(self) -> None:
        """Listen until cancelled."""
        delay = _RETRY_FIRST_S
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await init_connection(conn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._received)
                self.ready.set()
                delay = _RETRY_FIRST_S
                await self._on_connect()
                while not lost.is_set() and not conn.is_closed():
                    # A dead TCP peer is not always reported: probe now and then.
                    with_timeout = asyncio.wait_for(lost.wait(), timeout=5.0)
                    try:
                        await with_timeout
                    except TimeoutError:
                        await conn.fetchval("SELECT 1", timeout=5.0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                _logger.warning("live_control listener lost its connection: %s; retrying", exc)
            finally:
                self.ready.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)


async def reap_once(
    pool: asyncpg.Pool,
    *,
    policy: Policy,
    restore_engine: EngineRestorer,
    node_id: str,
    node_timeout_s: float,
    now_s: float,
    limit: int = 100,
) -> int:
    """End, with their summaries, sessions no node serves whose time is up (see ``store.list_expired``).

    The summary is what the session would have said at the end (``livecheck.protocol.expire_session``):
    challenges whose deadlines passed while it was away are resolved. ``now_s`` is the node clock.
    Returns how many sessions ended.
    """
    async with pool.acquire() as conn, conn.transaction():
        expired = await store.list_expired(conn, node_timeout_s, policy.sessions.resume_window_s, limit=limit)
        for e in expired:
            if e.snapshot is None or e.taken_at_s is None:
                await store.ended_without_checkpoint(conn, e.row.pk, e.reason, node_id)
                continue
            away = max(0.0, now_s - e.taken_at_s)
            try:
                ended = expire_session(e.snapshot, policy, away_s=away, restore_engine=restore_engine)
            except (ValueError, KeyError, TypeError) as exc:
                # A checkpoint this version cannot read (written by another version): end it plainly.
                _logger.warning("session %s: unreadable checkpoint (%s); ended without it", e.row.pk, exc)
                await store.ended_without_checkpoint(conn, e.row.pk, e.reason, node_id)
                continue
            await store.end_session(
                conn,
                e.row.pk,
                reason=e.reason,
                summary=ended.summary,
                snapshot=ended.snapshot,
                taken_at_s=now_s,
                node_id=node_id,
            )
    return len(expired)
