"""Combining evidence: capped per-family log-likelihood ratios, a verdict state machine, and reasons.

The model is deliberately transparent. Each feature reports a natural-log likelihood ratio (person over
automation); the ratios of one family are summed and clipped to the family's caps (so that correlated
features, or one family fooled by an unusual but honest setup, cannot decide alone); the total is the
prior plus the clipped family sums. ``score`` is the logistic of the total: the odds that a person drives.

The state machine (pending → human / at_risk / violation) adds hysteresis: human is entered at
``human_enter`` but left only below ``human_exit``; changes between human and at_risk must hold for
``dwell_s``; violation must hold for ``dwell_s`` too and is final. Hard rules (likeness mismatch, an
absent operator) set a floor on the state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..engine import Reason
from .base import Evidence, Override
from .policy import EvidencePolicy, FamilyCaps, VerdictPolicy

__all__ = ["Combined", "VerdictMachine", "combine", "reasons_for", "score_of"]

_RANK = {"human": 0, "pending": 1, "at_risk": 2, "violation": 3}


@dataclass(slots=True)
class Combined:
    """The total log-likelihood ratio, the clipped per-family sums, and the evidence behind them."""

    total: float
    families: dict[str, float]
    evidence: list[Evidence] = field(default_factory=list)


def combine(evidence: Iterable[Evidence], caps: FamilyCaps, prior: float) -> Combined:
    """Sum ``evidence`` per family, clip each family to its caps, add the prior.

    A family without caps in the policy gets ±1 (an unknown family can never decide).
    """
    ev = list(evidence)
    raw: dict[str, float] = {}
    for e in ev:
        raw[e.family] = raw.get(e.family, 0.0) + e.llr
    fams = {f: max(-caps.bot.get(f, 1.0), min(caps.human.get(f, 1.0), v)) for f, v in raw.items()}
    return Combined(prior + sum(fams.values()), fams, ev)


def score_of(total: float) -> float:
    """Probability that a person drives, from the total log-odds (logistic, clamped to [0, 1])."""
    if total >= 0:
        return 1.0 / (1.0 + math.exp(-min(total, 50.0)))
    e = math.exp(max(total, -50.0))
    return e / (1.0 + e)


class VerdictMachine:
    """pending → human / at_risk / violation, with hysteresis and dwell (see module docstring)."""

    __slots__ = ("cand", "cand_since", "p", "since", "state")

    def __init__(self, policy: VerdictPolicy) -> None:
        self.p = policy
        self.state = "pending"  # the state last announced
        self.since = 0.0  # server time it was entered
        self.cand: str | None = None  # a different state the evidence points to, awaiting its dwell
        self.cand_since = 0.0  # server time the candidate first appeared

    def step(self, total: float, overrides: list[Override], elapsed: float, now: float) -> str:
        """Advance with the current total; ``elapsed`` is stream seconds since the session began."""
        p = self.p
        if self.state == "violation":
            return self.state
        floor = max((o.state for o in overrides), key=_RANK.__getitem__, default="human")
        if floor == "violation":
            return self._enter("violation", now)
        if elapsed < p.min_observe_s:
            raw = "pending"
        elif total <= p.violation_enter:
            raw = "violation"
        elif self.state == "human":
            raw = "human" if total >= p.human_exit else "at_risk"
        elif total >= p.human_enter:
            raw = "human"
        elif self.state == "pending" and elapsed < p.max_pending_s:
            raw = "pending"
        else:
            raw = "at_risk"
        if floor == "at_risk" and raw in ("human", "pending"):
            raw = "at_risk"
            if self.state != "at_risk":
                # An absent operator is announced at once: there is nothing to wait for.
                return self._enter(raw, now)
        if raw == self.state:
            self.cand = None
            return self.state
        if self.state == "pending" and raw != "violation":
            return self._enter(raw, now)  # the first decision: nothing to flap against
        if self.cand != raw:
            self.cand, self.cand_since = raw, now
        if now - self.cand_since >= p.dwell_s:
            return self._enter(raw, now)
        return self.state

    def _enter(self, state: str, now: float) -> str:
        if state != self.state:
            self.state, self.since = state, now
        self.cand = None
        return self.state

    def to_state(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "cand": self.cand, "cand_since": self.cand_since}

    @classmethod
    def from_state(cls, policy: VerdictPolicy, s: dict[str, Any]) -> VerdictMachine:
        m = cls(policy)
        state = str(s["state"])
        if state not in _RANK:
            raise ValueError(f"unknown verdict state in snapshot: {state!r}")
        m.state, m.since = state, float(s["since"])
        m.cand = None if s["cand"] is None else str(s["cand"])
        m.cand_since = float(s["cand_since"])
        return m


def reasons_for(
    state: str, combined: Combined, overrides: list[Override], policy: EvidencePolicy, pending_detail: str
) -> list[Reason]:
    """The reasons that moved the verdict: hard rules first, then the strongest evidence on its side."""
    out: list[Reason] = [Reason(o.code, o.detail) for o in overrides if _RANK[o.state] >= _RANK["at_risk"]]
    if state == "pending":
        out.append(Reason("collecting_evidence", pending_detail))
        return out[: policy.max_reasons]
    if state == "human":
        side = sorted((e for e in combined.evidence if e.llr > 0), key=lambda e: -e.llr)
    else:
        side = sorted((e for e in combined.evidence if e.llr < 0), key=lambda e: e.llr)
    seen = {r.code for r in out}
    for e in side:
        if e.code not in seen:
            out.append(Reason(e.code, e.detail))
            seen.add(e.code)
        if len(out) >= policy.max_reasons:
            break
    if not out:
        out.append(
            Reason("weak_evidence", f"the evidence is weak or mixed (total log-odds {combined.total:+.1f})")
        )
    return out
