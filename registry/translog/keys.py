"""The log's signing keys: a file of signed-note signer key strings under DATA_DIR (or a configured path).

The file holds one ``PRIVATE+KEY+<origin>+<hex key id>+<base64>`` line per key. The first line is the
current key: it signs checkpoints and certificates, and ``/v1/log/key`` serves its verifier key. Any further
lines are older keys that co-sign each checkpoint during a rotation, so clients that still trust an old key
keep verifying (signed-note lets a note carry several signatures). Blank lines and ``#`` comments are
ignored. Every key's name must be the log's origin (tlog-checkpoint: the key name SHOULD be the origin).
Rotation is described in docs/transparency.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from registry.errors import RegistryError
from registry.translog.note import NoteKeyError, Signer, Verifier, generate_signer, parse_signer_key

__all__ = ["LogKeyError", "LogKeys", "create_key_file", "ensure_key_file", "load_log_keys"]

_logger = logging.getLogger(__name__)


class LogKeyError(RegistryError):
    """The log's signing key file is missing, unreadable or does not match the configured origin."""

    code = "log_key_invalid"


@dataclass(frozen=True, slots=True)
class LogKeys:
    """The current signer and the older keys that co-sign while clients move to the new one."""

    signer: Signer
    cosigners: tuple[Signer, ...] = ()

    @property
    def origin(self) -> str:
        """The log's origin, which is every key's name."""
        return self.signer.name

    @property
    def verifier(self) -> Verifier:
        """The current key's verifier (what ``/v1/log/key`` serves)."""
        return self.signer.verifier

    @property
    def key_id(self) -> str:
        """The current key's signed-note key id as 8 hex digits."""
        return f"{self.signer.key_id:08x}"

    @property
    def all_signers(self) -> tuple[Signer, ...]:
        """Every key that signs a checkpoint, current first."""
        return (self.signer, *self.cosigners)


def parse_key_file(text: str, origin: str, *, source: str = "log key file") -> LogKeys:
    """Parse the key file's text: signer key strings, one a line, current first.

    Raises ``LogKeyError`` if there is no key, a line is not a valid Ed25519 signer key, a key's name is not
    ``origin``, or a key appears twice. Messages never include key material.
    """
    signers: list[Signer] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            signer = parse_signer_key(line)
        except NoteKeyError as exc:
            raise LogKeyError(f"{source} line {number}: {exc.message}") from exc
        if signer.name != origin:
            raise LogKeyError(
                f"{source} line {number}: key name does not match the log origin: expected {origin!r}, "
                f"got {signer.name!r}"
            )
        if any(s.key_id == signer.key_id for s in signers):
            raise LogKeyError(f"{source} line {number}: key {signer.key_id:08x} is listed twice")
        signers.append(signer)
    if not signers:
        raise LogKeyError(f"{source} holds no signer key")
    return LogKeys(signers[0], tuple(signers[1:]))


def load_log_keys(path: Path, origin: str) -> LogKeys:
    """Read the log's keys from ``path``. Raises ``LogKeyError`` if it is missing or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LogKeyError(
            f"log signing key file {path} does not exist: create it with `avatar-registry log keygen` "
            "(or start `avatar-registry run` once), or set REGISTRY_LOG_SIGNING_KEY_FILE"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LogKeyError(f"cannot read log signing key file {path}: {type(exc).__name__}") from exc
    return parse_key_file(text, origin, source=str(path))


def create_key_file(path: Path, origin: str) -> Signer:
    """Write a new key file holding one fresh Ed25519 key named ``origin`` (mode 0600, never overwriting).

    Raises ``FileExistsError`` if ``path`` exists.
    """
    signer = generate_signer(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# transparency log signing key (current key first); keep secret\n")
        f.write(signer.key_string + "\n")
    return signer


def ensure_key_file(path: Path, origin: str) -> bool:
    """Create the key file if it does not exist; return whether it was created."""
    try:
        create_key_file(path, origin)
    except FileExistsError:
        return False
    _logger.info("created the transparency log signing key in %s", path)
    return True
