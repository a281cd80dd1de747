"""The registry's one exception tree.

Domain code raises these; ``registry/api/errors.py`` holds the only table that maps a class to an HTTP
status. ``code`` is the machine-readable error code sent as ``error.code``; messages are lowercase,
specific and never contain PII.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AttestationError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "RegistryError",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
]


class RegistryError(Exception):
    """Base of every error the registry raises on purpose."""

    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class BadRequest(RegistryError):
    code = "bad_request"


class AttestationError(BadRequest):
    """An identity attestation was refused; ``code`` names the failed check (``attestation_*``)."""

    code = "attestation_invalid"


class Unauthorized(RegistryError):
    code = "unauthorized"


class Forbidden(RegistryError):
    code = "forbidden"


class NotFound(RegistryError):
    code = "not_found"


class Conflict(RegistryError):
    code = "conflict"


class PayloadTooLarge(RegistryError):
    code = "payload_too_large"


class UnsupportedMediaType(RegistryError):
    code = "unsupported_media_type"


class Unprocessable(RegistryError):
    code = "unprocessable"


class NotReady(RegistryError):
    code = "not_ready"
