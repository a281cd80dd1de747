"""SQL for likeness protection: the likeness lock, the change feed the match index follows, index snapshots,
owner allow-lists, per-avatar match disable and flood counters. The caller owns the transaction.

The change feed (``avatar_changes``) is written only under the likeness lock, a transaction-level advisory
lock held until commit. Sequence numbers are therefore handed out and committed in the same order, so a
reader that has applied every change up to N can never later see a change below N appear.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from registry import errors

__all__ = [
    "CHANGES_CHANNEL",
    "LIKENESS_LOCK",
    "AllowEntry",
    "AvatarSnapshot",
    "Change",
    "RefImage",
    "add_allow",
    "changes_since",
    "clear_match_disable",
    "current_seq",
    "delete_allow",
    "list_allow",
    "load_all",
    "load_snapshots",
    "quarantine_images",
    "record_change",
    "record_hits",
    "release_quarantine",
    "set_match_disable",
    "take_likeness_lock",
]

# Any constant works; it only has to be the same in every process ("likn").
LIKENESS_LOCK = 0x6C696B6E
# NOTIFY channel of the change feed; the payload is the change's sequence number.
CHANGES_CHANNEL = "avatar_changes"


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    avatar_id: uuid.UUID
    kind: str


@dataclass(frozen=True, slots=True)
class RefImage:
    """A live reference image as the match index holds it (its hashes travel beside it)."""

    image_id: int
    avatar_id: uuid.UUID
    sha256: bytes
    quality: int
    quarantined: bool


@dataclass(frozen=True, slots=True)
class AvatarSnapshot:
    """Everything the match index needs about one avatar, read at one moment.

    ``images`` pairs each live reference image with its hashes: the 8 dihedral variants, then the
    augmentations, 32 bytes each.
    """

    avatar_id: uuid.UUID
    owner_operator_id: uuid.UUID
    status: str
    match_disabled_until: datetime | None
    images: tuple[tuple[RefImage, bytes], ...]
    allow: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class AllowEntry:
    id: int
    avatar_id: uuid.UUID
    pdq: bytes
    sha256: bytes | None
    note: str
    created_at: datetime


async def take_likeness_lock(conn: asyncpg.Connection) -> None:
    """Serialise every change to what the match index holds, until this transaction ends.

    Registration's conflict check and insert run under it, so two owners racing with copies of one likeness
    are decided one after the other. Taking it twice in one transaction is harmless.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("the likeness lock is transaction-level: take it inside a transaction")
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LIKENESS_LOCK)


async def record_change(conn: asyncpg.Connection, avatar_id: uuid.UUID, kind: str) -> int:
    """Append "avatar changed" to the feed and ``NOTIFY avatar_changes`` (delivered at commit).

    Takes the likeness lock first (see the module docstring); returns the change's sequence number.
    """
    await take_likeness_lock(conn)
    seq: int = await conn.fetchval(
        "INSERT INTO avatar_changes (avatar_id, kind) VALUES ($1, $2) RETURNING seq", avatar_id, kind
    )
    await conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, str(seq))
    return seq


async def current_seq(conn: asyncpg.Connection) -> int:
    """The latest committed change's sequence number (0 before the first change)."""
    return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM avatar_changes"))


async def changes_since(conn: asyncpg.Connection, seq: int, *, limit: int = 10_000) -> list[Change]:
    """Committed changes after ``seq``, in order, at most ``limit``."""
    rows = await conn.fetch(
        "SELECT seq, avatar_id, kind FROM avatar_changes WHERE seq > $1 ORDER BY seq LIMIT $2", seq, limit
    )
    return [Change(r["seq"], r["avatar_id"], r["kind"]) for r in rows]


def _snapshots(
    avatars: list[asyncpg.Record], images: list[asyncpg.Record], allow: list[asyncpg.Record]
) -> list[AvatarSnapshot]:
    by_avatar: dict[uuid.UUID, list[tuple[RefImage, bytes]]] = {}
    for r in images:
        ref = RefImage(r["id"], r["avatar_id"], r["sha256"], r["quality"], r["quarantined"])
        by_avatar.setdefault(r["avatar_id"], []).append((ref, r["hashes"]))
    allowed: dict[uuid.UUID, list[bytes]] = {}
    for r in allow:
        allowed.setdefault(r["avatar_id"], []).append(r["pdq"])
    return [
        AvatarSnapshot(
            avatar_id=a["id"],
            owner_operator_id=a["owner_operator_id"],
            status=a["status"],
            match_disabled_until=a["match_disabled_until"],
            images=tuple(by_avatar.get(a["id"], ())),
            allow=tuple(allowed.get(a["id"], ())),
        )
        for a in avatars
    ]


async def load_snapshots(conn: asyncpg.Connection, avatar_ids: list[uuid.UUID]) -> list[AvatarSnapshot]:
    """The current state of these avatars (ids that do not exist are left out)."""
    avatars = await conn.fetch(
        "SELECT id, owner_operator_id, status, match_disabled_until FROM avatars WHERE id = ANY($1::uuid[])",
        avatar_ids,
    )
    images = await conn.fetch(
        """SELECT id, avatar_id, sha256, variants || augments AS hashes, quality,
            quarantined_at IS NOT NULL AS quarantined FROM avatar_images
            WHERE avatar_id = ANY($1::uuid[]) AND removed_at IS NULL ORDER BY id""",
        avatar_ids,
    )
    allow = await conn.fetch(
        "SELECT avatar_id, pdq FROM avatar_allowlist WHERE avatar_id = ANY($1::uuid[]) ORDER BY id",
        avatar_ids,
    )
    return _snapshots(avatars, images, allow)


async def load_all(conn: asyncpg.Connection) -> tuple[int, list[AvatarSnapshot]]:
    """Every avatar's state and the change sequence number it reflects, from one snapshot.

    Runs its reads in a REPEATABLE READ, read-only transaction, so the sequence number and the rows agree.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        seq = await current_seq(conn)
        avatars = await conn.fetch("SELECT id, owner_operator_id, status, match_disabled_until FROM avatars")
        images = await conn.fetch(
            """SELECT id, avatar_id, sha256, variants || augments AS hashes, quality,
                      quarantined_at IS NOT NULL AS quarantined
               FROM avatar_images WHERE removed_at IS NULL ORDER BY id"""
        )
        allow = await conn.fetch("SELECT avatar_id, pdq FROM avatar_allowlist ORDER BY id")
    return seq, _snapshots(avatars, images, allow)


# -- allow-lists -------------------------------------------------------------------------------------------


def _allow(row: asyncpg.Record) -> AllowEntry:
    return AllowEntry(row["id"], row["avatar_id"], row["pdq"], row["sha256"], row["note"], row["created_at"])


async def add_allow(
    conn: asyncpg.Connection, avatar_id: uuid.UUID, pdq: bytes, sha256: bytes | None, note: str
) -> AllowEntry:
    """Add a licensed hash to an avatar's allow-list. Raises ``Conflict`` (``allowlist_duplicate``)."""
    row = await conn.fetchrow(
        """INSERT INTO avatar_allowlist (avatar_id, pdq, sha256, note) VALUES ($1, $2, $3, $4)
           ON CONFLICT (avatar_id, pdq) DO NOTHING
           RETURNING id, avatar_id, pdq, sha256, note, created_at""",
        avatar_id,
        pdq,
        sha256,
        note,
    )
    if row is None:
        raise errors.Conflict("this hash is already on the avatar's allow-list", code="allowlist_duplicate")
    return _allow(row)


async def list_allow(conn: asyncpg.Connection, avatar_id: uuid.UUID) -> list[AllowEntry]:
    rows = await conn.fetch(
        """SELECT id, avatar_id, pdq, sha256, note,
            created_at FROM avatar_allowlist WHERE avatar_id = $1 ORDER BY id""",
        avatar_id,
    )
    return [_allow(r) for r in rows]


async def delete_allow(conn: asyncpg.Connection, avatar_id: uuid.UUID, entry_id: int) -> None:
    """Remove an allow-list entry. Raises ``NotFound`` (``allowlist_entry_not_found``)."""
    done = await conn.fetchval(
        "DELETE FROM avatar_allowlist WHERE avatar_id = $1 AND id = $2 RETURNING 1", avatar_id, entry_id
    )
    if done is None:
        raise errors.NotFound(
            f"no allow-list entry {entry_id} on this avatar", code="allowlist_entry_not_found"
        )


# -- match disable -----------------------------------------------------------------------------------------


async def set_match_disable(
    conn: asyncpg.Connection, avatar_id: uuid.UUID, until: datetime | None, reason: str | None
) -> None:
    """Switch matching off for an avatar until ``until`` (None switches it back on)."""
    await conn.execute(
        """UPDATE avatars SET match_disabled_until = $2, match_disabled_reason = $3, updated_at = now()
           WHERE id = $1""",
        avatar_id,
        until,
        reason,
    )


async def clear_match_disable(conn: asyncpg.Connection, avatar_id: uuid.UUID) -> None:
    await set_match_disable(conn, avatar_id, None, None)


# -- flood counters and quarantine -------------------------------------------------------------------------


async def record_hits(
    conn: asyncpg.Connection, image_ids: list[int], upload_sha256: bytes, window_s: float
) -> dict[int, int]:
    """Count one upload against each matched reference image; return, per image, the distinct uploads that
    matched it within the last ``window_s`` seconds (this one included). Older hits are dropped."""
    if not image_ids:
        return {}
    window = timedelta(seconds=window_s)
    await conn.execute(
        """DELETE FROM match_hits WHERE image_id = ANY($1::bigint[]) AND at <= now() - $2::interval""",
        image_ids,
        window,
    )
    await conn.execute(
        """INSERT INTO match_hits (image_id, upload_sha256)
           SELECT unnest($1::bigint[]), $2
           ON CONFLICT (image_id, upload_sha256) DO UPDATE SET at = excluded.at""",
        image_ids,
        upload_sha256,
    )
    rows = await conn.fetch(
        """SELECT image_id, count(*) AS n FROM match_hits
           WHERE image_id = ANY($1::bigint[]) AND at > now() - $2::interval GROUP BY image_id""",
        image_ids,
        window,
    )
    return {r["image_id"]: r["n"] for r in rows}


async def quarantine_images(
    conn: asyncpg.Connection, image_ids: list[int]
) -> list[tuple[int, uuid.UUID, bytes]]:
    """Mark live, not yet quarantined images quarantined; return (image id, avatar id, sha256) of those."""
    rows = await conn.fetch(
        """UPDATE avatar_images SET quarantined_at = now()
           WHERE id = ANY($1::bigint[]) AND quarantined_at IS NULL AND removed_at IS NULL
           RETURNING id, avatar_id, sha256""",
        image_ids,
    )
    return [(r["id"], r["avatar_id"], r["sha256"]) for r in rows]


async def release_quarantine(conn: asyncpg.Connection, image_id: int) -> None:
    """Lift an image's quarantine and forget its flood counter, so counting starts afresh."""
    await conn.execute("UPDATE avatar_images SET quarantined_at = NULL WHERE id = $1", image_id)
    await conn.execute("DELETE FROM match_hits WHERE image_id = $1", image_id)
