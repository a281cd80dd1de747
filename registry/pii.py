"""Encryption at rest for personal data, and the blind index that finds a reused ID number.

DESIGN §4: an operator's legal name and national ID number are stored only encrypted, under a key id so keys
rotate, and the ID number also as an HMAC "blind index" so that the same person verifying a second operator
is caught (HTTP 409 ``identity_in_use``) without the number ever being stored or compared in the clear.

Blob format (one ``bytea`` per field)::

    kid_len (1 byte) ‖ kid (kid_len ASCII bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes)

The associated data is ``kid_len ‖ kid ‖ context``: the context (see :func:`field_context`) binds a blob to
the row and field it was written for, so a ciphertext copied into another operator's row or another column
does not decrypt. Nothing here reads a clock, logs, or puts plaintext into an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from registry.errors import RegistryError

__all__ = [
    "KEY_BYTES",
    "PiiCipher",
    "blind_index",
    "field_context",
    "generate_key",
    "normalise_id_number",
]

# AES-256-GCM keys and the blind-index HMAC key are both 32 random bytes.
KEY_BYTES = 32
# NIST SP 800-38D §8.2.2: a 96-bit random nonce; with at most 2**32 messages per key the collision risk
# stays below 2**-32, far beyond the number of operators one key will ever encrypt.
_NONCE_BYTES = 12
_TAG_BYTES = 16
# The kid is length-prefixed with one byte, so it can be at most 255 bytes; keep it printable ASCII so it
# can be shown in configuration and logs.
_KID_RE = re.compile(r"[\x21-\x7e]{1,255}")
# Separators people and forms put inside ID numbers ("110105 19491231 002X", "850101/1234",
# "123.456.789-09"): none of them is part of the number.
_ID_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212./]+")
_ID_NUMBER_RE = re.compile(r"[0-9A-Z]{1,64}")


def generate_key() -> bytes:
    """Return a fresh key for :class:`PiiCipher` or :func:`blind_index`: 32 bytes from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def field_context(operator_id: str, field: str) -> bytes:
    """Return the associated data that binds a PII blob to one operator's ``field``.

    The parts are NUL-separated after a versioned label, so ``("ab", "c")`` and ``("a", "bc")`` differ.

    Raises:
        ValueError: if either part is empty or contains NUL.
    """
    for part in (operator_id, field):
        if not part or "\x00" in part:
            raise ValueError("context parts must be non-empty and contain no NUL")
    return b"avatar-registry/pii/v1\x00" + operator_id.encode() + b"\x00" + field.encode()


class PiiCipher:
    """AES-256-GCM encryption of personal data under rotating, named keys.

    ``keys`` maps a key id to its 32-byte key; new blobs use ``current_kid``, and any blob decrypts as long
    as the key named in it is still configured. To rotate: add a new key, make it current, re-encrypt old
    blobs at leisure (:meth:`key_id_of` tells which ones), then drop the old key.
    """

    def __init__(self, keys: Mapping[str, bytes], current_kid: str) -> None:
        """Check and keep the key ring.

        Raises:
            ValueError: if a key id is not 1–255 printable ASCII characters, a key is not 32 bytes, or
                ``current_kid`` is not one of ``keys``.
        """
        if not keys:
            raise ValueError("at least one pii key is required")
        ring: dict[str, AESGCM] = {}
        for kid, key in keys.items():
            if not _KID_RE.fullmatch(kid):
                raise ValueError(f"pii key id must be 1-255 printable ASCII characters, got {kid!r}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"pii key {kid!r} must be {KEY_BYTES} bytes, got {len(key)}")
            ring[kid] = AESGCM(key)
        if current_kid not in ring:
            raise ValueError(f"current pii key id {current_kid!r} is not among the configured keys")
        # The AESGCM objects, by key id; keys themselves are not kept anywhere else.
        self._ring = ring
        # The key id new blobs are written under.
        self.current_kid = current_kid

    def encrypt(self, plaintext: str, *, context: bytes) -> bytes:
        """Encrypt ``plaintext`` (UTF-8) under the current key, bound to ``context`` (module docstring)."""
        header = _header(self.current_kid)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ring[self.current_kid].encrypt(nonce, plaintext.encode(), header + context)
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, context: bytes) -> str:
        """Decrypt a blob written by :meth:`encrypt` with the same ``context``.

        Raises:
            RegistryError: ``pii_malformed`` if the blob is truncated or garbled, ``pii_unknown_key`` if its
                key id is not configured, ``pii_decrypt_failed`` if authentication fails (wrong context,
                wrong key, or altered bytes). These are server faults, never the client's.
        """
        kid, nonce, sealed = _split(blob)
        aead = self._ring.get(kid)
        if aead is None:
            raise RegistryError(f"pii blob uses unknown key id {kid!r}", code="pii_unknown_key")
        try:
            plaintext = aead.decrypt(nonce, sealed, _header(kid) + context)
        except InvalidTag as exc:
            raise RegistryError(
                f"pii blob under key id {kid!r} failed authentication (wrong context, key or bytes)",
                code="pii_decrypt_failed",
            ) from exc
        return plaintext.decode()

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        """Return the key id a blob was written under (to find blobs a rotation must re-encrypt).

        Raises:
            RegistryError: ``pii_malformed`` if the blob is truncated or garbled.
        """
        return _split(blob)[0]


def normalise_id_number(id_number: str) -> str:
    """Return the canonical form of a national ID number, the input of :func:`blind_index`.

    Steps: Unicode NFKC (full-width digits and letters become ASCII), remove whitespace and the separators
    ``- ‐ ‑ ‒ – — ― − . /``, upper-case (so a Chinese 18-digit resident ID's check character ``x`` equals
    ``X``). Two spellings of one number therefore give one blind index.

    Raises:
        ValueError: if the result is empty, longer than 64 characters, or has anything but ASCII letters
            and digits (the message never repeats the number).
    """
    normalised = _ID_SEPARATORS.sub("", unicodedata.normalize("NFKC", id_number)).upper()
    if not _ID_NUMBER_RE.fullmatch(normalised):
        raise ValueError("id number must be 1-64 ASCII letters and digits after normalisation")
    return normalised


def blind_index(id_number: str, key: bytes) -> bytes:
    """Return HMAC-SHA256(``key``, normalised ``id_number``): 32 bytes, equal for equal numbers.

    ``key`` is a dedicated secret (not a :class:`PiiCipher` key) that must stay fixed: changing it means
    recomputing every stored index from the decrypted numbers.

    Raises:
        ValueError: if ``key`` is shorter than 32 bytes, or the number does not normalise
            (:func:`normalise_id_number`).
    """
    if len(key) < KEY_BYTES:
        raise ValueError(f"blind-index key must be at least {KEY_BYTES} bytes, got {len(key)}")
    return hmac.new(key, normalise_id_number(id_number).encode("ascii"), hashlib.sha256).digest()


def _header(kid: str) -> bytes:
    raw = kid.encode("ascii")
    return bytes([len(raw)]) + raw


def _split(blob: bytes) -> tuple[str, bytes, bytes]:
    """Split a blob into (kid, nonce, ciphertext‖tag), raising ``pii_malformed`` if it cannot be one."""
    if not blob:
        raise RegistryError("pii blob is empty", code="pii_malformed")
    kid_len = blob[0]
    body = 1 + kid_len
    if kid_len == 0 or len(blob) < body + _NONCE_BYTES + _TAG_BYTES:
        raise RegistryError(
            f"pii blob is too short: {len(blob)} bytes for a key id of {kid_len}", code="pii_malformed"
        )
    kid_bytes = blob[1:body]
    try:
        kid = kid_bytes.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RegistryError("pii blob key id is not ASCII", code="pii_malformed") from exc
    if not _KID_RE.fullmatch(kid):
        raise RegistryError("pii blob key id is not printable ASCII", code="pii_malformed")
    return kid, blob[body : body + _NONCE_BYTES], blob[body + _NONCE_BYTES :]
