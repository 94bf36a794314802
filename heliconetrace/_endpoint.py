"""The log URL for a record, chosen by the kind of Helicone server behind the base URL.

Helicone runs two kinds of server that take async logs, with different paths:

| base URL host                          | server | log path                                       |
|----------------------------------------|--------|------------------------------------------------|
| api.worker.helicone.ai (cloud, US)     | worker | /oai/v1/log, /anthropic/v1/log, /custom/v1/log |
| api.hconeai.com, api.us.hconeai.com    | worker | same (legacy hosts)                            |
| api.helicone.ai, eu.api.helicone.ai    | jawn   | /v1/trace/custom/log, with a `provider` field  |
| anything else (self-hosted, port 8585) | jawn   | /v1/trace/custom/log, with a `provider` field  |

The worker paths do not exist on jawn (a 404), and the worker picks the provider by path, so the
choice matters. A full `log_url` setting overrides the table; a URL with `/v1/trace/` in its path
counts as jawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

WORKER_HOSTS: Final = frozenset({"api.worker.helicone.ai", "api.hconeai.com", "api.us.hconeai.com"})
JAWN_LOG_PATH: Final = "/v1/trace/custom/log"

# Worker path by provider. Azure and OpenAI-compatible gateways speak OpenAI's format.
_WORKER_PATHS: Final = {
    "openai": "/oai/v1/log",
    "azure": "/oai/v1/log",
    "anthropic": "/anthropic/v1/log",
}
WORKER_DEFAULT_PATH: Final = "/custom/v1/log"

ServerKind = Literal["worker", "jawn"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    server: ServerKind


def server_kind(base_url: str) -> ServerKind:
    host = (urlsplit(base_url).hostname or "").lower()
    return "worker" if host in WORKER_HOSTS else "jawn"


def resolve_endpoint(base_url: str, log_url: str | None, provider: str | None) -> Endpoint:
    """Return the log endpoint for a record of `provider` (None: unknown, OpenAI format assumed)."""
    if log_url is not None:
        kind: ServerKind = "jawn" if "/v1/trace/" in urlsplit(log_url).path + "/" else "worker"
        return Endpoint(log_url, kind)

    root = base_url.rstrip("/")
    if server_kind(root) == "worker":
        path = _WORKER_PATHS.get(provider or "openai", WORKER_DEFAULT_PATH)
        return Endpoint(root + path, "worker")

    # A base URL that already names the trace API (as some of Helicone's docs suggest) keeps it.
    if root.endswith("/v1/trace"):
        return Endpoint(root + "/custom/log", "jawn")
    return Endpoint(root + JAWN_LOG_PATH, "jawn")
