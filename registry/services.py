"""What the registry builds once at start from its settings and secrets, and hands to every request."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from registry.config import Settings
from registry.localsecrets import LocalSecrets
from registry.pii import PiiCipher

__all__ = ["Services"]

_logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Services:
    settings: Settings
    secrets: LocalSecrets
    pii: PiiCipher
    # issuer -> joserfc KeySet of the identity providers trusted now
    keysets: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, secrets: LocalSecrets, keysets: dict[str, Any]) -> Services:
        return cls(
            settings=settings,
            secrets=secrets,
            pii=PiiCipher(secrets.pii_keys, secrets.pii_current_kid),
            keysets=keysets,
        )
