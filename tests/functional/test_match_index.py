"""The per-process match index over HTTP: 503 until loaded, readiness with size and staleness, and changes
reaching another registry process through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from registry.api.match import FINGERPRINTS
from registry.app import make_app
from registry.config import Settings
from registry.fingerprints.service import SLOT_NAMES, LikenessPolicy
from registry.services import Services
from tests import imagegen
from tests.factories import auth
from tests.functional.avatar_helpers import encode, eventually, fresh_image, new_owner, post_form, register

Client = TestClient[Any, Any]


@contextlib.asynccontextmanager
async def another_app(
    services: Services, dsn: str, *, gate: asyncio.Event | None = None, **policy: Any
) -> AsyncIterator[Client]:
    """A second registry app (as another process would be) on the same database, with its own index."""
    app = make_app(dataclasses.replace(services, likeness=LikenessPolicy(**policy)), dsn)
    if gate is not None:
        app[FINGERPRINTS].load_gate = gate
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_readyz_reports_index_size_and_staleness(client: Client) -> None:
    r = await client.get("/readyz")
    index = (await r.json())["checks"]["match_index"]
    assert index["ok"] is True and index["loaded"] is True and index["listening"] is True
    assert index["fingerprints"] == len(SLOT_NAMES) * index["images"]  # 8 dihedral + 3 augmentations each
    assert 0 <= index["staleness_s"] < 30


async def test_match_is_503_until_the_index_is_loaded(
    client: Client, services: Services, dsn: str, platform_key: str, idp_dir: Path, settings: Settings
) -> None:
    owner = await new_owner(client, platform_key, idp_dir, settings.audience)
    r = await register(client, owner["key"], [encode(fresh_image())])
    assert r.status == 201
    gate = asyncio.Event()
    async with another_app(services, dsn, gate=gate, startup_wait_s=0.0) as cold:
        r = await cold.get("/readyz")
        body = await r.json()
        assert r.status == 503 and body["checks"]["match_index"]["loaded"] is False
        r = await cold.post("/v1/match", json={"pdq": "ab" * 32}, headers=auth(platform_key))
        assert r.status == 503 and (await r.json())["error"]["code"] == "index_not_ready"
        r = await register(cold, owner["key"], [encode(fresh_image())])
        assert r.status == 503
        gate.set()
        async with asyncio.timeout(10):
            await cold.app[FINGERPRINTS].wait_loaded()
        r = await cold.get("/readyz")
        index = (await r.json())["checks"]["match_index"]
        assert index["ok"] is True and index["images"] >= 1


async def test_changes_reach_another_process_through_notify(
    client: Client,
    services: Services,
    dsn: str,
    platform_key: str,
    staff_key: str,
    idp_dir: Path,
    settings: Settings,
) -> None:
    # The second process never polls during this test: only a notification can tell it.
    async with another_app(services, dsn, poll_interval_s=600.0) as second:
        owner = await new_owner(client, platform_key, idp_dir, settings.audience)
        image = fresh_image("illustration")
        r = await register(client, owner["key"], [encode(image)], name="Cross Process")
        avatar = (await r.json())["avatar"]
        copy = encode(imagegen.jpeg(imagegen.resize(image, 0.5), 70))

        async def status_seen_by_second() -> str | None:
            r = await post_form(second, "/v1/match", platform_key, files=[("image", copy, "copy.jpg")])
            body = await r.json()
            return next((m["status"] for m in body["matches"] if m["avatar_id"] == avatar["id"]), None)

        async def second_sees(status: str | None) -> bool:
            return await status_seen_by_second() == status

        await eventually(lambda: second_sees("active"))
        r = await client.post(
            f"/v1/avatars/{avatar['id']}/status",
            json={"status": "suspended", "reason": "check"},
            headers=auth(staff_key),
        )
        assert r.status == 200
        await eventually(lambda: second_sees("suspended"))

        # The second process's cached public record follows too.
        async def second_record_says(status: str) -> bool:
            r = await second.get(f"/v1/avatars/{avatar['id']}", headers=auth(staff_key))
            return (await r.json())["status"] == status

        await eventually(lambda: second_record_says("suspended"))
        # An image removed through the first process stops matching in the second.
        second_image = encode(fresh_image("photo"))
        r = await client.post(
            f"/v1/avatars/{avatar['id']}/status",
            json={"status": "active", "reason": "cleared"},
            headers=auth(staff_key),
        )
        await eventually(lambda: second_record_says("active"))
        r = await post_form(
            client,
            f"/v1/avatars/{avatar['id']}/images",
            owner["key"],
            files=[("image", second_image, "b.png")],
        )
        assert r.status == 201
        sha = avatar["images"][0]["sha256"]
        r = await client.delete(f"/v1/avatars/{avatar['id']}/images/{sha}", headers=auth(owner["key"]))
        assert r.status == 200
        await eventually(lambda: second_sees(None))
