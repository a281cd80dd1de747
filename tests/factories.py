"""Test data made through the real code paths (stores and HTTP), never by hand-written rows."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from registry.attestations import devidp
from registry.keys import store as key_store
from registry.roles import Role

__all__ = ["auth", "make_key", "make_operator", "sign_attestation", "verified_operator"]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_key(pool: asyncpg.Pool, role: Role, operator_id: uuid.UUID | None = None) -> str:
    async with pool.acquire() as conn:
        _, key = await key_store.create_key(conn, role, operator_id=operator_id, label="test")
    return key


async def make_operator(
    client: TestClient[Any, Any], platform_key: str, name: str = "Streamer"
) -> dict[str, Any]:
    """POST /v1/operators; returns {"id", "key"}."""
    r = await client.post("/v1/operators", json={"display_name": name}, headers=auth(platform_key))
    assert r.status == 201, await r.text()
    body = await r.json()
    return {"id": body["operator"]["id"], "key": body["key"]["key"]}


def sign_attestation(idp_dir: Path, audience: str, nonce: str, **claims: Any) -> str:
    kw: dict[str, Any] = {
        "audience": audience,
        "nonce": nonce,
        "sub": f"person-{uuid.uuid4()}",
        "now": time.time(),
    }
    kw.update(claims)
    return devidp.dev_sign(idp_dir / devidp.DEV_PRIVATE_KEY_NAME, **kw)


async def verified_operator(
    client: TestClient[Any, Any], platform_key: str, idp_dir: Path, audience: str, **claims: Any
) -> dict[str, Any]:
    """An operator that has passed identity verification with the development provider."""
    op = await make_operator(client, platform_key)
    r = await client.post(f"/v1/operators/{op['id']}/identity/nonce", headers=auth(op["key"]))
    assert r.status == 201, await r.text()
    nonce = (await r.json())["nonce"]
    token = sign_attestation(idp_dir, audience, nonce, **claims)
    r = await client.post(
        f"/v1/operators/{op['id']}/identity", json={"attestation": token}, headers=auth(op["key"])
    )
    assert r.status == 200, await r.text()
    return op
