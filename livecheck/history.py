"""Reading what happened in live sessions, for staff (``GET /v1/sessions``, ``GET /v1/sessions/{id}``).

SQL over the tables of ``migrations/0004_live.sql``; the caller owns the connection (with the ``jsonb``
codec of ``registry.db.init_connection``). Rows come back as frozen dataclasses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

__all__ = [
    "AdmissionRecord",
    "ChallengeRecord",
    "EventRecord",
    "SessionRecord",
    "VerdictRecord",
    "get_session",
    "list_sessions",
    "timeline",
]

# A session's timeline lists at most this many of each kind (the newest; a long stream has many).
TIMELINE_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: uuid.UUID
    seq: int
    session: str
    ingest_key_id: uuid.UUID
    avatar_id: uuid.UUID
    operator_id: uuid.UUID
    stream_id: str | None
    state: str
    node_id: str | None
    opened_at: datetime
    live_until: datetime
    detached_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    last_seq: int
    verdict_state: str
    verdict_action: str
    worst_state: str
    score: float | None
    summary: dict[str, Any] | None
    terminate_requested_at: datetime | None
    checkpoint_at: datetime | None


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    at: datetime
    state: str
    action: str
    score: float
    reasons: list[dict[str, str]]
    at_seq: int


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    challenge_id: str
    action: str
    deadline_s: float
    issued_at: datetime
    result: str | None
    reaction_ms: float | None
    flags: list[str]
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    at: datetime
    kind: str
    node_id: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AdmissionRecord:
    at: datetime
    kind: str | None
    accepted: bool
    reason: str | None
    detail: str | None
    node_id: str | None


_COLUMNS: Final = """s.id, s.seq, s.session, s.ingest_key_id, s.avatar_id, s.operator_id, s.stream_id,
    s.state, s.node_id, s.opened_at, s.live_until, s.detached_at, s.ended_at, s.end_reason,
    greatest(s.last_seq, (SELECT c.last_seq FROM session_checkpoints c WHERE c.session_pk = s.id))
        AS last_seq,
    s.verdict_state, s.verdict_action, s.worst_state, s.score, s.summary, s.terminate_requested_at,
    (SELECT c.taken_at FROM session_checkpoints c WHERE c.session_pk = s.id) AS checkpoint_at"""


def _record(r: asyncpg.Record) -> SessionRecord:
    return SessionRecord(**dict(r))


async def list_sessions(
    conn: asyncpg.Connection,
    *,
    state: str | None = None,
    avatar_id: uuid.UUID | None = None,
    operator_id: uuid.UUID | None = None,
    verdict: str | None = None,
    node_id: str | None = None,
    session: str | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> list[SessionRecord]:
    """Sessions matching every filter given, newest first; ``before_seq`` is the cursor (the last
    ``seq`` of the previous page)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM live_sessions s
            WHERE ($1::text IS NULL OR s.state = $1)
              AND ($2::uuid IS NULL OR s.avatar_id = $2)
              AND ($3::uuid IS NULL OR s.operator_id = $3)
              AND ($4::text IS NULL OR s.verdict_state = $4)
              AND ($5::text IS NULL OR s.node_id = $5)
              AND ($6::text IS NULL OR s.session = $6)
              AND ($7::bigint IS NULL OR s.seq < $7)
            ORDER BY s.seq DESC LIMIT $8""",
        state,
        avatar_id,
        operator_id,
        verdict,
        node_id,
        session,
        before_seq,
        limit,
    )
    return [_record(r) for r in rows]


async def get_session(conn: asyncpg.Connection, pk: uuid.UUID) -> SessionRecord | None:
    r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM live_sessions s WHERE s.id = $1", pk)
    return None if r is None else _record(r)


async def timeline(
    conn: asyncpg.Connection, pk: uuid.UUID, *, limit: int = TIMELINE_LIMIT
) -> tuple[list[VerdictRecord], list[ChallengeRecord], list[EventRecord], list[AdmissionRecord]]:
    """The session's verdict changes, challenges, lifecycle events and admissions, oldest first (the
    newest ``limit`` of each)."""
    verdicts = await conn.fetch(
        """SELECT * FROM (SELECT id, at, state, action, score, reasons, at_seq FROM session_verdicts
                          WHERE session_pk = $1 ORDER BY id DESC LIMIT $2) v ORDER BY id""",
        pk,
        limit,
    )
    challenges = await conn.fetch(
        """SELECT * FROM (SELECT challenge_id, action, deadline_s, issued_at, result, reaction_ms, flags,
                                 resolved_at FROM session_challenges
                          WHERE session_pk = $1 ORDER BY issued_at DESC LIMIT $2) c ORDER BY issued_at""",
        pk,
        limit,
    )
    events = await conn.fetch(
        """SELECT * FROM (SELECT id, at, kind, node_id, details FROM session_events
                          WHERE session_pk = $1 ORDER BY id DESC LIMIT $2) e ORDER BY id""",
        pk,
        limit,
    )
    admissions = await conn.fetch(
        """SELECT * FROM (SELECT id, at, kind, accepted, reason, detail, node_id FROM live_admissions
                          WHERE session_pk = $1 ORDER BY id DESC LIMIT $2) a ORDER BY id""",
        pk,
        limit,
    )
    return (
        [
            VerdictRecord(r["at"], r["state"], r["action"], r["score"], r["reasons"], r["at_seq"])
            for r in verdicts
        ],
        [
            ChallengeRecord(
                r["challenge_id"],
                r["action"],
                r["deadline_s"],
                r["issued_at"],
                r["result"],
                r["reaction_ms"],
                list(r["flags"]),
                r["resolved_at"],
            )
            for r in challenges
        ],
        [EventRecord(r["at"], r["kind"], r["node_id"], r["details"]) for r in events],
        [
            AdmissionRecord(r["at"], r["kind"], r["accepted"], r["reason"], r["detail"], r["node_id"])
            for r in admissions
        ],
    )
