"""A simulated session served by the real protocol core: :class:`LiveConnection` and the evidence engine.

:class:`ProtocolServer` is a :class:`~livecheck.simulator.run.Transport` that hands every client message
to a sans-I/O :class:`~livecheck.protocol.LiveConnection` as JSON text, admits the session with the
avatar's reference hashes, and runs the connection's timers (challenge issue times and deadlines,
periodic verdicts, checkpoints) at their deadlines. Challenges are therefore issued, shown and judged
exactly as the websocket server does it (``livecheck/challenges.py``), and verdicts come from the
:class:`~livecheck.evidence.EvidenceEngine` the server would use for the same policy. Only the sockets
and the database are missing: the bench's ``--transport ws`` mode adds them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from ..engine import ChallengeOutcome
from ..evidence import EvidenceEngine
from ..policy import Policy, default_policy
from ..protocol import ChallengeResolved, LiveConnection, OpenRequested

__all__ = ["ProtocolServer"]


class ProtocolServer:
    """One connection of the real protocol core, in process, for one simulated client (see module doc).

    Args:
        references: the avatar's reference PDQ hashes (32 bytes each) the session is admitted with.
        policy: the live policy (its ``evidence`` table configures the engine); the packaged default when
            ``None``.
        seed: drives the connection's challenge times and actions and the engine's recompute phase.
    """

    def __init__(self, references: Sequence[bytes], *, policy: Policy | None = None, seed: int = 0) -> None:
        self.policy = policy or default_policy()
        self.references = list(references)
        self.engine: EvidenceEngine | None = None  # the admitted session's engine
        self.outcomes: list[ChallengeOutcome] = []  # every challenge outcome, in order
        self._seed = seed
        self.conn = LiveConnection(
            self.policy,
            connection_id=f"sim-{seed}",
            rng=random.Random(seed ^ 0x5EED),
            now=0.0,
            new_engine=self._new_engine,
        )
        self.conn.messages_to_send()  # `welcome`: a simulated client has no use for it
        self._now = 0.0

    def _new_engine(self, references: Sequence[bytes]) -> EvidenceEngine:
        self.engine = EvidenceEngine(self.policy.evidence, references, self._seed)
        return self.engine

    def send(self, msg: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """Deliver one client message at server time ``now``; the server's replies."""
        self._run_timers(now)
        self.conn.receive_text(json.dumps(msg), now)
        return self._drain(now)

    def poll(self, now: float) -> list[dict[str, Any]]:
        """Run every timer due by ``now``; the messages they produced."""
        self._run_timers(now)
        return self._drain(now)

    def _events(self) -> list[Any]:
        events = self.conn.events_received()
        self.outcomes += [ev.outcome for ev in events if isinstance(ev, ChallengeResolved)]
        return events

    def _run_timers(self, now: float) -> None:
        # Timers run at their own deadlines, as the server's event loop runs them, never before the
        # last instant the core has seen (its clock does not go back).
        for _ in range(10_000):  # bounded: each tick moves a deadline forward
            due = self.conn.next_deadline()
            if due is None or due > now:
                break
            self.conn.tick(max(due, self._now))
            self._now = max(due, self._now)
            self._events()
        self._now = max(self._now, now)

    def _drain(self, now: float) -> list[dict[str, Any]]:
        for ev in self._events():
            if isinstance(ev, OpenRequested):
                self.conn.admit(ev.session, now, self.references)
        # Admission queues more events (the session stored, the first verdict); they need no answer.
        self._events()
        return [json.loads(text) for text in self.conn.messages_to_send()]
