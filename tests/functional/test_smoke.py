from typing import Any

from aiohttp.test_utils import TestClient


async def test_healthz(client: TestClient[Any, Any]) -> None:
    r = await client.get("/healthz")
    assert r.status == 200
    assert await r.json() == {"status": "ok"}
    assert r.headers["X-Request-Id"]


async def test_readyz(client: TestClient[Any, Any]) -> None:
    r = await client.get("/readyz")
    body = await r.json()
    assert r.status == 200, body
    assert body["checks"]["migrations"]["ok"] is True
