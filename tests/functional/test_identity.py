"""Identity verification over HTTP: one test per failure code, uniqueness of a person, PII at rest."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from registry.attestations import devidp
from registry.config import Settings
from tests.factories import auth, make_operator, sign_attestation, verified_operator


async def _nonce(client: TestClient[Any, Any], op: dict[str, Any]) -> str:
    r = await client.post(f"/v1/operators/{op['id']}/identity/nonce", headers=auth(op["key"]))
    assert r.status == 201
    return (await r.json())["nonce"]


async def _submit(client: TestClient[Any, Any], op: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    r = await client.post(
        f"/v1/operators/{op['id']}/identity", json={"attestation": token}, headers=auth(op["key"])
    )
    return r.status, await r.json()


@pytest.fixture
async def op(client: TestClient[Any, Any], platform_key: str) -> dict[str, Any]:
    return await make_operator(client, platform_key)


async def test_verifies(
    client: TestClient[Any, Any], op: dict[str, Any], idp_dir: Path, settings: Settings
) -> None:
    token = sign_attestation(idp_dir, settings.audience, await _nonce(client, op))
    status, body = await _submit(client, op, token)
    assert status == 200, body
    assert body["identity_status"] == "verified"
    r = await client.get(f"/v1/operators/{op['id']}", headers=auth(op["key"]))
    profile = await r.json()
    assert profile["identity_status"] == "verified" and profile["verified_at"]


def _decode(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _encode(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _other_key_token(tmp_path: Path, audience: str, nonce: str) -> str:
    devidp.dev_keygen(tmp_path)
    return sign_attestation(tmp_path, audience, nonce)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong_key", "attestation_signature"),
        ("tampered", "attestation_signature"),
        ("alg_none", "attestation_signature"),
        ("not_a_jws", "attestation_malformed"),
        ("unknown_issuer", "attestation_issuer"),
        ("wrong_audience", "attestation_audience"),
        ("expired", "attestation_expired"),
        ("future_iat", "attestation_expired"),
        ("underage", "attestation_underage"),
        ("low_assurance", "attestation_assurance"),
    ],
)
async def test_attestation_faults(
    client: TestClient[Any, Any],
    op: dict[str, Any],
    idp_dir: Path,
    settings: Settings,
    tmp_path: Path,
    case: str,
    code: str,
) -> None:
    nonce = await _nonce(client, op)
    aud = settings.audience
    if case == "wrong_key":
        token = _other_key_token(tmp_path, aud, nonce)
    elif case == "tampered":
        h, p, s = sign_attestation(idp_dir, aud, nonce).split(".")
        claims = _decode(p)
        claims["sub"] = "someone-else"
        token = f"{h}.{_encode(claims)}.{s}"
    elif case == "alg_none":
        h, p, _ = sign_attestation(idp_dir, aud, nonce).split(".")
        hdr = _decode(h)
        hdr["alg"] = "none"
        token = f"{_encode(hdr)}.{p}."
    elif case == "not_a_jws":
        token = "this-is-not.a-jws-at-all"
    elif case == "unknown_issuer":
        token = sign_attestation(idp_dir, aud, nonce, issuer="https://other-idp.invalid")
    elif case == "wrong_audience":
        token = sign_attestation(idp_dir, "someone-else", nonce)
    elif case == "expired":
        token = sign_attestation(idp_dir, aud, nonce, now=time.time() - 3600, expires_in=600)
    elif case == "future_iat":
        token = sign_attestation(idp_dir, aud, nonce, now=time.time() + 600)
    elif case == "underage":
        token = sign_attestation(idp_dir, aud, nonce, age_over_18=False)
    else:
        token = sign_attestation(idp_dir, aud, nonce, assurance="low")
    status, body = await _submit(client, op, token)
    assert status == 400, body
    assert body["error"]["code"] == code, body
    r = await client.get(f"/v1/operators/{op['id']}", headers=auth(op["key"]))
    assert (await r.json())["identity_status"] == "unverified"


async def test_nonce_of_another_operator(
    client: TestClient[Any, Any], op: dict[str, Any], platform_key: str, idp_dir: Path, settings: Settings
) -> None:
    other = await make_operator(client, platform_key)
    token = sign_attestation(idp_dir, settings.audience, await _nonce(client, other))
    status, body = await _submit(client, op, token)
    assert (status, body["error"]["code"]) == (400, "attestation_nonce")
    assert "not issued to this operator" in body["error"]["message"]


async def test_nonce_never_issued(
    client: TestClient[Any, Any], op: dict[str, Any], idp_dir: Path, settings: Settings
) -> None:
    token = sign_attestation(idp_dir, settings.audience, "n" * 32)
    status, body = await _submit(client, op, token)
    assert (status, body["error"]["code"]) == (400, "attestation_nonce")


async def test_nonce_used_twice(
    client: TestClient[Any, Any], op: dict[str, Any], idp_dir: Path, settings: Settings
) -> None:
    nonce = await _nonce(client, op)
    sub = f"person-{uuid.uuid4()}"
    status, _ = await _submit(client, op, sign_attestation(idp_dir, settings.audience, nonce, sub=sub))
    assert status == 200
    status, body = await _submit(client, op, sign_attestation(idp_dir, settings.audience, nonce, sub=sub))
    assert (status, body["error"]["code"]) == (400, "attestation_nonce")
    assert "already used" in body["error"]["message"]


async def test_nonce_expired(
    client: TestClient[Any, Any], op: dict[str, Any], idp_dir: Path, settings: Settings, pool: asyncpg.Pool
) -> None:
    nonce = await _nonce(client, op)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE identity_nonces SET expires_at = now() - interval '1 second' WHERE nonce = $1", nonce
        )
    status, body = await _submit(client, op, sign_attestation(idp_dir, settings.audience, nonce))
    assert (status, body["error"]["code"]) == (400, "attestation_nonce")
    assert "expired" in body["error"]["message"]


async def test_replay(
    client: TestClient[Any, Any], op: dict[str, Any], idp_dir: Path, settings: Settings
) -> None:
    token = sign_attestation(idp_dir, settings.audience, await _nonce(client, op))
    assert (await _submit(client, op, token))[0] == 200
    status, body = await _submit(client, op, token)
    assert (status, body["error"]["code"]) == (400, "attestation_replay")


async def test_same_person_twice_is_409(
    client: TestClient[Any, Any], platform_key: str, idp_dir: Path, settings: Settings
) -> None:
    sub = f"person-{uuid.uuid4()}"
    await verified_operator(client, platform_key, idp_dir, settings.audience, sub=sub)
    second = await make_operator(client, platform_key)
    token = sign_attestation(idp_dir, settings.audience, await _nonce(client, second), sub=sub)
    status, body = await _submit(client, second, token)
    assert (status, body["error"]["code"]) == (409, "identity_in_use")
    # Nothing half-written: the nonce is still usable for a different person.
    r = await client.get(f"/v1/operators/{second['id']}", headers=auth(second["key"]))
    assert (await r.json())["identity_status"] == "unverified"


async def test_same_id_number_twice_is_409(
    client: TestClient[Any, Any], platform_key: str, idp_dir: Path, settings: Settings
) -> None:
    number = f"11010519491231{uuid.uuid4().int % 1000:03d}X"
    await verified_operator(client, platform_key, idp_dir, settings.audience, id_number=number)
    second = await make_operator(client, platform_key)
    # The same number written differently (lower-case check letter, spaces) is the same person.
    spaced = f"{number[:6]} {number[6:14]} {number[14:].lower()}"
    token = sign_attestation(idp_dir, settings.audience, await _nonce(client, second), id_number=spaced)
    status, body = await _submit(client, second, token)
    assert (status, body["error"]["code"]) == (409, "identity_in_use")


async def test_operator_key_acts_only_for_itself(
    client: TestClient[Any, Any], op: dict[str, Any], platform_key: str
) -> None:
    other = await make_operator(client, platform_key)
    r = await client.post(f"/v1/operators/{other['id']}/identity/nonce", headers=auth(op["key"]))
    assert r.status == 403
    r = await client.get(f"/v1/operators/{other['id']}", headers=auth(op["key"]))
    assert r.status == 403


async def test_revoke_and_staff_read_is_audited(
    client: TestClient[Any, Any],
    platform_key: str,
    staff_key: str,
    admin_key: str,
    idp_dir: Path,
    settings: Settings,
) -> None:
    op = await verified_operator(
        client,
        platform_key,
        idp_dir,
        settings.audience,
        legal_name="Zhang Wei Test",
        id_number="110105194912310021",
    )
    r = await client.get(f"/v1/operators/{op['id']}/identity", headers=auth(staff_key))
    assert r.status == 400  # a reason is required
    r = await client.get(f"/v1/operators/{op['id']}/identity?reason=ticket-42", headers=auth(staff_key))
    assert r.status == 200
    ident = await r.json()
    assert ident["legal_name"] == "Zhang Wei Test" and ident["id_number"] == "110105194912310021"
    r = await client.post(
        f"/v1/operators/{op['id']}/identity/revoke", json={"reason": "fraud case 7"}, headers=auth(staff_key)
    )
    assert r.status == 200 and (await r.json())["identity_status"] == "revoked"
    r = await client.get("/v1/audit?limit=1000", headers=auth(admin_key))
    entries = (await r.json())["entries"]
    page = [e for e in entries if e["target_id"] == op["id"]]
    while (await r.json())["next_cursor"]:
        r = await client.get(
            f"/v1/audit?limit=1000&cursor={(await r.json())['next_cursor']}", headers=auth(admin_key)
        )
        page += [e for e in (await r.json())["entries"] if e["target_id"] == op["id"]]
    assert [(e["action"], e["reason"]) for e in page] == [
        ("identity.read", "ticket-42"),
        ("identity.revoke", "fraud case 7"),
    ]
    assert "Zhang" not in str(page) and "110105" not in str(page)
    # A revoked identity cannot verify again.
    nonce = await _nonce(client, op)
    status, body = await _submit(client, op, sign_attestation(idp_dir, settings.audience, nonce))
    assert (status, body["error"]["code"]) == (409, "identity_revoked")


async def test_no_plain_pii_anywhere_in_the_database(
    client: TestClient[Any, Any],
    platform_key: str,
    staff_key: str,
    idp_dir: Path,
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    """After a full flow, read every text, json and bytea column and find no legal name or ID number."""
    name = f"Plaintext Canary {uuid.uuid4().hex[:8]}"
    number = f"44030419900101{uuid.uuid4().int % 1000:03d}7"
    op = await verified_operator(
        client, platform_key, idp_dir, settings.audience, legal_name=name, id_number=number
    )
    await client.get(f"/v1/operators/{op['id']}/identity?reason=pii-scan", headers=auth(staff_key))
    needles = [name.encode(), number.encode(), name.encode("utf-16-le")]
    async with pool.acquire() as conn:
        cols = await conn.fetch(
            """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public'
                 AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea',
                                   'ARRAY', 'USER-DEFINED')"""
        )
        assert cols
        scanned = 0
        for c in cols:
            # Identifiers come from the catalogue, not from input.
            rows = await conn.fetch(f'SELECT "{c["column_name"]}"::text AS v FROM "{c["table_name"]}"')
            for row in rows:
                scanned += 1
                v = row["v"] or ""
                blob = v.encode()
                if c["data_type"] == "bytea" and v.startswith("\\x"):
                    blob = bytes.fromhex(v[2:])
                for needle in needles:
                    assert needle not in blob, f"plain PII in {c['table_name']}.{c['column_name']}"
        assert scanned > 0
