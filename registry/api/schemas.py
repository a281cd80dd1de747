"""Models shared by every route: the strict base, the error body, pagination."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorBody", "ErrorDetail", "Reason", "StrictModel"]


class StrictModel(BaseModel):
    """Request bodies and queries: unknown fields are errors, and types are not coerced from strings
    except where a query string must be."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryModel(BaseModel):
    """Query strings arrive as text, so numbers are parsed; unknown parameters are still errors."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. `attestation_expired`.")
    message: str = Field(description="What is wrong, for a person.")
    details: Any = Field(default=None, description="Structured detail, e.g. the fields that failed.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Reason(QueryModel):
    reason: str = Field(min_length=3, max_length=500, description="Why staff need this; audit-logged.")
