"""Two owners racing to register copies of one likeness: exactly one wins, every round.

Once through HTTP (both requests in flight at once), and once below it with two separate match indexes on
one database, as two registry processes would have, released at the same instant."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from registry import errors
from registry.avatars.service import fingerprint_upload, register_avatar
from registry.config import Settings
from registry.fingerprints.service import FingerprintService, LikenessPolicy
from registry.roles import Principal, Role
from tests import imagegen
from tests.factories import auth
from tests.functional.avatar_helpers import encode, fresh_image, new_owner, register

Client = TestClient[Any, Any]
ROUNDS = 12


async def test_http_race_of_two_owners_has_one_winner(
    client: Client, platform_key: str, idp_dir: Path, settings: Settings, staff_key: str
) -> None:
    x = await new_owner(client, platform_key, idp_dir, settings.audience)
    y = await new_owner(client, platform_key, idp_dir, settings.audience)
    wins = {x["id"]: 0, y["id"]: 0}
    for n in range(ROUNDS):
        img = fresh_image("photo" if n % 2 else "illustration")
        copies = [encode(img), encode(imagegen.jpeg(imagegen.hflip(img), 75))]
        # Alternate who sends what, and in which order the requests leave.
        entrants = [(x, copies[n % 2]), (y, copies[1 - n % 2])][:: 1 if n % 3 else -1]
        responses = await asyncio.gather(
            *(register(client, o["key"], [d], name=f"Race {n}") for o, d in entrants)
        )
        assert sorted(r.status for r in responses) == [201, 409], [r.status for r in responses]
        (won,) = [(o, r) for (o, _), r in zip(entrants, responses, strict=True) if r.status == 201]
        (lost,) = [r for r in responses if r.status == 409]
        avatar = (await won[1].json())["avatar"]
        conflicts = (await lost.json())["error"]["details"]["conflicts"]
        assert avatar["id"] in {c["avatar_id"] for c in conflicts}
        wins[won[0]["id"]] += 1
    # Nothing was stored for any loser.
    for owner_id, count in wins.items():
        r = await client.get(
            "/v1/avatars", params={"owner": owner_id, "limit": "100"}, headers=auth(staff_key)
        )
        assert len((await r.json())["items"]) == count


async def test_two_indexes_on_one_database_never_both_accept(
    client: Client, platform_key: str, idp_dir: Path, settings: Settings, pool: asyncpg.Pool, dsn: str
) -> None:
    policy = LikenessPolicy(poll_interval_s=60.0)  # no polling: only the lock's catch-up can save them
    first, second = FingerprintService(policy), FingerprintService(policy)
    await first.start(pool, dsn)
    await second.start(pool, dsn)
    try:
        x = await new_owner(client, platform_key, idp_dir, settings.audience)
        y = await new_owner(client, platform_key, idp_dir, settings.audience)
        actors = [Principal(uuid.uuid4(), Role.OPERATOR, uuid.UUID(o["id"])) for o in (x, y)]
        for n in range(ROUNDS):
            img = fresh_image("illustration" if n % 2 else "photo")
            refs = [
                fingerprint_upload("image[0]", None, encode(img), min_quality=50),
                fingerprint_upload("image[0]", None, encode(imagegen.resize(img, 0.75)), min_quality=50),
            ]
            go = asyncio.Event()

            async def attempt(
                fps: FingerprintService, actor: Principal, ref: Any, *, n: int = n, go: asyncio.Event = go
            ) -> str:
                await go.wait()
                try:
                    await register_avatar(
                        pool,
                        fps,
                        actor,
                        name=f"Twin {n}",
                        refs=[ref],
                        model=None,
                        on_conflict="reject",
                        now=datetime.now(UTC),
                    )
                except errors.Conflict as exc:
                    assert exc.code == "likeness_conflict"
                    return "lost"
                return "won"

            tasks = [
                asyncio.create_task(attempt(first, actors[0], refs[0])),
                asyncio.create_task(attempt(second, actors[1], refs[1])),
            ]
            await asyncio.sleep(0)
            go.set()
            assert sorted(await asyncio.gather(*tasks)) == ["lost", "won"]
    finally:
        await first.stop()
        await second.stop()
