"""The log's leaves: which JSON objects may become a leaf, and their exact bytes (RFC 8785).

A leaf records *that* something changed, by ids and digests, never *what a person is*: every leaf is a flat
JSON object of short tokens (ids, hex digests, status words, numbers), so free text such as a name or a
reason cannot slip in, and keys that name personal data are refused even when hashed (a hash of a legal name
is guessable). The log adds ``"v": 1`` and ``"at"`` (RFC 3339, UTC, milliseconds) and encodes the object with
the JSON Canonicalization Scheme (RFC 8785), so a leaf's meaning and its hashed bytes determine each other.

Pure: no I/O and no clock; the appender passes the time.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

from registry.errors import RegistryError
from registry.translog.tiles import MAX_ENTRY_SIZE

__all__ = [
    "KINDS",
    "LEAF_VERSION",
    "LeafError",
    "LeafFields",
    "check_leaf",
    "decode_leaf",
    "encode_leaf",
    "format_time",
]

LEAF_VERSION = 1
# The changes the issue says are logged. Other dotted kinds are accepted (new change types need no
# migration), but these are the ones documented in docs/transparency.md.
KINDS = frozenset(
    {
        "avatar.registered",
        "avatar.images_changed",
        "avatar.transferred",
        "avatar.status_changed",
        "operator.identity_revoked",
    }
)
_KIND_RE = re.compile(r"[a-z][a-z_]*(\.[a-z][a-z_]*)+")
_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# A token: an id, a hex or base64 digest, a status word, a timestamp. No spaces, so no prose.
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")
_MAX_KEYS = 32
_MAX_LIST = 256
# JSON numbers are doubles in most readers; RFC 8785 (I-JSON) refuses larger integers anyway.
_MAX_INT = 2**53 - 1
# Keys the log itself writes.
_RESERVED = frozenset({"v", "at"})
# Keys that are free text or identify a person directly; refused outright.
_PII_KEYS = frozenset(
    {"name", "display_name", "subject", "issuer", "reason", "note", "comment", "description", "text", "label"}
)
# Fragments that name personal data; refused anywhere in a key, hashed or not.
_PII_FRAGMENTS = (
    "legal_name",
    "real_name",
    "full_name",
    "id_number",
    "national_id",
    "passport",
    "email",
    "phone",
    "address",
    "birth",
    "dob",
    "ip_addr",
)
# The fixed-width timestamp the log writes; its length lets a leaf's size be checked before it is sequenced.
_SAMPLE_TIME = "2000-01-01T00:00:00.000Z"


class LeafError(RegistryError):
    """A leaf was refused: not a flat object of ids and digests, a key that names PII, or too large.

    A server fault (HTTP 500): the code that builds leaves is ours.
    """

    code = "leaf_invalid"


@dataclass(frozen=True, slots=True)
class LeafFields:
    """A checked leaf: its fields (without ``v`` and ``at``), its kind and the uuid it is about, if any."""

    fields: dict[str, Any]
    kind: str
    subject: uuid.UUID | None


def _check_value(key: str, value: Any, *, in_list: bool = False) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise LeafError(f"leaf field {key!r}: integer out of range: limit {_MAX_INT}, got {value}")
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        if not _TOKEN_RE.fullmatch(value):
            raise LeafError(
                f"leaf field {key!r}: expected an id or digest (1-128 characters of [A-Za-z0-9._:+/=-]), "
                f"got {len(value)} characters of text"
            )
        return value
    if isinstance(value, (list, tuple)) and not in_list:
        if len(value) > _MAX_LIST:
            raise LeafError(f"leaf field {key!r}: list too long: limit {_MAX_LIST}, got {len(value)}")
        return [_check_value(key, v, in_list=True) for v in value]
    what = "nested list" if in_list and isinstance(value, (list, tuple)) else type(value).__name__
    raise LeafError(
        f"leaf field {key!r}: expected a token, number, boolean, null or list of them, got {what}"
    )


def check_leaf(leaf: Mapping[str, Any]) -> LeafFields:
    """Check that ``leaf`` may be logged and return it normalised (uuids as strings, tuples as lists).

    Rules: (1) a mapping of 1 to 32 keys, each ``[a-z][a-z0-9_]*``; (2) ``kind`` is a dotted lowercase name;
    (3) ``v`` and ``at`` are the log's own; (4) no key names personal data (``legal_name``, ``id_number``,
    ``email``, … anywhere in the key; ``name``, ``subject``, ``reason`` and other free-text keys outright —
    log ``name_sha256`` or ``reason_sha256`` instead); (5) values are tokens (no spaces), integers, booleans,
    null, or flat lists of those. Raises ``LeafError`` naming the first problem.
    """
    # (1)
    if not isinstance(leaf, Mapping):
        raise LeafError(f"a leaf is a JSON object, got {type(leaf).__name__}")
    if not 1 <= len(leaf) <= _MAX_KEYS:
        raise LeafError(f"a leaf has 1 to {_MAX_KEYS} fields, got {len(leaf)}")
    fields: dict[str, Any] = {}
    for key, value in leaf.items():
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise LeafError(f"invalid leaf key {key!r}: expected [a-z][a-z0-9_]{{0,63}}")
        # (3)
        if key in _RESERVED:
            raise LeafError(f"leaf key {key!r} is written by the log itself")
        # (4)
        if key in _PII_KEYS or any(fragment in key for fragment in _PII_FRAGMENTS):
            raise LeafError(f"leaf key {key!r} names personal data or free text; log ids and digests only")
        # (5)
        fields[key] = _check_value(key, value)
    # (2)
    kind = fields.get("kind")
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise LeafError(
            f"leaf kind must be a dotted lowercase name such as 'avatar.registered', got {kind!r}"
        )
    return LeafFields(fields=fields, kind=kind, subject=_subject(fields))


def _subject(fields: dict[str, Any]) -> uuid.UUID | None:
    """The uuid a leaf is about: its avatar, else its operator (for look-ups such as certificates)."""
    for key in ("avatar_id", "operator_id"):
        raw = fields.get(key)
        if isinstance(raw, str):
            try:
                return uuid.UUID(raw)
            except ValueError:
                continue
    return None


def format_time(at: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, always 24 characters (``2025-01-31T12:00:00.250Z``).

    Raises ``ValueError`` for a naive datetime (its zone would be a guess).
    """
    if at.tzinfo is None:
        raise ValueError("leaf time must be timezone-aware")
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def encode_leaf(leaf: LeafFields, at: datetime | None = None) -> bytes:
    """Return the leaf's bytes: RFC 8785 canonical JSON of its fields plus ``"v": 1`` and ``"at"``.

    With ``at`` omitted a fixed sample time of the same width is used, which gives the exact size of the
    leaf before it is sequenced. Raises ``LeafError`` if the bytes exceed an entry bundle's 65,535-byte limit.
    """
    obj = {**leaf.fields, "v": LEAF_VERSION, "at": _SAMPLE_TIME if at is None else format_time(at)}
    try:
        data = rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise LeafError(f"leaf cannot be canonicalised: {exc}") from exc
    if len(data) > MAX_ENTRY_SIZE:
        raise LeafError(f"leaf too large: limit {MAX_ENTRY_SIZE} bytes, got {len(data)}")
    return data


def decode_leaf(data: bytes) -> dict[str, Any]:
    """Parse a leaf's bytes back to its JSON object. Raises ``LeafError`` if they are not a JSON object."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LeafError("leaf bytes are not JSON") from exc
    if not isinstance(obj, dict):
        raise LeafError(f"leaf bytes are not a JSON object: got {type(obj).__name__}")
    return obj
