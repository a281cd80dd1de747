"""Avatar routes after registration: search (fuzzy name, cursor pages), reference images, delegates,
transfers, staff status changes (with the live_control notification) and the audited ownership look-up."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from registry.config import Settings
from tests import imagegen
from tests.factories import auth, make_operator
from tests.functional.avatar_helpers import encode, fresh_image, new_owner, post_form, register

Client = TestClient[Any, Any]


@pytest.fixture
async def owner(client: Client, platform_key: str, idp_dir: Path, settings: Settings) -> dict[str, Any]:
    return await new_owner(client, platform_key, idp_dir, settings.audience)


async def registered(
    client: Client, owner: dict[str, Any], name: str = "Kirin Sora", **kw: Any
) -> dict[str, Any]:
    image = kw.pop("image", None) or fresh_image()
    r = await register(client, owner["key"], [encode(image)], name=name, **kw)
    assert r.status == 201, await r.text()
    avatar: dict[str, Any] = (await r.json())["avatar"]
    avatar["_image"] = image
    return avatar


async def leaf(client: Client, index: int) -> dict[str, Any]:
    r = await client.get(f"/v1/log/entries/{index}")
    assert r.status == 200
    out: dict[str, Any] = (await r.json())["leaf_json"]
    return out


async def last_leaf_about(client: Client, avatar_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    """The newest leaf of ``kind`` about the avatar with these ``fields``, once a checkpoint publishes it
    (within about 1 s)."""
    async with asyncio.timeout(10):
        while True:
            r = await client.get("/v1/log/checkpoint")
            size = int((await r.text()).split("\n")[1])
            for i in range(size - 1, max(-1, size - 50), -1):
                found = await leaf(client, i)
                wanted = {"avatar_id": avatar_id, "kind": kind, **fields}
                if all(found.get(k) == v for k, v in wanted.items()):
                    return found
            await asyncio.sleep(0.2)


# -- search ------------------------------------------------------------------------------------------------


async def test_name_search_is_fuzzy_and_ranked(client: Client, owner: dict[str, Any], staff_key: str) -> None:
    exact = await registered(client, owner, "Zephyrine Moonwhisper")
    near = await registered(client, owner, "Zephyrina Moonwhistle")
    r = await client.get("/v1/avatars", params={"name": "zephyrine moonwhisper"}, headers=auth(staff_key))
    body = await r.json()
    assert r.status == 200, body
    ids = [i["id"] for i in body["items"]]
    assert ids[:2] == [exact["id"], near["id"]]
    assert body["items"][0]["similarity"] == 1.0 > body["items"][1]["similarity"] >= 0.3
    # A typo still finds it; full-width letters and case do not matter.
    r = await client.get(
        "/v1/avatars", params={"name": "ＺＥＰＨＹＲＩＮ moonwisper"}, headers=auth(staff_key)
    )
    assert exact["id"] in [i["id"] for i in (await r.json())["items"]]
    # A stricter floor drops the near miss.
    r = await client.get(
        "/v1/avatars",
        params={"name": "Zephyrine Moonwhisper", "min_similarity": "0.99"},
        headers=auth(staff_key),
    )
    assert [i["id"] for i in (await r.json())["items"]] == [exact["id"]]


async def test_search_pages_with_a_cursor(client: Client, owner: dict[str, Any], platform_key: str) -> None:
    made = [await registered(client, owner, f"Paged Idol {n}") for n in range(3)]
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        params = {"owner": owner["id"], "limit": "2"} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/v1/avatars", params=params, headers=auth(platform_key))
        body = await r.json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["id"] for a in reversed(made)]  # newest first, each once
    # Name search pages too, in similarity order, without repeats.
    seen = []
    cursor = None
    for _ in range(4):
        params = {"owner": owner["id"], "name": "paged idol", "limit": "1"} | (
            {"cursor": cursor} if cursor else {}
        )
        body = await (await client.get("/v1/avatars", params=params, headers=auth(platform_key))).json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(a["id"] for a in made) and len(seen) == 3


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"name": "!!! ???"}, "invalid_name"),
        ({"status": "sleeping"}, "validation_error"),
        ({"limit": "1000"}, "validation_error"),
    ],
)
async def test_bad_search_queries_are_400(
    client: Client, staff_key: str, params: dict[str, str], code: str
) -> None:
    r = await client.get("/v1/avatars", params=params, headers=auth(staff_key))
    assert r.status == 400
    assert (await r.json())["error"]["code"] == code


async def test_status_filter(client: Client, owner: dict[str, Any], staff_key: str) -> None:
    avatar = await registered(client, owner, "Filter Me")
    r = await client.post(
        f"/v1/avatars/{avatar['id']}/status",
        json={"status": "suspended", "reason": "test"},
        headers=auth(staff_key),
    )
    assert r.status == 200
    r = await client.get(
        "/v1/avatars", params={"owner": owner["id"], "status": "suspended"}, headers=auth(staff_key)
    )
    assert [i["id"] for i in (await r.json())["items"]] == [avatar["id"]]
    r = await client.get(
        "/v1/avatars", params={"owner": owner["id"], "status": "active"}, headers=auth(staff_key)
    )
    assert (await r.json())["items"] == []


# -- reference images --------------------------------------------------------------------------------------


async def test_add_and_remove_reference_images(
    client: Client, owner: dict[str, Any], staff_key: str, platform_key: str
) -> None:
    avatar = await registered(client, owner)
    extra = encode(fresh_image("illustration"))
    r = await post_form(
        client, f"/v1/avatars/{avatar['id']}/images", owner["key"], files=[("image", extra, "b.png")]
    )
    body = await r.json()
    assert r.status == 201, body
    assert [i["sha256"] for i in body["images"]][1] == hashlib.sha256(extra).hexdigest()
    added = await last_leaf_about(client, avatar["id"], "avatar.images_changed", removed=[])
    assert added["added"] == [hashlib.sha256(extra).hexdigest()]
    # The original bytes come back, to the owner and to staff, not to another operator.
    sha = hashlib.sha256(extra).hexdigest()
    for key in (owner["key"], staff_key):
        r = await client.get(f"/v1/avatars/{avatar['id']}/images/{sha}", headers=auth(key))
        assert r.status == 200 and await r.read() == extra and r.headers["Content-Type"] == "image/png"
    stranger = await make_operator(client, platform_key)
    r = await client.get(f"/v1/avatars/{avatar['id']}/images/{sha}", headers=auth(stranger["key"]))
    assert r.status == 403
    # Remove it; the last image stays.
    r = await client.delete(f"/v1/avatars/{avatar['id']}/images/{sha}", headers=auth(owner["key"]))
    assert r.status == 200 and len((await r.json())["images"]) == 1
    removed = await last_leaf_about(client, avatar["id"], "avatar.images_changed", added=[])
    assert removed["removed"] == [sha]
    first = avatar["images"][0]["sha256"]
    r = await client.delete(f"/v1/avatars/{avatar['id']}/images/{first}", headers=auth(owner["key"]))
    assert r.status == 409 and (await r.json())["error"]["code"] == "last_image"
    r = await client.delete(f"/v1/avatars/{avatar['id']}/images/{sha}", headers=auth(owner["key"]))
    assert r.status == 404


async def test_added_images_are_conflict_checked(
    client: Client, owner: dict[str, Any], platform_key: str, idp_dir: Path, settings: Settings
) -> None:
    theirs = await registered(client, await new_owner(client, platform_key, idp_dir, settings.audience))
    mine = await registered(client, owner)
    copy = encode(imagegen.jpeg(imagegen.hflip(theirs["_image"]), 65))
    r = await post_form(
        client, f"/v1/avatars/{mine['id']}/images", owner["key"], files=[("image", copy, "c.png")]
    )
    body = await r.json()
    assert r.status == 409 and body["error"]["details"]["conflicts"][0]["avatar_id"] == theirs["id"]
    r = await client.get(f"/v1/avatars/{mine['id']}", headers=auth(owner["key"]))
    assert len((await r.json())["images"]) == 1


async def test_only_the_owner_changes_images(
    client: Client, owner: dict[str, Any], platform_key: str
) -> None:
    avatar = await registered(client, owner)
    stranger = await make_operator(client, platform_key)
    data = encode(fresh_image())
    r = await post_form(
        client, f"/v1/avatars/{avatar['id']}/images", stranger["key"], files=[("image", data, "x.png")]
    )
    assert r.status == 403 and (await r.json())["error"]["code"] == "not_owner"


# -- delegates ---------------------------------------------------------------------------------------------


async def test_delegates_must_be_verified(
    client: Client,
    owner: dict[str, Any],
    platform_key: str,
    idp_dir: Path,
    settings: Settings,
    staff_key: str,
) -> None:
    avatar = await registered(client, owner)
    friend = await new_owner(client, platform_key, idp_dir, settings.audience)
    unverified = await make_operator(client, platform_key)
    url = f"/v1/avatars/{avatar['id']}/delegates"
    r = await client.put(f"{url}/{friend['id']}", headers=auth(owner["key"]))
    assert r.status == 200 and [d["operator_id"] for d in (await r.json())["delegates"]] == [friend["id"]]
    r = await client.put(f"{url}/{unverified['id']}", headers=auth(owner["key"]))
    assert r.status == 422 and (await r.json())["error"]["code"] == "delegate_unverified"
    r = await client.put(f"{url}/{owner['id']}", headers=auth(owner["key"]))
    assert r.status == 400
    r = await client.put(f"{url}/{friend['id']}", headers=auth(friend["key"]))
    assert r.status == 403 and (await r.json())["error"]["code"] == "not_owner"
    r = await client.get(url, headers=auth(staff_key))
    assert [d["operator_id"] for d in (await r.json())["delegates"]] == [friend["id"]]
    r = await client.delete(f"{url}/{friend['id']}", headers=auth(owner["key"]))
    assert r.status == 200 and (await r.json())["delegates"] == []
    r = await client.delete(f"{url}/{friend['id']}", headers=auth(owner["key"]))
    assert r.status == 404


# -- transfers ---------------------------------------------------------------------------------------------


async def test_transfer_asked_by_owner_and_approved_by_staff(
    client: Client,
    owner: dict[str, Any],
    platform_key: str,
    idp_dir: Path,
    settings: Settings,
    staff_key: str,
) -> None:
    avatar = await registered(client, owner)
    buyer = await new_owner(client, platform_key, idp_dir, settings.audience)
    url = f"/v1/avatars/{avatar['id']}/transfer"
    r = await client.post(url, json={"to_operator_id": buyer["id"]}, headers=auth(owner["key"]))
    transfer = await r.json()
    assert r.status == 201 and transfer["status"] == "pending"
    r = await client.post(url, json={"to_operator_id": buyer["id"]}, headers=auth(owner["key"]))
    assert r.status == 409 and (await r.json())["error"]["code"] == "transfer_pending"
    r = await client.get("/v1/transfers", params={"avatar_id": avatar["id"]}, headers=auth(staff_key))
    assert [t["id"] for t in (await r.json())["items"]] == [transfer["id"]]
    r = await client.post(
        f"/v1/transfers/{transfer['id']}/approve", json={"reason": "sale agreed"}, headers=auth(staff_key)
    )
    assert r.status == 200 and (await r.json())["status"] == "approved"
    r = await client.get(f"/v1/avatars/{avatar['id']}", headers=auth(staff_key))
    assert (await r.json())["owner_operator_id"] == buyer["id"]
    moved = await last_leaf_about(client, avatar["id"], "avatar.transferred")
    assert (moved["from_operator_id"], moved["to_operator_id"]) == (owner["id"], buyer["id"])
    # The old owner is no longer the owner; the new one is.
    r = await client.put(f"/v1/avatars/{avatar['id']}/delegates/{owner['id']}", headers=auth(owner["key"]))
    assert r.status == 403
    r = await client.post(
        f"/v1/transfers/{transfer['id']}/approve", json={"reason": "twice"}, headers=auth(staff_key)
    )
    assert r.status == 409


async def test_transfer_needs_a_verified_recipient_and_can_be_rejected(
    client: Client,
    owner: dict[str, Any],
    platform_key: str,
    idp_dir: Path,
    settings: Settings,
    staff_key: str,
) -> None:
    avatar = await registered(client, owner)
    url = f"/v1/avatars/{avatar['id']}/transfer"
    unverified = await make_operator(client, platform_key)
    r = await client.post(url, json={"to_operator_id": unverified["id"]}, headers=auth(owner["key"]))
    assert r.status == 422 and (await r.json())["error"]["code"] == "transfer_target_unverified"
    buyer = await new_owner(client, platform_key, idp_dir, settings.audience)
    r = await client.post(url, json={"to_operator_id": buyer["id"]}, headers=auth(owner["key"]))
    transfer = await r.json()
    r = await client.post(
        f"/v1/transfers/{transfer['id']}/reject", json={"reason": "no"}, headers=auth(staff_key)
    )
    assert r.status == 400  # reason too short
    r = await client.post(
        f"/v1/transfers/{transfer['id']}/reject", json={"reason": "not agreed"}, headers=auth(staff_key)
    )
    assert r.status == 200 and (await r.json())["status"] == "rejected"
    r = await client.get(f"/v1/avatars/{avatar['id']}", headers=auth(staff_key))
    assert (await r.json())["owner_operator_id"] == owner["id"]


# -- status ------------------------------------------------------------------------------------------------


async def test_status_changes_are_logged_and_told_to_live_servers(
    client: Client, owner: dict[str, Any], staff_key: str, dsn: str
) -> None:
    avatar = await registered(client, owner)
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    listener = await asyncpg.connect(dsn)
    await listener.add_listener("live_control", lambda *args: heard.put_nowait(json.loads(args[3])))
    try:
        url = f"/v1/avatars/{avatar['id']}/status"
        r = await client.post(
            url, json={"status": "suspended", "reason": "impersonation report"}, headers=auth(staff_key)
        )
        body = await r.json()
        assert r.status == 200 and body["status"] == "suspended"
        async with asyncio.timeout(5):
            while (msg := await heard.get())["avatar_id"] != avatar["id"]:
                pass
        assert msg == {"kind": "avatar_status", "avatar_id": avatar["id"], "status": "suspended"}
        logged = await last_leaf_about(client, avatar["id"], "avatar.status_changed", status="suspended")
        assert logged["status"] == "suspended"
        assert logged["reason_sha256"] == hashlib.sha256(b"impersonation report").hexdigest()
        r = await client.post(url, json={"status": "suspended", "reason": "again"}, headers=auth(staff_key))
        assert r.status == 409 and (await r.json())["error"]["code"] == "status_unchanged"
        r = await client.post(url, json={"status": "revoked", "reason": "confirmed"}, headers=auth(staff_key))
        assert r.status == 200
        r = await client.post(url, json={"status": "active", "reason": "appeal"}, headers=auth(staff_key))
        assert r.status == 409 and (await r.json())["error"]["code"] == "avatar_revoked"
    finally:
        await listener.close()


async def test_suspended_avatar_is_frozen_for_its_owner_and_stops_blocking(
    client: Client,
    owner: dict[str, Any],
    staff_key: str,
    platform_key: str,
    idp_dir: Path,
    settings: Settings,
) -> None:
    avatar = await registered(client, owner)
    r = await client.post(
        f"/v1/avatars/{avatar['id']}/status",
        json={"status": "revoked", "reason": "fraud"},
        headers=auth(staff_key),
    )
    assert r.status == 200
    data = encode(fresh_image())
    r = await post_form(
        client, f"/v1/avatars/{avatar['id']}/images", owner["key"], files=[("image", data, "x.png")]
    )
    assert r.status == 409 and (await r.json())["error"]["code"] == "avatar_frozen"
    # Only active and held avatars protect their likeness (DESIGN §5): a revoked one no longer blocks.
    other = await new_owner(client, platform_key, idp_dir, settings.audience)
    r = await register(client, other["key"], [encode(imagegen.jpeg(avatar["_image"], 70))])
    assert r.status == 201, await r.text()


# -- ownership ---------------------------------------------------------------------------------------------


async def test_ownership_lookup_returns_identity_and_is_audited(
    client: Client, platform_key: str, idp_dir: Path, settings: Settings, staff_key: str, admin_key: str
) -> None:
    owner = await new_owner(client, platform_key, idp_dir, settings.audience)
    avatar = await registered(client, owner)
    url = f"/v1/avatars/{avatar['id']}/ownership"
    r = await client.get(url, headers=auth(staff_key))
    assert r.status == 400  # the reason is required
    before = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    r = await client.get(url, params={"reason": "infringement report 42"}, headers=auth(staff_key))
    body = await r.json()
    assert r.status == 200, body
    assert body["owner"]["operator"]["id"] == owner["id"]
    assert body["owner"]["operator"]["identity_status"] == "verified"
    assert body["owner"]["subject"].startswith("person-")
    r = await client.get("/v1/audit", params={"since": before, "limit": "1000"}, headers=auth(admin_key))
    entries = [e for e in (await r.json())["entries"] if e["action"] == "avatar.ownership.read"]
    assert any(e["target_id"] == avatar["id"] and e["reason"] == "infringement report 42" for e in entries)
