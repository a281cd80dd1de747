"""C2SP tlog-checkpoint: the signed tree head of the log, as the text of a signed note.

The body is ``<origin>\\n<tree size>\\n<base64 root hash>\\n`` followed by optional extension lines,
each ending in a newline. Parsing is strict: one spelling of each value is accepted (decimal size without
leading zeros, canonical padded base64 of exactly 32 bytes), so a checkpoint's text and meaning determine
each other.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from registry.errors import BadRequest
from registry.translog.merkle import HASH_SIZE
from registry.translog.note import MAX_NOTE_SIZE, Signer, Verifier, open_note, sign_note

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "CheckpointError",
    "format_checkpoint",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

# Tree sizes are int64 in Go's tlog and in PostgreSQL's bigint; nothing larger can be proved by either.
MAX_TREE_SIZE = (1 << 63) - 1
# tlog-checkpoint: "ASCII decimal ... with no leading zeroes (unless the tree is empty ...)".
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,18}")


class CheckpointError(BadRequest):
    """A checkpoint's text does not follow C2SP tlog-checkpoint, or it is not the expected log's."""

    code = "checkpoint_invalid"


def _check_line(what: str, line: str) -> None:
    if not line:
        raise CheckpointError(f"malformed checkpoint: empty {what}")
    for ch in line:
        if ch == "\n" or ord(ch) < 0x20:
            raise CheckpointError(f"malformed checkpoint: control character U+{ord(ch):04X} in {what}")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's ``origin``, the tree ``size`` and its RFC 6962 ``root_hash``.

    ``extensions`` are the opaque extra lines (tlog-checkpoint does not recommend them). Raises
    ``CheckpointError`` on construction if a field cannot be written as a valid checkpoint.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size out of range: limit {MAX_TREE_SIZE}, got {self.size}")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(
                f"root hash has wrong length: expected {HASH_SIZE} bytes, got {len(self.root_hash)}"
            )
        for i, line in enumerate(self.extensions):
            _check_line(f"extension line {i}", line)


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """Return the checkpoint's note text: origin, size, base64 root hash and extension lines, each ending in
    a newline (C2SP tlog-checkpoint, "Note text")."""
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        base64.b64encode(checkpoint.root_hash).decode(),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint's note text strictly (C2SP tlog-checkpoint).

    Requires at least three lines, every line non-empty and newline-terminated, a decimal tree size with no
    sign or leading zeros that fits in int64, and the canonical padded base64 of a 32-byte root hash.
    Raises ``CheckpointError`` naming the first problem.
    """
    if not text.endswith("\n"):
        raise CheckpointError("malformed checkpoint: text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"malformed checkpoint: expected at least 3 lines, got {len(lines)}")
    origin, size_text, root_text, *extensions = lines
    _check_line("origin", origin)
    if not _SIZE_RE.fullmatch(size_text):
        raise CheckpointError(f"malformed checkpoint: tree size {size_text!r} is not a canonical decimal")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError(f"tree size out of range: limit {MAX_TREE_SIZE}, got {size}")
    try:
        root_hash = base64.b64decode(root_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CheckpointError("malformed checkpoint: root hash is not valid base64") from exc
    if len(root_hash) != HASH_SIZE:
        raise CheckpointError(f"root hash has wrong length: expected {HASH_SIZE} bytes, got {len(root_hash)}")
    # base64 lets the last character carry unused bits; only the encoding with them zero is accepted.
    if base64.b64encode(root_hash).decode() != root_text:
        raise CheckpointError("malformed checkpoint: root hash is not canonical base64")
    return Checkpoint(origin, size, root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> bytes:
    """Return the checkpoint as a signed note, signed by the log's key.

    tlog-checkpoint says the log's key name SHOULD match the origin; we require it, so clients can find the
    key by origin. Raises ``CheckpointError`` if ``signer.name`` differs from ``checkpoint.origin``.
    """
    if signer.name != checkpoint.origin:
        raise CheckpointError(
            f"signer name does not match the checkpoint origin: expected {checkpoint.origin!r}, "
            f"got {signer.name!r}"
        )
    return sign_note(format_checkpoint(checkpoint), signer)


def open_checkpoint(msg: bytes, log_key: Verifier, *, max_size: int = MAX_NOTE_SIZE) -> Checkpoint:
    """Verify the signed checkpoint ``msg`` with the log's key and return the parsed checkpoint.

    Steps: (1) open the note, requiring a valid signature by ``log_key`` (other signatures, such as witness
    cosignatures, are ignored); (2) parse the text strictly; (3) the origin must be the key's name.
    Raises the note errors of ``open_note`` for (1) and ``CheckpointError`` for (2) and (3).
    """
    # (1)
    note = open_note(msg, [log_key], max_size=max_size)
    # (2)
    checkpoint = parse_checkpoint(note.text)
    # (3)
    if checkpoint.origin != log_key.name:
        raise CheckpointError(
            f"checkpoint origin does not match the log key: expected {log_key.name!r}, "
            f"got {checkpoint.origin!r}"
        )
    return checkpoint
