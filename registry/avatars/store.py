"""SQL for avatars, their reference images, delegates, transfers and review items. The caller owns the
transaction; every function returns dataclasses, never ``asyncpg.Record``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from registry import errors

__all__ = [
    "STATUSES",
    "Avatar",
    "AvatarImage",
    "NewImage",
    "ReviewItem",
    "Transfer",
    "add_delegate",
    "count_live_images",
    "create_review_item",
    "create_transfer",
    "decide_transfer",
    "get_avatar",
    "get_avatar_with_images",
    "get_image_content",
    "get_review_item",
    "get_transfer",
    "insert_avatar",
    "insert_images",
    "list_delegates",
    "list_images",
    "list_review_items",
    "list_transfers",
    "remove_delegate",
    "remove_image",
    "resolve_review_item",
    "resolve_reviews_of_avatar",
    "search_avatars",
    "set_log_index",
    "set_owner",
    "set_status",
]

STATUSES = ("active", "held_for_review", "suspended", "revoked")


@dataclass(frozen=True, slots=True)
class Avatar:
    id: uuid.UUID
    seq: int
    owner_operator_id: uuid.UUID
    name: str
    status: str
    status_reason: str | None
    registered_at: datetime
    updated_at: datetime
    model_kind: str | None
    model_sha256: bytes | None
    model_size: int | None
    model_meta: dict[str, Any] | None
    log_index: int | None
    match_disabled_until: datetime | None
    match_disabled_reason: str | None


@dataclass(frozen=True, slots=True)
class AvatarImage:
    """A reference image's record (its bytes are read separately, by ``get_image_content``)."""

    id: int
    avatar_id: uuid.UUID
    sha256: bytes
    pdq: bytes
    quality: int
    width: int
    height: int
    format: str
    size: int
    added_at: datetime
    quarantined_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewImage:
    """A checked, fingerprinted upload ready to store."""

    sha256: bytes
    pdq: bytes
    variants: bytes  # 8 x 32 bytes, DIHEDRAL_NAMES order
    augments: bytes  # n x 32 bytes, AUGMENTATION_NAMES order
    quality: int
    width: int
    height: int
    format: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Transfer:
    id: uuid.UUID
    avatar_id: uuid.UUID
    from_operator_id: uuid.UUID
    to_operator_id: uuid.UUID
    status: str
    requested_at: datetime
    decided_at: datetime | None
    decision_reason: str | None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    id: uuid.UUID
    kind: str
    avatar_id: uuid.UUID
    image_id: int | None
    details: dict[str, Any]
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolution_reason: str | None


def _avatar(r: asyncpg.Record) -> Avatar:
    return Avatar(**{k: r[k] for k in Avatar.__slots__})


def _image(r: asyncpg.Record) -> AvatarImage:
    return AvatarImage(**{k: r[k] for k in AvatarImage.__slots__})


def _transfer(r: asyncpg.Record) -> Transfer:
    return Transfer(**{k: r[k] for k in Transfer.__slots__})


def _review(r: asyncpg.Record) -> ReviewItem:
    return ReviewItem(**{k: r[k] for k in ReviewItem.__slots__})


# -- avatars -----------------------------------------------------------------------------------------------


async def insert_avatar(
    conn: asyncpg.Connection,
    *,
    owner_operator_id: uuid.UUID,
    name: str,
    name_trigrams: list[str],
    status: str,
    model_kind: str | None = None,
    model_sha256: bytes | None = None,
    model_size: int | None = None,
    model_meta: dict[str, Any] | None = None,
) -> Avatar:
    row = await conn.fetchrow(
        """INSERT INTO avatars (owner_operator_id, name, name_trigrams, status, model_kind, model_sha256,
                                 model_size, model_meta)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, seq, owner_operator_id, name, status,
                status_reason, registered_at, updated_at, model_kind, model_sha256, model_size, model_meta,
                log_index, match_disabled_until, match_disabled_reason""",
        owner_operator_id,
        name,
        name_trigrams,
        status,
        model_kind,
        model_sha256,
        model_size,
        model_meta,
    )
    return _avatar(row)


async def get_avatar(conn: asyncpg.Connection, avatar_id: uuid.UUID, *, for_update: bool = False) -> Avatar:
    """Raises ``NotFound`` (``avatar_not_found``)."""
    sql = """SELECT id, seq, owner_operator_id, name, status, status_reason, registered_at, updated_at,
        model_kind, model_sha256, model_size, model_meta, log_index, match_disabled_until,
        match_disabled_reason FROM avatars WHERE id = $1"""
    if for_update:
        sql += " FOR UPDATE"
    row = await conn.fetchrow(sql, avatar_id)
    if row is None:
        raise errors.NotFound(f"no such avatar: {avatar_id}", code="avatar_not_found")
    return _avatar(row)


async def get_avatar_with_images(
    conn: asyncpg.Connection, avatar_id: uuid.UUID
) -> tuple[Avatar, list[AvatarImage]]:
    """The avatar and its live reference images in one round trip (the hot look-up path).

    Raises ``NotFound`` (``avatar_not_found``).
    """
    row = await conn.fetchrow(
        """SELECT a.id, a.seq, a.owner_operator_id, a.name, a.status, a.status_reason, a.registered_at,
                  a.updated_at, a.model_kind, a.model_sha256, a.model_size, a.model_meta, a.log_index,
                  a.match_disabled_until, a.match_disabled_reason,
                  ARRAY(SELECT ROW(i.id, i.avatar_id, i.sha256, i.pdq, i.quality, i.width, i.height, i.format,
                                   i.size, i.added_at, i.quarantined_at)
                        FROM avatar_images i WHERE i.avatar_id = a.id AND i.removed_at IS NULL
                        ORDER BY i.id) AS images
           FROM avatars a WHERE a.id = $1""",
        avatar_id,
    )
    if row is None:
        raise errors.NotFound(f"no such avatar: {avatar_id}", code="avatar_not_found")
    # Anonymous ROW()s arrive as tuples in the order written above, which is AvatarImage's field order.
    return _avatar(row), [AvatarImage(*image) for image in row["images"]]


async def set_log_index(conn: asyncpg.Connection, avatar_id: uuid.UUID, log_index: int) -> Avatar:
    row = await conn.fetchrow(
        """UPDATE avatars SET log_index = $2 WHERE id = $1 RETURNING id, seq, owner_operator_id, name,
            status, status_reason, registered_at, updated_at, model_kind, model_sha256, model_size,
            model_meta, log_index, match_disabled_until, match_disabled_reason""",
        avatar_id,
        log_index,
    )
    return _avatar(row)


async def set_status(conn: asyncpg.Connection, avatar_id: uuid.UUID, status: str, reason: str) -> Avatar:
    row = await conn.fetchrow(
        """UPDATE avatars SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1
            RETURNING id, seq, owner_operator_id, name, status, status_reason, registered_at, updated_at,
                model_kind, model_sha256, model_size, model_meta, log_index, match_disabled_until,
                match_disabled_reason""",
        avatar_id,
        status,
        reason,
    )
    if row is None:
        raise errors.NotFound(f"no such avatar: {avatar_id}", code="avatar_not_found")
    return _avatar(row)


async def set_owner(conn: asyncpg.Connection, avatar_id: uuid.UUID, owner_operator_id: uuid.UUID) -> Avatar:
    """Move the avatar to a new owner; its delegates were the old owner's choice, so they are dropped."""
    await conn.execute("DELETE FROM avatar_delegates WHERE avatar_id = $1", avatar_id)
    row = await conn.fetchrow(
        """UPDATE avatars SET owner_operator_id = $2, updated_at = now() WHERE id = $1 RETURNING id, seq,
            owner_operator_id, name, status, status_reason, registered_at, updated_at, model_kind,
            model_sha256, model_size, model_meta, log_index, match_disabled_until, match_disabled_reason""",
        avatar_id,
        owner_operator_id,
    )
    return _avatar(row)


async def search_avatars(
    conn: asyncpg.Connection,
    *,
    name_trigrams: list[str] | None,
    owner: uuid.UUID | None,
    status: str | None,
    min_similarity: float,
    after_similarity: float | None,
    after_seq: int | None,
    limit: int,
) -> list[tuple[Avatar, float | None]]:
    """A page of avatars with their name similarity (None without a name query).

    With ``name_trigrams``: avatars sharing a trigram (the GIN index answers ``&&``) whose pg_trgm-style
    similarity is at least ``min_similarity``, best first, then newest first; the cursor is the last row's
    (similarity, seq). Without: newest first, the cursor is the last row's seq.
    """
    if name_trigrams is None:
        rows = await conn.fetch(
            """SELECT id, seq, owner_operator_id, name, status, status_reason, registered_at, updated_at,
                model_kind, model_sha256, model_size, model_meta, log_index, match_disabled_until,
                match_disabled_reason, NULL::float8 AS similarity FROM avatars
                WHERE ($1::uuid IS NULL OR owner_operator_id = $1)
                  AND ($2::text IS NULL OR status = $2)
                  AND ($3::bigint IS NULL OR seq < $3)
                ORDER BY seq DESC LIMIT $4""",
            owner,
            status,
            after_seq,
            limit,
        )
    else:
        # Stored trigram arrays hold distinct values, so |A ∩ B| counts A's elements found in B, and
        # |A ∪ B| = |A| + |B| - |A ∩ B|: the same float8 division Python's trigrams.similarity does.
        rows = await conn.fetch(
            """SELECT * FROM (
                    SELECT id, seq, owner_operator_id, name, status, status_reason, registered_at,
                        updated_at, model_kind, model_sha256, model_size, model_meta, log_index,
                        match_disabled_until, match_disabled_reason,
                        shared::float8 / (cardinality(name_trigrams) + cardinality($1::text[])
                                                        - shared)::float8 AS similarity
                    FROM avatars,
                         LATERAL (SELECT count(*) AS shared FROM unnest(name_trigrams) t
                                  WHERE t = ANY($1::text[])) s
                    WHERE name_trigrams && $1::text[]
                      AND ($2::uuid IS NULL OR owner_operator_id = $2)
                      AND ($3::text IS NULL OR status = $3)
                ) ranked
                WHERE similarity >= $4
                  AND ($5::float8 IS NULL OR similarity < $5 OR (similarity = $5 AND seq < $6))
                ORDER BY similarity DESC, seq DESC LIMIT $7""",
            name_trigrams,
            owner,
            status,
            min_similarity,
            after_similarity,
            after_seq,
            limit,
        )
    return [(_avatar(r), r["similarity"]) for r in rows]


# -- images ------------------------------------------------------------------------------------------------


async def insert_images(
    conn: asyncpg.Connection, avatar_id: uuid.UUID, images: list[NewImage]
) -> list[AvatarImage]:
    """Store reference images. Raises ``Conflict`` (``image_exists``) when one is already on the avatar."""
    out: list[AvatarImage] = []
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction survives the violation
            for img in images:
                row = await conn.fetchrow(
                    """INSERT INTO avatar_images (avatar_id, sha256, pdq, variants, augments, quality, width,
                                                   height, format, size, content)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id, avatar_id, sha256,
                            pdq, quality, width, height, format, size, added_at, quarantined_at""",
                    avatar_id,
                    img.sha256,
                    img.pdq,
                    img.variants,
                    img.augments,
                    img.quality,
                    img.width,
                    img.height,
                    img.format,
                    len(img.content),
                    img.content,
                )
                out.append(_image(row))
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "avatar_images_live_sha":
            raise errors.Conflict(
                "this image is already a reference image of the avatar", code="image_exists"
            ) from exc
        raise
    return out


async def list_images(
    conn: asyncpg.Connection, avatar_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[AvatarImage]]:
    """The live reference images of these avatars, oldest first."""
    rows = await conn.fetch(
        """SELECT id, avatar_id, sha256, pdq, quality, width, height, format, size, added_at,
            quarantined_at FROM avatar_images WHERE avatar_id = ANY($1::uuid[]) AND removed_at IS NULL
            ORDER BY id""",
        avatar_ids,
    )
    out: dict[uuid.UUID, list[AvatarImage]] = {a: [] for a in avatar_ids}
    for r in rows:
        out[r["avatar_id"]].append(_image(r))
    return out


async def count_live_images(conn: asyncpg.Connection, avatar_id: uuid.UUID) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM avatar_images WHERE avatar_id = $1 AND removed_at IS NULL", avatar_id
        )
    )


async def get_image_content(
    conn: asyncpg.Connection, avatar_id: uuid.UUID, sha256: bytes
) -> tuple[str, bytes]:
    """The format and original bytes of a live reference image. Raises ``NotFound`` (``image_not_found``)."""
    row = await conn.fetchrow(
        """SELECT format,
            content FROM avatar_images WHERE avatar_id = $1 AND sha256 = $2 AND removed_at IS NULL""",
        avatar_id,
        sha256,
    )
    if row is None:
        raise errors.NotFound("no such reference image on this avatar", code="image_not_found")
    return row["format"], row["content"]


async def remove_image(conn: asyncpg.Connection, avatar_id: uuid.UUID, sha256: bytes) -> AvatarImage:
    """Mark a live reference image removed. Raises ``NotFound`` (``image_not_found``)."""
    row = await conn.fetchrow(
        """UPDATE avatar_images SET removed_at = now()
            WHERE avatar_id = $1 AND sha256 = $2 AND removed_at IS NULL RETURNING id, avatar_id, sha256, pdq,
                quality, width, height, format, size, added_at, quarantined_at""",
        avatar_id,
        sha256,
    )
    if row is None:
        raise errors.NotFound("no such reference image on this avatar", code="image_not_found")
    return _image(row)


# -- delegates ---------------------------------------------------------------------------------------------


async def add_delegate(conn: asyncpg.Connection, avatar_id: uuid.UUID, operator_id: uuid.UUID) -> bool:
    """Allow an operator to drive the avatar; returns False when it already could."""
    done = await conn.fetchval(
        """INSERT INTO avatar_delegates (avatar_id, operator_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING 1""",
        avatar_id,
        operator_id,
    )
    return done is not None


async def remove_delegate(conn: asyncpg.Connection, avatar_id: uuid.UUID, operator_id: uuid.UUID) -> None:
    """Raises ``NotFound`` (``delegate_not_found``)."""
    done = await conn.fetchval(
        "DELETE FROM avatar_delegates WHERE avatar_id = $1 AND operator_id = $2 RETURNING 1",
        avatar_id,
        operator_id,
    )
    if done is None:
        raise errors.NotFound("that operator is not a delegate of this avatar", code="delegate_not_found")


async def list_delegates(conn: asyncpg.Connection, avatar_id: uuid.UUID) -> list[tuple[uuid.UUID, datetime]]:
    rows = await conn.fetch(
        """SELECT operator_id, created_at FROM avatar_delegates WHERE avatar_id = $1 ORDER BY created_at,
            operator_id""",
        avatar_id,
    )
    return [(r["operator_id"], r["created_at"]) for r in rows]


# -- transfers ---------------------------------------------------------------------------------------------


async def create_transfer(
    conn: asyncpg.Connection, avatar_id: uuid.UUID, from_operator_id: uuid.UUID, to_operator_id: uuid.UUID
) -> Transfer:
    """Open a transfer request. Raises ``Conflict`` (``transfer_pending``) when one is already open."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO avatar_transfers (avatar_id, from_operator_id, to_operator_id) VALUES ($1, $2,
                    $3)
                    RETURNING id, avatar_id, from_operator_id, to_operator_id, status, requested_at,
                        decided_at, decision_reason""",
                avatar_id,
                from_operator_id,
                to_operator_id,
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "avatar_transfers_one_pending":
            raise errors.Conflict(
                "a transfer of this avatar is already waiting for approval", code="transfer_pending"
            ) from exc
        raise
    return _transfer(row)


async def get_transfer(
    conn: asyncpg.Connection, transfer_id: uuid.UUID, *, for_update: bool = False
) -> Transfer:
    """Raises ``NotFound`` (``transfer_not_found``)."""
    sql = """SELECT id, avatar_id, from_operator_id, to_operator_id, status, requested_at, decided_at,
        decision_reason FROM avatar_transfers WHERE id = $1"""
    if for_update:
        sql += " FOR UPDATE"
    row = await conn.fetchrow(sql, transfer_id)
    if row is None:
        raise errors.NotFound(f"no such transfer: {transfer_id}", code="transfer_not_found")
    return _transfer(row)


async def decide_transfer(
    conn: asyncpg.Connection, transfer_id: uuid.UUID, status: str, decided_by: uuid.UUID | None, reason: str
) -> Transfer:
    row = await conn.fetchrow(
        """UPDATE avatar_transfers SET status = $2, decided_at = now(), decided_by = $3, decision_reason = $4
            WHERE id = $1 RETURNING id, avatar_id, from_operator_id, to_operator_id, status, requested_at,
                decided_at, decision_reason""",
        transfer_id,
        status,
        decided_by,
        reason,
    )
    return _transfer(row)


async def list_transfers(
    conn: asyncpg.Connection, *, status: str | None, avatar_id: uuid.UUID | None, limit: int
) -> list[Transfer]:
    rows = await conn.fetch(
        """SELECT id, avatar_id, from_operator_id, to_operator_id, status, requested_at, decided_at,
            decision_reason FROM avatar_transfers
            WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR avatar_id = $2)
            ORDER BY requested_at DESC, id LIMIT $3""",
        status,
        avatar_id,
        limit,
    )
    return [_transfer(r) for r in rows]


# -- review items ------------------------------------------------------------------------------------------


async def create_review_item(
    conn: asyncpg.Connection,
    kind: str,
    avatar_id: uuid.UUID,
    details: dict[str, Any],
    *,
    image_id: int | None = None,
) -> ReviewItem:
    row = await conn.fetchrow(
        """INSERT INTO review_items (kind, avatar_id, image_id, details) VALUES ($1, $2, $3, $4)
            RETURNING id, kind, avatar_id, image_id, details, status, created_at, resolved_at,
                resolution_reason""",
        kind,
        avatar_id,
        image_id,
        details,
    )
    return _review(row)


async def get_review_item(
    conn: asyncpg.Connection, item_id: uuid.UUID, *, for_update: bool = False
) -> ReviewItem:
    """Raises ``NotFound`` (``review_not_found``)."""
    sql = """SELECT id, kind, avatar_id, image_id, details, status, created_at, resolved_at,
        resolution_reason FROM review_items WHERE id = $1"""
    if for_update:
        sql += " FOR UPDATE"
    row = await conn.fetchrow(sql, item_id)
    if row is None:
        raise errors.NotFound(f"no such review item: {item_id}", code="review_not_found")
    return _review(row)


async def list_review_items(
    conn: asyncpg.Connection, *, status: str | None, kind: str | None, avatar_id: uuid.UUID | None, limit: int
) -> list[ReviewItem]:
    rows = await conn.fetch(
        """SELECT id, kind, avatar_id, image_id, details, status, created_at, resolved_at,
            resolution_reason FROM review_items
            WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2)
              AND ($3::uuid IS NULL OR avatar_id = $3)
            ORDER BY created_at, id LIMIT $4""",
        status,
        kind,
        avatar_id,
        limit,
    )
    return [_review(r) for r in rows]


async def resolve_review_item(
    conn: asyncpg.Connection, item_id: uuid.UUID, status: str, resolved_by: uuid.UUID | None, reason: str
) -> ReviewItem:
    row = await conn.fetchrow(
        """UPDATE review_items SET status = $2, resolved_at = now(), resolved_by = $3, resolution_reason = $4
            WHERE id = $1 RETURNING id, kind, avatar_id, image_id, details, status, created_at, resolved_at,
                resolution_reason""",
        item_id,
        status,
        resolved_by,
        reason,
    )
    return _review(row)


async def resolve_reviews_of_avatar(
    conn: asyncpg.Connection,
    avatar_id: uuid.UUID,
    kind: str,
    status: str,
    resolved_by: uuid.UUID | None,
    reason: str,
) -> int:
    """Close the avatar's open items of ``kind``; returns how many."""
    result: str = await conn.execute(
        """UPDATE review_items SET status = $3, resolved_at = now(), resolved_by = $4, resolution_reason = $5
           WHERE avatar_id = $1 AND kind = $2 AND status = 'open'""",
        avatar_id,
        kind,
        status,
        resolved_by,
        reason,
    )
    return int(result.split()[-1])
