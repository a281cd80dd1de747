"""Schemathesis, driven by our own OpenAPI document, against the live app: no response is a 5xx, and every
JSON error is the error body of DESIGN §3."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import schemathesis
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings

from registry.roles import Role
from tests.factories import make_key


def check_response(response: Any, where: str) -> None:
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
        "application/json"
    ):
        body = response.json()
        assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), where


def _check_operation(op: Any, base: str, key: str, examples: int) -> Any:
    @given(case=op.as_strategy())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        response = case.call(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        check_response(response, f"{case.method} {case.formatted_path}")

    return check


def fuzz(doc: dict[str, Any], base: str, keys: dict[str, str], examples: int) -> list[str]:
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        for role, key in keys.items():
            try:
                _check_operation(op, base, key, examples)()
            except AssertionError as exc:
                failures.append(f"{role} {op.method.upper()} {op.path}: {exc}")
    return failures


@pytest.mark.slow
async def test_fuzz_finds_no_5xx(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    keys = {role.value: await make_key(pool, role) for role in (Role.ADMIN, Role.PLATFORM, Role.STAFF)}
    doc = await (await client.get("/v1/openapi.json")).json()
    base = str(client.make_url("")).rstrip("/")
    # The fuzzer's HTTP client is synchronous: run it in a thread while this loop serves the app.
    failures = await asyncio.to_thread(fuzz, doc, base, keys, 20)
    assert not failures, "\n".join(failures[:5])


def test_check_response_catches_a_5xx() -> None:
    class Response:
        status_code = 500
        text = "boom"
        headers: dict[str, str] = {}

    with pytest.raises(AssertionError, match="500"):
        check_response(Response(), "GET /x")
