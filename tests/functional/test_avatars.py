"""Avatar registration over HTTP: verified owners, likeness conflicts against realistic copies, holds, bad
uploads naming their part, models, and the public record in the transparency log."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from registry.config import Settings
from tests import imagegen
from tests.factories import auth, make_operator
from tests.functional.avatar_helpers import encode, fresh_image, new_owner, post_form, register
from tests.registry.avatars.test_images import black_png
from tests.registry.avatars.test_models import VRM1_EXTENSION, vrm_glb

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def original(client: Client, platform_key: str, idp_dir: Path, settings: Settings) -> dict[str, Any]:
    """Owner X's avatar A, registered from a photograph-like picture: {"owner", "image", "avatar"}."""
    owner = await new_owner(client, platform_key, idp_dir, settings.audience)
    image = fresh_image("photo", (800, 600))
    r = await register(client, owner["key"], [encode(image)], name="Aurora Lumen")
    assert r.status == 201, await r.text()
    return {"owner": owner, "image": image, "avatar": (await r.json())["avatar"]}


@pytest.fixture(scope="module")
async def other(client: Client, platform_key: str, idp_dir: Path, settings: Settings) -> dict[str, Any]:
    """Owner Y, verified, who tries to register copies."""
    return await new_owner(client, platform_key, idp_dir, settings.audience)


async def owned_by(client: Client, staff_key: str, owner_id: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/avatars", params={"owner": owner_id}, headers=auth(staff_key))
    assert r.status == 200, await r.text()
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


# -- registration --------------------------------------------------------------------------------------------


async def test_registration_returns_record_certificate_and_log_leaf(
    client: Client, platform_key: str, idp_dir: Path, settings: Settings
) -> None:
    owner = await new_owner(client, platform_key, idp_dir, settings.audience)
    images = [encode(fresh_image("illustration")), encode(fresh_image("photo"), "JPEG", quality=92)]
    r = await register(client, owner["key"], images, name="Mika Starfall")
    body = await r.json()
    assert r.status == 201, body
    avatar = body["avatar"]
    assert avatar["status"] == "active" and avatar["name"] == "Mika Starfall"
    assert avatar["owner_operator_id"] == owner["id"]
    assert [i["sha256"] for i in avatar["images"]] == [hashlib.sha256(b).hexdigest() for b in images]
    assert [i["format"] for i in avatar["images"]] == ["PNG", "JPEG"]
    assert all(len(i["pdq"]) == 64 and i["quality"] >= 50 for i in avatar["images"])
    assert body["conflicts"] == []
    assert body["certificate"]["leaf_index"] == avatar["log_index"]
    # The public record reads back the same.
    r = await client.get(f"/v1/avatars/{avatar['id']}", headers=auth(owner["key"]))
    assert await r.json() == avatar
    # The log leaf carries digests and ids, never the name.
    r = await client.get(f"/v1/log/entries/{avatar['log_index']}")
    leaf = (await r.json())["leaf_json"]
    assert leaf["kind"] == "avatar.registered" and leaf["avatar_id"] == avatar["id"]
    assert leaf["owner_operator_id"] == owner["id"] and leaf["status"] == "active"
    assert leaf["images"] == [i["sha256"] for i in avatar["images"]]
    assert leaf["pdq"] == [i["pdq"] for i in avatar["images"]]
    assert leaf["name_sha256"] == hashlib.sha256(b"Mika Starfall").hexdigest()
    assert "Mika" not in str(leaf)


async def test_unverified_operator_is_refused(client: Client, platform_key: str) -> None:
    op = await make_operator(client, platform_key)
    r = await register(client, op["key"], [encode(fresh_image())])
    assert r.status == 403
    assert (await r.json())["error"]["code"] == "operator_unverified"


COPIES: dict[str, Callable[[Image.Image], bytes]] = {
    "resized": lambda img: encode(imagegen.resize(img, 0.5)),
    "recompressed": lambda img: encode(img, "JPEG", quality=55),
    "flipped": lambda img: encode(imagegen.hflip(img)),
    "flipped_recompressed_resized": lambda img: encode(
        imagegen.resize(imagegen.hflip(img), 0.6), "JPEG", quality=70
    ),
    "cropped_5pc": lambda img: encode(imagegen.crop(img, 0.05)),
    "brightened": lambda img: encode(imagegen.brightness(img, 1.25)),
    "rotated_3deg": lambda img: encode(imagegen.rotate(img, 3.0)),
    "rotated_back_2deg": lambda img: encode(imagegen.rotate(img, -2.0), "WEBP", quality=80),
    "rotated_90": lambda img: encode(img.transpose(Image.Transpose.ROTATE_90)),
}


@pytest.mark.parametrize("copy", sorted(COPIES))
async def test_copy_by_another_owner_conflicts_naming_the_original(
    client: Client, original: dict[str, Any], other: dict[str, Any], staff_key: str, copy: str
) -> None:
    data = COPIES[copy](original["image"])
    r = await register(client, other["key"], [data], name="Totally New")
    body = await r.json()
    assert r.status == 409, body
    assert body["error"]["code"] == "likeness_conflict"
    conflicts = body["error"]["details"]["conflicts"]
    assert conflicts[0]["avatar_id"] == original["avatar"]["id"]
    assert conflicts[0]["image_sha256"] == original["avatar"]["images"][0]["sha256"]
    assert conflicts[0]["part"] == "image[0]" and conflicts[0]["distance"] <= 31
    # Nothing was stored for the loser.
    assert await owned_by(client, staff_key, other["id"]) == []


async def test_copy_among_several_images_is_named_by_part(
    client: Client, original: dict[str, Any], other: dict[str, Any]
) -> None:
    images = [encode(fresh_image()), encode(imagegen.resize(original["image"], 0.7))]
    r = await register(client, other["key"], images)
    body = await r.json()
    assert r.status == 409
    assert [c["part"] for c in body["error"]["details"]["conflicts"]] == ["image[1]"]


async def test_unrelated_images_register_without_conflict(client: Client, other: dict[str, Any]) -> None:
    r = await register(
        client, other["key"], [encode(fresh_image("illustration")), encode(fresh_image("photo"))]
    )
    assert r.status == 201, await r.text()


async def test_owner_may_register_variants_of_their_own_avatar(
    client: Client, original: dict[str, Any]
) -> None:
    owner = original["owner"]
    r = await register(
        client, owner["key"], [encode(imagegen.hflip(original["image"]))], name="Aurora Mirror"
    )
    body = await r.json()
    assert r.status == 201, body
    assert body["avatar"]["status"] == "active"


async def test_on_conflict_hold_stores_held_for_review_with_review_item(
    client: Client, original: dict[str, Any], other: dict[str, Any], staff_key: str
) -> None:
    copy = encode(imagegen.brightness(original["image"], 0.85), "JPEG", quality=80)
    r = await register(client, other["key"], [copy], on_conflict="hold", name="Held One")
    body = await r.json()
    assert r.status == 201, body
    held = body["avatar"]
    assert held["status"] == "held_for_review"
    assert body["conflicts"][0]["avatar_id"] == original["avatar"]["id"]
    r = await client.get("/v1/reviews", params={"avatar_id": held["id"]}, headers=auth(staff_key))
    (item,) = (await r.json())["items"]
    assert item["kind"] == "likeness_hold" and item["status"] == "open"
    assert item["details"]["conflicts"][0]["avatar_id"] == original["avatar"]["id"]
    # Y's own held avatar never blocks Y, but A still does.
    r = await register(client, other["key"], [encode(imagegen.resize(original["image"], 0.8))])
    named = {c["avatar_id"] for c in (await r.json())["error"]["details"]["conflicts"]}
    assert r.status == 409 and original["avatar"]["id"] in named and held["id"] not in named


async def test_register_and_hold_decisions_by_staff(
    client: Client, platform_key: str, idp_dir: Path, settings: Settings, staff_key: str
) -> None:
    x = await new_owner(client, platform_key, idp_dir, settings.audience)
    y = await new_owner(client, platform_key, idp_dir, settings.audience)
    z = await new_owner(client, platform_key, idp_dir, settings.audience)
    img = fresh_image("illustration")
    r = await register(client, x["key"], [encode(img)])
    a = (await r.json())["avatar"]
    r = await register(client, y["key"], [encode(imagegen.jpeg(img, 60))], on_conflict="hold")
    held = (await r.json())["avatar"]
    assert held["status"] == "held_for_review"
    # Z's copy conflicts with both A (active) and Y's held avatar.
    r = await register(client, z["key"], [encode(imagegen.hflip(img))])
    named = {c["avatar_id"] for c in (await r.json())["error"]["details"]["conflicts"]}
    assert r.status == 409 and named == {a["id"], held["id"]}
    # Staff release the held avatar through its review item.
    r = await client.get("/v1/reviews", params={"avatar_id": held["id"]}, headers=auth(staff_key))
    item = (await r.json())["items"][0]
    r = await client.post(
        f"/v1/reviews/{item['id']}/resolve",
        json={"decision": "approve", "reason": "licensed copy"},
        headers=auth(staff_key),
    )
    assert r.status == 200, await r.text()
    assert (await r.json())["status"] == "approved"
    r = await client.get(f"/v1/avatars/{held['id']}", headers=auth(staff_key))
    assert (await r.json())["status"] == "active"
    r = await client.post(
        f"/v1/reviews/{item['id']}/resolve",
        json={"decision": "reject", "reason": "again"},
        headers=auth(staff_key),
    )
    assert r.status == 409 and (await r.json())["error"]["code"] == "review_closed"


# -- bad uploads -------------------------------------------------------------------------------------------


def _truncated_png() -> bytes:
    data = encode(fresh_image())
    return data[: len(data) // 2]


def _gif() -> bytes:
    buf = io.BytesIO()
    fresh_image().convert("P").save(buf, "GIF")
    return buf.getvalue()


BAD_IMAGES: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "text_named_png": (lambda: b"hello, I am not a picture\n" * 20, 415, "image_unsupported"),
    "gif": (_gif, 415, "image_unsupported"),
    "truncated_png": (_truncated_png, 422, "image_corrupt"),
    "decompression_bomb": (lambda: black_png(20_000, 20_000), 422, "image_too_many_pixels"),
    "flat_grey": (lambda: encode(Image.new("RGB", (400, 300), (128, 128, 128))), 422, "image_low_quality"),
    "over_10_mb": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024), 413, "image_too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
async def test_bad_image_is_a_clear_4xx_naming_the_part(
    client: Client, other: dict[str, Any], staff_key: str, case: str
) -> None:
    make, status, code = BAD_IMAGES[case]
    r = await register(client, other["key"], [encode(fresh_image()), make()], name=f"Bad {case}")
    body = await r.json()
    assert r.status == status, body
    assert body["error"]["code"] == code
    assert body["error"]["details"]["part"] == "image[1]"
    assert "image[1]" in body["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "files", "code"),
    [
        ({}, [("image", b"x", "a.png")], "missing_part"),
        ({"name": "A"}, [], "missing_part"),
        ({"name": "A", "colour": "blue"}, [("image", b"x", "a.png")], "unknown_part"),
        ({"name": "A", "on_conflict": "ignore"}, [("image", b"x", "a.png")], "invalid_field"),
        ({"name": "A" * 101}, [("image", b"x", "a.png")], "invalid_name"),
        ({"name": "   "}, [("image", b"x", "a.png")], "invalid_name"),
        ({"name": "A"}, [("image", b"x", f"{i}.png") for i in range(9)], "too_many_parts"),
    ],
)
async def test_malformed_forms_are_400(
    client: Client, other: dict[str, Any], fields: dict[str, str], files: list[Any], code: str
) -> None:
    r = await post_form(client, "/v1/avatars", other["key"], fields, files)
    assert r.status == 400, await r.text()
    assert (await r.json())["error"]["code"] == code


async def test_the_same_file_twice_is_refused(client: Client, other: dict[str, Any]) -> None:
    data = encode(fresh_image())
    r = await register(client, other["key"], [data, data])
    assert r.status == 400
    body = await r.json()
    assert body["error"]["code"] == "duplicate_image" and body["error"]["details"]["part"] == "image[1]"


async def test_json_or_broken_multipart_bodies_are_refused(client: Client, other: dict[str, Any]) -> None:
    r = await client.post("/v1/avatars", json={"name": "A"}, headers=auth(other["key"]))
    assert r.status == 415
    headers = {**auth(other["key"]), "Content-Type": "multipart/form-data; boundary=XYZ"}
    r = await client.post("/v1/avatars", data=b"--nope\r\ngarbage", headers=headers)
    assert r.status == 400
    assert (await r.json())["error"]["code"] == "invalid_multipart"


# -- models ------------------------------------------------------------------------------------------------


async def test_vrm_model_is_parsed_and_its_digest_stored(client: Client, other: dict[str, Any]) -> None:
    model = vrm_glb({"VRMC_vrm": VRM1_EXTENSION})
    r = await register(client, other["key"], [encode(fresh_image())], model=model, name="Modelled")
    body = await r.json()
    assert r.status == 201, body
    stored = body["avatar"]["model"]
    assert stored["kind"] == "vrm" and stored["sha256"] == hashlib.sha256(model).hexdigest()
    assert stored["meta"]["spec"] == "vrm1" and stored["meta"]["authors"] == ["Ren Tanaka", "Studio K"]


async def test_malformed_model_is_422_and_nothing_is_stored(
    client: Client, other: dict[str, Any], staff_key: str
) -> None:
    model = vrm_glb({"VRMC_vrm": VRM1_EXTENSION})
    r = await register(client, other["key"], [encode(fresh_image())], model=model[:-40], name="Broken Model")
    body = await r.json()
    assert r.status == 422, body
    assert body["error"]["code"] == "model_invalid"
    names = [a["name"] for a in await owned_by(client, staff_key, other["id"])]
    assert "Broken Model" not in names


async def test_unknown_avatar_is_404(client: Client, other: dict[str, Any]) -> None:
    r = await client.get("/v1/avatars/8d6f0bb0-7b0c-4a53-9d87-2f6d0c1c4a11", headers=auth(other["key"]))
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "avatar_not_found"
