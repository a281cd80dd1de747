"""The per-process likeness index: what every registry process holds in memory to match images against the
registered avatars, and how it stays current.

- Each reference image is held as several PDQ hashes ("slots"): its 8 dihedral variants (rotations and
  flips, ``DIHEDRAL_NAMES``) and the augmentations of ``phash.augmented_pdqs`` (small rotations both ways and
  a centre crop, ``AUGMENTATION_NAMES``), which catch copies PDQ alone misses (a 5 % crop moves PDQ 28-48
  bits, a 3 degree rotation 40-56; against these slots nearly all land within 31). They are hashed on a
  copy at most ``AUGMENT_SIDE`` pixels a side: ~14 ms per 1024x1024 image instead of ~230 ms at full size.
- ``LikenessIndex`` (pure: no I/O, no clock) holds every slot of every live reference image in a
  ``MatchIndex`` (fingerprint id = image id * 16 + slot), plus what matching needs per avatar: owner,
  status, match disable, allow-list, and each image's quarantine flag. ``search`` is exact (the
  ``MatchIndex`` is) and labels each hit ``match``, ``allowed`` (the owner licensed it) or ``review``
  (a quarantined reference); ``conflicts`` narrows hits to what blocks another owner's registration.
- ``FingerprintService`` loads the index at start (in the background: until loaded, ``require_ready``
  raises ``NotReady`` ``index_not_ready`` and readiness says so), then follows the ``avatar_changes`` feed:
  woken by ``LISTEN avatar_changes`` on a dedicated connection, with a periodic poll as a safety net, it
  reloads each changed avatar and applies the difference (no rebuild). Readiness reports size and staleness.
- ``RecordCache`` keeps each avatar's serialised public record for ``GET /v1/avatars/{id}``; everything
  that record shows changes only with an ``avatar_changes`` row, so the same feed drops stale entries. It
  is used only while this process listens (otherwise a change could go unseen until the next poll).
- ``FingerprintService.match`` adds flood quarantine: each matched reference counts the distinct uploads
  that hit it; past ``flood_limit`` within ``flood_window_s`` the reference is quarantined (a review item is
  opened) and its matches are reported ``review`` instead of being acted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg
import numpy as np

from registry import audit, errors
from registry.avatars import store as avatar_store
from registry.config import Settings
from registry.fingerprints import store
from registry.fingerprints.match import MAX_THRESHOLD, MatchIndex
from registry.fingerprints.phash import (
    AUGMENTATION_NAMES,
    DEFAULT_THRESHOLD,
    DIHEDRAL_NAMES,
    MIN_QUALITY,
    PDQ_BYTES,
)

__all__ = [
    "AUGMENT_SIDE",
    "CONFLICT_STATUSES",
    "SLOTS",
    "SLOT_NAMES",
    "Disposition",
    "FingerprintService",
    "LikenessHit",
    "LikenessIndex",
    "LikenessPolicy",
    "RecordCache",
    "upload_digest",
]

_logger = logging.getLogger(__name__)

# Every slot's name, in the order a reference's hashes are stored: what the ``variant`` of a hit says matched.
SLOT_NAMES: Final = DIHEDRAL_NAMES + AUGMENTATION_NAMES
# Fingerprint ids leave room for this many slots per image.
SLOTS: Final = 16
# Augmentations are hashed on a copy at most this size. Measured on 33 generated pictures (docs/avatars.md):
# 256 px costs 7 ms per 1024x1024 image and misses 6 of the 33 uneven 5 % crops; 384 px costs 14 ms and
# misses 1; 512 px costs 28 ms and misses none; full size costs 230 ms. 3 degree rotations: no misses at all.
AUGMENT_SIDE: Final = 384
# Avatars whose likeness blocks another owner's registration; suspended and revoked ones do not.
CONFLICT_STATUSES: Final = frozenset({"active", "held_for_review"})

Disposition = Literal["match", "allowed", "review"]


@dataclass(frozen=True, slots=True)
class LikenessPolicy:
    """The numbers likeness protection runs on. Built from ``Settings`` by ``from_settings``."""

    # A new image conflicts with a reference within this distance (PDQ's operating point: <= 31 matches).
    threshold: int = DEFAULT_THRESHOLD
    # The widest threshold a match request may ask for (MatchIndex.MAX_THRESHOLD: a quarter of the bits).
    max_threshold: int = MAX_THRESHOLD
    # References and queries below this PDQ quality are "too unreliable to match on".
    min_quality: int = MIN_QUALITY
    # Flood quarantine: a reference matching more than this many distinct uploads within the window.
    flood_limit: int = 100
    flood_window_s: float = 3600.0
    # Reference images an avatar may hold in all (a registration brings 1-8).
    max_reference_images: int = 16
    # The change feed is polled this often even without a NOTIFY (a lost notification costs this much).
    poll_interval_s: float = 5.0
    # Readiness fails when the index has not been confirmed current for this long.
    stale_after_s: float = 30.0
    # Start-up waits this long for the initial load before serving (a large index keeps loading after).
    startup_wait_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= self.max_threshold <= MAX_THRESHOLD:
            raise ValueError(
                f"need 0 <= threshold <= max_threshold <= {MAX_THRESHOLD}, "
                f"got {self.threshold} and {self.max_threshold}"
            )
        if self.flood_limit < 1 or self.flood_window_s <= 0 or self.poll_interval_s <= 0:
            raise ValueError("flood_limit, flood_window_s and poll_interval_s must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> LikenessPolicy:
        """The policy from ``Settings``."""
        return cls(
            threshold=settings.likeness_threshold,
            flood_limit=settings.flood_limit,
            flood_window_s=settings.flood_window_s,
            max_reference_images=settings.max_reference_images,
        )


@dataclass(frozen=True, slots=True)
class LikenessHit:
    """One reference image within the threshold of a query: which, how far, and what to do about it."""

    avatar_id: uuid.UUID
    owner_operator_id: uuid.UUID
    status: str
    image_id: int
    image_sha256: bytes
    distance: int
    # Which of the query hashes matched (index into the queries given) and which reference slot
    # (``SLOT_NAMES``).
    query: int
    variant: int
    disposition: Disposition


@dataclass(slots=True)
class _Avatar:
    owner: uuid.UUID
    status: str
    disabled_until: datetime | None
    image_ids: frozenset[int]
    allow: tuple[int, ...]  # allow-listed hashes as ints, for a quick XOR


@dataclass(slots=True)
class LikenessIndex:
    """Reference fingerprints and the per-avatar facts matching needs (pure; see the module docstring)."""

    _index: MatchIndex = field(default_factory=MatchIndex)
    _avatars: dict[uuid.UUID, _Avatar] = field(default_factory=dict)
    _images: dict[int, store.RefImage] = field(default_factory=dict)

    def __len__(self) -> int:
        """Fingerprints held (8 per live reference image)."""
        return len(self._index)

    @property
    def image_count(self) -> int:
        return len(self._images)

    @property
    def avatar_count(self) -> int:
        return len(self._avatars)

    def memory_bytes(self) -> int:
        return self._index.memory_bytes()

    def load(self, snapshots: Iterable[store.AvatarSnapshot]) -> None:
        """Add many avatars at once (the start-up path: one bulk ``add_many``). Avatars must be new."""
        image_ids: list[int] = []
        counts: list[int] = []
        chunks: list[bytes] = []
        for snap in snapshots:
            if snap.avatar_id in self._avatars:
                raise ValueError(f"avatar {snap.avatar_id} is already loaded")
            self._set_avatar(snap)
            for ref, hashes in snap.images:
                self._images[ref.image_id] = ref
                image_ids.append(ref.image_id)
                counts.append(_slot_count(hashes))
                chunks.append(hashes)
        if image_ids:
            fids = _fingerprint_ids(np.asarray(image_ids, np.int64), np.asarray(counts, np.int64))
            matrix = np.frombuffer(b"".join(chunks), np.uint8).reshape(-1, PDQ_BYTES)
            # Ascending ids let the index search its id table without building one.
            order = np.argsort(fids, kind="stable")
            self._index.add_many(fids[order], matrix[order])

    def apply(self, snap: store.AvatarSnapshot) -> None:
        """Bring one avatar up to ``snap``: remove images it lost, add images it gained, update the rest."""
        old = self._avatars.get(snap.avatar_id)
        old_ids = old.image_ids if old else frozenset()
        new_ids = {ref.image_id for ref, _ in snap.images}
        for image_id in old_ids - new_ids:
            self._drop_image(image_id)
        added = [(ref, h) for ref, h in snap.images if ref.image_id not in old_ids]
        if added:
            fids = _fingerprint_ids(
                np.asarray([ref.image_id for ref, _ in added], np.int64),
                np.asarray([_slot_count(h) for _, h in added], np.int64),
            )
            matrix = np.frombuffer(b"".join(h for _, h in added), np.uint8)
            self._index.add_many(fids, matrix.reshape(-1, PDQ_BYTES))
        for ref, _ in snap.images:
            self._images[ref.image_id] = ref
        self._set_avatar(snap)

    def drop(self, avatar_id: uuid.UUID) -> None:
        """Forget an avatar entirely (it no longer exists)."""
        old = self._avatars.pop(avatar_id, None)
        if old is not None:
            for image_id in old.image_ids:
                self._drop_image(image_id)

    def search(self, queries: Sequence[bytes], threshold: int, now: datetime) -> list[LikenessHit]:
        """Every reference image within ``threshold`` of any query hash, nearest first.

        One hit per reference image, at its smallest distance over all query hashes and reference slots.
        Avatars whose matching is disabled at ``now`` are left out. Each hit's disposition: ``review`` when
        the reference is quarantined, ``allowed`` when any query is also within ``threshold`` of the
        avatar's allow-list, else ``match``.

        Raises:
            ValueError: a query is not 32 bytes, or ``threshold`` is outside 0..``MAX_THRESHOLD``.
        """
        best: dict[int, tuple[int, int, int]] = {}  # image id -> (distance, query, variant)
        for qi, q in enumerate(queries):
            for fid, distance in self._index.query(q, threshold):
                image_id, variant = divmod(int(fid), SLOTS)
                seen = best.get(image_id)
                if seen is None or distance < seen[0]:
                    best[image_id] = (distance, qi, variant)
        q_ints = [int.from_bytes(q, "big") for q in queries]
        hits: list[LikenessHit] = []
        for image_id, (distance, qi, variant) in best.items():
            ref = self._images[image_id]
            av = self._avatars[ref.avatar_id]
            if av.disabled_until is not None and av.disabled_until > now:
                continue
            disposition: Disposition
            if ref.quarantined:
                disposition = "review"
            elif any((q ^ a).bit_count() <= threshold for q in q_ints for a in av.allow):
                disposition = "allowed"
            else:
                disposition = "match"
            hits.append(
                LikenessHit(
                    avatar_id=ref.avatar_id,
                    owner_operator_id=av.owner,
                    status=av.status,
                    image_id=image_id,
                    image_sha256=ref.sha256,
                    distance=distance,
                    query=qi,
                    variant=variant,
                    disposition=disposition,
                )
            )
        hits.sort(key=lambda h: (h.distance, str(h.avatar_id), h.image_id))
        return hits

    def conflicts(
        self, queries: Sequence[bytes], threshold: int, owner: uuid.UUID, now: datetime
    ) -> list[LikenessHit]:
        """Hits that stand against ``owner`` registering these hashes: another owner's active or held avatar,
        not allowed by its allow-list. Hits marked ``review`` (quarantined references) are kept, for the
        caller to route to review rather than act on. An owner's own avatars never conflict."""
        return [
            h
            for h in self.search(queries, threshold, now)
            if h.owner_operator_id != owner and h.status in CONFLICT_STATUSES and h.disposition != "allowed"
        ]

    def _set_avatar(self, snap: store.AvatarSnapshot) -> None:
        self._avatars[snap.avatar_id] = _Avatar(
            owner=snap.owner_operator_id,
            status=snap.status,
            disabled_until=snap.match_disabled_until,
            image_ids=frozenset(ref.image_id for ref, _ in snap.images),
            allow=tuple(int.from_bytes(a, "big") for a in snap.allow),
        )

    def _drop_image(self, image_id: int) -> None:
        for k in range(SLOTS):
            self._index.remove(image_id * SLOTS + k)
        self._images.pop(image_id, None)


def _slot_count(hashes: bytes) -> int:
    count, rest = divmod(len(hashes), PDQ_BYTES)
    if rest or not 1 <= count <= SLOTS:
        raise ValueError(f"expected 1 to {SLOTS} hashes of {PDQ_BYTES} bytes, got {len(hashes)} bytes")
    return count


def _fingerprint_ids(image_ids: np.ndarray[Any, Any], counts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``image_id * SLOTS + slot`` for every slot of every image, image by image."""
    starts = np.cumsum(counts) - counts
    slot = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    return np.repeat(image_ids * SLOTS, counts) + slot


class RecordCache:
    """Serialised public avatar records, dropped when the change feed says the avatar changed (pure).

    A reader takes ``generation`` before reading the database and stores what it read with ``put``; the
    store is skipped if any invalidation happened meanwhile, so a record read before a change can never be
    cached after that change was applied.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        # Bumped by every invalidation.
        self.generation = 0
        # Least recently used first.
        self._data: OrderedDict[uuid.UUID, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, avatar_id: uuid.UUID) -> bytes | None:
        body = self._data.get(avatar_id)
        if body is not None:
            self._data.move_to_end(avatar_id)
        return body

    def put(self, avatar_id: uuid.UUID, body: bytes, generation: int) -> bool:
        """Cache ``body`` if nothing was invalidated since ``generation``; return whether it was."""
        if generation != self.generation:
            return False
        self._data[avatar_id] = body
        self._data.move_to_end(avatar_id)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
        return True

    def invalidate(self, avatar_ids: Iterable[uuid.UUID] | None) -> None:
        """Drop these avatars' records (``None``: all of them)."""
        self.generation += 1
        if avatar_ids is None:
            self._data.clear()
        else:
            for avatar_id in avatar_ids:
                self._data.pop(avatar_id, None)


# Failures of the database or the network that the background loop rides out (and reports as staleness).
_DB_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class FingerprintService:
    """One registry process's likeness index and its synchronisation with PostgreSQL (module docstring)."""

    def __init__(self, policy: LikenessPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        # The index itself; replaced whole only by the initial load.
        self.index = LikenessIndex()
        # Sequence number of the last change applied (the index reflects every change up to it).
        self.seq = 0
        # Whether the initial load has finished.
        self.loaded = False
        # Whether changes reach this process at once: the LISTEN connection is up and every change before
        # it was connected has been applied.
        self.listening = False
        # Public records for GET /v1/avatars/{id}, invalidated by the same feed (used while listening).
        self.records = RecordCache()
        # When (by ``clock``) the index was last confirmed current against the database.
        self.last_sync: float | None = None
        # Tests set this before start-up to hold the initial load until they set it.
        self.load_gate: asyncio.Event | None = None
        self._clock = clock
        # One catch-up at a time within this process (the registration path and the listener both run it).
        self._sync_lock = asyncio.Lock()
        # Set by NOTIFY: the background loop catches up at once instead of at the next poll.
        self._wake = asyncio.Event()
        self._loaded_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None

    # -- life cycle ----------------------------------------------------------------------------------------

    async def start(self, pool: asyncpg.Pool, dsn: str) -> None:
        """Start loading and following changes in the background; wait up to ``startup_wait_s`` for the
        initial load so a small registry is ready as soon as it serves."""
        self._task = asyncio.create_task(self._run(pool, dsn), name="likeness-index")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._loaded_event.wait()), self.policy.startup_wait_s)
        if not self.loaded:
            _logger.info("match index still loading; match requests answer 503 until it is ready")

    async def stop(self) -> None:
        """Stop the background loop and close the LISTEN connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_listener()

    async def wait_loaded(self) -> None:
        """Wait for the initial load (bound it with ``asyncio.timeout``)."""
        await self._loaded_event.wait()

    async def _run(self, pool: asyncpg.Pool, dsn: str) -> None:
        if self.load_gate is not None:
            await self.load_gate.wait()
        backoff = 0.1
        while True:
            try:
                if self._listener is None or self._listener.is_closed():
                    # LISTEN before reading: a change committed meanwhile is then either read or announced.
                    self.listening = False
                    await self._listen(dsn)
                if self.loaded:
                    async with pool.acquire() as conn:
                        await self.catch_up(conn)
                else:
                    await self.load(pool)
                self.listening = self._listener is not None and not self._listener.is_closed()
                backoff = 0.1
            except _DB_ERRORS as exc:
                _logger.warning(
                    "match index sync failed (%s); retrying in %.1f s", type(exc).__name__, backoff
                )
                await self._close_listener()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.policy.poll_interval_s)
            self._wake.clear()

    async def _listen(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.add_listener(store.CHANGES_CHANNEL, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        self._listener = conn

    async def _close_listener(self) -> None:
        self.listening = False
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*_DB_ERRORS):
                await conn.close(timeout=2)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()

    # -- synchronisation -----------------------------------------------------------------------------------

    async def load(self, pool: asyncpg.Pool) -> None:
        """Load every avatar's fingerprints from one snapshot and mark the index ready."""
        started = self._clock()
        async with pool.acquire() as conn:
            seq, snapshots = await store.load_all(conn)
        index = LikenessIndex()
        # Building the index is CPU work on numpy arrays; a thread keeps the loop serving meanwhile.
        await asyncio.to_thread(index.load, snapshots)
        async with self._sync_lock:
            self.index, self.seq = index, seq
            self.records.invalidate(None)
            self.loaded = True
            self.last_sync = self._clock()
        self._loaded_event.set()
        _logger.info(
            "match index loaded: %d avatars, %d images, %d fingerprints in %.2f s",
            index.avatar_count,
            index.image_count,
            len(index),
            self._clock() - started,
        )

    async def catch_up(self, conn: asyncpg.Connection) -> int:
        """Apply every committed change after ``seq``; return how many were applied.

        Under the likeness lock (the registration path) this makes the index exactly the committed state.
        Raises ``NotReady`` (``index_not_ready``) before the initial load.
        """
        self.require_ready()
        applied = 0
        async with self._sync_lock:
            while True:
                changes = await store.changes_since(conn, self.seq)
                if not changes:
                    break
                ids = list(dict.fromkeys(c.avatar_id for c in changes))
                snapshots = await store.load_snapshots(conn, ids)
                for snap in snapshots:
                    self.index.apply(snap)
                for gone in set(ids) - {s.avatar_id for s in snapshots}:
                    self.index.drop(gone)
                self.records.invalidate(ids)
                self.seq = changes[-1].seq
                applied += len(changes)
            self.last_sync = self._clock()
        return applied

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """``catch_up`` on a pooled connection (after a change this process committed)."""
        async with pool.acquire() as conn:
            await self.catch_up(conn)

    def require_ready(self) -> None:
        """Raises ``NotReady`` (``index_not_ready``) until the initial load has finished."""
        if not self.loaded:
            raise errors.NotReady("the match index is still loading; retry shortly", code="index_not_ready")

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, detail): loaded and confirmed current within ``stale_after_s``; size and staleness."""
        staleness = None if self.last_sync is None else max(0.0, self._clock() - self.last_sync)
        ok = self.loaded and staleness is not None and staleness <= self.policy.stale_after_s
        return ok, {
            "loaded": self.loaded,
            "listening": self.listening,
            "avatars": self.index.avatar_count,
            "images": self.index.image_count,
            "fingerprints": len(self.index),
            "memory_bytes": self.index.memory_bytes(),
            "seq": self.seq,
            "staleness_s": None if staleness is None else round(staleness, 3),
        }

    # -- matching ------------------------------------------------------------------------------------------

    async def match(
        self,
        pool: asyncpg.Pool,
        queries: Sequence[bytes],
        upload_sha256: bytes,
        threshold: int,
        now: datetime,
    ) -> list[LikenessHit]:
        """Match an upload (its hash or hashes) and count it for flood quarantine.

        Each ``match`` hit counts ``upload_sha256`` against its reference; a reference that has now matched
        more than ``flood_limit`` distinct uploads within ``flood_window_s`` is quarantined (a
        ``flood_quarantine`` review item is opened, the change is published) and reported ``review``.

        Raises:
            NotReady: ``index_not_ready`` before the initial load.
        """
        self.require_ready()
        hits = self.index.search(queries, threshold, now)
        counted = [h.image_id for h in hits if h.disposition == "match"]
        if not counted:
            return hits
        async with pool.acquire() as conn:
            async with conn.transaction():
                counts = await store.record_hits(conn, counted, upload_sha256, self.policy.flood_window_s)
                over = sorted(i for i, n in counts.items() if n > self.policy.flood_limit)
                newly = await self._quarantine(conn, over, counts) if over else []
            if newly:
                await self.catch_up(conn)
        quarantined = {image_id for image_id, _, _ in newly}
        return [replace(h, disposition="review") if h.image_id in quarantined else h for h in hits]

    async def _quarantine(
        self, conn: asyncpg.Connection, image_ids: list[int], counts: dict[int, int]
    ) -> list[tuple[int, uuid.UUID, bytes]]:
        await store.take_likeness_lock(conn)
        newly = await store.quarantine_images(conn, image_ids)
        for image_id, avatar_id, sha256 in newly:
            details = {
                "image_sha256": sha256.hex(),
                "distinct_uploads": counts[image_id],
                "limit": self.policy.flood_limit,
                "window_s": self.policy.flood_window_s,
            }
            await avatar_store.create_review_item(
                conn, "flood_quarantine", avatar_id, details, image_id=image_id
            )
            await store.record_change(conn, avatar_id, "quarantined")
            await audit.record(conn, None, "image.quarantine", "avatar", avatar_id, details=details)
            _logger.warning(
                "reference image %s of avatar %s quarantined after a match flood", sha256.hex(), avatar_id
            )
        return newly


def upload_digest(data: bytes) -> bytes:
    """The identity of an upload for flood counting: the SHA-256 of its bytes (or of a submitted hash)."""
    return hashlib.sha256(data).digest()
