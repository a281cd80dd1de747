"""Offline verification of registration certificates: a good one passes, and each failed step is refused
with its own message. Certificates are built here from the pure core (no database)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785

from registry.translog.checkpoint import Checkpoint, sign_checkpoint
from registry.translog.leaves import check_leaf, encode_leaf
from registry.translog.merkle import inclusion_proof, leaf_hash, root_hash
from registry.translog.note import NoteKeyError, Signer, generate_signer
from registry.translog.verify_cert import CertificateError, sign_statement, verify_certificate

ORIGIN = "registry.test/log"
SIGNER = generate_signer(ORIGIN)
KEY = SIGNER.verifier.key_string
AVATAR, OWNER = uuid.uuid4(), uuid.uuid4()
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def registration_leaf(**override: Any) -> bytes:
    fields = {
        "kind": "avatar.registered",
        "avatar_id": str(AVATAR),
        "owner_operator_id": str(OWNER),
        "name_sha256": hashlib.sha256(b"name").hexdigest(),
        "images": [hashlib.sha256(b"img").hexdigest()],
        "pdq": ["f" * 64],
        "model_sha256": None,
        "status": "active",
    }
    fields.update(override)
    return encode_leaf(check_leaf(fields), NOW)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def claims(
    *, leaf: bytes | None = None, index: int = 3, size: int = 7, signer: Signer = SIGNER, **override: Any
) -> dict[str, Any]:
    """Claims of a certificate for a tree of ``size`` leaves whose leaf ``index`` is the registration."""
    leaf = leaf or registration_leaf()
    leaves = [
        encode_leaf(check_leaf({"kind": "test.other", "n": i}), NOW) if i != index else leaf
        for i in range(size)
    ]
    hashes = [leaf_hash(x) for x in leaves]
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root_hash(hashes)), signer)
    decoded = json.loads(leaf)
    out = {
        "iss": ORIGIN,
        "iat": 1_740_000_000,
        "avatar_id": decoded["avatar_id"],
        "owner_operator_id": decoded.get("owner_operator_id", str(OWNER)),
        "fingerprints": {
            k: decoded[k] for k in ("name_sha256", "images", "pdq", "model_sha256") if k in decoded
        },
        "leaf_index": index,
        "leaf": b64(leaf),
        "checkpoint": note.decode(),
        "inclusion_proof": [b64(h) for h in inclusion_proof(hashes, index)],
    }
    out.update(override)
    return out


def raw_jws(header: dict[str, Any], payload: bytes, signer: Signer = SIGNER) -> str:
    """A compact JWS built by hand, so a test can put anything in the header."""

    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{enc(json.dumps(header).encode())}.{enc(payload)}"
    return f"{signing_input}.{enc(signer.sign(signing_input.encode()))}"


def header(**override: Any) -> dict[str, Any]:
    return {"alg": "EdDSA", "typ": "avatar-registration+jws", "kid": f"{SIGNER.key_id:08x}", **override}


def test_a_good_certificate_verifies() -> None:
    cert = verify_certificate(sign_statement(claims(), SIGNER), KEY)
    assert (cert.avatar_id, cert.owner_operator_id, cert.leaf_index) == (AVATAR, OWNER, 3)
    assert cert.checkpoint.size == 7 and cert.leaf["status"] == "active"
    assert cert.fingerprints["pdq"] == ["f" * 64]


def test_the_api_json_form_and_the_rfc_9864_alg_name_are_accepted() -> None:
    token = raw_jws(header(alg="Ed25519"), rfc8785.dumps(claims()))
    assert verify_certificate(json.dumps({"jws": token, "leaf_index": 3}), KEY).leaf_index == 3


def test_every_leaf_position_and_tree_size_verifies() -> None:
    for size in (1, 2, 5, 8, 13):
        for index in range(size):
            verify_certificate(sign_statement(claims(index=index, size=size), SIGNER), KEY)


def test_malformed_key_is_refused() -> None:
    with pytest.raises(NoteKeyError, match="malformed verifier key"):
        verify_certificate(sign_statement(claims(), SIGNER), "not-a-key")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"leaf_index": 1}', 'has no "jws"'),
        ("abc.def", "not a compact JWS"),
    ],
)
def test_unreadable_certificates_are_refused(text: str, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        verify_certificate(text, KEY)


def test_another_key_is_refused_by_key_id() -> None:
    other = generate_signer(ORIGIN)
    with pytest.raises(CertificateError, match="key id mismatch"):
        verify_certificate(sign_statement(claims(signer=other), other), KEY)


def test_a_forged_key_id_fails_the_signature() -> None:
    other = generate_signer(ORIGIN)
    with pytest.raises(CertificateError, match="signature does not verify"):
        verify_certificate(raw_jws(header(), rfc8785.dumps(claims()), other), KEY)


def test_a_changed_payload_fails_the_signature() -> None:
    head, _, sig = sign_statement(claims(), SIGNER).split(".")
    forged = base64.urlsafe_b64encode(rfc8785.dumps(claims(leaf_index=2))).rstrip(b"=").decode()
    with pytest.raises(CertificateError, match="signature does not verify"):
        verify_certificate(f"{head}.{forged}.{sig}", KEY)


@pytest.mark.parametrize(
    ("hdr", "message"),
    [
        (header(alg="HS256"), "algorithm not allowed"),
        (header(alg="none"), "algorithm not allowed"),
        (header(typ="JWT"), "type mismatch"),
    ],
)
def test_header_checks(hdr: dict[str, Any], message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        verify_certificate(raw_jws(hdr, rfc8785.dumps(claims())), KEY)


def test_a_missing_field_is_refused() -> None:
    body = claims()
    del body["inclusion_proof"]
    with pytest.raises(CertificateError, match="'inclusion_proof' missing"):
        verify_certificate(sign_statement(body, SIGNER), KEY)


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    other = generate_signer(ORIGIN)
    body = claims(checkpoint=claims(signer=other)["checkpoint"])
    with pytest.raises(CertificateError, match="checkpoint does not verify"):
        verify_certificate(sign_statement(body, SIGNER), KEY)


def test_the_issuer_must_be_the_checkpoint_origin() -> None:
    with pytest.raises(CertificateError, match="issuer mismatch"):
        verify_certificate(sign_statement(claims(iss="elsewhere/log"), SIGNER), KEY)


def test_a_short_inclusion_proof_is_refused() -> None:
    body = claims()
    body["inclusion_proof"] = body["inclusion_proof"][:-1]
    with pytest.raises(CertificateError, match="inclusion proof is invalid: inclusion proof has wrong size"):
        verify_certificate(sign_statement(body, SIGNER), KEY)


def test_a_leaf_not_in_the_tree_is_refused() -> None:
    body = claims()
    body["leaf"] = b64(registration_leaf(status="suspended"))
    with pytest.raises(CertificateError, match="does not lead to the root"):
        verify_certificate(sign_statement(body, SIGNER), KEY)


def test_the_leaf_must_be_a_registration() -> None:
    leaf = encode_leaf(check_leaf({"kind": "avatar.transferred", "avatar_id": str(AVATAR)}), NOW)
    body = claims(leaf=leaf)
    with pytest.raises(CertificateError, match="not an avatar registration"):
        verify_certificate(sign_statement(body, SIGNER), KEY)


def test_the_owner_must_match_the_leaf() -> None:
    body = claims(owner_operator_id=str(uuid.uuid4()))
    with pytest.raises(CertificateError, match="owner_operator_id does not match its leaf"):
        verify_certificate(sign_statement(body, SIGNER), KEY)


def test_the_fingerprints_must_match_the_leaf() -> None:
    body = claims()
    body["fingerprints"]["pdq"] = ["0" * 64]
    with pytest.raises(CertificateError, match="fingerprints do not match"):
        verify_certificate(sign_statement(body, SIGNER), KEY)
