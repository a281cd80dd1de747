"""Tests for registry/attestations/verify.py: every refusal code, the order of checks, and the leeway edges.

Keys are generated here; tokens are signed either with joserfc or, where a test needs a header or payload
joserfc would refuse to produce, by signing the raw bytes with the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from registry.attestations.verify import (
    ATTESTATION_TYP,
    MAX_TOKEN_CHARS,
    AttestationFailure,
    VerifiedAttestation,
    verify_attestation,
)
from registry.errors import AttestationError

ISSUER = "https://idp.example.test"
OTHER_ISSUER = "https://other-idp.example.test"
AUDIENCE = "avatar-registry-test"
NOW = 1_750_000_000.0
LEVELS = ("low", "substantial", "high")
NONCE = "test-nonce-AAAAAAAAAAAAAAAA"


@pytest.fixture(scope="module")
def ed_key() -> OKPKey:
    return OKPKey.generate_key("Ed25519", auto_kid=True)


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", auto_kid=True)


@pytest.fixture(scope="module")
def keysets(ed_key: OKPKey, ec_key: ECKey) -> dict[str, KeySet]:
    public: list[Key] = [
        OKPKey.import_key(ed_key.as_dict(private=False)),
        ECKey.import_key(ec_key.as_dict(private=False)),
    ]
    other = OKPKey.generate_key("Ed25519", auto_kid=True)
    return {ISSUER: KeySet(public), OTHER_ISSUER: KeySet([OKPKey.import_key(other.as_dict(private=False))])}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "person-0001",
        "aud": AUDIENCE,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 290,
        "jti": "jti-0000000000000001",
        "nonce": NONCE,
        "age_over_18": True,
        "assurance_level": "substantial",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not _DROP}


_DROP = object()
# {"alg":"Ed25519"}, a header that passes the alg check.
_ED = base64.urlsafe_b64encode(b'{"alg":"Ed25519"}').rstrip(b"=").decode()


def sign(key: Key, payload: dict[str, Any], *, alg: str = "Ed25519", **header: Any) -> str:
    """Sign with joserfc (the happy path of a real provider)."""
    full_header = {"alg": alg, "typ": ATTESTATION_TYP, "kid": key.kid, **header}
    full_header = {name: value for name, value in full_header.items() if value is not _DROP}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
        return jwt.encode(full_header, payload, key, algorithms=[alg], default_type=None)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign_raw(key: OKPKey, header: bytes, payload: bytes) -> str:
    """Sign arbitrary header and payload bytes with Ed25519, bypassing joserfc's own header checks."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    private = key.private_key
    assert isinstance(private, Ed25519PrivateKey)
    return f"{signing_input}.{b64(private.sign(signing_input.encode()))}"


def raw_header(key: OKPKey, **extra: Any) -> bytes:
    return json.dumps({"alg": "Ed25519", "typ": ATTESTATION_TYP, "kid": key.kid, **extra}).encode()


def verify(token: str, keysets: dict[str, KeySet], **overrides: Any) -> VerifiedAttestation:
    arguments: dict[str, Any] = {
        "keysets": keysets,
        "audience": AUDIENCE,
        "now": NOW,
        "min_assurance": "substantial",
        "assurance_order": LEVELS,
    }
    arguments.update(overrides)
    return verify_attestation(token, **arguments)


def refused(code: AttestationFailure, token: str, keysets: dict[str, KeySet], **overrides: Any) -> str:
    """Assert the token is refused with ``code``; return the message."""
    with pytest.raises(AttestationError) as info:
        verify(token, keysets, **overrides)
    assert info.value.code == code.value, info.value.message
    return info.value.message


class TestAccepted:
    def test_valid_token_returns_its_claims(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(legal_name="Test Person", id_number="11010519491231002x"))
        result = verify(token, keysets)
        assert result.issuer == ISSUER
        assert result.subject == "person-0001"
        assert result.jti == "jti-0000000000000001"
        assert result.nonce == NONCE
        assert result.issued_at == NOW - 10
        assert result.expires_at == NOW + 290
        assert result.assurance == "substantial"
        assert result.age_over_18 is True
        assert result.legal_name == "Test Person"
        assert result.id_number == "11010519491231002x"
        assert result.digest == hashlib.sha256(token.encode()).digest()

    def test_repr_hides_personal_data(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        result = verify(sign(ed_key, claims(legal_name="Test Person", id_number="X1234567")), keysets)
        assert "Test Person" not in repr(result)
        assert "X1234567" not in repr(result)
        assert "person-0001" in repr(result)

    def test_optional_personal_claims_may_be_absent(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        result = verify(sign(ed_key, claims()), keysets)
        assert result.legal_name is None
        assert result.id_number is None

    @pytest.mark.parametrize("alg", ["Ed25519", "EdDSA"])
    def test_ed25519_under_both_names(self, alg: str, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        assert verify(sign(ed_key, claims(), alg=alg), keysets).subject == "person-0001"

    def test_es256(self, ec_key: ECKey, keysets: dict[str, KeySet]) -> None:
        assert verify(sign(ec_key, claims(), alg="ES256"), keysets).subject == "person-0001"

    def test_no_kid_tries_each_matching_key(self, ec_key: ECKey, keysets: dict[str, KeySet]) -> None:
        assert verify(sign(ec_key, claims(), alg="ES256", kid=_DROP), keysets).issuer == ISSUER

    @pytest.mark.parametrize("typ", ["application/idv-attestation+jwt", "IDV-Attestation+JWT"])
    def test_typ_compares_as_a_media_type(self, typ: str, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        assert verify(sign(ed_key, claims(), typ=typ), keysets).issuer == ISSUER

    def test_audience_array_containing_ours(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(aud=["someone-else", AUDIENCE]))
        assert verify(token, keysets).subject == "person-0001"

    @pytest.mark.parametrize("level", ["substantial", "high"])
    def test_assurance_at_or_above_minimum(
        self, level: str, ed_key: OKPKey, keysets: dict[str, KeySet]
    ) -> None:
        assert verify(sign(ed_key, claims(assurance_level=level)), keysets).assurance == level


class TestSignature:
    def test_wrong_key_with_a_known_kid(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        impostor = OKPKey.generate_key("Ed25519")
        token = sign(impostor, claims(), kid=ed_key.kid)
        assert "does not verify" in refused(AttestationFailure.SIGNATURE, token, keysets)

    def test_unknown_kid(self, keysets: dict[str, KeySet]) -> None:
        impostor = OKPKey.generate_key("Ed25519", auto_kid=True)
        message = refused(AttestationFailure.SIGNATURE, sign(impostor, claims()), keysets)
        assert "no Ed25519 key for kid" in message

    def test_key_of_another_issuer(self, keysets: dict[str, KeySet]) -> None:
        # Signed by a configured provider's key, but claiming to be a different configured provider.
        other_key = keysets[OTHER_ISSUER].keys[0]
        forger = OKPKey.generate_key("Ed25519")
        token = sign(forger, claims(iss=ISSUER), kid=other_key.kid)
        refused(AttestationFailure.SIGNATURE, token, keysets)

    def test_tampered_payload(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        header, _payload, signature = sign(ed_key, claims()).split(".")
        forged = b64(json.dumps(claims(sub="someone-else")).encode())
        refused(AttestationFailure.SIGNATURE, f"{header}.{forged}.{signature}", keysets)

    def test_tampered_payload_that_breaks_claims_is_still_a_signature_failure(
        self, ed_key: OKPKey, keysets: dict[str, KeySet]
    ) -> None:
        header, _payload, signature = sign(ed_key, claims()).split(".")
        forged = b64(json.dumps(claims(age_over_18="yes", sub=_DROP)).encode())
        refused(AttestationFailure.SIGNATURE, f"{header}.{forged}.{signature}", keysets)

    def test_tampered_signature(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        header, payload, signature = sign(ed_key, claims()).split(".")
        flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
        flipped[0] ^= 1
        refused(AttestationFailure.SIGNATURE, f"{header}.{payload}.{b64(bytes(flipped))}", keysets)

    def test_alg_none(self, keysets: dict[str, KeySet]) -> None:
        header = b64(json.dumps({"alg": "none", "typ": ATTESTATION_TYP}).encode())
        token = f"{header}.{b64(json.dumps(claims()).encode())}."
        assert "got 'none'" in refused(AttestationFailure.SIGNATURE, token, keysets)

    def test_hs256_keyed_with_the_public_jwks(self, keysets: dict[str, KeySet]) -> None:
        # The classic algorithm-confusion forgery: an HMAC "keyed" with the provider's public key material.
        secret = json.dumps(keysets[ISSUER].as_dict()).encode()
        signing_input = (
            f"{b64(json.dumps({'alg': 'HS256', 'typ': ATTESTATION_TYP}).encode())}."
            f"{b64(json.dumps(claims()).encode())}"
        )
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        message = refused(AttestationFailure.SIGNATURE, f"{signing_input}.{b64(mac)}", keysets)
        assert "got 'HS256'" in message

    def test_rs256_even_with_the_key_configured(self, keysets: dict[str, KeySet]) -> None:
        rsa = RSAKey.generate_key(2048, auto_kid=True)
        with_rsa = {ISSUER: KeySet([*keysets[ISSUER].keys, RSAKey.import_key(rsa.as_dict(private=False))])}
        message = refused(AttestationFailure.SIGNATURE, sign(rsa, claims(), alg="RS256"), with_rsa)
        assert "got 'RS256'" in message

    def test_eddsa_header_on_an_ec_key(self, ec_key: ECKey, keysets: dict[str, KeySet]) -> None:
        # The kid names the P-256 key; EdDSA must not be tried with it.
        ed = OKPKey.generate_key("Ed25519")
        refused(AttestationFailure.SIGNATURE, sign(ed, claims(), alg="EdDSA", kid=ec_key.kid), keysets)

    def test_eddsa_with_an_ed448_key(self) -> None:
        ed448 = OKPKey.generate_key("Ed448", auto_kid=True)
        ed448_keysets = {ISSUER: KeySet([OKPKey.import_key(ed448.as_dict(private=False))])}
        message = refused(AttestationFailure.SIGNATURE, sign(ed448, claims(), alg="EdDSA"), ed448_keysets)
        assert "no EdDSA key" in message

    def test_key_declared_for_another_alg_is_not_used(self, ec_key: ECKey) -> None:
        declared = ECKey.import_key({**ec_key.as_dict(private=False), "alg": "ES384"})
        refused(
            AttestationFailure.SIGNATURE, sign(ec_key, claims(), alg="ES256"), {ISSUER: KeySet([declared])}
        )

    def test_encryption_key_is_not_used(self, ed_key: OKPKey) -> None:
        enc = OKPKey.import_key({**ed_key.as_dict(private=False), "use": "enc"})
        refused(AttestationFailure.SIGNATURE, sign(ed_key, claims()), {ISSUER: KeySet([enc])})


class TestMalformed:
    @pytest.mark.parametrize("typ", ["JWT", "at+jwt", _DROP, 7])
    def test_wrong_or_missing_typ(self, typ: object, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign_raw(ed_key, raw_header(ed_key, typ=typ) if typ is not _DROP else _no_typ(ed_key), b"{}")
        assert "typ must be" in refused(AttestationFailure.MALFORMED, token, keysets)

    @pytest.mark.parametrize("parameter", ["crit", "b64", "jku", "jwk", "x5c", "zip"])
    def test_unsupported_header_parameter(
        self, parameter: str, ed_key: OKPKey, keysets: dict[str, KeySet]
    ) -> None:
        token = sign_raw(ed_key, raw_header(ed_key, **{parameter: "x"}), json.dumps(claims()).encode())
        message = refused(AttestationFailure.MALFORMED, token, keysets)
        assert f"unsupported header parameters: {parameter}" in message

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.e30.sig",
            "e30.e30.sig",
            "W10.e30.sig",
            f"{_ED}..sig",
            f"{_ED}.e30x.sig",
        ],
    )
    def test_not_a_compact_jws(self, token: str, keysets: dict[str, KeySet]) -> None:
        # e30 is "{}" (no alg), W10 is "[]" (not an object), e30x has an impossible base64url length.
        refused(AttestationFailure.MALFORMED, token, keysets)

    def test_header_that_is_not_json(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign_raw(ed_key, b"{alg: Ed25519}", json.dumps(claims()).encode())
        assert "header is not valid JSON" in refused(AttestationFailure.MALFORMED, token, keysets)

    def test_duplicate_claim_names(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        payload = json.dumps(claims())[:-1] + ', "iss": "https://evil.example.test"}'
        token = sign_raw(ed_key, raw_header(ed_key), payload.encode())
        assert "duplicate member 'iss'" in refused(AttestationFailure.MALFORMED, token, keysets)

    def test_non_finite_number(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        payload = json.dumps(claims()).replace(f'"exp": {NOW + 290}', '"exp": Infinity')
        assert "Infinity" in payload
        token = sign_raw(ed_key, raw_header(ed_key), payload.encode())
        refused(AttestationFailure.MALFORMED, token, keysets)

    def test_too_long(self, keysets: dict[str, KeySet]) -> None:
        assert "at most" in refused(AttestationFailure.MALFORMED, "a" * (MAX_TOKEN_CHARS + 1), keysets)

    def test_missing_issuer(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        assert "iss must be" in refused(
            AttestationFailure.MALFORMED, sign(ed_key, claims(iss=_DROP)), keysets
        )

    @pytest.mark.parametrize(
        "name", ["sub", "aud", "iat", "exp", "jti", "nonce", "age_over_18", "assurance_level"]
    )
    def test_missing_claim(self, name: str, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        message = refused(AttestationFailure.MALFORMED, sign(ed_key, claims(**{name: _DROP})), keysets)
        assert message == f"missing claims: {name}"

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("sub", ""),
            ("sub", 42),
            ("sub", "x" * 256),
            ("aud", 5),
            ("aud", []),
            ("aud", [AUDIENCE, 1]),
            ("iat", "yesterday"),
            ("exp", True),
            ("nbf", "soon"),
            ("exp", -1),
            ("jti", "short"),
            ("jti", "has space in it"),
            ("nonce", "too-short"),
            ("nonce", "not/url+safe=====aaaa"),
            ("age_over_18", "true"),
            ("age_over_18", 1),
            ("assurance_level", ""),
            ("assurance_level", ["high"]),
        ],
    )
    def test_ill_formed_claim(
        self, name: str, value: object, ed_key: OKPKey, keysets: dict[str, KeySet]
    ) -> None:
        message = refused(AttestationFailure.MALFORMED, sign(ed_key, claims(**{name: value})), keysets)
        assert message.startswith(name)

    def test_exp_before_iat(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(iat=NOW, exp=NOW))
        assert "must be after iat" in refused(AttestationFailure.MALFORMED, token, keysets)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("legal_name", "Test\x00Person"),
            ("legal_name", "   "),
            ("id_number", "ID#SECRET-99"),
            ("id_number", 12345),
        ],
    )
    def test_bad_personal_claim_is_not_echoed(
        self, name: str, value: object, ed_key: OKPKey, keysets: dict[str, KeySet]
    ) -> None:
        message = refused(AttestationFailure.MALFORMED, sign(ed_key, claims(**{name: value})), keysets)
        assert message.startswith(name)
        assert str(value).strip() not in message or not str(value).strip()


def _no_typ(key: OKPKey) -> bytes:
    return json.dumps({"alg": "Ed25519", "kid": key.kid}).encode()


class TestIssuerAndAudience:
    def test_unknown_issuer(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(iss="https://unknown-idp.example.test"))
        assert "unknown-idp" in refused(AttestationFailure.ISSUER, token, keysets)

    def test_no_providers_configured_refuses_everything(self, ed_key: OKPKey) -> None:
        refused(AttestationFailure.ISSUER, sign(ed_key, claims()), {})

    def test_alg_is_checked_before_the_issuer(self, keysets: dict[str, KeySet]) -> None:
        header = b64(json.dumps({"alg": "none", "typ": ATTESTATION_TYP}).encode())
        token = f"{header}.{b64(json.dumps(claims(iss='https://unknown.example.test')).encode())}."
        refused(AttestationFailure.SIGNATURE, token, keysets)

    def test_issuer_is_checked_before_the_signature(self, keysets: dict[str, KeySet]) -> None:
        forger = OKPKey.generate_key("Ed25519", auto_kid=True)
        refused(AttestationFailure.ISSUER, sign(forger, claims(iss="https://unknown.example.test")), keysets)

    @pytest.mark.parametrize("aud", ["someone-else", ["someone-else", "another"], AUDIENCE.upper()])
    def test_wrong_audience(self, aud: object, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        message = refused(AttestationFailure.AUDIENCE, sign(ed_key, claims(aud=aud)), keysets)
        assert f"aud must contain {AUDIENCE!r}" in message


class TestValidityWindow:
    def test_expired(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(iat=NOW - 600, nbf=NOW - 600, exp=NOW - 300))
        assert "expired" in refused(AttestationFailure.EXPIRED, token, keysets)

    def test_not_yet_valid(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(nbf=NOW + 120))
        assert "not valid before" in refused(AttestationFailure.EXPIRED, token, keysets)

    def test_issued_in_the_future(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(iat=NOW + 120, nbf=_DROP, exp=NOW + 600))
        assert "issued in the future" in refused(AttestationFailure.EXPIRED, token, keysets)

    @pytest.mark.parametrize(("delta", "ok"), [(59.999, True), (60.0, False), (60.001, False)])
    def test_exp_edge(self, delta: float, ok: bool, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        # RFC 7519 §4.1.4: the token is valid strictly before exp; the leeway moves that edge by 60 s.
        token = sign(ed_key, claims(exp=NOW + 100))
        _judge(token, keysets, ok, now=NOW + 100 + delta)

    @pytest.mark.parametrize(("delta", "ok"), [(60.0, True), (60.001, False)])
    def test_nbf_edge(self, delta: float, ok: bool, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(iat=NOW - 500, nbf=NOW + 100, exp=NOW + 1000))
        _judge(token, keysets, ok, now=NOW + 100 - delta)

    @pytest.mark.parametrize(("delta", "ok"), [(60.0, True), (60.001, False)])
    def test_iat_edge(self, delta: float, ok: bool, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(iat=NOW + delta, nbf=_DROP, exp=NOW + 1000))
        _judge(token, keysets, ok, now=NOW)

    def test_zero_leeway(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(exp=NOW + 100))
        assert verify(token, keysets, now=NOW + 99.999, leeway_s=0).subject == "person-0001"
        refused(AttestationFailure.EXPIRED, token, keysets, now=NOW + 100, leeway_s=0)


def _judge(token: str, keysets: dict[str, KeySet], ok: bool, *, now: float) -> None:
    if ok:
        assert verify(token, keysets, now=now).subject == "person-0001"
    else:
        refused(AttestationFailure.EXPIRED, token, keysets, now=now)


class TestPersonChecks:
    def test_underage(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(age_over_18=False))
        assert "adults" in refused(AttestationFailure.UNDERAGE, token, keysets)

    def test_assurance_below_minimum(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(assurance_level="low"))
        message = refused(AttestationFailure.ASSURANCE, token, keysets)
        assert message == "assurance level 'low' is below the minimum 'substantial'"

    def test_unknown_assurance_level(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(assurance_level="ultra"))
        assert "unknown assurance level" in refused(AttestationFailure.ASSURANCE, token, keysets)

    def test_minimum_follows_the_configured_order(self, ed_key: OKPKey, keysets: dict[str, KeySet]) -> None:
        token = sign(ed_key, claims(assurance_level="substantial"))
        refused(AttestationFailure.ASSURANCE, token, keysets, min_assurance="high")
        assert verify(token, keysets, min_assurance="low").assurance == "substantial"


class TestPolicy:
    @pytest.mark.parametrize(
        ("overrides", "fragment"),
        [
            ({"leeway_s": 61}, "leeway"),
            ({"leeway_s": -1}, "leeway"),
            ({"assurance_order": ()}, "empty"),
            ({"assurance_order": ("low", "low")}, "repeats"),
            ({"min_assurance": "platinum"}, "not in assurance_order"),
        ],
    )
    def test_invalid_policy_is_a_configuration_error(
        self, overrides: dict[str, Any], fragment: str, ed_key: OKPKey, keysets: dict[str, KeySet]
    ) -> None:
        with pytest.raises(ValueError, match=fragment):
            verify(sign(ed_key, claims()), keysets, **overrides)
