"""The background exporter: a bounded queue, daemon threads that deliver, and an optional spool.

`submit()` runs on the caller's thread for every handled request. It does not wait for
delivery, raise, serialize or touch the disk: it appends the ended span to a deque, or hands it
to the spool writer thread, or drops and counts it. Waking an idle thread takes a lock only for
a moment. The exceptions are the first record, which starts the threads, and a drop, which logs
one rate-limited warning.

Threads, all daemons, so a hung Helicone never keeps the interpreter alive:

- workers (`workers` of them) assemble each record from its span, trim it to the server's
  size limit (`_trim`) and post it with one shared `httpx.Client`, or append it to the local
  file when no API key is set. Failures pass through the endpoint gate (`_retry`): after a
  retryable failure nobody posts until the backoff has passed, then one probe goes first.
  A record that fails `retry_max_attempts` times is spooled, or dropped without a spool.
- the spool writer (with `spool_dir` only) assembles and spools the records that found the
  queue full, so the caller's thread never touches the disk.
- replayers (with `spool_dir` only) deliver the spool's records (`_replay`): when the exporter
  starts, and after a delivery succeeds in a process that spooled records meanwhile.

Drop policy: when the queue holds `queue_size` records, the newest record is the one left out.
That keeps the caller's path to one length check (dropping the oldest would mean taking from
the deque that the workers take from), and the records already waiting are the ones closest
to delivery. With a spool, a record left out goes to the spool writer instead, whose own
backlog is bounded by `SPOOL_BACKLOG`; past that it is dropped and counted too. With a spool
and Helicone failing (the endpoint gate closed), the queue holds at most `OUTAGE_QUEUE_SIZE`
records and the rest go to disk, where they survive a crash and take no memory; the spool
writer also moves queued records beyond that size to disk.

Deadlines: `flush()` waits for records to be delivered, written, spooled or dropped, at most
until its deadline. `shutdown()` delivers until shortly before its deadline, keeping enough
time to spool what is left (or drops it without a spool), and returns by the deadline even when
a POST hangs: the record of a hanging POST is spooled, so it may arrive twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from heliconetrace._config import Settings
from heliconetrace._delivery import Delivery
from heliconetrace._diagnostics import (
    info_once,
    internal_error,
    logger,
    raise_internal_errors,
    report_limited,
)
from heliconetrace._endpoint import resolve_endpoint
from heliconetrace._queue import Job, Queues, Tracker
from heliconetrace._replay import Replayer
from heliconetrace._retry import IDLE_WAIT, Gatekeeper
from heliconetrace._spool import SpoolWriter, spool_supported
from heliconetrace._stats import (
    DROP_EXPORTER_CLOSED,
    DROP_QUEUE_FULL,
    DROP_SHUTDOWN_DEADLINE,
    DROP_SPOOL_BACKLOG,
    DROP_WORKER_ERROR,
    Counters,
    ExporterStats,
)
from heliconetrace._transport import Transport

if TYPE_CHECKING:
    from heliconetrace._span import Span

__all__ = ["Exporter"]

# Records waiting for the spool writer, a buffer for bursts. 1,000 ended spans of a small chat
# request take about 2 MB (measured as RSS by benchmarks/bench_delivery.py).
SPOOL_BACKLOG: Final = 1000
# With a spool, the queue's size while Helicone fails: enough to keep the workers busy when it
# recovers, while the records beyond wait on disk for the replay.
OUTAGE_QUEUE_SIZE: Final = 1000
# Records the spool writer, and shutdown, assemble before writing them with one write(2).
SPOOL_BATCH: Final = 64
# Replay threads. Each replays whole segments, so two replay a backlog of several segments
# twice as fast while leaving the workers most of the connections.
REPLAY_THREADS: Final = 2
# Time kept back at shutdown to spool what is left: a fixed part plus a part per record. The
# part per record is an estimate, above the 60 microseconds that assembling a small chat
# record takes; the reserve never passes half the timeout.
SPOOL_RESERVE_FIXED: Final = 0.05
SPOOL_RESERVE_PER_RECORD: Final = 100e-6
# How long shutdown waits for threads to notice the stop, once the rest is settled.
JOIN_GRACE: Final = 0.2
# How often shutdown checks, while it waits for delivery, whether the gate stays shut.
DELIVERY_POLL: Final = 0.05


def _open_spool(settings: Settings) -> SpoolWriter | None:
    if settings.spool_dir is None or not settings.sends_to_helicone:
        return None
    if not spool_supported():
        info_once(
            "spool-unsupported",
            "heliconetrace cannot spool on this platform (no flock); undeliverable records "
            "are dropped and counted",
            spool_dir=str(settings.spool_dir),
        )
        return None
    return SpoolWriter(settings.spool_dir, settings.spool_max_bytes)


class Exporter:
    """Deliver records in the background for one set of settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue_size = settings.queue_size
        self._outage_queue_size = settings.queue_size
        self._worker_count = settings.workers
        self._queues = queues = Queues()
        # The caller's path reads these often, so they are kept at hand.
        self._pending = queues.pending
        self._overflow = queues.overflow
        self._gatekeeper = Gatekeeper(queues.wake, settings.retry_max_backoff)
        self._gate = self._gatekeeper.gate
        # For log lines about the queue; records of other providers may go to another path.
        self._endpoint_url = resolve_endpoint(settings.base_url, settings.log_url, None).url
        self._tracker = Tracker()
        self._counters = Counters()

        # Thread lifecycle, guarded by `_lock`.
        self._lock = threading.RLock()
        self._closed = False
        self._started = False
        self._threads: list[threading.Thread] = []
        self._alive_workers = 0
        self._spool_writer_alive = False
        self._replayers_alive = 0
        self._replay_generation = 0

        self._transport = (
            Transport(settings, settings.workers + REPLAY_THREADS)
            if settings.sends_to_helicone
            else None
        )
        self._spool = _open_spool(settings)
        if self._spool is not None:
            self._outage_queue_size = min(settings.queue_size, OUTAGE_QUEUE_SIZE)

        self._delivery = Delivery(
            settings,
            queues,
            self._tracker,
            self._counters,
            self._gatekeeper,
            self._transport,
            self._spool,
            self._request_replay,
        )
        self._replayer: Replayer | None = None
        if self._spool is not None and self._transport is not None:
            self._replayer = Replayer(
                settings, self._spool.directory, self._transport, self._gatekeeper, self._counters
            )

    # The caller's side

    def submit(self, span: Span) -> bool:
        """Queue an ended span for delivery; return False when it was dropped instead."""
        if self._closed:
            self._counters.drop(DROP_EXPORTER_CLOSED, accepted=1)
            report_limited(
                "exporter-closed", "heliconetrace dropped a record: the exporter is shut down"
            )
            return False

        # NOTE: the length check and the append are not one atomic step, so producers racing
        # on a nearly full queue can overshoot queue_size by at most one record each.
        limit = self._outage_queue_size if self._gate.failures else self._queue_size
        if len(self._pending) >= limit:
            return self._overflow_or_drop(span)

        # The tracker's count doubles as the count of records accepted into the queue.
        self._pending.append((self._tracker.start(), span))
        if self._alive_workers < self._worker_count:
            self._start_threads()
        elif self._queues.idle_workers:
            with self._queues.wake:
                self._queues.wake.notify()
        return True

    def _overflow_or_drop(self, span: Span) -> bool:
        if self._spool is not None and len(self._overflow) < SPOOL_BACKLOG:
            self._overflow.append((self._tracker.start(), span))
            if not self._spool_writer_alive:
                self._start_threads()
            elif self._queues.spool_writer_idle:
                with self._queues.spool_wake:
                    self._queues.spool_wake.notify()
            return True

        reason = DROP_QUEUE_FULL if self._spool is None else DROP_SPOOL_BACKLOG
        self._counters.drop(reason, accepted=1)
        if self._spool is None:
            fix = (
                "set HELICONETRACE_SPOOL_DIR to keep such records on disk, raise "
                "HELICONETRACE_QUEUE_SIZE, or check that Helicone responds"
            )
        else:
            fix = (
                "records arrive faster than the spool writer stores them; for bursts while "
                "Helicone is up, raise HELICONETRACE_QUEUE_SIZE"
            )
        report_limited(
            f"queue-full:{reason}",
            "heliconetrace dropped a record because its queue is full; Helicone is slow or "
            "down, or records come faster than it takes them",
            reason=reason,
            endpoint=self._endpoint_url,
            queue_size=self._queue_size,
            fix=fix,
        )
        return False

    def flush(self, timeout: float) -> bool:
        """Wait until every record submitted before this call is finished (delivered, written,
        failed, spooled or dropped). Return False if the deadline came first."""
        deadline = time.monotonic() + max(0.0, timeout)
        return self._tracker.wait(self._tracker.last_started, deadline)

    def stats(self) -> ExporterStats:
        return self._counters.snapshot(
            queue_depth=self._tracker.open_count, queued_total=self._tracker.last_started
        )

    # Threads

    def _start_threads(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            while self._alive_workers < self._worker_count:
                self._spawn(self._run_worker, "worker")
                self._alive_workers += 1
            if self._spool is not None and not self._spool_writer_alive:
                self._spawn(self._run_spool_writer, "spool-writer")
                self._spool_writer_alive = True
            if not self._started:
                self._started = True
                if self._replayer is not None:
                    self._request_replay()

    def _spawn(self, target: Callable[[], None], role: str) -> None:
        thread = threading.Thread(
            target=target, name=f"heliconetrace-{role}-{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _thread_died(self, role: str, error: BaseException, job: Job | None) -> None:
        """Put the record in hand back, and log the death once; the next record restarts it."""
        if job is not None and self._queues.claim(job):
            self._queues.requeue(job)
            self._gatekeeper.release(job.epoch)
        report_limited(
            f"thread-died:{role}",
            f"a heliconetrace {role} thread stopped after an unexpected error; the next record "
            "starts a new one",
            error_type=type(error).__name__,
            error=str(error)[:200],
        )

    def _run_worker(self) -> None:
        job: Job | None = None
        try:
            while True:
                job = self._take_job()
                if job is None:
                    return
                self._delivery.process(job)
                job = None
        except BaseException as error:
            self._thread_died("worker", error, job)
            if raise_internal_errors() and isinstance(error, Exception):
                raise
        finally:
            with self._lock:
                self._alive_workers -= 1

    def _take_job(self) -> Job | None:
        """Return the next job once the gate lets it go, waiting while there is none; None
        when stopping."""
        queues = self._queues
        gate = self._gatekeeper.gate
        with queues.wake:
            while True:
                if self._gatekeeper.stopping:
                    return None
                wait = gate.seconds_until_turn(time.monotonic())
                if wait != 0.0:
                    queues.wake.wait(IDLE_WAIT if wait is None else wait)
                    continue
                job = self._pop_queued()
                if job is not None:
                    job.epoch = gate.take_turn()
                    queues.in_flight[job.number] = job
                    return job
                # A producer that appends after this point finds the idle count raised and notifies.
                queues.idle_workers += 1
                try:
                    if not queues.pending and not queues.retrying:
                        queues.wake.wait(IDLE_WAIT)
                finally:
                    queues.idle_workers -= 1

    def _pop_queued(self) -> Job | None:
        if self._queues.retrying:
            return self._queues.retrying.popleft()
        try:
            number, span = self._pending.popleft()
        except IndexError:
            return None
        return Job(number, span)

    def _run_spool_writer(self) -> None:
        batch: list[tuple[int, Span]] = []
        try:
            while True:
                batch = self._next_overflow_batch()
                if not batch:
                    return
                self._delivery.spool_spans([span for _, span in batch])
                for number, _ in batch:
                    self._tracker.finish(number)
                batch = []
        except BaseException as error:
            if batch:
                self._counters.drop(DROP_WORKER_ERROR, len(batch))
                for number, _ in batch:
                    self._tracker.finish(number)
            self._thread_died("spool writer", error, None)
            if raise_internal_errors() and isinstance(error, Exception):
                raise
        finally:
            with self._lock:
                self._spool_writer_alive = False

    def _next_overflow_batch(self) -> list[tuple[int, Span]]:
        """Return up to SPOOL_BATCH records to spool, waiting while there is none; an empty
        list when stopping. Records beyond OUTAGE_QUEUE_SIZE in the queue count too while the
        gate is closed."""
        queues = self._queues
        while True:
            batch: list[tuple[int, Span]] = []
            while len(batch) < SPOOL_BATCH:
                try:
                    batch.append(self._overflow.popleft())
                except IndexError:
                    break
            while (
                len(batch) < SPOOL_BATCH
                and self._gate.failures
                and len(self._pending) > self._outage_queue_size
            ):
                try:
                    batch.append(self._pending.popleft())
                except IndexError:
                    break
            if batch:
                return batch
            with queues.spool_wake:
                if self._gatekeeper.stopping:
                    return []
                queues.spool_writer_idle = True
                try:
                    if not self._overflow:
                        queues.spool_wake.wait(IDLE_WAIT)
                finally:
                    queues.spool_writer_idle = False

    # Replay

    def _request_replay(self) -> None:
        with self._lock:
            self._replay_generation += 1
            while self._replayers_alive < REPLAY_THREADS and not self._closed:
                self._spawn(self._run_replayer, "replayer")
                self._replayers_alive += 1

    def _run_replayer(self) -> None:
        assert self._replayer is not None
        try:
            while True:
                with self._lock:
                    generation = self._replay_generation
                self._replayer.run_pass()
                with self._lock:
                    if self._gatekeeper.stopping or generation == self._replay_generation:
                        return
        except BaseException as error:
            self._thread_died("replayer", error, None)
            if raise_internal_errors() and isinstance(error, Exception):
                raise
        finally:
            with self._lock:
                self._replayers_alive -= 1

    # Stopping

    def shutdown(self, timeout: float) -> bool:
        """Stop taking records, deliver what is queued until shortly before the deadline, spool
        the rest (or drop it without a spool), and stop the threads.

        Return True when no record had to be dropped at the deadline.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._closed:
                # A second call, or one from a signal handler during the first: do not wait.
                return self._tracker.open_count == 0
            self._closed = True
            threads = list(self._threads)

        self._wait_for_delivery(deadline - self._spool_reserve(timeout))
        self._gatekeeper.stop()
        with self._queues.spool_wake:
            self._queues.spool_wake.notify_all()
        finished = self._settle_leftovers_by(self._take_leftovers(), deadline)

        grace_end = min(deadline, time.monotonic() + JOIN_GRACE)
        for thread in threads:
            thread.join(max(0.0, grace_end - time.monotonic()))
        if self._spool is not None:
            self._seal_spool(deadline)
        if self._transport is not None and not any(thread.is_alive() for thread in threads):
            self._transport.close()
        self._log_stopped(finished=finished)
        return finished

    def _seal_spool(self, deadline: float) -> None:
        """Close the spool's segment with an fsync, waiting for it at most until the deadline:
        on a busy disk fsync can take seconds. Written records are safe from a process exit
        either way; the fsync guards against power loss."""
        assert self._spool is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._spool.seal(fsync=False)
            return
        syncer = threading.Thread(
            target=self._spool.seal, name="heliconetrace-spool-sync", daemon=True
        )
        syncer.start()
        syncer.join(remaining)

    def _spool_reserve(self, timeout: float) -> float:
        if self._spool is None:
            return 0.0
        estimate = SPOOL_RESERVE_FIXED + self._tracker.open_count * SPOOL_RESERVE_PER_RECORD
        return min(timeout / 2, estimate)

    def _wait_for_delivery(self, deliver_by: float) -> None:
        """Wait for the queued records and a running replay until `deliver_by`, or until it is
        clear that the gate stays shut past it. A short-lived process thus drains the spool
        left by an earlier one, within its own shutdown_timeout."""
        last = self._tracker.last_started
        while True:
            now = time.monotonic()
            if now >= deliver_by or self._gatekeeper.paused_past(deliver_by):
                return
            if self._tracker.wait(last, min(deliver_by, now + DELIVERY_POLL)):
                if not self._replayers_alive:
                    return
                time.sleep(min(DELIVERY_POLL, max(0.0, deliver_by - time.monotonic())))

    def _take_leftovers(self) -> list[Job]:
        queues = self._queues
        with queues.wake:
            jobs = list(queues.in_flight.values())
            queues.in_flight.clear()
            jobs.extend(queues.retrying)
            queues.retrying.clear()
            while self._pending:
                number, span = self._pending.popleft()
                jobs.append(Job(number, span))
        while True:
            try:
                number, span = self._overflow.popleft()
            except IndexError:
                return jobs
            jobs.append(Job(number, span))

    def _settle_leftovers_by(self, jobs: list[Job], deadline: float) -> bool:
        """Spool or drop the jobs left at shutdown; True when none was dropped.

        The disk writes run on a helper thread that this one waits for only until the
        deadline: on a busy disk a rename or write(2) can stall for seconds, and exit must not.
        """
        if not jobs:
            return True
        if self._spool is None:
            return self._settle_leftovers(jobs, deadline) == 0
        dropped: list[int] = []
        helper = threading.Thread(
            target=lambda: dropped.append(self._settle_leftovers(jobs, deadline)),
            name="heliconetrace-shutdown-spool",
            daemon=True,
        )
        helper.start()
        helper.join(max(0.0, deadline - time.monotonic()))
        return dropped == [0]

    def _settle_leftovers(self, jobs: list[Job], deadline: float) -> int:
        """Spool the jobs, a batch at a time, until the deadline and drop the rest; return the
        count dropped."""
        dropped = 0
        for first in range(0, len(jobs), SPOOL_BATCH):
            batch = jobs[first : first + SPOOL_BATCH]
            try:
                if self._spool is not None and time.monotonic() < deadline:
                    self._spool_jobs(batch)
                else:
                    self._counters.drop(DROP_SHUTDOWN_DEADLINE, len(batch))
                    dropped += len(batch)
            except Exception as error:
                self._counters.drop(DROP_WORKER_ERROR, len(batch))
                internal_error("exporter.shutdown", error)
            finally:
                for job in batch:
                    self._tracker.finish(job.number)
        return dropped

    def _spool_jobs(self, jobs: list[Job]) -> None:
        envelopes = [job.envelope for job in jobs if job.envelope is not None]
        spans = [job.span for job in jobs if job.envelope is None and job.span is not None]
        if envelopes:
            self._delivery.spool_envelopes(envelopes)
        if spans:
            self._delivery.spool_spans(spans)

    def _log_stopped(self, *, finished: bool) -> None:
        stats = self.stats()
        if not stats.accepted and not stats.replayed:
            return
        fields: dict[str, object] = {}
        if stats.dropped_by_reason:
            fields["dropped_by_reason"] = stats.dropped_by_reason
        if stats.replayed:
            fields["replayed"] = stats.replayed
        # A warning when records were lost, so a WARNING-level logging setup still shows it.
        log = logger.warning if stats.dropped else logger.info
        log(
            "heliconetrace exporter stopped",
            delivered=stats.delivered,
            written_locally=stats.written_locally,
            spooled=stats.spooled,
            failed=stats.failed,
            dropped=stats.dropped,
            finished_in_time=finished,
            **fields,
        )

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's files; the child never uses this exporter."""
        self._closed = True
        if self._spool is not None:
            self._spool.forget_after_fork()
        if self._replayer is not None:
            self._replayer.forget_after_fork()
