"""Every error is JSON {"error": {code, message, details}}: never HTML, never a traceback."""

from __future__ import annotations

import io
from typing import Any

from aiohttp.test_utils import TestClient

from tests.factories import auth


def _is_error(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert "Traceback" not in body["error"]["message"]


async def test_404_is_json(client: TestClient[Any, Any]) -> None:
    r = await client.get("/nope")
    assert r.status == 404 and r.content_type == "application/json"
    _is_error(await r.json(), "not_found")


async def test_405_is_json(client: TestClient[Any, Any]) -> None:
    r = await client.put("/healthz")
    assert r.status == 405
    _is_error(await r.json(), "method_not_allowed")


async def test_bad_json(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.post(
        "/v1/keys", data=b"{not json", headers={**auth(admin_key), "Content-Type": "application/json"}
    )
    assert r.status == 400
    _is_error(await r.json(), "invalid_json")


async def test_wrong_content_type(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.post(
        "/v1/keys", data=b"role=staff", headers={**auth(admin_key), "Content-Type": "text/plain"}
    )
    assert r.status == 415
    _is_error(await r.json(), "unsupported_media_type")


async def test_unknown_field(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.post("/v1/keys", json={"role": "staff", "colour": "red"}, headers=auth(admin_key))
    assert r.status == 400
    body = await r.json()
    _is_error(body, "validation_error")
    assert body["error"]["details"][0]["field"] == "colour"


async def test_wrong_type_names_the_field(client: TestClient[Any, Any], platform_key: str) -> None:
    r = await client.post("/v1/operators", json={"display_name": 42}, headers=auth(platform_key))
    assert r.status == 400
    body = await r.json()
    assert body["error"]["details"][0]["field"] == "display_name"
    assert "display_name" in body["error"]["message"]


async def test_json_array_body(client: TestClient[Any, Any], platform_key: str) -> None:
    r = await client.post("/v1/operators", json=[1, 2], headers=auth(platform_key))
    assert r.status == 400
    _is_error(await r.json(), "validation_error")


async def test_oversized_body_is_413(client: TestClient[Any, Any], platform_key: str) -> None:
    big = b'{"display_name": "' + b"a" * (65 * 1024 * 1024) + b'"}'
    r = await client.post(
        "/v1/operators",
        data=io.BytesIO(big),
        headers={**auth(platform_key), "Content-Type": "application/json"},
    )
    assert r.status == 413
    _is_error(await r.json(), "payload_too_large")


async def test_bad_query_parameter(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.get("/v1/audit?limit=abc", headers=auth(admin_key))
    assert r.status == 400
    body = await r.json()
    assert body["error"]["details"][0]["field"] == "limit"
    r = await client.get("/v1/audit?bogus=1", headers=auth(admin_key))
    assert r.status == 400


async def test_request_id_is_echoed(client: TestClient[Any, Any]) -> None:
    r = await client.get("/healthz", headers={"X-Request-Id": "abc12345-test"})
    assert r.headers["X-Request-Id"] == "abc12345-test"
    r = await client.get("/healthz", headers={"X-Request-Id": "<script>"})
    assert r.headers["X-Request-Id"] != "<script>"


async def test_metrics_is_prometheus_text(client: TestClient[Any, Any]) -> None:
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    assert "registry_http_requests_total" in text
