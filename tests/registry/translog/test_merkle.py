"""Tests for registry/translog/merkle.py: RFC 6962/9162 hashing, proofs and their verification.

Vectors: the 8-leaf tree of Certificate Transparency's merkle_tree_test (as carried by
transparency-dev/merkle's proof/verify_test.go), Go tlog's record-hash golden value, and real responses of
Google's Argon 2020 CT log (from Go tlog's testdata). Every size up to 64 is also checked against a naive
recursive reading of RFC 6962.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from registry.errors import BadRequest
from registry.translog.merkle import (
    EMPTY_ROOT,
    ProofError,
    TreeRangeError,
    consistency_proof,
    consistency_proof_size,
    inclusion_proof,
    inclusion_proof_size,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

ASSETS = Path(__file__).parent / "assets"

# Certificate Transparency's reference tree (merkle_tree_test.cc): 8 leaves and the roots of sizes 1..8.
CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]] + [
    bytes.fromhex("606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (leaf index, tree size, audit path); the CT source numbers leaves from 1, these from 0.
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, consistency proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_LEAF_HASHES = [leaf_hash(d) for d in CT_LEAVES]


def root_of(size: int) -> bytes:
    return bytes.fromhex(CT_ROOTS[size])


def hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


# A naive reading of RFC 6962 §2.1, recursion and all, to check the real implementation against.
def naive_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(data[:k]) + naive_mth(data[k:])).digest()


def naive_path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return naive_path(m, data[:k]) + [naive_mth(data[k:])]
    return naive_path(m - k, data[k:]) + [naive_mth(data[:k])]


def naive_subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if complete else [naive_mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return naive_subproof(m, data[:k], complete) + [naive_mth(data[k:])]
    return naive_subproof(m - k, data[k:], False) + [naive_mth(data[:k])]


NAIVE_N = 64
NAIVE_DATA = [f"naive leaf {i}".encode() for i in range(NAIVE_N)]
NAIVE_LEAF_HASHES = [leaf_hash(d) for d in NAIVE_DATA]
NAIVE_ROOTS = [naive_mth(NAIVE_DATA[:n]) for n in range(NAIVE_N + 1)]


class TestHashing:
    """RFC 6962 §2.1: leaf and node hashes with their one-byte prefixes."""

    def test_leaf_hash_matches_go_tlog_golden_value(self) -> None:
        # Go tlog note_test.go: RecordHash("hello world") in a formatted tree.
        assert base64.b64encode(leaf_hash(b"hello world")).decode() == (
            "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0="
        )

    def test_leaf_and_node_hashes_use_distinct_prefixes(self) -> None:
        left, right = leaf_hash(b"a"), leaf_hash(b"b")
        assert leaf_hash(b"") == bytes.fromhex(CT_ROOTS[1])
        assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
        # A node's preimage hashed as a leaf gives a different value: no second preimage across levels.
        assert leaf_hash(left + right) != node_hash(left, right)

    def test_empty_root_is_sha256_of_nothing(self) -> None:
        assert root_of(0) == EMPTY_ROOT
        assert root_hash([]) == EMPTY_ROOT


class TestReferenceVectors:
    """Certificate Transparency's published 8-leaf vectors."""

    @pytest.mark.parametrize("size", range(9))
    def test_roots(self, size: int) -> None:
        assert root_hash(CT_LEAF_HASHES[:size]).hex() == CT_ROOTS[size]

    @pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
    def test_inclusion_proofs(self, index: int, size: int, path: list[str]) -> None:
        proof = inclusion_proof(CT_LEAF_HASHES[:size], index)
        assert hexes(proof) == path
        assert inclusion_proof_size(index, size) == len(path)
        verify_inclusion(index, size, CT_LEAF_HASHES[index], proof, root_of(size))

    @pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
    def test_consistency_proofs(self, old: int, new: int, path: list[str]) -> None:
        proof = consistency_proof(CT_LEAF_HASHES[:new], old)
        assert hexes(proof) == path
        assert consistency_proof_size(old, new) == len(path)
        verify_consistency(old, new, proof, root_of(old), root_of(new))


class TestCertificateTransparencyLog:
    """Real proofs served by Google's Argon 2020 log (a tree of 961,984,013 certificates)."""

    @staticmethod
    def load(name: str) -> dict:
        return json.loads((ASSETS / "argon2020" / name).read_text())

    def test_inclusion_of_entry_10000(self) -> None:
        sth, proof, entries = self.load("sth.json"), self.load("proof.json"), self.load("entries.json")
        leaf = leaf_hash(base64.b64decode(entries["entries"][0]["leaf_input"]))
        path = [base64.b64decode(h) for h in proof["audit_path"]]
        root = base64.b64decode(sth["sha256_root_hash"])
        verify_inclusion(proof["leaf_index"], sth["tree_size"], leaf, path, root)
        with pytest.raises(ProofError, match="does not lead to the root"):
            verify_inclusion(proof["leaf_index"] + 1, sth["tree_size"], leaf, path, root)

    def test_consistency_from_3654490(self) -> None:
        sth, proof = self.load("sth.json"), self.load("consistency.json")
        old_root = base64.b64decode("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=")
        path = [base64.b64decode(h) for h in proof["consistency"]]
        root = base64.b64decode(sth["sha256_root_hash"])
        verify_consistency(3654490, sth["tree_size"], path, old_root, root)
        with pytest.raises(ProofError, match="does not lead to the new root"):
            verify_consistency(3654490, sth["tree_size"], path, old_root, bytes([root[0] ^ 1]) + root[1:])
        with pytest.raises(ProofError, match="wrong size: expected 31 hashes, got 30"):
            verify_consistency(3654491, sth["tree_size"], path, old_root, root)


class TestNaiveRecomputation:
    """Every tree size 1..64, every leaf and every pair of sizes, against the recursive RFC 6962 rules."""

    def test_roots_match_naive(self) -> None:
        for n in range(NAIVE_N + 1):
            assert root_hash(NAIVE_LEAF_HASHES[:n]) == NAIVE_ROOTS[n], n

    def test_every_inclusion_proof(self) -> None:
        for n in range(1, NAIVE_N + 1):
            leaves = NAIVE_LEAF_HASHES[:n]
            for i in range(n):
                proof = inclusion_proof(leaves, i)
                assert proof == naive_path(i, NAIVE_DATA[:n]), (i, n)
                assert inclusion_proof_size(i, n) == len(proof)
                assert root_from_inclusion_proof(i, n, leaves[i], proof) == NAIVE_ROOTS[n]
                verify_inclusion(i, n, leaves[i], proof, NAIVE_ROOTS[n])

    def test_every_consistency_proof(self) -> None:
        for n in range(1, NAIVE_N + 1):
            leaves = NAIVE_LEAF_HASHES[:n]
            for m in range(n + 1):
                proof = consistency_proof(leaves, m)
                expected = [] if m in (0, n) else naive_subproof(m, NAIVE_DATA[:n], True)
                assert proof == expected, (m, n)
                assert consistency_proof_size(m, n) == len(proof)
                verify_consistency(m, n, proof, NAIVE_ROOTS[m], NAIVE_ROOTS[n])

    def test_every_flipped_bit_of_every_proof_is_caught(self) -> None:
        # Go tlog's TestTree: corrupting any one proof hash must break the proof.
        for n in range(2, 33):
            leaves = NAIVE_LEAF_HASHES[:n]
            for i in range(n):
                proof = inclusion_proof(leaves, i)
                for k in range(len(proof)):
                    bad = [*proof[:k], bytes([proof[k][0] ^ 1]) + proof[k][1:], *proof[k + 1 :]]
                    with pytest.raises(ProofError, match="does not lead to the root"):
                        verify_inclusion(i, n, leaves[i], bad, NAIVE_ROOTS[n])
            for m in range(1, n):
                proof = consistency_proof(leaves, m)
                for k in range(len(proof)):
                    bad = [*proof[:k], bytes([proof[k][0] ^ 1]) + proof[k][1:], *proof[k + 1 :]]
                    with pytest.raises(ProofError, match=r"does not lead to the (old|new) root"):
                        verify_consistency(m, n, bad, NAIVE_ROOTS[m], NAIVE_ROOTS[n])


# The corruptions transparency-dev/merkle's verify_test.go probes, on the CT vector "leaf 5 of 8".
INCL_INDEX, INCL_SIZE = 5, 8
INCL_PROOF = [bytes.fromhex(h) for h in CT_INCLUSION[2][2]]
INCL_LEAF = CT_LEAF_HASHES[INCL_INDEX]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


class TestInclusionRejections:
    """RFC 9162 §2.1.3.2: each way an inclusion proof can fail, with its own message."""

    def test_valid_proof_passes(self) -> None:
        verify_inclusion(INCL_INDEX, INCL_SIZE, INCL_LEAF, INCL_PROOF, root_of(8))

    @pytest.mark.parametrize(("index", "size"), [(8, 8), (-1, 8), (0, 0), (2, 1)])
    def test_index_outside_tree(self, index: int, size: int) -> None:
        with pytest.raises(ProofError, match=f"leaf index out of range: index {index}, tree size {size}"):
            verify_inclusion(index, size, INCL_LEAF, INCL_PROOF, root_of(8))

    def test_proof_too_long(self) -> None:
        with pytest.raises(ProofError, match="inclusion proof has wrong size: expected 3 hashes, got 4"):
            verify_inclusion(INCL_INDEX, INCL_SIZE, INCL_LEAF, [*INCL_PROOF, root_of(8)], root_of(8))

    def test_proof_too_short(self) -> None:
        with pytest.raises(ProofError, match="inclusion proof has wrong size: expected 3 hashes, got 2"):
            verify_inclusion(INCL_INDEX, INCL_SIZE, INCL_LEAF, INCL_PROOF[:-1], root_of(8))

    def test_non_empty_proof_for_single_leaf_tree(self) -> None:
        with pytest.raises(ProofError, match="inclusion proof has wrong size: expected 0 hashes, got 1"):
            verify_inclusion(0, 1, CT_LEAF_HASHES[0], [SOME_HASH], root_of(1))

    def test_proof_hash_wrong_length(self) -> None:
        bad = [INCL_PROOF[0], b"", INCL_PROOF[2]]
        with pytest.raises(
            ProofError, match="inclusion proof hash 1 has wrong length: expected 32 bytes, got 0"
        ):
            verify_inclusion(INCL_INDEX, INCL_SIZE, INCL_LEAF, bad, root_of(8))

    def test_leaf_hash_wrong_length(self) -> None:
        with pytest.raises(ProofError, match="leaf hash has wrong length: expected 32 bytes, got 9"):
            verify_inclusion(INCL_INDEX, INCL_SIZE, b"WrongLeaf", INCL_PROOF, root_of(8))

    def test_root_hash_wrong_length(self) -> None:
        with pytest.raises(ProofError, match="root hash has wrong length: expected 32 bytes, got 0"):
            verify_inclusion(INCL_INDEX, INCL_SIZE, INCL_LEAF, INCL_PROOF, b"")

    @pytest.mark.parametrize(
        ("index", "size", "leaf", "root"),
        [
            (INCL_INDEX - 1, INCL_SIZE, INCL_LEAF, root_of(8)),
            (INCL_INDEX + 1, INCL_SIZE, INCL_LEAF, root_of(8)),
            (INCL_INDEX ^ 2, INCL_SIZE, INCL_LEAF, root_of(8)),
            (INCL_INDEX, INCL_SIZE, SOME_HASH, root_of(8)),
            (INCL_INDEX, INCL_SIZE, INCL_LEAF, EMPTY_ROOT),
            (INCL_INDEX, INCL_SIZE, INCL_LEAF, SOME_HASH),
        ],
    )
    def test_wrong_leaf_index_or_root(self, index: int, size: int, leaf: bytes, root: bytes) -> None:
        with pytest.raises(
            ProofError, match=r"inclusion proof does not lead to the root: expected [0-9a-f]{64}"
        ):
            verify_inclusion(index, size, leaf, INCL_PROOF, root)

    def test_wrong_tree_size_changes_the_path_length(self) -> None:
        with pytest.raises(ProofError, match="wrong size: expected 4 hashes, got 3"):
            verify_inclusion(INCL_INDEX, INCL_SIZE * 2, INCL_LEAF, INCL_PROOF, root_of(8))

    def test_message_carries_expected_and_computed_root(self) -> None:
        with pytest.raises(ProofError) as info:
            verify_inclusion(INCL_INDEX, INCL_SIZE, INCL_LEAF, INCL_PROOF, SOME_HASH)
        computed = root_from_inclusion_proof(INCL_INDEX, INCL_SIZE, INCL_LEAF, INCL_PROOF)
        assert info.value.message.endswith(f"expected {SOME_HASH.hex()}, computed {computed.hex()}")
        assert info.value.code == "proof_invalid"
        assert isinstance(info.value, BadRequest)


CONS_OLD, CONS_NEW = 6, 8
CONS_PROOF = [bytes.fromhex(h) for h in CT_CONSISTENCY[2][2]]


class TestConsistencyRejections:
    """RFC 9162 §2.1.4.2: each way a consistency proof can fail, with its own message."""

    def test_valid_proof_passes(self) -> None:
        verify_consistency(CONS_OLD, CONS_NEW, CONS_PROOF, root_of(6), root_of(8))

    def test_sizes_out_of_order(self) -> None:
        with pytest.raises(ProofError, match="tree sizes out of order: old size 8, new size 6"):
            verify_consistency(8, 6, CONS_PROOF, root_of(8), root_of(6))

    def test_negative_old_size(self) -> None:
        with pytest.raises(ProofError, match="tree sizes out of order: old size -1, new size 8"):
            verify_consistency(-1, 8, CONS_PROOF, root_of(6), root_of(8))

    def test_empty_proof_between_different_sizes(self) -> None:
        with pytest.raises(ProofError, match="consistency proof has wrong size: expected 3 hashes, got 0"):
            verify_consistency(CONS_OLD, CONS_NEW, [], root_of(6), root_of(8))

    def test_proof_too_long(self) -> None:
        with pytest.raises(ProofError, match="consistency proof has wrong size: expected 3 hashes, got 4"):
            verify_consistency(CONS_OLD, CONS_NEW, [*CONS_PROOF, root_of(8)], root_of(6), root_of(8))

    def test_proof_too_long_for_power_of_two_old_size(self) -> None:
        proof = consistency_proof(CT_LEAF_HASHES, 4)
        with pytest.raises(ProofError, match="consistency proof has wrong size: expected 1 hashes, got 2"):
            verify_consistency(4, 8, [*proof, SOME_HASH], root_of(4), root_of(8))

    def test_proof_too_short(self) -> None:
        with pytest.raises(ProofError, match="consistency proof has wrong size: expected 3 hashes, got 2"):
            verify_consistency(CONS_OLD, CONS_NEW, CONS_PROOF[:-1], root_of(6), root_of(8))

    def test_equal_sizes_need_an_empty_proof(self) -> None:
        with pytest.raises(ProofError, match="consistency proof has wrong size: expected 0 hashes, got 1"):
            verify_consistency(8, 8, [EMPTY_ROOT], root_of(8), root_of(8))

    def test_equal_sizes_need_equal_roots(self) -> None:
        with pytest.raises(ProofError, match="consistency proof does not lead to the old root"):
            verify_consistency(8, 8, [], root_of(7), root_of(8))

    def test_from_empty_tree_needs_an_empty_proof(self) -> None:
        with pytest.raises(ProofError, match="consistency proof has wrong size: expected 0 hashes, got 1"):
            verify_consistency(0, 8, [EMPTY_ROOT], EMPTY_ROOT, root_of(8))

    def test_from_empty_tree_needs_the_empty_root(self) -> None:
        verify_consistency(0, 8, [], EMPTY_ROOT, root_of(8))
        with pytest.raises(ProofError, match=f"does not lead to the old root: expected {SOME_HASH.hex()}"):
            verify_consistency(0, 8, [], SOME_HASH, root_of(8))

    def test_wrong_old_root(self) -> None:
        with pytest.raises(ProofError, match="consistency proof does not lead to the old root"):
            verify_consistency(CONS_OLD, CONS_NEW, CONS_PROOF, root_of(5), root_of(8))

    def test_wrong_new_root(self) -> None:
        with pytest.raises(ProofError, match="consistency proof does not lead to the new root"):
            verify_consistency(CONS_OLD, CONS_NEW, CONS_PROOF, root_of(6), root_of(7))

    def test_swapped_roots(self) -> None:
        with pytest.raises(ProofError, match="does not lead to the old root"):
            verify_consistency(CONS_OLD, CONS_NEW, CONS_PROOF, root_of(8), root_of(6))

    def test_proof_hash_wrong_length(self) -> None:
        bad = [CONS_PROOF[0], CONS_PROOF[1][:31], CONS_PROOF[2]]
        with pytest.raises(
            ProofError, match="consistency proof hash 1 has wrong length: expected 32 bytes, got 31"
        ):
            verify_consistency(CONS_OLD, CONS_NEW, bad, root_of(6), root_of(8))

    def test_old_root_wrong_length(self) -> None:
        with pytest.raises(ProofError, match="old root hash has wrong length: expected 32 bytes, got 9"):
            verify_consistency(CONS_OLD, CONS_NEW, CONS_PROOF, b"WrongRoot", root_of(8))

    def test_new_root_wrong_length(self) -> None:
        with pytest.raises(ProofError, match="new root hash has wrong length: expected 32 bytes, got 9"):
            verify_consistency(CONS_OLD, CONS_NEW, CONS_PROOF, root_of(6), b"WrongRoot")

    @pytest.mark.parametrize(("old", "new"), [(5, 8), (7, 8), (CONS_OLD ^ 2, 8), (6, 16), (6, 4)])
    def test_wrong_sizes_are_caught(self, old: int, new: int) -> None:
        with pytest.raises(ProofError):
            verify_consistency(old, new, CONS_PROOF, root_of(6), root_of(8))

    @pytest.mark.parametrize(
        "proof",
        [
            [SOME_HASH, *CONS_PROOF],
            [root_of(6), *CONS_PROOF],
            [CONS_PROOF[0], *CONS_PROOF],
            [*CONS_PROOF[:1], SOME_HASH, *CONS_PROOF[1:]],
        ],
    )
    def test_extra_hashes_are_caught(self, proof: list[bytes]) -> None:
        with pytest.raises(ProofError, match="consistency proof has wrong size: expected 3 hashes, got 4"):
            verify_consistency(CONS_OLD, CONS_NEW, proof, root_of(6), root_of(8))


class TestGenerationRanges:
    """Asking for a proof outside the tree is a client error, not a crash."""

    def test_inclusion_index_outside_tree(self) -> None:
        with pytest.raises(TreeRangeError, match="leaf index out of range: index 8, tree size 8") as info:
            inclusion_proof(CT_LEAF_HASHES, 8)
        assert info.value.code == "tree_range_invalid"
        assert info.value.details == {"index": 8, "tree_size": 8}

    def test_consistency_old_size_beyond_tree(self) -> None:
        with pytest.raises(TreeRangeError, match="tree sizes out of order: old size 9, new size 8"):
            consistency_proof(CT_LEAF_HASHES, 9)

    def test_size_helpers_check_ranges_too(self) -> None:
        with pytest.raises(TreeRangeError, match="leaf index out of range"):
            inclusion_proof_size(0, 0)
        with pytest.raises(TreeRangeError, match="tree sizes out of order"):
            consistency_proof_size(3, 2)
