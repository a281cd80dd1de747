"""``/v1/avatars``: registration, the public record, search, reference images, delegates, transfers, status
changes and the audited ownership look-up (DESIGN §3)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import unicodedata
import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from registry import audit, errors
from registry.api.match import (
    FIELD_BYTES,
    STAFF,
    Part,
    fingerprint_parts,
    fingerprints,
    now_utc,
    read_form,
    single,
)
from registry.api.operators import IdentityOut, identity_out
from registry.api.routing import Api, Call, path_uuid
from registry.api.schemas import QueryModel, Reason, StrictModel
from registry.avatars import service, store
from registry.avatars.images import MAX_IMAGE_BYTES
from registry.avatars.models import MAX_MODEL_BYTES, parse_model
from registry.avatars.trigrams import DEFAULT_MIN_SIMILARITY, trigrams
from registry.operators import store as operator_store
from registry.roles import ALL_ROLES, Role
from registry.translog.certificates import issue_certificate

__all__ = ["api"]

_logger = logging.getLogger(__name__)

api = Api()

NAME_MAX = 100

# -- models ------------------------------------------------------------------------------------------------


class ImageOut(BaseModel):
    sha256: str
    pdq: str = Field(description="PDQ hash of the image as uploaded (64 hex, Meta's format).")
    quality: int
    width: int
    height: int
    format: str
    size: int
    added_at: datetime
    quarantined: bool = Field(description="Matched a flood of uploads: its matches go to review.")


class ModelOut(BaseModel):
    kind: str = Field(description="`vrm` · `live2d`")
    sha256: str
    size: int
    meta: dict[str, Any]


class AvatarOut(BaseModel):
    id: uuid.UUID
    name: str
    status: str = Field(description="`active` · `held_for_review` · `suspended` · `revoked`")
    owner_operator_id: uuid.UUID
    registered_at: datetime
    updated_at: datetime
    images: list[ImageOut]
    model: ModelOut | None
    log_index: int | None = Field(description="Index of the registration leaf in the transparency log.")
    match_disabled_until: datetime | None


class ConflictOut(BaseModel):
    avatar_id: uuid.UUID
    distance: int
    image_sha256: str
    status: str
    variant: str
    disposition: str
    part: str | None = None


class Registered(BaseModel):
    avatar: AvatarOut
    certificate: dict[str, Any] | None = Field(
        description="Signed registration certificate with its inclusion proof (null if the log could not "
        "issue one now; GET /v1/avatars/{id}/certificate retries)."
    )
    conflicts: list[ConflictOut] = Field(description="Why the avatar is held for review (empty if active).")


class SearchHit(AvatarOut):
    similarity: float | None = Field(description="Name similarity (trigram), when searching by name.")


class AvatarPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None


class AvatarSearch(QueryModel):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX, description="Fuzzy (trigram).")
    owner: uuid.UUID | None = None
    status: Literal["active", "held_for_review", "suspended", "revoked"] | None = None
    min_similarity: float = Field(default=DEFAULT_MIN_SIMILARITY, ge=0.05, le=1.0)
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=100)


class DelegateOut(BaseModel):
    operator_id: uuid.UUID
    since: datetime


class DelegatesOut(BaseModel):
    avatar_id: uuid.UUID
    delegates: list[DelegateOut]


class TransferRequest(StrictModel):
    to_operator_id: uuid.UUID


class TransferDecision(StrictModel):
    reason: str = Field(min_length=3, max_length=500)


class TransferOut(BaseModel):
    id: uuid.UUID
    avatar_id: uuid.UUID
    from_operator_id: uuid.UUID
    to_operator_id: uuid.UUID
    status: str = Field(description="`pending` · `approved` · `rejected`")
    requested_at: datetime
    decided_at: datetime | None


class TransferList(BaseModel):
    items: list[TransferOut]


class TransferQuery(QueryModel):
    status: Literal["pending", "approved", "rejected"] | None = "pending"
    avatar_id: uuid.UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)


class StatusChange(StrictModel):
    status: Literal["active", "held_for_review", "suspended", "revoked"]
    reason: str = Field(min_length=3, max_length=500)


class OwnershipOut(BaseModel):
    avatar_id: uuid.UUID
    owner: IdentityOut


# -- helpers -----------------------------------------------------------------------------------------------


def _image_out(img: store.AvatarImage) -> ImageOut:
    return ImageOut(
        sha256=img.sha256.hex(),
        pdq=img.pdq.hex(),
        quality=img.quality,
        width=img.width,
        height=img.height,
        format=img.format,
        size=img.size,
        added_at=img.added_at,
        quarantined=img.quarantined_at is not None,
    )


def _avatar_fields(a: store.Avatar, images: list[store.AvatarImage]) -> dict[str, Any]:
    model = None
    if a.model_kind is not None and a.model_sha256 is not None:
        model = ModelOut(
            kind=a.model_kind, sha256=a.model_sha256.hex(), size=a.model_size or 0, meta=a.model_meta or {}
        )
    return {
        "id": a.id,
        "name": a.name,
        "status": a.status,
        "owner_operator_id": a.owner_operator_id,
        "registered_at": a.registered_at,
        "updated_at": a.updated_at,
        "images": [_image_out(i) for i in images],
        "model": model,
        "log_index": a.log_index,
        "match_disabled_until": a.match_disabled_until,
    }


async def load_avatar(conn: asyncpg.Connection, avatar_id: uuid.UUID) -> AvatarOut:
    """The public record. Raises ``NotFound``."""
    avatar, images = await store.get_avatar_with_images(conn, avatar_id)
    return AvatarOut(**_avatar_fields(avatar, images))


def _name(part: Part) -> str:
    """The avatar name from its form part. Raises ``BadRequest`` (``invalid_name``)."""
    text = part.text().strip()
    if not 1 <= len(text) <= NAME_MAX:
        raise errors.BadRequest(
            f"name must be 1 to {NAME_MAX} characters, got {len(text)}", code="invalid_name"
        )
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise errors.BadRequest("name must not contain control or format characters", code="invalid_name")
    return text


def _sha256_param(call: Call[Any]) -> bytes:
    raw = call.request.match_info["sha256"]
    try:
        value = bytes.fromhex(raw) if len(raw) == 64 else b""
    except ValueError:
        value = b""
    if len(value) != 32:
        raise errors.NotFound("no such reference image: expected a 64-hex sha256", code="image_not_found")
    return value


def _encode_cursor(similarity: float | None, seq: int) -> str:
    raw = json.dumps({"s": similarity, "q": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, *, by_name: bool) -> tuple[float | None, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        similarity, seq = data["s"], data["q"]
        ok = isinstance(seq, int) and not isinstance(seq, bool)
        ok = ok and (isinstance(similarity, float) if by_name else similarity is None)
    except (ValueError, binascii.Error, KeyError, TypeError):
        ok = False
    if not ok:
        raise errors.BadRequest(
            "invalid cursor (use next_cursor from the same search)", code="invalid_cursor"
        )
    return similarity, seq


async def _certificate(call: Call[Any], avatar_id: uuid.UUID) -> dict[str, Any] | None:
    try:
        return await issue_certificate(call.pool, call.services, avatar_id)
    except errors.RegistryError as exc:
        # The avatar is registered and logged; the certificate can be fetched later, so the 201 stands.
        _logger.error("certificate for avatar %s not issued: %s", avatar_id, exc.code)
        return None


# -- registration and the record ---------------------------------------------------------------------------

_IMAGE_PARTS = {
    "type": "array",
    "items": {"type": "string", "format": "binary"},
    "minItems": 1,
    "maxItems": service.MAX_IMAGES_PER_REQUEST,
    "description": "Reference images: PNG, JPEG or WebP, at most 10 MB each.",
}
_REGISTER_FORM = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
        "image": _IMAGE_PARTS,
        "model": {"type": "string", "format": "binary", "description": "VRM (glTF binary) or Live2D zip."},
        "on_conflict": {"type": "string", "enum": ["reject", "hold"], "default": "reject"},
    },
}
_IMAGES_FORM = {
    "type": "object",
    "required": ["image"],
    "properties": {"image": _IMAGE_PARTS},
}


@api.route(
    "POST",
    "/v1/avatars",
    summary="Register an avatar",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR}),
    multipart=_REGISTER_FORM,
    response=Registered,
    status=201,
    errors=(400, 409, 413, 415, 422, 503),
)
async def register(call: Call[None]) -> tuple[int, Registered]:
    """Register an avatar for the calling operator, who must be identity-verified (403
    `operator_unverified`). Multipart: `name`, 1-8 `image` parts, optional `model`, `on_conflict`
    (`reject`, the default, or `hold`). Each image is decoded safely, fingerprinted (PDQ and its 8 rotations
    and flips) and must reach PDQ quality 50 (422 `image_low_quality` naming the part). If an image is
    within distance 31 of another owner's active or held avatar: 409 `likeness_conflict` with
    `details.conflicts` [{avatar_id, distance, image_sha256, part}] and nothing stored, or with
    `on_conflict=hold` the avatar is stored `held_for_review` for staff. The check and the insert are one
    atomic step. 201 returns the record and the signed registration certificate."""
    fps = fingerprints(call)
    fps.require_ready()
    # Refuse an unverified operator before reading (and decoding) up to a hundred megabytes.
    async with call.pool.acquire() as conn:
        await service.require_verified(conn, call.actor.operator_id)
    parts = await read_form(
        call,
        {
            "name": (FIELD_BYTES, 1),
            "on_conflict": (FIELD_BYTES, 1),
            "image": (MAX_IMAGE_BYTES, service.MAX_IMAGES_PER_REQUEST),
            "model": (MAX_MODEL_BYTES, 1),
        },
    )
    name_part = single(parts, "name", required=True)
    assert name_part is not None  # required=True raises instead of returning None
    name = _name(name_part)
    choice = single(parts, "on_conflict", required=False)
    on_conflict = choice.text().strip() if choice else "reject"
    if on_conflict not in ("reject", "hold"):
        raise errors.BadRequest("on_conflict must be reject or hold", code="invalid_field")
    images = [p for p in parts if p.name == "image"]
    if not images:
        raise errors.BadRequest("at least one image part is required", code="missing_part")
    model_part = single(parts, "model", required=False)
    refs = await fingerprint_parts(call, images)
    model = None
    if model_part is not None:
        model = await asyncio.to_thread(parse_model, "model", model_part.data, model_part.filename)
    avatar, conflicts = await service.register_avatar(
        call.pool,
        fps,
        call.actor,
        name=name,
        refs=refs,
        model=model,
        on_conflict="hold" if on_conflict == "hold" else "reject",
        now=now_utc(),
    )
    certificate = await _certificate(call, avatar.id)
    async with call.pool.acquire() as conn:
        record = await load_avatar(conn, avatar.id)
    return 201, Registered(
        avatar=record, certificate=certificate, conflicts=[ConflictOut(**c) for c in conflicts]
    )


@api.route(
    "GET",
    "/v1/avatars/{id}",
    summary="Get an avatar's public record",
    tags=("avatars",),
    roles=ALL_ROLES,
    response=AvatarOut,
    errors=(404,),
)
async def get_avatar(call: Call[None]) -> web.Response:
    """Name, status, registration time, reference fingerprints, model digest and log index; the owner is
    shown as an operator id only."""
    avatar_id = path_uuid(call)
    fps = fingerprints(call)
    # The hot path: served from memory while this process hears every change (RecordCache).
    cached = fps.listening
    body = fps.records.get(avatar_id) if cached else None
    if body is None:
        generation = fps.records.generation
        async with call.pool.acquire() as conn:
            record = await load_avatar(conn, avatar_id)
        body = record.model_dump_json(by_alias=True).encode()
        if cached:
            fps.records.put(avatar_id, body, generation)
    return web.Response(body=body, content_type="application/json")


@api.route(
    "GET",
    "/v1/avatars",
    summary="Search avatars",
    tags=("avatars",),
    roles=frozenset({Role.STAFF, Role.PLATFORM, Role.ADMIN}),
    query=AvatarSearch,
    response=AvatarPage,
)
async def search(call: Call[None]) -> AvatarPage:
    """Filter by `owner` and `status`; `name` searches fuzzily (trigram similarity, as PostgreSQL's pg_trgm
    computes it, at least `min_similarity`), best match first; otherwise newest first. Pass `next_cursor`
    back as `cursor` for the next page (with the same filters)."""
    q = call.query
    name_trigrams = None
    if q.name is not None:
        name_trigrams = trigrams(q.name)
        if not name_trigrams:
            raise errors.BadRequest("name has no letters or digits to search for", code="invalid_name")
    after_similarity, after_seq = (None, None)
    if q.cursor is not None:
        after_similarity, after_seq = _decode_cursor(q.cursor, by_name=name_trigrams is not None)
    async with call.pool.acquire() as conn:
        rows = await store.search_avatars(
            conn,
            name_trigrams=name_trigrams,
            owner=q.owner,
            status=q.status,
            min_similarity=q.min_similarity,
            after_similarity=after_similarity,
            after_seq=after_seq,
            limit=q.limit,
        )
        images = await store.list_images(conn, [a.id for a, _ in rows])
    items = [SearchHit(**_avatar_fields(a, images[a.id]), similarity=s) for a, s in rows]
    next_cursor = None
    if len(rows) == q.limit:
        last, sim = rows[-1]
        next_cursor = _encode_cursor(sim, last.seq)
    return AvatarPage(items=items, next_cursor=next_cursor)


# -- reference images --------------------------------------------------------------------------------------


@api.route(
    "POST",
    "/v1/avatars/{id}/images",
    summary="Add reference images",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR}),
    multipart=_IMAGES_FORM,
    response=AvatarOut,
    status=201,
    errors=(400, 404, 409, 413, 415, 422, 503),
)
async def add_images(call: Call[None]) -> tuple[int, AvatarOut]:
    """The owner adds 1-8 reference images, checked like a registration: 409 `likeness_conflict` when one
    resembles another owner's avatar. Logged in the transparency log."""
    avatar_id = path_uuid(call)
    fps = fingerprints(call)
    fps.require_ready()
    async with call.pool.acquire() as conn:
        avatar = await store.get_avatar(conn, avatar_id)
        service.require_owner(call.actor, avatar)
        await service.require_verified(conn, call.actor.operator_id)
    parts = await read_form(call, {"image": (MAX_IMAGE_BYTES, service.MAX_IMAGES_PER_REQUEST)})
    if not parts:
        raise errors.BadRequest("at least one image part is required", code="missing_part")
    refs = await fingerprint_parts(call, parts)
    await service.add_images(call.pool, fps, call.actor, avatar_id, refs, now_utc())
    async with call.pool.acquire() as conn:
        return 201, await load_avatar(conn, avatar_id)


@api.route(
    "DELETE",
    "/v1/avatars/{id}/images/{sha256}",
    summary="Remove a reference image",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR}),
    response=AvatarOut,
    errors=(404, 409, 503),
)
async def remove_image(call: Call[None]) -> AvatarOut:
    """The owner removes a reference image by its sha256 (the last one stays: 409 `last_image`)."""
    avatar_id = path_uuid(call)
    sha256 = _sha256_param(call)
    await service.remove_image(call.pool, fingerprints(call), call.actor, avatar_id, sha256)
    async with call.pool.acquire() as conn:
        return await load_avatar(conn, avatar_id)


@api.route(
    "GET",
    "/v1/avatars/{id}/images/{sha256}",
    summary="Download a reference image's original bytes",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR, Role.STAFF, Role.ADMIN}),
    text_response="image/*",
    errors=(404,),
)
async def get_image(call: Call[None]) -> web.Response:
    """The original upload, byte for byte (for review): the owner, or staff."""
    avatar_id = path_uuid(call)
    sha256 = _sha256_param(call)
    async with call.pool.acquire() as conn:
        avatar = await store.get_avatar(conn, avatar_id)
        if call.actor.role is Role.OPERATOR:
            service.require_owner(call.actor, avatar)
        fmt, content = await store.get_image_content(conn, avatar_id, sha256)
    resp = web.Response(body=content, content_type=f"image/{fmt.lower()}")
    # Uploaded bytes: never let a browser sniff them into something executable.
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'"
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


# -- delegates ---------------------------------------------------------------------------------------------


async def _delegates(call: Call[Any], avatar_id: uuid.UUID) -> DelegatesOut:
    async with call.pool.acquire() as conn:
        rows = await store.list_delegates(conn, avatar_id)
    return DelegatesOut(avatar_id=avatar_id, delegates=[DelegateOut(operator_id=o, since=t) for o, t in rows])


@api.route(
    "GET",
    "/v1/avatars/{id}/delegates",
    summary="List an avatar's delegates",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR, Role.STAFF, Role.ADMIN}),
    response=DelegatesOut,
    errors=(404,),
)
async def list_delegates(call: Call[None]) -> DelegatesOut:
    """Operators the owner allows to drive the avatar (the owner, or staff)."""
    avatar_id = path_uuid(call)
    async with call.pool.acquire() as conn:
        avatar = await store.get_avatar(conn, avatar_id)
    if call.actor.role is Role.OPERATOR:
        service.require_owner(call.actor, avatar)
    return await _delegates(call, avatar_id)


@api.route(
    "PUT",
    "/v1/avatars/{id}/delegates/{operator_id}",
    summary="Allow an operator to drive the avatar",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR}),
    response=DelegatesOut,
    errors=(400, 404, 409, 422),
)
async def put_delegate(call: Call[None]) -> DelegatesOut:
    """The owner (verified) allows another identity-verified operator (422 `delegate_unverified`)."""
    avatar_id = path_uuid(call)
    operator_id = path_uuid(call, "operator_id")
    await service.set_delegate(call.pool, call.actor, avatar_id, operator_id)
    return await _delegates(call, avatar_id)


@api.route(
    "DELETE",
    "/v1/avatars/{id}/delegates/{operator_id}",
    summary="Stop a delegate",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR}),
    response=DelegatesOut,
    errors=(404,),
)
async def delete_delegate(call: Call[None]) -> DelegatesOut:
    """The owner stops an operator from driving the avatar."""
    avatar_id = path_uuid(call)
    operator_id = path_uuid(call, "operator_id")
    await service.unset_delegate(call.pool, call.actor, avatar_id, operator_id)
    return await _delegates(call, avatar_id)


# -- transfers ---------------------------------------------------------------------------------------------


def _transfer_out(t: store.Transfer) -> TransferOut:
    return TransferOut(
        id=t.id,
        avatar_id=t.avatar_id,
        from_operator_id=t.from_operator_id,
        to_operator_id=t.to_operator_id,
        status=t.status,
        requested_at=t.requested_at,
        decided_at=t.decided_at,
    )


@api.route(
    "POST",
    "/v1/avatars/{id}/transfer",
    summary="Ask to transfer an avatar",
    tags=("avatars",),
    roles=frozenset({Role.OPERATOR}),
    body=TransferRequest,
    response=TransferOut,
    status=201,
    errors=(404, 409, 422),
)
async def request_transfer(call: Call[TransferRequest]) -> tuple[int, TransferOut]:
    """The owner (verified) asks to move the avatar to another verified operator; staff approve it."""
    avatar_id = path_uuid(call)
    transfer = await service.request_transfer(call.pool, call.actor, avatar_id, call.body.to_operator_id)
    return 201, _transfer_out(transfer)


@api.route(
    "GET",
    "/v1/transfers",
    summary="List transfer requests",
    tags=("avatars",),
    roles=STAFF,
    query=TransferQuery,
    response=TransferList,
)
async def list_transfers(call: Call[None]) -> TransferList:
    """Transfer requests, newest first (pending ones by default)."""
    q = call.query
    async with call.pool.acquire() as conn:
        rows = await store.list_transfers(conn, status=q.status, avatar_id=q.avatar_id, limit=q.limit)
    return TransferList(items=[_transfer_out(t) for t in rows])


@api.route(
    "POST",
    "/v1/transfers/{id}/approve",
    summary="Approve a transfer",
    tags=("avatars",),
    roles=STAFF,
    body=TransferDecision,
    response=TransferOut,
    errors=(404, 409, 422, 503),
)
async def approve_transfer(call: Call[TransferDecision]) -> TransferOut:
    """Staff approve: both operators must still be verified; the avatar moves (its delegates are dropped)
    and the transfer is logged in the transparency log."""
    transfer_id = path_uuid(call)
    transfer = await service.approve_transfer(
        call.pool, fingerprints(call), call.actor, transfer_id, call.body.reason
    )
    return _transfer_out(transfer)


@api.route(
    "POST",
    "/v1/transfers/{id}/reject",
    summary="Reject a transfer",
    tags=("avatars",),
    roles=STAFF,
    body=TransferDecision,
    response=TransferOut,
    errors=(404, 409),
)
async def reject_transfer(call: Call[TransferDecision]) -> TransferOut:
    """Staff turn a pending transfer down."""
    transfer = await service.reject_transfer(call.pool, call.actor, path_uuid(call), call.body.reason)
    return _transfer_out(transfer)


# -- staff actions -----------------------------------------------------------------------------------------


@api.route(
    "POST",
    "/v1/avatars/{id}/status",
    summary="Change an avatar's status",
    tags=("avatars",),
    roles=STAFF,
    body=StatusChange,
    response=AvatarOut,
    errors=(404, 409, 503),
)
async def change_status(call: Call[StatusChange]) -> AvatarOut:
    """Staff release a held avatar (`active`), suspend, hold or revoke it (revoked is final), with a reason.
    Logged in the transparency log and the audit log; live sessions of the avatar are told at once
    (`NOTIFY live_control`), so a suspension ends them."""
    avatar_id = path_uuid(call)
    fps = fingerprints(call)
    async with call.pool.acquire() as conn:
        async with conn.transaction():
            await service.change_status(conn, call.actor, avatar_id, call.body.status, call.body.reason)
        if fps.loaded:
            await fps.catch_up(conn)
        return await load_avatar(conn, avatar_id)


@api.route(
    "GET",
    "/v1/avatars/{id}/ownership",
    summary="Who owns an avatar (audit-logged)",
    tags=("avatars",),
    roles=STAFF,
    query=Reason,
    response=OwnershipOut,
    errors=(404,),
)
async def ownership(call: Call[None]) -> OwnershipOut:
    """The owner operator with its verified identity details, decrypted, for staff. Requires a `reason`;
    every look-up is recorded in the audit log (without the details)."""
    avatar_id = path_uuid(call)
    async with call.pool.acquire() as conn, conn.transaction():
        avatar = await store.get_avatar(conn, avatar_id)
        rec = await operator_store.get_identity(conn, avatar.owner_operator_id)
        await audit.record(
            conn,
            call.actor,
            "avatar.ownership.read",
            "avatar",
            avatar_id,
            reason=call.query.reason,
            details={"operator_id": str(avatar.owner_operator_id)},
        )
    return OwnershipOut(avatar_id=avatar_id, owner=identity_out(call.services, rec))
