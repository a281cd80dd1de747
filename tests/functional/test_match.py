"""POST /v1/match and what shapes its answer: image and hash queries, thresholds, owner allow-lists,
per-avatar match disable with expiry, and flood quarantine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from registry.config import Settings
from registry.services import Services
from tests import imagegen
from tests.factories import auth
from tests.functional.avatar_helpers import encode, fresh_image, new_owner, post_form, register
from tests.functional.test_match_index import another_app

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def avatar_a(client: Client, platform_key: str, idp_dir: Path, settings: Settings) -> dict[str, Any]:
    """Owner X's avatar A: {"owner", "image", "avatar"}."""
    owner = await new_owner(client, platform_key, idp_dir, settings.audience)
    image = fresh_image("illustration")
    r = await register(client, owner["key"], [encode(image)], name="Match Target")
    assert r.status == 201, await r.text()
    return {"owner": owner, "image": image, "avatar": (await r.json())["avatar"]}


async def match_image(client: Client, key: str, data: bytes, **fields: str) -> Any:
    r = await post_form(client, "/v1/match", key, fields, [("image", data, "upload.jpg")])
    return r.status, await r.json()


async def match_pdq(client: Client, key: str, body: dict[str, Any], **params: str) -> Any:
    r = await client.post("/v1/match", json=body, params=params, headers=auth(key))
    return r.status, await r.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [m["avatar_id"] for m in body["matches"]]


# -- queries -----------------------------------------------------------------------------------------------


async def test_copy_upload_finds_the_avatar(
    client: Client, platform_key: str, avatar_a: dict[str, Any]
) -> None:
    copy = encode(imagegen.resize(imagegen.hflip(avatar_a["image"]), 0.6), "JPEG", quality=70)
    status, body = await match_image(client, platform_key, copy)
    assert status == 200, body
    top = body["matches"][0]
    assert top["avatar_id"] == avatar_a["avatar"]["id"]
    assert top["status"] == "active" and top["disposition"] == "match"
    assert top["image_sha256"] == avatar_a["avatar"]["images"][0]["sha256"]
    assert top["owner_operator_id"] == avatar_a["owner"]["id"]
    assert top["distance"] <= 31 and body["threshold"] == 31
    assert [m["distance"] for m in body["matches"]] == sorted(m["distance"] for m in body["matches"])


async def test_unrelated_upload_matches_nothing(
    client: Client, staff_key: str, avatar_a: dict[str, Any]
) -> None:
    status, body = await match_image(client, staff_key, encode(fresh_image("photo")))
    assert status == 200 and avatar_a["avatar"]["id"] not in ids(body)


async def test_pdq_query_and_thresholds(client: Client, platform_key: str, avatar_a: dict[str, Any]) -> None:
    pdq = avatar_a["avatar"]["images"][0]["pdq"]
    status, body = await match_pdq(client, platform_key, {"pdq": pdq})
    assert status == 200 and body["matches"][0]["avatar_id"] == avatar_a["avatar"]["id"]
    assert body["matches"][0]["distance"] == 0 and body["query"] == {"pdq": pdq, "quality": 100}
    # Flip 6 bits: found at 6, gone at threshold 5 (given in the body or as a query parameter).
    flipped = f"{int(pdq, 16) ^ 0b111111:064x}"
    status, body = await match_pdq(client, platform_key, {"pdq": flipped})
    assert body["matches"][0]["distance"] == 6
    status, body = await match_pdq(client, platform_key, {"pdq": flipped, "threshold": 5})
    assert status == 200 and avatar_a["avatar"]["id"] not in ids(body)
    status, body = await match_pdq(client, platform_key, {"pdq": flipped}, threshold="6")
    assert avatar_a["avatar"]["id"] in ids(body) and body["threshold"] == 6


@pytest.mark.parametrize(
    ("body", "params", "status", "code"),
    [
        ({"pdq": "zz" * 32}, {}, 400, "invalid_pdq"),
        ({"pdq": "ab" * 31}, {}, 400, "validation_error"),
        ({"pdq": "ab" * 32, "extra": 1}, {}, 400, "validation_error"),
        ({"pdq": "ab" * 32, "threshold": 65}, {}, 400, "validation_error"),
        ({"pdq": "ab" * 32}, {"threshold": "-1"}, 400, "validation_error"),
        ({"pdq": "ab" * 32, "threshold": 10}, {"threshold": "12"}, 400, "invalid_threshold"),
        ({"pdq": "ab" * 32, "quality": 30}, {}, 422, "image_low_quality"),
    ],
)
async def test_bad_match_requests(
    client: Client, staff_key: str, body: dict[str, Any], params: dict[str, str], status: int, code: str
) -> None:
    got, out = await match_pdq(client, staff_key, body, **params)
    assert (got, out["error"]["code"]) == (status, code)


async def test_bad_match_uploads(client: Client, platform_key: str) -> None:
    status, body = await match_image(client, platform_key, b"GIF89a not really")
    assert status == 415 and body["error"]["details"]["part"] == "image[0]"
    r = await client.post(
        "/v1/match", data=b"x", headers={**auth(platform_key), "Content-Type": "text/plain"}
    )
    assert r.status == 415
    r = await post_form(client, "/v1/match", platform_key, {"threshold": "3"}, [])
    assert r.status == 400 and (await r.json())["error"]["code"] == "missing_part"
    data = encode(fresh_image())
    r = await post_form(client, "/v1/match", platform_key, files=[("image", data, "a"), ("image", data, "b")])
    assert r.status == 400 and (await r.json())["error"]["code"] == "too_many_parts"


# -- allow-lists -------------------------------------------------------------------------------------------


async def test_allow_listed_fan_art_is_allowed_not_a_conflict(
    client: Client, platform_key: str, idp_dir: Path, settings: Settings, avatar_a: dict[str, Any]
) -> None:
    owner = avatar_a["owner"]
    fan_art = encode(imagegen.brightness(imagegen.crop(avatar_a["image"], 0.03), 1.15), "JPEG", quality=85)
    url = f"/v1/avatars/{avatar_a['avatar']['id']}/allowlist"
    r = await post_form(
        client, url, owner["key"], {"note": "licensed to fan Y"}, [("image", fan_art, "fan.jpg")]
    )
    entry = await r.json()
    assert r.status == 201, entry
    _, body = await match_image(client, platform_key, fan_art)
    hit = next(m for m in body["matches"] if m["avatar_id"] == avatar_a["avatar"]["id"])
    assert hit["disposition"] == "allowed"
    fan = await new_owner(client, platform_key, idp_dir, settings.audience)
    r = await register(client, fan["key"], [fan_art], name="Fan Art Avatar")
    assert r.status == 201, await r.text()
    # Withdrawn: the same picture conflicts again.
    r = await client.delete(f"{url}/{entry['id']}", headers=auth(owner["key"]))
    assert r.status == 200 and (await r.json())["entries"] == []
    other_fan = await new_owner(client, platform_key, idp_dir, settings.audience)
    r = await register(client, other_fan["key"], [fan_art], name="Second Fan")
    assert r.status == 409


async def test_allow_list_by_hash_and_its_guards(
    client: Client, platform_key: str, staff_key: str, avatar_a: dict[str, Any]
) -> None:
    owner = avatar_a["owner"]
    url = f"/v1/avatars/{avatar_a['avatar']['id']}/allowlist"
    pdq = avatar_a["avatar"]["images"][0]["pdq"]
    r = await client.post(url, json={"pdq": pdq, "note": "all of it"}, headers=auth(owner["key"]))
    entry = await r.json()
    assert r.status == 201 and entry["pdq"] == pdq and entry["sha256"] is None
    r = await client.post(url, json={"pdq": pdq}, headers=auth(owner["key"]))
    assert r.status == 409 and (await r.json())["error"]["code"] == "allowlist_duplicate"
    _, body = await match_pdq(client, platform_key, {"pdq": pdq})
    assert body["matches"][0]["disposition"] == "allowed"
    r = await client.get(url, headers=auth(staff_key))
    assert [e["id"] for e in (await r.json())["entries"]] == [entry["id"]]
    r = await client.delete(f"{url}/{entry['id']}", headers=auth(owner["key"]))
    assert r.status == 200
    r = await client.delete(f"{url}/{entry['id']}", headers=auth(owner["key"]))
    assert r.status == 404


# -- match disable -----------------------------------------------------------------------------------------


async def test_match_disable_hides_the_avatar_until_it_expires(
    client: Client, staff_key: str, platform_key: str, avatar_a: dict[str, Any]
) -> None:
    avatar_id = avatar_a["avatar"]["id"]
    pdq = {"pdq": avatar_a["avatar"]["images"][0]["pdq"]}
    url = f"/v1/avatars/{avatar_id}/match-disable"
    until = datetime.now(UTC) + timedelta(hours=1)
    r = await client.put(
        url, json={"until": until.isoformat(), "reason": "false positive storm"}, headers=auth(staff_key)
    )
    assert r.status == 200, await r.text()
    assert avatar_id not in ids((await match_pdq(client, platform_key, pdq))[1])
    r = await client.get(f"/v1/avatars/{avatar_id}", headers=auth(platform_key))
    assert (await r.json())["match_disabled_until"] is not None
    r = await client.delete(url, params={"reason": "storm over"}, headers=auth(staff_key))
    assert r.status == 200
    assert avatar_id in ids((await match_pdq(client, platform_key, pdq))[1])
    # A short disable ends by itself.
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    r = await client.put(
        url, json={"until": soon.isoformat(), "reason": "brief check"}, headers=auth(staff_key)
    )
    assert r.status == 200
    assert avatar_id not in ids((await match_pdq(client, platform_key, pdq))[1])
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    assert avatar_id in ids((await match_pdq(client, platform_key, pdq))[1])


@pytest.mark.parametrize(
    "until",
    [
        (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        (datetime.now(UTC) + timedelta(days=400)).isoformat(),
        "2031-01-01T00:00:00",
    ],
)
async def test_match_disable_bounds(
    client: Client, staff_key: str, avatar_a: dict[str, Any], until: str
) -> None:
    url = f"/v1/avatars/{avatar_a['avatar']['id']}/match-disable"
    r = await client.put(url, json={"until": until, "reason": "bounds"}, headers=auth(staff_key))
    assert r.status == 400


# -- flood quarantine --------------------------------------------------------------------------------------


async def test_flood_quarantines_a_reference_and_staff_can_release_it(
    client: Client,
    services: Services,
    dsn: str,
    platform_key: str,
    staff_key: str,
    idp_dir: Path,
    settings: Settings,
) -> None:
    owner = await new_owner(client, platform_key, idp_dir, settings.audience)
    image = fresh_image("photo")
    r = await register(client, owner["key"], [encode(image)], name="Viral Meme")
    avatar = (await r.json())["avatar"]
    async with another_app(services, dsn, flood_limit=2) as flood:
        seen = []
        # The same file twice counts once: the third distinct upload is one too many.
        for quality in (90, 90, 80, 70, 60):
            status, body = await match_image(flood, platform_key, encode(image, "JPEG", quality=quality))
            assert status == 200, body
            seen.append(next(m["disposition"] for m in body["matches"] if m["avatar_id"] == avatar["id"]))
        assert seen == ["match", "match", "match", "review", "review"]
        r = await client.get("/v1/reviews", params={"avatar_id": avatar["id"]}, headers=auth(staff_key))
        (item,) = (await r.json())["items"]
        assert item["kind"] == "flood_quarantine" and item["details"]["distinct_uploads"] == 3
        r = await client.get(f"/v1/avatars/{avatar['id']}", headers=auth(staff_key))
        assert (await r.json())["images"][0]["quarantined"] is True
        r = await client.post(
            f"/v1/reviews/{item['id']}/resolve",
            json={"decision": "approve", "reason": "real avatar"},
            headers=auth(staff_key),
        )
        assert r.status == 200
        status, body = await match_image(flood, platform_key, encode(image, "JPEG", quality=50))
        assert next(m["disposition"] for m in body["matches"] if m["avatar_id"] == avatar["id"]) == "match"
