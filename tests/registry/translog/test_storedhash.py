"""Tests for registry/translog/storedhash.py: Go tlog's stored-hash layout, roots and proofs from it.

Mirrors Go tlog's TestTree and TestSplitStoredHashIndex, checks every root and proof against the in-memory
RFC 9162 functions of merkle.py (themselves checked against a naive recursion), and pins how the hash store
is called: at most once per operation, with distinct indexes in increasing order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from registry.errors import BadRequest, RegistryError
from registry.translog.merkle import (
    EMPTY_ROOT,
    ProofError,
    TreeRangeError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from registry.translog.storedhash import (
    HashStoreError,
    prove_record,
    prove_tree,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    stored_hashes,
    stored_hashes_for_record,
    tree_hash,
)


class RecordingStore:
    """An in-memory hash store that records each read and insists on sorted, distinct indexes."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.calls: list[list[int]] = []

    def read(self, indexes: list[int]) -> Sequence[bytes]:
        assert indexes == sorted(set(indexes)), f"indexes not strictly increasing: {indexes}"
        self.calls.append(list(indexes))
        return [self.hashes[i] for i in indexes]

    def append(self, n: int, data: bytes) -> None:
        assert len(self.hashes) == stored_hash_index(0, n)
        self.hashes.extend(stored_hashes(n, data, self.read))


def build(size: int, prefix: str = "leaf") -> tuple[RecordingStore, list[bytes]]:
    store = RecordingStore()
    leaves: list[bytes] = []
    for n in range(size):
        data = f"{prefix} {n}".encode()
        store.append(n, data)
        leaves.append(leaf_hash(data))
    store.calls.clear()
    return store, leaves


class TestStoredHashIndex:
    """The Crosby-Wallach linear order Go tlog stores hashes in."""

    def test_first_indexes(self) -> None:
        # Appending leaves 0..4 stores: L0 n0 | L0 n1, L1 n0 | L0 n2 | L0 n3, L1 n1, L2 n0 | L0 n4.
        order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4)]
        assert [stored_hash_index(level, n) for level, n in order] == list(range(8))

    def test_split_inverts_index(self) -> None:
        # Go tlog's TestSplitStoredHashIndex.
        for level in range(10):
            for n in range(100):
                assert split_stored_hash_index(stored_hash_index(level, n)) == (level, n)

    def test_every_index_splits_back(self) -> None:
        for index in range(5000):
            level, n = split_stored_hash_index(index)
            assert stored_hash_index(level, n) == index

    def test_large_index_round_trips(self) -> None:
        rng = random.Random(6962)
        for _ in range(200):
            level, n = rng.randrange(40), rng.randrange(1 << 40)
            assert split_stored_hash_index(stored_hash_index(level, n)) == (level, n)

    @pytest.mark.parametrize(("level", "n"), [(-1, 0), (0, -1)])
    def test_negative_coordinates(self, level: int, n: int) -> None:
        with pytest.raises(ValueError, match="invalid stored hash coordinates"):
            stored_hash_index(level, n)

    def test_negative_index(self) -> None:
        with pytest.raises(ValueError, match="invalid stored hash index -1"):
            split_stored_hash_index(-1)

    def test_count_matches_what_appends_store(self) -> None:
        store = RecordingStore()
        assert stored_hash_count(0) == 0
        for n in range(300):
            store.append(n, f"record {n}".encode())
            assert stored_hash_count(n + 1) == len(store.hashes)
        with pytest.raises(ValueError, match="invalid tree size -1"):
            stored_hash_count(-1)


class TestStoredHashes:
    """What appending a record writes, and how often it reads."""

    def test_even_records_store_only_their_leaf_without_reading(self) -> None:
        store, _ = build(4)
        new = stored_hashes(4, b"x", store.read)
        assert new == [leaf_hash(b"x")]
        assert store.calls == []

    def test_odd_records_complete_subtrees_with_one_read(self) -> None:
        store, leaves = build(7)
        new = stored_hashes(7, b"leaf 7", store.read)
        # Record 7 completes subtrees of 2, 4 and 8 leaves: their hashes follow the leaf hash.
        assert new == [
            leaf_hash(b"leaf 7"),
            root_hash([*leaves[6:7], leaf_hash(b"leaf 7")]),
            root_hash([*leaves[4:7], leaf_hash(b"leaf 7")]),
            root_hash([*leaves, leaf_hash(b"leaf 7")]),
        ]
        assert store.calls == [[stored_hash_index(2, 0), stored_hash_index(1, 2), stored_hash_index(0, 6)]]

    def test_record_hash_variant_takes_the_hash(self) -> None:
        store, _ = build(3)
        assert stored_hashes_for_record(3, leaf_hash(b"z"), store.read) == stored_hashes(3, b"z", store.read)

    def test_record_hash_wrong_length(self) -> None:
        with pytest.raises(ValueError, match="record hash has wrong length: expected 32 bytes, got 3"):
            stored_hashes_for_record(0, b"abc", lambda indexes: [])

    def test_negative_record_number(self) -> None:
        with pytest.raises(ValueError, match="invalid record number -1"):
            stored_hashes(-1, b"", lambda indexes: [])


class TestTreeAgainstMerkle:
    """Go tlog's TestTree, checked against merkle.py for every size 1..64 and every leaf and pair."""

    N = 64

    def test_every_root_and_proof(self) -> None:
        store = RecordingStore()
        leaves: list[bytes] = []
        roots = [EMPTY_ROOT]
        for n in range(self.N):
            data = f"leaf {n}".encode()
            store.append(n, data)
            leaves.append(leaf_hash(data))
            size = n + 1

            store.calls.clear()
            root = tree_hash(size, store.read)
            assert root == root_hash(leaves)
            assert len(store.calls) == 1 and len(store.calls[0]) <= 1 + size.bit_length()
            roots.append(root)

            for i in range(size):
                store.calls.clear()
                proof = prove_record(size, i, store.read)
                assert len(store.calls) <= 1
                assert proof == inclusion_proof(leaves, i), (size, i)
                verify_inclusion(i, size, leaves[i], proof, root)

            for old in range(size + 1):
                store.calls.clear()
                proof = prove_tree(size, old, store.read)
                assert len(store.calls) <= 1
                assert proof == consistency_proof(leaves, old), (size, old)
                verify_consistency(old, size, proof, roots[old], root)

    def test_corrupted_proofs_fail(self) -> None:
        store, leaves = build(21)
        root = tree_hash(21, store.read)
        for i in range(21):
            proof = prove_record(21, i, store.read)
            for k in range(len(proof)):
                bad = list(proof)
                bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
                with pytest.raises(ProofError):
                    verify_inclusion(i, 21, leaves[i], bad, root)

    def test_sampled_proofs_in_a_larger_tree(self) -> None:
        store, leaves = build(3000, prefix="big")
        rng = random.Random(9162)
        root = root_hash(leaves)
        assert tree_hash(3000, store.read) == root
        for _ in range(40):
            size = rng.randrange(1, 3001)
            i = rng.randrange(size)
            old = rng.randrange(size + 1)
            assert prove_record(size, i, store.read) == inclusion_proof(leaves[:size], i)
            assert prove_tree(size, old, store.read) == consistency_proof(leaves[:size], old)

    def test_empty_tree_reads_nothing(self) -> None:
        store = RecordingStore()
        assert tree_hash(0, store.read) == EMPTY_ROOT
        assert prove_tree(0, 0, store.read) == []
        assert store.calls == []

    def test_single_leaf_proofs_read_nothing(self) -> None:
        store, _ = build(1)
        assert prove_record(1, 0, store.read) == []
        assert prove_tree(1, 1, store.read) == []
        assert store.calls == []


class TestRangesAndStoreFaults:
    """Bad requests are client errors; a misbehaving store is a server fault."""

    @pytest.mark.parametrize(("size", "index"), [(5, 5), (5, -1), (0, 0)])
    def test_record_outside_tree(self, size: int, index: int) -> None:
        store, _ = build(5)
        with pytest.raises(TreeRangeError, match=f"leaf index out of range: index {index}, tree size {size}"):
            prove_record(size, index, store.read)

    def test_old_tree_larger_than_new(self) -> None:
        store, _ = build(5)
        with pytest.raises(TreeRangeError, match="tree sizes out of order: old size 6, new size 5"):
            prove_tree(5, 6, store.read)

    def test_negative_tree_size(self) -> None:
        with pytest.raises(ValueError, match="invalid tree size -3"):
            tree_hash(-3, lambda indexes: [])

    def test_store_returns_too_few_hashes(self) -> None:
        store, _ = build(5)
        with pytest.raises(HashStoreError, match="hash store returned 1 hashes for 2 indexes") as info:
            tree_hash(5, lambda indexes: store.read(indexes)[:1])
        assert info.value.details == {"expected": 2, "got": 1}
        # A server fault, never a client error (400).
        assert isinstance(info.value, RegistryError)
        assert not isinstance(info.value, BadRequest)

    def test_store_returns_a_short_hash(self) -> None:
        store, _ = build(5)
        index = stored_hash_index(0, 4)

        def truncating(indexes: list[int]) -> list[bytes]:
            return [h[:16] if i == index else h for i, h in zip(indexes, store.read(indexes), strict=True)]

        with pytest.raises(HashStoreError, match=f"hash store returned a 16-byte hash at index {index}"):
            prove_record(5, 0, truncating)

    def test_store_fault_while_appending(self) -> None:
        with pytest.raises(HashStoreError, match="hash store returned 0 hashes for 1 indexes"):
            stored_hashes(1, b"x", lambda indexes: [])
