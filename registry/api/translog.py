"""``/v1/log/...``: the transparency log (DESIGN §8, C2SP tlog-checkpoint and tlog-tiles), and
``GET /v1/avatars/{id}/certificate``. All public: the log holds ids and digests only.

Also the checkpoint signer's lifetime (``signer_ctx``): one ``CheckpointSigner`` per registry process, started
after the pool and stopped before it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from registry import errors
from registry.api.routing import Api, Call, path_uuid
from registry.api.schemas import QueryModel
from registry.api.state import POOL, READINESS, SERVICES
from registry.translog import store
from registry.translog.certificates import covering_checkpoint, issue_certificate, require_log_keys
from registry.translog.checkpoint import MAX_TREE_SIZE
from registry.translog.leaves import decode_leaf
from registry.translog.signer import CheckpointSigner
from registry.translog.tiles import parse_tile_path

__all__ = ["SIGNER", "api", "signer_ctx"]


class _LogApi(Api):
    """The route table, plus one raw route: tile paths have several segments, which aiohttp's ``{path}``
    (the documented form) does not match, so ``/v1/log/tile/{path:.+}`` serves the same handler."""

    def install(self, app: web.Application) -> None:
        super().install(app)
        app.router.add_route("GET", "/v1/log/tile/{path:.+}", _tile_any_depth)


api = _LogApi()
SIGNER = web.AppKey("translog_signer", CheckpointSigner)
_TAGS = ("transparency log",)
# A full tile or entry bundle never changes (C2SP tlog-tiles asks for long-lived caching of full tiles).
_IMMUTABLE = "public, max-age=31536000, immutable"
# Partial tiles are fixed too, but a log may drop them once the full tile exists: cache them briefly.
_PARTIAL = "public, max-age=60"
_MAX_INDEX = MAX_TREE_SIZE - 1
_MAX_FAILING_ROUNDS = 5


class EntryOut(BaseModel):
    index: int
    leaf: str = Field(description="Base64 of the exact leaf bytes that were hashed (RFC 8785 JSON).")
    leaf_json: dict[str, Any] = Field(description="The same leaf, decoded.")


class InclusionQuery(QueryModel):
    index: int = Field(ge=0, le=_MAX_INDEX, description="The leaf index.")
    tree_size: int = Field(ge=1, le=MAX_TREE_SIZE, description="The size of a signed checkpoint's tree.")


class InclusionProofOut(BaseModel):
    index: int
    tree_size: int
    hashes: list[str] = Field(description="Base64 hashes, leaf to root (RFC 9162 §2.1.3).")


class ConsistencyQuery(QueryModel):
    from_: int = Field(alias="from", ge=0, le=MAX_TREE_SIZE, description="The older tree size.")
    to: int = Field(ge=0, le=MAX_TREE_SIZE, description="The newer tree size.")


class ConsistencyProofOut(BaseModel):
    from_: int = Field(serialization_alias="from")
    to: int
    hashes: list[str] = Field(description="Base64 hashes (RFC 9162 §2.1.4).")


class CertificateOut(BaseModel):
    jws: str = Field(description="Compact JWS (EdDSA) by the log's key: the signed registration statement.")
    leaf_index: int
    checkpoint: str = Field(description="The signed checkpoint (C2SP signed note) that covers the leaf.")
    inclusion_proof: list[str] = Field(description="Base64 hashes, leaf to root, in that checkpoint's tree.")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _check_reached(size: int, published: int) -> None:
    """DESIGN §8: a proof for a tree size the log has not reached (signed) is a 400."""
    if size > published:
        raise errors.BadRequest(
            f"tree size not reached: the log's latest checkpoint has {published} leaves, asked for {size}",
            code="tree_size_not_reached",
            details={"tree_size": size, "published": published},
        )


@api.route(
    "GET",
    "/v1/log/checkpoint",
    summary="The latest signed checkpoint",
    tags=_TAGS,
    roles=None,
    text_response="text/plain; charset=utf-8",
    errors=(503,),
)
async def get_checkpoint(call: Call[None]) -> web.Response:
    """The log's latest checkpoint signed by its current key: a C2SP tlog-checkpoint body (origin, tree size,
    base64 root) as a C2SP signed note (Ed25519). Verify it with the key from `/v1/log/key`."""
    keys = require_log_keys(call.services)
    async with call.pool.acquire() as conn:
        checkpoint = await covering_checkpoint(conn, keys, 0)
    return web.Response(
        body=checkpoint.note,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


@api.route(
    "GET",
    "/v1/log/key",
    summary="The log's verifier key",
    tags=_TAGS,
    roles=None,
    text_response="text/plain; charset=utf-8",
    errors=(503,),
)
async def get_key(call: Call[None]) -> web.Response:
    """The C2SP signed-note verifier key string of the log's current key: `<origin>+<hex key id>+<base64
    key>`. Fetch it once and pin it; a monitor (`avatar-registry log monitor`) checks what it signs."""
    keys = require_log_keys(call.services)
    return web.Response(text=keys.verifier.key_string, content_type="text/plain", charset="utf-8")


@api.route(
    "GET",
    "/v1/log/entries/{i}",
    summary="One log entry",
    tags=_TAGS,
    roles=None,
    response=EntryOut,
    errors=(400, 404),
)
async def get_entry(call: Call[None]) -> web.Response:
    """Leaf `i` of the signed tree: its exact bytes (base64) and the same JSON decoded."""
    raw = call.request.match_info["i"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or (len(raw) > 1 and raw[0] == "0"):
        raise errors.BadRequest(f"entry index must be a decimal integer, got {raw[:40]!r}", code="bad_index")
    async with call.pool.acquire() as conn:
        published = await store.published_size(conn)
        entry = await store.get_entry(conn, int(raw), published)
    out = EntryOut(index=entry.index, leaf=_b64(entry.leaf), leaf_json=decode_leaf(entry.leaf))
    return web.Response(
        body=out.model_dump_json(), content_type="application/json", headers={"Cache-Control": _IMMUTABLE}
    )


@api.route(
    "GET",
    "/v1/log/proof/inclusion",
    summary="Inclusion proof",
    tags=_TAGS,
    roles=None,
    query=InclusionQuery,
    response=InclusionProofOut,
)
async def get_inclusion_proof(call: Call[None]) -> InclusionProofOut:
    """The RFC 9162 inclusion proof of leaf `index` in the tree of `tree_size` leaves, which must be a size
    the log has reached (400 otherwise, and when `index` ≥ `tree_size`)."""
    q: InclusionQuery = call.query
    async with call.pool.acquire() as conn:
        _check_reached(q.tree_size, await store.published_size(conn))
        proof = await store.inclusion_proof(conn, q.index, q.tree_size)
    return InclusionProofOut(index=q.index, tree_size=q.tree_size, hashes=[_b64(h) for h in proof])


@api.route(
    "GET",
    "/v1/log/proof/consistency",
    summary="Consistency proof",
    tags=_TAGS,
    roles=None,
    query=ConsistencyQuery,
    response=ConsistencyProofOut,
)
async def get_consistency_proof(call: Call[None]) -> ConsistencyProofOut:
    """The RFC 9162 consistency proof from the tree of `from` leaves to the tree of `to` leaves; `to` must be
    a size the log has reached and `from` ≤ `to` (400 otherwise)."""
    q: ConsistencyQuery = call.query
    async with call.pool.acquire() as conn:
        _check_reached(q.to, await store.published_size(conn))
        proof = await store.consistency_proof(conn, q.from_, q.to)
    return ConsistencyProofOut(from_=q.from_, to=q.to, hashes=[_b64(h) for h in proof])


@api.route(
    "GET",
    "/v1/log/tile/{path}",
    summary="A tile or entry bundle (C2SP tlog-tiles)",
    tags=_TAGS,
    roles=None,
    text_response="application/octet-stream",
    errors=(400, 404),
)
async def get_tile(call: Call[None]) -> web.Response:
    """`tile/<L>/<N>[.p/<W>]` (hashes) and `tile/entries/<N>[.p/<W>]` (entry bundles) exactly as C2SP
    tlog-tiles names them (`{path}` spans several segments), for any tile inside the latest signed tree.
    Full tiles are immutable and cached as such."""
    tile = parse_tile_path("tile/" + call.request.match_info["path"])
    async with call.pool.acquire() as conn:
        data = await store.tile_data(conn, tile, await store.published_size(conn))
    return web.Response(
        body=data,
        content_type="application/octet-stream",
        headers={"Cache-Control": _IMMUTABLE if tile.is_full else _PARTIAL},
    )


async def _tile_any_depth(request: web.Request) -> web.StreamResponse:
    # A public route with no body or query: the table's wrapper would only build this Call.
    return await get_tile(Call(request=request, principal=None))


@api.route(
    "GET",
    "/v1/avatars/{id}/certificate",
    summary="An avatar's registration certificate",
    tags=("avatars",),
    roles=None,
    response=CertificateOut,
    errors=(404, 503),
)
async def get_certificate(call: Call[None]) -> CertificateOut:
    """The signed registration certificate (JWS, EdDSA, by the log's key) with the registration leaf, the
    checkpoint that covers it and the inclusion proof. Verify it offline with
    `avatar-registry log verify --certificate FILE --key KEYSTRING`."""
    avatar_id = path_uuid(call)
    return CertificateOut(**await issue_certificate(call.pool, call.services, avatar_id))


async def _readiness(app: web.Application) -> tuple[bool, dict[str, Any]]:
    signer = app.get(SIGNER)
    if signer is None:
        return False, {"detail": "no signing key"}
    last = signer.last.tree_size if signer.last is not None else None
    # A few failed rounds in a row (a database blip) are tolerated; more mean leaves go unsigned.
    ok = signer.failing < _MAX_FAILING_ROUNDS
    return ok, {
        "last_signed_size": last,
        "failed_rounds": signer.failures,
        "failing_in_a_row": signer.failing,
    }


async def signer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the checkpoint signer for the app's lifetime (needs the pool: install after the pool's context)."""
    keys = app[SERVICES].log_keys
    if keys is None:
        yield
        return
    signer = CheckpointSigner(app[POOL], keys)
    app[SIGNER] = signer
    app[READINESS]["translog"] = _readiness
    task = asyncio.create_task(signer.run(), name="translog-signer")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
