"""Time the in-memory PDQ match index against HMA's default FAISS index and a plain numpy scan.

    .venv/bin/python bench/match.py [--sizes 1000000,10000000] [--queries 1000] [--scan-queries 40]

For each size N, in one process and on the same data:

1. N random 256-bit hashes, with near-duplicates planted for every query: one at each distance in
   ``PLANTED`` (0 to 31, which must be found at threshold 31) and decoys at 32 and 40 (which must not).
2. Build ``registry.fingerprints.match.MatchIndex`` (``add_many``) and FAISS ``IndexBinaryMultiHash(256, 16,
   16)`` with ``nflip = 1`` (what HMA runs, via python-threatexchange ``PDQMultiHashIndex``; OpenMP held to
   one thread, since one query at a time runs on one core either way): build time, memory.
3. ``--queries`` queries at threshold 31 on both indexes, in ``--rounds`` alternating blocks (a block on
   ours, the same block on FAISS, each after a 20-query warm-up) so that both see the same drift in load
   on the shared machine; GC is off while timing. Not query by query: each index then evicts the other's
   working set (gigabytes at 10M) from caches and TLBs between queries, which slows both many times over
   and measures nothing a registry process would see. Wall-clock and thread CPU time are both kept: on a
   shared machine the wall-clock tail is mostly other processes' time slices. FAISS is asked with
   ``range_search(q, 32)``, as HMA does (FAISS keeps distances strictly below the radius).
4. ``--scan-queries`` of them also through ``exact_scan``, the bit-packed numpy scan, which is the ground
   truth for recall: the fraction of the scan's hits each index returns (and whether it returns the
   exact same hits and distances). Every query's planted hashes are checked as well.

Prints one TSV row per size (times in ms) and writes ``bench/results/match.json``
({"machine": ..., "runs": [...]}). Targets (DESIGN §9): our p99 / FAISS p99 <= 1.0 at 1M and 10M, recall
1.0, index memory at 10M < 2 GB. About 4 minutes and 6 GB of RAM at both sizes on the 2-core machine
(FAISS's index alone takes ~3 GB at 10M).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.fingerprints.match import MatchIndex, exact_scan, to_words

RESULTS = Path(__file__).resolve().parent / "results" / "match.json"
THRESHOLD = 31
# Planted next to each query: these distances must be found...
PLANTED = (0, 4, 8, 12, 16, 20, 24, 28, 30, 31)
# ...and these must not.
DECOYS = (32, 40)
COLUMNS = (
    "size",
    "ours_p50_ms",
    "ours_p99_ms",
    "faiss_p50_ms",
    "faiss_p99_ms",
    "p99_ratio",
    "cpu_p99_ratio",
    "scan_p50_ms",
    "scan_p99_ms",
    "ours_recall",
    "faiss_recall",
    "ours_build_s",
    "faiss_build_s",
    "ours_memory_mb",
    "faiss_rss_mb",
)

_Array = np.ndarray[Any, Any]


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def flip_bits(row: _Array, distance: int, rng: np.random.Generator) -> _Array:
    """A copy of the 32-byte ``row`` with exactly ``distance`` bits flipped."""
    bits = np.unpackbits(row)
    bits[rng.choice(256, size=distance, replace=False)] ^= 1
    return np.packbits(bits)


def make_data(size: int, queries: int, seed: int) -> tuple[_Array, _Array, dict[int, list[int]]]:
    """Random hashes with near-duplicates planted for each query; returns (data, queries, planted rows)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    qs = rng.integers(0, 256, size=(queries, 32), dtype=np.uint8)
    per_query = len(PLANTED) + len(DECOYS)
    if queries * per_query > size:
        raise SystemExit(f"--queries {queries} needs at least {queries * per_query} hashes")
    rows = rng.choice(size, size=queries * per_query, replace=False)
    planted: dict[int, list[int]] = {}
    for i in range(queries):
        mine = rows[i * per_query : (i + 1) * per_query]
        for row, distance in zip(mine, PLANTED + DECOYS, strict=True):
            data[row] = flip_bits(qs[i], distance, rng)
        planted[i] = [int(r) for r in mine[: len(PLANTED)]]
    return data, qs, planted


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def run_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    import faiss  # a benchmark-only dependency (the ``bench`` extra)

    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    data, qs, planted = make_data(size, args.queries, args.seed + size)
    log(f"{size:,}: data ready in {time.perf_counter() - started:.1f} s")

    before = rss()
    t0 = time.perf_counter()
    ours = MatchIndex()
    ours.add_many(np.arange(size, dtype=np.int64), data)
    ours_build = time.perf_counter() - t0
    ours_rss = rss() - before
    log(f"{size:,}: our index built in {ours_build:.1f} s, {ours.memory_bytes() / 1e6:.0f} MB")

    before = rss()
    t0 = time.perf_counter()
    mih = faiss.IndexBinaryMultiHash(256, 16, 16)
    mih.nflip = THRESHOLD // 16
    mih.add(data)
    faiss_build = time.perf_counter() - t0
    faiss_rss = rss() - before
    log(f"{size:,}: FAISS built in {faiss_build:.1f} s, RSS +{faiss_rss / 1e6:.0f} MB")

    query_bytes = [bytes(q) for q in qs]
    ours_ms: list[float] = []
    faiss_ms: list[float] = []
    # CPU time of this thread too: on a shared machine, wall-clock tails are mostly other processes' slices.
    ours_cpu: list[float] = []
    faiss_cpu: list[float] = []
    ours_hits: list[dict[int, int]] = []
    faiss_hits: list[dict[int, int]] = []
    warm = min(20, len(qs))
    gc.disable()
    try:
        for block in np.array_split(np.arange(len(qs)), args.rounds):
            for i in range(warm):  # first-touch effects and caches, after the other index ran
                ours.query(query_bytes[i], THRESHOLD)
            for i in block.tolist():
                c0, t0 = time.thread_time(), time.perf_counter()
                result = ours.query(query_bytes[i], THRESHOLD)
                c1, t1 = time.thread_time(), time.perf_counter()
                ours_ms.append((t1 - t0) * 1e3)
                ours_cpu.append((c1 - c0) * 1e3)
                ours_hits.append({int(m.candidate_id): m.distance for m in result})
            for i in range(warm):
                mih.range_search(qs[i : i + 1], THRESHOLD + 1)
            for i in block.tolist():
                c0, t0 = time.thread_time(), time.perf_counter()
                _lims, dist, ids = mih.range_search(qs[i : i + 1], THRESHOLD + 1)
                c1, t1 = time.thread_time(), time.perf_counter()
                faiss_ms.append((t1 - t0) * 1e3)
                faiss_cpu.append((c1 - c0) * 1e3)
                faiss_hits.append(dict(zip(ids.tolist(), dist.astype(int).tolist(), strict=True)))
    finally:
        gc.enable()
    log(f"{size:,}: {len(query_bytes)} queries timed")

    words = to_words(data)
    scan_ms: list[float] = []
    expected = found_ours = found_faiss = 0
    identical_ours = identical_faiss = 0
    scanned = min(args.scan_queries, len(query_bytes))
    for i in range(scanned):
        t0 = time.perf_counter()
        rows, dist = exact_scan(words, query_bytes[i], THRESHOLD)
        scan_ms.append((time.perf_counter() - t0) * 1e3)
        truth = dict(zip(rows.tolist(), dist.tolist(), strict=True))
        expected += len(truth)
        found_ours += sum(1 for r in truth if ours_hits[i].get(r) == truth[r])
        found_faiss += sum(1 for r in truth if faiss_hits[i].get(r) == truth[r])
        identical_ours += ours_hits[i] == truth
        identical_faiss += faiss_hits[i] == truth
    del words
    # Planted near-duplicates of every query: all must be found, and no decoy (distance > 31) may be.
    planted_total = sum(len(rows) for rows in planted.values())
    planted_ours = sum(sum(1 for r in planted[i] if r in ours_hits[i]) for i in planted)
    planted_faiss = sum(sum(1 for r in planted[i] if r in faiss_hits[i]) for i in planted)
    beyond_ours = sum(1 for hits in ours_hits for d in hits.values() if d > THRESHOLD)

    ours_p99, faiss_p99 = percentile(ours_ms, 99), percentile(faiss_ms, 99)
    run = {
        "size": size,
        "threshold": THRESHOLD,
        "queries": len(query_bytes),
        "scan_queries": scanned,
        "timing": f"{args.rounds} alternating blocks per index, 20 warm-up queries before each",
        "ours": {
            "index": "MatchIndex (multi-index hashing, exact)",
            "layout": ours.layout_summary(),
            "p50_ms": percentile(ours_ms, 50),
            "p99_ms": ours_p99,
            "max_ms": max(ours_ms),
            "cpu_p50_ms": percentile(ours_cpu, 50),
            "cpu_p99_ms": percentile(ours_cpu, 99),
            "build_s": ours_build,
            "memory_bytes": ours.memory_bytes(),
            "rss_delta_bytes": ours_rss,
            "recall_vs_scan": found_ours / expected if expected else 1.0,
            "identical_to_scan": identical_ours,
            "planted_recall": planted_ours / planted_total,
            "hits_beyond_threshold": beyond_ours,
        },
        "faiss": {
            "index": "IndexBinaryMultiHash(256, 16, 16), nflip=1, range_search(q, 32), 1 thread",
            "faiss_version": faiss.__version__,
            "p50_ms": percentile(faiss_ms, 50),
            "p99_ms": faiss_p99,
            "max_ms": max(faiss_ms),
            "cpu_p50_ms": percentile(faiss_cpu, 50),
            "cpu_p99_ms": percentile(faiss_cpu, 99),
            "build_s": faiss_build,
            "rss_delta_bytes": faiss_rss,
            "recall_vs_scan": found_faiss / expected if expected else 1.0,
            "identical_to_scan": identical_faiss,
            "planted_recall": planted_faiss / planted_total,
        },
        "numpy_scan": {
            "index": "exact_scan: bit-packed uint64 words, numpy bitwise_count",
            "p50_ms": percentile(scan_ms, 50),
            "p99_ms": percentile(scan_ms, 99),
        },
        "scan_hits": expected,
        "p99_ratio_ours_over_faiss": ours_p99 / faiss_p99,
        "cpu_p99_ratio_ours_over_faiss": percentile(ours_cpu, 99) / percentile(faiss_cpu, 99),
        "load_average": list(os.getloadavg()),
        "seconds": time.perf_counter() - started,
    }
    del mih, ours, data
    gc.collect()
    return run


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "load_average_at_start": list(os.getloadavg()),
    }


def row_of(run: dict[str, Any]) -> dict[str, float]:
    return {
        "size": run["size"],
        "ours_p50_ms": run["ours"]["p50_ms"],
        "ours_p99_ms": run["ours"]["p99_ms"],
        "faiss_p50_ms": run["faiss"]["p50_ms"],
        "faiss_p99_ms": run["faiss"]["p99_ms"],
        "p99_ratio": run["p99_ratio_ours_over_faiss"],
        "cpu_p99_ratio": run["cpu_p99_ratio_ours_over_faiss"],
        "scan_p50_ms": run["numpy_scan"]["p50_ms"],
        "scan_p99_ms": run["numpy_scan"]["p99_ms"],
        "ours_recall": run["ours"]["recall_vs_scan"],
        "faiss_recall": run["faiss"]["recall_vs_scan"],
        "ours_build_s": run["ours"]["build_s"],
        "faiss_build_s": run["faiss"]["build_s"],
        "ours_memory_mb": run["ours"]["memory_bytes"] / 1e6,
        "faiss_rss_mb": run["faiss"]["rss_delta_bytes"] / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated index sizes")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries per size (>= 1000 for p99)")
    parser.add_argument("--scan-queries", type=int, default=40, help="queries also run through the scan")
    parser.add_argument("--rounds", type=int, default=4, help="alternating timing blocks per index")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    info = machine()
    runs = []
    print("\t".join(COLUMNS), flush=True)
    for size in sizes:
        run = run_size(size, args)
        runs.append(run)
        row = row_of(run)
        print("\t".join(f"{row[c]:.0f}" if c == "size" else f"{row[c]:.3f}" for c in COLUMNS), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": info, "runs": runs}, indent=2) + "\n")
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
