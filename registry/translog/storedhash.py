"""The stored-hash layout of a tamper-evident log: which hashes to keep, where, and how to prove from them.

A port of Go's ``golang.org/x/mod/sumdb/tlog`` (``StoredHashIndex``, ``StoredHashes``, ``TreeHash``,
``ProveRecord``, ``ProveTree``) to Python. Every complete subtree's hash is stored once, when its last leaf is
appended, at a dense linear index (Crosby and Wallach, "Efficient Data Structures for Tamper-Evident Logging",
§3.3). Any root or proof then needs at most about ``2 * log2(n)`` stored hashes, fetched in one batch.

Nothing here does I/O. Reading goes through a ``HashReader`` callback, ``read_hashes(indexes) -> hashes``,
which the store implements with one SQL query; every function here calls it at most once, with indexes in
increasing order. Proofs are the RFC 9162 lists that ``registry.translog.merkle`` verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from registry.errors import RegistryError
from registry.translog.merkle import EMPTY_ROOT, HASH_SIZE, TreeRangeError, leaf_hash, node_hash

__all__ = [
    "HashReader",
    "HashStoreError",
    "checked_read",
    "prove_record",
    "prove_tree",
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "stored_hashes",
    "stored_hashes_for_record",
    "tree_hash",
]

HashReader = Callable[[list[int]], Sequence[bytes]]
"""Returns the stored hashes at the given stored-hash indexes, in the same order (one SQL query)."""


class HashStoreError(RegistryError):
    """The hash store returned something other than one 32-byte hash per requested index (a server fault)."""

    code = "hash_store_inconsistent"


def stored_hash_index(level: int, n: int) -> int:
    """Return the storage index of the ``n``-th hash at ``level`` of the tree (level 0 holds leaf hashes).

    Level L's n-th hash is stored right after level L+1's (2n+1)-th hash; level 0's n-th hash is stored at
    ``n + n//2 + n//4 + ...``, which is ``2n - popcount(n)``. Raises ``ValueError`` on negative input.
    """
    if level < 0 or n < 0:
        raise ValueError(f"invalid stored hash coordinates: level {level}, n {n}")
    # Walk down to the last leaf under this node: n -> 2n+1, level times.
    leaf = ((n + 1) << level) - 1
    return 2 * leaf - leaf.bit_count() + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Return ``(level, n)`` such that ``stored_hash_index(level, n) == index``; the inverse of it.

    Raises ``ValueError`` on a negative index.
    """
    if index < 0:
        raise ValueError(f"invalid stored hash index {index}")
    # stored_hash_index(0, n) <= 2n, so the leaf we want is in [index//2, index//2 + log2(index)].
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        # Leaf n stored 1 + trailing_zeros(n+1) hashes (its own and the subtrees it completed), so leaf n+1's
        # hash comes right after them.
        following = index_n + 1 + _trailing_zeros(n + 1)
        if following > index:
            break
        n += 1
        index_n = following
    # The hash was stored along with leaf n: it is one of (0, n), (1, n/2), (2, n/4), ...
    level = index - index_n
    return level, n >> level


def _trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


def stored_hash_count(tree_size: int) -> int:
    """Return how many hashes are stored for a tree of ``tree_size`` leaves."""
    if tree_size < 0:
        raise ValueError(f"invalid tree size {tree_size}")
    if tree_size == 0:
        return 0
    last = tree_size - 1
    # Every hash up to the last leaf's, plus the subtrees that leaf completes (its trailing one bits).
    return stored_hash_index(0, last) + 1 + _trailing_zeros(last + 1)


def stored_hashes(n: int, data: bytes, read_hashes: HashReader) -> list[bytes]:
    """Return the hashes to store when appending record ``n`` (0-based) with leaf bytes ``data``.

    See ``stored_hashes_for_record``; this one hashes ``data`` as an RFC 6962 leaf first.
    """
    return stored_hashes_for_record(n, leaf_hash(data), read_hashes)


def stored_hashes_for_record(n: int, record_hash: bytes, read_hashes: HashReader) -> list[bytes]:
    """Return the hashes to store when appending record ``n`` whose leaf hash is ``record_hash``.

    They go at consecutive indexes starting at ``stored_hash_index(0, n)``: the leaf hash, then the hash of
    every subtree the new leaf completes (one per trailing one bit of ``n``), so ``1 + log2(n)`` at most and
    just under two on average. Reads the left siblings of those subtrees with one ``read_hashes`` call (none
    when ``n`` is even). Raises ``HashStoreError`` if the store answers with the wrong number of hashes.
    """
    if n < 0:
        raise ValueError(f"invalid record number {n}")
    if len(record_hash) != HASH_SIZE:
        raise ValueError(f"record hash has wrong length: expected {HASH_SIZE} bytes, got {len(record_hash)}")
    m = _trailing_zeros(n + 1)
    if m == 0:
        return [record_hash]
    # Each trailing one bit of n completes a subtree whose left half is already stored; ask for those
    # left halves highest level first, which is increasing storage order.
    indexes = [stored_hash_index(level, (n >> level) - 1) for level in range(m - 1, -1, -1)]
    old = checked_read(read_hashes, indexes)
    hashes = [record_hash]
    h = record_hash
    for i in range(m):
        h = node_hash(old[m - 1 - i], h)
        hashes.append(h)
    return hashes


def checked_read(read_hashes: HashReader, indexes: list[int]) -> Sequence[bytes]:
    """Call ``read_hashes(indexes)`` and check it returned one 32-byte hash per index (``HashStoreError``)."""
    hashes = read_hashes(indexes)
    if len(hashes) != len(indexes):
        raise HashStoreError(
            f"hash store returned {len(hashes)} hashes for {len(indexes)} indexes",
            details={"expected": len(indexes), "got": len(hashes)},
        )
    for index, h in zip(indexes, hashes, strict=True):
        if len(h) != HASH_SIZE:
            raise HashStoreError(
                f"hash store returned a {len(h)}-byte hash at index {index}",
                details={"index": index, "length": len(h)},
            )
    return hashes


def _split(n: int) -> int:
    """Largest power of two smaller than ``n`` (``n >= 2``), the RFC 9162 §2.1.1 split point."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_indexes(lo: int, hi: int, need: list[int]) -> None:
    """Append the storage indexes whose hashes make up the subtree of leaves ``[lo, hi)``.

    The range is cut into maximal perfect subtrees, left to right; each is one stored hash.
    """
    while lo < hi:
        # Largest perfect subtree starting at lo that fits: lo is always a multiple of its size here.
        level = (hi - lo).bit_length() - 1
        need.append(stored_hash_index(level, lo >> level))
        lo += 1 << level


def _fold(parts: Sequence[bytes]) -> bytes:
    """Combine the perfect subtrees of a leaf range, listed left to right, into the range's hash (RFC 9162
    §2.1.1 splits off the largest perfect subtree on the left, so they fold together from the right)."""
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def tree_hash(tree_size: int, read_hashes: HashReader) -> bytes:
    """Return the root hash of the tree with ``tree_size`` records from the stored hashes.

    Reads at most ``1 + log2(tree_size)`` hashes with one ``read_hashes`` call. The empty tree's root is
    SHA-256 of the empty string (RFC 9162 §2.1.1), not Go tlog's all-zero hash.
    """
    if tree_size < 0:
        raise ValueError(f"invalid tree size {tree_size}")
    if tree_size == 0:
        return EMPTY_ROOT
    indexes: list[int] = []
    _subtree_indexes(0, tree_size, indexes)
    return _fold(checked_read(read_hashes, indexes))


def prove_record(tree_size: int, n: int, read_hashes: HashReader) -> list[bytes]:
    """Return the inclusion proof that the tree of ``tree_size`` records contains record ``n``.

    The proof lists sibling hashes leaf first (RFC 9162 §2.1.3.1), for ``merkle.verify_inclusion``. Reads
    the needed hashes with at most one ``read_hashes`` call. Raises ``TreeRangeError`` unless
    ``0 <= n < tree_size``.
    """
    if not 0 <= n < tree_size:
        raise TreeRangeError(
            f"leaf index out of range: index {n}, tree size {tree_size}",
            details={"index": n, "tree_size": tree_size},
        )
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = _split(hi - lo)
        if n < lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo += k
    return _read_subtrees(siblings[::-1], read_hashes)


def prove_tree(new_size: int, old_size: int, read_hashes: HashReader) -> list[bytes]:
    """Return the consistency proof that the tree of ``new_size`` records extends the tree of ``old_size``.

    The proof is RFC 9162 §2.1.4.1's PROOF(old_size, D[new_size]) (empty when ``old_size`` is 0 or equal to
    ``new_size``), for ``merkle.verify_consistency``. Note the argument order follows Go's
    ``ProveTree(t, n, r)``: the larger tree first. Reads with at most one ``read_hashes`` call. Raises
    ``TreeRangeError`` unless ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise TreeRangeError(
            f"tree sizes out of order: old size {old_size}, new size {new_size}",
            details={"old_size": old_size, "new_size": new_size},
        )
    if old_size in (0, new_size):
        return []
    subtrees: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            subtrees.append((lo + k, hi))
            hi = lo + k
        else:
            subtrees.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        subtrees.append((lo, hi))
    return _read_subtrees(subtrees[::-1], read_hashes)


def _read_subtrees(subtrees: list[tuple[int, int]], read_hashes: HashReader) -> list[bytes]:
    """Return the hash of each leaf range in ``subtrees``, reading every stored hash needed in one call.

    The call asks for distinct indexes in increasing order, so the store can answer with one ordered query.
    """
    plans: list[list[int]] = []
    for lo, hi in subtrees:
        need: list[int] = []
        _subtree_indexes(lo, hi, need)
        plans.append(need)
    wanted = sorted({i for plan in plans for i in plan})
    if not wanted:
        return []
    by_index = dict(zip(wanted, checked_read(read_hashes, wanted), strict=True))
    return [_fold([by_index[i] for i in plan]) for plan in plans]
