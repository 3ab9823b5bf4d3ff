"""One driver per job: the lease in the job store, on SQLite and on a real redis-server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from pipeline.jobstate import RedisJobStore, SQLiteJobStore
from pipeline.lease import DriverLease, LeaseHeldError, LeaseLostError


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteJobStore(tmp_path / "jobs.sqlite")
    else:
        s = RedisJobStore(request.getfixturevalue("redis_server").url, reconnect_timeout_s=5)
    yield s
    s.close()


def test_one_holder_renewal_release_and_expiry(store):
    assert store.acquire_lease("j", "driver-a", 30) == ("driver-a", 30)
    holder, left = store.acquire_lease("j", "driver-b", 30)
    assert holder == "driver-a" and 25 < left <= 30
    assert store.acquire_lease("j", "driver-a", 30)[0] == "driver-a"        # its own: extended
    assert store.renew_lease("j", "driver-a", 30) and not store.renew_lease("j", "driver-b", 30)
    store.release_lease("j", "driver-b")                                    # not its lease: no effect
    assert store.acquire_lease("j", "driver-b", 30)[0] == "driver-a"
    store.release_lease("j", "driver-a")
    assert store.acquire_lease("j", "driver-b", 0.3)[0] == "driver-b"
    time.sleep(0.5)                                                         # b died: its lease expires
    assert not store.renew_lease("j", "driver-b", 0.3)
    assert store.acquire_lease("j", "driver-c", 30)[0] == "driver-c"
    assert store.acquire_lease("other-job", "driver-b", 30)[0] == "driver-b"  # leases are per job


def test_drivers_started_together_get_one_lease(store):
    barrier = threading.Barrier(8)
    winners = []

    def race(name: str) -> None:
        barrier.wait()
        if store.acquire_lease("j", name, 30)[0] == name:
            winners.append(name)

    threads = [threading.Thread(target=race, args=(f"driver-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


HOLD = """
import sys, time
from pipeline.jobstate import open_job_store
from pipeline.lease import DriverLease
lease = DriverLease(open_job_store(sys.argv[1], sys.argv[2]), "j", ttl_s=1.5, holder="doomed-driver")
lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_killed_driver_is_taken_over_once_its_lease_expires(store, tmp_path):
    url = store.url if isinstance(store, RedisJobStore) else ""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url, str(tmp_path / "jobs.sqlite")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(2.0)       # longer than its ttl: only its renewals keep it
        with pytest.raises(LeaseHeldError, match="doomed-driver"):
            DriverLease(store, "j", ttl_s=5).acquire()
        holder.kill()         # kill -9: no release, no more renewals
        holder.wait()
        killed_at = time.monotonic()
        with DriverLease(store, "j", ttl_s=5) as successor:
            successor.acquire(wait=True, poll_s=0.1)
            waited = time.monotonic() - killed_at
            assert store.acquire_lease("j", "someone-else", 5)[0] == successor.holder
    finally:
        holder.kill()
    assert waited < 2.5, waited
    assert store.acquire_lease("j", "someone-else", 5)[0] == "someone-else"   # released on exit


def test_a_driver_that_lost_its_lease_finds_out(store):
    lease = DriverLease(store, "j", ttl_s=0.6)
    lease.acquire()
    lease.check()
    store.release_lease("j", lease.holder)          # as if it expired while the driver was paused
    assert store.acquire_lease("j", "successor", 30)[0] == "successor"
    time.sleep(0.5)                                 # a renewal happens every ttl / 3
    with pytest.raises(LeaseLostError, match="lost job j"):
        lease.check()
    lease.release()
    assert store.acquire_lease("j", "third", 30)[0] == "successor"     # the loser does not release it
