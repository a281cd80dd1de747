"""RFC 6962 / RFC 9162 Merkle tree hashing, proof generation and proof verification.

Pure functions over leaf hashes held in memory; nothing here does I/O. The log's store keeps hashes in
PostgreSQL and builds proofs with ``registry.translog.storedhash``; the proofs it returns are the same lists
of hashes this module builds and checks.

Specs:
- RFC 9162 §2.1.1 (Merkle Tree Hash, with the RFC 6962 §2.1 domain-separation prefixes),
- RFC 9162 §2.1.3.1 / §2.1.3.2 (inclusion proof generation / verification),
- RFC 9162 §2.1.4.1 / §2.1.4.2 (consistency proof generation / verification).

Every verification failure raises ``ProofError`` with a message naming what was expected and what was found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from registry.errors import BadRequest

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ProofError",
    "TreeRangeError",
    "consistency_proof",
    "consistency_proof_size",
    "inclusion_proof",
    "inclusion_proof_size",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 6962 §2.1: leaves and interior nodes hash with different one-byte prefixes, so a leaf can never be
# passed off as an interior node (second-preimage resistance).
_LEAF_HASH_PREFIX = b"\x00"
_NODE_HASH_PREFIX = b"\x01"
# RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(BadRequest):
    """A Merkle proof (or a hash given to check it against) failed verification."""

    code = "proof_invalid"


class TreeRangeError(BadRequest):
    """A proof was asked for with an index or tree sizes that do not describe a valid proof."""

    code = "tree_range_invalid"


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(_LEAF_HASH_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_HASH_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return k, the largest power of two smaller than ``n`` (``n >= 2``), as RFC 9162 §2.1.1 splits."""
    return 1 << ((n - 1).bit_length() - 1)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes.

    Runs in one pass with a stack of perfect subtrees (the binary decomposition of the size), folded from the
    right at the end, which is what the recursive definition computes.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    # stack holds (height, hash) of perfect subtrees, heights strictly decreasing.
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        height, node = 0, h
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            node = node_hash(left, node)
            height += 1
        stack.append((height, node))
    root = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        root = node_hash(left, root)
    return root


def _check_index(index: int, tree_size: int) -> None:
    if not 0 <= index < tree_size:
        raise TreeRangeError(
            f"leaf index out of range: index {index}, tree size {tree_size}",
            details={"index": index, "tree_size": tree_size},
        )


def _check_sizes(old_size: int, new_size: int) -> None:
    if not 0 <= old_size <= new_size:
        raise TreeRangeError(
            f"tree sizes out of order: old size {old_size}, new size {new_size}",
            details={"old_size": old_size, "new_size": new_size},
        )


def inclusion_proof_size(index: int, tree_size: int) -> int:
    """Return how many hashes the inclusion proof of leaf ``index`` in a tree of ``tree_size`` has.

    Follows the recursion of RFC 9162 §2.1.3.1 (PATH). Raises ``TreeRangeError`` if ``index`` is not in the
    tree.
    """
    _check_index(index, tree_size)
    count = 0
    while tree_size > 1:
        k = _split(tree_size)
        if index >= k:
            index, tree_size = index - k, tree_size - k
        else:
            tree_size = k
        count += 1
    return count


def consistency_proof_size(old_size: int, new_size: int) -> int:
    """Return how many hashes the consistency proof from ``old_size`` to ``new_size`` has.

    Follows RFC 9162 §2.1.4.1 (SUBPROOF); the proof from an empty tree or to the same size is empty.
    Raises ``TreeRangeError`` unless ``0 <= old_size <= new_size``.
    """
    _check_sizes(old_size, new_size)
    if old_size in (0, new_size):
        return 0
    count, m, n, complete = 0, old_size, new_size, True
    while m != n:
        k = _split(n)
        if m <= k:
            n = k
        else:
            m, n, complete = m - k, n - k, False
        count += 1
    return count if complete else count + 1


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof (audit path, leaf to root) of leaf ``index`` in the tree of ``leaf_hashes``.

    Implements PATH(m, D[n]) of RFC 9162 §2.1.3.1. Raises ``TreeRangeError`` if ``index`` is not in the tree.
    """
    _check_index(index, len(leaf_hashes))
    path: list[bytes] = []
    lo, hi = 0, len(leaf_hashes)
    # Walk down from the root, recording the sibling subtree not taken; the path lists them leaf first.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(root_hash(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root_hash(leaf_hashes[lo : lo + k]))
            lo += k
    path.reverse()
    return path


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the consistency proof from the tree's first ``old_size`` leaves to all of ``leaf_hashes``.

    Implements PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1; the proof is empty when
    ``old_size`` is 0 or equals the tree size. Raises ``TreeRangeError`` unless ``0 <= old_size <= n``.
    """
    new_size = len(leaf_hashes)
    _check_sizes(old_size, new_size)
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(root_hash(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root_hash(leaf_hashes[lo : lo + k]))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        # SUBPROOF(m, D[m], false) = [MTH(D[m])]: the old subtree the verifier cannot know on its own.
        proof.append(root_hash(leaf_hashes[lo:hi]))
    proof.reverse()
    return proof


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} has wrong length: expected {HASH_SIZE} bytes, got {len(value)}")


def _check_proof_hashes(kind: str, proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        _check_hash(f"{kind} proof hash {i}", p)


def root_from_inclusion_proof(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Return the root that ``proof`` implies for leaf hash ``leaf`` at ``index`` in a tree of ``tree_size``.

    Runs steps 1-4 of RFC 9162 §2.1.3.2. Raises ``ProofError`` if the index is outside the tree, a hash has
    the wrong length, or the proof has the wrong number of hashes.
    """
    # (1) The index must be inside the tree.
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index out of range: index {index}, tree size {tree_size}")
    _check_hash("leaf hash", leaf)
    _check_proof_hashes("inclusion", proof)
    # (2) fn walks the leaf's position, sn the last leaf's position, up the tree.
    fn, sn = index, tree_size - 1
    # (3)
    r = leaf
    # (4)
    for p in proof:
        # (4a) The path is longer than the tree is tall.
        if sn == 0:
            raise _wrong_size("inclusion", inclusion_proof_size(index, tree_size), len(proof))
        # (4b) A right child (or the rightmost node of an unbalanced level) hashes with its left sibling.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Skip the levels where this node has no sibling (the right edge of an unbalanced tree).
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # (4c)
        fn >>= 1
        sn >>= 1
    # (5, first half) The path must reach the root level exactly.
    if sn != 0:
        raise _wrong_size("inclusion", inclusion_proof_size(index, tree_size), len(proof))
    return r


def verify_inclusion(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``tree_size`` with ``root``.

    Implements RFC 9162 §2.1.3.2. Raises ``ProofError`` on any failure; returns ``None`` on success.
    """
    _check_hash("root hash", root)
    computed = root_from_inclusion_proof(index, tree_size, leaf, proof)
    # (5, second half)
    if computed != root:
        raise ProofError(
            f"inclusion proof does not lead to the root: expected {root.hex()}, computed {computed.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that ``proof`` shows the old tree (size, root) is a prefix of the new tree (size, root).

    Implements RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. For equal sizes the proof must be empty and
    the roots equal; from size 0 the proof must be empty and ``old_root`` the empty-tree hash. Raises
    ``ProofError`` on any failure; returns ``None`` on success.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree sizes out of order: old size {old_size}, new size {new_size}")
    _check_hash("old root hash", old_root)
    _check_hash("new root hash", new_root)
    _check_proof_hashes("consistency", proof)
    if old_size == new_size or old_size == 0:
        if proof:
            raise _wrong_size("consistency", 0, len(proof))
        expected_old = new_root if old_size == new_size else EMPTY_ROOT
        if old_root != expected_old:
            raise ProofError(
                f"consistency proof does not lead to the old root: expected {old_root.hex()}, "
                f"computed {expected_old.hex()}"
            )
        return

    expected_size = consistency_proof_size(old_size, new_size)
    # (1) An empty path cannot connect two different non-empty trees.
    if not proof:
        raise _wrong_size("consistency", expected_size, 0)
    path = list(proof)
    # (2) When the old tree is a perfect subtree of the new one, its root is the first node on the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # (3)
    fn, sn = old_size - 1, new_size - 1
    # (4) Skip the levels where the old tree's last node is a right child of a node also in the old tree.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # (5) fr rebuilds the old root, sr the new root.
    fr = sr = path[0]
    # (6)
    for c in path[1:]:
        # (6a) The path is longer than the tree is tall.
        if sn == 0:
            raise _wrong_size("consistency", expected_size, len(proof))
        # (6b)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        # (6c)
        fn >>= 1
        sn >>= 1
    # (7)
    if sn != 0:
        raise _wrong_size("consistency", expected_size, len(proof))
    if fr != old_root:
        raise ProofError(
            f"consistency proof does not lead to the old root: expected {old_root.hex()}, computed {fr.hex()}"
        )
    if sr != new_root:
        raise ProofError(
            f"consistency proof does not lead to the new root: expected {new_root.hex()}, computed {sr.hex()}"
        )


def _wrong_size(kind: str, expected: int, got: int) -> ProofError:
    return ProofError(
        f"{kind} proof has wrong size: expected {expected} hashes, got {got}",
        details={"expected": expected, "got": got},
    )
