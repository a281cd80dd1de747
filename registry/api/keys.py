"""``/v1/keys``: create, list and revoke API keys (admin)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from registry import audit
from registry.api.routing import Api, Call, path_uuid
from registry.api.schemas import StrictModel
from registry.keys import store
from registry.roles import Role

__all__ = ["api"]

api = Api()
_ADMIN = frozenset({Role.ADMIN})


class KeyCreate(StrictModel):
    role: Role
    operator_id: uuid.UUID | None = Field(default=None, description="Required for role `operator`.")
    label: str = Field(default="", max_length=100)


class KeyOut(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    role: Role
    operator_id: uuid.UUID | None
    label: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself. Shown once: only its hash is stored.")


class KeyList(BaseModel):
    keys: list[KeyOut]


def key_out(rec: store.KeyRecord) -> KeyOut:
    return KeyOut(
        id=rec.id,
        prefix=rec.prefix,
        role=rec.role,
        operator_id=rec.operator_id,
        label=rec.label,
        created_at=rec.created_at,
        revoked_at=rec.revoked_at,
    )


@api.route(
    "POST",
    "/v1/keys",
    summary="Create an API key",
    tags=("keys",),
    roles=_ADMIN,
    body=KeyCreate,
    response=KeyCreated,
    status=201,
    errors=(404,),
)
async def create_key(call: Call[KeyCreate]) -> KeyCreated:
    """Create a key for a role (and, for `operator`, an operator). The key is in the response only."""
    body: KeyCreate = call.body
    async with call.pool.acquire() as conn, conn.transaction():
        rec, key = await store.create_key(
            conn, body.role, operator_id=body.operator_id, label=body.label, created_by=call.actor.key_id
        )
        await audit.record(
            conn, call.actor, "key.create", "api_key", rec.id, details={"role": rec.role.value}
        )
    return KeyCreated(**key_out(rec).model_dump(), key=key)


@api.route("GET", "/v1/keys", summary="List API keys", tags=("keys",), roles=_ADMIN, response=KeyList)
async def list_keys(call: Call[None]) -> KeyList:
    """Every live key (never the key itself)."""
    async with call.pool.acquire() as conn:
        return KeyList(keys=[key_out(r) for r in await store.list_keys(conn)])


@api.route(
    "DELETE",
    "/v1/keys/{id}",
    summary="Revoke an API key",
    tags=("keys",),
    roles=_ADMIN,
    response=KeyOut,
    errors=(404,),
)
async def revoke_key(call: Call[None]) -> KeyOut:
    """Revoke a key; it fails at once on every later request."""
    key_id = path_uuid(call)
    async with call.pool.acquire() as conn, conn.transaction():
        rec = await store.revoke_key(conn, key_id)
        await audit.record(conn, call.actor, "key.revoke", "api_key", rec.id)
    return key_out(rec)
