"""``avatar-registry log monitor`` as a process: it follows the real log as it grows, and shouts and exits 3
when a log shows a split view."""

from __future__ import annotations

import asyncio
import sys
import uuid
from subprocess import PIPE
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from registry.translog.checkpoint import Checkpoint, sign_checkpoint
from registry.translog.log import append_leaf
from registry.translog.merkle import leaf_hash, root_hash
from registry.translog.note import generate_signer


async def start_cli(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *argv, stdout=PIPE, stderr=PIPE
    )


async def test_monitor_follows_the_live_log(
    client: TestClient[Any, Any], pool: asyncpg.Pool, tmp_path: Any
) -> None:
    key = await (await client.get("/v1/log/key")).text()
    base = str(client.make_url("")).rstrip("/")
    proc = await start_cli(
        "log",
        "monitor",
        base,
        "--key",
        key,
        "--interval",
        "0.4",
        "--count",
        "4",
        "--state",
        str(tmp_path / "state.json"),
    )
    for _ in range(3):
        await asyncio.sleep(0.4)
        async with pool.acquire() as conn, conn.transaction():
            await append_leaf(conn, {"kind": "test.monitor", "avatar_id": str(uuid.uuid4())})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 4 and all(line.startswith("ok ") for line in lines), lines
    assert lines[0].startswith("ok first checkpoint") and any("consistent" in line for line in lines[1:])
    assert (tmp_path / "state.json").exists()


async def test_monitor_shouts_on_a_split_view() -> None:
    signer = generate_signer("split.test/log")
    roots = [root_hash([leaf_hash(b"a"), leaf_hash(b"b")]), root_hash([leaf_hash(b"a"), leaf_hash(b"evil")])]
    served = 0

    async def checkpoint(request: web.Request) -> web.Response:
        nonlocal served
        root = roots[min(served, 1)]
        served += 1
        return web.Response(body=sign_checkpoint(Checkpoint("split.test/log", 2, root), signer))

    app = web.Application()
    app.router.add_get("/v1/log/checkpoint", checkpoint)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("/v1/log"))
        proc = await start_cli(
            "log", "monitor", base, "--key", signer.verifier.key_string, "--interval", "0.1", "--count", "5"
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await server.close()
    assert proc.returncode == 3
    assert "SPLIT VIEW: fork at size 2" in err.decode()
    assert out.decode().splitlines() == ["ok first checkpoint: size 2"]
