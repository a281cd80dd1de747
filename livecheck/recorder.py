"""The batched event log of the sessions a node serves (``migrations/0004_live.sql``).

Protocol events (verdict changes, challenges, checkpoints, detaches, ends, refusals) are queued as they
happen and written together every ``flush_s`` in one transaction, so thousands of sessions cost a few
statements a second. Every write that changes a session is fenced by its ``holder`` token: a node that
lost a session to another (a resume elsewhere) cannot overwrite it, and learns so from :meth:`flush`.
Times are the node clock (seconds since the epoch, aligned to the database's, ``livecheck/node.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg

from livecheck.protocol import (
    ChallengeIssued,
    ChallengeResolved,
    CheckpointDue,
    SessionDetached,
    SessionEnded,
    SessionStored,
    VerdictChanged,
)
from livecheck.store import Tenure, snapshot_bytes

__all__ = ["Recorder"]

_logger = logging.getLogger(__name__)

# PROTOCOL.md summary order: human < pending < at_risk < violation (the worst state kept per session).
_WORST_ORDER: Final = "ARRAY['human','pending','at_risk','violation']"
# A batch that failed this many flushes in a row is dropped (logged), so one poison row cannot stop all.
_MAX_FAILURES: Final = 5


# ---------------------------------------------------------------------------------------------- batches


@dataclass(slots=True)
class _Batch:
    events: list[tuple[uuid.UUID, float, str, str]] = field(default_factory=list)
    verdicts: list[tuple[uuid.UUID, uuid.UUID, float, str, str, float, str, int]] = field(
        default_factory=list
    )
    issued: list[tuple[uuid.UUID, uuid.UUID, str, str, float, float]] = field(default_factory=list)
    resolved: list[tuple[uuid.UUID, uuid.UUID, str, str, float | None, list[str], float]] = field(
        default_factory=list
    )
    # The latest snapshot per session: only the newest checkpoint of a batch is worth writing.
    checkpoints: dict[uuid.UUID, tuple[uuid.UUID, float, int, bytes]] = field(default_factory=dict)
    detached: dict[uuid.UUID, tuple[uuid.UUID, float, int, bytes]] = field(default_factory=dict)
    ended: dict[uuid.UUID, tuple[uuid.UUID, float, int, bytes, str, str, str, str]] = field(
        default_factory=dict
    )
    rejections: list[tuple[uuid.UUID, str, str, str | None, str | None, str, str]] = field(
        default_factory=list
    )

    def then(self, newer: _Batch) -> _Batch:
        """This batch followed by ``newer`` (a failed batch goes back in front of what came since)."""
        return _Batch(
            events=self.events + newer.events,
            verdicts=self.verdicts + newer.verdicts,
            issued=self.issued + newer.issued,
            resolved=self.resolved + newer.resolved,
            checkpoints={**self.checkpoints, **newer.checkpoints},
            detached={**self.detached, **newer.detached},
            ended={**self.ended, **newer.ended},
            rejections=self.rejections + newer.rejections,
        )

    def __len__(self) -> int:
        return (
            len(self.events)
            + len(self.verdicts)
            + len(self.issued)
            + len(self.resolved)
            + len(self.checkpoints)
            + len(self.detached)
            + len(self.ended)
            + len(self.rejections)
        )


class Recorder:
    """Queues protocol events of sessions this node serves and writes them in batches (module docstring).

    Args:
        pool: the node's pool.
        node_id: written with events and checkpoints.
        resume_window_s: how long a detached session stays resumable.
        on_lost: called with the sessions a flush found fenced out (another node holds them now).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        node_id: str,
        *,
        resume_window_s: float,
        on_lost: Callable[[set[uuid.UUID]], None],
    ) -> None:
        self._pool = pool
        self._node = node_id
        self._window_s = resume_window_s
        self._on_lost = on_lost
        self._batch = _Batch()  # what the next flush writes
        self._lock = asyncio.Lock()  # one flush at a time, so batches commit in order
        self._soon = asyncio.Event()  # a session ended or detached: its avatar frees up, write it now
        self._failures = 0  # consecutive failed flushes of the batch at the front
        self._writing_endings = False  # the flush under way writes ends or detaches
        self.written = 0  # items written so far (metrics, tests)
        self.failed = 0  # flushes that failed (metrics, tests)

    def __len__(self) -> int:
        return len(self._batch)

    @property
    def endings_pending(self) -> bool:
        """Whether sessions ended or detached here are not committed yet (admission counts them busy)."""
        return self._writing_endings or bool(self._batch.ended or self._batch.detached)

    def add(self, tenure: Tenure, event: object) -> None:
        """Queue one protocol event of a session held under ``tenure``; other events are ignored.

        A snapshot that cannot be stored (a non-finite number in engine state: an engine bug) is logged
        and skipped; the session keeps its previous checkpoint."""
        try:
            self._add(tenure, event)
        except ValueError:
            _logger.exception("session %s: snapshot not stored", tenure.pk)

    def _add(self, tenure: Tenure, event: object) -> None:
        b, pk, h = self._batch, tenure.pk, tenure.holder
        if isinstance(event, CheckpointDue):
            snap = event.snapshot
            b.checkpoints[pk] = (h, float(snap["taken_at"]), int(snap["last_seq"]), snapshot_bytes(snap))
        elif isinstance(event, VerdictChanged):
            reasons = json.dumps([{"code": r.code, "detail": r.detail} for r in event.reasons])
            b.verdicts.append(
                (pk, h, event.at, event.state, event.action, event.score, reasons, event.at_seq)
            )
        elif isinstance(event, ChallengeIssued):
            b.issued.append((pk, h, event.challenge_id, event.action, event.deadline_s, event.at))
        elif isinstance(event, ChallengeResolved):
            o = event.outcome
            b.resolved.append((pk, h, o.challenge_id, o.result, o.reaction_ms, list(o.flags), event.at))
        elif isinstance(event, SessionStored):
            kind = "resumed" if event.resumed else "opened"
            b.events.append((pk, event.at, kind, json.dumps({"holder": str(h)})))
        elif isinstance(event, SessionDetached):
            snap = event.snapshot
            b.checkpoints.pop(pk, None)
            b.detached[pk] = (h, event.at, int(snap["last_seq"]), snapshot_bytes(snap))
            b.events.append((pk, event.at, "detached", "{}"))
            self._soon.set()
        elif isinstance(event, SessionEnded):
            snap = event.snapshot
            b.checkpoints.pop(pk, None)
            b.detached.pop(pk, None)
            summary = event.summary
            b.ended[pk] = (
                h,
                event.at,
                int(snap["last_seq"]),
                snapshot_bytes(snap),
                event.reason,
                json.dumps(summary),
                str(summary["final_state"]),
                str(summary["worst_state"]),
            )
            b.events.append((pk, event.at, "ended", json.dumps({"reason": event.reason})))
            self._soon.set()

    def add_rejection(
        self,
        ingest_key_id: uuid.UUID,
        session: str,
        kind: str,
        avatar_id: str | None,
        operator_id: str | None,
        reason: str,
        detail: str,
    ) -> None:
        """Queue a refused ``session.open``/``session.resume`` (``live_admissions``)."""
        self._batch.rejections.append((ingest_key_id, session, kind, avatar_id, operator_id, reason, detail))

    async def flush(self) -> None:
        """Write everything queued so far, in one transaction; report sessions found fenced out.

        Raises the database's error when the write failed; the batch is then kept, in front of what
        comes next, and retried by the next flush (given up after ``_MAX_FAILURES`` in a row).
        """
        async with self._lock:
            batch, self._batch = self._batch, _Batch()
            self._soon.clear()
            if not len(batch):
                return
            self._writing_endings = bool(batch.ended or batch.detached)
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    # Losing the last moments of these writes to a database crash is cheap (a session
                    # resumes from an older checkpoint and asks the client to re-send): do not wait for
                    # the WAL flush. Other transactions see them at commit all the same.
                    await conn.execute("SET LOCAL synchronous_commit = off")
                    lost = await _write(conn, batch, self._node, self._window_s)
            except BaseException:
                self.failed += 1
                self._failures += 1
                if self._failures < _MAX_FAILURES:
                    self._batch = batch.then(self._batch)
                else:
                    _logger.error(
                        "dropping %d session events after %d failed writes", len(batch), self._failures
                    )
                    self._failures = 0
                raise
            finally:
                self._writing_endings = False
            self._failures = 0
            self.written += len(batch)
        if lost:
            self._on_lost(lost)

    async def run(self, every_s: float) -> None:
        """Flush every ``every_s``, and at once after a session ended or detached, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), timeout=every_s)
            try:
                await self.flush()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                _logger.exception("writing session events failed; retrying")
                await asyncio.sleep(every_s)


def _cols(rows: Iterable[Sequence[Any]], n: int) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(n)]
    for row in rows:
        for i, v in enumerate(row):
            cols[i].append(v)
    return cols


async def _write(conn: asyncpg.Connection, b: _Batch, node: str, window_s: float) -> set[uuid.UUID]:
    """One batch, in order: history, verdicts, challenges, checkpoints, detaches, ends, rejections.
    Returns the sessions whose writes were fenced out."""
    lost: set[uuid.UUID] = set()
    if b.events:
        pk, at, kind, details = _cols(b.events, 4)
        await conn.execute(
            """INSERT INTO session_events (session_pk, at, kind, node_id, details)
               SELECT e.pk, to_timestamp(e.at), e.kind, $5, e.details::jsonb
               FROM unnest($1::uuid[], $2::float8[], $3::text[], $4::text[]) AS e(pk, at, kind, details)""",
            pk,
            at,
            kind,
            details,
            node,
        )
    if b.verdicts:
        await _write_verdicts(conn, b)
    if b.issued:
        pk, holder, cid, action, deadline, at = _cols(b.issued, 6)
        await conn.execute(
            """INSERT INTO session_challenges (session_pk, challenge_id, action, deadline_s, issued_at)
               SELECT c.pk, c.cid, c.action, c.deadline, to_timestamp(c.at)
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::float8[], $6::float8[])
                    AS c(pk, holder, cid, action, deadline, at)
               JOIN live_sessions l ON l.id = c.pk AND l.holder = c.holder
               ON CONFLICT (session_pk, challenge_id) DO NOTHING""",
            pk,
            holder,
            cid,
            action,
            deadline,
            at,
        )
    if b.resolved:
        # Flags go as one text per outcome ("a,b"): unnest of a 2-D array would flatten it.
        pk, holder, cid, result, reaction, flags, at = _cols(b.resolved, 7)
        await conn.execute(
            """UPDATE session_challenges sc SET result = c.result, reaction_ms = c.reaction,
                   flags = CASE WHEN c.flags = '' THEN '{}'::text[] ELSE string_to_array(c.flags, ',') END,
                   resolved_at = to_timestamp(c.at)
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::float8[], $6::text[],
                           $7::float8[]) AS c(pk, holder, cid, result, reaction, flags, at)
               JOIN live_sessions l ON l.id = c.pk AND l.holder = c.holder
               WHERE sc.session_pk = c.pk AND sc.challenge_id = c.cid""",
            pk,
            holder,
            cid,
            result,
            reaction,
            [",".join(f) for f in flags],
            at,
        )
    if b.checkpoints:
        lost |= await _write_checkpoints(conn, b.checkpoints, node, "checkpoint", window_s)
    if b.detached:
        lost |= await _write_checkpoints(conn, b.detached, node, "detached", window_s)
    if b.ended:
        lost |= await _write_ended(conn, b.ended, node)
    if b.rejections:
        key, session, kind, avatar, operator, reason, detail = _cols(b.rejections, 7)
        await conn.execute(
            """INSERT INTO live_admissions (ingest_key_id, node_id, session, kind, avatar_id, operator_id,
                                            accepted, reason, detail)
               SELECT r.key, $8, r.session, r.kind, r.avatar, r.operator, false, r.reason, r.detail
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                           $7::text[]) AS r(key, session, kind, avatar, operator, reason, detail)""",
            key,
            session,
            kind,
            avatar,
            operator,
            reason,
            detail,
            node,
        )
    return lost


async def _write_verdicts(conn: asyncpg.Connection, b: _Batch) -> None:
    pk, holder, at, state, action, score, reasons, at_seq = _cols(b.verdicts, 8)
    await conn.execute(
        f"""WITH v AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::text[], $5::text[],
                                     $6::float8[], $7::text[], $8::int[])
                       WITH ORDINALITY AS v(pk, holder, at, state, action, score, reasons, at_seq, ord)),
            ok AS (SELECT v.* FROM v JOIN live_sessions l ON l.id = v.pk AND l.holder = v.holder),
            ins AS (INSERT INTO session_verdicts (session_pk, at, state, action, score, reasons, at_seq)
                    SELECT pk, to_timestamp(at), state, action, score, reasons::jsonb, at_seq FROM ok
                    ORDER BY ord),
            worst AS (SELECT pk, max(array_position({_WORST_ORDER}, state)) AS rank FROM ok GROUP BY pk),
            last AS (SELECT DISTINCT ON (pk) pk, state, action, score FROM ok ORDER BY pk, ord DESC)
        UPDATE live_sessions l SET verdict_state = last.state, verdict_action = last.action,
            score = last.score,
            worst_state = ({_WORST_ORDER})[
                greatest(array_position({_WORST_ORDER}, l.worst_state), worst.rank)]
        FROM last JOIN worst ON worst.pk = last.pk
        WHERE l.id = last.pk""",
        pk,
        holder,
        at,
        state,
        action,
        score,
        reasons,
        at_seq,
    )


async def _write_checkpoints(
    conn: asyncpg.Connection,
    items: dict[uuid.UUID, tuple[uuid.UUID, float, int, bytes]],
    node: str,
    kind: str,
    window_s: float,
) -> set[uuid.UUID]:
    """Checkpoints of active sessions (``kind`` checkpoint: the session row is only read, to fence) or
    of detached ones (``kind`` detached: the row becomes detached, resumable for the window)."""
    pks = list(items)
    holder, taken, last_seq, snap = _cols(items.values(), 4)
    if kind == "checkpoint":
        held = """SELECT c.* FROM c JOIN live_sessions l
                  ON l.id = c.pk AND l.holder = c.holder AND l.state = 'active'"""
    else:
        held = """UPDATE live_sessions l SET state = 'detached', holder = NULL, detached_at = now(),
                      live_until = now() + make_interval(secs => $7::float8), last_seq = c.last_seq
                  FROM c WHERE l.id = c.pk AND l.holder = c.holder AND l.state = 'active' RETURNING c.*"""
    args: list[Any] = [pks, holder, taken, last_seq, snap, node]
    if kind != "checkpoint":
        args.append(window_s)
    rows = await conn.fetch(
        f"""WITH c AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::int[], $5::bytea[])
                       AS c(pk, holder, taken, last_seq, snap)),
            h AS ({held})
        INSERT INTO session_checkpoints (session_pk, taken_at, taken_at_s, last_seq, node_id, snapshot)
        SELECT h.pk, to_timestamp(h.taken), h.taken, h.last_seq, $6, h.snap FROM h
        ON CONFLICT (session_pk) DO UPDATE SET taken_at = EXCLUDED.taken_at,
            taken_at_s = EXCLUDED.taken_at_s, last_seq = EXCLUDED.last_seq, node_id = EXCLUDED.node_id,
            snapshot = EXCLUDED.snapshot
        RETURNING session_pk""",
        *args,
    )
    return set(pks) - {r["session_pk"] for r in rows}


async def _write_ended(
    conn: asyncpg.Connection,
    items: dict[uuid.UUID, tuple[uuid.UUID, float, int, bytes, str, str, str, str]],
    node: str,
) -> set[uuid.UUID]:
    pks = list(items)
    holder, taken, last_seq, snap, reason, summary, final, worst = _cols(items.values(), 8)
    rows = await conn.fetch(
        """WITH c AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::int[], $5::bytea[], $6::text[],
                                     $7::text[], $8::text[], $9::text[])
                       AS c(pk, holder, taken, last_seq, snap, reason, summary, final, worst)),
            u AS (UPDATE live_sessions l SET state = 'ended', holder = NULL, ended_at = now(),
                      end_reason = c.reason, summary = c.summary::jsonb, last_seq = c.last_seq,
                      verdict_state = c.final, worst_state = c.worst
                  FROM c WHERE l.id = c.pk AND l.holder = c.holder AND l.state = 'active' RETURNING l.id)
        INSERT INTO session_checkpoints (session_pk, taken_at, taken_at_s, last_seq, node_id, snapshot)
        SELECT c.pk, to_timestamp(c.taken), c.taken, c.last_seq, $10, c.snap
        FROM c JOIN u ON u.id = c.pk
        ON CONFLICT (session_pk) DO UPDATE SET taken_at = EXCLUDED.taken_at,
            taken_at_s = EXCLUDED.taken_at_s, last_seq = EXCLUDED.last_seq, node_id = EXCLUDED.node_id,
            snapshot = EXCLUDED.snapshot
        RETURNING session_pk""",
        pks,
        holder,
        taken,
        last_seq,
        snap,
        reason,
        summary,
        final,
        worst,
        node,
    )
    return set(pks) - {r["session_pk"] for r in rows}
