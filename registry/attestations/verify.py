"""Verify an identity attestation: a compact JWS from a configured identity provider (DESIGN §8).

The attestation is a JWT (RFC 7519) with explicit typing (RFC 8725 §3.11), signed with Ed25519 (``alg``
``Ed25519`` per RFC 9864, or the older polymorphic ``EdDSA`` of RFC 8037 pinned here to Ed25519 keys) or ES256
(RFC 7518 §3.4). Keys come from the provider's JWKS (RFC 7517), never from the token itself.

Header: ``alg`` (one of :data:`ALLOWED_ALGORITHMS`), ``typ`` = ``idv-attestation+jwt`` (``application/``
prefix and case ignored, RFC 7515 §4.1.9), optional ``kid``; no other parameter (no ``crit``, ``b64``,
``jku``, ``jwk``, ``x5u``, ``x5c``).

Claims (required unless marked):

=================  ===========================================================================================
``iss``            the provider, a key of the configured issuer → JWKS map
``sub``            the provider's pseudonymous, stable id of the person (1–255 characters)
``aud``            string or array of strings containing our configured audience
``iat``, ``exp``   NumericDate (RFC 7519 §2); ``exp`` after ``iat``
``nbf``            optional NumericDate
``jti``            the provider's unique token id (8–255 visible ASCII characters); the store checks replay
``nonce``          the nonce we issued to the operator (16–255 URL-safe characters); the store checks it
``age_over_18``    JSON boolean, must be ``true``
``assurance_level`` a level from the configured order (e.g. ``low`` < ``substantial`` < ``high``)
``legal_name``     optional: the person's legal name (stored only encrypted)
``id_number``      optional: national ID number (stored only encrypted, plus a blind index)
=================  ===========================================================================================

Other claims (for example the development provider's descriptive ``dev_operator``) are ignored.

The checks run in this order and stop at the first failure; each failure is an
:class:`~registry.errors.AttestationError` whose ``code`` is one of :class:`AttestationFailure`:

(1) shape: a string of at most :data:`MAX_TOKEN_CHARS`, three base64url segments        → malformed
(2) header: a JSON object                                                              → malformed
(3) ``alg`` present (else malformed) and in the allow-list (``none``, ``HS256`` … never
    reach a key)                                                                       → signature
(4) ``typ`` and the header parameters                                                  → malformed
(5) payload: a JSON object with a string ``iss``                                       → malformed
(6) ``iss`` is a configured provider                                                   → issuer
(7) the signature verifies with one of that provider's keys (joserfc)                  → signature
(8) every claim is present and well-formed                                             → malformed
(9) ``aud``                                                                            → audience
(10) ``exp``, ``nbf``, ``iat`` against ``now`` with the leeway (at most 60 s)           → expired
(11) ``age_over_18``                                                                   → underage
(12) ``assurance_level`` at least the minimum                                          → assurance

Claims other than ``iss`` are only judged after the signature, so a tampered payload is reported as a bad
signature, not as whatever the tampering broke. Error messages never repeat ``legal_name`` or ``id_number``.

The second half of the module holds the key sources (:class:`KeySource`): they do the I/O (read a JWKS file,
fetch a JWKS URL with aiohttp) at load time, so :func:`verify_attestation` itself stays pure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import ipaddress
import json
import logging
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, OKPKey

from registry.errors import AttestationError, NotReady
from registry.pii import normalise_id_number

__all__ = [
    "ALLOWED_ALGORITHMS",
    "ATTESTATION_TYP",
    "MAX_JWKS_BYTES",
    "MAX_JWKS_KEYS",
    "MAX_LEEWAY_S",
    "MAX_TOKEN_CHARS",
    "AttestationFailure",
    "JwksFileSource",
    "JwksUrlSource",
    "KeySource",
    "VerifiedAttestation",
    "key_source_for",
    "keysets_of",
    "parse_jwks",
    "verify_attestation",
]

_logger = logging.getLogger(__name__)

ATTESTATION_TYP = "idv-attestation+jwt"
# Ed25519 under both names (RFC 9864 "Ed25519", RFC 8037 "EdDSA") and ECDSA P-256. Everything else, notably
# "none" and the HMAC algorithms whose "key" could be the public JWKS, is refused before any key is touched.
ALLOWED_ALGORITHMS: tuple[str, ...] = ("EdDSA", "Ed25519", "ES256")
# The key type and curve each allowed algorithm requires (RFC 8037 §3.1, RFC 7518 §3.4).
_ALGORITHM_KEYS: dict[str, tuple[str, str]] = {
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
}
# RFC 9864 renamed Ed25519's "EdDSA" to "Ed25519": a JWK that declares either name may verify either.
_ALG_FAMILY: dict[str, frozenset[str]] = {
    "EdDSA": frozenset({"EdDSA", "Ed25519"}),
    "Ed25519": frozenset({"EdDSA", "Ed25519"}),
    "ES256": frozenset({"ES256"}),
}
_HEADER_PARAMETERS = frozenset({"alg", "typ", "kid"})
# The issue allows at most 60 s of clock skew between us and a provider.
MAX_LEEWAY_S = 60
# An attestation is a few hundred bytes; 16 KiB leaves room for long names and still bounds the work.
MAX_TOKEN_CHARS = 16 * 1024
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]*")
_JTI_RE = re.compile(r"[\x21-\x7e]{8,255}")
# URL-safe characters (RFC 3986 unreserved): our nonces are base64url or hex, 16 characters or more.
_NONCE_RE = re.compile(r"[A-Za-z0-9._~-]{16,255}")
_MAX_SUB_CHARS = 255
_MAX_LEVEL_CHARS = 64
_MAX_LEGAL_NAME_CHARS = 256
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_REQUIRED_CLAIMS = ("sub", "aud", "iat", "exp", "jti", "nonce", "age_over_18", "assurance_level")


class AttestationFailure(enum.StrEnum):
    """The ``code`` of each refused check (an :class:`AttestationError`'s ``code``; HTTP 400)."""

    SIGNATURE = "attestation_signature"
    MALFORMED = "attestation_malformed"
    ISSUER = "attestation_issuer"
    AUDIENCE = "attestation_audience"
    EXPIRED = "attestation_expired"
    UNDERAGE = "attestation_underage"
    ASSURANCE = "attestation_assurance"
    # Checked by the store with the database, not by verify_attestation.
    NONCE = "attestation_nonce"
    REPLAY = "attestation_replay"


@dataclass(frozen=True, slots=True)
class VerifiedAttestation:
    """What a valid attestation says. ``legal_name`` and ``id_number`` are left out of ``repr``."""

    issuer: str
    subject: str
    jti: str
    nonce: str
    issued_at: float
    expires_at: float
    assurance: str
    age_over_18: bool
    legal_name: str | None = field(repr=False)
    # As the provider sent it; registry.pii.normalise_id_number gives the form the blind index uses.
    id_number: str | None = field(repr=False)
    # SHA-256 of the token text, 32 bytes: what the operator row and the audit log keep instead of the token.
    digest: bytes


def verify_attestation(
    token: str,
    *,
    keysets: Mapping[str, KeySet],
    audience: str,
    now: float,
    leeway_s: int = MAX_LEEWAY_S,
    min_assurance: str,
    assurance_order: Sequence[str],
) -> VerifiedAttestation:
    """Verify an identity attestation and return its claims; see the module docstring for the steps.

    Args:
        token: the compact JWS.
        keysets: issuer → that issuer's public keys (from :func:`keysets_of`).
        audience: the ``aud`` we require.
        now: the current Unix time (the caller's clock).
        leeway_s: tolerated clock skew for ``exp``/``nbf``/``iat``, 0–60 s.
        min_assurance: the weakest acceptable level, one of ``assurance_order``.
        assurance_order: the known levels, weakest first.

    Returns:
        The verified claims. The nonce and ``jti`` are only checked for form: the caller must still check
        that the nonce was issued to this operator and is unexpired and unused, and that ``jti`` is new.

    Raises:
        AttestationError: with ``code`` one of :class:`AttestationFailure`, at the first failed check.
        ValueError: if the policy itself is invalid (empty or repeated levels, unknown minimum, leeway out
            of range): a misconfiguration must not pass or reject tokens silently.
    """
    # (0) The policy: fail closed on a configuration that would make a check meaningless.
    levels = _check_policy(leeway_s=leeway_s, min_assurance=min_assurance, assurance_order=assurance_order)

    # (1) Shape.
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise _fail(
            AttestationFailure.MALFORMED,
            f"attestation must be a string of at most {MAX_TOKEN_CHARS} characters",
        )
    segments = token.split(".")
    if len(segments) != 3:
        raise _fail(AttestationFailure.MALFORMED, f"compact JWS has 3 segments, got {len(segments)}")
    header_b64, payload_b64, _signature_b64 = segments

    # (2) Header.
    header = _decode_json_segment(header_b64, "header")

    # (3) Algorithm allow-list, before anything else in the header is trusted.
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise _fail(AttestationFailure.MALFORMED, f"alg must be a non-empty string, got {_show(alg)}")
    if alg not in ALLOWED_ALGORITHMS:
        raise _fail(
            AttestationFailure.SIGNATURE,
            f"alg must be one of {', '.join(ALLOWED_ALGORITHMS)}, got {_show(alg)}",
        )

    # (4) Explicit type and nothing in the header we would not honour.
    _check_typ(header.get("typ"))
    extra = sorted(set(header) - _HEADER_PARAMETERS)
    if extra:
        raise _fail(AttestationFailure.MALFORMED, f"unsupported header parameters: {', '.join(extra)}")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise _fail(AttestationFailure.MALFORMED, f"kid must be a non-empty string, got {_show(kid)}")

    # (5) Payload, read only as far as the issuer needed to pick keys.
    claims = _decode_json_segment(payload_b64, "payload")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _fail(AttestationFailure.MALFORMED, f"iss must be a non-empty string, got {_show(issuer)}")

    # (6) Issuer.
    keyset = keysets.get(issuer)
    if keyset is None:
        raise _fail(
            AttestationFailure.ISSUER, f"issuer {_show(issuer)} is not a configured identity provider"
        )

    # (7) Signature.
    _check_signature(token, keyset, alg=alg, kid=kid, issuer=issuer)

    # (8) Claims present and well-formed.
    missing = [name for name in _REQUIRED_CLAIMS if claims.get(name) is None]
    if missing:
        raise _fail(AttestationFailure.MALFORMED, f"missing claims: {', '.join(missing)}")
    subject = _string_claim(claims, "sub", max_chars=_MAX_SUB_CHARS)
    audiences = _audience_claim(claims["aud"])
    issued_at = _time_claim(claims, "iat")
    expires_at = _time_claim(claims, "exp")
    not_before = _time_claim(claims, "nbf") if claims.get("nbf") is not None else None
    if expires_at <= issued_at:
        raise _fail(AttestationFailure.MALFORMED, f"exp ({expires_at}) must be after iat ({issued_at})")
    jti = _pattern_claim(claims, "jti", _JTI_RE, "8-255 visible ASCII characters")
    nonce = _pattern_claim(claims, "nonce", _NONCE_RE, "16-255 URL-safe characters")
    age_over_18 = claims["age_over_18"]
    if not isinstance(age_over_18, bool):
        raise _fail(AttestationFailure.MALFORMED, f"age_over_18 must be a boolean, got {_show(age_over_18)}")
    assurance = _string_claim(claims, "assurance_level", max_chars=_MAX_LEVEL_CHARS)
    legal_name = _optional_pii_claim(claims, "legal_name")
    id_number = _optional_pii_claim(claims, "id_number")
    if id_number is not None:
        try:
            normalise_id_number(id_number)
        except ValueError as exc:
            # The value itself is PII: the message names the rule only.
            raise _fail(AttestationFailure.MALFORMED, f"id_number is not usable: {exc}") from None

    # (9) Audience (RFC 7519 §4.1.3).
    if audience not in audiences:
        raise _fail(
            AttestationFailure.AUDIENCE,
            f"aud must contain {audience!r}, got {', '.join(_show(a) for a in audiences)}",
        )

    # (10) Validity window (RFC 7519 §4.1.4, §4.1.5, §4.1.6), each edge widened by the leeway.
    if now >= expires_at + leeway_s:
        raise _fail(
            AttestationFailure.EXPIRED,
            f"attestation expired at {expires_at}, now {now} (leeway {leeway_s} s)",
        )
    if not_before is not None and now < not_before - leeway_s:
        raise _fail(
            AttestationFailure.EXPIRED,
            f"attestation not valid before {not_before}, now {now} (leeway {leeway_s} s)",
        )
    if issued_at > now + leeway_s:
        raise _fail(
            AttestationFailure.EXPIRED,
            f"attestation issued in the future at {issued_at}, now {now} (leeway {leeway_s} s)",
        )

    # (11) Adult.
    if not age_over_18:
        raise _fail(AttestationFailure.UNDERAGE, "age_over_18 is false: operators must be adults")

    # (12) Assurance.
    rank = levels.get(assurance)
    if rank is None:
        raise _fail(
            AttestationFailure.ASSURANCE,
            f"unknown assurance level {_show(assurance)}, expected one of {', '.join(assurance_order)}",
        )
    if rank < levels[min_assurance]:
        raise _fail(
            AttestationFailure.ASSURANCE,
            f"assurance level {assurance!r} is below the minimum {min_assurance!r}",
        )

    return VerifiedAttestation(
        issuer=issuer,
        subject=subject,
        jti=jti,
        nonce=nonce,
        issued_at=issued_at,
        expires_at=expires_at,
        assurance=assurance,
        age_over_18=age_over_18,
        legal_name=legal_name,
        id_number=id_number,
        digest=hashlib.sha256(token.encode()).digest(),
    )


def _check_policy(*, leeway_s: int, min_assurance: str, assurance_order: Sequence[str]) -> dict[str, int]:
    """Return level → rank, or raise ValueError for a policy that cannot be enforced."""
    if not 0 <= leeway_s <= MAX_LEEWAY_S:
        raise ValueError(f"leeway must be 0-{MAX_LEEWAY_S} s, got {leeway_s}")
    if not assurance_order:
        raise ValueError("assurance_order is empty: no attestation could be judged")
    levels = {level: rank for rank, level in enumerate(assurance_order)}
    if len(levels) != len(assurance_order):
        raise ValueError(f"assurance_order repeats a level: {list(assurance_order)}")
    if min_assurance not in levels:
        raise ValueError(f"min_assurance {min_assurance!r} is not in assurance_order {list(assurance_order)}")
    return levels


def _fail(failure: AttestationFailure, message: str) -> AttestationError:
    return AttestationError(message, code=failure.value)


def _show(value: object) -> str:
    """A bounded repr of an attacker-supplied value for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 §5.2 lets a parser reject duplicate member names; two readers picking different duplicates
    # is how signature-confusion bugs start, so we refuse them.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _decode_json_segment(segment: str, what: str) -> dict[str, Any]:
    """Decode one base64url (no padding, RFC 7515 §2) segment holding a JSON object."""
    if not segment or not _SEGMENT_RE.fullmatch(segment) or len(segment) % 4 == 1:
        raise _fail(AttestationFailure.MALFORMED, f"{what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw, object_pairs_hook=_unique_object, parse_constant=_reject_constant)
    except (binascii.Error, ValueError) as exc:
        raise _fail(AttestationFailure.MALFORMED, f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _fail(AttestationFailure.MALFORMED, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _check_typ(typ: object) -> None:
    if not isinstance(typ, str):
        raise _fail(AttestationFailure.MALFORMED, f"typ must be {ATTESTATION_TYP!r}, got {_show(typ)}")
    # RFC 7515 §4.1.9: media types compare case-insensitively and "application/" may be left out.
    normalised = typ.lower().removeprefix("application/")
    if normalised != ATTESTATION_TYP:
        raise _fail(AttestationFailure.MALFORMED, f"typ must be {ATTESTATION_TYP!r}, got {_show(typ)}")


def _candidate_keys(keyset: KeySet, *, alg: str, kid: str | None) -> list[Key]:
    """The keys of ``keyset`` that may verify ``alg`` (right type and curve, use, alg and kid)."""
    key_type, curve = _ALGORITHM_KEYS[alg]
    family = _ALG_FAMILY[alg]
    candidates = []
    for key in keyset.keys:
        if key.key_type != key_type or key.get("crv") != curve:
            continue
        if key.get("use") not in (None, "sig"):
            continue
        if key.alg is not None and key.alg not in family:
            continue
        if kid is not None and key.kid != kid:
            continue
        candidates.append(key)
    return candidates


def _check_signature(token: str, keyset: KeySet, *, alg: str, kid: str | None, issuer: str) -> None:
    """Verify the JWS with joserfc against the issuer's matching keys (all of them when there is no kid)."""
    candidates = _candidate_keys(keyset, alg=alg, kid=kid)
    if not candidates:
        which = f"kid {_show(kid)}" if kid is not None else "any kid"
        raise _fail(AttestationFailure.SIGNATURE, f"issuer {issuer!r} has no {alg} key for {which}")
    for key in candidates:
        try:
            with warnings.catch_warnings():
                # joserfc warns that RFC 9864 deprecates "EdDSA" in favour of "Ed25519". DESIGN §8 still
                # accepts it (providers send it) and _candidate_keys pins it to Ed25519 keys.
                warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
                # The allow-list is named explicitly: joserfc accepts "Ed25519" only when asked to.
                jws.deserialize_compact(token, key, algorithms=[alg])
        except (JoseError, ValueError):
            continue
        return
    raise _fail(
        AttestationFailure.SIGNATURE, f"signature does not verify with issuer {issuer!r}'s {alg} keys"
    )


def _string_claim(claims: Mapping[str, Any], name: str, *, max_chars: int) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value or len(value) > max_chars or _CONTROL_RE.search(value):
        raise _fail(
            AttestationFailure.MALFORMED,
            f"{name} must be 1-{max_chars} printable characters, got {_show(value)}",
        )
    return value


def _pattern_claim(claims: Mapping[str, Any], name: str, pattern: re.Pattern[str], rule: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(AttestationFailure.MALFORMED, f"{name} must be {rule}, got {_show(value)}")
    return value


def _audience_claim(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise _fail(
        AttestationFailure.MALFORMED,
        f"aud must be a string or a non-empty array of strings, got {_show(value)}",
    )


def _time_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int in Python, and json.loads already refused NaN and infinities.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _fail(AttestationFailure.MALFORMED, f"{name} must be a NumericDate, got {_show(value)}")
    return float(value)


def _optional_pii_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > _MAX_LEGAL_NAME_CHARS
        or _CONTROL_RE.search(value)
    ):
        # Never echo the value: it is personal data.
        raise _fail(
            AttestationFailure.MALFORMED, f"{name} must be 1-{_MAX_LEGAL_NAME_CHARS} printable characters"
        )
    return value


# --- Key sources: the I/O that feeds verify_attestation ---------------------------------------------------

# A provider publishes a handful of keys (current and next); more is a misconfiguration or an attack.
MAX_JWKS_KEYS = 20
# A JWKS of 20 keys is a few KiB.
MAX_JWKS_BYTES = 256 * 1024
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class KeySource(Protocol):
    """One identity provider's verification keys, loaded from somewhere and cached.

    ``refresh()`` does the I/O (and may be repeated by a periodic ``run_once`` job); ``key_set()`` returns
    the cached keys and never does I/O.
    """

    @property
    def issuer(self) -> str:
        """The ``iss`` this source's keys verify."""
        ...

    def key_set(self) -> KeySet:
        """Return the cached keys. Raises NotReady if they were never loaded."""
        ...

    async def refresh(self) -> None:
        """(Re)load the keys; on failure keep the previous ones and raise NotReady."""
        ...


def parse_jwks(data: object, *, origin: str) -> KeySet:
    """Turn a parsed JWKS document (RFC 7517 §5) into the keys an attestation may be verified with.

    Keys of other types or curves (say, the provider's RSA encryption key) are skipped, not refused.

    Raises:
        ValueError: if the document is not a JWKS, holds private key material, has more than
            :data:`MAX_JWKS_KEYS` keys, or has no usable Ed25519 or P-256 signing key. ``origin`` (a path or
            URL) is named in the message.
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError(f"{origin}: not a JWKS (an object with a 'keys' array)")
    entries: list[object] = data["keys"]
    if len(entries) > MAX_JWKS_KEYS:
        raise ValueError(f"{origin}: JWKS has {len(entries)} keys, at most {MAX_JWKS_KEYS} allowed")
    usable: list[Key] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{origin}: key {index} is not an object")
        private = sorted(_PRIVATE_MEMBERS & set(entry))
        if private:
            raise ValueError(f"{origin}: key {index} holds private key material ({', '.join(private)})")
        kty, crv = entry.get("kty"), entry.get("crv")
        try:
            if kty == "OKP" and crv == "Ed25519":
                usable.append(OKPKey.import_key(entry))
            elif kty == "EC" and crv == "P-256":
                usable.append(ECKey.import_key(entry))
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"{origin}: key {index} is not a valid {kty} {crv} key: {exc}") from exc
    if not usable:
        raise ValueError(f"{origin}: JWKS has no Ed25519 or P-256 key")
    return KeySet(usable)


class _CachedSource:
    """Shared caching for the two sources."""

    def __init__(self, issuer: str, origin: str) -> None:
        # The iss claim these keys verify.
        self._issuer = issuer
        # Path or URL, for messages.
        self.origin = origin
        # The last keys loaded successfully; None until the first refresh.
        self._keys: KeySet | None = None

    @property
    def issuer(self) -> str:
        """The ``iss`` this source's keys verify."""
        return self._issuer

    def key_set(self) -> KeySet:
        """Return the cached keys.

        Raises:
            NotReady: ``idp_keys_unavailable`` if no load has succeeded yet.
        """
        if self._keys is None:
            raise NotReady(
                f"keys of identity provider {self._issuer!r} are not loaded", code="idp_keys_unavailable"
            )
        return self._keys

    def _store(self, data: object) -> None:
        try:
            keys = parse_jwks(data, origin=self.origin)
        except ValueError as exc:
            raise NotReady(
                f"keys of identity provider {self._issuer!r} are unusable: {exc}", code="idp_keys_unavailable"
            ) from exc
        self._keys = keys
        _logger.info(
            "loaded %d key(s) for identity provider %s from %s", len(keys.keys), self._issuer, self.origin
        )


class JwksFileSource(_CachedSource):
    """An issuer's JWKS read from a local JSON file (the development provider, or a pinned copy)."""

    def __init__(self, issuer: str, path: Path) -> None:
        super().__init__(issuer, str(path))
        # The JWKS file.
        self.path = path

    async def refresh(self) -> None:
        """Read and parse the file (in a thread); on failure keep the previous keys.

        Raises:
            NotReady: ``idp_keys_unavailable`` if the file cannot be read or is not a usable JWKS.
        """
        try:
            text = await asyncio.to_thread(self._read)
            data = json.loads(text)
        except (OSError, ValueError) as exc:
            raise NotReady(
                f"cannot read JWKS of identity provider {self.issuer!r} from {self.origin}: {exc}",
                code="idp_keys_unavailable",
            ) from exc
        self._store(data)

    def _read(self) -> str:
        with self.path.open("rb") as handle:
            raw = handle.read(MAX_JWKS_BYTES + 1)
        if len(raw) > MAX_JWKS_BYTES:
            raise ValueError(f"file is larger than {MAX_JWKS_BYTES} bytes")
        return raw.decode()


class JwksUrlSource(_CachedSource):
    """An issuer's JWKS fetched over HTTPS with aiohttp (plain HTTP only to a loopback address, for tests)."""

    def __init__(self, issuer: str, url: str, *, timeout_s: float = 10.0) -> None:
        """Check the URL.

        Raises:
            ValueError: if the URL is not ``https://`` (or ``http://`` to a loopback address).
        """
        _check_jwks_url(url)
        super().__init__(issuer, url)
        # The JWKS URL.
        self.url = url
        # Total time allowed for one fetch.
        self.timeout_s = timeout_s

    async def refresh(self) -> None:
        """Fetch and parse the JWKS; on failure keep the previous keys.

        Raises:
            NotReady: ``idp_keys_unavailable`` on a network error, a non-200 answer, a body over
                :data:`MAX_JWKS_BYTES`, or a document that is not a usable JWKS.
        """
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    raise ValueError(f"HTTP status {response.status}")
                raw = bytearray()
                # Read in chunks and stop at the limit: a hostile endpoint cannot make us buffer more.
                async for chunk in response.content.iter_chunked(64 * 1024):
                    raw += chunk
                    if len(raw) > MAX_JWKS_BYTES:
                        raise ValueError(f"body is larger than {MAX_JWKS_BYTES} bytes")
            data = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise NotReady(
                f"cannot fetch JWKS of identity provider {self.issuer!r} from {self.url}: {exc}",
                code="idp_keys_unavailable",
            ) from exc
        self._store(data)


def _check_jwks_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return
    raise ValueError(f"JWKS URL must be https (or http to loopback), got {url!r}")


def key_source_for(issuer: str, location: str) -> KeySource:
    """Build the source for one ``identity_providers`` setting entry: a URL if it has a scheme, else a path.

    Raises:
        ValueError: for an ``http``/``https`` URL that :class:`JwksUrlSource` refuses, or an unknown scheme.
    """
    scheme = urlsplit(location).scheme
    if scheme in ("http", "https"):
        return JwksUrlSource(issuer, location)
    if scheme in ("", "file"):
        path = location.removeprefix("file://") if scheme == "file" else location
        return JwksFileSource(issuer, Path(path))
    raise ValueError(f"identity provider {issuer!r}: unsupported JWKS location {location!r}")


def keysets_of(sources: Iterable[KeySource]) -> dict[str, KeySet]:
    """Return issuer → cached keys, the ``keysets`` argument of :func:`verify_attestation`.

    Raises:
        NotReady: if a source has not loaded yet.
        ValueError: if two sources claim the same issuer.
    """
    keysets: dict[str, KeySet] = {}
    for source in sources:
        if source.issuer in keysets:
            raise ValueError(f"identity provider {source.issuer!r} is configured twice")
        keysets[source.issuer] = source.key_set()
    return keysets
