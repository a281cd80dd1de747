"""Tests for the key sources in registry/attestations/verify.py: JWKS parsing, file and URL loading."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from joserfc.jwk import ECKey, OKPKey, RSAKey

from registry.attestations.verify import (
    MAX_JWKS_BYTES,
    MAX_JWKS_KEYS,
    JwksFileSource,
    JwksUrlSource,
    key_source_for,
    keysets_of,
    parse_jwks,
)
from registry.errors import NotReady

ISSUER = "https://idp.example.test"


def public_jwk(key: OKPKey | ECKey | RSAKey) -> dict[str, Any]:
    return dict(key.as_dict(private=False))


@pytest.fixture(scope="module")
def jwks() -> dict[str, Any]:
    return {
        "keys": [
            public_jwk(OKPKey.generate_key("Ed25519", auto_kid=True)),
            public_jwk(ECKey.generate_key("P-256", auto_kid=True)),
        ]
    }


class TestParseJwks:
    def test_keeps_ed25519_and_p256_keys(self, jwks: dict[str, Any]) -> None:
        keys = parse_jwks(jwks, origin="test")
        assert sorted(key.kid or "" for key in keys.keys) == sorted(entry["kid"] for entry in jwks["keys"])

    def test_skips_other_key_types(self, jwks: dict[str, Any]) -> None:
        rsa = public_jwk(RSAKey.generate_key(2048, auto_kid=True))
        p384 = public_jwk(ECKey.generate_key("P-384", auto_kid=True))
        keys = parse_jwks({"keys": [rsa, p384, *jwks["keys"]]}, origin="test")
        assert len(keys.keys) == 2
        assert {key.key_type for key in keys.keys} == {"OKP", "EC"}

    def test_refuses_private_key_material(self) -> None:
        private = dict(OKPKey.generate_key("Ed25519").as_dict(private=True))
        with pytest.raises(ValueError, match=r"key 0 holds private key material \(d\)"):
            parse_jwks({"keys": [private]}, origin="test")

    @pytest.mark.parametrize("document", [[], {"keys": {}}, {"nokeys": []}, "keys"])
    def test_refuses_what_is_not_a_jwks(self, document: object) -> None:
        with pytest.raises(ValueError, match="not a JWKS"):
            parse_jwks(document, origin="test")

    def test_refuses_too_many_keys(self, jwks: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=f"at most {MAX_JWKS_KEYS}"):
            parse_jwks({"keys": [jwks["keys"][0]] * (MAX_JWKS_KEYS + 1)}, origin="test")

    def test_refuses_a_set_without_usable_keys(self) -> None:
        with pytest.raises(ValueError, match="no Ed25519 or P-256 key"):
            parse_jwks({"keys": [public_jwk(RSAKey.generate_key(2048))]}, origin="test")

    def test_refuses_a_broken_key(self) -> None:
        with pytest.raises(ValueError, match="key 0 is not a valid OKP Ed25519 key"):
            parse_jwks({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "not-a-key"}]}, origin="test")


class TestFileSource:
    async def test_loads_and_caches(self, tmp_path: Path, jwks: dict[str, Any]) -> None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(jwks))
        source = JwksFileSource(ISSUER, path)
        with pytest.raises(NotReady) as info:
            source.key_set()
        assert info.value.code == "idp_keys_unavailable"
        await source.refresh()
        assert len(source.key_set().keys) == 2
        assert keysets_of([source]) == {ISSUER: source.key_set()}

    async def test_failed_refresh_keeps_previous_keys(self, tmp_path: Path, jwks: dict[str, Any]) -> None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(jwks))
        source = JwksFileSource(ISSUER, path)
        await source.refresh()
        before = source.key_set()
        path.write_text("{not json")
        with pytest.raises(NotReady, match="cannot read JWKS"):
            await source.refresh()
        assert source.key_set() is before

    async def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(NotReady, match="cannot read JWKS"):
            await JwksFileSource(ISSUER, tmp_path / "absent.json").refresh()

    async def test_oversized_file(self, tmp_path: Path) -> None:
        path = tmp_path / "big.json"
        path.write_text(" " * (MAX_JWKS_BYTES + 1))
        with pytest.raises(NotReady, match="larger than"):
            await JwksFileSource(ISSUER, path).refresh()

    async def test_unusable_jwks(self, tmp_path: Path) -> None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps({"keys": []}))
        with pytest.raises(NotReady, match="unusable"):
            await JwksFileSource(ISSUER, path).refresh()


@pytest.fixture
async def jwks_server() -> AsyncIterator[Callable[[web.Response], str]]:
    """Serve one canned response on loopback; returns a function that sets it and gives the URL."""
    responses: list[web.Response] = []

    async def handle(_request: web.Request) -> web.Response:
        return responses[-1]

    app = web.Application()
    app.router.add_get("/jwks.json", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    def serve(response: web.Response) -> str:
        responses.append(response)
        return f"http://127.0.0.1:{port}/jwks.json"

    yield serve
    await runner.cleanup()


class TestUrlSource:
    async def test_fetches_over_loopback(
        self, jwks_server: Callable[[web.Response], str], jwks: dict[str, Any]
    ) -> None:
        source = JwksUrlSource(ISSUER, jwks_server(web.json_response(jwks)))
        await source.refresh()
        assert len(source.key_set().keys) == 2

    async def test_http_error(self, jwks_server: Callable[[web.Response], str]) -> None:
        source = JwksUrlSource(ISSUER, jwks_server(web.Response(status=503)))
        with pytest.raises(NotReady, match="HTTP status 503"):
            await source.refresh()

    async def test_redirect_is_not_followed(self, jwks_server: Callable[[web.Response], str]) -> None:
        redirect = web.Response(status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"})
        with pytest.raises(NotReady, match="HTTP status 302"):
            await JwksUrlSource(ISSUER, jwks_server(redirect)).refresh()

    async def test_oversized_body(self, jwks_server: Callable[[web.Response], str]) -> None:
        source = JwksUrlSource(ISSUER, jwks_server(web.Response(body=b" " * (MAX_JWKS_BYTES + 1))))
        with pytest.raises(NotReady, match="larger than"):
            await source.refresh()

    @pytest.mark.parametrize("url", ["http://idp.example.test/jwks", "ftp://127.0.0.1/jwks", "https:///jwks"])
    def test_refuses_insecure_urls(self, url: str) -> None:
        with pytest.raises(ValueError, match="must be https"):
            JwksUrlSource(ISSUER, url)


class TestKeySourceFor:
    def test_path_and_file_url(self, tmp_path: Path) -> None:
        plain = key_source_for(ISSUER, str(tmp_path / "jwks.json"))
        file_url = key_source_for(ISSUER, f"file://{tmp_path / 'jwks.json'}")
        assert isinstance(plain, JwksFileSource)
        assert isinstance(file_url, JwksFileSource)
        assert plain.path == file_url.path == tmp_path / "jwks.json"
        assert plain.issuer == ISSUER

    def test_https_url(self) -> None:
        source = key_source_for(ISSUER, "https://idp.example.test/.well-known/jwks.json")
        assert isinstance(source, JwksUrlSource)

    def test_unknown_scheme(self) -> None:
        with pytest.raises(ValueError, match="unsupported JWKS location"):
            key_source_for(ISSUER, "gopher://idp.example.test/jwks")

    async def test_keysets_of_refuses_duplicate_issuers(self, tmp_path: Path, jwks: dict[str, Any]) -> None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(jwks))
        first, second = JwksFileSource(ISSUER, path), JwksFileSource(ISSUER, path)
        await first.refresh()
        await second.refresh()
        with pytest.raises(ValueError, match="configured twice"):
            keysets_of([first, second])

    def test_keysets_of_an_unloaded_source(self, tmp_path: Path) -> None:
        with pytest.raises(NotReady):
            keysets_of([JwksFileSource(ISSUER, tmp_path / "jwks.json")])
