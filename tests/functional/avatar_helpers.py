"""Shared by the avatar and match tests: image bytes, multipart registration, fresh seeds."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from PIL import Image

from tests import imagegen
from tests.factories import auth, verified_operator

__all__ = ["encode", "eventually", "fresh_image", "new_owner", "post_form", "register"]

# Seeds far from the small ones other tests use, so no two tests register look-alikes by accident
# (different seeds land > 80 bits apart).
_SEEDS = itertools.count(7_100_000)


def fresh_image(kind: str = "photo", size: tuple[int, int] | None = None) -> Image.Image:
    """A realistic image no other test has used in this run."""
    seed = next(_SEEDS)
    if kind == "photo":
        return imagegen.photo_like(seed, size or (640, 480))
    return imagegen.illustration(seed, size or (512, 640))


def encode(img: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


async def new_owner(
    client: TestClient[Any, Any], platform_key: str, idp_dir: Path, audience: str
) -> dict[str, Any]:
    """A verified operator: {"id", "key"}."""
    return await verified_operator(client, platform_key, idp_dir, audience)


def form(fields: dict[str, str], files: list[tuple[str, bytes, str]]) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        data.add_field(name, value)
    for name, content, filename in files:
        # A file object, not bytes: aiohttp refuses to serialise large bytes values in a form.
        data.add_field(name, io.BytesIO(content), filename=filename, content_type="application/octet-stream")
    return data


async def post_form(
    client: TestClient[Any, Any],
    path: str,
    key: str,
    fields: dict[str, str] | None = None,
    files: list[tuple[str, bytes, str]] | None = None,
) -> aiohttp.ClientResponse:
    return await client.post(path, data=form(fields or {}, files or []), headers=auth(key))


async def register(
    client: TestClient[Any, Any],
    key: str,
    images: list[bytes],
    *,
    name: str = "Aiko Hoshino",
    on_conflict: str | None = None,
    model: bytes | None = None,
) -> aiohttp.ClientResponse:
    """POST /v1/avatars with these image parts."""
    fields = {"name": name}
    if on_conflict is not None:
        fields["on_conflict"] = on_conflict
    files = [("image", data, f"ref{i}.png") for i, data in enumerate(images)]
    if model is not None:
        files.append(("model", model, "avatar.vrm"))
    return await post_form(client, "/v1/avatars", key, fields, files)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds. Raises ``TimeoutError`` after 5 seconds."""
    async with asyncio.timeout(5):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)
