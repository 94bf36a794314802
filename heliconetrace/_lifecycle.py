"""The process-wide exporter: created on first use, replaced by `configure()`, shut down at
interpreter exit within `shutdown_timeout`, and started over in a forked child."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any, Final

from heliconetrace import _diagnostics
from heliconetrace._config import SETTINGS, Settings
from heliconetrace._diagnostics import internal_error
from heliconetrace._exporter import Exporter
from heliconetrace._transport import CLIENT_CREATION_LOCK


class _ExporterHolder:
    """The process-wide exporter, created on first use and replaced by `configure()`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._exporter: Exporter | None = None
        # The exporter `shutdown()` stopped, kept so `stats()` can still report its counts.
        self.last_shut_down: Exporter | None = None

    def get(self) -> Exporter:
        exporter = self._exporter
        if exporter is None:
            with self._lock:
                if self._exporter is None:
                    self._exporter = Exporter(SETTINGS.get())
                    self.last_shut_down = None
                exporter = self._exporter
        return exporter

    def peek(self) -> Exporter | None:
        return self._exporter

    def replace(self, settings: Settings) -> Exporter | None:
        """Install settings; return the old exporter (the caller shuts it down)."""
        with self._lock:
            old, self._exporter = self._exporter, None
            self.last_shut_down = None
            SETTINGS.replace(settings)
        return old

    def after_fork_in_child(self) -> None:
        # The parent's threads do not exist in the child, and its locks may have been held at
        # the fork. So the child starts over with new ones, and leaves the parent's exporter
        # alone except for closing its copies of that exporter's files.
        self._lock = threading.RLock()
        old, self._exporter = self._exporter, None
        if old is not None:
            old.forget_after_fork()


EXPORTERS: Final = _ExporterHolder()


def get_exporter() -> Exporter:
    return EXPORTERS.get()


def _shutdown_at_exit() -> None:
    exporter = EXPORTERS.peek()
    if exporter is None:
        return
    try:
        exporter.shutdown(exporter.settings.shutdown_timeout)
    except Exception as error:
        internal_error("exporter.atexit", error)


class _ForkGuard:
    """Hold, across a fork, the locks that exporter threads take around work that must not be
    cut in half in the child: creating an HTTP client (see `CLIENT_CREATION_LOCK`) and reading
    a span's request id (the span module's lock).

    Held by the forking thread, such a lock cannot be held by another thread in the child's
    copy, where no thread would ever release it.
    """

    held: tuple[Any, ...] = ()

    def acquire(self) -> None:
        module = sys.modules.get("heliconetrace._span")
        request_id_lock = getattr(module, "_REQUEST_ID_LOCK", None)
        locks = [CLIENT_CREATION_LOCK]
        if request_id_lock is not None:
            locks.append(request_id_lock)
        for lock in locks:
            lock.acquire()
        self.held = tuple(locks)

    def release(self) -> None:
        locks, self.held = self.held, ()
        for lock in reversed(locks):
            lock.release()


_FORK_GUARD: Final = _ForkGuard()


def _after_fork_in_child() -> None:
    _FORK_GUARD.release()
    SETTINGS.after_fork_in_child()
    _diagnostics.after_fork_in_child()
    EXPORTERS.after_fork_in_child()


atexit.register(_shutdown_at_exit)
if hasattr(os, "register_at_fork"):
    # NOTE: structlog's PrintLogger guards each output file with a plain lock. A child forked
    # while another thread of the parent wrote a log line through it blocks on its first log
    # line. Routing structlog through the standard library's logging avoids that.
    os.register_at_fork(
        before=_FORK_GUARD.acquire,
        after_in_parent=_FORK_GUARD.release,
        after_in_child=_after_fork_in_child,
    )
