"""Tests for registry/attestations/devidp.py: key generation, signing, and the `idp` CLI commands."""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from registry.attestations.devidp import (
    DEV_ISSUER,
    DEV_JWKS_NAME,
    DEV_PRIVATE_KEY_NAME,
    configure_idp_parser,
    dev_key_source,
    dev_keygen,
    dev_sign,
    load_dev_private_key,
    run_idp_command,
)
from registry.attestations.verify import (
    ATTESTATION_TYP,
    AttestationFailure,
    VerifiedAttestation,
    parse_jwks,
    verify_attestation,
)
from registry.errors import AttestationError

AUDIENCE = "avatar-registry-test"
NOW = 1_750_000_000.0
NONCE = "dev-nonce-BBBBBBBBBBBBBBBB"
LEVELS = ("low", "substantial", "high")

# RFC 8037 appendix A.1 (the published Ed25519 test key), A.3 (its RFC 7638 thumbprint) and A.4 (a JWS).
RFC8037_JWK = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def okp_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3.2, computed here without joserfc: SHA-256 of the required members, sorted, no spaces."""
    required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def payload_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


def verify(token: str, jwks_path: Path, **overrides: Any) -> VerifiedAttestation:
    arguments: dict[str, Any] = {
        "keysets": {DEV_ISSUER: parse_jwks(json.loads(jwks_path.read_text()), origin="test")},
        "audience": AUDIENCE,
        "now": NOW,
        "min_assurance": "substantial",
        "assurance_order": LEVELS,
    }
    arguments.update(overrides)
    return verify_attestation(token, **arguments)


@pytest.fixture
def dev_keys(tmp_path: Path) -> tuple[Path, Path]:
    return dev_keygen(tmp_path / "dev-idp")


class TestKeygen:
    def test_writes_a_private_jwk_and_a_public_jwks(self, dev_keys: tuple[Path, Path]) -> None:
        private_path, jwks_path = dev_keys
        assert private_path.name == DEV_PRIVATE_KEY_NAME
        assert jwks_path.name == DEV_JWKS_NAME
        private = json.loads(private_path.read_text())
        (public,) = json.loads(jwks_path.read_text())["keys"]
        assert private["kty"] == public["kty"] == "OKP"
        assert private["crv"] == public["crv"] == "Ed25519"
        assert "d" in private
        assert "d" not in public
        assert public["x"] == private["x"]
        assert public["alg"] == "Ed25519"
        assert public["use"] == "sig"

    def test_kid_is_the_rfc7638_thumbprint(self, dev_keys: tuple[Path, Path]) -> None:
        private_path, jwks_path = dev_keys
        (public,) = json.loads(jwks_path.read_text())["keys"]
        assert public["kid"] == okp_thumbprint(public)
        assert json.loads(private_path.read_text())["kid"] == public["kid"]

    def test_thumbprint_helper_matches_rfc8037(self) -> None:
        # Guards the independent helper above against the published vector.
        assert okp_thumbprint(RFC8037_JWK) == RFC8037_THUMBPRINT

    def test_private_key_is_owner_only(self, dev_keys: tuple[Path, Path]) -> None:
        private_path, _ = dev_keys
        assert stat.S_IMODE(private_path.stat().st_mode) == 0o600

    def test_refuses_to_overwrite_unless_asked(self, tmp_path: Path) -> None:
        directory = tmp_path / "dev-idp"
        _, jwks_path = dev_keygen(directory)
        first_kid = json.loads(jwks_path.read_text())["keys"][0]["kid"]
        with pytest.raises(FileExistsError):
            dev_keygen(directory)
        dev_keygen(directory, overwrite=True)
        assert json.loads(jwks_path.read_text())["keys"][0]["kid"] != first_kid
        assert sorted(path.name for path in directory.iterdir()) == sorted(
            [DEV_JWKS_NAME, DEV_PRIVATE_KEY_NAME]
        )


class TestLoadPrivateKey:
    def test_loads_the_rfc8037_key(self, tmp_path: Path) -> None:
        path = tmp_path / "rfc8037.jwk"
        path.write_text(json.dumps(RFC8037_JWK))
        key = load_dev_private_key(path)
        assert key.kid == RFC8037_THUMBPRINT
        # Ed25519 is deterministic: the loaded key must reproduce the RFC's signature byte for byte.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
            token = jws.serialize_compact(
                {"alg": "EdDSA"}, b"Example of Ed25519 signing", key, algorithms=["EdDSA"]
            )
        assert token == RFC8037_JWS

    def test_refuses_a_public_key(self, dev_keys: tuple[Path, Path], tmp_path: Path) -> None:
        _, jwks_path = dev_keys
        public_only = tmp_path / "public.jwk"
        public_only.write_text(json.dumps(json.loads(jwks_path.read_text())["keys"][0]))
        with pytest.raises(ValueError, match="not an Ed25519 private JWK"):
            load_dev_private_key(public_only)


class TestSign:
    def test_signed_attestation_verifies(self, dev_keys: tuple[Path, Path]) -> None:
        private_path, jwks_path = dev_keys
        token = dev_sign(
            private_path,
            audience=AUDIENCE,
            nonce=NONCE,
            sub="dev-person-1",
            now=NOW,
            expires_in=120,
            age_over_18=True,
            assurance="high",
            legal_name="Dev Person",
            id_number="11010519491231002X",
            jti="dev-jti-000000000001",
        )
        result = verify(token, jwks_path)
        assert result.issuer == DEV_ISSUER
        assert result.subject == "dev-person-1"
        assert result.nonce == NONCE
        assert result.jti == "dev-jti-000000000001"
        assert result.assurance == "high"
        assert result.legal_name == "Dev Person"
        assert result.id_number == "11010519491231002X"
        assert result.issued_at == NOW
        assert result.expires_at == NOW + 120

    def test_header_and_documented_claims(self, dev_keys: tuple[Path, Path]) -> None:
        private_path, jwks_path = dev_keys
        token = dev_sign(
            private_path, audience=AUDIENCE, nonce=NONCE, sub="p", now=NOW + 0.75, operator="op-7"
        )
        header_segment = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
        assert header == {
            "alg": "Ed25519",
            "typ": ATTESTATION_TYP,
            "kid": json.loads(jwks_path.read_text())["keys"][0]["kid"],
        }
        claims = payload_of(token)
        assert claims["iat"] == claims["nbf"] == int(NOW)
        assert claims["exp"] == int(NOW) + 300
        assert claims["dev_operator"] == "op-7"
        assert claims["age_over_18"] is True
        assert claims["assurance_level"] == "substantial"
        assert "legal_name" not in claims
        assert "id_number" not in claims

    def test_jti_is_fresh_each_time(self, dev_keys: tuple[Path, Path]) -> None:
        private_path, _ = dev_keys
        jtis = {
            payload_of(dev_sign(private_path, audience=AUDIENCE, nonce=NONCE, sub="p", now=NOW))["jti"]
            for _ in range(3)
        }
        assert len(jtis) == 3

    def test_can_sign_what_the_verifier_must_refuse(self, dev_keys: tuple[Path, Path]) -> None:
        private_path, jwks_path = dev_keys
        token = dev_sign(private_path, audience=AUDIENCE, nonce=NONCE, sub="p", now=NOW, age_over_18=False)
        with pytest.raises(AttestationError) as info:
            verify(token, jwks_path)
        assert info.value.code == AttestationFailure.UNDERAGE

    @pytest.mark.parametrize("expires_in", [0, -5, 86_401])
    def test_expiry_bounds(self, expires_in: int, dev_keys: tuple[Path, Path]) -> None:
        private_path, _ = dev_keys
        with pytest.raises(ValueError, match="expires_in"):
            dev_sign(private_path, audience=AUDIENCE, nonce=NONCE, sub="p", now=NOW, expires_in=expires_in)

    async def test_dev_key_source_warns_and_loads(
        self, dev_keys: tuple[Path, Path], caplog: pytest.LogCaptureFixture
    ) -> None:
        _, jwks_path = dev_keys
        with caplog.at_level(logging.WARNING, logger="registry.attestations.devidp"):
            source = dev_key_source(jwks_path)
        assert any("DEVELOPMENT identity provider" in record.getMessage() for record in caplog.records)
        await source.refresh()
        assert source.issuer == DEV_ISSUER
        assert isinstance(source.key_set(), KeySet)


class TestCli:
    @staticmethod
    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser(prog="avatar-registry idp")
        configure_idp_parser(parser)
        return parser.parse_args(argv)

    def run(self, key_dir: Path, *argv: str) -> str:
        out = io.StringIO()
        assert run_idp_command(self.parse(*argv), key_dir=key_dir, audience=AUDIENCE, now=NOW, out=out) == 0
        return out.getvalue()

    def test_keygen_then_sign(self, tmp_path: Path) -> None:
        output = self.run(tmp_path, "dev-keygen")
        assert str(tmp_path / DEV_JWKS_NAME) in output
        token = self.run(
            tmp_path,
            "dev-sign",
            "--operator",
            "op-1",
            "--nonce",
            NONCE,
            "--assurance",
            "high",
            "--id-number",
            "X-1",
        ).strip()
        result = verify(token, tmp_path / DEV_JWKS_NAME)
        assert result.subject == "dev-person-op-1"
        assert result.assurance == "high"
        assert result.id_number == "X-1"
        assert payload_of(token)["aud"] == AUDIENCE

    def test_age_flag(self, tmp_path: Path) -> None:
        self.run(tmp_path, "dev-keygen")
        token = self.run(
            tmp_path, "dev-sign", "--operator", "op-1", "--nonce", NONCE, "--age-over-18", "false"
        )
        assert payload_of(token.strip())["age_over_18"] is False

    def test_explicit_dir_key_and_sub(self, tmp_path: Path) -> None:
        elsewhere = tmp_path / "elsewhere"
        self.run(tmp_path, "dev-keygen", "--dir", str(elsewhere))
        token = self.run(
            tmp_path,
            "dev-sign",
            "--operator",
            "op-2",
            "--nonce",
            NONCE,
            "--sub",
            "shared-person",
            "--key",
            str(elsewhere / DEV_PRIVATE_KEY_NAME),
            "--expires-in",
            "60",
        ).strip()
        result = verify(token, elsewhere / DEV_JWKS_NAME)
        assert result.subject == "shared-person"
        assert result.expires_at == int(NOW) + 60

    def test_bad_boolean_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            self.parse("dev-sign", "--operator", "o", "--nonce", NONCE, "--age-over-18", "maybe")
        assert "expected true or false" in capsys.readouterr().err

    def test_operator_and_nonce_are_required(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            self.parse("dev-sign", "--nonce", NONCE)
        assert "--operator" in capsys.readouterr().err
