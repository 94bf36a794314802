"""os.fork() in real subprocesses: the child delivers through its own threads and connections,
the parent carries on, nothing deadlocks on a lock held at the fork, and a shared spool is
delivered once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from heliconetrace._spool import count_records
from tests.conftest import TEST_KEY
from tests.receiver import HeliconeReceiver

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")


def run_python(script: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=90,
        env=environment,
        input=stdin,
    )


def users(receiver: HeliconeReceiver) -> list[str]:
    return sorted(
        record["providerRequest"]["meta"]["Helicone-User-Id"] for record in receiver.records
    )


def port_of(receiver: HeliconeReceiver, user: str) -> int:
    for request in receiver.requests:
        if request.json()["providerRequest"]["meta"]["Helicone-User-Id"] == user:
            return request.client_port
    raise AssertionError(f"no request from {user}")


class TestForkedChild:
    def test_child_has_own_connection(self, receiver: HeliconeReceiver) -> None:
        """The child posts over a connection of its own; the parent keeps using its kept-alive
        connection before and after."""
        script = f"""
            import os
            import heliconetrace
            from heliconetrace import helicone_span

            heliconetrace.configure(api_key={TEST_KEY!r}, log_url={receiver.url + "/oai/v1/log"!r}, workers=1)
            with helicone_span(user="parent-before"):
                pass
            assert heliconetrace.flush(10)
            pid = os.fork()
            if pid == 0:
                with helicone_span(user="child"):
                    pass
                os._exit(0 if heliconetrace.flush(10) else 3)
            _, status = os.waitpid(pid, 0)
            with helicone_span(user="parent-after"):
                pass
            assert heliconetrace.flush(10)
            raise SystemExit(os.waitstatus_to_exitcode(status))
            """
        result = run_python(script)
        assert result.returncode == 0, result.stderr
        receiver.wait_for(3)
        assert users(receiver) == ["child", "parent-after", "parent-before"]
        assert port_of(receiver, "parent-before") == port_of(receiver, "parent-after")
        assert port_of(receiver, "child") != port_of(receiver, "parent-before")
        assert len(receiver.records) == 3

    def test_fork_during_delivery(self, receiver: HeliconeReceiver) -> None:
        """Forking while the parent's workers are in the middle of POSTs leaves neither side
        stuck: both deliver all their records."""
        receiver.mode = "slow"
        receiver.delay = 0.5
        script = f"""
            import os
            import heliconetrace
            from heliconetrace import helicone_span

            heliconetrace.configure(api_key={TEST_KEY!r}, log_url={receiver.url + "/oai/v1/log"!r})
            for index in range(4):
                with helicone_span(user=f"parent-{{index}}"):
                    pass
            children = []
            for number in range(3):
                pid = os.fork()
                if pid == 0:
                    with helicone_span(user=f"child-{{number}}"):
                        pass
                    os._exit(0 if heliconetrace.flush(20) else 3)
                children.append(pid)
            codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
            assert heliconetrace.flush(20)
            raise SystemExit(max(codes))
            """
        result = run_python(script)
        assert result.returncode == 0, result.stderr
        receiver.wait_for(7)
        assert users(receiver) == [
            "child-0",
            "child-1",
            "child-2",
            "parent-0",
            "parent-1",
            "parent-2",
            "parent-3",
        ]
        assert len(receiver.records) == 7

    def test_lock_held_at_fork(self, receiver: HeliconeReceiver) -> None:
        """A fork while another thread holds the span module's request-id lock does not leave
        the child's copy locked: the child still makes request ids and delivers."""
        script = f"""
            import os
            import signal
            import threading
            import time
            import heliconetrace
            from heliconetrace import _span, helicone_span

            heliconetrace.configure(api_key={TEST_KEY!r}, log_url={receiver.url + "/oai/v1/log"!r})
            held = threading.Event()

            def hold_lock():
                with _span._REQUEST_ID_LOCK:
                    held.set()
                    time.sleep(0.3)

            threading.Thread(target=hold_lock).start()
            held.wait()
            pid = os.fork()
            if pid == 0:
                signal.alarm(20)  # a deadlocked child dies instead of hanging the test
                with helicone_span(user="child") as span:
                    span.request_id
                os._exit(0 if heliconetrace.flush(10) else 3)
            _, status = os.waitpid(pid, 0)
            raise SystemExit(os.waitstatus_to_exitcode(status))
            """
        result = run_python(script)
        assert result.returncode == 0, result.stderr
        receiver.wait_for(1)
        assert users(receiver) == ["child"]


class TestSharedSpool:
    def test_spool_delivered_once(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """Records the parent spooled are delivered once, by the parent, although forked
        children start exporters with the same spool directory; each child delivers its own."""
        spool = tmp_path / "spool"
        receiver.mode = "500"
        script = f"""
            import os
            import sys
            import time
            import heliconetrace
            from heliconetrace import helicone_span

            heliconetrace.configure(
                api_key={TEST_KEY!r},
                log_url={receiver.url + "/oai/v1/log"!r},
                spool_dir={str(spool)!r},
                retry_max_attempts=1,
                retry_max_backoff=0.05,
            )
            for index in range(5):
                with helicone_span(user=f"spooled-{{index}}"):
                    pass
            assert heliconetrace.flush(10)
            assert heliconetrace.stats().spooled == 5
            print("spooled", flush=True)
            sys.stdin.readline()  # the test switches the receiver to ok

            children = []
            for number in range(3):
                pid = os.fork()
                if pid == 0:
                    with helicone_span(user=f"child-{{number}}"):
                        pass
                    ok = heliconetrace.flush(10)
                    time.sleep(3)  # alive while the parent replays its spool
                    os._exit(0 if ok else 3)
                children.append(pid)

            with helicone_span(user="parent"):
                pass
            assert heliconetrace.flush(10)
            deadline = time.monotonic() + 2.5
            while heliconetrace.stats().replayed < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            # One write, so that a log line of another thread cannot split it.
            sys.stdout.write("replayed %d\\n" % heliconetrace.stats().replayed)
            sys.stdout.flush()
            codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
            raise SystemExit(max(codes))
            """
        environment = {**os.environ, "PYTHONPATH": str(ROOT)}
        environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        assert process.stdin is not None and process.stdout is not None
        while True:
            line = process.stdout.readline()
            assert line, process.communicate(timeout=10)[1]
            if line.startswith("spooled"):
                break
        receiver.mode = "ok"
        stdout, stderr = process.communicate("go\n", timeout=60)
        assert process.returncode == 0, stderr
        assert "replayed 5" in stdout.splitlines()
        receiver.wait_for(9)
        expected = [
            "child-0",
            "child-1",
            "child-2",
            "parent",
            *(f"spooled-{index}" for index in range(5)),
        ]
        assert users(receiver) == sorted(expected)
        assert len(receiver.records) == 9
        assert count_records(spool) == 0
