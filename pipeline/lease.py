"""One driver per job: a lease in the job store, renewed while the driver lives.

A driver takes the job's lease before it touches the job's state (creating it, resetting
rows a dead driver left running, claiming rows) and keeps it by renewing it every third of
its time-to-live from a background thread. A second driver for the same job finds the lease
held and stops with one line naming the holder (:class:`LeaseHeldError`), or, asked to wait,
polls until the lease is free. A driver that was killed stops renewing; once its lease has
expired the next driver takes the job over and resets the rows it left running.

A driver that cannot renew (its lease expired while it was paused, or the store lost its
data) finds out at its next :meth:`DriverLease.check` and stops with :class:`LeaseLostError`
instead of racing the driver that took over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from core.errors import BadInputError, TalkfarmError
from pipeline.jobstate import JobStore

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 30.0
"""Seconds a lease lives without renewal: how long a killed driver's job waits for a successor."""


class LeaseHeldError(BadInputError):
    """Another live driver holds the job (exit code 2: this run is refused)."""

    def __init__(self, job_id: str, holder: str, seconds_left: float):
        super().__init__(f"job {job_id} is already being run by driver {holder} (its lease runs "
                         f"{seconds_left:.0f} s more unless renewed); wait for it with --wait")
        self.holder = holder


class LeaseLostError(TalkfarmError):
    """This driver no longer holds its job's lease; it must stop."""


def driver_name() -> str:
    """Who a lease names: host, process id and a random tag (pids repeat across hosts and time)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DriverLease:
    """The lease on one job, held by this process; use as a context manager.

    Args:
        store: the job store (SQLite or Redis) holding the lease.
        job_id: the job.
        ttl_s: seconds the lease lives without renewal; renewed every ``ttl_s / 3``.
        holder: the name the lease carries (default :func:`driver_name`).
    """

    def __init__(self, store: JobStore, job_id: str, ttl_s: float = DEFAULT_TTL_S, holder: str | None = None):
        if ttl_s <= 0:
            raise ValueError("lease ttl_s must be > 0")
        self.store = store
        self.job_id = job_id
        self.ttl_s = ttl_s
        self.holder = holder or driver_name()
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread: threading.Thread | None = None

    def acquire(self, wait: bool = False, poll_s: float = 1.0,
                on_wait: Callable[[str, float], None] | None = None) -> None:
        """Take the lease, or raise :class:`LeaseHeldError`; with ``wait``, poll until it is free
        (``on_wait(holder, seconds_left)`` is called once, when the wait starts)."""
        told = False
        while True:
            holder, left = self.store.acquire_lease(self.job_id, self.holder, self.ttl_s)
            if holder == self.holder:
                break
            if not wait:
                raise LeaseHeldError(self.job_id, holder, left)
            if not told and on_wait is not None:
                on_wait(holder, left)
                told = True
            time.sleep(min(poll_s, max(0.05, left)))
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.job_id}", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        deadline = time.monotonic() + self.ttl_s
        while not self._stop.wait(self.ttl_s / 3):
            try:
                renewed = self.store.renew_lease(self.job_id, self.holder, self.ttl_s)
            except TalkfarmError as err:      # store unreachable: keep trying while the lease may live
                if time.monotonic() < deadline:
                    log.warning("renewing the lease on job %s failed (%s); retrying", self.job_id, err)
                    continue
                renewed, reason = False, f"the job store was unreachable for longer than the lease ({err})"
            else:
                reason = "its lease expired or was taken over (or the job store lost its data)"
            if renewed:
                deadline = time.monotonic() + self.ttl_s
                continue
            self._lost = reason
            return

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease was lost since it was taken."""
        if self._lost is not None:
            raise LeaseLostError(f"driver {self.holder} lost job {self.job_id}: {self._lost}; stopped")

    def release(self) -> None:
        """Stop renewing and give the lease up (best effort: an expired lease frees itself)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._lost is None:
            try:
                self.store.release_lease(self.job_id, self.holder)
            except TalkfarmError as err:
                log.warning("releasing the lease on job %s failed (%s); it expires by itself", self.job_id, err)

    def __enter__(self) -> "DriverLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
