"""Appending to the transparency log, inside the transaction of the change being logged.

``append_leaf`` runs in the caller's transaction, so a change and its leaf commit or roll back together:
no change without its leaf, no leaf without its change. Appends are sequenced under a transaction-level
advisory lock and a row lock on ``log_head``, so indexes have no gaps and commit in index order: a committed
size N always means leaves 0..N-1 and their hashes are committed. A ``NOTIFY translog`` sent at commit wakes
the checkpoint signer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NewType

import asyncpg

from registry.translog import store
from registry.translog.leaves import LeafError, check_leaf, encode_leaf
from registry.translog.storedhash import stored_hash_index, stored_hashes

__all__ = ["APPEND_LOCK", "NOTIFY_CHANNEL", "LeafError", "LogIndex", "append_leaf"]

_logger = logging.getLogger(__name__)

LogIndex = NewType("LogIndex", int)
# Any constant works; it only has to be the same in every process that appends ("tlog").
APPEND_LOCK = 0x746C6F67
NOTIFY_CHANNEL = "translog"


async def append_leaf(conn: asyncpg.Connection, leaf: Mapping[str, Any]) -> LogIndex:
    """Append ``leaf`` to the log in the caller's open transaction and return its index.

    Steps: (1) check the leaf (flat JSON of ids and digests, no PII keys; see ``leaves.check_leaf``) and its
    size, before anything is written; (2) take the append lock and the next index from ``log_head``;
    (3) encode it as RFC 8785 JSON with ``"v": 1`` and ``"at"`` (the transaction's time, RFC 3339 UTC);
    (4) store it with the Merkle hashes it completes (Go tlog's stored-hash layout); (5) ``NOTIFY translog``.

    Must run inside a transaction in READ COMMITTED (PostgreSQL's default); under REPEATABLE READ or
    SERIALIZABLE a concurrent append makes it fail with a serialization error, never with a wrong index.
    Raises ``LeafError`` (1) — or outside a transaction — before touching the database.
    """
    if not conn.is_in_transaction():
        raise LeafError("append_leaf must run inside the transaction of the change it logs")
    # (1) Encoding with a sample time of the same width checks the final size up front.
    checked = check_leaf(leaf)
    encode_leaf(checked)
    # (2)
    index, at = await store.next_index(conn, APPEND_LOCK)
    # (3)
    data = encode_leaf(checked, at)
    # (4) and (5): the notification is delivered at commit, and not at all on rollback.
    hashes = await store.with_hashes(conn, lambda read: stored_hashes(index, data, read))
    await store.insert_entry(
        conn, index, data, checked.kind, checked.subject, hashes, stored_hash_index(0, index), NOTIFY_CHANNEL
    )
    _logger.debug("log leaf %d appended: %s", index, checked.kind)
    return LogIndex(index)
