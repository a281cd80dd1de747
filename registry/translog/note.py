"""C2SP signed notes with Ed25519 keys: key strings, signing and opening.

A port of Go's ``golang.org/x/mod/sumdb/note`` following C2SP ``signed-note``: a note is UTF-8 text ending
in a newline, a blank line, then one line per signature, ``— <key name> base64(key id || signature)``. The key
id is ``SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]`` read big-endian. Key strings are
``<name>+<hex key id>+base64(0x01 || public key)`` for a verifier and
``PRIVATE+KEY+<name>+<hex key id>+base64(0x01 || seed)`` for a signer. Ed25519 is deterministic, so a note
signed here is byte-identical to the one Go signs with the same key.

``open_note`` fails closed: signatures by unknown keys are kept aside as unverified, a known key's bad
signature rejects the whole note, and a note with no verified signature is rejected (``UnverifiedNote``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from registry.errors import BadRequest

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "InvalidNoteSignature",
    "MalformedNote",
    "Note",
    "NoteError",
    "NoteKeyError",
    "Signature",
    "Signer",
    "UnverifiedNote",
    "Verifier",
    "compute_key_id",
    "generate_signer",
    "open_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
    "signer_from_seed",
]

# signed-note signature type identifier for Ed25519.
ALG_ED25519 = 0x01
_ED25519_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
# signed-note: verifiers SHOULD cap the signatures per note and MUST accept at least 16; Go's Open allows 100.
MAX_SIGNATURES = 100
# A checkpoint is a few hundred bytes; 1 MiB leaves room for many large (post-quantum) cosignatures.
MAX_NOTE_SIZE = 1 << 20
_SIGNATURE_PREFIX = "— "  # em dash (U+2014), space
_KEY_ID_RE = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(BadRequest):
    """A signed note was refused."""

    code = "note_invalid"


class MalformedNote(NoteError):
    """The note's bytes do not follow the signed-note format."""

    code = "note_malformed"


class InvalidNoteSignature(NoteError):
    """A signature by a known key did not verify; the whole note is rejected."""

    code = "note_signature_invalid"


class UnverifiedNote(NoteError):
    """The note parsed but no known key signed it; ``note`` holds what was parsed, signatures unverified."""

    code = "note_unverified"

    def __init__(self, message: str, *, note: Note) -> None:
        super().__init__(message, details={"unverified_signatures": len(note.unverified_signatures)})
        self.note = note


class NoteKeyError(BadRequest):
    """A key string is malformed, or the set of known keys is ambiguous."""

    code = "note_key_invalid"


def compute_key_id(name: str, key: bytes) -> int:
    """Return the signed-note key id of ``key`` (signature type byte || public key) under ``name``.

    ``SHA-256(name || 0x0A || key)[:4]`` as a big-endian integer (C2SP signed-note, "Signatures").
    """
    digest = hashlib.sha256(name.encode() + b"\n" + key).digest()
    return int.from_bytes(digest[:4], "big")


def _is_valid_name(name: str) -> bool:
    """signed-note: key names are non-empty with no Unicode spaces and no plus; we also refuse controls."""
    return bool(name) and "+" not in name and not any(ch.isspace() or ord(ch) < 0x20 for ch in name)


def _decode_base64(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4, padded); ``None`` if ``text`` is not that."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 public key with its name; ``key_id`` is derived as signed-note recommends."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _is_valid_name(self.name):
            raise NoteKeyError(f"invalid key name {self.name!r}")
        if len(self.public_key) != _ED25519_KEY_SIZE:
            raise NoteKeyError(
                f"Ed25519 public key has wrong length: expected {_ED25519_KEY_SIZE} bytes, "
                f"got {len(self.public_key)}"
            )
        object.__setattr__(self, "key_id", compute_key_id(self.name, bytes([ALG_ED25519]) + self.public_key))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    @property
    def key_string(self) -> str:
        """The verifier key string ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature (RFC 8032) of ``message``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key (its 32-byte seed) with its name. Never log it; ``repr`` leaves the seed out."""

    name: str
    seed: bytes = field(repr=False)
    verifier: Verifier = field(init=False, repr=False, compare=False)
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _is_valid_name(self.name):
            raise NoteKeyError(f"invalid key name {self.name!r}")
        if len(self.seed) != _ED25519_KEY_SIZE:
            raise NoteKeyError(
                f"Ed25519 seed has wrong length: expected {_ED25519_KEY_SIZE} bytes, got {len(self.seed)}"
            )
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "verifier", Verifier(self.name, key.public_key().public_bytes_raw()))

    @property
    def key_id(self) -> int:
        """The key id, the same as the matching verifier's."""
        return self.verifier.key_id

    @property
    def key_string(self) -> str:
        """The secret signer key string ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{encoded}"

    def sign(self, message: bytes) -> bytes:
        """Return the Ed25519 signature (RFC 8032) of ``message``."""
        return self._key.sign(message)


def signer_from_seed(name: str, seed: bytes) -> Signer:
    """Return the signer for a 32-byte Ed25519 seed (raises ``NoteKeyError`` on a bad name or seed)."""
    return Signer(name, seed)


def generate_signer(name: str) -> Signer:
    """Return a new signer with a random Ed25519 key; its ``verifier.key_string`` is what clients trust."""
    return Signer(name, Ed25519PrivateKey.generate().private_bytes_raw())


def _parse_key(kind: str, name: str, key_id_text: str, key_text: str) -> tuple[int, bytes]:
    """Check the common parts of a key string; return the stated key id and the raw 32-byte key."""
    if not _is_valid_name(name):
        raise NoteKeyError(f"invalid key name in {kind} key")
    if not _KEY_ID_RE.fullmatch(key_id_text):
        raise NoteKeyError(f"malformed key id in {kind} key: expected 8 hex digits")
    key = _decode_base64(key_text)
    if not key:
        raise NoteKeyError(f"malformed key in {kind} key: not valid base64")
    if key[0] != ALG_ED25519:
        raise NoteKeyError(
            f"unknown signature algorithm in {kind} key: "
            f"expected 0x{ALG_ED25519:02x} (Ed25519), got 0x{key[0]:02x}"
        )
    if len(key) != 1 + _ED25519_KEY_SIZE:
        raise NoteKeyError(
            f"Ed25519 key in {kind} key has wrong length: "
            f"expected {_ED25519_KEY_SIZE} bytes, got {len(key) - 1}"
        )
    return int(key_id_text, 16), key[1:]


def _check_key_id(kind: str, stated: int, actual: int) -> None:
    if stated != actual:
        raise NoteKeyError(f"{kind} key id mismatch: expected {actual:08x}, got {stated:08x}")


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse a verifier key string ``<name>+<hex key id>+<base64(0x01 || public key)>``.

    Raises ``NoteKeyError`` if any part is malformed, the algorithm is not Ed25519, or the key id does not
    match the name and key.
    """
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteKeyError("malformed verifier key: expected <name>+<hex key id>+<base64 key>")
    name, key_id_text, key_text = parts
    stated, public_key = _parse_key("verifier", name, key_id_text, key_text)
    verifier = Verifier(name, public_key)
    _check_key_id("verifier", stated, verifier.key_id)
    return verifier


def parse_signer_key(skey: str) -> Signer:
    """Parse a signer key string ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``.

    Raises ``NoteKeyError`` if any part is malformed, the algorithm is not Ed25519, or the key id does not
    match the name and the public key derived from the seed. Messages never include key material.
    """
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise NoteKeyError("malformed signer key: expected PRIVATE+KEY+<name>+<hex key id>+<base64 key>")
    _, _, name, key_id_text, key_text = parts
    stated, seed = _parse_key("signer", name, key_id_text, key_text)
    signer = Signer(name, seed)
    _check_key_id("signer", stated, signer.key_id)
    return signer


@dataclass(frozen=True)
class Signature:
    """One signature line of a note: the key's name and id, and the base64 text as it appeared."""

    name: str
    key_id: int
    base64: str


@dataclass(frozen=True)
class Note:
    """An opened note: its text (with the final newline) and its verified and unverified signatures."""

    text: str
    signatures: tuple[Signature, ...]
    unverified_signatures: tuple[Signature, ...] = ()


def _check_text(text: str) -> None:
    for offset, ch in enumerate(text):
        if ord(ch) < 0x20 and ch != "\n":
            raise MalformedNote(f"malformed note: control character U+{ord(ch):04X} at offset {offset}")


def sign_note(text: str, signer: Signer, *more_signers: Signer) -> bytes:
    """Return the signed note: ``text``, a blank line, and one signature line per signer, in order.

    ``text`` must end with a newline and contain no control characters other than newline. Raises
    ``MalformedNote`` otherwise. Byte-identical to Go's ``note.Sign`` for the same keys.
    """
    if not text.endswith("\n"):
        raise MalformedNote("malformed note: text does not end with a newline")
    _check_text(text)
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNote("malformed note: text is not valid UTF-8") from exc
    lines = []
    for s in (signer, *more_signers):
        raw = s.key_id.to_bytes(4, "big") + s.sign(body)
        lines.append(f"{_SIGNATURE_PREFIX}{s.name} {base64.b64encode(raw).decode()}\n")
    return body + b"\n" + "".join(lines).encode("utf-8")


def _index_verifiers(known: Iterable[Verifier]) -> dict[tuple[str, int], list[Verifier]]:
    by_id: dict[tuple[str, int], list[Verifier]] = {}
    for v in known:
        # As in Go's VerifierList, a name and key id listed twice is ambiguous once a signature uses it.
        by_id.setdefault((v.name, v.key_id), []).append(v)
    return by_id


def open_note(
    msg: bytes,
    known: Iterable[Verifier],
    *,
    max_size: int = MAX_NOTE_SIZE,
    max_signatures: int = MAX_SIGNATURES,
) -> Note:
    """Parse the signed note ``msg`` and verify its signatures against the ``known`` verifiers.

    Follows C2SP signed-note: (1) at most ``max_size`` bytes; (2) valid UTF-8 with no control characters
    other than newline; (3) the text ends at the last blank line, and one or more signature lines follow, at
    most ``max_signatures``; (4) each line is ``— <name> <base64>`` with a valid name and at least 5 bytes;
    (5) a signature whose name and key id match no known key is kept as unverified; (6) one that matches must
    verify, or the whole note is rejected; (7) at least one must verify.

    Raises ``MalformedNote`` (1-4), ``NoteKeyError`` if two known keys share a name and id used by a
    signature, ``InvalidNoteSignature`` (6), ``UnverifiedNote`` (7).
    """
    # (1)
    if len(msg) > max_size:
        raise MalformedNote(f"note too large: limit {max_size} bytes, got {len(msg)}")
    # (2)
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNote(f"malformed note: invalid UTF-8 at offset {exc.start}") from exc
    _check_text(decoded)
    # (3)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise MalformedNote("malformed note: no blank line before the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block:
        raise MalformedNote("malformed note: no signature lines after the blank line")
    if not block.endswith("\n"):
        raise MalformedNote("malformed note: last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > max_signatures:
        raise MalformedNote(f"malformed note: too many signatures: limit {max_signatures}, got {len(lines)}")

    verifiers = _index_verifiers(known)
    text_bytes = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen_lines: set[str] = set()
    for number, line in enumerate(lines, start=1):
        # (4)
        if not line.startswith(_SIGNATURE_PREFIX):
            raise MalformedNote(
                f"malformed note: signature line {number} does not start with an em dash and a space"
            )
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not _is_valid_name(name):
            raise MalformedNote(f"malformed note: invalid key name in signature line {number}")
        raw = _decode_base64(encoded)
        if raw is None or not encoded:
            raise MalformedNote(f"malformed note: signature line {number} is not valid base64")
        if len(raw) < 5:
            raise MalformedNote(f"malformed note: signature line {number} is too short: {len(raw)} bytes")
        # An identical repeated line adds nothing (and was already checked if its key is known).
        if line in seen_lines:
            continue
        seen_lines.add(line)
        signature = Signature(name, int.from_bytes(raw[:4], "big"), encoded)
        candidates = verifiers.get((name, signature.key_id), [])
        # (5)
        if not candidates:
            unverified.append(signature)
            continue
        if len(candidates) > 1:
            raise NoteKeyError(f"ambiguous key {name}+{signature.key_id:08x}")
        # (6)
        if not candidates[0].verify(text_bytes, raw[4:]):
            raise InvalidNoteSignature(f"invalid signature for key {name}+{signature.key_id:08x}")
        if all((s.name, s.key_id) != (name, signature.key_id) for s in verified):
            verified.append(signature)

    note = Note(text, tuple(verified), tuple(unverified))
    # (7)
    if not verified:
        raise UnverifiedNote("note has no verifiable signatures", note=note)
    return note
