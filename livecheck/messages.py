"""Wire models of the live protocol v1 (``/work/shared/PROTOCOL.md``, "Client → server", "Server → client").

Every client frame is parsed once, at the edge, by :func:`parse_client_message`: one discriminated union on
``type`` validated with ``TypeAdapter.validate_json`` (pydantic-core parses and validates in one pass, which
keeps up with thousands of tracking messages a second). The models are strict and closed: an unknown type,
an unknown field, a float where an integer belongs, a non-finite number or a bad length is a
:class:`BadMessage`, which the protocol answers with ``error`` ``bad_message``.

Server messages are models too, so the contract is written down once; :func:`dump` turns one into the
JSON text of a frame.
"""

from __future__ import annotations

import itertools
import json
from typing import Annotated, Any, Literal, Required, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from typing_extensions import TypedDict  # pydantic needs typing_extensions.TypedDict on Python < 3.12

__all__ = [
    "ARKIT_BLENDSHAPES",
    "REQUIRED_CHANNELS",
    "SESSION_ID_PATTERN",
    "BadMessage",
    "ChallengeMsg",
    "ChallengeShown",
    "Channels",
    "Chat",
    "ClientMessage",
    "ErrorMsg",
    "Frame",
    "Keepalive",
    "Limits",
    "Reconnect",
    "ServerMessage",
    "SessionAccepted",
    "SessionClose",
    "SessionOpen",
    "SessionRejected",
    "SessionResume",
    "SessionSummary",
    "SessionTerminate",
    "Speech",
    "SummaryChallenges",
    "Tracking",
    "VerdictMsg",
    "VerdictReason",
    "Welcome",
    "dump",
    "parse_client_message",
]

# Apple ARKit's 52 ARFaceAnchor.BlendShapeLocation names, in lowerCamelCase as ARKit spells them.
ARKIT_BLENDSHAPES: tuple[str, ...] = (
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
    "tongueOut",
)
REQUIRED_CHANNELS: tuple[str, ...] = (
    "headYaw",
    "headPitch",
    "headRoll",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "jawOpen",
)

SESSION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_SAMPLES = 120  # PROTOCOL.md: `ts` has 1–120 items

_FROZEN = ConfigDict(extra="forbid", strict=True, frozen=True)

SessionId = Annotated[str, Field(pattern=SESSION_ID_PATTERN)]
# Registry ids (UUIDs today) and challenge ids share the session id's alphabet, so none needs escaping.
EntityId = Annotated[str, Field(pattern=SESSION_ID_PATTERN)]
OpaqueText = Annotated[str, Field(min_length=1, max_length=128)]
Seq = Annotated[int, Field(ge=1)]
Time = Annotated[float, Field(allow_inf_nan=False)]
# Head angles in degrees (PROTOCOL.md "Head angles"): a half turn either way bounds any real pose.
Angle = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
# ARKit blendshape coefficients are 0 (neutral) to 1 (fully expressed).
Level = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Angles = Annotated[list[Angle], Field(min_length=1, max_length=MAX_SAMPLES)]
Levels = Annotated[list[Level], Field(min_length=1, max_length=MAX_SAMPLES)]


class BadMessage(Exception):
    """A client frame that is not a valid protocol message (``error`` ``bad_message``).

    ``session`` and ``seq`` are what could be read from the frame despite the error, for the reply's
    ``session`` and ``ref_seq``; ``None`` when unknown.
    """

    def __init__(self, detail: str, *, session: str | None = None, seq: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.session = session
        self.seq = seq


def _channels_typeddict() -> type:
    # Built from the two name lists so the 52 ARKit names are written exactly once.
    fields: dict[str, Any] = {name: Required[Angles] for name in REQUIRED_CHANNELS[:3]}
    fields.update({name: Required[Levels] for name in REQUIRED_CHANNELS[3:]})
    fields.update({name: Levels for name in ARKIT_BLENDSHAPES if name not in fields})
    td = TypedDict("Channels", fields, total=False)  # type: ignore[operator]  # functional TypedDict form
    td.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[attr-defined]  # read by pydantic
    return td


Channels: TypeAlias = _channels_typeddict()  # type: ignore[valid-type]  # dynamic TypedDict, see above


# ---------------------------------------------------------------------------------------------- client


class SessionOpen(BaseModel):
    model_config = _FROZEN
    type: Literal["session.open"]
    session: SessionId
    avatar_id: EntityId
    operator_id: EntityId
    stream_id: OpaqueText | None = None


class SessionResume(BaseModel):
    model_config = _FROZEN
    type: Literal["session.resume"]
    session: SessionId
    # 0 when the client believes the server processed nothing yet.
    last_seq: Annotated[int, Field(ge=0)]


class Tracking(BaseModel):
    model_config = _FROZEN
    type: Literal["tracking"]
    session: SessionId
    seq: Seq
    ts: Annotated[list[Time], Field(min_length=1, max_length=MAX_SAMPLES)]
    channels: Channels  # type: ignore[valid-type]  # dynamic TypedDict
    face: Annotated[list[bool], Field(min_length=1, max_length=MAX_SAMPLES)] | None = None
    source: Annotated[str, Field(min_length=1, max_length=32)] | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> Tracking:
        ts = self.ts
        n = len(ts)
        for a, b in itertools.pairwise(ts):
            if b <= a:
                raise ValueError("ts must increase strictly")
        for name, values in self.channels.items():  # type: ignore[attr-defined]  # a dict at runtime
            if len(values) != n:
                raise ValueError(f"channels.{name} has {len(values)} values, ts has {n}")
        if self.face is not None and len(self.face) != n:
            raise ValueError(f"face has {len(self.face)} values, ts has {n}")
        return self


class Chat(BaseModel):
    model_config = _FROZEN
    type: Literal["chat"]
    session: SessionId
    seq: Seq
    t: Time
    message_id: OpaqueText


class Speech(BaseModel):
    model_config = _FROZEN
    type: Literal["speech"]
    session: SessionId
    seq: Seq
    t0: Time
    t1: Time
    reply_to: OpaqueText | None = None

    @model_validator(mode="after")
    def _check_interval(self) -> Speech:
        if self.t1 < self.t0:
            raise ValueError("t1 must not be before t0")
        return self


class Frame(BaseModel):
    model_config = _FROZEN
    type: Literal["frame"]
    session: SessionId
    seq: Seq
    t: Time
    pdq: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
    quality: Annotated[int, Field(ge=0, le=100)]


class ChallengeShown(BaseModel):
    model_config = _FROZEN
    type: Literal["challenge.shown"]
    session: SessionId
    seq: Seq
    t: Time
    challenge_id: EntityId


class SessionClose(BaseModel):
    model_config = _FROZEN
    type: Literal["session.close"]
    session: SessionId
    seq: Seq


ClientMessage = Annotated[
    SessionOpen | SessionResume | Tracking | Chat | Speech | Frame | ChallengeShown | SessionClose,
    Field(discriminator="type"),
]
_CLIENT = TypeAdapter(ClientMessage)
_SESSION_ID = TypeAdapter(SessionId)
_MAX_DETAIL = 200


def parse_client_message(
    text: str,
) -> SessionOpen | SessionResume | Tracking | Chat | Speech | Frame | ChallengeShown | SessionClose:
    """Parse one client text frame.

    Raises:
        BadMessage: malformed JSON, an unknown ``type`` or field, or a value the contract refuses; its
            ``detail`` names the field (never echoing the value) and it carries ``session``/``seq`` when
            the frame had readable ones.
    """
    try:
        return _CLIENT.validate_json(text)
    except ValidationError as exc:
        session, seq = _salvage_ids(text)
        raise BadMessage(_describe(exc), session=session, seq=seq) from exc


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    msg = str(first["msg"]).removeprefix("Value error, ")
    if kind == "json_invalid":
        text = "malformed JSON"
    elif kind == "union_tag_invalid":
        text = "unknown message type"
    elif kind == "union_tag_not_found" or not loc:
        text = "a message is a JSON object with a 'type'"
    elif kind == "extra_forbidden":
        text = f"{loc}: unknown field"
    else:
        text = f"{loc}: {msg}"
    if exc.error_count() > 1:
        text += f" (and {exc.error_count() - 1} more)"
    return text[:_MAX_DETAIL]


def _salvage_ids(text: str) -> tuple[str | None, int | None]:
    """The ``session`` and ``seq`` of a refused frame, when it is a JSON object that has good ones."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    session = obj.get("session")
    try:
        session = _SESSION_ID.validate_python(session, strict=True)
    except ValidationError:
        session = None
    seq = obj.get("seq")
    if type(seq) is not int or seq < 1:  # bool is an int subclass; exact type on purpose
        seq = None
    return session, seq


# ---------------------------------------------------------------------------------------------- server


class _Server(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Server):
    max_frame_bytes: int
    max_msgs_per_s: float
    max_sessions: int


class Welcome(_Server):
    type: Literal["welcome"] = "welcome"
    protocol: Literal[1] = 1
    connection_id: str
    keepalive_s: float
    limits: Limits


class SessionAccepted(_Server):
    type: Literal["session.accepted"] = "session.accepted"
    session: str
    policy: dict[str, Any]
    resume_from_seq: int | None = None


RejectReason = Literal[
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
]


class SessionRejected(_Server):
    type: Literal["session.rejected"] = "session.rejected"
    session: str
    reason: RejectReason
    detail: str


class ChallengeMsg(_Server):
    type: Literal["challenge"] = "challenge"
    session: str
    challenge_id: str
    action: Literal["blink_twice", "turn_head_left", "turn_head_right", "nod", "open_mouth"]
    deadline_s: float


class VerdictReason(_Server):
    code: str
    detail: str


class VerdictMsg(_Server):
    type: Literal["verdict"] = "verdict"
    session: str
    state: Literal["pending", "human", "at_risk", "violation"]
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    action: Literal["none", "warn", "require_label", "terminate"]
    reasons: list[VerdictReason]
    at_seq: int


class SessionTerminate(_Server):
    type: Literal["session.terminate"] = "session.terminate"
    session: str
    reason: str


class SummaryChallenges(_Server):
    issued: int
    passed: int
    failed: int
    missed: int
    open: int


class SessionSummary(_Server):
    type: Literal["session.summary"] = "session.summary"
    session: str
    duration_s: float
    final_state: Literal["pending", "human", "at_risk", "violation"]
    worst_state: Literal["pending", "human", "at_risk", "violation"]
    challenges: SummaryChallenges
    reasons: list[VerdictReason]


class Reconnect(_Server):
    type: Literal["reconnect"] = "reconnect"
    url: str
    after_s: float


class Keepalive(_Server):
    type: Literal["keepalive"] = "keepalive"


ErrorCode = Literal["bad_message", "bad_seq", "seq_gap", "unknown_session", "rate_limited", "internal"]


class ErrorMsg(_Server):
    type: Literal["error"] = "error"
    code: ErrorCode
    detail: str
    session: str | None = None
    ref_seq: int | None = None


ServerMessage = (
    Welcome
    | SessionAccepted
    | SessionRejected
    | ChallengeMsg
    | VerdictMsg
    | SessionTerminate
    | SessionSummary
    | Reconnect
    | Keepalive
    | ErrorMsg
)


def dump(message: BaseModel) -> str:
    """The JSON text of a server message; optional fields that are unset (``None``) are left out."""
    return message.model_dump_json(exclude_none=True)
