"""Settings: every default, its environment variable and the reason for it, in one place.

`configure()` arguments override the environment, and the environment overrides the defaults.
The environment is read again on every `configure()` call, and once on first use when
`configure()` was never called.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from heliconetrace._diagnostics import logger
from heliconetrace._errors import ConfigurationError

# The cloud worker host is Helicone's documented manual-logger endpoint. Nothing is sent there
# unless an API key is configured: without one, records go to the local sink.
DEFAULT_BASE_URL: Final = "https://api.worker.helicone.ai"

# A per-user state directory, so records survive between runs and never land in a project tree.
DEFAULT_LOG_FILE_NAME: Final = "records.jsonl"

# Enough to ride out a Helicone outage of a few minutes at tens of requests per second, while
# capping memory at roughly queue_size times the record size.
DEFAULT_QUEUE_SIZE: Final = 10_000

# Helicone's worker responds in well under a second; ten seconds covers a self-hosted jawn that
# writes to its database inline before responding.
DEFAULT_REQUEST_TIMEOUT: Final = 10.0

# An exit that waits longer than a few seconds looks like a hang to users and to supervisors.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 3.0

# One POST per record and no batch endpoint, so a few connections in parallel keep up with a
# busy service without opening a connection per request.
DEFAULT_WORKERS: Final = 4

# A record is given up (spooled, or dropped without a spool) after this many failed attempts.
# Backoff is shared by the whole endpoint, so only the record that probes a failing Helicone
# spends attempts, and the rest of the queue waits. Five attempts ride out minutes of outage.
DEFAULT_RETRY_MAX_ATTEMPTS: Final = 5

# The cap of the exponential backoff between attempts, which starts at 0.5 s and doubles.
# Probing at most every 30 s notices a recovery within half a minute, and sends a down server
# two requests a minute.
DEFAULT_RETRY_MAX_BACKOFF: Final = 30.0

# Hours of records of a busy service (about 130,000 records of 2 KB), and little next to the
# free space of a server's disk.
DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024

# The smallest spool that fits a few records; smaller values are a typo more often than not.
MIN_SPOOL_MAX_BYTES: Final = 4096

ENV_API_KEY: Final = "HELICONE_API_KEY"
ENV_BASE_URL: Final = "HELICONE_BASE_URL"
ENV_LOG_URL: Final = "HELICONETRACE_LOG_URL"
ENV_ENABLED: Final = "HELICONETRACE_ENABLED"
ENV_LOG_FILE: Final = "HELICONETRACE_LOG_FILE"
ENV_QUEUE_SIZE: Final = "HELICONETRACE_QUEUE_SIZE"
ENV_REQUEST_TIMEOUT: Final = "HELICONETRACE_REQUEST_TIMEOUT"
ENV_SHUTDOWN_TIMEOUT: Final = "HELICONETRACE_SHUTDOWN_TIMEOUT"
ENV_WORKERS: Final = "HELICONETRACE_WORKERS"
ENV_RETRY_MAX_ATTEMPTS: Final = "HELICONETRACE_RETRY_MAX_ATTEMPTS"
ENV_RETRY_MAX_BACKOFF: Final = "HELICONETRACE_RETRY_MAX_BACKOFF"
ENV_SPOOL_DIR: Final = "HELICONETRACE_SPOOL_DIR"
ENV_SPOOL_MAX_BYTES: Final = "HELICONETRACE_SPOOL_MAX_BYTES"

_FALSE_WORDS: Final = frozenset({"0", "false", "off", "no"})
_TRUE_WORDS: Final = frozenset({"1", "true", "on", "yes"})


def default_log_file() -> Path:
    """Return the default local sink path: `$XDG_STATE_HOME/heliconetrace/records.jsonl`.

    `XDG_STATE_HOME` defaults to `~/.local/state`, as the XDG base directory specification sets.
    """
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "heliconetrace" / DEFAULT_LOG_FILE_NAME


class Settings(BaseModel):
    """The resolved configuration. Immutable: `configure()` builds a new one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    log_url: str | None = None
    enabled: bool = True
    log_file: Path
    queue_size: int = DEFAULT_QUEUE_SIZE
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    workers: int = DEFAULT_WORKERS
    retry_max_attempts: int = DEFAULT_RETRY_MAX_ATTEMPTS
    retry_max_backoff: float = DEFAULT_RETRY_MAX_BACKOFF
    # None: no spool, so records that cannot be delivered are dropped and counted.
    spool_dir: Path | None = None
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES

    @property
    def sends_to_helicone(self) -> bool:
        """True when records go to Helicone, False when they go to the local sink."""
        return self.api_key is not None


# Setting name -> the environment variable that sets it.
_ENVIRONMENT: Final[dict[str, str]] = {
    "api_key": ENV_API_KEY,
    "base_url": ENV_BASE_URL,
    "log_url": ENV_LOG_URL,
    "enabled": ENV_ENABLED,
    "log_file": ENV_LOG_FILE,
    "queue_size": ENV_QUEUE_SIZE,
    "request_timeout": ENV_REQUEST_TIMEOUT,
    "shutdown_timeout": ENV_SHUTDOWN_TIMEOUT,
    "workers": ENV_WORKERS,
    "retry_max_attempts": ENV_RETRY_MAX_ATTEMPTS,
    "retry_max_backoff": ENV_RETRY_MAX_BACKOFF,
    "spool_dir": ENV_SPOOL_DIR,
    "spool_max_bytes": ENV_SPOOL_MAX_BYTES,
}

SETTING_NAMES: Final = frozenset(_ENVIRONMENT)


def _invalid(name: str, shown: str, fix: str) -> ConfigurationError:
    source = f"{name} (environment variable {_ENVIRONMENT[name]})"
    return ConfigurationError(f"Invalid value {shown} for setting {source}: {fix}")


def _shown(name: str, value: object) -> str:
    """Quote a value for an error message, hiding the API key whatever its type."""
    if name == "api_key":
        return "<hidden>"
    return repr(value)


def _parse_enabled(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _FALSE_WORDS:
            return False
        if word in _TRUE_WORDS:
            return True
    raise _invalid("enabled", _shown("enabled", value), "use 1/true/on/yes or 0/false/off/no.")


def _parse_url(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(name, _shown(name, value), "give an http:// or https:// URL.")
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or url[-3:] == "://":
        raise _invalid(name, _shown(name, value), "give an http:// or https:// URL.")
    return url


def _parse_number(name: str, value: object, kind: type[int] | type[float], minimum: float) -> Any:
    try:
        number = kind(value) if isinstance(value, (str, int, float)) else None
    except ValueError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        word = "a whole number" if kind is int else "a number of seconds"
        raise _invalid(name, _shown(name, value), f"use {word} of at least {minimum}.")
    return number


def _parse(name: str, value: object) -> object:
    """Check and convert one setting, raising `ConfigurationError` that names it and the fix."""
    if name == "api_key":
        if value is None:
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str) or not text.strip():
            raise _invalid(name, "<hidden>", "give the Helicone API key as a non-empty string.")
        return SecretStr(text.strip())
    if name in ("base_url", "log_url"):
        return None if value is None and name == "log_url" else _parse_url(name, value)
    if name == "enabled":
        return _parse_enabled(value)
    if name == "log_file":
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise _invalid(name, _shown(name, value), "give a file path.")
        return Path(os.path.expanduser(str(value)))
    if name == "spool_dir":
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            fix = "give a directory path, or None for no spool."
            raise _invalid(name, _shown(name, value), fix)
        return Path(os.path.expanduser(str(value)))
    if name in ("queue_size", "workers", "retry_max_attempts"):
        return _parse_number(name, value, int, 1)
    if name == "spool_max_bytes":
        return _parse_number(name, value, int, MIN_SPOOL_MAX_BYTES)
    return _parse_number(name, value, float, 0.0)


def resolve(overrides: dict[str, object], *, lenient: bool = False) -> Settings:
    """Build settings from the environment, then `overrides` on top of it.

    An environment variable whose setting is in `overrides` is not read at all. With `lenient`,
    an invalid environment variable is logged and left out instead of raising: that is how
    settings are resolved on first use inside a handler, which must not fail because of them.
    """
    unknown = sorted(set(overrides) - SETTING_NAMES)
    if unknown:
        valid = ", ".join(sorted(SETTING_NAMES))
        raise ConfigurationError(f"Unknown setting {unknown[0]!r}; valid settings are: {valid}.")

    values: dict[str, object] = {"log_file": default_log_file()}
    for name, variable in _ENVIRONMENT.items():
        text = os.environ.get(variable)
        if name in overrides or text is None or not text.strip():
            continue
        try:
            values[name] = _parse(name, text)
        except ConfigurationError as error:
            if not lenient:
                raise
            logger.error(
                "heliconetrace ignored an invalid environment variable and uses the default",
                variable=variable,
                error=str(error),
            )
    for name, value in overrides.items():
        values[name] = _parse(name, value)

    try:
        return Settings.model_validate(values)
    except ValidationError as error:  # pragma: no cover - _parse already checked every field
        raise ConfigurationError(f"Invalid settings: {error.error_count()} errors") from None


class SettingsHolder:
    """The process-wide settings, resolved lazily on first use."""

    def __init__(self) -> None:
        # Reentrant, so that shutdown() in a signal handler cannot deadlock on a lock that the
        # interrupted code of the same thread holds.
        self._lock = threading.RLock()
        self._settings: Settings | None = None

    def get(self) -> Settings:
        settings = self._settings
        if settings is None:
            with self._lock:
                if self._settings is None:
                    self._settings = resolve({}, lenient=True)
                settings = self._settings
        return settings

    def replace(self, settings: Settings) -> None:
        with self._lock:
            self._settings = settings

    def after_fork_in_child(self) -> None:
        """Replace the lock, which another thread of the parent may have held at the fork."""
        self._lock = threading.RLock()


SETTINGS: Final = SettingsHolder()
