"""The live protocol v1 as a sans-I/O state machine: one :class:`LiveConnection` per websocket connection.

Follows ``/work/shared/PROTOCOL.md`` (and websockets' sans-I/O design, ``docs/howto/sansio.rst``): the
shell feeds client text frames to :meth:`LiveConnection.receive_text` and calls :meth:`LiveConnection.tick`
at :meth:`LiveConnection.next_deadline`; it sends what :meth:`LiveConnection.messages_to_send` returns
and acts on :meth:`LiveConnection.events_received`. Nothing here does I/O or reads a clock: every call
takes ``now`` (the server's monotonic seconds).

The shell answers events:

- :class:`OpenRequested` → check the database (avatar, operator, busy, id reuse by the key) and call
  :meth:`~LiveConnection.admit` or :meth:`~LiveConnection.reject`.
- :class:`ResumeRequested` → load the session's last checkpoint and call :meth:`~LiveConnection.resumed`
  (or :meth:`~LiveConnection.reject` / :meth:`~LiveConnection.resume_unknown`).
- :class:`CheckpointDue`, :class:`SessionStored`, :class:`VerdictChanged`, :class:`ChallengeIssued`,
  :class:`ChallengeResolved`, :class:`SessionEnded`, :class:`SessionDetached`, :class:`SessionRejected`
  → store them.
- :class:`CloseConnection` → close the websocket with that code, then call :meth:`~LiveConnection.detach`.

Messages of a session whose admission or resumption is pending are kept (at most
``limits.max_pending_messages``) and processed once it is admitted. A session whose connection drops stays
resumable: :meth:`~LiveConnection.detach` hands its snapshot to the shell, and :func:`expire_session` ends
it with its summary when ``resume_window_s`` passes without a ``session.resume``.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from livecheck.challenge_engine import ChallengeEngine
from livecheck.challenges import ChallengeTracker
from livecheck.engine import ChallengeOutcome, Engine, Reason, VerdictState
from livecheck.messages import (
    BadMessage,
    ChallengeMsg,
    ChallengeShown,
    Chat,
    ErrorMsg,
    Frame,
    Keepalive,
    Limits,
    Reconnect,
    SessionAccepted,
    SessionClose,
    SessionOpen,
    SessionResume,
    SessionSummary,
    SessionTerminate,
    Speech,
    SummaryChallenges,
    Tracking,
    VerdictMsg,
    VerdictReason,
    Welcome,
    dump,
    parse_client_message,
)
from livecheck.messages import (
    SessionRejected as SessionRejectedMsg,
)
from livecheck.policy import Policy, VerdictAction

__all__ = [
    "ChallengeIssued",
    "ChallengeResolved",
    "CheckpointDue",
    "CloseConnection",
    "EngineFactory",
    "EngineRestorer",
    "Event",
    "LiveConnection",
    "OpenRequested",
    "ResumeRequested",
    "SessionDetached",
    "SessionEnded",
    "SessionRejected",
    "SessionState",
    "SessionStored",
    "VerdictChanged",
    "expire_session",
]

# Close codes (RFC 6455 §7.4.1): 1008 policy violation (the rate rule), 1009 message too big.
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_TOO_BIG: Final = 1009
# PROTOCOL.md "Transport": closed after drops in each of this many consecutive one-second slots.
RATE_DROP_SLOTS: Final = 5
RATE_ERROR_EVERY_S: Final = 1.0  # `rate_limited` at most once a second
# PROTOCOL.md "Verdicts", summary `worst_state`: human < pending < at_risk < violation.
_WORST: Final[dict[str, int]] = {"human": 0, "pending": 1, "at_risk": 2, "violation": 3}
_SNAPSHOT_VERSION: Final = 1
_PDQ_BYTES: Final = 32

# Rebuilds an engine from (its snapshot, the avatar's reference hashes, how far to shift its stored
# server times: ``now`` here minus ``now`` where the snapshot was taken, monotonic clocks differ by node).
EngineRestorer: TypeAlias = Callable[[Mapping[str, Any], Sequence[bytes], float], Engine]
# Makes the engine of a newly admitted session from the avatar's reference hashes.
EngineFactory: TypeAlias = Callable[[Sequence[bytes]], Engine]


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class OpenRequested:
    """``session.open``: the shell decides admission and calls ``admit`` or ``reject``."""

    session: str
    avatar_id: str
    operator_id: str
    stream_id: str | None


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """``session.resume``: the shell loads the checkpoint and calls ``resumed`` (or refuses)."""

    session: str
    last_seq: int


@dataclass(frozen=True, slots=True)
class SessionRejected:
    """A ``session.rejected`` was sent (decided here or by the shell)."""

    session: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class SessionStored:
    """A session started (or resumed) on this connection at server time ``at``: store it."""

    session: str
    avatar_id: str
    operator_id: str
    stream_id: str | None
    resumed: bool
    at: float


@dataclass(frozen=True, slots=True)
class VerdictChanged:
    """The session's state or action changed (the first ``pending`` verdict included)."""

    session: str
    state: VerdictState
    action: VerdictAction
    score: float
    reasons: tuple[Reason, ...]
    at_seq: int
    at: float


@dataclass(frozen=True, slots=True)
class ChallengeIssued:
    session: str
    challenge_id: str
    action: str
    deadline_s: float
    at: float


@dataclass(frozen=True, slots=True)
class ChallengeResolved:
    session: str
    outcome: ChallengeOutcome
    at: float


@dataclass(frozen=True, slots=True)
class CheckpointDue:
    """Store ``snapshot`` (JSON-serialisable); ``resumed`` continues the session from it."""

    session: str
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionDetached:
    """The connection dropped; the session stays resumable for ``resume_window_s`` from ``snapshot``."""

    session: str
    snapshot: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is over: ``reason`` is ``closed`` (by the client), ``resume_expired``, or the
    ``session.terminate`` reason; ``summary`` is the ``session.summary`` body."""

    session: str
    reason: str
    summary: dict[str, Any]
    snapshot: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the websocket with ``code`` and ``reason``, then call ``detach``."""

    code: int
    reason: str


Event: TypeAlias = (
    OpenRequested
    | ResumeRequested
    | SessionRejected
    | SessionStored
    | VerdictChanged
    | ChallengeIssued
    | ChallengeResolved
    | CheckpointDue
    | SessionDetached
    | SessionEnded
    | CloseConnection
)


# --------------------------------------------------------------------------------------------- session


class SessionState(enum.IntEnum):
    """Where a session on this connection stands; ended sessions are forgotten."""

    AWAITING_ADMISSION = 1  # session.open received; the shell is checking the database
    AWAITING_RESUME = 2  # session.resume received; the shell is loading the checkpoint
    ACTIVE = 3


_Pending: TypeAlias = Tracking | Chat | Speech | Frame | ChallengeShown | SessionClose


class _Session:
    __slots__ = (
        "avatar_id",
        "counts",
        "elapsed_before",
        "engine",
        "id",
        "issued",
        "last_seq",
        "last_ts",
        "last_verdict_at",
        "lost",
        "next_challenge_at",
        "next_checkpoint_at",
        "operator_id",
        "pending",
        "pending_dropped",
        "reasons",
        "references",
        "score",
        "started_at",
        "state",
        "stream_id",
        "tracker",
        "v_action",
        "v_state",
        "worst",
    )

    def __init__(self, sid: str, state: SessionState) -> None:
        self.id = sid
        self.state = state
        self.avatar_id = ""  # set on open, or from the checkpoint on resume
        self.operator_id = ""
        self.stream_id: str | None = None
        self.pending: list[_Pending] = []  # messages received while admission/resumption is pending
        self.pending_dropped = 0  # of those, how many did not fit
        self.engine: Engine | None = None  # set when active
        self.tracker: ChallengeTracker | None = None  # set when active
        self.references = b""  # the avatar's reference PDQ hashes, 32 bytes each
        self.last_seq = 0  # last accepted seq
        self.last_ts: float | None = None  # last tracking sample time (sender clock)
        self.started_at = 0.0  # server time this node started serving it
        self.elapsed_before = 0.0  # seconds it was served before (other connections)
        self.v_state: VerdictState = "pending"  # state of the last verdict sent
        self.v_action: VerdictAction = "none"  # action of the last verdict sent
        self.worst: VerdictState = "pending"  # worst state so far
        self.score = 0.5  # last assessed score
        self.reasons: list[Reason] = []  # last assessed reasons
        self.last_verdict_at = 0.0  # server time of the last verdict sent
        self.next_checkpoint_at = math.inf  # server time the next checkpoint is due
        self.next_challenge_at = math.inf  # server time the next challenge is due
        self.issued = 0  # challenges issued (ids are c1, c2, …)
        self.counts = [0, 0, 0]  # passed, failed, missed
        self.lost = 0  # messages lost to seq gaps

    def due(self, verdict_interval_s: float) -> float:
        assert self.tracker is not None  # active
        d = min(self.last_verdict_at + verdict_interval_s, self.next_checkpoint_at)
        t = self.tracker.next_deadline()
        if t is None:
            return min(d, self.next_challenge_at)
        return min(d, t)


_OUTCOME_INDEX: Final = {"passed": 0, "failed": 1, "missed": 2}


def _challenge_number(challenge_id: str) -> int | None:
    """``n`` for an id this module issues (``c1``, ``c2``, …; no leading zeros), else ``None``."""
    digits = challenge_id[1:]
    if challenge_id[:1] == "c" and digits.isascii() and digits.isdigit() and len(digits) <= 9:
        n = int(digits)
        if str(n) == digits:
            return n
    return None


# ------------------------------------------------------------------------------------------ connection


class LiveConnection:
    """One websocket connection carrying any number (up to ``max_sessions``) of live sessions.

    Args:
        policy: the live policy in force.
        connection_id: announced in ``welcome``.
        rng: drives challenge times and actions (pass a seeded ``random.Random`` in tests).
        now: server time the connection opened.
        restore_engine: rebuilds a session's engine from its checkpoint; defaults to
            :meth:`ChallengeEngine.restore`.
        new_engine: the engine for an admitted session when ``admit`` is given none; defaults to a
            :class:`ChallengeEngine` for ``policy``.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        connection_id: str,
        rng: random.Random,
        now: float,
        restore_engine: EngineRestorer | None = None,
        new_engine: EngineFactory | None = None,
    ) -> None:
        self._policy = policy
        self._limits = policy.limits  # per-connection limits
        self._rules = policy.challenge_rules()  # what completes a challenge
        self._wire_policy = policy.to_wire()  # the session.accepted `policy` object
        self._verdict_every = policy.sessions.verdict_interval_s
        self._rng = rng  # challenge times and actions
        # One rules object shared by every default engine on this connection.
        engine_rules = ChallengeEngine.from_policy(policy).rules
        self._new_engine = new_engine or (lambda references: ChallengeEngine(engine_rules))
        self._restore_engine = restore_engine or _challenge_restorer(policy)
        self._out: list[str] = []  # text frames to send
        self._events: list[Event] = []  # events for the shell
        self._sessions: dict[str, _Session] = {}  # open or pending sessions by id
        self._closed = False  # CloseConnection emitted or detached: nothing more is received
        self._opened_at = now  # start of the rate limiter's one-second slots
        self._last_sent = now  # server time of the last message queued (keepalive)
        self._tokens = policy.limits.max_msgs_per_s  # token bucket: burst = rate
        self._tokens_at = now  # when the bucket was last refilled
        self._drop_slot = -2  # the last one-second slot with a drop
        self._drop_run = 0  # consecutive slots with drops, ending at _drop_slot
        self._rate_error_at = -math.inf  # when `rate_limited` was last sent
        self._send(
            Welcome(
                connection_id=connection_id,
                keepalive_s=self._limits.keepalive_s,
                limits=Limits(
                    max_frame_bytes=self._limits.max_frame_bytes,
                    max_msgs_per_s=self._limits.max_msgs_per_s,
                    max_sessions=self._limits.max_sessions,
                ),
            ),
            now,
        )

    # -- the shell's side: output

    def messages_to_send(self) -> list[str]:
        """The text frames to send, in order (``welcome`` first), and forget them."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[Event]:
        """The events for the shell since the last call, in order."""
        events, self._events = self._events, []
        return events

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed: :meth:`receive_text` ignores further frames."""
        return self._closed

    def session_state(self, session: str) -> SessionState | None:
        """The state of ``session`` on this connection, ``None`` when it is not here."""
        s = self._sessions.get(session)
        return None if s is None else s.state

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must run next (server time); ``None`` once closed."""
        if self._closed:
            return None
        d = self._last_sent + self._limits.keepalive_s
        every = self._verdict_every
        for s in self._sessions.values():
            if s.state is SessionState.ACTIVE:
                d = min(d, s.due(every))
        return d

    # -- the shell's side: input

    def receive_text(self, text: str, now: float) -> None:
        """Handle one client text frame received at ``now``.

        Follows PROTOCOL.md "Transport" (size, rate limit), "Time" (seq and ts rules) and
        "Client → server". Errors go back to the client as ``error`` messages; nothing raises.
        """
        if self._closed or not self._take_token(now):
            return
        limit = self._limits.max_frame_bytes
        # Characters never outnumber UTF-8 bytes, and a character is at most 4 bytes: only encode when
        # the text could be too big.
        if len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit:
            self._close(CLOSE_TOO_BIG, f"message over {limit} bytes")
            return
        try:
            msg = parse_client_message(text)
        except BadMessage as exc:
            self._error("bad_message", exc.detail, now, session=exc.session, ref_seq=exc.seq)
            return
        if isinstance(msg, SessionOpen):
            self._on_open(msg, now)
        elif isinstance(msg, SessionResume):
            self._on_resume(msg, now)
        else:
            s = self._sessions.get(msg.session)
            if s is None:
                self._error(
                    "unknown_session", "no such session on this connection", now, msg.session, msg.seq
                )
            elif s.state is SessionState.ACTIVE:
                self._timers(s, now)
                if s.state is SessionState.ACTIVE and s.id in self._sessions:
                    self._process(s, msg, now)
            elif len(s.pending) < self._limits.max_pending_messages:
                s.pending.append(msg)
            else:
                # Dropped: once admitted, the session sees it as a seq gap (lost evidence).
                s.pending_dropped += 1

    def tick(self, now: float) -> None:
        """Run the timers due at ``now``: challenge issue times and deadlines, verdicts, checkpoints,
        keepalive."""
        if self._closed:
            return
        for s in list(self._sessions.values()):
            if s.state is SessionState.ACTIVE:
                self._timers(s, now)
        if now >= self._last_sent + self._limits.keepalive_s:
            self._send(Keepalive(), now)

    def admit(
        self,
        session: str,
        now: float,
        references: Sequence[bytes] = (),
        engine: Engine | None = None,
    ) -> bool:
        """Admit a session whose ``session.open`` is pending: send ``session.accepted`` and the first
        ``pending`` verdict, then process the messages that waited.

        Args:
            references: the avatar's reference PDQ hashes (32 bytes each), kept with the session and its
                snapshots for the engine.
            engine: the session's engine; a new one from ``new_engine`` when ``None``.

        Returns:
            ``False`` when the session is no longer waiting (the connection dropped): the shell undoes
            whatever it reserved for it.

        Raises:
            ValueError: a reference is not 32 bytes.
        """
        s = self._sessions.get(session)
        if s is None or s.state is not SessionState.AWAITING_ADMISSION or self._closed:
            return False
        for ref in references:
            if len(ref) != _PDQ_BYTES:
                raise ValueError(f"reference hash has {len(ref)} bytes, expected {_PDQ_BYTES}")
        s.references = b"".join(references)
        s.engine = engine if engine is not None else self._new_engine(references)
        s.tracker = ChallengeTracker(self._rules)
        s.state = SessionState.ACTIVE
        s.started_at = now
        s.next_checkpoint_at = now + self._policy.sessions.checkpoint_s
        s.next_challenge_at = now + self._challenge_interval()
        self._send(SessionAccepted(session=s.id, policy=self._wire_policy), now)
        # PROTOCOL.md "Verdicts": a first `pending` verdict follows session.accepted, whatever the engine
        # would already say; its score and reasons are the engine's.
        a = s.engine.assess(now)
        s.v_state, s.v_action = "pending", self._policy.action_for("pending")
        s.score, s.reasons = a.score, list(a.reasons)
        self._verdict(s, now, changed=True)
        self._stored(s, now, resumed=False)
        self._flush_pending(s, now)
        return True

    def reject(self, session: str, reason: str, detail: str, now: float) -> bool:
        """Refuse a pending ``session.open`` or ``session.resume`` with ``session.rejected``.

        ``reason`` is one of PROTOCOL.md's rejection reasons; the waiting messages are discarded.
        Returns ``False`` when the session is no longer waiting.
        """
        s = self._sessions.get(session)
        if s is None or s.state is SessionState.ACTIVE or self._closed:
            return False
        del self._sessions[session]
        self._rejected(session, reason, detail, now)
        return True

    def resume_unknown(self, session: str, detail: str, now: float) -> bool:
        """Refuse a pending ``session.resume`` of a session that is not resumable (never existed, ended,
        or past its resume window): ``error`` ``unknown_session``. Returns ``False`` when not waiting."""
        s = self._sessions.get(session)
        if s is None or s.state is not SessionState.AWAITING_RESUME or self._closed:
            return False
        del self._sessions[session]
        self._error("unknown_session", detail, now, session=session)
        return True

    def fail_pending(self, session: str, detail: str, now: float) -> bool:
        """Give up on a pending ``session.open`` or ``session.resume`` the shell could not decide (its
        database failed): ``error`` ``internal``; the client may send the request again. Returns ``False``
        when the session is not waiting."""
        s = self._sessions.get(session)
        if s is None or s.state is SessionState.ACTIVE or self._closed:
            return False
        del self._sessions[session]
        self._error("internal", detail, now, session=session)
        return True

    def resumed(
        self,
        session: str,
        snapshot: Mapping[str, Any],
        now: float,
        *,
        away_s: float = 0.0,
        engine: Engine | None = None,
    ) -> bool:
        """Continue a session from its last checkpoint (PROTOCOL.md "Resume").

        Sends ``session.accepted`` with ``resume_from_seq`` (the first seq the checkpoint does not hold)
        and the current verdict, then processes the messages that waited.

        Args:
            snapshot: a ``CheckpointDue``/``SessionDetached`` snapshot of this session.
            away_s: server seconds since the snapshot was taken (the shell measures them with a clock
                common to all nodes); challenge deadlines keep running while a session is away.
            engine: the restored engine; rebuilt with ``restore_engine`` when ``None``.

        Returns:
            ``False`` when the session is no longer waiting.

        Raises:
            ValueError: the snapshot is of another session or not one this module wrote.
        """
        s = self._sessions.get(session)
        if s is None or s.state is not SessionState.AWAITING_RESUME or self._closed:
            return False
        if snapshot.get("session") != session:
            raise ValueError(f"snapshot is of session {snapshot.get('session')!r}, not {session!r}")
        restored = self._restore(snapshot, now, away_s, engine)
        restored.pending, restored.pending_dropped = s.pending, s.pending_dropped
        self._sessions[session] = restored
        self._send(
            SessionAccepted(session=session, policy=self._wire_policy, resume_from_seq=restored.last_seq + 1),
            now,
        )
        self._verdict(restored, now, changed=False)
        self._stored(restored, now, resumed=True)
        self._flush_pending(restored, now)
        return True

    def terminate(self, session: str, reason: str, now: float) -> bool:
        """End an active session on the server's initiative (staff action, suspension, revocation):
        ``session.terminate`` then ``session.summary``. Returns ``False`` when it is not active here."""
        s = self._sessions.get(session)
        if s is None or s.state is not SessionState.ACTIVE or self._closed:
            return False
        self._end(s, reason, now, terminate=True)
        return True

    def release(self, session: str, now: float) -> bool:
        """Let one active session go without ending it (it is resumed on another connection or node): a
        :class:`SessionDetached` event with its snapshot, and it is forgotten here (its later messages get
        ``unknown_session``). Returns ``False`` when it is not active here."""
        s = self._sessions.get(session)
        if s is None or s.state is not SessionState.ACTIVE or self._closed:
            return False
        self._events.append(SessionDetached(s.id, self._snapshot(s, now), now))
        del self._sessions[session]
        return True

    def drain(self, url: str, after_s: float, now: float) -> None:
        """This node is draining: send ``reconnect`` so the client resumes its sessions at ``url``."""
        if not self._closed:
            self._send(Reconnect(url=url, after_s=after_s), now)

    def detach(self, now: float) -> None:
        """The connection is gone: each active session becomes a :class:`SessionDetached` event with its
        snapshot (resumable for ``resume_window_s``); sessions still waiting for admission are dropped
        (``admit``/``resumed`` then return ``False``)."""
        for s in list(self._sessions.values()):
            if s.state is SessionState.ACTIVE:
                self._events.append(SessionDetached(s.id, self._snapshot(s, now), now))
        self._sessions.clear()
        self._closed = True

    # -- connection-level rules

    def _send(self, message: Any, now: float) -> None:
        self._out.append(dump(message))
        self._last_sent = now

    def _error(
        self, code: Any, detail: str, now: float, session: str | None = None, ref_seq: int | None = None
    ) -> None:
        self._send(ErrorMsg(code=code, detail=detail, session=session, ref_seq=ref_seq), now)

    def _close(self, code: int, reason: str) -> None:
        self._closed = True
        self._events.append(CloseConnection(code, reason))

    def _take_token(self, now: float) -> bool:
        """PROTOCOL.md "Transport": a token bucket with rate and burst ``max_msgs_per_s``."""
        rate = self._limits.max_msgs_per_s
        self._tokens = min(rate, self._tokens + max(0.0, now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        slot = math.floor(now - self._opened_at)
        if slot != self._drop_slot:
            self._drop_run = self._drop_run + 1 if slot == self._drop_slot + 1 else 1
            self._drop_slot = slot
        if self._drop_run >= RATE_DROP_SLOTS:
            self._close(
                CLOSE_POLICY_VIOLATION,
                f"messages over the rate limit in {RATE_DROP_SLOTS} consecutive seconds",
            )
            return False
        if now - self._rate_error_at >= RATE_ERROR_EVERY_S:
            self._rate_error_at = now
            self._error("rate_limited", f"over {rate:g} messages/s: message dropped", now)
        return False

    # -- opening and resuming

    def _refuse_early(self, session: str, now: float) -> bool:
        """The rejection reasons decided here, in PROTOCOL.md's order; whether one applied."""
        if session in self._sessions:
            self._rejected(session, "session_exists", "a session with this id is open or pending here", now)
            return True
        if len(self._sessions) >= self._limits.max_sessions:
            self._rejected(
                session,
                "too_many_sessions",
                f"this connection already carries {len(self._sessions)} sessions",
                now,
            )
            return True
        return False

    def _on_open(self, msg: SessionOpen, now: float) -> None:
        if self._refuse_early(msg.session, now):
            return
        s = _Session(msg.session, SessionState.AWAITING_ADMISSION)
        s.avatar_id, s.operator_id, s.stream_id = msg.avatar_id, msg.operator_id, msg.stream_id
        self._sessions[msg.session] = s
        self._events.append(OpenRequested(msg.session, msg.avatar_id, msg.operator_id, msg.stream_id))

    def _on_resume(self, msg: SessionResume, now: float) -> None:
        if self._refuse_early(msg.session, now):
            return
        self._sessions[msg.session] = _Session(msg.session, SessionState.AWAITING_RESUME)
        self._events.append(ResumeRequested(msg.session, msg.last_seq))

    def _rejected(self, session: str, reason: Any, detail: str, now: float) -> None:
        self._send(SessionRejectedMsg(session=session, reason=reason, detail=detail), now)
        self._events.append(SessionRejected(session, reason, detail))

    def _stored(self, s: _Session, now: float, *, resumed: bool) -> None:
        self._events.append(SessionStored(s.id, s.avatar_id, s.operator_id, s.stream_id, resumed, now))

    def _flush_pending(self, s: _Session, now: float) -> None:
        pending, s.pending = s.pending, []
        for msg in pending:
            if s.id not in self._sessions:
                break  # ended by one of them (session.close, a terminating verdict)
            self._process(s, msg, now)

    # -- an active session's messages

    def _process(self, s: _Session, msg: _Pending, now: float) -> None:
        """PROTOCOL.md "Time": refuse a repeated seq, refuse a bad value without using up its seq, count
        a gap as lost evidence; then hand the evidence to the engine and the challenge tracker."""
        engine, tracker = s.engine, s.tracker
        assert engine is not None and tracker is not None  # active
        seq = msg.seq
        if seq <= s.last_seq:
            self._error("bad_seq", f"seq {seq} is not after {s.last_seq}", now, s.id, seq)
            return
        late_shown = False
        if isinstance(msg, Tracking):
            if s.last_ts is not None and msg.ts[0] <= s.last_ts:
                self._error(
                    "bad_message", "ts must increase across the messages of a session", now, s.id, seq
                )
                return
        elif isinstance(msg, ChallengeShown):
            n = _challenge_number(msg.challenge_id)
            if n is None or not 1 <= n <= s.issued:
                self._error("bad_message", "challenge_id: no such challenge", now, s.id, seq)
                return
            if not tracker.awaiting_show(msg.challenge_id):
                if tracker.open_challenge == msg.challenge_id:
                    self._error("bad_message", "challenge_id: already shown", now, s.id, seq)
                    return
                late_shown = True  # already missed: accepted, changes nothing
        expected = s.last_seq + 1
        if seq > expected:
            lost = seq - expected
            s.lost += lost
            engine.on_lost(lost)
            missing = f"seq {expected}" if lost == 1 else f"seq {expected}–{seq - 1}"
            self._error("seq_gap", f"missing {missing} ({lost} lost)", now, s.id, seq)
        s.last_seq = seq

        outcomes: list[ChallengeOutcome] = []
        if isinstance(msg, Tracking):
            face = msg.face
            n_samples = len(msg.ts)
            channels: Mapping[str, Sequence[float]] = msg.channels  # type: ignore[assignment]  # dynamic TypedDict
            engine.on_tracking(msg.ts, channels, face if face is not None else [True] * n_samples, now)
            outcomes = tracker.add_samples(msg.ts, channels, face, now)
            s.last_ts = msg.ts[-1]
        elif isinstance(msg, ChallengeShown):
            if not late_shown:
                outcomes = tracker.shown(msg.challenge_id, msg.t, now)
        elif isinstance(msg, Chat):
            engine.on_chat(msg.t, msg.message_id, now)
        elif isinstance(msg, Speech):
            engine.on_speech(msg.t0, msg.t1, msg.reply_to, now)
        elif isinstance(msg, Frame):
            engine.on_frame(msg.t, bytes.fromhex(msg.pdq), msg.quality, now)
        else:  # SessionClose
            self._end(s, "closed", now, terminate=False)
            return
        for outcome in outcomes:
            self._resolved(s, outcome, now)
        self._assess(s, now)

    # -- timers, challenges, verdicts

    def _timers(self, s: _Session, now: float) -> None:
        tracker = s.tracker
        assert tracker is not None  # active
        outcomes = tracker.check(now)
        for outcome in outcomes:
            self._resolved(s, outcome, now)
        if tracker.open_challenge is None and now >= s.next_challenge_at:
            self._issue(s, now)
        if outcomes or now >= s.last_verdict_at + self._verdict_every:
            self._assess(s, now, force=now >= s.last_verdict_at + self._verdict_every)
            if s.id not in self._sessions:
                return
        if now >= s.next_checkpoint_at:
            s.next_checkpoint_at = now + self._policy.sessions.checkpoint_s
            self._events.append(CheckpointDue(s.id, self._snapshot(s, now)))

    def _challenge_interval(self) -> float:
        c = self._policy.challenges
        # PROTOCOL.md: challenges are at least show_within_s + deadline_s apart.
        floor = c.show_within_s + c.deadline_s
        return max(floor, self._rng.uniform(c.mean_interval_s - c.jitter_s, c.mean_interval_s + c.jitter_s))

    def _issue(self, s: _Session, now: float) -> None:
        assert s.tracker is not None  # active
        c = self._policy.challenges
        s.issued += 1
        challenge_id = f"c{s.issued}"
        action = self._rng.choice(c.enabled)
        s.tracker.issue(challenge_id, action, now)
        s.next_challenge_at = now + self._challenge_interval()
        self._send(
            ChallengeMsg(session=s.id, challenge_id=challenge_id, action=action, deadline_s=c.deadline_s), now
        )
        self._events.append(ChallengeIssued(s.id, challenge_id, action, c.deadline_s, now))

    def _resolved(self, s: _Session, outcome: ChallengeOutcome, now: float) -> None:
        assert s.engine is not None  # active
        s.counts[_OUTCOME_INDEX[outcome.result]] += 1
        s.engine.on_challenge(outcome)
        self._events.append(ChallengeResolved(s.id, outcome, now))

    def _assess(self, s: _Session, now: float, *, force: bool = False, may_end: bool = True) -> None:
        """Ask the engine; send a verdict when the state or action changed, or when ``force``; end the
        session when the action is ``terminate``."""
        assert s.engine is not None  # active
        a = s.engine.assess(now)
        action = a.action or self._policy.action_for(a.state)
        s.score, s.reasons = a.score, list(a.reasons)
        changed = a.state != s.v_state or action != s.v_action
        if changed:
            s.v_state, s.v_action = a.state, action
        if changed or force:
            self._verdict(s, now, changed=changed)
        if changed and action == "terminate" and may_end:
            self._end(s, a.state, now, terminate=True)

    def _verdict(self, s: _Session, now: float, *, changed: bool) -> None:
        if _WORST[s.v_state] > _WORST[s.worst]:
            s.worst = s.v_state
        reasons = [VerdictReason(code=r.code, detail=r.detail) for r in s.reasons]
        self._send(
            VerdictMsg(
                session=s.id,
                state=s.v_state,
                score=min(1.0, max(0.0, s.score)),
                action=s.v_action,
                reasons=reasons,
                at_seq=s.last_seq,
            ),
            now,
        )
        s.last_verdict_at = now
        if changed:
            self._events.append(
                VerdictChanged(s.id, s.v_state, s.v_action, s.score, tuple(s.reasons), s.last_seq, now)
            )

    # -- the end of a session

    def _end(self, s: _Session, reason: str, now: float, *, terminate: bool) -> None:
        """``session.terminate`` (when ``terminate``) then ``session.summary``; the session is forgotten."""
        assert s.tracker is not None  # active
        outcomes, still_open = s.tracker.close(now)
        for outcome in outcomes:
            self._resolved(s, outcome, now)
        self._assess(s, now, may_end=False)
        if terminate:
            self._send(SessionTerminate(session=s.id, reason=reason), now)
        passed, failed, missed = s.counts
        summary = SessionSummary(
            session=s.id,
            duration_s=round(s.elapsed_before + (now - s.started_at), 3),
            final_state=s.v_state,
            worst_state=s.worst,
            challenges=SummaryChallenges(
                issued=s.issued, passed=passed, failed=failed, missed=missed, open=still_open
            ),
            reasons=[VerdictReason(code=r.code, detail=r.detail) for r in s.reasons],
        )
        self._send(summary, now)
        snapshot = self._snapshot(s, now)
        del self._sessions[s.id]
        body = summary.model_dump(exclude={"type"})
        self._events.append(SessionEnded(s.id, reason, body, snapshot, now))

    # -- snapshots

    def _snapshot(self, s: _Session, now: float) -> dict[str, Any]:
        assert s.engine is not None and s.tracker is not None  # active
        return {
            "v": _SNAPSHOT_VERSION,
            "session": s.id,
            "avatar_id": s.avatar_id,
            "operator_id": s.operator_id,
            "stream_id": s.stream_id,
            "taken_at": now,
            "elapsed_s": s.elapsed_before + (now - s.started_at),
            "last_seq": s.last_seq,
            "last_ts": s.last_ts,
            "state": s.v_state,
            "action": s.v_action,
            "worst_state": s.worst,
            "score": s.score,
            "reasons": [[r.code, r.detail] for r in s.reasons],
            "issued": s.issued,
            "counts": list(s.counts),
            "lost": s.lost,
            "next_challenge_in_s": max(0.0, s.next_challenge_at - now),
            "references": [
                s.references[i : i + _PDQ_BYTES].hex() for i in range(0, len(s.references), _PDQ_BYTES)
            ],
            "tracker": s.tracker.snapshot(now),
            "engine": s.engine.snapshot(),
        }

    def _restore(self, snap: Mapping[str, Any], now: float, away_s: float, engine: Engine | None) -> _Session:
        if snap.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"session snapshot version {snap.get('v')!r}, expected {_SNAPSHOT_VERSION}")
        s = _Session(str(snap["session"]), SessionState.ACTIVE)
        s.avatar_id, s.operator_id, s.stream_id = snap["avatar_id"], snap["operator_id"], snap["stream_id"]
        s.references = b"".join(bytes.fromhex(h) for h in snap["references"])
        s.last_seq = int(snap["last_seq"])
        s.last_ts = None if snap["last_ts"] is None else float(snap["last_ts"])
        s.started_at = now
        s.elapsed_before = float(snap["elapsed_s"])
        s.v_state, s.v_action, s.worst = snap["state"], snap["action"], snap["worst_state"]
        s.score = float(snap["score"])
        s.reasons = [Reason(code, detail) for code, detail in snap["reasons"]]
        s.issued = int(snap["issued"])
        s.counts = [int(x) for x in snap["counts"]]
        s.lost = int(snap["lost"])
        s.last_verdict_at = now
        s.next_checkpoint_at = now + self._policy.sessions.checkpoint_s
        s.next_challenge_at = now + max(0.0, float(snap["next_challenge_in_s"]) - away_s)
        s.tracker = ChallengeTracker.restore(snap["tracker"], self._rules, now, away_s)
        shift = now - away_s - float(snap["taken_at"])
        refs = [s.references[i : i + _PDQ_BYTES] for i in range(0, len(s.references), _PDQ_BYTES)]
        s.engine = engine if engine is not None else self._restore_engine(snap["engine"], refs, shift)
        return s


def _challenge_restorer(policy: Policy) -> EngineRestorer:
    rules = ChallengeEngine.from_policy(policy).rules

    def restore(data: Mapping[str, Any], references: Sequence[bytes], shift_s: float) -> Engine:
        return ChallengeEngine.restore(data, rules, shift_s=shift_s)

    return restore


def expire_session(
    snapshot: Mapping[str, Any],
    policy: Policy,
    *,
    away_s: float,
    restore_engine: EngineRestorer | None = None,
) -> SessionEnded:
    """End a detached session whose ``resume_window_s`` passed without a ``session.resume``.

    Challenges whose deadlines passed while it was away are resolved (missed or failed); the engine
    judges as at the moment of the snapshot plus those outcomes (an absence it did not see is not held
    against the session twice). ``summary`` is what ``session.summary`` would have said (``duration_s``
    counts the time it was connected). Pure: the caller stores the result.

    Raises:
        ValueError: the snapshot is not one this module wrote.
    """
    conn = LiveConnection(
        policy, connection_id="expire", rng=random.Random(0), now=0.0, restore_engine=restore_engine
    )
    sid = str(snapshot["session"])
    # The engine is re-based to the snapshot's instant (now = 0 here); the challenge deadlines are not.
    refs = [bytes.fromhex(h) for h in snapshot["references"]]
    engine = (restore_engine or _challenge_restorer(policy))(
        snapshot["engine"], refs, -float(snapshot["taken_at"])
    )
    conn._sessions[sid] = _Session(sid, SessionState.AWAITING_RESUME)
    conn.resumed(sid, snapshot, 0.0, away_s=away_s, engine=engine)
    s = conn._sessions[sid]
    conn._end(s, "resume_expired", 0.0, terminate=False)
    ended = [e for e in conn.events_received() if isinstance(e, SessionEnded)]
    return ended[-1]
