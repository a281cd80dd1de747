"""Driving a simulated session through a server: the transport seam and the loop.

``run_session`` only needs a :class:`Transport`: something that takes a client message and returns the
server's replies, and that can be polled for server-initiated messages (challenges, periodic verdicts).
:class:`~livecheck.simulator.served.ProtocolServer` is the in-process one (the real protocol core); the
bench's websocket mode (``bench/liveness_ws.py``) streams the same clients through the real server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from .session import SimSession

__all__ = ["SessionResult", "Transport", "run_session", "session_result", "total_of"]

_RANK = {"human": 0, "pending": 1, "at_risk": 2, "violation": 3}


class Transport(Protocol):
    """A way to deliver client messages to a server and get its messages back."""

    def send(self, msg: dict[str, Any], now: float) -> list[dict[str, Any]]: ...

    def poll(self, now: float) -> list[dict[str, Any]]: ...


@dataclass(slots=True)
class SessionResult:
    """What happened to one simulated session."""

    species: str
    seed: int
    final_state: str
    worst_state: str
    first_decision_s: float | None  # stream time of the first non-pending verdict
    final_total: float | None  # the engine's total log-odds at the end (for DET curves)
    min_total: float | None  # the lowest total seen
    verdicts: list[dict[str, Any]] = field(default_factory=list)


def run_session(
    sim: SimSession,
    transport: Transport,
    duration_s: float,
    *,
    step_s: float = 0.05,
    net_delay_s: float = 0.02,
) -> SessionResult:
    """Stream ``sim`` through ``transport`` for ``duration_s`` of stream time (or until terminated)."""
    for m in transport.send(sim.open_message(), 0.0):
        sim.on_server_message(m, 0.0)
    t = 0.0
    while t < duration_s and not sim.terminated:
        t = min(duration_s, t + step_s)
        for msg in sim.messages_until(t):
            for reply in transport.send(msg, t + net_delay_s):
                sim.on_server_message(reply, t + net_delay_s)
        for m in transport.poll(t + net_delay_s):
            sim.on_server_message(m, t + 2 * net_delay_s)
    return session_result(sim)


def total_of(verdict: dict[str, Any]) -> float:
    """The engine's total log-odds behind a verdict: its ``total`` when the in-process server adds one,
    else the logit of its ``score`` (the evidence engine's score is the logistic of the total), clamped to
    ±30 where a float score saturates."""
    if "total" in verdict:
        return float(verdict["total"])
    s = min(max(float(verdict["score"]), 1e-13), 1.0 - 1e-13)
    return max(-30.0, min(30.0, math.log(s / (1.0 - s))))


def session_result(sim: SimSession) -> SessionResult:
    """What happened to ``sim``, from the verdicts it received."""
    verdicts = sim.verdicts
    states = [v["state"] for v in verdicts] or ["pending"]
    first = next((v["_t"] for v in verdicts if v["state"] != "pending"), None)
    totals = [total_of(v) for v in verdicts if "score" in v or "total" in v]
    return SessionResult(
        species=sim.species,
        seed=sim.seed,
        final_state=states[-1],
        worst_state=max(states, key=_RANK.__getitem__),
        first_decision_s=first,
        final_total=totals[-1] if totals else None,
        min_total=min(totals) if totals else None,
        verdicts=verdicts,
    )
