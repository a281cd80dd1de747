"""Secrets that a local installation generates for itself on first start (``DATA_DIR/secrets.json``).

In production the same file is provided by the deployment (``REGISTRY_SECRETS_FILE``); ``serve`` never
generates one, so a missing secret stops start-up instead of silently creating new keys.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from registry.errors import RegistryError

__all__ = ["LocalSecrets", "SecretsError", "ensure_secrets", "load_secrets"]


class SecretsError(RegistryError):
    code = "secrets_error"


@dataclass(frozen=True, slots=True)
class LocalSecrets:
    pii_keys: dict[str, bytes]  # key id -> 32-byte AES-256-GCM key; old ids stay for decryption
    pii_current_kid: str
    blind_index_key: bytes


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def load_secrets(path: Path) -> LocalSecrets:
    """Read the secrets file. Raises ``SecretsError`` naming what is missing or malformed."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SecretsError(
            f"secrets file {path} does not exist (run `avatar-registry run` once, or provide it)"
        ) from None
    except ValueError as exc:
        raise SecretsError(f"secrets file {path} is not valid JSON: {exc}") from None
    try:
        keys = {kid: base64.b64decode(v, validate=True) for kid, v in raw["pii_keys"].items()}
        current = raw["pii_current_kid"]
        blind = base64.b64decode(raw["blind_index_key"], validate=True)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SecretsError(f"secrets file {path} is malformed: {exc!r}") from None
    if current not in keys:
        raise SecretsError(f"secrets file {path}: pii_current_kid {current!r} is not in pii_keys")
    if any(len(k) != 32 for k in keys.values()) or len(blind) != 32:
        raise SecretsError(f"secrets file {path}: every key must be 32 bytes")
    return LocalSecrets(pii_keys=keys, pii_current_kid=current, blind_index_key=blind)


def ensure_secrets(path: Path) -> tuple[LocalSecrets, bool]:
    """Load the secrets file, creating it (mode 0600) if it does not exist. Returns (secrets, created)."""
    if path.exists():
        return load_secrets(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    kid = "k" + secrets.token_hex(4)
    data = {
        "pii_keys": {kid: _b64(secrets.token_bytes(32))},
        "pii_current_kid": kid,
        "blind_index_key": _b64(secrets.token_bytes(32)),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    return load_secrets(path), True
