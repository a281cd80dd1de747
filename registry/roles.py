"""Who may call what (DESIGN §3)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

__all__ = ["ALL_ROLES", "Principal", "Role"]


class Role(enum.StrEnum):
    ADMIN = "admin"  # keys, everything
    PLATFORM = "platform"  # the platform backend: operators, reports, upload checks
    OPERATOR = "operator"  # acts for one operator
    INGEST = "ingest"  # opens live sessions
    STAFF = "staff"  # look-ups, reviews, actions; audit-logged


ALL_ROLES: frozenset[Role] = frozenset(Role)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind an API key."""

    key_id: uuid.UUID
    role: Role
    operator_id: uuid.UUID | None = None
