"""SQL of livecheck (``migrations/0004_live.sql``): nodes, sessions, admission, ends, staff reads.

Functions take a connection and leave the transaction to the caller. The connection must have the
``jsonb`` codec of ``registry.db.init_connection`` (``create_pool`` sets it): jsonb values go in and out
as Python objects. The batched writes of serving nodes are in ``livecheck/recorder.py``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import pydantic_core

__all__ = [
    "AdmissionFacts",
    "Expired",
    "SessionRow",
    "Tenure",
    "db_epoch",
    "end_session",
    "ended_without_checkpoint",
    "list_expired",
    "mark_node_stopped",
    "node_heartbeat",
    "peer_url",
    "register_node",
    "request_terminate",
    "sessions_to_end",
    "snapshot_bytes",
    "snapshot_of",
]


def snapshot_bytes(snapshot: dict[str, Any]) -> bytes:
    """Compact JSON of a snapshot (pydantic-core's encoder: a few times faster than ``json`` on the
    float lists of engine state, and checkpoints are the node's largest steady cost after the engine).

    Raises:
        ValueError: the snapshot holds a NaN or an infinity (not JSON; the cause is named here).
    """
    data = pydantic_core.to_json(snapshot, inf_nan_mode="constants")
    if b"NaN" in data or b"Infinity" in data:
        # Either a real non-finite number (json names it in its error) or those letters inside a string.
        json.dumps(snapshot, allow_nan=False)
    return data


def snapshot_of(data: bytes) -> dict[str, Any]:
    """The snapshot stored by :func:`snapshot_bytes`."""
    snapshot: dict[str, Any] = json.loads(data)
    return snapshot


# A session is live (busy, resumable) while this holds: $1 = node timeout, $2 = resume window, seconds.
LIVE_SQL: Final = """(s.live_until > now() OR (s.state = 'active' AND (
        EXISTS (SELECT 1 FROM livecheck_nodes n WHERE n.id = s.node_id AND n.stopped_at IS NULL
                AND n.heartbeat_at > now() - make_interval(secs => $1))
        OR EXISTS (SELECT 1 FROM session_checkpoints c WHERE c.session_pk = s.id
                   AND c.taken_at > now() - make_interval(secs => $2)))))"""


@dataclass(frozen=True, slots=True)
class Tenure:
    """One node's hold on one session: the row id and the fencing token of this tenure."""

    pk: uuid.UUID
    holder: uuid.UUID


@dataclass(frozen=True, slots=True)
class SessionRow:
    """The columns of ``live_sessions`` a node acts on."""

    pk: uuid.UUID
    ingest_key_id: uuid.UUID
    session: str
    avatar_id: uuid.UUID
    operator_id: uuid.UUID
    stream_id: str | None
    state: str
    node_id: str | None
    holder: uuid.UUID | None
    verdict_state: str
    worst_state: str
    end_reason: str | None
    terminate_requested: bool
    terminate_reason: str | None
    expired: bool  # live_until has passed


_SESSION_COLUMNS: Final = """s.id, s.ingest_key_id, s.session, s.avatar_id, s.operator_id, s.stream_id,
    s.state, s.node_id, s.holder, s.verdict_state, s.worst_state, s.end_reason,
    s.terminate_requested_at IS NOT NULL AS terminate_requested, s.terminate_reason,
    s.live_until <= now() AS expired"""


def session_row(r: asyncpg.Record) -> SessionRow:
    return SessionRow(
        pk=r["id"],
        ingest_key_id=r["ingest_key_id"],
        session=r["session"],
        avatar_id=r["avatar_id"],
        operator_id=r["operator_id"],
        stream_id=r["stream_id"],
        state=r["state"],
        node_id=r["node_id"],
        holder=r["holder"],
        verdict_state=r["verdict_state"],
        worst_state=r["worst_state"],
        end_reason=r["end_reason"],
        terminate_requested=r["terminate_requested"],
        terminate_reason=r["terminate_reason"],
        expired=r["expired"],
    )


# ------------------------------------------------------------------------------------------------ nodes


async def db_epoch(conn: asyncpg.Connection) -> float:
    """The database clock, seconds since the epoch (``clock_timestamp()``, not the transaction's start)."""
    value: float = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
    return value


async def register_node(conn: asyncpg.Connection, node_id: str, url: str) -> None:
    """Announce this node (or announce it again after a restart with the same id)."""
    await conn.execute(
        """INSERT INTO livecheck_nodes (id, url) VALUES ($1, $2)
           ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, started_at = now(), heartbeat_at = now(),
               draining = false, stopped_at = NULL""",
        node_id,
        url,
    )


async def node_heartbeat(conn: asyncpg.Connection, node_id: str, *, draining: bool) -> None:
    await conn.execute(
        "UPDATE livecheck_nodes SET heartbeat_at = now(), draining = $2 WHERE id = $1", node_id, draining
    )


async def mark_node_stopped(conn: asyncpg.Connection, node_id: str) -> None:
    await conn.execute(
        "UPDATE livecheck_nodes SET stopped_at = now(), draining = true WHERE id = $1", node_id
    )


async def peer_url(conn: asyncpg.Connection, node_id: str, timeout_s: float) -> str | None:
    """The URL of another live node that is not draining, the one serving the fewest sessions first."""
    url: str | None = await conn.fetchval(
        """SELECT n.url FROM livecheck_nodes n
           WHERE n.id <> $1 AND n.stopped_at IS NULL AND NOT n.draining
             AND n.heartbeat_at > now() - make_interval(secs => $2)
           ORDER BY (SELECT count(*) FROM live_sessions s WHERE s.node_id = n.id AND s.state = 'active'),
                    n.started_at
           LIMIT 1""",
        node_id,
        timeout_s,
    )
    return url


async def node_alive(conn: asyncpg.Connection, node_id: str, timeout_s: float) -> bool:
    alive: bool | None = await conn.fetchval(
        """SELECT stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => $2)
           FROM livecheck_nodes WHERE id = $1""",
        node_id,
        timeout_s,
    )
    return bool(alive)


# --------------------------------------------------------------------------------------------- sessions


async def get_session(
    conn: asyncpg.Connection, ingest_key_id: uuid.UUID, session: str, *, for_update: bool = False
) -> SessionRow | None:
    lock = " FOR UPDATE" if for_update else ""
    r = await conn.fetchrow(
        f"SELECT {_SESSION_COLUMNS} FROM live_sessions s WHERE s.ingest_key_id = $1 AND s.session = $2{lock}",
        ingest_key_id,
        session,
    )
    return None if r is None else session_row(r)


async def live_sessions_of_node(conn: asyncpg.Connection, node_id: str) -> list[SessionRow]:
    rows = await conn.fetch(
        f"SELECT {_SESSION_COLUMNS} FROM live_sessions s WHERE s.node_id = $1 AND s.state = 'active'",
        node_id,
    )
    return [session_row(r) for r in rows]


async def sessions_to_end(conn: asyncpg.Connection, node_id: str) -> list[tuple[uuid.UUID, str]]:
    """Sessions this node serves that must end now, with the ``session.terminate`` reason: staff asked,
    the avatar is no longer active, or the operator is no longer verified. The safety net behind the
    NOTIFY messages (one missed while the listening connection was down is caught here)."""
    rows = await conn.fetch(
        """SELECT s.id,
                  CASE WHEN s.terminate_requested_at IS NOT NULL THEN 'staff_action'
                       WHEN a.status = 'revoked' THEN 'avatar_revoked'
                       WHEN a.status <> 'active' THEN 'avatar_suspended'
                       ELSE 'operator_revoked' END AS reason
           FROM live_sessions s JOIN avatars a ON a.id = s.avatar_id JOIN operators o ON o.id = s.operator_id
           WHERE s.node_id = $1 AND s.state = 'active'
             AND (s.terminate_requested_at IS NOT NULL OR a.status <> 'active'
                  OR o.identity_status <> 'verified')""",
        node_id,
    )
    return [(r["id"], r["reason"]) for r in rows]


async def request_terminate(
    conn: asyncpg.Connection, pk: uuid.UUID, reason: str
) -> tuple[str, str | None] | None:
    """Mark a session for termination (staff). Returns its (state, node_id) or ``None`` when unknown."""
    r = await conn.fetchrow(
        """UPDATE live_sessions SET terminate_requested_at = coalesce(terminate_requested_at, now()),
               terminate_reason = coalesce(terminate_reason, $2)
           WHERE id = $1 RETURNING state, node_id""",
        pk,
        reason,
    )
    return None if r is None else (r["state"], r["node_id"])


@dataclass(frozen=True, slots=True)
class Expired:
    """A session no node serves any more whose time is up, with its last checkpoint (if any)."""

    row: SessionRow
    snapshot: dict[str, Any] | None
    taken_at_s: float | None
    # Why it ends: resume_expired, or the reason it must end early (staff_action, avatar_suspended, …).
    reason: str


async def list_expired(
    conn: asyncpg.Connection, node_timeout_s: float, window_s: float, *, limit: int = 100
) -> list[Expired]:
    """Lock (``SKIP LOCKED``: each node reaps different ones) sessions to end for good: those no longer
    live (a detached one past its resume window; an active one whose node died longer ago than the window
    after its last checkpoint), and detached ones that must end early (staff asked, avatar not active,
    operator not verified). Call in a transaction."""
    rows = await conn.fetch(
        f"""SELECT {_SESSION_COLUMNS}, c.snapshot, c.taken_at_s,
                  CASE WHEN s.terminate_requested_at IS NOT NULL THEN 'staff_action'
                       WHEN a.status = 'revoked' THEN 'avatar_revoked'
                       WHEN a.status <> 'active' THEN 'avatar_suspended'
                       WHEN o.identity_status <> 'verified' THEN 'operator_revoked'
                       ELSE 'resume_expired' END AS reason
           FROM live_sessions s
           JOIN avatars a ON a.id = s.avatar_id
           JOIN operators o ON o.id = s.operator_id
           LEFT JOIN session_checkpoints c ON c.session_pk = s.id
           WHERE s.state <> 'ended'
             AND (NOT {LIVE_SQL}
                  OR (s.state = 'detached' AND (s.terminate_requested_at IS NOT NULL
                      OR a.status <> 'active' OR o.identity_status <> 'verified')))
           ORDER BY s.live_until
           LIMIT $3
           FOR UPDATE OF s SKIP LOCKED""",
        node_timeout_s,
        window_s,
        limit,
    )
    return [
        Expired(
            session_row(r),
            None if r["snapshot"] is None else snapshot_of(r["snapshot"]),
            r["taken_at_s"],
            r["reason"],
        )
        for r in rows
    ]


async def ended_without_checkpoint(
    conn: asyncpg.Connection, pk: uuid.UUID, reason: str, node_id: str
) -> None:
    """End a session that never reached its first checkpoint: its summary is what the row knows."""
    await conn.execute(
        """UPDATE live_sessions SET state = 'ended', holder = NULL, ended_at = now(), end_reason = $2,
               summary = jsonb_build_object('session', session, 'duration_s', 0,
                   'final_state', verdict_state, 'worst_state', worst_state,
                   'challenges', jsonb_build_object('issued', 0, 'passed', 0, 'failed', 0, 'missed', 0,
                                                    'open', 0),
                   'reasons', '[]'::jsonb)
           WHERE id = $1""",
        pk,
        reason,
    )
    await conn.execute(
        """INSERT INTO session_events (session_pk, kind, node_id, details)
           VALUES ($1, 'ended', $3, jsonb_build_object('reason', $2::text))""",
        pk,
        reason,
        node_id,
    )


# ------------------------------------------------------------------------------------------- admission


@dataclass(frozen=True, slots=True)
class AdmissionFacts:
    """What the database says about a ``session.open`` (PROTOCOL.md "Admission")."""

    session_exists: bool  # this ingest key used the id before
    avatar_status: str | None  # None: no such avatar
    operator_status: str | None  # identity status; None: no such operator
    authorized: bool  # the operator owns the avatar or is its delegate
    avatar_live: int  # sessions of the avatar that are live or resumable, on any node
    operator_live: int  # sessions of the operator that are live or resumable, on any node


# Transaction-level advisory locks (two-key form, its own key space) serialise admissions per avatar and
# per operator across nodes, so two opens racing on two nodes cannot both pass a busy check. Always the
# avatar first, then the operator: one order, no deadlock.
_LOCK_AVATAR: Final = 0x4C560001
_LOCK_OPERATOR: Final = 0x4C560002


async def lock_for_admission(conn: asyncpg.Connection, avatar_id: uuid.UUID, operator_id: uuid.UUID) -> None:
    """Serialise admissions of this avatar and this operator until the transaction ends."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock($1, hashtext($3::uuid::text)),
                  pg_advisory_xact_lock($2, hashtext($4::uuid::text))""",
        _LOCK_AVATAR,
        _LOCK_OPERATOR,
        avatar_id,
        operator_id,
    )


async def admission_facts(
    conn: asyncpg.Connection,
    ingest_key_id: uuid.UUID,
    session: str,
    avatar_id: uuid.UUID | None,
    operator_id: uuid.UUID | None,
    *,
    node_timeout_s: float,
    window_s: float,
) -> AdmissionFacts:
    """Everything an admission decision needs, in one round trip (``None`` ids name nothing). Busy counts
    are of sessions live on any node (``LIVE_SQL``)."""
    r = await conn.fetchrow(
        f"""SELECT
             EXISTS (SELECT 1 FROM live_sessions WHERE ingest_key_id = $3 AND session = $4) AS session_exists,
             (SELECT status FROM avatars WHERE id = $5) AS avatar_status,
             (SELECT identity_status FROM operators WHERE id = $6) AS operator_status,
             EXISTS (SELECT 1 FROM avatars WHERE id = $5 AND owner_operator_id = $6)
               OR EXISTS (SELECT 1 FROM avatar_delegates WHERE avatar_id = $5 AND operator_id = $6)
               AS authorized,
             (SELECT count(*) FROM live_sessions s
               WHERE s.avatar_id = $5 AND s.state <> 'ended' AND {LIVE_SQL}) AS avatar_live,
             (SELECT count(*) FROM live_sessions s
               WHERE s.operator_id = $6 AND s.state <> 'ended' AND {LIVE_SQL}) AS operator_live""",
        node_timeout_s,
        window_s,
        ingest_key_id,
        session,
        avatar_id,
        operator_id,
    )
    assert r is not None  # a SELECT without FROM always returns its row
    return AdmissionFacts(
        session_exists=r["session_exists"],
        avatar_status=r["avatar_status"],
        operator_status=r["operator_status"],
        authorized=r["authorized"],
        avatar_live=r["avatar_live"],
        operator_live=r["operator_live"],
    )


async def avatar_and_operator_status(
    conn: asyncpg.Connection, avatar_id: uuid.UUID, operator_id: uuid.UUID
) -> tuple[str | None, str | None]:
    r = await conn.fetchrow(
        """SELECT (SELECT status FROM avatars WHERE id = $1) AS a,
                  (SELECT identity_status FROM operators WHERE id = $2) AS o""",
        avatar_id,
        operator_id,
    )
    assert r is not None
    return r["a"], r["o"]


async def insert_session(
    conn: asyncpg.Connection,
    *,
    ingest_key_id: uuid.UUID,
    session: str,
    avatar_id: uuid.UUID,
    operator_id: uuid.UUID,
    stream_id: str | None,
    node_id: str,
    holder: uuid.UUID,
    live_for_s: float,
) -> uuid.UUID | None:
    """Insert an admitted session; ``None`` when the key already used the id (a racing open won)."""
    pk: uuid.UUID | None = await conn.fetchval(
        """INSERT INTO live_sessions (ingest_key_id, session, avatar_id, operator_id, stream_id, node_id,
                                      holder, live_until)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
           ON CONFLICT ON CONSTRAINT live_sessions_key_session DO NOTHING
           RETURNING id""",
        ingest_key_id,
        session,
        avatar_id,
        operator_id,
        stream_id,
        node_id,
        holder,
        live_for_s,
    )
    return pk


async def record_admission(
    conn: asyncpg.Connection,
    *,
    ingest_key_id: uuid.UUID,
    node_id: str,
    session: str,
    kind: str,
    avatar_id: str,
    operator_id: str,
    session_pk: uuid.UUID,
) -> None:
    """An accepted ``session.open`` or ``session.resume`` (refusals go through :class:`Recorder`)."""
    await conn.execute(
        """INSERT INTO live_admissions (ingest_key_id, node_id, session, kind, avatar_id, operator_id,
                                        accepted, session_pk)
           VALUES ($1, $2, $3, $4, $5, $6, true, $7)""",
        ingest_key_id,
        node_id,
        session,
        kind,
        avatar_id,
        operator_id,
        session_pk,
    )


# At most this many reference hashes go to an engine (8 images x 8 dihedral variants).
MAX_REFERENCES: Final = 64


async def references_of(conn: asyncpg.Connection, avatar_id: uuid.UUID) -> list[bytes]:
    """The avatar's live reference PDQ hashes, each image's 8 dihedral variants (the original first:
    a webcam stream is often mirrored), without repeats."""
    rows = await conn.fetch(
        "SELECT variants FROM avatar_images WHERE avatar_id = $1 AND removed_at IS NULL ORDER BY id",
        avatar_id,
    )
    seen: dict[bytes, None] = {}
    for r in rows:
        v: bytes = r["variants"]
        for i in range(0, len(v), 32):
            seen.setdefault(v[i : i + 32], None)
    return list(seen)[:MAX_REFERENCES]


async def forget_session(conn: asyncpg.Connection, pk: uuid.UUID, holder: uuid.UUID) -> None:
    """Undo an admission whose connection was gone before the session started (it never existed)."""
    await conn.execute("DELETE FROM live_admissions WHERE session_pk = $1", pk)
    await conn.execute("DELETE FROM live_sessions WHERE id = $1 AND holder = $2", pk, holder)


async def is_live(conn: asyncpg.Connection, pk: uuid.UUID, node_timeout_s: float, window_s: float) -> bool:
    """Whether the session is live (``LIVE_SQL``): served by a live node, or within its resume window."""
    live: bool | None = await conn.fetchval(
        f"SELECT {LIVE_SQL} FROM live_sessions s WHERE s.id = $3", node_timeout_s, window_s, pk
    )
    return bool(live)


async def get_checkpoint(conn: asyncpg.Connection, pk: uuid.UUID) -> tuple[dict[str, Any], float] | None:
    """The session's latest snapshot and when it was taken (node clock)."""
    r = await conn.fetchrow("SELECT snapshot, taken_at_s FROM session_checkpoints WHERE session_pk = $1", pk)
    return None if r is None else (snapshot_of(r["snapshot"]), r["taken_at_s"])


async def take_session(
    conn: asyncpg.Connection, pk: uuid.UUID, node_id: str, holder: uuid.UUID, live_for_s: float
) -> None:
    """This node serves the session from now on under a new ``holder`` (a resume)."""
    await conn.execute(
        """UPDATE live_sessions SET state = 'active', node_id = $2, holder = $3, detached_at = NULL,
               live_until = now() + make_interval(secs => $4)
           WHERE id = $1""",
        pk,
        node_id,
        holder,
        live_for_s,
    )


async def let_go(conn: asyncpg.Connection, pk: uuid.UUID, holder: uuid.UUID, window_s: float) -> None:
    """Undo a resume whose connection was gone before it completed: detached again, resumable."""
    await conn.execute(
        """UPDATE live_sessions SET state = 'detached', holder = NULL, detached_at = now(),
               live_until = now() + make_interval(secs => $3)
           WHERE id = $1 AND holder = $2""",
        pk,
        holder,
        window_s,
    )


async def end_session(
    conn: asyncpg.Connection,
    pk: uuid.UUID,
    *,
    reason: str,
    summary: dict[str, Any],
    snapshot: dict[str, Any],
    taken_at_s: float,
    node_id: str,
) -> None:
    """End a session no node serves (the reaper holds its row lock): summary, final checkpoint, event."""
    await conn.execute(
        """UPDATE live_sessions SET state = 'ended', holder = NULL, ended_at = now(), end_reason = $2,
               summary = $3, verdict_state = $4, worst_state = $5, last_seq = $6
           WHERE id = $1""",
        pk,
        reason,
        summary,
        summary["final_state"],
        summary["worst_state"],
        int(snapshot["last_seq"]),
    )
    await conn.execute(
        """INSERT INTO session_checkpoints (session_pk, taken_at, taken_at_s, last_seq, node_id, snapshot)
           VALUES ($1, to_timestamp($2), $2, $3, $4, $5)
           ON CONFLICT (session_pk) DO UPDATE SET taken_at = EXCLUDED.taken_at,
               taken_at_s = EXCLUDED.taken_at_s, last_seq = EXCLUDED.last_seq, node_id = EXCLUDED.node_id,
               snapshot = EXCLUDED.snapshot""",
        pk,
        taken_at_s,
        int(snapshot["last_seq"]),
        node_id,
        snapshot_bytes(snapshot),
    )
    await add_event(conn, pk, "ended", node_id, {"reason": reason})


async def add_event(
    conn: asyncpg.Connection, pk: uuid.UUID, kind: str, node_id: str | None, details: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO session_events (session_pk, kind, node_id, details) VALUES ($1, $2, $3, $4)",
        pk,
        kind,
        node_id,
        details,
    )
