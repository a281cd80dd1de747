"""``POST /v1/match``, owner allow-lists, per-avatar match disable and the likeness review queue; also the
per-app match index (``FINGERPRINTS``: loaded at start-up in a cleanup context, reported at ``/readyz``)
and the bounded multipart reader the image routes share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, Field

from registry import errors
from registry.api.routing import Api, Call, parse_json, path_uuid
from registry.api.schemas import QueryModel, Reason, StrictModel
from registry.api.state import MAX_BODY_BYTES, POOL, READINESS, SERVICES
from registry.avatars import service as avatar_service
from registry.avatars import store as avatar_store
from registry.avatars.images import MAX_IMAGE_BYTES
from registry.fingerprints import store as fp_store
from registry.fingerprints.match import MAX_THRESHOLD
from registry.fingerprints.phash import MAX_QUALITY, pdq_from_hex
from registry.fingerprints.service import (
    SLOT_NAMES,
    FingerprintService,
    LikenessHit,
    upload_digest,
)
from registry.roles import Role

__all__ = [
    "FIELD_BYTES",
    "FINGERPRINTS",
    "STAFF",
    "Part",
    "api",
    "fingerprint_parts",
    "fingerprints",
    "install",
    "now_utc",
    "read_form",
    "single",
]

api = Api()

FINGERPRINTS = web.AppKey("fingerprints", FingerprintService)

STAFF = frozenset({Role.STAFF, Role.ADMIN})
# Longest a staff member may switch an avatar's matching off in one go: protection must come back.
MAX_DISABLE = timedelta(days=365)
# Text fields of a multipart form are short.
FIELD_BYTES = 1024
_READ_CHUNK = 1 << 16


def install(app: web.Application, dsn: str) -> None:
    """Give ``app`` its own match index: loaded at start-up, following changes, reported at ``/readyz``."""
    fps = FingerprintService(app[SERVICES].likeness)
    app[FINGERPRINTS] = fps

    async def index_ctx(app: web.Application) -> AsyncIterator[None]:
        await fps.start(app[POOL], dsn)
        yield
        await fps.stop()

    async def readiness(app: web.Application) -> tuple[bool, dict[str, Any]]:
        return fps.readiness()

    app.cleanup_ctx.append(index_ctx)
    app[READINESS]["match_index"] = readiness


def fingerprints(call: Call[Any]) -> FingerprintService:
    """This app's match index (each app, like each process, has its own)."""
    return call.request.app[FINGERPRINTS]


# -- multipart ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    data: bytes

    def text(self) -> str:
        """The part as a text field. Raises ``BadRequest`` (``invalid_field``)."""
        try:
            value = self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.BadRequest(f"field {self.name!r} is not UTF-8 text", code="invalid_field") from None
        if "\x00" in value:
            raise errors.BadRequest(f"field {self.name!r} must not contain NUL", code="invalid_field")
        return value


async def read_form(call: Call[Any], limits: dict[str, tuple[int, int]]) -> list[Part]:
    """Read a ``multipart/form-data`` body part by part, each within its own limits.

    ``limits`` maps each accepted part name to (largest size in bytes, most parts of that name); parts are
    read in chunks and refused as soon as they pass a limit, so a huge part never sits in memory.

    Raises:
        UnsupportedMediaType: ``unsupported_media_type``, not multipart/form-data.
        BadRequest: ``invalid_multipart`` (malformed), ``unknown_part``, ``too_many_parts``.
        PayloadTooLarge: ``<part>_too_large`` (e.g. ``image_too_large``), or the whole body past the limit.
    """
    request = call.request
    if request.content_type != "multipart/form-data":
        raise errors.UnsupportedMediaType(
            f"expected Content-Type multipart/form-data, got {request.content_type or 'none'}"
        )
    body_limit = request.app[MAX_BODY_BYTES]
    if request.content_length is not None and request.content_length > body_limit:
        raise errors.PayloadTooLarge(f"request body too large: at most {body_limit} bytes")
    parts: list[Part] = []
    total = 0
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise errors.BadRequest("nested multipart bodies are not accepted", code="invalid_multipart")
            name = part.name or ""
            if name not in limits:
                raise errors.BadRequest(
                    f"unexpected form part {name!r}: expected {', '.join(sorted(limits))}",
                    code="unknown_part",
                    details={"part": name, "allowed": sorted(limits)},
                )
            limit, most = limits[name]
            seen = sum(p.name == name for p in parts)
            if seen >= most:
                raise errors.BadRequest(
                    f"too many {name!r} parts: at most {most}", code="too_many_parts", details={"part": name}
                )
            label = f"{name}[{seen}]" if name == "image" else name
            buf = bytearray()
            while chunk := await part.read_chunk(_READ_CHUNK):
                buf += chunk
                total += len(chunk)
                if len(buf) > limit:
                    raise errors.PayloadTooLarge(
                        f"{name} part {label!r} is too large: expected at most {limit} bytes",
                        code=f"{name}_too_large",
                        details={"part": label, "limit": limit},
                    )
                if total > body_limit:
                    raise errors.PayloadTooLarge(f"request body too large: at most {body_limit} bytes")
            parts.append(Part(name, part.filename, bytes(buf)))
    # What aiohttp's multipart parser raises on a malformed body (bad boundary, headers, encodings).
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
        raise errors.BadRequest(
            "malformed multipart body", code="invalid_multipart", details={"error": type(exc).__name__}
        ) from None
    return parts


def single(parts: list[Part], name: str, *, required: bool) -> Part | None:
    """The one part called ``name``. Raises ``BadRequest`` (``missing_part``, ``repeated_part``)."""
    found = [p for p in parts if p.name == name]
    if len(found) > 1:
        raise errors.BadRequest(f"form part {name!r} given {len(found)} times", code="repeated_part")
    if not found:
        if required:
            raise errors.BadRequest(f"form part {name!r} is required", code="missing_part")
        return None
    return found[0]


async def fingerprint_parts(call: Call[Any], images: list[Part]) -> list[avatar_service.Reference]:
    """Decode and fingerprint image parts in a worker thread (CPU-bound), labelled ``image[i]``."""
    min_quality = fingerprints(call).policy.min_quality

    def work() -> list[avatar_service.Reference]:
        return [
            avatar_service.fingerprint_upload(f"image[{i}]", p.filename, p.data, min_quality=min_quality)
            for i, p in enumerate(images)
        ]

    return await asyncio.to_thread(work)


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- POST /v1/match ----------------------------------------------------------------------------------------


class MatchQuery(QueryModel):
    threshold: int | None = Field(
        default=None, ge=0, le=MAX_THRESHOLD, description="Largest Hamming distance reported (default 31)."
    )


class MatchBody(StrictModel):
    pdq: str = Field(min_length=64, max_length=64, description="PDQ hash, 64 hex digits (Meta's format).")
    quality: int = Field(default=MAX_QUALITY, ge=0, le=MAX_QUALITY, description="PDQ quality of the image.")
    threshold: int | None = Field(default=None, ge=0, le=MAX_THRESHOLD)


class MatchItem(BaseModel):
    avatar_id: uuid.UUID
    owner_operator_id: uuid.UUID
    status: str = Field(
        description="The avatar's status: `active` · `held_for_review` · `suspended` · `revoked`"
    )
    distance: int
    image_sha256: str = Field(description="The reference image that matched.")
    variant: str = Field(
        description="Which slot of the reference matched: a rotation or flip (`original`, `flip_left_right`, "
        "...) or an augmentation (`crop_5`, `rotate_+2`, ...)."
    )
    disposition: Literal["match", "allowed", "review"] = Field(
        description="`match`: act on it · `allowed`: the owner licensed this image · `review`: the reference "
        "is quarantined after a match flood; send to review, do not act"
    )


class MatchQueryOut(BaseModel):
    pdq: str
    quality: int


class MatchOut(BaseModel):
    threshold: int
    query: MatchQueryOut
    matches: list[MatchItem]


_MATCH_FORM = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP, at most 10 MB."},
        "threshold": {"type": "integer", "minimum": 0, "maximum": MAX_THRESHOLD},
    },
}


def _threshold(call: Call[Any], *candidates: int | None) -> int:
    given = {t for t in (call.query.threshold, *candidates) if t is not None}
    if len(given) > 1:
        raise errors.BadRequest("threshold given twice with different values", code="invalid_threshold")
    policy = fingerprints(call).policy
    threshold = given.pop() if given else policy.threshold
    if not 0 <= threshold <= policy.max_threshold:
        raise errors.BadRequest(
            f"threshold must be in 0..{policy.max_threshold}, got {threshold}", code="invalid_threshold"
        )
    return threshold


def match_item(hit: LikenessHit) -> MatchItem:
    return MatchItem(
        avatar_id=hit.avatar_id,
        owner_operator_id=hit.owner_operator_id,
        status=hit.status,
        distance=hit.distance,
        image_sha256=hit.image_sha256.hex(),
        variant=SLOT_NAMES[hit.variant],
        disposition=hit.disposition,
    )


@api.route(
    "POST",
    "/v1/match",
    summary="Match an image or PDQ hash against registered avatars",
    tags=("match",),
    roles=frozenset({Role.PLATFORM, Role.STAFF, Role.ADMIN}),
    query=MatchQuery,
    multipart=_MATCH_FORM,
    response=MatchOut,
    errors=(400, 413, 415, 422, 503),
)
async def match(call: Call[None]) -> MatchOut:
    """Match one upload against every registered avatar's reference images (all 8 rotations and flips).

    Send either `multipart/form-data` with one `image` part (and optionally `threshold`), or
    `application/json` `{"pdq": "<64 hex>", "quality": 0-100, "threshold": n}`. The threshold (default 31,
    "less than or equal" matches) may also be a query parameter. Matches come nearest first, one per
    reference image, with the avatar's status and a disposition (`match` · `allowed` · `review`); avatars
    whose matching staff disabled are left out. 503 `index_not_ready` while the index loads; 422
    `image_low_quality` for an image too featureless to match on."""
    fps = fingerprints(call)
    fps.require_ready()
    policy = fps.policy
    if call.request.content_type == "application/json":
        body = await parse_json(call.request, MatchBody)
        threshold = _threshold(call, body.threshold)
        pdq = pdq_from_hex(body.pdq, quality=body.quality)
        if pdq.quality < policy.min_quality:
            raise errors.Unprocessable(
                f"pdq quality {pdq.quality} is below {policy.min_quality}: too unreliable to match on",
                code="image_low_quality",
                details={"part": "pdq", "quality": pdq.quality, "min_quality": policy.min_quality},
            )
        queries, digest, shown = (
            [pdq.bits],
            upload_digest(pdq.bits),
            MatchQueryOut(pdq=pdq.hex(), quality=pdq.quality),
        )
    else:
        parts = await read_form(call, {"image": (MAX_IMAGE_BYTES, 1), "threshold": (FIELD_BYTES, 1)})
        image = single(parts, "image", required=True)
        assert image is not None
        field = single(parts, "threshold", required=False)
        form_threshold = _int_field(field) if field is not None else None
        threshold = _threshold(call, form_threshold)
        (ref,) = await fingerprint_parts(call, [image])
        queries, digest = list(ref.hashes), ref.image.sha256
        shown = MatchQueryOut(pdq=ref.image.pdq.hex(), quality=ref.image.quality)
    hits = await fps.match(call.pool, queries, digest, threshold, now_utc())
    return MatchOut(threshold=threshold, query=shown, matches=[match_item(h) for h in hits])


def _int_field(part: Part) -> int:
    text = part.text().strip()
    if not text.isascii() or not text.isdigit() or len(text) > 3:
        raise errors.BadRequest(f"field {part.name!r} must be a small whole number", code="invalid_field")
    return int(text)


# -- allow-lists -------------------------------------------------------------------------------------------


class AllowBody(StrictModel):
    pdq: str = Field(min_length=64, max_length=64, description="PDQ hash of the licensed image (64 hex).")
    note: str = Field(default="", max_length=500, description="What is licensed, to whom (shown to staff).")


class AllowEntryOut(BaseModel):
    id: int
    avatar_id: uuid.UUID
    pdq: str
    sha256: str | None = Field(description="SHA-256 of the licensed file, when it was uploaded as an image.")
    note: str
    created_at: datetime


class AllowListOut(BaseModel):
    avatar_id: uuid.UUID
    entries: list[AllowEntryOut]


_ALLOW_FORM = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "The licensed image."},
        "note": {"type": "string", "maxLength": 500},
    },
}


def allow_out(e: fp_store.AllowEntry) -> AllowEntryOut:
    return AllowEntryOut(
        id=e.id,
        avatar_id=e.avatar_id,
        pdq=e.pdq.hex(),
        sha256=e.sha256.hex() if e.sha256 else None,
        note=e.note,
        created_at=e.created_at,
    )


@api.route(
    "POST",
    "/v1/avatars/{id}/allowlist",
    summary="License an image of your avatar (allow-list)",
    tags=("match",),
    roles=frozenset({Role.OPERATOR}),
    multipart=_ALLOW_FORM,
    response=AllowEntryOut,
    status=201,
    errors=(400, 404, 409, 413, 415, 422, 503),
)
async def add_allow(call: Call[None]) -> AllowEntryOut:
    """The owner licenses an image (e.g. fan art) or a PDQ hash: an upload that matches both this avatar
    and an allow-list entry is reported `allowed` and does not conflict. Multipart `image` (+ `note`) or
    JSON `{"pdq", "note"}`."""
    avatar_id = path_uuid(call)
    fps = fingerprints(call)
    if call.request.content_type == "application/json":
        body = await parse_json(call.request, AllowBody)
        pdq, sha256, note = pdq_from_hex(body.pdq).bits, None, body.note
    else:
        parts = await read_form(call, {"image": (MAX_IMAGE_BYTES, 1), "note": (FIELD_BYTES, 1)})
        image = single(parts, "image", required=True)
        assert image is not None
        note_part = single(parts, "note", required=False)
        note = note_part.text() if note_part else ""
        if len(note) > 500:
            raise errors.BadRequest("note is too long: at most 500 characters", code="invalid_field")
        (ref,) = await fingerprint_parts(call, [image])
        pdq, sha256 = ref.image.pdq, ref.image.sha256
    entry = await avatar_service.add_allow_entry(call.pool, fps, call.actor, avatar_id, pdq, sha256, note)
    return allow_out(entry)


@api.route(
    "GET",
    "/v1/avatars/{id}/allowlist",
    summary="An avatar's allow-list",
    tags=("match",),
    roles=frozenset({Role.OPERATOR, Role.STAFF, Role.ADMIN}),
    response=AllowListOut,
    errors=(404,),
)
async def list_allow(call: Call[None]) -> AllowListOut:
    """The owner's licensed images and hashes (the owner, or staff)."""
    avatar_id = path_uuid(call)
    async with call.pool.acquire() as conn:
        avatar = await avatar_store.get_avatar(conn, avatar_id)
        if call.actor.role is Role.OPERATOR:
            avatar_service.require_owner(call.actor, avatar)
        entries = await fp_store.list_allow(conn, avatar_id)
    return AllowListOut(avatar_id=avatar_id, entries=[allow_out(e) for e in entries])


@api.route(
    "DELETE",
    "/v1/avatars/{id}/allowlist/{entry_id}",
    summary="Remove an allow-list entry",
    tags=("match",),
    roles=frozenset({Role.OPERATOR}),
    response=AllowListOut,
    errors=(404, 503),
)
async def delete_allow(call: Call[None]) -> AllowListOut:
    """The owner withdraws a licence; matches of that image conflict again."""
    avatar_id = path_uuid(call)
    raw = call.request.match_info["entry_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise errors.NotFound(f"no allow-list entry {raw!r}", code="allowlist_entry_not_found")
    fps = fingerprints(call)
    await avatar_service.remove_allow_entry(call.pool, fps, call.actor, avatar_id, int(raw))
    async with call.pool.acquire() as conn:
        entries = await fp_store.list_allow(conn, avatar_id)
    return AllowListOut(avatar_id=avatar_id, entries=[allow_out(e) for e in entries])


# -- per-avatar match disable ------------------------------------------------------------------------------


class DisableBody(StrictModel):
    until: datetime = Field(description="When matching comes back on (RFC 3339, at most a year ahead).")
    reason: str = Field(min_length=3, max_length=500)


class MatchDisableOut(BaseModel):
    avatar_id: uuid.UUID
    match_disabled_until: datetime | None


@api.route(
    "PUT",
    "/v1/avatars/{id}/match-disable",
    summary="Switch an avatar's matching off until a time",
    tags=("match",),
    roles=STAFF,
    body=DisableBody,
    response=MatchDisableOut,
    errors=(404, 503),
)
async def disable_matching(call: Call[DisableBody]) -> MatchDisableOut:
    """Staff switch matching off for one avatar until `until` (e.g. a false-positive storm): its references
    neither match uploads nor block registrations meanwhile. Audit-logged."""
    avatar_id = path_uuid(call)
    until = call.body.until
    now = now_utc()
    if until.tzinfo is None:
        raise errors.BadRequest("until must carry a time zone (RFC 3339)", code="validation_error")
    if not now < until <= now + MAX_DISABLE:
        raise errors.BadRequest(
            f"until must be in the future and at most {MAX_DISABLE.days} days ahead", code="validation_error"
        )
    fps = fingerprints(call)
    await avatar_service.set_match_disabled(call.pool, fps, call.actor, avatar_id, until, call.body.reason)
    return MatchDisableOut(avatar_id=avatar_id, match_disabled_until=until)


@api.route(
    "DELETE",
    "/v1/avatars/{id}/match-disable",
    summary="Switch an avatar's matching back on",
    tags=("match",),
    roles=STAFF,
    query=Reason,
    response=MatchDisableOut,
    errors=(404, 503),
)
async def enable_matching(call: Call[None]) -> MatchDisableOut:
    """Staff end a match disable early. Audit-logged."""
    avatar_id = path_uuid(call)
    fps = fingerprints(call)
    await avatar_service.set_match_disabled(call.pool, fps, call.actor, avatar_id, None, call.query.reason)
    return MatchDisableOut(avatar_id=avatar_id, match_disabled_until=None)


# -- review queue ------------------------------------------------------------------------------------------


class ReviewQuery(QueryModel):
    status: Literal["open", "approved", "rejected"] | None = Field(default="open")
    kind: Literal["likeness_hold", "quarantined_match", "flood_quarantine"] | None = None
    avatar_id: uuid.UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)


class ReviewOut(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="`likeness_hold` · `quarantined_match` · `flood_quarantine`")
    avatar_id: uuid.UUID
    details: dict[str, Any]
    status: str
    created_at: datetime
    resolved_at: datetime | None


class ReviewList(BaseModel):
    items: list[ReviewOut]


class ResolveBody(StrictModel):
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=3, max_length=500)


def review_out(item: avatar_store.ReviewItem) -> ReviewOut:
    return ReviewOut(
        id=item.id,
        kind=item.kind,
        avatar_id=item.avatar_id,
        details=item.details,
        status=item.status,
        created_at=item.created_at,
        resolved_at=item.resolved_at,
    )


@api.route(
    "GET",
    "/v1/reviews",
    summary="The likeness review queue",
    tags=("match",),
    roles=STAFF,
    query=ReviewQuery,
    response=ReviewList,
)
async def list_reviews(call: Call[None]) -> ReviewList:
    """Held registrations, matches on quarantined references, and flood quarantines, oldest first."""
    q = call.query
    async with call.pool.acquire() as conn:
        items = await avatar_store.list_review_items(
            conn, status=q.status, kind=q.kind, avatar_id=q.avatar_id, limit=q.limit
        )
    return ReviewList(items=[review_out(i) for i in items])


@api.route(
    "POST",
    "/v1/reviews/{id}/resolve",
    summary="Decide a review item",
    tags=("match",),
    roles=STAFF,
    body=ResolveBody,
    response=ReviewOut,
    errors=(404, 409, 503),
)
async def resolve_review(call: Call[ResolveBody]) -> ReviewOut:
    """`likeness_hold`: approve releases the held avatar, reject revokes it. `flood_quarantine`: approve lifts
    the reference's quarantine, reject keeps it. `quarantined_match`: closes the item. Audit-logged."""
    item_id = path_uuid(call)
    fps = fingerprints(call)
    item = await avatar_service.resolve_review(
        call.pool, fps, call.actor, item_id, call.body.decision, call.body.reason
    )
    return review_out(item)
