"""Admission (PROTOCOL.md "Admission", ``session.rejected``) and resumption (PROTOCOL.md "Resume").

:func:`decide` is the pure rule: given what the database says, the first rejection reason in the
contract's order, or ``None``. :func:`open_session` and :func:`resume_session` run it (or the resume
checks) in one transaction against the registry's tables, serialised per avatar and per operator across
nodes, and reserve the session for this node. ``session_exists`` and ``too_many_sessions`` within one
connection are decided by the protocol core before a request reaches here; ``session_exists`` across
connections and nodes (ids are never reused by one ingest key) is decided here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from livecheck import store
from livecheck.policy import SessionPolicy
from livecheck.store import AdmissionFacts, Tenure

__all__ = [
    "REJECTION_ORDER",
    "Admitted",
    "HeldElsewhere",
    "NotResumable",
    "Rejection",
    "Resumable",
    "decide",
    "open_session",
    "resume_session",
]

# PROTOCOL.md: "When several apply, the first in this order is given".
REJECTION_ORDER: Final = (
    "session_exists",
    "too_many_sessions",
    "avatar_unknown",
    "avatar_suspended",
    "avatar_revoked",
    "operator_unknown",
    "operator_unverified",
    "operator_not_authorized",
    "avatar_busy",
    "operator_busy",
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Answer with ``session.rejected``."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """The session is reserved for this node under ``tenure``; start it with the avatar's references."""

    tenure: Tenure
    references: list[bytes]


@dataclass(frozen=True, slots=True)
class Resumable:
    """This node serves the session again from ``snapshot`` (taken at ``taken_at_s``, node clock)."""

    tenure: Tenure
    snapshot: dict[str, Any]
    taken_at_s: float
    avatar_id: str
    operator_id: str


@dataclass(frozen=True, slots=True)
class NotResumable:
    """Answer with ``error`` ``unknown_session``: never existed for this key, ended, or window passed."""

    detail: str


@dataclass(frozen=True, slots=True)
class HeldElsewhere:
    """A live node (``node_id``, maybe this one) still serves the session: ask it to let go, then retry."""

    pk: uuid.UUID
    node_id: str


def decide(facts: AdmissionFacts, sessions: SessionPolicy) -> Rejection | None:
    """The first rejection reason that applies to a ``session.open``, in PROTOCOL.md's order.

    An avatar ``held_for_review`` may not stream either; it is refused as ``avatar_suspended`` (the
    contract's reason for "registered but not allowed now"), with a detail saying why. An operator whose
    identity was revoked is ``operator_unverified``.
    """
    if facts.session_exists:
        return Rejection("session_exists", "this ingest key already used this session id")
    if facts.avatar_status is None:
        return Rejection("avatar_unknown", "no registered avatar has this id")
    if facts.avatar_status == "held_for_review":
        return Rejection("avatar_suspended", "the avatar is held for review and may not stream")
    if facts.avatar_status == "suspended":
        return Rejection("avatar_suspended", "the avatar is suspended")
    if facts.avatar_status == "revoked":
        return Rejection("avatar_revoked", "the avatar's registration is revoked")
    if facts.operator_status is None:
        return Rejection("operator_unknown", "no operator has this id")
    if facts.operator_status != "verified":
        what = "was revoked" if facts.operator_status == "revoked" else "is not verified"
        return Rejection("operator_unverified", f"the operator's real-name identity {what}")
    if not facts.authorized:
        return Rejection(
            "operator_not_authorized", "the operator is neither the avatar's owner nor a delegate"
        )
    if facts.avatar_live >= sessions.max_sessions_per_avatar:
        return Rejection(
            "avatar_busy",
            f"the avatar already has {facts.avatar_live} live session(s)"
            f" (max_sessions_per_avatar {sessions.max_sessions_per_avatar})",
        )
    if facts.operator_live >= sessions.max_sessions_per_operator:
        return Rejection(
            "operator_busy",
            f"the operator already drives {facts.operator_live} live session(s)"
            f" (max_sessions_per_operator {sessions.max_sessions_per_operator})",
        )
    return None


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def open_session(
    pool: asyncpg.Pool,
    *,
    ingest_key_id: uuid.UUID,
    node_id: str,
    session: str,
    avatar_id: str,
    operator_id: str,
    stream_id: str | None,
    sessions: SessionPolicy,
    live_for_s: float,
    node_timeout_s: float,
) -> Admitted | Rejection:
    """Decide a ``session.open`` and, when admitted, reserve the session (a ``live_sessions`` row held by
    this node) in the same transaction as the checks, so the busy limits hold across nodes."""
    avatar, operator = _uuid(avatar_id), _uuid(operator_id)
    async with pool.acquire() as conn, conn.transaction():
        if avatar is not None and operator is not None:
            await store.lock_for_admission(conn, avatar, operator)
        facts = await store.admission_facts(
            conn,
            ingest_key_id,
            session,
            avatar,
            operator,
            node_timeout_s=node_timeout_s,
            window_s=sessions.resume_window_s,
        )
        rejection = decide(facts, sessions)
        if rejection is not None:
            return rejection
        assert avatar is not None and operator is not None  # known avatar and operator
        holder = uuid.uuid4()
        pk = await store.insert_session(
            conn,
            ingest_key_id=ingest_key_id,
            session=session,
            avatar_id=avatar,
            operator_id=operator,
            stream_id=stream_id,
            node_id=node_id,
            holder=holder,
            live_for_s=live_for_s,
        )
        if pk is None:  # an open of the same id on another connection committed first
            return Rejection("session_exists", "this ingest key already used this session id")
        await store.record_admission(
            conn,
            ingest_key_id=ingest_key_id,
            node_id=node_id,
            session=session,
            kind="open",
            avatar_id=avatar_id,
            operator_id=operator_id,
            session_pk=pk,
        )
        references = await store.references_of(conn, avatar)
    return Admitted(Tenure(pk, holder), references)


async def resume_session(
    pool: asyncpg.Pool,
    *,
    ingest_key_id: uuid.UUID,
    node_id: str,
    session: str,
    live_for_s: float,
    node_timeout_s: float,
    window_s: float,
    take_over: bool,
) -> Resumable | NotResumable | Rejection | HeldElsewhere:
    """Decide a ``session.resume`` and, when it can go on, hold the session for this node.

    A session still served by a live node is :class:`HeldElsewhere` (the caller asks that node to let
    go and calls again) unless ``take_over``: then this node takes it anyway, and the old holder's later
    writes are fenced out. A session whose avatar is no longer active, or whose operator is no longer
    verified, is refused with the admission reason (it ends on its own, reaped with its summary).
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get_session(conn, ingest_key_id, session, for_update=True)
        if row is None:
            return NotResumable("no session with this id for this key")
        if row.state == "ended":
            return NotResumable(f"the session has ended ({row.end_reason})")
        if row.terminate_requested:
            return NotResumable("the session was ended by staff")
        taken_from: str | None = None
        if row.state == "active" and row.node_id is not None:
            if not take_over and (
                row.node_id == node_id or await store.node_alive(conn, row.node_id, node_timeout_s)
            ):
                return HeldElsewhere(row.pk, row.node_id)
            if not await store.is_live(conn, row.pk, node_timeout_s, window_s):
                return NotResumable("the session's resume window has passed")  # its node died long ago
            taken_from = row.node_id
        elif row.expired:
            return NotResumable("the session's resume window has passed")
        avatar_status, operator_status = await store.avatar_and_operator_status(
            conn, row.avatar_id, row.operator_id
        )
        if avatar_status != "active":
            reason = "avatar_revoked" if avatar_status == "revoked" else "avatar_suspended"
            return Rejection(reason, f"the avatar is {avatar_status} and may not stream")
        if operator_status != "verified":
            return Rejection("operator_unverified", "the operator's real-name identity is not verified")
        checkpoint = await store.get_checkpoint(conn, row.pk)
        if checkpoint is None:
            return NotResumable("the session has no checkpoint to resume from")
        holder = uuid.uuid4()
        await store.take_session(conn, row.pk, node_id, holder, live_for_s)
        await store.record_admission(
            conn,
            ingest_key_id=ingest_key_id,
            node_id=node_id,
            session=session,
            kind="resume",
            avatar_id=str(row.avatar_id),
            operator_id=str(row.operator_id),
            session_pk=row.pk,
        )
        if taken_from is not None:
            await store.add_event(conn, row.pk, "taken_over", node_id, {"from_node": taken_from})
    snapshot, taken_at_s = checkpoint
    return Resumable(Tenure(row.pk, holder), snapshot, taken_at_s, str(row.avatar_id), str(row.operator_id))
