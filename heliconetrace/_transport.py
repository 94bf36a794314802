"""One `httpx.Client` per exporter, shared by its threads, and the POST of one record."""

from __future__ import annotations

# httpx imports these on first use. Importing them here, on the importing thread, keeps an
# exporter thread from being in the middle of importing one when the application forks: the
# child would inherit that import's module lock, held forever, and hang on its first POST.
import encodings.idna  # noqa: F401
import threading
from typing import Final

import certifi  # noqa: F401
import httpcore  # noqa: F401
import httpx

from heliconetrace._config import Settings
from heliconetrace._outcome import Outcome, classify_error, classify_response

USER_AGENT: Final = "heliconetrace/0.1"

# Held while a client is created, and by the exporter's fork hook across a fork. Creating a
# client creates an SSL context, and OpenSSL takes process-wide locks for that (its first
# initialization, its tables of algorithms). A child forked while another thread held one
# would block forever on its first client.
# NOTE: a TLS handshake in progress at a fork may hold such locks too; that case is not guarded.
CLIENT_CREATION_LOCK: Final = threading.Lock()


class Transport:
    """Post record bodies to Helicone over kept-alive connections."""

    def __init__(self, settings: Settings, connections: int) -> None:
        key = settings.api_key
        if key is None:
            raise ValueError("Transport needs an API key")
        self._settings = settings
        self._connections = connections
        self._secrets = (key.get_secret_value(),)
        self._client: httpx.Client | None = None

    def _http_client(self) -> httpx.Client:
        client = self._client
        if client is None:
            with CLIENT_CREATION_LOCK:
                if self._client is None:
                    key = self._settings.api_key
                    assert key is not None
                    self._client = httpx.Client(
                        timeout=httpx.Timeout(self._settings.request_timeout),
                        limits=httpx.Limits(
                            max_connections=self._connections,
                            max_keepalive_connections=self._connections,
                        ),
                        headers={
                            "Authorization": f"Bearer {key.get_secret_value()}",
                            "Content-Type": "application/json",
                            "User-Agent": USER_AGENT,
                        },
                    )
                client = self._client
        return client

    def post(self, url: str, body: bytes) -> Outcome:
        """Send one record and classify the response; a failed delivery is an outcome, not an
        exception."""
        try:
            response = self._http_client().post(url, content=body)
        except httpx.HTTPError as error:
            return classify_error(error, self._secrets)
        return classify_response(response, self._secrets)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
