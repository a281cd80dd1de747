"""Time the transparency log's pure core: appends through stored_hashes, roots, proofs and their checks.

    .venv/bin/python bench/merkle.py [--leaves 1000000] [--samples 2000] [--seed 6962]

Appends ``--leaves`` records with ``storedhash.stored_hashes`` into an in-memory dict standing in for the
hash table, and at 1k, 10k, 100k, ... leaves measures the root (``tree_hash``), inclusion and consistency
proof generation (``prove_record`` / ``prove_tree``) and verification (``merkle.verify_*``) on ``--samples``
random requests. Prints one TSV row per size (times in µs) and writes ``bench/results/merkle.json``
({"machine": ..., "figures": ...}). About 10 s and 350 MB at 1M leaves on the 2-core machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from registry.translog.merkle import verify_consistency, verify_inclusion
from registry.translog.storedhash import prove_record, prove_tree, stored_hash_index, stored_hashes, tree_hash

RESULTS = Path(__file__).resolve().parent / "results" / "merkle.json"
COLUMNS = [
    "leaves",
    "append_leaves_per_s",
    "tree_hash_us",
    "inclusion_p50_us",
    "inclusion_p99_us",
    "consistency_p50_us",
    "consistency_p99_us",
    "verify_inclusion_p50_us",
    "verify_consistency_p50_us",
    "hashes_read_per_inclusion",
]


class DictStore:
    """The hash store as a dict from stored-hash index to hash; counts what proofs read."""

    def __init__(self) -> None:
        self.hashes: dict[int, bytes] = {}
        self.read_count = 0

    def read(self, indexes: list[int]) -> list[bytes]:
        self.read_count += len(indexes)
        hashes = self.hashes
        return [hashes[i] for i in indexes]


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(store: DictStore, size: int, samples: int, rng: random.Random) -> dict[str, float]:
    """Root, proof and verification latencies at the current tree size, with the GC off (as timeit does)."""
    clock, read = time.perf_counter_ns, store.read
    roots: dict[int, bytes] = {}
    gc.collect()
    gc.disable()
    try:
        root_times = []
        for _ in range(200):
            start = clock()
            top = tree_hash(size, read)
            root_times.append((clock() - start) / 1000)

        inclusion, verify_incl = [], []
        store.read_count = 0
        for _ in range(samples):
            index = rng.randrange(size)
            start = clock()
            proof = prove_record(size, index, read)
            inclusion.append((clock() - start) / 1000)
            leaf = store.hashes[stored_hash_index(0, index)]
            start = clock()
            verify_inclusion(index, size, leaf, proof, top)
            verify_incl.append((clock() - start) / 1000)
        reads_per_inclusion = store.read_count / samples

        consistency, verify_cons = [], []
        for _ in range(samples):
            old = rng.randrange(1, size + 1)
            if old not in roots:
                roots[old] = tree_hash(old, read)
            start = clock()
            proof = prove_tree(size, old, read)
            consistency.append((clock() - start) / 1000)
            start = clock()
            verify_consistency(old, size, proof, roots[old], top)
            verify_cons.append((clock() - start) / 1000)
    finally:
        gc.enable()
    return {
        "tree_hash_us": statistics.median(root_times),
        "inclusion_p50_us": percentile(inclusion, 0.50),
        "inclusion_p99_us": percentile(inclusion, 0.99),
        "consistency_p50_us": percentile(consistency, 0.50),
        "consistency_p99_us": percentile(consistency, 0.99),
        "verify_inclusion_p50_us": percentile(verify_incl, 0.50),
        "verify_consistency_p50_us": percentile(verify_cons, 0.50),
        "hashes_read_per_inclusion": reads_per_inclusion,
    }


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=6962)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    checkpoints = [n for n in (1_000, 10_000, 100_000, 1_000_000, 10_000_000) if n < args.leaves]
    checkpoints.append(args.leaves)
    store = DictStore()
    rows: list[dict[str, float]] = []
    print("\t".join(COLUMNS))
    started = time.perf_counter()
    size = 0
    position = 0
    for target in checkpoints:
        segment_start, segment_from = time.perf_counter(), size
        hashes = store.hashes
        read = store.read
        while size < target:
            # A leaf the size of a registration record's canonical JSON (digests, no PII).
            leaf = b'{"kind":"registration","avatar":"%08d","sha256":"%064x"}' % (size, size)
            for h in stored_hashes(size, leaf, read):
                hashes[position] = h
                position += 1
            size += 1
        elapsed = time.perf_counter() - segment_start
        row = {"leaves": target, "append_leaves_per_s": (target - segment_from) / elapsed}
        row |= measure(store, size, args.samples, rng)
        rows.append(row)
        print(
            "\t".join(
                f"{row[c]:.0f}" if c != "hashes_read_per_inclusion" else f"{row[c]:.1f}" for c in COLUMNS
            )
        )
        sys.stdout.flush()

    total = time.perf_counter() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "rows": rows,
        "samples_per_size": args.samples,
        "stored_hashes": len(store.hashes),
        "total_seconds": total,
        "peak_rss_mb": peak_rss_mb,
        "store": "in-memory dict, stored-hash index -> 32-byte hash",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine(), "figures": figures}, indent=2) + "\n")
    print(
        f"# {len(store.hashes)} stored hashes, {total:.1f} s, peak RSS {peak_rss_mb:.0f} MB -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
