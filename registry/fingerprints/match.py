"""Exact Hamming-radius search over 256-bit PDQ hashes, held in memory (pure: no I/O, no clock).

``MatchIndex.query(bits, threshold)`` returns exactly the entries an exhaustive scan returns: every id whose
hash lies within ``threshold`` bits of the query, nearest first.

How (multi-index hashing, Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index
Hashing", CVPR 2012; the scheme of FAISS ``IndexBinaryMultiHash`` that HMA uses):

- Each segment of the index cuts every hash into ``m`` chunks of ``w`` bits and keeps, per chunk, the rows
  grouped by chunk value (a CSR table: ``starts`` per value, then the rows).
- Pigeonhole: if ``d(x, q) <= t`` then some chunk differs in at most ``r = t // m`` bits, since ``m`` chunks
  each differing in ``r + 1`` or more bits would add up to more than ``t``. That holds even when the chunks
  cover only some of the 256 bits, because the distance over a subset of bits is at most the whole distance.
  So probing every chunk value within ``r`` flips of the query's chunk finds every true match, and each
  candidate is then verified on all 256 bits: no false positives, no misses.
- Two layouts, picked per segment by its size: ``16 x w`` (``w <= 16``, ``r <= 1`` at ``t <= 31``; FAISS's
  16 x 16 with ``nflip = 1``) for small segments, and ``11 x w`` (``w <= 23``, ``r <= 2``) for large ones,
  where a wider chunk cuts the candidates ten-fold for ten times more (cheap) table probes; the chunk
  width follows log2 of the segment size, as the paper advises.
- Thresholds above ``MIH_MAX_THRESHOLD`` use ``exact_scan``, a bit-packed numpy scan of every hash.

Updates are incremental: new rows go to a small tail that is scanned exactly; a full tail becomes a new
segment, and segments merge size-tiered (a newer segment at least 1/4 the size of the one before it is merged
into it), so each row is re-indexed O(log n) times in all, and a query probes only a few segments. A removal
only clears the row's live flag; a merge drops dead rows from its tables, and once dead rows outnumber live
ones the storage is compacted. Queries are correct between any two updates.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any, NamedTuple, NewType

import numpy as np

from registry.fingerprints.phash import DEFAULT_THRESHOLD, PDQ_BITS, PDQ_BYTES

__all__ = [
    "MAX_THRESHOLD",
    "MIH_MAX_THRESHOLD",
    "WIDE_MIN_ROWS",
    "FingerprintId",
    "Match",
    "MatchIndex",
    "exact_scan",
    "to_words",
]

FingerprintId = NewType("FingerprintId", int)

# Multi-index hashing answers exactly up to this threshold (PDQ's operating point, 31: with 16 chunks and
# one flip, 16 * 2 > 31); above it queries fall back to ``exact_scan``.
MIH_MAX_THRESHOLD = DEFAULT_THRESHOLD
# The widest threshold a caller may ask for: a quarter of the bits. Random 256-bit hashes lie 128 +- 8
# apart, so anything wider matches unrelated images.
MAX_THRESHOLD = 64
# Segments with at least this many live rows use the wide 11-chunk layout (measured crossover here).
WIDE_MIN_ROWS = 1 << 19
# New rows wait in an exactly scanned tail (~15 microseconds at this size) until it holds this many.
TAIL_MAX = 4096
# Size-tiered merging: a segment at least 1/_MERGE_RATIO the size of the one before it is merged into it.
_MERGE_RATIO = 4
# Rows per block in ``exact_scan``: bounds the temporaries and keeps them in cache.
_SCAN_BLOCK = 1 << 16

_WORDS = PDQ_BITS // 64
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class Match(NamedTuple):
    """One hit: the matching entry's id and its Hamming distance from the query (a 2-tuple)."""

    candidate_id: FingerprintId
    distance: int


def to_words(bits_matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Pack an ``(n, 32)`` uint8 matrix of PDQ hashes into ``(n, 4)`` uint64 words, most significant first.

    Raises:
        ValueError: the matrix is not ``(n, 32)`` uint8.
    """
    matrix = np.asarray(bits_matrix)
    if matrix.dtype != np.uint8 or matrix.ndim != 2 or matrix.shape[1] != PDQ_BYTES:
        raise ValueError(f"expected an (n, {PDQ_BYTES}) uint8 matrix, got {matrix.dtype} {matrix.shape}")
    return np.ascontiguousarray(matrix).view(">u8").astype(np.uint64)


def exact_scan(
    words: np.ndarray[Any, np.dtype[np.uint64]], query: bytes, threshold: int
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int32]]]:
    """Scan every row of ``words`` (from ``to_words``) for hashes within ``threshold`` of ``query``.

    Returns:
        ``(rows, distances)``: the matching row numbers, ascending, and their distances.

    Raises:
        ValueError: ``query`` is not 32 bytes, or ``threshold`` is outside 0..256.
    """
    if not 0 <= threshold <= PDQ_BITS:
        raise ValueError(f"threshold must be in 0..{PDQ_BITS}, got {threshold}")
    q = _query_words(query)
    rows: list[np.ndarray[Any, Any]] = []
    dists: list[np.ndarray[Any, Any]] = []
    for lo in range(0, len(words), _SCAN_BLOCK):
        block = words[lo : lo + _SCAN_BLOCK]
        # Column by column with a uint16 accumulator: about twice as fast as one sum over axis 1.
        d = np.bitwise_count(block[:, 0] ^ q[0]).astype(np.uint16)
        for j in range(1, _WORDS):
            d += np.bitwise_count(block[:, j] ^ q[j])
        hit = np.flatnonzero(d <= threshold)
        if hit.size:
            rows.append(hit + lo)
            dists.append(d[hit])
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int32)
    return np.concatenate(rows).astype(np.int64), np.concatenate(dists).astype(np.int32)


class MatchIndex:
    """Exact radius search over 256-bit hashes keyed by ``FingerprintId`` (see the module docstring).

    Not thread-safe; meant for one asyncio loop. Every method leaves the index consistent, so a query
    between any two updates is exact.
    """

    def __init__(self, *, wide_min_rows: int = WIDE_MIN_ROWS, tail_max: int = TAIL_MAX) -> None:
        if wide_min_rows < 1 or tail_max < 1:
            raise ValueError("wide_min_rows and tail_max must be positive")
        # Row storage, grown by doubling; row r holds one hash. Rows are never rewritten, only marked dead.
        self._words = np.empty((0, _WORDS), np.uint64)
        self._ids = np.empty(0, np.int64)
        self._alive = np.empty(0, np.bool_)
        # Rows in use, live or dead (the rest of the storage is spare capacity).
        self._rows = 0
        # Live rows, i.e. len(self).
        self._live = 0
        # Indexed row ranges, oldest first; together with the tail they cover rows [0, self._rows).
        self._segments: list[_Segment] = []
        # Rows [self._tail_start, self._rows) are not indexed yet and are scanned exactly.
        self._tail_start = 0
        # id -> row for the live rows of the tail (segments have their own id tables).
        self._tail_ids: dict[int, int] = {}
        # Layout choice and tail size, settable so tests can exercise both layouts on small data.
        self._wide_min_rows = wide_min_rows
        self._tail_max = tail_max

    def __len__(self) -> int:
        return self._live

    def __contains__(self, fingerprint_id: object) -> bool:
        if isinstance(fingerprint_id, bool) or not isinstance(fingerprint_id, int | np.integer):
            return False
        return self._find_live_row(int(fingerprint_id)) is not None

    def add(self, fingerprint_id: FingerprintId | int, bits: bytes) -> None:
        """Add one hash, replacing the hash of ``fingerprint_id`` if it is already present.

        Raises:
            ValueError: ``bits`` is not 32 bytes, or the id does not fit in 64 bits.
        """
        key = _check_id(fingerprint_id)
        row_words = _query_words(bits)
        old = self._find_live_row(key)
        if old is not None:
            self._kill(old, key)
        self._append(np.array([key], np.int64), row_words.reshape(1, _WORDS))
        self._tail_ids[key] = self._rows - 1
        self._after_append()

    def add_many(self, ids: Sequence[int] | np.ndarray[Any, Any], bits_matrix: np.ndarray[Any, Any]) -> None:
        """Add many hashes at once (the bulk load path), replacing those whose id is already present.

        ``bits_matrix`` is ``(n, 32)`` uint8, one hash per row, in the order of ``ids``.

        Raises:
            ValueError: shapes disagree, an id repeats within ``ids``, or an id does not fit in 64 bits.
        """
        id_array = _check_ids(ids)
        new_words = to_words(bits_matrix)
        if len(id_array) != len(new_words):
            raise ValueError(f"got {len(id_array)} ids for {len(new_words)} hashes")
        if len(id_array) == 0:
            return
        ascending = len(id_array) < 2 or bool(np.all(id_array[1:] > id_array[:-1]))
        if not ascending and len(np.unique(id_array)) != len(id_array):
            raise ValueError("ids repeat within one add_many call")
        if self._live:
            for row in self._live_rows_of(id_array):
                self._kill(int(row), int(self._ids[row]))
        first = self._rows
        self._append(id_array, new_words)
        if len(id_array) < self._tail_max:
            self._tail_ids.update(zip(id_array.tolist(), range(first, self._rows), strict=True))
        self._after_append()

    def remove(self, fingerprint_id: FingerprintId | int) -> bool:
        """Remove the hash of ``fingerprint_id``; return whether it was present."""
        key = _check_id(fingerprint_id)
        row = self._find_live_row(key)
        if row is None:
            return False
        self._kill(row, key)
        dead = self._rows - self._live
        if dead > self._live and dead >= self._tail_max:
            self._compact()
        return True

    def query(self, bits: bytes, threshold: int = DEFAULT_THRESHOLD) -> list[Match]:
        """Every entry within ``threshold`` bits of ``bits``, by distance, then id (ties are rare).

        Exact at every threshold: multi-index hashing up to ``MIH_MAX_THRESHOLD``, ``exact_scan`` above.

        Raises:
            ValueError: ``bits`` is not 32 bytes, or ``threshold`` is outside 0..``MAX_THRESHOLD``.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, int):
            raise ValueError(f"threshold must be an int, got {type(threshold).__name__}")
        if not 0 <= threshold <= MAX_THRESHOLD:
            raise ValueError(f"threshold must be in 0..{MAX_THRESHOLD}, got {threshold}")
        q = _query_words(bits)
        if not self._live:
            return []
        if threshold > MIH_MAX_THRESHOLD:
            rows, dist = exact_scan(self._words[: self._rows], bits, threshold)
            live = self._alive[rows]
            rows, dist = rows[live], dist[live]
        else:
            q_int = int.from_bytes(bits, "big")
            parts = [seg.candidates(q_int, threshold) for seg in self._segments]
            parts.append(np.arange(self._tail_start, self._rows, dtype=np.int64))
            cand = np.concatenate(parts)
            d = _distances(self._words[cand], q)
            keep = (d <= threshold) & self._alive[cand]
            # A near match turns up once per chunk it agrees on: keep one copy of each row.
            rows, first = np.unique(cand[keep], return_index=True)
            dist = d[keep][first]
        ids = self._ids[rows]
        order = np.lexsort((ids, dist))
        return [Match(FingerprintId(int(ids[i])), int(dist[i])) for i in order]

    def memory_bytes(self) -> int:
        """Bytes held by the index: its arrays (with spare capacity) plus an estimate for the tail map."""
        arrays = self._words.nbytes + self._ids.nbytes + self._alive.nbytes
        tables = sum(seg.nbytes for seg in self._segments)
        # A dict entry plus two boxed ints, roughly; the tail holds at most ``tail_max`` entries.
        tail = sys.getsizeof(self._tail_ids) + 64 * len(self._tail_ids)
        return arrays + tables + tail

    @property
    def segment_count(self) -> int:
        """Indexed segments a query probes (besides the tail); a gauge for ``/metrics``."""
        return len(self._segments)

    def layout_summary(self) -> str:
        """How the rows are indexed, for logs and benchmarks: ``"11x23 bits: 10000000 rows; tail: 0"``."""
        parts = [f"{seg.layout.chunks}x{seg.layout.width} bits: {seg.span} rows" for seg in self._segments]
        parts.append(f"tail: {self._rows - self._tail_start}")
        return "; ".join(parts)

    # -- updates --------------------------------------------------------------------------------------

    def _append(self, ids: np.ndarray[Any, Any], words: np.ndarray[Any, Any]) -> None:
        n = len(ids)
        need = self._rows + n
        if need > len(self._ids):
            capacity = need if self._rows == 0 else max(need, 2 * len(self._ids))
            self._words = _grow(self._words, capacity, self._rows)
            self._ids = _grow(self._ids, capacity, self._rows)
            self._alive = _grow(self._alive, capacity, self._rows)
        self._words[self._rows : need] = words
        self._ids[self._rows : need] = ids
        self._alive[self._rows : need] = True
        self._rows = need
        self._live += n

    def _after_append(self) -> None:
        if self._rows - self._tail_start >= self._tail_max:
            self._seal_tail()

    def _kill(self, row: int, key: int) -> None:
        self._alive[row] = False
        self._live -= 1
        if row >= self._tail_start:
            self._tail_ids.pop(key, None)

    def _seal_tail(self) -> None:
        """Index the tail as a new segment, then merge segments size-tiered."""
        self._segments.append(self._build(self._tail_start, self._rows))
        self._tail_start = self._rows
        self._tail_ids.clear()
        while len(self._segments) >= 2 and self._segments[-1].span * _MERGE_RATIO >= self._segments[-2].span:
            newer = self._segments.pop()
            older = self._segments.pop()
            self._segments.append(self._build(older.start, newer.stop))

    def _compact(self) -> None:
        """Drop dead rows from storage, renumbering rows, and re-index what is left."""
        keep = np.flatnonzero(self._alive[: self._rows])
        self._words = self._words[keep]
        self._ids = self._ids[keep]
        self._alive = np.ones(len(keep), np.bool_)
        self._rows = self._live = len(keep)
        self._segments = []
        self._tail_start = 0
        self._tail_ids = {}
        if self._rows >= self._tail_max:
            self._seal_tail()
        else:
            self._tail_ids = dict(zip(self._ids.tolist(), range(self._rows), strict=True))

    def _build(self, start: int, stop: int) -> _Segment:
        live = int(np.count_nonzero(self._alive[start:stop]))
        return _Segment.build(self._words, self._ids, self._alive, start, stop, self._layout_for(live))

    def _layout_for(self, rows: int) -> _Layout:
        bits = max(1, math.ceil(math.log2(max(rows, 2))))
        if rows >= self._wide_min_rows:
            return _Layout(chunks=11, width=min(23, max(8, bits + 1)))
        return _Layout(chunks=16, width=min(16, max(8, bits + 1)))

    # -- id look-ups ----------------------------------------------------------------------------------

    def _find_live_row(self, key: int) -> int | None:
        row = self._tail_ids.get(key)
        if row is not None:
            return row
        for seg in reversed(self._segments):
            row = seg.find(key, self._ids)
            if row is not None and self._alive[row]:
                return row
        return None

    def _live_rows_of(self, ids: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The live rows holding any of ``ids`` (vectorised ``_find_live_row``)."""
        found = [seg.find_many(ids, self._ids) for seg in self._segments]
        tail = np.arange(self._tail_start, self._rows, dtype=np.int64)
        found.append(tail[np.isin(self._ids[tail], ids)])
        rows = np.concatenate(found)
        return rows[self._alive[rows]]


@dataclass(frozen=True, slots=True)
class _Layout:
    """``chunks`` chunks of ``width`` bits, chunk c holding bits [c*width, (c+1)*width), MSB first."""

    chunks: int
    width: int

    def radius(self, threshold: int) -> int:
        """Flips to probe per chunk so that the pigeonhole argument covers ``threshold``."""
        return threshold // self.chunks


class _Segment:
    """An immutable multi-index table over rows [start, stop) of the index's storage (dead rows left out)."""

    __slots__ = ("_id_keys", "_id_rows", "_postings", "_starts", "layout", "start", "stop")

    def __init__(
        self,
        start: int,
        stop: int,
        layout: _Layout,
        postings: np.ndarray[Any, Any],
        starts: np.ndarray[Any, Any],
        id_keys: np.ndarray[Any, Any] | None,
        id_rows: np.ndarray[Any, Any] | None,
    ) -> None:
        self.start = start
        self.stop = stop
        self.layout = layout
        # Row offsets (from ``start``), chunk by chunk, grouped by chunk value.
        self._postings = postings
        # Chunk c, value v: postings[starts[c*(2**width+1) + v] : starts[c*(2**width+1) + v + 1]].
        self._starts = starts
        # Sorted ids and their row offsets, or None when the ids of rows [start, stop) are already sorted.
        self._id_keys = id_keys
        self._id_rows = id_rows

    @property
    def span(self) -> int:
        return self.stop - self.start

    @property
    def nbytes(self) -> int:
        tables = [self._postings, self._starts, self._id_keys, self._id_rows]
        return sum(int(a.nbytes) for a in tables if a is not None)

    @classmethod
    def build(
        cls,
        words: np.ndarray[Any, Any],
        ids: np.ndarray[Any, Any],
        alive: np.ndarray[Any, Any],
        start: int,
        stop: int,
        layout: _Layout,
    ) -> _Segment:
        live_mask = alive[start:stop]
        all_live = bool(live_mask.all())
        live = None if all_live else np.flatnonzero(live_mask)
        sub = words[start:stop] if live is None else words[start:stop][live]
        n = len(sub)
        m, w = layout.chunks, layout.width
        table = (1 << w) + 1
        index_dtype = np.int32 if m * n < (1 << 31) else np.int64
        postings = np.empty(m * n, index_dtype)
        starts = np.empty(m * table, index_dtype)
        for c in range(m):
            keys = _chunk_keys(sub, c * w, w)
            # Order within a bucket does not matter, so the fastest (unstable) sort will do.
            order = np.argsort(keys)
            postings[c * n : (c + 1) * n] = order if live is None else live[order]
            counts = np.bincount(keys, minlength=1 << w)
            starts[c * table] = c * n
            np.cumsum(counts, out=starts[c * table + 1 : (c + 1) * table])
            starts[c * table + 1 : (c + 1) * table] += c * n
        seg_ids = ids[start:stop]
        if len(seg_ids) < 2 or bool(np.all(seg_ids[1:] > seg_ids[:-1])):
            # Bulk loads come in id order: search the storage slice itself, no extra table.
            id_keys = id_rows = None
        else:
            rel = np.arange(stop - start) if live is None else live
            by_id = np.argsort(seg_ids[rel], kind="stable")
            id_keys = seg_ids[rel][by_id]
            id_rows = rel[by_id].astype(np.int32)
        return cls(start, stop, layout, postings, starts, id_keys, id_rows)

    def candidates(self, q_int: int, threshold: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Rows whose hash agrees with the query within ``radius`` flips on at least one chunk."""
        m, w = self.layout.chunks, self.layout.width
        chunk_of, masks = _probe_plan(m, w, self.layout.radius(threshold))
        mask = (1 << w) - 1
        q_keys = np.array([(q_int >> (PDQ_BITS - (c + 1) * w)) & mask for c in range(m)], np.int64)
        probe = (q_keys[chunk_of] ^ masks) + chunk_of * ((1 << w) + 1)
        lo = self._starts[probe].astype(np.int64)
        lengths = self._starts[probe + 1] - lo
        total = int(lengths.sum())
        if total == 0:
            return np.empty(0, np.int64)
        # Expand the [lo, lo + length) ranges into one index array without a Python loop.
        ends = np.cumsum(lengths)
        positions = np.repeat(lo - (ends - lengths), lengths) + np.arange(total)
        return self._postings[positions].astype(np.int64) + self.start

    def find(self, key: int, ids: np.ndarray[Any, Any]) -> int | None:
        """The row of ``key`` in this segment (live or not), or None."""
        if self._id_keys is None or self._id_rows is None:
            sl = ids[self.start : self.stop]
            i = int(np.searchsorted(sl, key))
            return self.start + i if i < len(sl) and sl[i] == key else None
        i = int(np.searchsorted(self._id_keys, key))
        if i < len(self._id_keys) and self._id_keys[i] == key:
            return self.start + int(self._id_rows[i])
        return None

    def find_many(self, keys: np.ndarray[Any, Any], ids: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The rows of those ``keys`` present in this segment (live or not)."""
        sorted_ids = ids[self.start : self.stop] if self._id_keys is None else self._id_keys
        if not len(sorted_ids):
            return np.empty(0, np.int64)
        i = np.minimum(np.searchsorted(sorted_ids, keys), len(sorted_ids) - 1)
        i = i[sorted_ids[i] == keys]
        offsets = i if self._id_rows is None else self._id_rows[i]
        return offsets.astype(np.int64) + self.start


@lru_cache(maxsize=64)
def _probe_plan(chunks: int, width: int, radius: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """For every probe: its chunk, and the flip mask (all masks of at most ``radius`` of ``width`` bits)."""
    masks = [sum(1 << b for b in flips) for r in range(radius + 1) for flips in combinations(range(width), r)]
    chunk_of = np.repeat(np.arange(chunks, dtype=np.int64), len(masks))
    all_masks = np.tile(np.array(masks, np.int64), chunks)
    chunk_of.flags.writeable = False
    all_masks.flags.writeable = False
    return chunk_of, all_masks


def _chunk_keys(words: np.ndarray[Any, Any], offset: int, width: int) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Bits [offset, offset + width) of every row (MSB-first numbering), as non-negative integers."""
    word, bit = divmod(offset, 64)
    mask = np.uint64((1 << width) - 1)
    if bit + width <= 64:
        keys = (words[:, word] >> np.uint64(64 - bit - width)) & mask
    else:
        low_bits = bit + width - 64
        high = (words[:, word] & np.uint64((1 << (64 - bit)) - 1)) << np.uint64(low_bits)
        keys = high | (words[:, word + 1] >> np.uint64(64 - low_bits))
    return keys.astype(np.intp)


def _distances(words: np.ndarray[Any, Any], q: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int32]]:
    """Hamming distance of each row of ``words`` to the query words ``q``."""
    return np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int32)


def _query_words(bits: bytes) -> np.ndarray[Any, np.dtype[np.uint64]]:
    if not isinstance(bits, bytes | bytearray | memoryview) or len(bits) != PDQ_BYTES:
        shown = len(bits) if isinstance(bits, bytes | bytearray | memoryview) else type(bits).__name__
        raise ValueError(f"a pdq hash must be {PDQ_BYTES} bytes, got {shown}")
    return np.frombuffer(bytes(bits), ">u8").astype(np.uint64)


def _check_id(fingerprint_id: int) -> int:
    if isinstance(fingerprint_id, bool) or not isinstance(fingerprint_id, int | np.integer):
        raise ValueError(f"fingerprint id must be an int, got {type(fingerprint_id).__name__}")
    key = int(fingerprint_id)
    if not _INT64_MIN <= key <= _INT64_MAX:
        raise ValueError(f"fingerprint id must fit in 64 bits, got {key}")
    return key


def _check_ids(ids: Iterable[int] | np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"ids must be a flat sequence of ints, got {array.dtype} {array.shape}")
    if array.dtype == np.uint64 and array.size and int(array.max()) > _INT64_MAX:
        raise ValueError("fingerprint ids must fit in 64 bits")
    return array.astype(np.int64)


def _grow(array: np.ndarray[Any, Any], capacity: int, used: int) -> np.ndarray[Any, Any]:
    grown = np.empty((capacity, *array.shape[1:]), array.dtype)
    grown[:used] = array[:used]
    return grown
