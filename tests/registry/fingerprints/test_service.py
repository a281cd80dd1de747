"""The likeness index: exactly what a brute-force scan finds (with dispositions, disable, owners), kept exact
under incremental updates; and the service that loads it, catches it up and reports readiness."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from registry import errors
from registry.avatars import store as avatar_store
from registry.avatars.service import fingerprint_upload
from registry.avatars.trigrams import trigrams
from registry.config import Settings
from registry.fingerprints import store
from registry.fingerprints.phash import AUGMENTATION_NAMES, DIHEDRAL_NAMES, hamming, pdq_of_image
from registry.fingerprints.service import (
    SLOT_NAMES,
    SLOTS,
    FingerprintService,
    LikenessIndex,
    LikenessPolicy,
    RecordCache,
)
from registry.operators import store as operator_store
from tests import imagegen
from tests.functional.avatar_helpers import encode

NOW = datetime(2030, 1, 1, tzinfo=UTC)
THRESHOLD = 31


def flip_bits(bits: bytes, n: int, rng: random.Random) -> bytes:
    value = int.from_bytes(bits, "big")
    for b in rng.sample(range(256), n):
        value ^= 1 << b
    return value.to_bytes(32, "big")


class World:
    """Random avatars and images, kept as plain data so a brute-force scan can be the oracle."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.snaps: dict[uuid.UUID, store.AvatarSnapshot] = {}
        self.next_image = 1

    def snapshot(
        self,
        avatar_id: uuid.UUID | None = None,
        *,
        images: int = 2,
        owner: uuid.UUID | None = None,
        status: str = "active",
        disabled_until: datetime | None = None,
        allow: tuple[bytes, ...] = (),
        hashes: list[bytes] | None = None,
        quarantined: bool = False,
    ) -> store.AvatarSnapshot:
        avatar_id = avatar_id or uuid.UUID(int=self.rng.getrandbits(128))
        refs = []
        for i in range(images):
            slots = hashes if hashes is not None and i == 0 else [self.rng.randbytes(32) for _ in range(15)]
            ref = store.RefImage(self.next_image, avatar_id, self.rng.randbytes(32), 90, quarantined)
            self.next_image += 1
            refs.append((ref, b"".join(slots)))
        snap = store.AvatarSnapshot(
            avatar_id=avatar_id,
            owner_operator_id=owner or uuid.UUID(int=self.rng.getrandbits(128)),
            status=status,
            match_disabled_until=disabled_until,
            images=tuple(refs),
            allow=allow,
        )
        self.snaps[avatar_id] = snap
        return snap

    def brute_force(self, queries: list[bytes], threshold: int, now: datetime) -> dict[int, tuple[int, str]]:
        """image id -> (best distance, disposition), by scanning every slot of every image."""
        out: dict[int, tuple[int, str]] = {}
        for snap in self.snaps.values():
            if snap.match_disabled_until is not None and snap.match_disabled_until > now:
                continue
            for ref, hashes in snap.images:
                slots = [hashes[k : k + 32] for k in range(0, len(hashes), 32)]
                best = min(hamming(q, s) for q in queries for s in slots)
                if best <= threshold:
                    allowed = any(hamming(q, a) <= threshold for q in queries for a in snap.allow)
                    out[ref.image_id] = (
                        best,
                        "review" if ref.quarantined else "allowed" if allowed else "match",
                    )
        return out


def found(
    index: LikenessIndex, queries: list[bytes], threshold: int = THRESHOLD
) -> dict[int, tuple[int, str]]:
    return {h.image_id: (h.distance, h.disposition) for h in index.search(queries, threshold, NOW)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_search_equals_brute_force_with_planted_neighbours(seed: int) -> None:
    world = World(seed)
    rng = world.rng
    targets = []
    for n in range(150):
        base = rng.randbytes(32)
        slots = [base] + [rng.randbytes(32) for _ in range(14)]
        snap = world.snapshot(
            images=rng.randint(1, 3),
            hashes=slots,
            status=rng.choice(["active", "held_for_review", "suspended", "revoked"]),
            disabled_until=NOW + timedelta(hours=1)
            if n % 17 == 0
            else NOW - timedelta(hours=1)
            if n % 13 == 0
            else None,
            quarantined=n % 11 == 0,
        )
        targets.append(base)
        if n % 7 == 0:
            world.snaps[snap.avatar_id] = snap = store.AvatarSnapshot(
                **{**{f: getattr(snap, f) for f in snap.__slots__}, "allow": (flip_bits(base, 10, rng),)}
            )
    index = LikenessIndex()
    index.load(world.snaps.values())
    assert len(index) == 15 * index.image_count
    for base in targets[:60]:
        for distance in (30, 31, 32):
            queries = [flip_bits(base, distance, rng), rng.randbytes(32)]
            assert found(index, queries) == world.brute_force(queries, THRESHOLD, NOW)
    # Wider thresholds too (past the multi-index range, the exact scan path).
    queries = [flip_bits(targets[0], 40, rng)]
    assert found(index, queries, 45) == world.brute_force(queries, 45, NOW)


def test_incremental_updates_stay_exact() -> None:
    world = World(9)
    rng = world.rng
    index = LikenessIndex()
    index.load([world.snapshot(images=2) for _ in range(40)])
    for step in range(120):
        avatar_id = rng.choice(list(world.snaps))
        old = world.snaps[avatar_id]
        action = step % 4
        if action == 0:  # lose an image, gain another
            keep = old.images[1:]
            snap = world.snapshot(avatar_id, images=1, owner=old.owner_operator_id)
            snap = store.AvatarSnapshot(
                **{**{f: getattr(snap, f) for f in snap.__slots__}, "images": keep + snap.images}
            )
        elif action == 1:  # status and disable change, images unchanged
            snap = store.AvatarSnapshot(
                **{
                    **{f: getattr(old, f) for f in old.__slots__},
                    "status": rng.choice(["active", "suspended"]),
                    "match_disabled_until": rng.choice([None, NOW + timedelta(minutes=5)]),
                }
            )
        elif action == 2:  # a brand-new avatar
            snap = world.snapshot(images=3)
        else:  # quarantine flips on an existing image
            ((ref, hashes), *rest) = old.images
            flipped = store.RefImage(
                ref.image_id, ref.avatar_id, ref.sha256, ref.quality, not ref.quarantined
            )
            snap = store.AvatarSnapshot(
                **{**{f: getattr(old, f) for f in old.__slots__}, "images": ((flipped, hashes), *rest)}
            )
        world.snaps[snap.avatar_id] = snap
        index.apply(snap)
        if step % 10 == 9:
            probe = rng.choice(list(world.snaps.values()))
            if probe.images:
                slot = probe.images[0][1][32 * rng.randrange(15) :][:32]
                queries = [flip_bits(slot, rng.choice([0, 12, 31, 32]), rng)]
                assert found(index, queries) == world.brute_force(queries, THRESHOLD, NOW)
    assert index.image_count == sum(len(s.images) for s in world.snaps.values())
    gone = next(iter(world.snaps))
    index.drop(gone)
    del world.snaps[gone]
    assert index.avatar_count == len(world.snaps)
    assert len(index) == 15 * index.image_count


def test_conflicts_leave_out_the_owner_inactive_and_allowed_avatars() -> None:
    world = World(4)
    me, them = uuid.uuid4(), uuid.uuid4()
    base = world.rng.randbytes(32)
    slots = [base] * 15
    mine = world.snapshot(owner=me, hashes=slots, images=1)
    active = world.snapshot(owner=them, hashes=slots, images=1)
    held = world.snapshot(owner=them, hashes=slots, images=1, status="held_for_review")
    world.snapshot(owner=them, hashes=slots, images=1, status="suspended")
    world.snapshot(owner=them, hashes=slots, images=1, allow=(base,))
    quarantined = world.snapshot(owner=them, hashes=slots, images=1, quarantined=True)
    index = LikenessIndex()
    index.load(world.snaps.values())
    hits = index.conflicts([base], THRESHOLD, me, NOW)
    assert {h.avatar_id for h in hits} == {active.avatar_id, held.avatar_id, quarantined.avatar_id}
    assert {h.avatar_id: h.disposition for h in hits}[quarantined.avatar_id] == "review"
    assert mine.avatar_id in {h.avatar_id for h in index.search([base], THRESHOLD, NOW)}
    hit = hits[0]
    assert hit.distance == 0 and hit.query == 0 and SLOT_NAMES[hit.variant] == "original"


def test_hashes_must_be_whole_slots() -> None:
    world = World(5)
    snap = world.snapshot(images=1)
    ((ref, _),) = snap.images
    bad = store.AvatarSnapshot(
        **{**{f: getattr(snap, f) for f in snap.__slots__}, "images": ((ref, b"x" * 33),)}
    )
    with pytest.raises(ValueError, match="hashes"):
        LikenessIndex().apply(bad)
    too_many = store.AvatarSnapshot(
        **{**{f: getattr(snap, f) for f in snap.__slots__}, "images": ((ref, bytes(32 * (SLOTS + 1))),)}
    )
    with pytest.raises(ValueError):
        LikenessIndex().load([too_many])


@pytest.mark.parametrize("seed", [31337, 31338])
def test_reference_slots_catch_crops_and_rotations_plain_pdq_misses(seed: int) -> None:
    picture = imagegen.photo_like(seed, (1024, 768))
    ref = fingerprint_upload("image[0]", None, encode(picture), min_quality=50)
    assert len(ref.hashes) == len(SLOT_NAMES) == len(DIHEDRAL_NAMES) + len(AUGMENTATION_NAMES)
    for copy in (imagegen.crop(picture, 0.05), imagegen.rotate(picture, 3.0), imagegen.rotate(picture, -3.0)):
        pdq = pdq_of_image(copy)
        assert hamming(pdq, ref.image.pdq) > THRESHOLD  # PDQ alone misses it ...
        assert min(hamming(pdq, s) for s in ref.hashes) <= THRESHOLD  # ... the augmentation slots catch it
    unrelated = pdq_of_image(imagegen.photo_like(seed + 100))
    assert min(hamming(unrelated, s) for s in ref.hashes) > 2 * THRESHOLD


def test_policy_bounds() -> None:
    with pytest.raises(ValueError):
        LikenessPolicy(threshold=70)
    with pytest.raises(ValueError):
        LikenessPolicy(flood_limit=0)

    policy = LikenessPolicy.from_settings(Settings(likeness_threshold=20, flood_limit=5))
    assert (policy.threshold, policy.flood_limit, policy.flood_window_s) == (20, 5, 3600.0)


# -- the service, against PostgreSQL -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def commit_avatar(dsn: str, pdq: bytes) -> uuid.UUID:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            op = await operator_store.create_operator(conn, "Service Tester")
            avatar = await avatar_store.insert_avatar(
                conn, owner_operator_id=op.id, name="Svc", name_trigrams=trigrams("Svc"), status="active"
            )
            image = avatar_store.NewImage(
                sha256=os.urandom(32),
                pdq=pdq,
                variants=pdq + os.urandom(224),
                augments=os.urandom(96),
                quality=90,
                width=8,
                height=8,
                format="PNG",
                content=b"png",
            )
            await avatar_store.insert_images(conn, avatar.id, [image])
            await store.record_change(conn, avatar.id, "registered")
        return avatar.id
    finally:
        await conn.close()


async def test_service_is_not_ready_until_loaded_then_goes_stale(pool: asyncpg.Pool) -> None:
    clock = Clock()
    fps = FingerprintService(LikenessPolicy(stale_after_s=30.0), clock=clock)
    with pytest.raises(errors.NotReady) as info:
        fps.require_ready()
    assert info.value.code == "index_not_ready"
    assert fps.readiness()[0] is False
    await fps.load(pool)
    ok, detail = fps.readiness()
    assert ok and detail["loaded"] and detail["staleness_s"] == 0.0 and detail["seq"] == fps.seq
    clock.now += 31
    ok, detail = fps.readiness()
    assert not ok and detail["staleness_s"] == 31.0
    await fps.refresh(pool)
    assert fps.readiness()[0] is True


async def test_catch_up_applies_committed_changes(pool: asyncpg.Pool, dsn: str) -> None:
    fps = FingerprintService(LikenessPolicy())
    await fps.load(pool)
    pdq = os.urandom(32)
    assert fps.index.search([pdq], THRESHOLD, NOW) == []
    avatar_id = await commit_avatar(dsn, pdq)
    async with pool.acquire() as conn:
        assert await fps.catch_up(conn) >= 1
        assert await fps.catch_up(conn) == 0
    (hit,) = fps.index.search([pdq], THRESHOLD, NOW)
    assert hit.avatar_id == avatar_id and hit.distance == 0


async def test_listening_service_follows_changes_without_polling(pool: asyncpg.Pool, dsn: str) -> None:
    fps = FingerprintService(LikenessPolicy(poll_interval_s=600.0))
    await fps.start(pool, dsn)
    try:
        assert fps.loaded and fps.listening
        pdq = os.urandom(32)
        avatar_id = await commit_avatar(dsn, pdq)
        async with asyncio.timeout(5):
            while True:
                if fps.index.search([pdq], THRESHOLD, NOW):
                    break
                await asyncio.sleep(0.02)
        assert fps.index.search([pdq], THRESHOLD, NOW)[0].avatar_id == avatar_id
    finally:
        await fps.stop()
    assert not fps.listening


def test_record_cache_never_keeps_a_record_read_before_a_change() -> None:
    cache = RecordCache(max_entries=2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    before = cache.generation
    cache.invalidate([a])  # a change is applied while the old record is being read ...
    assert cache.put(a, b"old", before) is False  # ... so that read is not cached
    assert cache.get(a) is None
    assert cache.put(a, b"new", cache.generation) and cache.get(a) == b"new"
    cache.invalidate([a])
    assert cache.get(a) is None
    for key in (a, b, c):  # least recently used goes first
        cache.put(key, key.bytes, cache.generation)
    assert len(cache) == 2 and cache.get(a) is None and cache.get(c) == c.bytes
    cache.invalidate(None)
    assert len(cache) == 0


async def test_service_serves_records_only_while_it_hears_every_change(pool: asyncpg.Pool, dsn: str) -> None:
    fps = FingerprintService(LikenessPolicy(poll_interval_s=600.0))
    assert not fps.listening
    await fps.start(pool, dsn)
    try:
        assert fps.listening
        avatar_id = await commit_avatar(dsn, os.urandom(32))
        fps.records.put(avatar_id, b"stale", fps.records.generation)
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await store.record_change(conn, avatar_id, "status")
        finally:
            await conn.close()
        async with asyncio.timeout(5):
            while True:
                if fps.records.get(avatar_id) is None:
                    break
                await asyncio.sleep(0.02)
    finally:
        await fps.stop()
    assert not fps.listening
