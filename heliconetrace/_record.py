"""Helicone's async log record, as pydantic models.

The shape passes the strictest validator Helicone runs (its Cloudflare worker's): `meta`,
`headers` and `providerResponse.json` are always present, `json` is `{}` when the body travels
in `textBody`, times are `{seconds, milliseconds}` with start <= end, and every meta value is a
string. `provider` is sent only to a jawn server, which reads it; the worker tags by path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from heliconetrace._capture import json_fallback

# The placeholder URL Helicone's own manual loggers send when the provider URL is unknown.
UNKNOWN_URL = "custom-model-nopath"


class Timestamp(BaseModel):
    """A point in time as whole seconds since the epoch plus the milliseconds past that second."""

    model_config = ConfigDict(frozen=True)

    seconds: int = Field(ge=0)
    milliseconds: int = Field(ge=0, le=999)

    @classmethod
    def from_epoch(cls, epoch_seconds: float) -> Timestamp:
        total_ms = int(epoch_seconds * 1000)
        return cls(seconds=total_ms // 1000, milliseconds=total_ms % 1000)

    def epoch_ms(self) -> int:
        return self.seconds * 1000 + self.milliseconds


class Timing(BaseModel):
    startTime: Timestamp
    endTime: Timestamp
    # Milliseconds from the start of the span to the first content (streams only).
    timeToFirstToken: float | None = Field(default=None, ge=0)


class ProviderRequest(BaseModel):
    url: str = UNKNOWN_URL
    body: dict[str, Any] = Field(alias="json")
    meta: dict[str, str]

    model_config = ConfigDict(populate_by_name=True)


class ProviderResponse(BaseModel):
    body: dict[str, Any] = Field(alias="json")
    textBody: str | None = None
    status: int
    headers: dict[str, str]

    model_config = ConfigDict(populate_by_name=True)


class LogRecord(BaseModel):
    """One request as Helicone's logging endpoints take it."""

    providerRequest: ProviderRequest
    providerResponse: ProviderResponse
    timing: Timing
    provider: str | None = None

    def to_json(self) -> bytes:
        """Serialize exactly as sent: Helicone's field names, no unset optional fields."""
        return self.model_dump_json(
            by_alias=True, exclude_none=True, fallback=json_fallback
        ).encode()
