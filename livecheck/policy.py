"""The live policy: limits, challenges, verdict cadence and the action taken in each state.

It is a TOML file (``default_policy.toml`` beside this module holds the defaults) validated by pydantic with
closed models: a key that is not known, a value of the wrong type or out of range refuses the whole file,
and the error names the key path (``challenges.mean_interval_s: Input should be greater than 0``).
The numbers follow ``PROTOCOL.md`` ("Transport", "Challenges", "Verdicts", "Resume"); ``to_wire()`` is the
``policy`` object of ``session.accepted``.
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from livecheck.challenges import (
    ACTIONS,
    BlinkRule,
    ChallengeRules,
    MouthRule,
    NodRule,
    TurnRule,
)
from livecheck.engine import VerdictState
from livecheck.evidence.policy import EvidencePolicy
from registry.errors import Unprocessable

__all__ = [
    "ActionName",
    "ChallengePolicy",
    "LimitsPolicy",
    "Policy",
    "SessionPolicy",
    "StateActions",
    "VerdictAction",
    "default_policy",
    "load_policy",
    "parse_policy",
]

ActionName = Literal["blink_twice", "turn_head_left", "turn_head_right", "nod", "open_mouth"]
VerdictAction = Literal["none", "warn", "require_label", "terminate"]

_CLOSED = ConfigDict(extra="forbid", strict=True, frozen=True)
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Level = Annotated[float, Field(gt=0, le=1)]


class LimitsPolicy(BaseModel):
    """Per-connection limits announced in ``welcome`` (PROTOCOL.md "Transport")."""

    model_config = _CLOSED
    # Inclusive, counted after decompression; a bigger message closes the connection with 1009.
    max_frame_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 65536
    # Token bucket rate and burst, messages per second per connection (every client text message counts).
    max_msgs_per_s: Positive = 1000.0
    max_sessions: Annotated[int, Field(ge=1, le=10_000)] = 100
    keepalive_s: Positive = 20.0
    # Messages of one session kept while its admission is pending; later ones are dropped (a seq gap).
    max_pending_messages: Annotated[int, Field(ge=0, le=1024)] = 64


class TurnPolicy(BaseModel):
    model_config = _CLOSED
    yaw_deg: Annotated[float, Field(gt=0, le=90)] = 15.0


class NodPolicy(BaseModel):
    model_config = _CLOSED
    pitch_deg: Annotated[float, Field(gt=0, le=90)] = 8.0
    return_deg: Annotated[float, Field(ge=0, le=90)] = 3.0
    within_s: Positive = 2.0

    @model_validator(mode="after")
    def _return_below_pitch(self) -> NodPolicy:
        if self.return_deg >= self.pitch_deg:
            raise ValueError(f"return_deg ({self.return_deg}) must be below pitch_deg ({self.pitch_deg})")
        return self


class BlinkPolicy(BaseModel):
    model_config = _CLOSED
    closed: Level = 0.6
    open: Level = 0.3
    within_s: Positive = 2.5

    @model_validator(mode="after")
    def _open_below_closed(self) -> BlinkPolicy:
        if self.open >= self.closed:
            raise ValueError(f"open ({self.open}) must be below closed ({self.closed})")
        return self


class MouthPolicy(BaseModel):
    model_config = _CLOSED
    jaw: Level = 0.6
    hold_ms: Annotated[float, Field(ge=0, le=10_000)] = 300.0


class ThresholdsPolicy(BaseModel):
    """Each challenge action's completion thresholds (PROTOCOL.md "Challenges")."""

    model_config = _CLOSED
    turn_head_left: TurnPolicy = TurnPolicy()
    turn_head_right: TurnPolicy = TurnPolicy()
    nod: NodPolicy = NodPolicy()
    blink_twice: BlinkPolicy = BlinkPolicy()
    open_mouth: MouthPolicy = MouthPolicy()


class ChallengePolicy(BaseModel):
    """When challenges are issued and what completes them."""

    model_config = _CLOSED
    # Challenges are issued at uniform random intervals in [mean - jitter, mean + jitter].
    mean_interval_s: Positive = 20.0
    jitter_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 7.0
    enabled: Annotated[list[ActionName], Field(min_length=1)] = list(ACTIONS)
    # A visual reaction under this is faster than a person (simple reaction time is about 190–250 ms).
    min_reaction_ms: Annotated[float, Field(ge=0, le=5000)] = 150.0
    show_within_s: Positive = 5.0
    deadline_s: Positive = 6.0
    thresholds: ThresholdsPolicy = ThresholdsPolicy()

    @model_validator(mode="after")
    def _check_spacing(self) -> ChallengePolicy:
        if len(set(self.enabled)) != len(self.enabled):
            raise ValueError("enabled lists an action twice")
        # PROTOCOL.md: challenges are at least show_within_s + deadline_s apart; a shorter interval would
        # silently be stretched, so a policy asking for one is refused instead.
        gap = self.show_within_s + self.deadline_s
        if self.mean_interval_s - self.jitter_s < gap:
            raise ValueError(
                f"mean_interval_s - jitter_s ({self.mean_interval_s - self.jitter_s:g}) must be at least"
                f" show_within_s + deadline_s ({gap:g})"
            )
        return self


class SessionPolicy(BaseModel):
    """Verdict cadence, resumption, checkpoints and how many sessions an avatar or a person may hold."""

    model_config = _CLOSED
    verdict_interval_s: Positive = 10.0
    resume_window_s: Positive = 60.0
    checkpoint_s: Positive = 5.0
    max_sessions_per_avatar: Annotated[int, Field(ge=1)] = 1
    max_sessions_per_operator: Annotated[int, Field(ge=1)] = 1


class StateActions(BaseModel):
    """The action a verdict carries in each state (PROTOCOL.md "Verdicts")."""

    model_config = _CLOSED
    pending: VerdictAction = "none"
    human: VerdictAction = "none"
    at_risk: VerdictAction = "warn"
    violation: VerdictAction = "terminate"


class Policy(BaseModel):
    """The whole live policy. Build it with :func:`parse_policy`, :func:`load_policy` or ``Policy()``."""

    model_config = _CLOSED
    limits: LimitsPolicy = LimitsPolicy()
    challenges: ChallengePolicy = ChallengePolicy()
    sessions: SessionPolicy = SessionPolicy()
    state_actions: StateActions = StateActions()
    # The evidence engine's operating point (livecheck/evidence/policy.py; docs/liveness.md).
    evidence: EvidencePolicy = EvidencePolicy()

    @model_validator(mode="before")
    @classmethod
    def _evidence_actions_follow(cls, data: Any) -> Any:
        # `state_actions` is the action table; `evidence.actions` copies whatever of it the file does not
        # set, so changing one table changes both.
        if not isinstance(data, dict):
            return data
        ev = data.get("evidence", {})
        wire = data.get("state_actions", {})
        if isinstance(wire, StateActions):
            wire = wire.model_dump()
        if isinstance(ev, dict) and isinstance(wire, dict):
            actions = {**StateActions().model_dump(), **wire}
            given = ev.get("actions", {})
            if isinstance(given, dict):  # keys it leaves out come from state_actions too
                data = {**data, "evidence": {**ev, "actions": {**actions, **given}}}
        return data

    @model_validator(mode="after")
    def _one_action_table(self) -> Policy:
        # The protocol announces `state_actions`; the evidence engine keeps a copy (its bench transport
        # and `EvidenceEngine.action`). Two tables that disagree would make the published operating point
        # a lie, so a file that sets both must set them alike.
        wire = self.state_actions.model_dump()
        if dict(self.evidence.actions) != wire:
            raise ValueError(
                f"evidence.actions ({dict(self.evidence.actions)}) must equal state_actions ({wire})"
            )
        return self

    def action_for(self, state: VerdictState) -> VerdictAction:
        """The action a verdict in ``state`` carries."""
        action: VerdictAction = getattr(self.state_actions, state)
        return action

    def challenge_rules(self) -> ChallengeRules:
        """The thresholds and deadlines :mod:`livecheck.challenges` judges by (a plain frozen dataclass)."""
        c, th = self.challenges, self.challenges.thresholds
        return ChallengeRules(
            turn_head_left=TurnRule(th.turn_head_left.yaw_deg),
            turn_head_right=TurnRule(th.turn_head_right.yaw_deg),
            nod=NodRule(th.nod.pitch_deg, th.nod.return_deg, th.nod.within_s),
            blink_twice=BlinkRule(th.blink_twice.closed, th.blink_twice.open, th.blink_twice.within_s),
            open_mouth=MouthRule(th.open_mouth.jaw, th.open_mouth.hold_ms),
            min_reaction_ms=c.min_reaction_ms,
            show_within_s=c.show_within_s,
            deadline_s=c.deadline_s,
        )

    def to_wire(self) -> dict[str, Any]:
        """The ``policy`` object of ``session.accepted`` (PROTOCOL.md "Server → client")."""
        c, s = self.challenges, self.sessions
        thresholds = c.thresholds.model_dump()
        return {
            "challenge_actions": list(c.enabled),
            "actions": {name: _ints(thresholds[name]) for name in c.enabled},
            "min_reaction_ms": _int(c.min_reaction_ms),
            "show_within_s": _int(c.show_within_s),
            "deadline_s": _int(c.deadline_s),
            "verdict_interval_s": _int(s.verdict_interval_s),
            "resume_window_s": _int(s.resume_window_s),
            "checkpoint_s": _int(s.checkpoint_s),
            "max_sessions_per_avatar": s.max_sessions_per_avatar,
            "max_sessions_per_operator": s.max_sessions_per_operator,
            "state_actions": self.state_actions.model_dump(),
        }


def _int(x: float) -> float | int:
    # 15.0 goes on the wire as 15, as PROTOCOL.md writes it.
    return int(x) if float(x).is_integer() else x


def _ints(values: dict[str, float]) -> dict[str, float | int]:
    return {k: _int(v) for k, v in values.items()}


def parse_policy(text: str, *, source: str = "policy") -> Policy:
    """Validate the TOML text of a policy.

    Raises:
        Unprocessable: code ``policy_invalid``; the message names ``source`` and, for each problem, the
            key path and what is wrong (``challenges.mean_interval_s: Input should be greater than 0``);
            ``details`` lists them as ``{"loc", "msg"}``.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Unprocessable(f"{source} is not valid TOML: {exc}", code="policy_invalid") from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [
            {
                "loc": ".".join(str(p) for p in err["loc"]),
                "msg": str(err["msg"]).removeprefix("Value error, "),
            }
            for err in exc.errors(include_url=False, include_input=False)
        ]
        listed = "; ".join(f"{p['loc']}: {p['msg']}" if p["loc"] else p["msg"] for p in problems)
        raise Unprocessable(
            f"{source} is invalid: {listed}", code="policy_invalid", details=problems
        ) from exc


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate the policy at ``path``, or the packaged defaults when ``path`` is ``None``.

    Raises:
        Unprocessable: as :func:`parse_policy`; also when the file cannot be read.
    """
    if path is None:
        return default_policy()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Unprocessable(f"cannot read policy {path}: {exc}", code="policy_invalid") from exc
    return parse_policy(text, source=str(path))


@functools.cache
def default_policy() -> Policy:
    """The packaged ``default_policy.toml`` (read once)."""
    text = resources.files("livecheck").joinpath("default_policy.toml").read_text(encoding="utf-8")
    return parse_policy(text, source="default_policy.toml")
