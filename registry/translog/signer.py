"""The checkpoint signer: signs a C2SP checkpoint whenever the tree has grown, in every registry process.

``sign_if_grown`` does one round under a transaction-level advisory lock, so however many registry processes
run it, checkpoints are signed one at a time, each for a tree at least as large as the last, and each only
after checking a consistency proof from the previous checkpoint: the log never publishes two inconsistent
checkpoints. ``CheckpointSigner`` repeats it when ``NOTIFY translog`` arrives and at least once a second, so a
leaf is covered by a signed checkpoint within about a second of its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from registry.errors import RegistryError
from registry.translog import store
from registry.translog.checkpoint import Checkpoint, format_checkpoint
from registry.translog.keys import LogKeys
from registry.translog.log import NOTIFY_CHANNEL
from registry.translog.merkle import ProofError, verify_consistency
from registry.translog.note import sign_note

__all__ = ["SIGN_LOCK", "CheckpointSigner", "LogInconsistent", "sign_if_grown"]

_logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process that signs ("tsig").
SIGN_LOCK = 0x74736967


class LogInconsistent(RegistryError):
    """The stored tree does not extend the last signed checkpoint: signing stops (a server fault)."""

    code = "log_inconsistent"


async def sign_if_grown(conn: asyncpg.Connection, keys: LogKeys) -> store.StoredCheckpoint | None:
    """Sign and store a checkpoint of the committed tree unless ``keys`` already signed one of that size.

    Steps, in one transaction under ``SIGN_LOCK``: (1) read the newest checkpoint and the committed size;
    (2) stop if this key has signed this size; (3) compute the root from the stored hashes; (4) check a
    consistency proof from the newest checkpoint (whoever signed it) to the new tree; (5) sign the
    tlog-checkpoint body with the current key and any co-signing keys, and store it.
    Returns the new checkpoint, or ``None`` when there was nothing to sign. Raises ``LogInconsistent`` if
    (4) fails or the tree shrank.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SIGN_LOCK)
        # (1) Under the lock, this snapshot sees every checkpoint signed before.
        latest = await store.latest_checkpoint(conn)
        size = await store.tree_size(conn)
        # (2)
        mine = latest if latest is not None and latest.key_id == keys.key_id else None
        if mine is None:
            mine = await store.latest_checkpoint_by_key(conn, keys.key_id)
        if mine is not None and mine.tree_size >= size:
            return None
        # (3)
        root = await store.root_at(conn, size)
        # (4)
        if latest is not None:
            if size < latest.tree_size:
                raise LogInconsistent(
                    f"log shrank: last checkpoint has {latest.tree_size} leaves, the tree {size}",
                    details={"checkpoint_size": latest.tree_size, "tree_size": size},
                )
            proof = await store.consistency_proof(conn, latest.tree_size, size)
            try:
                verify_consistency(latest.tree_size, size, proof, latest.root_hash, root)
            except ProofError as exc:
                raise LogInconsistent(
                    f"stored tree of {size} leaves is not consistent with checkpoint {latest.tree_size}: "
                    f"{exc.message}"
                ) from exc
        # (5)
        text = format_checkpoint(Checkpoint(keys.origin, size, root))
        note = sign_note(text, *keys.all_signers)
        return await store.insert_checkpoint(conn, size, root, keys.key_id, note)


class CheckpointSigner:
    """Runs ``sign_if_grown`` on ``NOTIFY translog`` and every ``interval`` seconds, until stopped.

    A failed round is logged and retried on the next tick; a lost LISTEN connection is re-opened on the
    next tick, and the timer alone still keeps the one-second promise meanwhile.
    """

    def __init__(self, pool: asyncpg.Pool, keys: LogKeys, *, interval: float = 1.0) -> None:
        self.pool = pool
        self.keys = keys
        self.interval = interval
        # Set by the NOTIFY callback; the loop waits on it with the interval as timeout.
        self._wake = asyncio.Event()
        # The pooled connection held for LISTEN, or None while there is none.
        self._listener: Any = None
        # Rounds that raised: in all, and in a row since the last good one (for /readyz).
        self.failures = 0
        self.failing = 0
        # The last checkpoint this signer stored.
        self.last: store.StoredCheckpoint | None = None

    async def run_once(self) -> store.StoredCheckpoint | None:
        """One round: sign a checkpoint if the tree grew. Returns it, or ``None``."""
        async with self.pool.acquire() as conn:
            signed = await sign_if_grown(conn, self.keys)
        if signed is not None:
            self.last = signed
            _logger.debug("signed checkpoint of %d leaves", signed.tree_size)
        return signed

    def _notified(self, *_args: Any) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._unlisten()
        conn = await self.pool.acquire()
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except BaseException:
            await self.pool.release(conn)
            raise
        self._listener = conn

    async def _unlisten(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # a broken connection cannot be cleaned; release discards it
            await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def run(self) -> None:
        """Loop until cancelled."""
        try:
            while True:
                try:
                    await self._listen()
                    self._wake.clear()
                    await self.run_once()
                    self.failing = 0
                except asyncio.CancelledError:
                    raise
                except Exception:  # keep signing after a transient database error; the next tick retries
                    self.failures += 1
                    self.failing += 1
                    _logger.exception("checkpoint signing round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
        finally:
            await self._unlisten()
