"""MatchIndex against a brute-force oracle: random hashes, hashes planted at exact distances around the
threshold, adds and removes interleaved with queries, both chunk layouts, merges and compaction."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from registry.fingerprints.match import (
    MAX_THRESHOLD,
    MIH_MAX_THRESHOLD,
    FingerprintId,
    Match,
    MatchIndex,
    exact_scan,
    to_words,
)

# Thresholds on both sides of the multi-index boundary (31) and of the chunk counts (16 and 11 chunks
# change their flip radius at 16 / 11 and 22), and far above it (exact scan).
THRESHOLDS = (0, 1, 10, 11, 15, 16, 21, 22, 30, 31, 32, 33, 40, 64)
# Distances at which hashes are planted next to each query.
PLANTED = (0, 1, 2, 15, 16, 29, 30, 31, 32, 33)


class Oracle:
    """The brute-force reference: every live hash as 256 separate bits, compared one by one."""

    def __init__(self) -> None:
        self.entries: dict[int, np.ndarray[Any, Any]] = {}

    def add(self, key: int, bits: bytes) -> None:
        self.entries[key] = np.unpackbits(np.frombuffer(bits, np.uint8))

    def remove(self, key: int) -> None:
        self.entries.pop(key, None)

    def query(self, bits: bytes, threshold: int) -> list[tuple[int, int]]:
        if not self.entries:
            return []
        keys = list(self.entries)
        matrix = np.stack([self.entries[k] for k in keys])
        dist = (matrix != np.unpackbits(np.frombuffer(bits, np.uint8))).sum(axis=1)
        return sorted((int(d), k) for k, d in zip(keys, dist.tolist(), strict=True) if d <= threshold)


def random_bits(rng: random.Random) -> bytes:
    return rng.getrandbits(256).to_bytes(32, "big")


def at_distance(bits: bytes, distance: int, rng: random.Random) -> bytes:
    """A hash exactly ``distance`` bits away from ``bits``."""
    flips = sum(1 << b for b in rng.sample(range(256), distance))
    return (int.from_bytes(bits, "big") ^ flips).to_bytes(32, "big")


def as_pairs(matches: list[Match]) -> list[tuple[int, int]]:
    return [(m.distance, m.candidate_id) for m in matches]


def check_all(index: MatchIndex, oracle: Oracle, queries: list[bytes]) -> int:
    """Compare every query at every threshold; return how many hits were compared (to prove coverage)."""
    hits = 0
    for q in queries:
        for t in THRESHOLDS:
            expected = oracle.query(q, t)
            assert as_pairs(index.query(q, t)) == expected, f"threshold {t}"
            hits += len(expected)
    return hits


LAYOUTS = {
    # Small segments, 16 chunks (FAISS's 16 x 16 scheme, narrowed to the segment size).
    "narrow": {"wide_min_rows": 1 << 40, "tail_max": 64},
    # Every segment in the wide 11-chunk layout.
    "wide": {"wide_min_rows": 1, "tail_max": 64},
    # Both, depending on segment size; a bigger tail.
    "mixed": {"wide_min_rows": 700, "tail_max": 200},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_brute_force_through_interleaved_updates(layout: str, seed: int) -> None:
    rng = random.Random(seed)
    index = MatchIndex(**LAYOUTS[layout])
    oracle = Oracle()
    next_id = 1000 * seed
    queries = [random_bits(rng) for _ in range(6)]
    planted_ids: list[int] = []
    compared = 0

    def add(bits: bytes) -> int:
        nonlocal next_id
        next_id += 1
        index.add(next_id, bits)
        oracle.add(next_id, bits)
        return next_id

    for round_no in range(6):
        # Background: random hashes, about 128 bits from anything.
        for _ in range(rng.randint(150, 400)):
            add(random_bits(rng))
        # Planted near-duplicates of each query at exact distances around every boundary.
        for q in queries:
            for d in PLANTED:
                planted_ids.append(add(at_distance(q, d, rng)))
        # Remove a random share of everything, planted ones included.
        for key in rng.sample(sorted(oracle.entries), len(oracle.entries) // 5):
            assert index.remove(key)
            oracle.remove(key)
        # Replace a few live entries with new hashes under the same id.
        for key in rng.sample(sorted(oracle.entries), 5):
            bits = at_distance(queries[round_no % len(queries)], rng.choice(PLANTED), rng)
            index.add(key, bits)
            oracle.add(key, bits)
        assert len(index) == len(oracle.entries)
        compared += check_all(index, oracle, queries)
    assert compared > 500  # the planted hashes were actually exercised


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_bulk_load_then_updates_match_brute_force(layout: str) -> None:
    rng = random.Random(99)
    np_rng = np.random.default_rng(99)
    n = 5000
    matrix = np_rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    queries = [bytes(matrix[i]) for i in (3, 1000, 4999)] + [random_bits(rng) for _ in range(3)]
    for q_no, q in enumerate(queries):
        for d_no, d in enumerate(PLANTED):
            matrix[10 + q_no * len(PLANTED) + d_no] = np.frombuffer(at_distance(q, d, rng), np.uint8)
    ids = np.arange(n, dtype=np.int64) * 7 - 3000  # negative ids are fine
    index = MatchIndex(**LAYOUTS[layout])
    index.add_many(ids, matrix)
    oracle = Oracle()
    for key, row in zip(ids.tolist(), matrix, strict=True):
        oracle.add(key, bytes(row))
    assert len(index) == n
    check_all(index, oracle, queries)
    # A second batch out of id order, replacing some existing ids, then removals.
    again = rng.sample(ids.tolist(), 300) + list(range(10**9, 10**9 + 700))
    batch = np_rng.integers(0, 256, size=(len(again), 32), dtype=np.uint8)
    batch[:10] = np.frombuffer(queries[0], np.uint8)  # ten exact copies of one query
    index.add_many(again, batch)
    for key, row in zip(again, batch, strict=True):
        oracle.add(key, bytes(row))
    for key in rng.sample(sorted(oracle.entries), 2000):
        assert index.remove(key)
        oracle.remove(key)
    assert len(index) == len(oracle.entries)
    check_all(index, oracle, queries)


def tight_plants(q: bytes, rng: random.Random) -> list[bytes]:
    """Hashes at distance 31 from ``q`` that only one chunk can find, for every layout the index may use.

    For ``m`` chunks of ``w`` bits the flip radius at 31 is ``r = 31 // m``; a plant has ``r + 1`` flips in
    every chunk but one (the "lucky" chunk, with the remaining 31 - (m - 1)(r + 1) <= r flips), so a wrong
    chunk key, bit order or radius for that one chunk loses it. Four plants per lucky chunk per layout.
    """
    plants = []
    q_int = int.from_bytes(q, "big")
    for chunks, widths in ((16, range(8, 17)), (11, range(8, 24))):
        r = 31 // chunks
        lucky_flips = 31 - (chunks - 1) * (r + 1)
        assert 0 <= lucky_flips <= r
        for width in widths:
            for lucky in [c for c in range(chunks) for _ in range(4)]:
                flips = 0
                for c in range(chunks):
                    for b in rng.sample(range(width), lucky_flips if c == lucky else r + 1):
                        flips |= 1 << (255 - (c * width + b))  # bit i, counted from the most significant
                assert flips.bit_count() == 31
                plants.append((q_int ^ flips).to_bytes(32, "big"))
    return plants


@pytest.mark.parametrize(
    ("wide_min_rows", "n"),
    [(1 << 40, 3000), (1 << 40, 20_000), (1, 3000), (1, 20_000), (1, 70_000)],
    ids=["narrow-13bit", "narrow-16bit", "wide-13bit", "wide-16bit", "wide-18bit"],
)
def test_pigeonhole_tight_plants_are_all_found(wide_min_rows: int, n: int) -> None:
    rng = random.Random(n + wide_min_rows)
    np_rng = np.random.default_rng(n)
    queries = [random_bits(rng) for _ in range(3)]
    per_query = [tight_plants(q, rng) for q in queries]
    plants = [p for group in per_query for p in group]
    matrix = np.concatenate(
        [
            np_rng.integers(0, 256, size=(n, 32), dtype=np.uint8),
            np.frombuffer(b"".join(plants), np.uint8).reshape(-1, 32),
        ]
    )
    index = MatchIndex(wide_min_rows=wide_min_rows)
    index.add_many(np.arange(len(matrix)), matrix)
    for q_no, q in enumerate(queries):
        size = len(per_query[q_no])
        mine = {n + q_no * size + i for i in range(size)}
        found = {m.candidate_id for m in index.query(q, 31) if m.distance == 31}
        assert mine <= found, f"missed {len(mine - found)} of {len(mine)} tight plants"


def test_compaction_after_mass_removal_keeps_answers_exact() -> None:
    rng = random.Random(5)
    index = MatchIndex(tail_max=32, wide_min_rows=500)
    oracle = Oracle()
    q = random_bits(rng)
    for key in range(3000):
        bits = at_distance(q, rng.choice(PLANTED), rng) if key % 10 == 0 else random_bits(rng)
        index.add(key, bits)
        oracle.add(key, bits)
    before = index.memory_bytes()
    for key in range(0, 3000):
        if key % 3:
            assert index.remove(key)
            oracle.remove(key)
    # Dead rows outnumbered live ones, so storage was compacted: memory went down, not up.
    assert index.memory_bytes() < before
    assert len(index) == 1000
    check_all(index, oracle, [q, random_bits(rng)])
    # And the index keeps working afterwards.
    for key in range(5000, 5100):
        bits = at_distance(q, 31, rng)
        index.add(key, bits)
        oracle.add(key, bits)
    check_all(index, oracle, [q])


def test_boundary_planted_at_30_31_32() -> None:
    rng = random.Random(7)
    index = MatchIndex(tail_max=16)
    q = random_bits(rng)
    for key in range(500):
        index.add(key, random_bits(rng))
    index.add(FingerprintId(-1), at_distance(q, 30, rng))
    index.add(FingerprintId(-2), at_distance(q, 31, rng))
    index.add(FingerprintId(-3), at_distance(q, 32, rng))
    assert [m.candidate_id for m in index.query(q, 29)] == []
    assert as_pairs(index.query(q, 30)) == [(30, -1)]
    assert as_pairs(index.query(q, 31)) == [(30, -1), (31, -2)]
    assert as_pairs(index.query(q, 32)) == [(30, -1), (31, -2), (32, -3)]
    assert as_pairs(index.query(q)) == [(30, -1), (31, -2)]  # the default threshold is PDQ's 31


def test_results_are_sorted_by_distance_then_id_and_are_pairs() -> None:
    rng = random.Random(11)
    index = MatchIndex()
    q = random_bits(rng)
    for key, d in [(9, 5), (3, 5), (7, 0), (1, 12), (5, 5)]:
        index.add(key, at_distance(q, d, rng))
    result = index.query(q, 31)
    assert as_pairs(result) == [(0, 7), (5, 3), (5, 5), (5, 9), (12, 1)]
    candidate_id, distance = result[0]  # a Match is a plain (id, distance) pair
    assert (candidate_id, distance) == (7, 0)
    assert result[0] == (7, 0)


def test_add_replaces_and_remove_reports_presence() -> None:
    rng = random.Random(13)
    index = MatchIndex(tail_max=4)
    a, b = random_bits(rng), random_bits(rng)
    index.add(42, a)
    assert 42 in index and 43 not in index and len(index) == 1
    assert as_pairs(index.query(a, 0)) == [(0, 42)]
    for key in range(10):  # push 42 out of the tail into a segment
        index.add(100 + key, random_bits(rng))
    index.add(42, b)
    assert len(index) == 11
    assert index.query(a, 31) == []
    assert as_pairs(index.query(b, 0)) == [(0, 42)]
    assert index.remove(42) is True
    assert index.remove(42) is False
    assert 42 not in index
    assert index.query(b, 64) == []
    assert len(index) == 10


def test_empty_index_answers_empty() -> None:
    index = MatchIndex()
    assert len(index) == 0
    assert index.query(bytes(32), MAX_THRESHOLD) == []
    index.add_many([], np.empty((0, 32), np.uint8))
    assert len(index) == 0


@pytest.mark.parametrize("threshold", [-1, MAX_THRESHOLD + 1, 256])
def test_threshold_outside_bounds_is_refused(threshold: int) -> None:
    with pytest.raises(ValueError, match=r"threshold must be in 0\.\.64"):
        MatchIndex().query(bytes(32), threshold)


@pytest.mark.parametrize("threshold", [True, 31.0, "31"])
def test_threshold_must_be_an_int(threshold: Any) -> None:
    with pytest.raises(ValueError, match="threshold must be an int"):
        MatchIndex().query(bytes(32), threshold)


@pytest.mark.parametrize("bits", [b"", bytes(31), bytes(33), "00" * 32])
def test_hash_must_be_32_bytes(bits: Any) -> None:
    index = MatchIndex()
    with pytest.raises(ValueError, match="must be 32 bytes"):
        index.query(bits, 31)
    with pytest.raises(ValueError, match="must be 32 bytes"):
        index.add(1, bits)


def test_ids_must_be_64_bit_ints() -> None:
    index = MatchIndex()
    with pytest.raises(ValueError, match="fit in 64 bits"):
        index.add(1 << 63, bytes(32))
    with pytest.raises(ValueError, match="must be an int"):
        index.add("7", bytes(32))  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(ValueError, match="flat sequence of ints"):
        index.add_many(np.array([1.5, 2.5]), np.zeros((2, 32), np.uint8))


def test_add_many_checks_its_input() -> None:
    index = MatchIndex()
    with pytest.raises(ValueError, match="got 2 ids for 3 hashes"):
        index.add_many([1, 2], np.zeros((3, 32), np.uint8))
    with pytest.raises(ValueError, match="ids repeat"):
        index.add_many([5, 1, 5], np.zeros((3, 32), np.uint8))
    with pytest.raises(ValueError, match=r"expected an \(n, 32\) uint8 matrix"):
        index.add_many([1], np.zeros((1, 32), np.int64))
    assert len(index) == 0  # nothing half-added


def test_exact_scan_matches_brute_force() -> None:
    np_rng = np.random.default_rng(17)
    matrix = np_rng.integers(0, 256, size=(70_000, 32), dtype=np.uint8)  # more than one scan block
    q = bytes(matrix[123])
    rng = random.Random(17)
    for i, d in enumerate(PLANTED):
        matrix[69_000 + i] = np.frombuffer(at_distance(q, d, rng), np.uint8)
    words = to_words(matrix)
    bits = np.unpackbits(matrix, axis=1)
    expected_all = (bits != np.unpackbits(np.frombuffer(q, np.uint8))).sum(axis=1)
    for t in (0, 31, 32, 100, 256):
        rows, dist = exact_scan(words, q, t)
        expected = np.flatnonzero(expected_all <= t)
        assert rows.tolist() == expected.tolist()
        assert dist.tolist() == expected_all[expected].tolist()
    with pytest.raises(ValueError, match=r"threshold must be in 0\.\.256"):
        exact_scan(words, q, 257)


def test_to_words_keeps_meta_bit_order() -> None:
    bits = bytes(range(32))
    words = to_words(np.frombuffer(bits, np.uint8).reshape(1, 32))
    assert [int(w) for w in words[0]] == [int.from_bytes(bits[i : i + 8], "big") for i in range(0, 32, 8)]


def test_memory_is_accounted_and_reasonable() -> None:
    np_rng = np.random.default_rng(23)
    n = 200_000
    index = MatchIndex()
    index.add_many(np.arange(n), np_rng.integers(0, 256, size=(n, 32), dtype=np.uint8))
    used = index.memory_bytes()
    # At least the raw hashes and ids; at most a few hundred bytes per entry (about 100 at this size).
    assert n * 40 < used < n * 400
    assert index.segment_count == 1


def test_mih_boundary_constant_is_pdq_threshold() -> None:
    # 16 chunks with one flip each cover any distance up to 31 by pigeonhole; the exact scan takes over after.
    assert MIH_MAX_THRESHOLD == 31
    assert MAX_THRESHOLD == 64
