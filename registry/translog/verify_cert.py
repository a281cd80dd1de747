"""Registration certificates: a JWS (EdDSA) statement by the log's key, and its offline verification.

A certificate is a compact JWS with header ``{"alg": "EdDSA", "typ": "avatar-registration+jws", "kid": …}``
(the key's signed-note id), whose payload is RFC 8785 JSON: ``iss`` (the log's origin), ``iat``,
``avatar_id``, ``owner_operator_id``,
``fingerprints`` (``name_sha256``, ``images``, ``pdq``, ``model_sha256`` as the registration leaf has them),
``leaf_index``, ``leaf`` (base64 of the exact leaf bytes), ``checkpoint`` (the signed note covering the leaf)
and ``inclusion_proof`` (base64 hashes, leaf to root, RFC 9162). One key string, the log's signed-note
verifier key, checks both the JWS and the checkpoint, so verification needs nothing online.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OKPKey

from registry.errors import BadRequest
from registry.translog.checkpoint import Checkpoint, open_checkpoint
from registry.translog.merkle import ProofError, leaf_hash, verify_inclusion
from registry.translog.note import NoteError, Signer, Verifier, parse_verifier_key

__all__ = [
    "CERT_ALG",
    "CERT_TYP",
    "FINGERPRINT_KEYS",
    "MAX_CERTIFICATE_SIZE",
    "REGISTRATION_KIND",
    "CertificateError",
    "VerifiedCertificate",
    "load_certificate_text",
    "sign_statement",
    "verify_certificate",
]

CERT_TYP = "avatar-registration+jws"
# DESIGN §8 and the issue name EdDSA (RFC 8037); RFC 9864's "Ed25519" is the same signature, also accepted.
CERT_ALG = "EdDSA"
_ACCEPTED_ALGS = ("EdDSA", "Ed25519")
REGISTRATION_KIND = "avatar.registered"
# The leaf fields a certificate repeats as the avatar's fingerprints.
FINGERPRINT_KEYS = ("name_sha256", "images", "pdq", "model_sha256")
# A certificate is a few kilobytes; refuse to parse anything far larger.
MAX_CERTIFICATE_SIZE = 1 << 20
_REQUIRED = {
    "iss": str,
    "iat": int,
    "avatar_id": str,
    "owner_operator_id": str,
    "fingerprints": dict,
    "leaf_index": int,
    "leaf": str,
    "checkpoint": str,
    "inclusion_proof": list,
}


class CertificateError(BadRequest):
    """A registration certificate failed verification; the message names the failed step."""

    code = "certificate_invalid"


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """What a verified certificate proves: this avatar, owner and fingerprints are leaf ``leaf_index`` of the
    log whose signed ``checkpoint`` the key vouches for."""

    avatar_id: uuid.UUID
    owner_operator_id: uuid.UUID
    fingerprints: dict[str, Any]
    leaf_index: int
    leaf: dict[str, Any]
    checkpoint: Checkpoint
    issued_at: int
    key_id: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwk(verifier: Verifier, signer: Signer | None = None) -> OKPKey:
    data = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(verifier.public_key)}
    if signer is not None:
        data["d"] = _b64url(signer.seed)
    return OKPKey.import_key(data)


def sign_statement(claims: Mapping[str, Any], signer: Signer) -> str:
    """Return the compact JWS (EdDSA over Ed25519) of ``claims`` encoded as RFC 8785 JSON.

    The header's ``kid`` is the signer's signed-note key id (8 hex digits).
    """
    header = {"alg": CERT_ALG, "typ": CERT_TYP, "kid": f"{signer.key_id:08x}"}
    payload = rfc8785.dumps(dict(claims))
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated by RFC 9864; DESIGN §8 and the issue name it.
        warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
        return jws.serialize_compact(header, payload, _jwk(signer.verifier, signer), algorithms=[CERT_ALG])


def load_certificate_text(text: str) -> str:
    """Return the compact JWS in ``text``: either the JWS itself or the JSON the API serves (``{"jws": …}``).

    Raises ``CertificateError`` if it is neither.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise CertificateError("certificate file is not valid JSON") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("jws"), str):
            raise CertificateError('certificate JSON has no "jws" string')
        text = obj["jws"].strip()
    if text.count(".") != 2:
        raise CertificateError("certificate is not a compact JWS (expected three dot-separated parts)")
    return text


def _b64decode(what: str, text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CertificateError(f"{what} is not valid base64") from exc


def _uuid(what: str, text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise CertificateError(f"{what} is not a valid id") from exc


def verify_certificate(certificate: str, key: str) -> VerifiedCertificate:
    """Verify a registration certificate offline with the log's verifier key string.

    Steps: (1) parse the key (signed-note verifier key, Ed25519); (2) check the JWS header (``alg`` EdDSA or
    Ed25519, ``typ``, ``kid`` = the key's id) and signature; (3) check the payload's fields and types;
    (4) open the checkpoint note with the same key (tlog-checkpoint, origin = key name = ``iss``);
    (5) check the inclusion proof of the leaf bytes in that checkpoint's tree (RFC 9162 §2.1.3.2); (6) check
    the leaf is the avatar's registration and says what the statement claims.
    Raises ``CertificateError`` naming the failed step (``NoteKeyError`` for a malformed key).
    """
    if len(certificate) > MAX_CERTIFICATE_SIZE:
        raise CertificateError(
            f"certificate too large: limit {MAX_CERTIFICATE_SIZE} bytes, got {len(certificate)}"
        )
    # (1)
    verifier = parse_verifier_key(key.strip())
    token = load_certificate_text(certificate)
    # (2)
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    except (ValueError, binascii.Error) as exc:
        raise CertificateError("certificate header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise CertificateError("certificate header is not a JSON object")
    if header.get("alg") not in _ACCEPTED_ALGS:
        raise CertificateError(
            f"certificate algorithm not allowed: expected EdDSA, got {header.get('alg')!r}"
        )
    if header.get("typ") != CERT_TYP:
        raise CertificateError(f"certificate type mismatch: expected {CERT_TYP!r}, got {header.get('typ')!r}")
    expected_kid = f"{verifier.key_id:08x}"
    if header.get("kid") != expected_kid:
        raise CertificateError(
            f"certificate key id mismatch: expected {expected_kid}, got {header.get('kid')!r}"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
            obj = jws.deserialize_compact(token, _jwk(verifier), algorithms=[header["alg"]])
    except (JoseError, ValueError) as exc:
        raise CertificateError(f"certificate signature does not verify with key {verifier.name}") from exc
    # (3)
    try:
        claims = json.loads(obj.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CertificateError("certificate payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise CertificateError("certificate payload is not a JSON object")
    for name, typ in _REQUIRED.items():
        value = claims.get(name)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise CertificateError(f"certificate field {name!r} missing or not a {typ.__name__}")
    # (4)
    try:
        checkpoint = open_checkpoint(claims["checkpoint"].encode("utf-8"), verifier)
    except NoteError as exc:
        raise CertificateError(f"certificate checkpoint does not verify: {exc.message}") from exc
    except BadRequest as exc:  # CheckpointError: the body is not a valid tlog-checkpoint
        raise CertificateError(f"certificate checkpoint is invalid: {exc.message}") from exc
    if claims["iss"] != checkpoint.origin:
        raise CertificateError(
            f"certificate issuer mismatch: expected {checkpoint.origin!r}, got {claims['iss']!r}"
        )
    # (5)
    leaf_bytes = _b64decode("certificate leaf", claims["leaf"])
    proof = []
    for i, h in enumerate(claims["inclusion_proof"]):
        if not isinstance(h, str):
            raise CertificateError(f"inclusion proof hash {i} is not a base64 string")
        proof.append(_b64decode(f"inclusion proof hash {i}", h))
    index = claims["leaf_index"]
    try:
        verify_inclusion(index, checkpoint.size, leaf_hash(leaf_bytes), proof, checkpoint.root_hash)
    except ProofError as exc:
        raise CertificateError(f"certificate inclusion proof is invalid: {exc.message}") from exc
    # (6)
    try:
        leaf = json.loads(leaf_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CertificateError("certificate leaf is not JSON") from exc
    if not isinstance(leaf, dict) or leaf.get("kind") != REGISTRATION_KIND:
        raise CertificateError(f"certificate leaf is not an avatar registration (kind {REGISTRATION_KIND!r})")
    for name in ("avatar_id", "owner_operator_id"):
        if leaf.get(name) != claims[name]:
            raise CertificateError(
                f"certificate {name} does not match its leaf: leaf has {leaf.get(name)!r}, "
                f"statement has {claims[name]!r}"
            )
    expected_fp = {k: leaf[k] for k in FINGERPRINT_KEYS if k in leaf}
    if claims["fingerprints"] != expected_fp:
        raise CertificateError("certificate fingerprints do not match its leaf")
    return VerifiedCertificate(
        avatar_id=_uuid("certificate avatar_id", claims["avatar_id"]),
        owner_operator_id=_uuid("certificate owner_operator_id", claims["owner_operator_id"]),
        fingerprints=expected_fp,
        leaf_index=index,
        leaf=leaf,
        checkpoint=checkpoint,
        issued_at=claims["iat"],
        key_id=expected_kid,
    )
