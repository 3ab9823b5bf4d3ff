"""Job state on both backends: SQLite (embedded) and a real redis-server process."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time

import pytest

from core.errors import TransientError
from pipeline.jobstate import (
    ClaimedRequest,
    Finished,
    JobNotFoundError,
    RedisJobStore,
    RequestSpec,
    SQLiteJobStore,
    open_job_store,
)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteJobStore(tmp_path / "jobs.sqlite")
    else:
        server = request.getfixturevalue("redis_server")
        s = RedisJobStore(server.url, reconnect_timeout_s=5)
    yield s
    s.close()


def _statuses(store, job):
    return {r.request_id: r.status for r in store.request_states(job)}


def test_priorities_and_claims(store):
    added = store.create_job("job1", [("a", "ra", 0), ("b", "rb", 5), RequestSpec("c", "rc", 0), ("d", None, 5)],
                             {"owner": "nightly"})
    assert added == 4
    assert store.claim_next("job1", 3) == ["b", "d", "a"]  # priority desc, then submission order
    st = store.job_status("job1")
    assert st.counts == {"pending": 1, "running": 3, "done": 0, "failed": 0, "cancelled": 0}
    assert st.meta == {"owner": "nightly"} and st.total == 4 and not st.finished
    assert st.created_at.tzinfo is not None
    store.mark_done("job1", "b", {"output": "s3://b/out/b.mp4", "sha256": "ab"})
    states = {r.request_id: r for r in store.request_states("job1")}
    assert [r.request_id for r in store.request_states("job1")] == ["a", "b", "c", "d"]
    assert states["b"].status == "done" and states["b"].result["sha256"] == "ab" and states["b"].attempts == 1
    assert states["d"].render_id is None and states["a"].render_id == "ra"
    store.set_render_id("job1", "d", "rd")
    assert {r.request_id: r.render_id for r in store.request_states("job1")}["d"] == "rd"
    assert store.claim_next("job1", 10) == ["c"]
    assert store.claim_next("job1", 10) == []
    assert store.list_jobs() == ["job1"]


def test_idempotent_create(store):
    assert store.create_job("j", [("a", "ra", 0), ("b", "rb", 0)], {"v": 1}) == 2
    store.claim_next("j", 1)
    assert store.create_job("j", [("a", "ra", 0), ("b", "rb", 0), ("c", "rc", 1)], {"v": 2}) == 1
    st = store.job_status("j")
    assert st.total == 3 and st.counts["running"] == 1 and st.meta == {"v": 1}
    assert store.claim_next("j", 5) == ["c", "b"]


def test_retries_then_dead_letter_and_requeue(store):
    store.create_job("j", [("a", "ra", 0), ("b", "rb", 0)])
    for attempt in (1, 2):
        assert store.claim_next("j", 1) == ["a"]
        assert store.mark_failed("j", "a", "decode", f"gpu lost {attempt}", transient=True, max_attempts=3) == "pending"
    assert store.claim_next("j", 1) == ["a"]
    assert store.mark_failed("j", "a", "decode", "gpu lost 3", transient=True, max_attempts=3) == "failed"
    assert store.claim_next("j", 1) == ["b"]
    assert store.mark_failed("j", "b", "alignment", "no face found", transient=False) == "failed"
    states = {r.request_id: r for r in store.request_states("j")}
    assert states["a"].attempts == 3 and states["a"].error_message == "gpu lost 3"
    assert states["b"].attempts == 1 and states["b"].error_stage == "alignment"
    dead = store.dead_letters("j")
    assert [(d.request_id, d.stage, d.attempts) for d in dead] == [("a", "decode", 3), ("b", "alignment", 1)]
    assert store.job_status("j").finished

    assert store.requeue_failed("j") == 2
    assert store.dead_letters("j") == []
    assert store.job_status("j").counts["pending"] == 2
    assert store.claim_next("j", 5) == ["a", "b"]
    assert {r.attempts for r in store.request_states("j")} == {1}
    store.mark_done("j", "a", {})
    assert _statuses(store, "j")["a"] == "done"
    assert store.request_states("j")[0].error_message is None


def test_cancel(store):
    store.create_job("j", [(f"r{i}", None, 0) for i in range(5)])
    assert store.claim_next("j", 2) == ["r0", "r1"]
    assert store.cancel("j") == 3
    assert store.is_cancelled("j")
    assert store.claim_next("j", 5) == []
    store.mark_done("j", "r0", {"output": "x"})  # running ones may finish
    assert store.mark_failed("j", "r1", "encode", "timeout", transient=True) == "cancelled"
    assert store.job_status("j").counts == {"pending": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 4}
    assert store.create_job("j", [("late", None, 0)]) == 1
    assert _statuses(store, "j")["late"] == "cancelled"
    assert store.requeue_failed("j") == 5  # retry resumes a cancelled job
    assert not store.is_cancelled("j")
    assert len(store.claim_next("j", 10)) == 5


def test_reset_running_after_crash(store):
    store.create_job("j", [("a", None, 0), ("b", None, 0)])
    store.claim_next("j", 2)
    store.mark_failed("j", "b", "motion", "oom", transient=True, max_attempts=2)
    store.claim_next("j", 1)  # b again: its 2nd attempt
    assert store.reset_running("j", max_attempts=2) == 1  # a back to pending; b used up its attempts
    assert _statuses(store, "j") == {"a": "pending", "b": "failed"}
    assert store.dead_letters("j")[0].stage == "worker"
    assert store.claim_next("j", 5) == ["a"]


def test_render_idempotency_and_unknown_job(store):
    assert store.lookup_render("r" * 64) is None
    store.record_render("r" * 64, {"output": "s3://b/x.mp4", "sha256": "cd"})
    assert store.lookup_render("r" * 64) == {"output": "s3://b/x.mp4", "sha256": "cd"}
    for call in (store.job_status, store.request_states, store.cancel, store.is_cancelled, store.dead_letters,
                 lambda j: store.claim_next(j, 1), lambda j: store.mark_done(j, "a", {})):
        with pytest.raises(JobNotFoundError):
            call("nope")
    store.create_job("j", [("a", None, 0)])
    with pytest.raises(KeyError):
        store.mark_done("j", "zzz", {})
    with pytest.raises(ValueError):
        store.create_job("bad job id", [])
    store.delete_job("j")
    assert store.list_jobs() == []


def test_store_pickles(store):
    store.create_job("j", [("a", None, 0)])
    clone = pickle.loads(pickle.dumps(store))
    assert clone.claim_next("j", 1) == ["a"]
    assert store.job_status("j").counts["running"] == 1


def _claim_worker(path, out):
    s = SQLiteJobStore(path)
    got = []
    while True:
        ids = s.claim_next("j", 3)
        if not ids:
            break
        got += ids
    out.put(got)


def test_sqlite_concurrent_processes_claim_disjoint(tmp_path):
    path = tmp_path / "jobs.sqlite"
    SQLiteJobStore(path).create_job("j", [(f"r{i}", None, 0) for i in range(60)])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_worker, args=(path, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    flat = [rid for chunk in claimed for rid in chunk]
    assert sorted(flat) == sorted(f"r{i}" for i in range(60))  # each claimed exactly once


def test_redis_restart_mid_job(redis_server):
    store = RedisJobStore(redis_server.url, reconnect_timeout_s=15)
    store.create_job("j", [(f"r{i}", f"h{i}", i % 2) for i in range(6)], {"owner": "test"})
    first = store.claim_next("j", 2)
    assert first == ["r1", "r3"]
    store.mark_done("j", "r1", {"output": "o1"})
    store.record_render("h1", {"output": "o1"})

    redis_server.stop()  # clean restart: AOF keeps everything
    with pytest.raises(TransientError):
        RedisJobStore(redis_server.url, reconnect_timeout_s=0.3).job_status("j")

    # Restart while the store is mid-call: the call waits, reconnects and completes.
    restarter = threading.Timer(0.7, redis_server.start)
    restarter.start()
    start = time.monotonic()
    store.mark_done("j", "r3", {"output": "o3"})
    restarter.join()
    assert time.monotonic() - start >= 0.5
    st = store.job_status("j")
    assert st.counts["done"] == 2 and st.counts["pending"] == 4 and st.meta == {"owner": "test"}
    assert store.lookup_render("h1") == {"output": "o1"}
    assert store.claim_next("j", 10) == ["r5", "r0", "r2", "r4"]  # scripts reloaded after restart

    # Another restart while requests run, as after a driver crash: reset_running recovers them.
    redis_server.stop()
    redis_server.start()
    assert store.reset_running("j") == 4
    assert len(store.claim_next("j", 10)) == 4


def test_open_job_store(tmp_path, monkeypatch, redis_server):
    monkeypatch.delenv("TALKFARM_REDIS_URL", raising=False)
    assert isinstance(open_job_store(None, tmp_path / "a.sqlite"), SQLiteJobStore)
    assert isinstance(open_job_store(f"sqlite:///{tmp_path}/b.sqlite"), SQLiteJobStore)
    assert (tmp_path / "b.sqlite").exists()
    assert isinstance(open_job_store(redis_server.url), RedisJobStore)
    monkeypatch.setenv("TALKFARM_REDIS_URL", redis_server.url)
    assert isinstance(open_job_store(None, tmp_path / "a.sqlite"), RedisJobStore)
    with pytest.raises(ValueError):
        open_job_store("mysql://x")


def test_requeue_keeps_each_rows_earlier_runs(store):
    store.create_job("j", [("a", None, 0), ("b", None, 0), ("c", None, 0)])
    assert store.claim_next("j", 2) == ["a", "b"]
    store.mark_failed("j", "a", "alignment", "no face found")
    store.mark_done("j", "b", {})
    store.cancel("j")
    assert store.requeue_failed("j") == 2
    history = {s.request_id: s.history for s in store.request_states("j")}
    assert [(e["status"], e["attempts"], e["stage"], e["message"]) for e in history["a"]] == [
        ("failed", 1, "alignment", "no face found")]
    assert [(e["status"], e["stage"]) for e in history["c"]] == [("cancelled", None)] and history["b"] == []
    assert store.claim_next("j", 1) == ["a"]
    store.mark_failed("j", "a", "audio", "silent")
    store.requeue_failed("j")
    assert [e["message"] for e in store.request_states("j")[0].history] == ["no face found", "silent"]


def test_claims_carry_attempts_and_requests_and_finishes_commit_together(store):
    store.create_job("j", [RequestSpec("a", None, 0, '{"take": 1}'), ("b", None, 0), ("c", None, 0)])
    assert store.create_job("j", [RequestSpec("a", None, 0, '{"take": 2}'), ("b", None, 0)]) == 0   # latest file wins
    assert store.claim("j", 3) == [ClaimedRequest("a", 1, '{"take": 2}'), ClaimedRequest("b", 1, None),
                                   ClaimedRequest("c", 1, None)]
    assert store.mark_failed("j", "c", "decode", "gpu lost", transient=True) == "pending"
    assert store.claim("j", 3) == [ClaimedRequest("c", 2, None)]

    # One unknown row sinks the whole commit: nothing of it is written.
    with pytest.raises(KeyError):
        store.finish("j", [Finished("a", {"output": "a.mp4"}, "ra", new_render=True), Finished("nope", {})])
    assert _statuses(store, "j") == {"a": "running", "b": "running", "c": "running"}
    store.finish("j", [Finished("a", {"output": "a.mp4"}, "ra", new_render=True),
                       Finished("b", {"output": "a.mp4", "reused": True}, "ra"), Finished("c", {"output": "c.mp4"})])
    states = {state.request_id: state for state in store.request_states("j")}
    assert {rid: (state.status, state.render_id) for rid, state in states.items()} == {
        "a": ("done", "ra"), "b": ("done", "ra"), "c": ("done", None)}
    assert states["b"].result == {"output": "a.mp4", "reused": True} and states["a"].request == '{"take": 2}'
    assert store.lookup_render("ra") == {"output": "a.mp4"} and store.job_status("j").counts["done"] == 3
    with pytest.raises(JobNotFoundError):
        store.finish("nope", [Finished("a", {})])


def test_states_are_read_page_by_page_in_submission_order(store):
    ids = [f"r{i}" for i in range(7)]
    store.create_job("j", [RequestSpec(rid, None, i % 3, f'"{rid}"') for i, rid in enumerate(ids)])
    store.claim_next("j", 2)
    pages = store.iter_request_states("j", page_size=3)
    assert [(state.request_id, state.request) for state in pages] == [(rid, f'"{rid}"') for rid in ids]
    assert [state.status for state in store.request_states("j")].count("running") == 2
    with pytest.raises(JobNotFoundError):
        list(store.iter_request_states("nope"))


def test_input_hashes_are_shared_across_drivers(store):
    assert store.lookup_input("/media/face.jpg") is None
    store.record_input("/media/face.jpg", "1024:17", "ab" * 32)
    store.record_input("/media/face.jpg", "1024:18", "cd" * 32)       # hashed again after it changed
    assert pickle.loads(pickle.dumps(store)).lookup_input("/media/face.jpg") == ("1024:18", "cd" * 32)
