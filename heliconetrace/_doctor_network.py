"""The network steps of `python -m heliconetrace doctor`: proxy, DNS, TCP and TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.request
from collections.abc import Sequence
from typing import Final

import httpx

from heliconetrace._config import ENV_BASE_URL, ENV_LOG_URL, Settings
from heliconetrace._doctor_report import Report, Target

EU_HOST: Final = "eu.api.helicone.ai"
JAWN_DEFAULT_PORT: Final = 8585


def proxy_for(target: Target) -> str | None:
    """Return the proxy that the environment sets for the target, or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https" if target.https else "http") or proxies.get("all")
    if proxy is None or urllib.request.proxy_bypass(target.host):
        return None
    return proxy


def check_dns(target: Target, timeout: float, report: Report) -> list[str]:
    report.step(f"DNS: does {target.host} resolve?")
    found: list[list[str]] = []
    errors: list[OSError] = []

    def look_up() -> None:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as error:
            errors.append(error)
            return
        found.append(list(dict.fromkeys(str(info[4][0]) for info in infos)))

    # getaddrinfo() has no timeout of its own, so it runs in a thread that may outlive the wait.
    thread = threading.Thread(target=look_up, name="heliconetrace-doctor-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise report.fail(
            f"looking up {target.host} took more than {timeout:g} s.",
            "check this machine's DNS settings and network connection.",
        )
    if errors:
        raise report.fail(
            f"{target.host} does not resolve ({errors[0].strerror or errors[0]}).",
            f"check the host name in {ENV_BASE_URL} or {ENV_LOG_URL}; Helicone's cloud hosts "
            f"are api.worker.helicone.ai (US) and {EU_HOST} (EU).",
        )
    addresses = found[0]
    report.ok(f"{target.host} resolves to {', '.join(addresses)}.")
    return addresses


def check_tcp(target: Target, addresses: Sequence[str], timeout: float, report: Report) -> None:
    report.step(f"TCP: does {target.address} accept a connection?")
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise report.fail(
            f"connection refused on {target.address}: nothing listens on port {target.port} "
            f"of {', '.join(addresses)}.",
            f"start the server, or correct the port in {ENV_BASE_URL} (a self-hosted jawn "
            f"listens on {JAWN_DEFAULT_PORT} unless its PORT setting says otherwise).",
        ) from None
    except TimeoutError:
        raise report.fail(
            f"no response from {target.address} within {timeout:g} s: the host is down, or a "
            "firewall drops the connection.",
            f"check that this machine may reach {target.address}.",
        ) from None
    except OSError as error:
        raise report.fail(
            f"could not connect to {target.address}: {error.strerror or error}.",
            f"check the host and port in {ENV_BASE_URL} and the network.",
        ) from None
    report.ok(f"{target.address} accepts connections.")


def check_tls(settings: Settings, target: Target, timeout: float, report: Report) -> None:
    report.step(f"TLS: does {target.address} complete a TLS handshake?")
    # httpx's context, so the trust store is the one the exporter uses (certifi, or SSL_CERT_FILE).
    context = httpx.create_ssl_context()
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=target.host) as tls,
        ):
            version = tls.version()
    except ssl.SSLCertVerificationError as error:
        raise report.fail(
            f"the server's certificate is not trusted: {error.verify_message}.",
            "if a proxy or a private CA signs it, point SSL_CERT_FILE at that CA's "
            "certificate bundle; otherwise check the host name in the URL.",
        ) from None
    except (ssl.SSLError, OSError) as error:
        if speaks_plain_http(target, timeout):
            if settings.log_url is not None:
                setting, url = ENV_LOG_URL, settings.log_url
            else:
                setting, url = ENV_BASE_URL, settings.base_url
            raise report.fail(
                f"{target.address} speaks plain HTTP, not TLS, so https:// cannot work there "
                f"(a self-hosted jawn on port {JAWN_DEFAULT_PORT} serves plain HTTP).",
                f"use http:// in the URL: {setting}={url.replace('https://', 'http://', 1)}.",
            ) from None
        raise report.fail(
            f"the TLS handshake with {target.address} failed: {error}.",
            "check that the port serves HTTPS, and that no proxy intercepts the connection.",
        ) from None
    report.ok(f"TLS handshake completed ({version}).")


def speaks_plain_http(target: Target, timeout: float) -> bool:
    """Send one plain HTTP request and return whether an HTTP response comes back."""
    request = f"HEAD / HTTP/1.0\r\nHost: {target.address}\r\n\r\n".encode()
    reply = b""
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as sock:
            sock.sendall(request)
            while len(reply) < 5:
                chunk = sock.recv(5 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/")
