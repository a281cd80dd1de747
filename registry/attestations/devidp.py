"""The development identity provider: a local Ed25519 key that signs attestations for `make run` and tests.

It is trusted only when the registry is configured to trust it (``dev_mode``, or :data:`DEV_ISSUER` listed in
``identity_providers``), and :func:`dev_key_source` logs a warning every time it is wired in. The tokens it
signs follow the claim set documented in :mod:`registry.attestations.verify`, plus one descriptive claim,
``dev_operator`` (the operator the token was made for), which the verifier ignores: the binding to an
operator is the nonce we issued to it.

CLI (wired by ``registry/cli.py`` through :func:`configure_idp_parser` and :func:`run_idp_command`)::

    avatar-registry idp dev-keygen [--dir DIR] [--force]
    avatar-registry idp dev-sign --operator ID --nonce N [--sub S] [--legal-name NAME] [--id-number NUM]
                                 [--age-over-18 true|false] [--assurance LEVEL] [--expires-in SECONDS]
                                 [--audience AUD] [--key PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, TextIO

from joserfc import jwt
from joserfc.jwk import OKPKey

from registry.attestations.verify import ATTESTATION_TYP, JwksFileSource

__all__ = [
    "DEV_ISSUER",
    "DEV_JWKS_NAME",
    "DEV_PRIVATE_KEY_NAME",
    "configure_idp_parser",
    "dev_key_source",
    "dev_keygen",
    "dev_sign",
    "load_dev_private_key",
    "run_idp_command",
]

_logger = logging.getLogger(__name__)

# ".invalid" is reserved (RFC 2606): this issuer can never be a real provider's.
DEV_ISSUER = "https://idp.dev.invalid"
DEV_PRIVATE_KEY_NAME = "dev-idp-private.jwk"
DEV_JWKS_NAME = "dev-idp-jwks.json"
# The RFC 9864 name: joserfc does not flag it as deprecated, unlike "EdDSA".
_DEV_ALG = "Ed25519"
# A development token lives at most a day; the default is the few minutes a real provider would give.
_MAX_EXPIRES_IN_S = 86_400
_DEFAULT_EXPIRES_IN_S = 300
_DEFAULT_ASSURANCE = "substantial"


def dev_keygen(directory: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Create a development provider key: an Ed25519 private JWK and the matching public JWKS.

    The key id is the key's RFC 7638 thumbprint. The private key file is created with mode 0600.

    Returns:
        (private key path, JWKS path), named :data:`DEV_PRIVATE_KEY_NAME` and :data:`DEV_JWKS_NAME`.

    Raises:
        FileExistsError: if the private key exists and ``overwrite`` is false (a new key would make the
            JWKS the registry already loaded stale).
        OSError: if the directory cannot be created or written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / DEV_PRIVATE_KEY_NAME
    jwks_path = directory / DEV_JWKS_NAME
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} exists; pass overwrite to replace the development key")
    key = OKPKey.generate_key("Ed25519", auto_kid=False)
    key.ensure_kid()  # joserfc's default kid is the RFC 7638 thumbprint
    private = {**key.as_dict(private=True), "alg": _DEV_ALG, "use": "sig"}
    public = {**key.as_dict(private=False), "alg": _DEV_ALG, "use": "sig"}
    _write_atomically(private_path, json.dumps(private, indent=2) + "\n", mode=0o600)
    _write_atomically(jwks_path, json.dumps({"keys": [public]}, indent=2) + "\n", mode=0o644)
    return private_path, jwks_path


def load_dev_private_key(path: Path) -> OKPKey:
    """Read a private JWK written by :func:`dev_keygen`.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not an Ed25519 private JWK.
    """
    data = json.loads(path.read_text())
    if (
        not isinstance(data, dict)
        or data.get("kty") != "OKP"
        or data.get("crv") != "Ed25519"
        or "d" not in data
    ):
        raise ValueError(f"{path} is not an Ed25519 private JWK")
    key = OKPKey.import_key(data)
    key.ensure_kid()
    return key


def dev_sign(
    private_key_path: Path,
    *,
    issuer: str = DEV_ISSUER,
    audience: str,
    nonce: str,
    sub: str,
    now: float,
    expires_in: int = _DEFAULT_EXPIRES_IN_S,
    age_over_18: bool = True,
    assurance: str = _DEFAULT_ASSURANCE,
    legal_name: str | None = None,
    id_number: str | None = None,
    jti: str | None = None,
    operator: str | None = None,
) -> str:
    """Sign a development identity attestation and return it as a compact JWS (alg ``Ed25519``).

    ``jti`` defaults to 128 random bits; ``operator`` fills the descriptive ``dev_operator`` claim. ``iat``
    and ``nbf`` are ``now`` (whole seconds), ``exp`` is ``now + expires_in``.

    Raises:
        ValueError: if ``expires_in`` is not 1–86400 s or the key file is not an Ed25519 private JWK.
        OSError: if the key file cannot be read.
    """
    if not 0 < expires_in <= _MAX_EXPIRES_IN_S:
        raise ValueError(f"expires_in must be 1-{_MAX_EXPIRES_IN_S} s, got {expires_in}")
    key = load_dev_private_key(private_key_path)
    issued_at = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + expires_in,
        "jti": jti if jti is not None else secrets.token_urlsafe(16),
        "nonce": nonce,
        "age_over_18": age_over_18,
        "assurance_level": assurance,
    }
    if legal_name is not None:
        claims["legal_name"] = legal_name
    if id_number is not None:
        claims["id_number"] = id_number
    if operator is not None:
        claims["dev_operator"] = operator
    header = {"alg": _DEV_ALG, "typ": ATTESTATION_TYP, "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[_DEV_ALG])


def dev_key_source(jwks_path: Path) -> JwksFileSource:
    """Return the key source that makes the registry trust the development provider, logging a warning.

    Anyone holding the development private key can verify any operator: never wire this in production.
    """
    _logger.warning(
        "trusting the DEVELOPMENT identity provider %s (keys %s): anyone with its private key can verify "
        "operators; never enable this in production",
        DEV_ISSUER,
        jwks_path,
    )
    return JwksFileSource(DEV_ISSUER, jwks_path)


def configure_idp_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``dev-keygen`` and ``dev-sign`` subcommands to the CLI's ``idp`` parser.

    The chosen subcommand is stored in ``args.idp_command``.
    """
    commands = parser.add_subparsers(dest="idp_command", required=True, metavar="COMMAND")
    keygen = commands.add_parser("dev-keygen", help="write a development provider key and its JWKS")
    keygen.add_argument("--dir", type=Path, default=None, help="where to write (default: DATA_DIR/dev-idp)")
    keygen.add_argument("--force", action="store_true", help="replace an existing development key")
    sign = commands.add_parser("dev-sign", help="print a signed development attestation")
    sign.add_argument("--operator", required=True, help="operator id (descriptive claim only)")
    sign.add_argument("--nonce", required=True, help="the nonce from POST /v1/operators/{id}/identity/nonce")
    sign.add_argument("--sub", default=None, help="person id (default: dev-person-<operator>)")
    sign.add_argument("--legal-name", default=None)
    sign.add_argument("--id-number", default=None)
    sign.add_argument("--age-over-18", type=_parse_bool, default=True, metavar="true|false")
    sign.add_argument("--assurance", default=_DEFAULT_ASSURANCE, metavar="LEVEL")
    sign.add_argument("--expires-in", type=int, default=_DEFAULT_EXPIRES_IN_S, metavar="SECONDS")
    sign.add_argument("--audience", default=None, help="aud (default: the registry's configured audience)")
    sign.add_argument("--key", type=Path, default=None, help="private JWK (default: DATA_DIR/dev-idp/...)")


def run_idp_command(
    args: argparse.Namespace, *, key_dir: Path, audience: str, now: float, out: TextIO
) -> int:
    """Run a parsed ``idp`` subcommand; ``key_dir`` and ``audience`` are the defaults from Settings.

    Prints the key paths (``dev-keygen``) or the attestation (``dev-sign``) to ``out`` and returns the exit
    status. Errors (missing key, existing key, bad values) propagate as ``OSError``/``ValueError``.
    """
    if args.idp_command == "dev-keygen":
        private_path, jwks_path = dev_keygen(args.dir or key_dir, overwrite=args.force)
        print(f"private key: {private_path}", file=out)
        print(f"jwks:        {jwks_path}", file=out)
        print(f"issuer:      {DEV_ISSUER}", file=out)
        return 0
    if args.idp_command == "dev-sign":
        token = dev_sign(
            args.key or key_dir / DEV_PRIVATE_KEY_NAME,
            audience=args.audience or audience,
            nonce=args.nonce,
            sub=args.sub or f"dev-person-{args.operator}",
            now=now,
            expires_in=args.expires_in,
            age_over_18=args.age_over_18,
            assurance=args.assurance,
            legal_name=args.legal_name,
            id_number=args.id_number,
            operator=args.operator,
        )
        print(token, file=out)
        return 0
    raise ValueError(f"unknown idp command {args.idp_command!r}")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _write_atomically(path: Path, text: str, *, mode: int) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename, so readers never see half a key."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)  # the umask may have narrowed or the file may have pre-existed wider
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
