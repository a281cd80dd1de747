"""What the registry builds once at start from its settings and secrets, and hands to every request."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from registry.config import Settings
from registry.fingerprints.service import LikenessPolicy
from registry.localsecrets import LocalSecrets
from registry.pii import PiiCipher
from registry.translog.keys import LogKeys, ensure_key_file, load_log_keys

__all__ = ["Services"]

_logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Services:
    settings: Settings
    secrets: LocalSecrets
    pii: PiiCipher
    # issuer -> joserfc KeySet of the identity providers trusted now
    keysets: dict[str, Any] = field(default_factory=dict)
    # the transparency log's signing keys (None only where a test builds Services by hand)
    log_keys: LogKeys | None = None
    # likeness protection's numbers (match threshold, flood quarantine, index sync)
    likeness: LikenessPolicy = field(default_factory=LikenessPolicy)

    @classmethod
    def build(cls, settings: Settings, secrets: LocalSecrets, keysets: dict[str, Any]) -> Services:
        return cls(
            settings=settings,
            secrets=secrets,
            pii=PiiCipher(secrets.pii_keys, secrets.pii_current_kid),
            keysets=keysets,
            log_keys=_log_keys(settings),
            likeness=LikenessPolicy.from_settings(settings),
        )


def _log_keys(settings: Settings) -> LogKeys:
    """The log's signing keys; in development mode the key file is created on first start."""
    path = settings.log_signing_key_path()
    if settings.dev_mode:
        ensure_key_file(path, settings.log_origin)
    return load_log_keys(path, settings.log_origin)
