"""``/v1/sessions``: live sessions for staff — listing, one session's timeline, and ending one.

The live tables are written by livecheck nodes (``livecheck/recorder.py``); these routes read them
(``livecheck/history.py``) and, to end a session, mark it and ``NOTIFY live_control`` so the node that
holds it sends ``session.terminate`` (PROTOCOL.md) within a moment; a session no node holds (its
connection dropped) is ended by the next node that reaps it, with its summary.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from livecheck import history
from livecheck.control import Terminate, notify
from livecheck.store import add_event, request_terminate
from registry import audit, errors
from registry.api.routing import Api, Call, path_uuid
from registry.api.schemas import QueryModel, StrictModel
from registry.roles import Role

__all__ = ["api"]

api = Api()

STAFF = frozenset({Role.STAFF, Role.ADMIN})
State = Literal["pending", "human", "at_risk", "violation"]


class VerdictNow(BaseModel):
    state: State
    action: Literal["none", "warn", "require_label", "terminate"]
    score: float | None = Field(description="Confidence that a person drives (0–1).")


class SessionOut(BaseModel):
    id: uuid.UUID = Field(description="The session's id in the registry (the path id of these routes).")
    session: str = Field(description="The client's session id (unique per ingest key).")
    ingest_key_id: uuid.UUID
    avatar_id: uuid.UUID
    operator_id: uuid.UUID
    stream_id: str | None
    state: Literal["active", "detached", "ended"] = Field(
        description="`active` (a node serves it), `detached` (resumable), `ended`."
    )
    node_id: str | None = Field(description="The livecheck node serving it (or that last did).")
    opened_at: datetime
    resumable_until: datetime | None = Field(description="For a detached session: when it ends.")
    detached_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None = Field(
        description="`closed`, `resume_expired`, or the `session.terminate` reason (`staff_action`, …)."
    )
    last_seq: int
    verdict: VerdictNow
    worst_state: State
    last_checkpoint_at: datetime | None
    terminate_requested_at: datetime | None
    summary: dict[str, Any] | None = Field(description="The `session.summary` body, once ended.")


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None


class ReasonOut(BaseModel):
    code: str
    detail: str


class VerdictOut(BaseModel):
    at: datetime
    state: State
    action: str
    score: float
    reasons: list[ReasonOut]
    at_seq: int


class ChallengeOut(BaseModel):
    challenge_id: str
    action: str
    deadline_s: float
    issued_at: datetime
    result: Literal["passed", "failed", "missed"] | None = Field(description="None while open.")
    reaction_ms: float | None = Field(
        description="Onset of the completing movement minus `challenge.shown.t` (sender's clock)."
    )
    flags: list[str] = Field(description="What counted against the session, e.g. `reaction_too_fast`.")
    resolved_at: datetime | None


class EventOut(BaseModel):
    at: datetime
    kind: str = Field(
        description="`opened`, `resumed`, `detached`, `taken_over`, `terminate_requested`, `ended`."
    )
    node_id: str | None
    details: dict[str, Any]


class AdmissionOut(BaseModel):
    at: datetime
    kind: Literal["open", "resume"] | None
    accepted: bool
    reason: str | None
    detail: str | None
    node_id: str | None


class SessionDetail(SessionOut):
    verdicts: list[VerdictOut] = Field(description="Every change of verdict state or action, oldest first.")
    challenges: list[ChallengeOut]
    events: list[EventOut]
    admissions: list[AdmissionOut]


class SessionQuery(QueryModel):
    state: Literal["active", "detached", "ended"] | None = None
    avatar_id: uuid.UUID | None = None
    operator_id: uuid.UUID | None = None
    verdict: State | None = Field(default=None, description="The current verdict state.")
    node_id: str | None = Field(default=None, min_length=1, max_length=100)
    session: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=200)


class TerminateBody(StrictModel):
    reason: str = Field(min_length=3, max_length=500, description="Why staff end it; audit-logged.")


def session_out(r: history.SessionRecord) -> SessionOut:
    return SessionOut(
        id=r.id,
        session=r.session,
        ingest_key_id=r.ingest_key_id,
        avatar_id=r.avatar_id,
        operator_id=r.operator_id,
        stream_id=r.stream_id,
        state=r.state,  # type: ignore[arg-type]  # the table's CHECK constraint allows only these
        node_id=r.node_id,
        opened_at=r.opened_at,
        resumable_until=r.live_until if r.state == "detached" else None,
        detached_at=r.detached_at,
        ended_at=r.ended_at,
        end_reason=r.end_reason,
        last_seq=r.last_seq,
        verdict=VerdictNow(state=r.verdict_state, action=r.verdict_action, score=r.score),  # type: ignore[arg-type]  # CHECK constraints
        worst_state=r.worst_state,  # type: ignore[arg-type]  # CHECK constraint
        last_checkpoint_at=r.checkpoint_at,
        terminate_requested_at=r.terminate_requested_at,
        summary=r.summary,
    )


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"q": seq}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        seq = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["q"]
        ok = isinstance(seq, int) and not isinstance(seq, bool)
    except (ValueError, binascii.Error, KeyError, TypeError):
        ok = False
    if not ok:
        raise errors.BadRequest(
            "invalid cursor (use next_cursor from the same listing)", code="invalid_cursor"
        )
    return int(seq)


@api.route(
    "GET",
    "/v1/sessions",
    summary="List live sessions",
    tags=("sessions",),
    roles=STAFF,
    query=SessionQuery,
    response=SessionPage,
)
async def list_sessions(call: Call[None]) -> SessionPage:
    """Live sessions, newest first, filtered by `state`, `avatar_id`, `operator_id`, current `verdict`,
    `node_id` or the client's `session` id. Pass `next_cursor` back as `cursor` (same filters) for the
    next page."""
    q: SessionQuery = call.query
    before = _decode_cursor(q.cursor) if q.cursor is not None else None
    async with call.pool.acquire() as conn:
        rows = await history.list_sessions(
            conn,
            state=q.state,
            avatar_id=q.avatar_id,
            operator_id=q.operator_id,
            verdict=q.verdict,
            node_id=q.node_id,
            session=q.session,
            before_seq=before,
            limit=q.limit,
        )
    next_cursor = _encode_cursor(rows[-1].seq) if len(rows) == q.limit else None
    return SessionPage(items=[session_out(r) for r in rows], next_cursor=next_cursor)


@api.route(
    "GET",
    "/v1/sessions/{id}",
    summary="Get a live session with its timeline",
    tags=("sessions",),
    roles=STAFF,
    response=SessionDetail,
    errors=(404,),
)
async def get_session(call: Call[None]) -> SessionDetail:
    """One session: its verdict timeline (every change of state or action, with reasons), challenges with
    their outcomes and reaction times, lifecycle events (opened, resumed on which node, detached,
    ended) and admissions."""
    pk = path_uuid(call)
    async with call.pool.acquire() as conn:
        record = await history.get_session(conn, pk)
        if record is None:
            raise errors.NotFound(f"no such session: {pk}", code="session_not_found")
        verdicts, challenges, events, admissions = await history.timeline(conn, pk)
    return SessionDetail(
        **session_out(record).model_dump(),
        verdicts=[
            VerdictOut(
                at=v.at,
                state=v.state,  # type: ignore[arg-type]  # CHECK constraint
                action=v.action,
                score=v.score,
                reasons=[ReasonOut(**r) for r in v.reasons],
                at_seq=v.at_seq,
            )
            for v in verdicts
        ],
        challenges=[
            ChallengeOut(
                challenge_id=c.challenge_id,
                action=c.action,
                deadline_s=c.deadline_s,
                issued_at=c.issued_at,
                result=c.result,  # type: ignore[arg-type]  # CHECK constraint
                reaction_ms=c.reaction_ms,
                flags=c.flags,
                resolved_at=c.resolved_at,
            )
            for c in challenges
        ],
        events=[EventOut(at=e.at, kind=e.kind, node_id=e.node_id, details=e.details) for e in events],
        admissions=[
            AdmissionOut(
                at=a.at,
                kind=a.kind,  # type: ignore[arg-type]  # CHECK constraint
                accepted=a.accepted,
                reason=a.reason,
                detail=a.detail,
                node_id=a.node_id,
            )
            for a in admissions
        ],
    )


@api.route(
    "POST",
    "/v1/sessions/{id}/terminate",
    summary="End a live session",
    tags=("sessions",),
    roles=STAFF,
    body=TerminateBody,
    response=SessionOut,
    status=202,
    errors=(404, 409),
)
async def terminate_session(call: Call[TerminateBody]) -> SessionOut:
    """Ask for a session's end, with a reason (audit-logged). The node serving it sends
    `session.terminate` (`reason` `staff_action`) then `session.summary` at once; a detached session is
    ended by the next reaping node. 202: the request is recorded; poll the session for `ended`. 409
    `session_ended` when it is already over."""
    pk = path_uuid(call)
    async with call.pool.acquire() as conn, conn.transaction():
        found = await request_terminate(conn, pk, call.body.reason)
        if found is None:
            raise errors.NotFound(f"no such session: {pk}", code="session_not_found")
        state, node_id = found
        if state == "ended":
            raise errors.Conflict("the session has already ended", code="session_ended")
        await add_event(conn, pk, "terminate_requested", node_id, {"by_key": str(call.actor.key_id)})
        await audit.record(conn, call.actor, "session.terminate", "live_session", pk, reason=call.body.reason)
        await notify(conn, Terminate(session_pk=pk))
        record = await history.get_session(conn, pk)
    assert record is not None  # updated above, in this transaction
    return session_out(record)
