"""The transparency log over HTTP (DESIGN §8): checkpoint and key, entries, proofs, tiles, certificates, the
identity-revocation leaf, and the signer's one-second promise — each checked with the pure verifiers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import time
import uuid
from pathlib import Path
from subprocess import PIPE
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from registry.config import Settings
from registry.translog.checkpoint import Checkpoint, open_checkpoint
from registry.translog.log import append_leaf
from registry.translog.merkle import leaf_hash, root_hash, verify_consistency, verify_inclusion
from registry.translog.note import Verifier, parse_verifier_key
from registry.translog.storedhash import tree_hash
from registry.translog.tiles import Tile, decode_entry_bundle, hash_from_tile, new_tiles, tile_for_index
from registry.translog.verify_cert import verify_certificate
from tests.factories import auth, make_operator

Client = TestClient[Any, Any]


def registration(avatar_id: uuid.UUID, owner: uuid.UUID) -> dict[str, Any]:
    digest = hashlib.sha256(avatar_id.bytes).hexdigest()
    return {
        "kind": "avatar.registered",
        "avatar_id": str(avatar_id),
        "owner_operator_id": str(owner),
        "name_sha256": hashlib.sha256(b"name" + avatar_id.bytes).hexdigest(),
        "images": [digest],
        "pdq": [digest[::-1]],
        "model_sha256": None,
        "status": "active",
    }


async def append(pool: asyncpg.Pool, leaves: list[dict[str, Any]]) -> list[int]:
    async with pool.acquire() as conn, conn.transaction():
        return [await append_leaf(conn, leaf) for leaf in leaves]


def filler(n: int) -> list[dict[str, Any]]:
    return [{"kind": "test.filler", "avatar_id": str(uuid.uuid4()), "n": i} for i in range(n)]


async def log_key(client: Client) -> Verifier:
    r = await client.get("/v1/log/key")
    assert r.status == 200 and r.content_type == "text/plain"
    return parse_verifier_key(await r.text())


async def checkpoint_at_least(client: Client, size: int, within: float = 3.0) -> tuple[Checkpoint, bytes]:
    """Poll the checkpoint until it covers ``size`` leaves (the signer runs on NOTIFY and every second)."""
    key = await log_key(client)
    deadline = time.monotonic() + within
    while True:
        r = await client.get("/v1/log/checkpoint")
        assert r.status == 200, await r.text()
        note = await r.read()
        checkpoint = open_checkpoint(note, key)
        if checkpoint.size >= size or time.monotonic() > deadline:
            assert checkpoint.size >= size, f"no checkpoint of {size} leaves within {within} s"
            return checkpoint, note
        await asyncio.sleep(0.02)


async def fetch_leaf_hashes(client: Client, size: int) -> list[bytes]:
    """Every leaf hash of the tree, from the entry bundles."""
    hashes: list[bytes] = []
    for tile in new_tiles(0, size):
        if tile.level != 0:
            continue
        r = await client.get(f"/v1/log/{Tile(level=-1, index=tile.index, width=tile.width).path}")
        assert r.status == 200
        hashes += [leaf_hash(e) for e in decode_entry_bundle(await r.read(), tile.width)]
    return hashes


async def test_key_and_checkpoint_follow_c2sp(client: Client, pool: asyncpg.Pool, settings: Settings) -> None:
    [index] = await append(pool, filler(1))
    key = await log_key(client)
    assert key.name == settings.log_origin
    checkpoint, note = await checkpoint_at_least(client, index + 1)
    text = note.decode()
    body, _, signatures = text.partition("\n\n")
    assert body.split("\n") == [
        settings.log_origin,
        str(checkpoint.size),
        base64.b64encode(checkpoint.root_hash).decode(),
    ]
    assert signatures.startswith(f"— {settings.log_origin} ")
    assert checkpoint.root_hash == root_hash(await fetch_leaf_hashes(client, checkpoint.size))


async def test_a_new_leaf_is_signed_within_one_second(client: Client, pool: asyncpg.Pool) -> None:
    await checkpoint_at_least(client, 1)
    started = time.monotonic()
    [index] = await append(pool, filler(1))
    await checkpoint_at_least(client, index + 1, within=1.0)
    assert time.monotonic() - started < 1.0


async def test_entries_serve_the_exact_leaf_bytes(client: Client, pool: asyncpg.Pool) -> None:
    avatar, owner = uuid.uuid4(), uuid.uuid4()
    [index] = await append(pool, [registration(avatar, owner)])
    await checkpoint_at_least(client, index + 1)
    r = await client.get(f"/v1/log/entries/{index}")
    assert r.status == 200
    assert "immutable" in r.headers["Cache-Control"]
    body = await r.json()
    leaf = base64.b64decode(body["leaf"])
    assert body["index"] == index and json.loads(leaf) == body["leaf_json"]
    assert body["leaf_json"]["avatar_id"] == str(avatar) and body["leaf_json"]["v"] == 1


@pytest.mark.parametrize(("raw", "status"), [("abc", 400), ("01", 400), ("-1", 400), ("99999999999", 404)])
async def test_bad_or_unreached_entries_are_refused(client: Client, raw: str, status: int) -> None:
    r = await client.get(f"/v1/log/entries/{raw}")
    assert r.status == status
    assert (await r.json())["error"]["code"] in {"bad_index", "log_entry_not_found"}


async def test_inclusion_proofs_verify_against_the_checkpoint(client: Client, pool: asyncpg.Pool) -> None:
    indexes = await append(pool, filler(9))
    checkpoint, _ = await checkpoint_at_least(client, indexes[-1] + 1)
    hashes = await fetch_leaf_hashes(client, checkpoint.size)
    for index in {0, indexes[0], indexes[4], checkpoint.size - 1}:
        r = await client.get("/v1/log/proof/inclusion", params={"index": index, "tree_size": checkpoint.size})
        assert r.status == 200, await r.text()
        body = await r.json()
        assert (body["index"], body["tree_size"]) == (index, checkpoint.size)
        proof = [base64.b64decode(h) for h in body["hashes"]]
        verify_inclusion(index, checkpoint.size, hashes[index], proof, checkpoint.root_hash)


async def test_consistency_proofs_link_two_checkpoints(client: Client, pool: asyncpg.Pool) -> None:
    [first] = await append(pool, filler(1))
    old, _ = await checkpoint_at_least(client, first + 1)
    later = await append(pool, filler(5))
    new, _ = await checkpoint_at_least(client, later[-1] + 1)
    r = await client.get("/v1/log/proof/consistency", params={"from": old.size, "to": new.size})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert (body["from"], body["to"]) == (old.size, new.size)
    proof = [base64.b64decode(h) for h in body["hashes"]]
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("inclusion", {"index": 0, "tree_size": 2**62}, "tree_size_not_reached"),
        ("consistency", {"from": 1, "to": 2**62}, "tree_size_not_reached"),
        ("inclusion", {"index": 5, "tree_size": 5}, "tree_range_invalid"),
        ("consistency", {"from": 3, "to": 2}, "tree_range_invalid"),
        ("inclusion", {"index": -1, "tree_size": 5}, "validation_error"),
        ("consistency", {"from": "x", "to": 2}, "validation_error"),
    ],
)
async def test_bad_proof_requests_are_400(
    client: Client, pool: asyncpg.Pool, path: str, params: dict[str, Any], code: str
) -> None:
    [index] = await append(pool, filler(1))
    await checkpoint_at_least(client, max(index + 1, 6))
    r = await client.get(f"/v1/log/proof/{path}", params=params)
    assert r.status == 400
    assert (await r.json())["error"]["code"] == code


async def test_tiles_rebuild_the_checkpoint_root(client: Client, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        size = await conn.fetchval("SELECT size FROM log_head")
    # At least one full level-0 tile and a partial one after it.
    await append(pool, filler(max(0, 300 - size) + 3))
    checkpoint, _ = await checkpoint_at_least(client, 300)
    tiles = {(t.level, t.index): t for t in new_tiles(0, checkpoint.size)}
    data: dict[tuple[int, int], bytes] = {}
    for key, tile in tiles.items():
        r = await client.get(f"/v1/log/{tile.path}")
        assert r.status == 200, (tile.path, await r.text())
        assert r.content_type == "application/octet-stream"
        assert len(data.setdefault(key, await r.read())) == 32 * tile.width
        immutable = "immutable" in r.headers["Cache-Control"]
        assert immutable == tile.is_full, tile.path

    def read(indexes: list[int]) -> list[bytes]:
        out = []
        for i in indexes:
            need = tile_for_index(i)
            tile = tiles[(need.level, need.index)]
            out.append(hash_from_tile(tile, data[(tile.level, tile.index)], i))
        return out

    assert tree_hash(checkpoint.size, read) == checkpoint.root_hash
    full = await client.get("/v1/log/tile/entries/000")
    assert full.status == 200 and "immutable" in full.headers["Cache-Control"]
    assert len(decode_entry_bundle(await full.read(), 256)) == 256


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("tile/0/0", 400),
        ("tile/0/x000/000", 400),
        ("tile/0/000.p/256", 400),
        ("tile/0/000.p/0", 400),
        ("tile/64/000", 400),
        ("tile/entries/../000", 400),
        ("tile/0/x001/000", 404),
        ("tile/3/000", 404),
    ],
)
async def test_bad_or_missing_tiles(client: Client, path: str, status: int) -> None:
    r = await client.get(f"/v1/log/{path}")
    assert r.status == status, await r.text()
    assert (await r.json())["error"]["code"] in {"tile_path_invalid", "tile_not_found", "not_found"}


async def run_cli(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *argv, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_certificate_verifies_offline_and_through_the_cli(
    client: Client, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    avatar, owner = uuid.uuid4(), uuid.uuid4()
    leaf = registration(avatar, owner)
    [index] = await append(pool, [leaf])
    r = await client.get(f"/v1/avatars/{avatar}/certificate")
    assert r.status == 200, await r.text()
    cert = await r.json()
    assert cert["leaf_index"] == index
    key = await log_key(client)
    verified = verify_certificate(cert["jws"], key.key_string)
    assert (verified.avatar_id, verified.owner_operator_id, verified.leaf_index) == (avatar, owner, index)
    assert verified.fingerprints == {k: leaf[k] for k in ("name_sha256", "images", "pdq", "model_sha256")}
    assert verified.checkpoint.size > index
    good = tmp_path / "cert.json"
    good.write_text(json.dumps(cert))
    # The same certificate with one payload character changed no longer verifies.
    head, payload, sig = cert["jws"].split(".")
    swapped = "A" if payload[-2] != "A" else "B"
    bad = tmp_path / "tampered.jws"
    bad.write_text(".".join([head, payload[:-2] + swapped + payload[-1], sig]))
    code, out, _ = await run_cli("log", "verify", "--certificate", str(good), "--key", key.key_string)
    assert code == 0 and json.loads(out)["avatar_id"] == str(avatar)
    code, _, err = await run_cli("log", "verify", "--certificate", str(bad), "--key", key.key_string)
    assert code == 2 and "certificate" in err


async def test_certificate_of_an_unregistered_avatar_is_404(client: Client) -> None:
    r = await client.get(f"/v1/avatars/{uuid.uuid4()}/certificate")
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "certificate_not_found"


async def test_identity_revocation_is_logged_and_announced(
    client: Client, pool: asyncpg.Pool, platform_key: str, staff_key: str, dsn: str
) -> None:
    op = await make_operator(client, platform_key)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("live_control", lambda *args: heard.put_nowait(args[3]))
        reason = "identity document reported stolen"
        r = await client.post(
            f"/v1/operators/{op['id']}/identity/revoke", json={"reason": reason}, headers=auth(staff_key)
        )
        assert r.status == 200, await r.text()
        message = json.loads(await asyncio.wait_for(heard.get(), 2))
    finally:
        await listener.close()
    assert message == {"kind": "operator_revoked", "operator_id": op["id"]}
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT idx, leaf FROM log_entries WHERE subject = $1 AND kind = 'operator.identity_revoked'",
            uuid.UUID(op["id"]),
        )
    leaf = json.loads(row["leaf"])
    assert leaf["reason_sha256"] == hashlib.sha256(reason.encode()).hexdigest()
    assert reason not in row["leaf"].decode()


async def test_readiness_reports_the_signer(client: Client) -> None:
    r = await client.get("/readyz")
    body = await r.json()
    assert body["checks"]["translog"]["ok"] is True
    assert body["checks"]["translog"]["failed_rounds"] == 0
