"""livecheck's settings, read once from the environment (prefix ``LIVECHECK_``), and the engine choice.

``DATABASE_URL`` and ``DATA_DIR`` carry no prefix: registry and livecheck share them. The live policy
(limits, challenges, verdict cadence, ``checkpoint_s``, …) is not a setting but a TOML file
(``LIVECHECK_POLICY_FILE``, default the packaged ``default_policy.toml``), validated at start by
:func:`load_live_policy`; a bad file stops start-up with a message naming the key.

The engine that judges sessions is chosen here and nowhere else (:func:`choose_engine`): the evidence
engine (``livecheck/evidence/``) by default; the challenge engine only when asked for by name, or — with a
loud error on stderr and in the log — when the evidence engine cannot be imported or its policy does
not validate (``LIVECHECK_ENGINE=evidence`` refuses to start instead).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from livecheck.challenge_engine import ChallengeEngine
from livecheck.engine import Engine
from livecheck.policy import Policy, load_policy
from livecheck.protocol import EngineFactory, EngineRestorer
from registry.errors import Unprocessable

__all__ = ["EngineChoice", "LiveSettings", "choose_engine", "load_live_policy"]

_logger = logging.getLogger(__name__)


class LiveSettings(BaseSettings):
    """Where a livecheck node listens, what it advertises, and how it persists and coordinates."""

    model_config = SettingsConfigDict(env_prefix="LIVECHECK_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "LIVECHECK_DATABASE_URL"),
        description="PostgreSQL URL (shared with the registry).",
    )
    data_dir: Path = Field(
        default=Path(".data"),
        validation_alias=AliasChoices("DATA_DIR", "LIVECHECK_DATA_DIR"),
        description="Where the embedded database lives (`--embedded-db`).",
    )
    host: str = Field(default="127.0.0.1", description="Address the websocket server listens on.")
    port: int = Field(default=8081, ge=0, le=65535, description="Port of /v1/live (LIVECHECK_PORT).")
    public_url: str | None = Field(
        default=None,
        pattern=r"^wss?://\S+$",
        description="The URL `reconnect` advertises for this node; default ws://HOST:PORT/v1/live.",
    )
    node_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="This node's id in `livecheck_nodes`; default <hostname>-<pid>-<random>.",
    )
    policy_file: Path | None = Field(
        default=None, description="The live policy (TOML); default the packaged default_policy.toml."
    )
    engine: Literal["auto", "evidence", "challenge"] = Field(
        default="auto",
        description="Session judge: evidence (refuse to start without it), challenge, or auto "
        "(evidence; the challenge engine with a loud error if the evidence engine is unusable).",
    )
    compression: bool = Field(
        default=False, description="Negotiate permessage-deflate (PROTOCOL.md: off unless configured)."
    )
    flush_s: float = Field(
        default=0.25, gt=0, le=5, description="How often session events and checkpoints are written."
    )
    heartbeat_s: float = Field(default=1.0, gt=0, le=30, description="Node heartbeat interval.")
    node_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="A node silent this long is dead; its sessions move."
    )
    reap_s: float = Field(
        default=2.0, gt=0, le=60, description="How often orphaned and expired sessions are ended."
    )
    release_timeout_s: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="How long a resume waits for the node holding the session to let it go.",
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, le=3600, description="How long a draining node waits for sessions to move."
    )
    reconnect_after_s: float = Field(
        default=0.0, ge=0, le=60, description="`after_s` of the `reconnect` a draining node sends."
    )
    db_pool_max: int = Field(default=10, ge=2, le=200, description="Largest database pool size.")
    log_level: str = Field(default="INFO", description="Logging level.")

    def url(self) -> str:
        """The websocket URL other nodes send clients to when this node drains."""
        return self.public_url or f"ws://{self.host}:{self.port}/v1/live"

    def node_name(self) -> str:
        return self.node_id or f"{socket.gethostname()}-{os.getpid()}-{random.randbytes(3).hex()}"

    def dsn(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None


def load_live_policy(settings: LiveSettings) -> Policy:
    """The policy in force: ``LIVECHECK_POLICY_FILE`` or the packaged defaults.

    Raises:
        Unprocessable: code ``policy_invalid``; the message names the file and each bad key.
    """
    return load_policy(settings.policy_file)


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """The engine sessions are judged by: how to make one and how to restore one from a checkpoint."""

    name: Literal["evidence", "challenge"]
    new: EngineFactory
    restore: EngineRestorer
    # Why the choice was made, for the start-up banner ("evidence engine", "fallback: …").
    note: str


def choose_engine(settings: LiveSettings, policy: Policy, *, seed: int | None = None) -> EngineChoice:
    """Pick the session engine (see the module docstring).

    Node clocks are aligned to the database clock (``livecheck/node.py``), so a checkpoint restored on
    another node needs no time shift; the shift the protocol passes is ignored by the evidence engine.

    Raises:
        Unprocessable: ``engine_unavailable`` when ``LIVECHECK_ENGINE=evidence`` and the evidence engine
            cannot be imported or its policy is invalid.
    """
    if settings.engine == "challenge":
        _logger.warning("livecheck judges sessions with the challenge engine only (LIVECHECK_ENGINE)")
        return _challenge_choice(policy, "challenge engine (LIVECHECK_ENGINE=challenge)")
    try:
        choice = _evidence_choice(policy, seed)
    except Exception as exc:  # import or validation failure of another module: reported, never hidden
        problem = f"the evidence engine is unusable: {type(exc).__name__}: {exc}"
        if settings.engine == "evidence":
            raise Unprocessable(problem, code="engine_unavailable") from exc
        loud = f"ERROR: {problem}; sessions are judged by the challenge engine only"
        print(loud, file=sys.stderr, flush=True)
        _logger.error(loud)
        return _challenge_choice(policy, f"challenge engine (fallback: {problem})")
    return choice


def _challenge_choice(policy: Policy, note: str) -> EngineChoice:
    def new(references: Sequence[bytes]) -> Engine:
        return ChallengeEngine.from_policy(policy)

    def restore(data: Mapping[str, Any], references: Sequence[bytes], shift_s: float) -> Engine:
        return ChallengeEngine.restore(data, shift_s=shift_s)

    return EngineChoice("challenge", new, restore, note)


def _evidence_choice(policy: Policy, seed: int | None) -> EngineChoice:
    from livecheck.evidence import EvidenceEngine, EvidencePolicy

    # The live policy file's `[evidence]` table when the policy carries one, else the published defaults.
    evidence_policy = getattr(policy, "evidence", None)
    if evidence_policy is None:
        evidence_policy = EvidencePolicy()
    if not isinstance(evidence_policy, EvidencePolicy):
        raise TypeError(f"policy.evidence is a {type(evidence_policy).__name__}, not an EvidencePolicy")
    # Each engine's recompute phase is drawn from its own seed, so sessions do not recompute in step.
    rng = random.Random(seed)

    def new(references: Sequence[bytes]) -> Engine:
        return EvidenceEngine(evidence_policy, references, rng.getrandbits(32))

    def restore(data: Mapping[str, Any], references: Sequence[bytes], shift_s: float) -> Engine:
        return EvidenceEngine.restore(data, evidence_policy, references)

    # Fail now, not at the first session: build one engine and round-trip its snapshot.
    EvidenceEngine.restore(new(()).snapshot(), evidence_policy, ())
    return EngineChoice("evidence", new, restore, "evidence engine")
