"""``bench/liveness_eval.py --transport ws``: simulated sessions streamed through the real websocket server.

Everything a deployment has, on loopback: an embedded PostgreSQL (or ``DATABASE_URL``) in a fresh
database, migrated; the registry app (in this process) through whose HTTP API the bench creates verified
operators (development identity provider) and registers one avatar per concurrent session (so that the
one-session-per-avatar and per-operator rules never refuse a session); an ingest key; and a livecheck node
started as its own process (``avatar-registry serve livecheck``, evidence engine required), so the
simulated clients here and the server there each have a core.

Sessions run in real time, ``concurrency`` at once, one websocket connection each: every 50 ms a session
sends what its simulator produced since (sender clock = the simulator's), and reacts to the server's
messages when they arrive (``challenge`` → ``challenge.shown`` and maybe a movement). At the end of the
stream the client sends ``session.close`` and waits for ``session.summary``. Frames carry the registered
avatar's own PDQ hashes (a ``likeness_swap`` shows another avatar's), so likeness is judged against the
references the server loads from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web
from websockets.asyncio.client import connect

from livecheck.simulator import SimSession
from livecheck.simulator.run import SessionResult, session_result
from registry import migrate
from registry.app import make_app
from registry.attestations import devidp
from registry.attestations.verify import key_source_for, keysets_of
from registry.config import Settings
from registry.db import EmbeddedPostgres
from registry.keys import store as key_store
from registry.localsecrets import LocalSecrets
from registry.roles import Role
from registry.services import Services

__all__ = ["run_ws"]

STEP_S = 0.05  # how often a session sends what its simulator produced
AUDIENCE = "avatar-registry-bench"
Job = tuple[str, int, bool, float]  # species, seed, held out, duration


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def _database(tmp: Path) -> AsyncIterator[str]:
    """A fresh, migrated database on ``DATABASE_URL``'s server or an embedded one; dropped afterwards."""
    server_dsn = os.environ.get("DATABASE_URL")
    pg = None
    if not server_dsn:
        pg = EmbeddedPostgres(tmp / "pg")
        server_dsn = pg.start()
    name = f"bench_liveness_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')  # identifier made above, not input
        finally:
            await admin.close()
        dsn = _with_database(server_dsn, name)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate.apply_migrations(conn)
        finally:
            await conn.close()
        try:
            yield dsn
        finally:
            admin = await asyncpg.connect(server_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
    finally:
        if pg is not None:
            pg.stop()


@contextlib.asynccontextmanager
async def _registry(tmp: Path, dsn: str) -> AsyncIterator[tuple[str, Path]]:
    """The registry app on 127.0.0.1 with the development identity provider: (base URL, idp dir)."""
    idp = tmp / "idp"
    idp.mkdir()
    devidp.dev_keygen(idp)
    settings = Settings(
        DATA_DIR=tmp / "data",
        dev_mode=True,
        audience=AUDIENCE,
        identity_providers={devidp.DEV_ISSUER: str(idp / devidp.DEV_JWKS_NAME)},
    )
    # Obviously fake keys: a throwaway database of simulated operators.
    local = LocalSecrets(pii_keys={"bench": b"b" * 32}, pii_current_kid="bench", blind_index_key=b"i" * 32)
    sources = [key_source_for(i, loc) for i, loc in settings.identity_providers.items()]
    for s in sources:
        await s.refresh()
    app = make_app(Services.build(settings, local, keysets_of(sources)), dsn)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp exposes no public accessor for an ephemeral port
    try:
        yield f"http://127.0.0.1:{port}", idp
    finally:
        await runner.cleanup()


async def _key(dsn: str, role: Role) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        _, key = await key_store.create_key(conn, role, label="bench-liveness")
    finally:
        await conn.close()
    return key


async def _avatar(http: aiohttp.ClientSession, base: str, platform: str, idp: Path, n: int) -> dict[str, Any]:
    """A verified operator and its registered avatar: {"avatar_id", "operator_id", "references"}."""
    from tests import imagegen  # the repository's image generator (PIL only): distinct likenesses per seed

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async with http.post(
        f"{base}/v1/operators", json={"display_name": f"Bench {n}"}, headers=auth(platform)
    ) as r:
        body = await r.json()
        if r.status != 201:
            raise RuntimeError(f"creating an operator failed: {r.status} {body}")
    op_id, op_key = body["operator"]["id"], body["key"]["key"]
    async with http.post(f"{base}/v1/operators/{op_id}/identity/nonce", headers=auth(op_key)) as r:
        nonce = (await r.json())["nonce"]
    token = devidp.dev_sign(
        idp / devidp.DEV_PRIVATE_KEY_NAME,
        audience=AUDIENCE,
        nonce=nonce,
        sub=f"bench-person-{uuid.uuid4()}",
        now=time.time(),
    )
    async with http.post(
        f"{base}/v1/operators/{op_id}/identity", json={"attestation": token}, headers=auth(op_key)
    ) as r:
        if r.status != 200:
            raise RuntimeError(f"identity verification failed: {r.status} {await r.text()}")
    buf = io.BytesIO()
    imagegen.illustration(9_300_000 + 7919 * n, (512, 640)).save(buf, "PNG")
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("name", f"Bench Avatar {n}")
    form.add_field("image", io.BytesIO(buf.getvalue()), filename="ref.png", content_type="image/png")
    async with http.post(f"{base}/v1/avatars", data=form, headers=auth(op_key)) as r:
        body = await r.json()
        if r.status != 201:
            raise RuntimeError(f"registering an avatar failed: {r.status} {body}")
    avatar = body["avatar"]
    refs = [bytes.fromhex(img["pdq"]) for img in avatar.get("images", [])]
    if not refs:
        raise RuntimeError(f"the registered avatar lists no image fingerprints: {avatar}")
    return {"avatar_id": avatar["id"], "operator_id": op_id, "references": refs}


@contextlib.contextmanager
def _livecheck(dsn: str, tmp: Path, log: Path) -> Any:
    """A livecheck node in its own process: yields its websocket URL; SIGTERM (a drain) at the end."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "DATA_DIR": str(tmp / "live-data"),
        "LIVECHECK_HOST": "127.0.0.1",
        "LIVECHECK_PORT": "0",
        "LIVECHECK_ENGINE": "evidence",  # refuse to start rather than fall back to the challenge engine
        "LIVECHECK_NODE_ID": f"bench-{secrets.token_hex(3)}",
        "LIVECHECK_LOG_LEVEL": "WARNING",
        "REGISTRY_LOG_LEVEL": "WARNING",
    }
    out = log.open("w")
    cmd = [sys.executable, "-c", "import sys; from registry.cli import main; sys.exit(main(sys.argv[1:]))"]
    proc = subprocess.Popen(
        [*cmd, "serve", "livecheck"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=out,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("livecheck: "):
                url = line.split()[1]
                break
        if url is None:
            raise RuntimeError(f"the livecheck node did not start; see {log}")
        yield url
    finally:
        proc.terminate()  # SIGTERM: the node drains and stops
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


async def _stream(url: str, key: str, sim: SimSession, duration: float) -> tuple[SessionResult, int]:
    """One session over its own connection, in real time; its result and how many times it was refused."""
    loop = asyncio.get_running_loop()
    refused = 0
    async with connect(
        url,
        additional_headers={"Authorization": f"Bearer {key}"},
        subprotocols=["avatar-live.v1"],  # type: ignore[list-item]  # Subprotocol is a NewType of str
        open_timeout=20,
        close_timeout=5,
        max_size=2**20,
    ) as ws:
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected welcome, got {welcome}")
        while True:
            await ws.send(json.dumps(sim.open_message()))
            answer = json.loads(await ws.recv())
            while answer.get("type") not in ("session.accepted", "session.rejected"):
                answer = json.loads(await ws.recv())
            if answer["type"] == "session.accepted":
                break
            if answer.get("reason") not in ("avatar_busy", "operator_busy") or refused > 20:
                raise RuntimeError(f"session refused: {answer}")
            refused += 1  # the previous session of this avatar is still being closed: try again
            await asyncio.sleep(0.5)
        start = loop.time()
        done = asyncio.Event()

        async def reader() -> None:
            async for text in ws:
                msg = json.loads(text)
                sim.on_server_message(msg, loop.time() - start)
                if msg.get("type") == "session.summary":
                    done.set()
                    return

        task = asyncio.create_task(reader())
        try:
            step = 0
            while not sim.terminated and not done.is_set():
                step += 1
                now = min(duration, step * STEP_S)
                delay = start + now - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for msg in sim.messages_until(now):
                    await ws.send(json.dumps(msg))
                if now >= duration:
                    break
            if not sim.terminated and not done.is_set():
                await ws.send(json.dumps(sim.close_message()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return session_result(sim), refused


async def run_ws(
    jobs: list[Job],
    *,
    concurrency: int,
    summarise_one: Callable[[str, int, SessionResult], dict[str, Any]],
    progress: Callable[[int, int, float], None],
) -> list[dict[str, Any]]:
    """Run ``jobs`` through a real livecheck node, ``concurrency`` sessions at a time (see module doc)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-liveness-"))
    try:
        async with _database(tmp) as dsn, _registry(tmp, dsn) as (base, idp):
            platform = await _key(dsn, Role.PLATFORM)
            ingest = await _key(dsn, Role.INGEST)
            slots = min(concurrency, len(jobs))
            async with aiohttp.ClientSession() as http:
                avatars = [await _avatar(http, base, platform, idp, n) for n in range(slots)]
            with _livecheck(dsn, tmp, tmp / "livecheck.log") as url:
                queue: asyncio.Queue[Job] = asyncio.Queue()
                for job in jobs:
                    queue.put_nowait(job)
                results: list[dict[str, Any]] = []
                t0 = time.perf_counter()

                async def worker(avatar: dict[str, Any]) -> None:
                    while not queue.empty():
                        species, seed, heldout, duration = queue.get_nowait()
                        sim = SimSession(
                            species,
                            seed,
                            heldout=heldout,
                            session_id=f"bench-{species}-{seed}-{secrets.token_hex(3)}",
                            avatar_id=avatar["avatar_id"],
                            operator_id=avatar["operator_id"],
                        )
                        sim.use_references(avatar["references"])
                        result, _ = await _stream(url, ingest, sim, duration)
                        results.append(summarise_one(species, seed, result))
                        progress(len(results), len(jobs), time.perf_counter() - t0)

                await asyncio.gather(*(worker(a) for a in avatars))
                return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
