"""The transparency log in PostgreSQL: leaves, stored hashes and checkpoints (migration 0003).

SQL only, with the connection (and so the transaction) passed in. The Merkle math stays in the pure modules,
which read hashes through a synchronous ``read_hashes(indexes)`` callback called at most once per function;
``with_hashes`` bridges that to asyncpg by running the pure function twice: once to learn which indexes it
asks for, then, after one query, with the answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg

from registry import errors
from registry.translog.merkle import HASH_SIZE
from registry.translog.storedhash import HashStoreError, prove_record, prove_tree, tree_hash
from registry.translog.tiles import Tile, encode_entry_bundle, read_tile_data, tile_in_tree

__all__ = [
    "LogEntry",
    "StoredCheckpoint",
    "consistency_proof",
    "entries_in_range",
    "entry_bundle",
    "find_leaf",
    "get_entry",
    "inclusion_proof",
    "insert_checkpoint",
    "insert_entry",
    "latest_checkpoint",
    "latest_checkpoint_by_key",
    "next_index",
    "published_size",
    "read_hashes",
    "root_at",
    "tile_data",
    "tree_size",
    "with_hashes",
]

T = TypeVar("T")
Reader = Callable[[list[int]], Sequence[bytes]]
_PLACEHOLDER = bytes(HASH_SIZE)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One leaf: its index, the exact bytes that were hashed, its kind and the uuid it is about."""

    index: int
    leaf: bytes
    kind: str
    subject: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: tree size, root, signing key id (8 hex digits) and the signed note."""

    id: int
    tree_size: int
    root_hash: bytes
    key_id: str
    note: bytes
    signed_at: datetime


async def tree_size(conn: asyncpg.Connection) -> int:
    """Return the number of committed leaves (as this transaction sees them)."""
    size = await conn.fetchval("SELECT size FROM log_head")
    return int(size)


async def read_hashes(conn: asyncpg.Connection, indexes: Sequence[int]) -> list[bytes]:
    """Return the stored hashes at ``indexes``, in that order, with one query.

    Raises ``HashStoreError`` if one is missing (the pure layer only asks for hashes inside the tree).
    """
    if not indexes:
        return []
    rows = await conn.fetch("SELECT idx, hash FROM log_hashes WHERE idx = ANY($1::bigint[])", list(indexes))
    found = {r["idx"]: bytes(r["hash"]) for r in rows}
    missing = [i for i in indexes if i not in found]
    if missing:
        raise HashStoreError(
            f"stored hashes missing at {len(missing)} indexes, first {missing[0]}",
            details={"missing": missing[:8]},
        )
    return [found[i] for i in indexes]


async def with_hashes(conn: asyncpg.Connection, fn: Callable[[Reader], T]) -> T:
    """Run the pure ``fn(read_hashes)`` against the database with one query.

    ``fn`` must call its reader at most once, with indexes that do not depend on the hashes it gets back
    (true of every ``storedhash`` and ``tiles`` function). The first run records the indexes and gets
    placeholder hashes; its result is discarded.
    """
    requested: list[int] = []

    def record(indexes: list[int]) -> Sequence[bytes]:
        requested.extend(indexes)
        return [_PLACEHOLDER] * len(indexes)

    result = fn(record)
    if not requested:
        return result
    table = dict(zip(requested, await read_hashes(conn, requested), strict=True))

    def replay(indexes: list[int]) -> Sequence[bytes]:
        try:
            return [table[i] for i in indexes]
        except KeyError as exc:
            raise HashStoreError(f"hash reader asked for unexpected index {exc.args[0]}") from exc

    return fn(replay)


async def next_index(conn: asyncpg.Connection, lock_key: int) -> tuple[int, datetime]:
    """Take the append lock and the next leaf index, in one round trip; return it and the transaction time.

    The transaction-level advisory lock ``lock_key`` orders appenders; the row update on ``log_head`` hands
    out the index and, being a row lock, makes a stale snapshot fail with a serialization error instead of
    reusing an index. Both are held until the caller's transaction ends, so indexes commit in order.
    """
    row = await conn.fetchrow(
        """WITH append_lock AS (SELECT pg_advisory_xact_lock($1))
           UPDATE log_head SET size = size + 1 FROM append_lock
           RETURNING size - 1 AS idx, now() AS at""",
        lock_key,
    )
    assert row is not None, "migration 0003 inserts the log_head row"
    return row["idx"], row["at"]


async def insert_entry(
    conn: asyncpg.Connection,
    index: int,
    leaf: bytes,
    kind: str,
    subject: uuid.UUID | None,
    hashes: Sequence[bytes],
    first_hash_index: int,
    notify_channel: str,
) -> None:
    """Insert leaf ``index`` and the hashes it completes (stored from ``first_hash_index`` on), and
    ``NOTIFY notify_channel`` with the index, in one statement."""
    await conn.execute(
        """WITH e AS (INSERT INTO log_entries (idx, leaf, kind, subject) VALUES ($1, $2, $3, $4)),
                h AS (INSERT INTO log_hashes (idx, hash)
                      SELECT $5::bigint + n - 1, h FROM unnest($6::bytea[]) WITH ORDINALITY AS t(h, n))
           SELECT pg_notify($7, $1::text)""",
        index,
        leaf,
        kind,
        subject,
        first_hash_index,
        list(hashes),
        notify_channel,
    )


def _entry(row: asyncpg.Record) -> LogEntry:
    return LogEntry(
        index=row["idx"],
        leaf=bytes(row["leaf"]),
        kind=row["kind"],
        subject=row["subject"],
        created_at=row["created_at"],
    )


async def get_entry(conn: asyncpg.Connection, index: int, size: int) -> LogEntry:
    """Return leaf ``index`` of the tree of ``size`` leaves. Raises ``NotFound`` outside the tree."""
    if not 0 <= index < size:
        raise errors.NotFound(
            f"no log entry {index}: the tree has {size} leaves",
            code="log_entry_not_found",
            details={"index": index, "tree_size": size},
        )
    row = await conn.fetchrow(
        "SELECT idx, leaf, kind, subject, created_at FROM log_entries WHERE idx = $1", index
    )
    if row is None:
        raise HashStoreError(f"log entry {index} is missing inside a tree of {size} leaves")
    return _entry(row)


async def entries_in_range(conn: asyncpg.Connection, start: int, end: int) -> list[bytes]:
    """Return the leaf bytes of entries ``[start, end)`` in order. Raises ``HashStoreError`` on a gap."""
    rows = await conn.fetch(
        "SELECT idx, leaf FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx", start, end
    )
    if len(rows) != end - start:
        raise HashStoreError(f"log entries missing in [{start}, {end}): found {len(rows)}")
    return [bytes(r["leaf"]) for r in rows]


async def find_leaf(conn: asyncpg.Connection, subject: uuid.UUID, kind: str) -> LogEntry | None:
    """Return the first leaf of ``kind`` about ``subject`` (e.g. an avatar's registration), or ``None``."""
    row = await conn.fetchrow(
        """SELECT idx, leaf, kind, subject, created_at FROM log_entries
           WHERE subject = $1 AND kind = $2 ORDER BY idx LIMIT 1""",
        subject,
        kind,
    )
    return None if row is None else _entry(row)


async def root_at(conn: asyncpg.Connection, size: int) -> bytes:
    """Return the RFC 6962 root of the first ``size`` leaves (``size`` must not exceed the tree)."""
    return await with_hashes(conn, lambda read: tree_hash(size, read))


async def inclusion_proof(conn: asyncpg.Connection, index: int, size: int) -> list[bytes]:
    """Return the RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

    Raises ``TreeRangeError`` unless ``0 <= index < size``; the caller checks ``size`` against the tree.
    """
    return await with_hashes(conn, lambda read: prove_record(size, index, read))


async def consistency_proof(conn: asyncpg.Connection, old_size: int, new_size: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof from ``old_size`` to ``new_size`` leaves.

    Raises ``TreeRangeError`` unless ``0 <= old_size <= new_size``; the caller checks ``new_size``.
    """
    return await with_hashes(conn, lambda read: prove_tree(new_size, old_size, read))


async def tile_data(conn: asyncpg.Connection, tile: Tile, size: int) -> bytes:
    """Return the bytes of a hash tile or entry bundle of the tree of ``size`` leaves (C2SP tlog-tiles).

    Raises ``NotFound`` if the tile is not (yet) in the tree.
    """
    if not tile_in_tree(tile, size):
        raise errors.NotFound(
            f"tile not in the tree of {size} leaves", code="tile_not_found", details={"tree_size": size}
        )
    if tile.is_entries:
        start = tile.index << tile.height
        return encode_entry_bundle(await entries_in_range(conn, start, start + tile.width))
    return await with_hashes(conn, lambda read: read_tile_data(tile, read))


async def entry_bundle(conn: asyncpg.Connection, tile: Tile) -> bytes:
    """Return an entry bundle's bytes without a tree-size check (used by offline tools and tests)."""
    start = tile.index << tile.height
    return encode_entry_bundle(await entries_in_range(conn, start, start + tile.width))


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    return StoredCheckpoint(
        id=row["id"],
        tree_size=row["tree_size"],
        root_hash=bytes(row["root_hash"]),
        key_id=row["key_id"],
        note=bytes(row["note"]),
        signed_at=row["signed_at"],
    )


async def published_size(conn: asyncpg.Connection) -> int:
    """Return the size of the largest signed checkpoint (0 before the first): the tree the log has reached,
    as far as proofs, entries and tiles are concerned."""
    size = await conn.fetchval("SELECT coalesce(max(tree_size), 0) FROM log_checkpoints")
    return int(size)


async def latest_checkpoint(conn: asyncpg.Connection) -> StoredCheckpoint | None:
    """Return the checkpoint of the largest tree (the newest if several keys signed it), or ``None``."""
    row = await conn.fetchrow(
        """SELECT id, tree_size, root_hash, key_id, note, signed_at FROM log_checkpoints
           ORDER BY tree_size DESC, id DESC LIMIT 1"""
    )
    return None if row is None else _checkpoint(row)


async def latest_checkpoint_by_key(conn: asyncpg.Connection, key_id: str) -> StoredCheckpoint | None:
    """Return the largest checkpoint signed by ``key_id``, or ``None``."""
    row = await conn.fetchrow(
        """SELECT id, tree_size, root_hash, key_id, note, signed_at FROM log_checkpoints
           WHERE key_id = $1 ORDER BY tree_size DESC, id DESC LIMIT 1""",
        key_id,
    )
    return None if row is None else _checkpoint(row)


async def insert_checkpoint(
    conn: asyncpg.Connection, tree_size: int, root_hash: bytes, key_id: str, note: bytes
) -> StoredCheckpoint:
    """Store a signed checkpoint. Raises ``Conflict`` if this key already signed this tree size."""
    try:
        row = await conn.fetchrow(
            """INSERT INTO log_checkpoints (tree_size, root_hash, key_id, note) VALUES ($1, $2, $3, $4)
               RETURNING id, tree_size, root_hash, key_id, note, signed_at""",
            tree_size,
            root_hash,
            key_id,
            note,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "log_checkpoints_size_key":
            raise errors.Conflict(
                f"a checkpoint of size {tree_size} by key {key_id} exists", code="checkpoint_exists"
            ) from exc
        raise
    assert row is not None
    return _checkpoint(row)
