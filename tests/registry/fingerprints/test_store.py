"""The likeness store against a real PostgreSQL: the lock, the change feed and its NOTIFY, index snapshots,
allow-lists, flood counters and quarantine."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from registry import errors
from registry.avatars import store as avatar_store
from registry.avatars.trigrams import trigrams
from registry.db import init_connection
from registry.fingerprints import store
from registry.operators import store as operator_store


def new_image(augments: int = 3) -> avatar_store.NewImage:
    variants = os.urandom(256)
    return avatar_store.NewImage(
        sha256=os.urandom(32),
        pdq=variants[:32],
        variants=variants,
        augments=os.urandom(32 * augments),
        quality=90,
        width=64,
        height=48,
        format="PNG",
        content=b"\x89PNG not really",
    )


async def make_avatar(
    conn: asyncpg.Connection, images: int = 1
) -> tuple[avatar_store.Avatar, list[avatar_store.AvatarImage]]:
    op = await operator_store.create_operator(conn, "Store Tester")
    avatar = await avatar_store.insert_avatar(
        conn,
        owner_operator_id=op.id,
        name="Store Test",
        name_trigrams=trigrams("Store Test"),
        status="active",
    )
    stored = await avatar_store.insert_images(conn, avatar.id, [new_image() for _ in range(images)])
    return avatar, stored


async def test_the_lock_is_transaction_level_and_exclusive(conn: asyncpg.Connection, dsn: str) -> None:
    await store.take_likeness_lock(conn)
    other = await asyncpg.connect(dsn)
    try:
        with pytest.raises(RuntimeError, match="inside a transaction"):
            await store.take_likeness_lock(other)
        async with other.transaction():
            assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", store.LIKENESS_LOCK) is False
    finally:
        await other.close()


async def test_changes_are_sequenced_and_read_back_in_order(conn: asyncpg.Connection) -> None:
    avatar, _ = await make_avatar(conn)
    start = await store.current_seq(conn)
    seqs = [
        await store.record_change(conn, avatar.id, kind) for kind in ("registered", "status", "allowlist")
    ]
    assert seqs == sorted(seqs) and seqs[0] > start
    changes = await store.changes_since(conn, start)
    assert [(c.seq, c.kind) for c in changes] == list(
        zip(seqs, ["registered", "status", "allowlist"], strict=True)
    )
    assert [c.seq for c in await store.changes_since(conn, start, limit=2)] == seqs[:2]
    assert await store.current_seq(conn) == seqs[-1]


async def test_a_change_is_announced_only_when_it_commits(dsn: str) -> None:
    writer = await asyncpg.connect(dsn)
    listener = await asyncpg.connect(dsn)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(store.CHANGES_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        await init_connection(writer)
        async with writer.transaction():
            avatar, _ = await make_avatar(writer)
            seq = await store.record_change(writer, avatar.id, "registered")
            await asyncio.sleep(0.2)
            assert heard.empty(), "announced before commit"
        async with asyncio.timeout(5):
            assert await heard.get() == str(seq)
        tx = writer.transaction()
        await tx.start()
        rolled_back = await store.record_change(writer, avatar.id, "status")
        await tx.rollback()
        await asyncio.sleep(0.2)
        assert heard.empty(), f"rolled-back change {rolled_back} was announced"
    finally:
        await listener.close()
        await writer.close()


async def test_snapshots_hold_live_images_with_all_their_hashes(conn: asyncpg.Connection) -> None:
    avatar, images = await make_avatar(conn, images=2)
    await avatar_store.remove_image(conn, avatar.id, images[0].sha256)
    entry = await store.add_allow(conn, avatar.id, os.urandom(32), None, "fan art")
    (snap,) = await store.load_snapshots(conn, [avatar.id, uuid.uuid4()])
    assert snap.avatar_id == avatar.id and snap.status == "active"
    ((ref, hashes),) = snap.images
    assert ref.image_id == images[1].id and ref.sha256 == images[1].sha256 and not ref.quarantined
    assert len(hashes) == 11 * 32 and hashes[:32] == images[1].pdq
    assert snap.allow == (entry.pdq,)


async def test_load_all_reads_one_consistent_snapshot(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            avatar, _ = await make_avatar(conn, images=2)
            await store.record_change(conn, avatar.id, "registered")
        seq, everything = await store.load_all(conn)
        assert seq == await store.current_seq(conn) > 0
        (mine,) = [s for s in everything if s.avatar_id == avatar.id]
        assert len(mine.images) == 2
        with pytest.raises(asyncpg.InterfaceError):  # needs its own transaction, not the caller's
            async with conn.transaction():
                await store.load_all(conn)
    finally:
        await conn.close()


async def test_allow_list_entries_are_unique_per_avatar(conn: asyncpg.Connection) -> None:
    avatar, _ = await make_avatar(conn)
    pdq = os.urandom(32)
    first = await store.add_allow(conn, avatar.id, pdq, os.urandom(32), "licence 1")
    with pytest.raises(errors.Conflict) as info:
        async with conn.transaction():
            await store.add_allow(conn, avatar.id, pdq, None, "again")
    assert info.value.code == "allowlist_duplicate"
    assert [e.id for e in await store.list_allow(conn, avatar.id)] == [first.id]
    await store.delete_allow(conn, avatar.id, first.id)
    with pytest.raises(errors.NotFound):
        await store.delete_allow(conn, avatar.id, first.id)


async def test_flood_counters_count_distinct_uploads_within_the_window(conn: asyncpg.Connection) -> None:
    _, (image,) = await make_avatar(conn)
    upload_a, upload_b = os.urandom(32), os.urandom(32)
    assert await store.record_hits(conn, [image.id], upload_a, 60) == {image.id: 1}
    assert await store.record_hits(conn, [image.id], upload_a, 60) == {image.id: 1}
    assert await store.record_hits(conn, [image.id], upload_b, 60) == {image.id: 2}
    # Hits older than the window no longer count (and are dropped).
    await conn.execute(
        "UPDATE match_hits SET at = now() - interval '2 minutes' WHERE upload_sha256 = $1", upload_a
    )
    assert await store.record_hits(conn, [image.id], upload_b, 60) == {image.id: 1}
    assert await conn.fetchval("SELECT count(*) FROM match_hits WHERE image_id = $1", image.id) == 1
    assert await store.record_hits(conn, [], upload_b, 60) == {}


async def test_quarantine_happens_once_and_release_resets_the_counter(conn: asyncpg.Connection) -> None:
    avatar, (image,) = await make_avatar(conn)
    await store.record_hits(conn, [image.id], os.urandom(32), 60)
    assert await store.quarantine_images(conn, [image.id]) == [(image.id, avatar.id, image.sha256)]
    assert await store.quarantine_images(conn, [image.id]) == []
    (snap,) = await store.load_snapshots(conn, [avatar.id])
    assert snap.images[0][0].quarantined
    await store.release_quarantine(conn, image.id)
    (snap,) = await store.load_snapshots(conn, [avatar.id])
    assert not snap.images[0][0].quarantined
    assert await conn.fetchval("SELECT count(*) FROM match_hits WHERE image_id = $1", image.id) == 0


async def test_match_disable_is_stored_and_cleared(conn: asyncpg.Connection) -> None:
    avatar, _ = await make_avatar(conn)
    until = datetime.now(UTC) + timedelta(hours=2)
    await store.set_match_disable(conn, avatar.id, until, "storm")
    (snap,) = await store.load_snapshots(conn, [avatar.id])
    assert snap.match_disabled_until == until
    await store.clear_match_disable(conn, avatar.id)
    (snap,) = await store.load_snapshots(conn, [avatar.id])
    assert snap.match_disabled_until is None
