"""The log in PostgreSQL: appends (gapless, canonical, in the caller's transaction), stored hashes that agree
with a naive recomputation, proofs and tiles from the store, and the checkpoint signer's guarantees."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import re
import uuid

import asyncpg
import pytest
import rfc8785

from registry.translog import store
from registry.translog.checkpoint import Checkpoint, format_checkpoint, open_checkpoint
from registry.translog.keys import LogKeys, parse_key_file
from registry.translog.leaves import LeafError
from registry.translog.log import append_leaf
from registry.translog.merkle import leaf_hash, root_hash, verify_consistency, verify_inclusion
from registry.translog.note import generate_signer, sign_note
from registry.translog.signer import CheckpointSigner, LogInconsistent, sign_if_grown
from registry.translog.tiles import Tile, decode_entry_bundle, hash_from_tile, new_tiles, tile_in_tree

ORIGIN = "test.example/log"


def leaf(i: int = 0) -> dict[str, object]:
    return {
        "kind": "test.appended",
        "avatar_id": str(uuid.uuid4()),
        "n": i,
        "images": [hashlib.sha256(str(i).encode()).hexdigest()],
    }


@pytest.fixture(scope="module")
def keys() -> LogKeys:
    return LogKeys(generate_signer(ORIGIN))


async def all_leaf_hashes(conn: asyncpg.Connection, size: int) -> list[bytes]:
    return [leaf_hash(data) for data in await store.entries_in_range(conn, 0, size)]


async def test_append_returns_the_next_index_and_canonical_bytes(conn: asyncpg.Connection) -> None:
    before = await store.tree_size(conn)
    first, second = leaf(1), leaf(2)
    i = await append_leaf(conn, first)
    j = await append_leaf(conn, second)
    assert (i, j) == (before, before + 1)
    assert await store.tree_size(conn) == before + 2
    entry = await store.get_entry(conn, i, before + 2)
    decoded = json.loads(entry.leaf)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", decoded["at"])
    assert decoded == {**first, "v": 1, "at": decoded["at"]}
    # The stored bytes are exactly RFC 8785 of the object, so anyone can recompute the leaf hash.
    assert entry.leaf == rfc8785.dumps(decoded)
    assert entry.kind == "test.appended" and entry.subject == uuid.UUID(str(first["avatar_id"]))


async def test_stored_hashes_agree_with_a_naive_root_at_every_size(conn: asyncpg.Connection) -> None:
    before = await store.tree_size(conn)
    for i in range(37):
        await append_leaf(conn, leaf(i))
    size = before + 37
    hashes = await all_leaf_hashes(conn, size)
    for n in {1, 2, 3, before + 1, before + 16, before + 17, size - 1, size}:
        if n >= 1:
            assert await store.root_at(conn, n) == root_hash(hashes[:n]), n


async def test_inclusion_and_consistency_proofs_from_the_store_verify(conn: asyncpg.Connection) -> None:
    before = await store.tree_size(conn)
    for i in range(20):
        await append_leaf(conn, leaf(i))
    size = before + 20
    hashes = await all_leaf_hashes(conn, size)
    root = root_hash(hashes)
    for index in {0, size // 2, size - 2, size - 1}:
        proof = await store.inclusion_proof(conn, index, size)
        verify_inclusion(index, size, hashes[index], proof, root)
    for old in {1, before + 1, size - 7, size}:
        proof = await store.consistency_proof(conn, old, size)
        verify_consistency(old, size, proof, root_hash(hashes[:old]), root)


async def test_tiles_from_the_store_hold_the_tree_hashes(conn: asyncpg.Connection) -> None:
    before = await store.tree_size(conn)
    for i in range(5):
        await append_leaf(conn, leaf(i))
    size = before + 5
    hashes = await all_leaf_hashes(conn, size)
    level0 = [t for t in new_tiles(0, size) if t.level == 0]
    for tile in level0:
        data = await store.tile_data(conn, tile, size)
        assert len(data) == 32 * tile.width
        start = tile.index * 256
        assert [data[k : k + 32] for k in range(0, len(data), 32)] == hashes[start : start + tile.width]
        assert hash_from_tile(tile, data, 2 * start - start.bit_count()) == hashes[start]
        bundle = await store.tile_data(conn, Tile(level=-1, index=tile.index, width=tile.width), size)
        entries = decode_entry_bundle(bundle, tile.width)
        assert [leaf_hash(e) for e in entries] == hashes[start : start + tile.width]


async def test_a_tile_outside_the_tree_is_not_found(conn: asyncpg.Connection) -> None:
    size = await store.tree_size(conn)
    tile = Tile(level=0, index=size // 256, width=min(255, size % 256 + 1))
    assert not tile_in_tree(tile, size)
    with pytest.raises(Exception, match="tile not in the tree"):
        await store.tile_data(conn, tile, size)


async def test_a_rolled_back_append_leaves_no_gap(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as c:
        tx = c.transaction()
        await tx.start()
        lost = await append_leaf(c, leaf())
        await tx.rollback()
        async with c.transaction():
            kept = await append_leaf(c, leaf())
        assert kept == lost
        assert await store.tree_size(c) == kept + 1
        row = await c.fetchrow("SELECT count(*) AS n, max(idx) AS m FROM log_entries")
        assert row["n"] == row["m"] + 1 == await store.tree_size(c)


async def test_concurrent_appends_are_sequenced_without_gaps(pool: asyncpg.Pool) -> None:
    async def worker(k: int) -> list[int]:
        out = []
        for i in range(5):
            async with pool.acquire() as c, c.transaction():
                out.append(await append_leaf(c, leaf(k * 10 + i)))
        return out

    results = await asyncio.gather(*(worker(k) for k in range(8)))
    indexes = sorted(i for r in results for i in r)
    assert indexes == list(range(indexes[0], indexes[0] + 40))
    async with pool.acquire() as c:
        size = await store.tree_size(c)
        assert await store.root_at(c, size) == root_hash(await all_leaf_hashes(c, size))


async def test_append_needs_the_callers_transaction(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as c:
        before = await store.tree_size(c)
        with pytest.raises(LeafError, match="inside the transaction"):
            await append_leaf(c, leaf())
        assert await store.tree_size(c) == before


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"kind": "avatar.registered", "legal_name": "Jane Doe"}, "names personal data"),
        ({"kind": "avatar.registered", "id_number_sha256": "ab" * 32}, "names personal data"),
        ({"kind": "avatar.registered", "name": "Miku"}, "names personal data"),
        ({"kind": "operator.identity_revoked", "reason": "fraud"}, "names personal data"),
        ({"kind": "avatar.registered", "owner_email": "a@b.c"}, "names personal data"),
        ({"kind": "avatar.registered", "meta": {"a": "b"}}, "got dict"),
        ({"kind": "avatar.registered", "pdq": [["ab"]]}, "got nested list"),
        ({"kind": "avatar.registered", "status": "held for review"}, "expected an id or digest"),
        ({"kind": "avatar.registered", "score": 0.5}, "got float"),
        ({"kind": "avatar.registered", "v": 2}, "written by the log"),
        ({"kind": "avatar.registered", "at": "now"}, "written by the log"),
        ({"kind": "Avatar.Registered"}, "dotted lowercase"),
        ({"avatar_id": str(uuid.uuid4())}, "dotted lowercase"),
        ({"kind": "avatar.registered", "Bad-Key": 1}, "invalid leaf key"),
        ({"kind": "avatar.registered", "n": 2**60}, "integer out of range"),
        ({f"k{i}": ["a" * 128] * 256 for i in range(3)} | {"kind": "x.y"}, "leaf too large"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_refused_leaves_change_nothing(
    conn: asyncpg.Connection, bad: dict[str, object], message: str
) -> None:
    before = await store.tree_size(conn)
    with pytest.raises(LeafError, match=message):
        await append_leaf(conn, bad)
    assert await store.tree_size(conn) == before


async def test_signer_signs_once_per_size_and_the_note_verifies(
    conn: asyncpg.Connection, keys: LogKeys
) -> None:
    await append_leaf(conn, leaf())
    size = await store.tree_size(conn)
    signed = await sign_if_grown(conn, keys)
    assert signed is not None and signed.tree_size == size
    checkpoint = open_checkpoint(signed.note, keys.verifier)
    assert checkpoint == Checkpoint(ORIGIN, size, await store.root_at(conn, size))
    assert await sign_if_grown(conn, keys) is None
    await append_leaf(conn, leaf())
    again = await sign_if_grown(conn, keys)
    assert again is not None and again.tree_size == size + 1
    assert (await store.latest_checkpoint(conn)) == again


async def test_a_rotated_key_signs_the_current_size_once_and_cosigners_sign_too(
    conn: asyncpg.Connection,
) -> None:
    old = generate_signer(ORIGIN)
    new = generate_signer(ORIGIN)
    await append_leaf(conn, leaf())
    first = await sign_if_grown(conn, LogKeys(old))
    assert first is not None
    rotated = parse_key_file(f"{new.key_string}\n# previous\n{old.key_string}\n", ORIGIN)
    second = await sign_if_grown(conn, rotated)
    assert second is not None and second.tree_size == first.tree_size
    # Both the old and the new key verify the rotated note; the old-key process does not sign again.
    assert open_checkpoint(second.note, old.verifier) == open_checkpoint(second.note, new.verifier)
    assert await sign_if_grown(conn, LogKeys(old)) is None
    assert await sign_if_grown(conn, rotated) is None


async def test_signer_refuses_a_tree_inconsistent_with_the_last_checkpoint(
    conn: asyncpg.Connection, keys: LogKeys
) -> None:
    await append_leaf(conn, leaf())
    size = await store.tree_size(conn)
    # Another key "signed" a different root for this size: the stored tree does not extend it.
    rogue = generate_signer(ORIGIN)
    fake_root = hashlib.sha256(b"split view").digest()
    note = sign_note(format_checkpoint(Checkpoint(ORIGIN, size, fake_root)), rogue)
    await store.insert_checkpoint(conn, size, fake_root, f"{rogue.key_id:08x}", note)
    await append_leaf(conn, leaf())
    with pytest.raises(LogInconsistent, match="not consistent with checkpoint"):
        await sign_if_grown(conn, keys)


async def test_published_size_follows_the_signed_checkpoints(conn: asyncpg.Connection, keys: LogKeys) -> None:
    await append_leaf(conn, leaf())
    await sign_if_grown(conn, keys)
    size = await store.tree_size(conn)
    assert await store.published_size(conn) == size
    await append_leaf(conn, leaf())
    assert await store.published_size(conn) == size
    with pytest.raises(Exception, match="no log entry"):
        await store.get_entry(conn, size, size)
    assert base64.b64encode((await store.get_entry(conn, size - 1, size)).leaf)


async def test_concurrent_signers_never_publish_inconsistent_checkpoints(pool: asyncpg.Pool) -> None:
    """Several "processes" sign while leaves arrive: sizes only grow, each signed once, all consistent."""
    keys = LogKeys(generate_signer(ORIGIN))
    stop = asyncio.Event()

    async def appender() -> None:
        for i in range(30):
            async with pool.acquire() as c, c.transaction():
                await append_leaf(c, leaf(i))
        stop.set()

    async def signer() -> None:
        while not stop.is_set():
            async with pool.acquire() as c:
                await sign_if_grown(c, keys)
            await asyncio.sleep(0)

    await asyncio.gather(appender(), signer(), signer(), signer())
    async with pool.acquire() as c:
        await sign_if_grown(c, keys)
        rows = await c.fetch(
            "SELECT tree_size, root_hash, note FROM log_checkpoints WHERE key_id = $1 ORDER BY id",
            keys.key_id,
        )
        sizes = [r["tree_size"] for r in rows]
        assert sizes == sorted(set(sizes)) and sizes[-1] == await store.tree_size(c)
        for old, new in itertools.pairwise(rows):
            proof = await store.consistency_proof(c, old["tree_size"], new["tree_size"])
            verify_consistency(
                old["tree_size"], new["tree_size"], proof, bytes(old["root_hash"]), bytes(new["root_hash"])
            )
            assert open_checkpoint(bytes(new["note"]), keys.verifier).size == new["tree_size"]


async def test_signer_loop_wakes_on_notify_and_survives_failed_rounds(pool: asyncpg.Pool) -> None:
    class Flaky(CheckpointSigner):
        calls = 0

        async def run_once(self) -> store.StoredCheckpoint | None:
            self.calls += 1
            if self.calls <= 2:
                raise OSError("database blip")
            return await super().run_once()

    # A long timer: only NOTIFY (or the first rounds) can make it sign quickly.
    signer = Flaky(pool, LogKeys(generate_signer(ORIGIN)), interval=30)
    signer.interval = 0.01  # retry the failed rounds quickly ...
    task = asyncio.create_task(signer.run())
    try:
        for _ in range(500):
            if signer.calls >= 3 and signer.failing == 0:
                break
            await asyncio.sleep(0.01)
        signer.interval = 30  # ... then rely on NOTIFY alone
        assert (signer.failures, signer.failing) == (2, 0)
        async with pool.acquire() as c, c.transaction():
            index = await append_leaf(c, leaf())
        for _ in range(300):
            if signer.last is not None and signer.last.tree_size > index:
                break
            await asyncio.sleep(0.01)
        assert signer.last is not None and signer.last.tree_size > index
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert signer._listener is None
