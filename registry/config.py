"""The registry's settings, read once from the environment (and nowhere else).

Every setting is an environment variable; the README's settings table lists them. ``DATABASE_URL`` and
``DATA_DIR`` carry no prefix because the whole service (registry and livecheck) shares them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "REGISTRY_DATABASE_URL"),
        description="PostgreSQL URL; unset: an embedded PostgreSQL under DATA_DIR/pg (run only).",
    )
    data_dir: Path = Field(
        default=Path(".data"),
        validation_alias=AliasChoices("DATA_DIR", "REGISTRY_DATA_DIR"),
        description="Where the embedded database, local secrets and keys live.",
    )
    host: str = Field(default="127.0.0.1", description="Address the registry listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port the registry listens on.")
    livecheck_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("LIVECHECK_PORT", "REGISTRY_LIVECHECK_PORT"),
        description="Port of the live websocket server started by `run`.",
    )
    dev_mode: bool = Field(
        default=False,
        description="Trust the development identity provider (set by `run`; never in production).",
    )
    secrets_file: Path | None = Field(
        default=None,
        description="JSON file of local secrets (PII keys, blind-index key); default DATA_DIR/secrets.json.",
    )
    identity_providers: dict[str, str] = Field(
        default_factory=dict,
        description='Trusted identity providers as JSON: {"<issuer>": "<JWKS file path or https URL>"}.',
    )
    audience: str = Field(default="avatar-registry", description="The `aud` attestations must name.")
    assurance_levels: list[str] = Field(
        default_factory=lambda: ["low", "substantial", "high"],
        description="Assurance levels from weakest to strongest, as JSON.",
    )
    min_assurance: str = Field(default="substantial", description="Weakest assurance level accepted.")
    nonce_ttl_s: int = Field(default=600, ge=10, le=86400, description="Lifetime of an identity nonce.")
    max_body_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, description="Largest request body accepted (HTTP 413 above)."
    )
    likeness_threshold: int = Field(
        default=31, ge=0, le=64, description="PDQ Hamming distance at or below which two images conflict."
    )
    flood_limit: int = Field(
        default=100, ge=1, description="Uploads one reference may match in a window before quarantine."
    )
    flood_window_s: int = Field(default=3600, ge=1, description="The flood-quarantine window.")
    max_reference_images: int = Field(default=16, ge=1, le=64, description="Reference images per avatar.")
    log_level: str = Field(default="INFO", description="Logging level.")
    db_pool_max: int = Field(default=10, ge=1, le=200, description="Largest database pool size.")
    log_origin: str = Field(
        default="localhost/avatar-registry",
        min_length=1,
        max_length=200,
        pattern=r"^[^\s+]+$",
        description="The transparency log's origin line (C2SP tlog-checkpoint) and signing key name.",
    )
    log_signing_key_file: Path | None = Field(
        default=None,
        description="The log's signed-note signer key file; default DATA_DIR/log-signing.key.",
    )

    def secrets_path(self) -> Path:
        return self.secrets_file or self.data_dir / "secrets.json"

    def log_signing_key_path(self) -> Path:
        return self.log_signing_key_file or self.data_dir / "log-signing.key"

    def dsn(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None
