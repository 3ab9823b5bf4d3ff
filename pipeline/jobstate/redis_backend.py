"""Redis job store, for a Ray cluster: every state transition is a Lua script in ``lua/``
(atomic on the server).

Keys, all under ``talkfarm:`` (``{J}`` is a Redis-Cluster hash tag, so one job's keys live in
one slot and the scripts stay cluster-safe)::

    talkfarm:jobs                        zset   job_id -> created_at (for listing)
    talkfarm:job:{J}                     hash   created_at, updated_at, cancelled, meta (JSON),
                                                seq, c:<status> counters
    talkfarm:job:{J}:ids                 list   request ids in submission order
    talkfarm:job:{J}:req:<request_id>    hash   render_id, status, priority, seq, attempts,
                                                error_stage, error_message, result (JSON), updated_at,
                                                history (JSON: earlier runs' outcomes, kept by requeue),
                                                request (JSON: what the row renders)
    talkfarm:job:{J}:pending             zset   pending request ids, score = -priority * 2**32 + seq
    talkfarm:job:{J}:dead                list   dead letters (JSON)
    talkfarm:job:{J}:lease               string the driver holding the job (expires: PX)
    talkfarm:render:<render_id>          string idempotency record (JSON: output uri, sha256...)
    talkfarm:input:<uri>                 string an input's [fingerprint, sha256] (JSON)
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from importlib.resources import files
from typing import Any, Callable, Iterator, Sequence, TypeVar

from core.errors import TransientError
from pipeline.jobstate.store import (
    STATUSES,
    ClaimedRequest,
    DeadLetter,
    Finished,
    JobNotFoundError,
    JobStatus,
    JobStore,
    RequestState,
    RequestStatus,
    check_job_id,
    history_entry,
    request_specs,
    to_utc,
)

T = TypeVar("T")

SCRIPT_NAMES = ("create", "claim", "done", "failed", "requeue", "cancel", "reset", "lease", "renew", "release")
"""One Lua file per state transition, ``lua/<name>.lua``; each runs after ``lua/helpers.lua``."""


def load_scripts() -> dict[str, str]:
    """The Lua source of every script in :data:`SCRIPT_NAMES`, read from the installed package."""
    lua = files("pipeline.jobstate").joinpath("lua")
    helpers = lua.joinpath("helpers.lua").read_text(encoding="utf-8")
    return {name: helpers + lua.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES}


class RedisJobStore(JobStore):
    """Job state in Redis (for a Ray cluster); the module docstring gives the key layout.

    Reconnects: every call runs in a retry loop -- on a connection error, timeout or "Redis is
    loading the dataset" reply the connection is dropped and the call retried with exponential
    backoff (``backoff_s`` doubling up to 2 s, jittered) until ``reconnect_timeout_s`` has passed,
    then :class:`TransientError` is raised. So a Redis restart (with AOF / RDB persistence) is
    ridden out transparently. Lua scripts are re-loaded automatically after a restart
    (redis-py ``Script`` falls back from EVALSHA to EVAL on NOSCRIPT).

    Caveat: a state change whose reply is lost in a disconnect is retried; all transitions are
    idempotent except ``claim_next`` (a lost reply leaves those requests ``running`` unseen --
    :meth:`reset_running` recovers them) and a dead letter that may be recorded twice.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://`` (TLS) or ``unix://``.
        prefix: key prefix (default ``talkfarm:``); tests use it for isolation.
        reconnect_timeout_s: how long to keep retrying through an outage.
        socket_timeout_s: per-command socket timeout.
    """

    def __init__(self, url: str, *, prefix: str = "talkfarm:", reconnect_timeout_s: float = 30.0,
                 socket_timeout_s: float = 10.0, backoff_s: float = 0.05):
        self.url = url
        self.prefix = prefix
        self.reconnect_timeout_s = reconnect_timeout_s
        self.socket_timeout_s = socket_timeout_s
        self.backoff_s = backoff_s
        self._client = None
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        safe = re.sub(r"//[^@/]*@", "//***@", self.url)
        return f"RedisJobStore({safe!r}, prefix={self.prefix!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_scripts", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client, self._scripts, self._lock = None, {}, threading.Lock()

    @property
    def redis(self):
        """The redis-py client (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import redis
                    from redis.backoff import NoBackoff
                    from redis.retry import Retry

                    client = redis.Redis.from_url(
                        self.url, decode_responses=True, socket_timeout=self.socket_timeout_s,
                        socket_connect_timeout=min(self.socket_timeout_s, 5.0), health_check_interval=15,
                        retry=Retry(NoBackoff(), 0))  # retries are ours (_call), with a deadline
                    self._scripts = {name: client.register_script(src) for name, src in load_scripts().items()}
                    self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, fn: Callable[[], T], job_id: str | None = None) -> T:
        import redis

        deadline = time.monotonic() + self.reconnect_timeout_s
        delay = self.backoff_s
        while True:
            try:
                return fn()
            except (redis.AuthenticationError, redis.exceptions.AuthorizationError):
                raise  # wrong password / ACL: retrying will not help
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # BusyLoadingError included
                if time.monotonic() + delay > deadline:
                    raise TransientError(f"job store {self!r} unreachable for {self.reconnect_timeout_s:.0f} s: "
                                         f"{exc}") from exc
                if self._client is not None:
                    self._client.connection_pool.disconnect()
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, 2.0)
            except redis.ResponseError as exc:
                if "NOJOB" in str(exc) and job_id is not None:
                    raise JobNotFoundError(job_id) from None
                if "NOREQ" in str(exc):
                    raise KeyError(f"job {job_id!r} has no such request") from None
                raise

    # -- keys

    def _k(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}job:{{{job_id}}}{part}"

    def _run(self, name: str, job_id: str, parts: tuple[str, ...], args: list[Any]) -> Any:
        keys = [self._k(job_id, p) for p in parts]
        return self._call(lambda: self._scripts_loaded()[name](keys=keys, args=args), job_id)

    def _scripts_loaded(self) -> dict[str, Any]:
        _ = self.redis
        return self._scripts

    # -- jobs

    def create_job(self, job_id, requests, meta=None) -> int:
        check_job_id(job_id)
        specs = request_specs(requests)
        meta_json = json.dumps(meta or {})
        added = 0
        now = repr(time.time())
        # Batches keep each script short (Redis is single-threaded); each batch is atomic and the
        # whole call idempotent, so a retry after a failure mid-way is safe.
        for start in range(0, max(len(specs), 1), 1000):
            args: list[Any] = [now, meta_json, self._k(job_id, ":req:")]
            for spec in specs[start:start + 1000]:
                args += [spec.request_id, spec.render_id or "", spec.priority, spec.request or ""]
            added += self._run("create", job_id, ("", ":pending", ":ids"), args)
        self._call(lambda: self.redis.zadd(f"{self.prefix}jobs", {job_id: float(now)}, nx=True))
        return added

    def list_jobs(self) -> list[str]:
        return self._call(lambda: self.redis.zrevrange(f"{self.prefix}jobs", 0, -1))

    def delete_job(self, job_id) -> None:
        self.job_status(job_id)
        ids = self._call(lambda: self.redis.lrange(self._k(job_id, ":ids"), 0, -1))
        keys = [self._k(job_id, f":req:{rid}") for rid in ids]
        keys += [self._k(job_id, p) for p in ("", ":pending", ":ids", ":dead", ":lease")]
        for start in range(0, len(keys), 1000):
            self._call(lambda: self.redis.delete(*keys[start:start + 1000]))
        self._call(lambda: self.redis.zrem(f"{self.prefix}jobs", job_id))

    def job_status(self, job_id) -> JobStatus:
        job = self._call(lambda: self.redis.hgetall(self._k(job_id)))
        if not job:
            raise JobNotFoundError(job_id)
        return JobStatus(job_id=job_id, counts={s: int(job.get(f"c:{s}", 0)) for s in STATUSES},
                         cancelled=job.get("cancelled") == "1", created_at=to_utc(job["created_at"]),
                         updated_at=to_utc(job["updated_at"]), meta=json.loads(job.get("meta") or "{}"))

    def iter_request_states(self, job_id, page_size=1000) -> Iterator[RequestState]:
        self.job_status(job_id)
        start = 0
        while True:
            ids = self._call(lambda: self.redis.lrange(self._k(job_id, ":ids"), start, start + page_size - 1))

            def _fetch() -> list[dict[str, str]]:
                pipe = self.redis.pipeline(transaction=False)
                for rid in ids:
                    pipe.hgetall(self._k(job_id, f":req:{rid}"))
                return pipe.execute()

            for rid, h in zip(ids, self._call(_fetch) if ids else []):
                yield RequestState(
                    request_id=rid, render_id=h.get("render_id") or None, status=h.get("status", "pending"),
                    priority=int(h.get("priority", 0)), attempts=int(h.get("attempts", 0)),
                    error_stage=h.get("error_stage") or None, error_message=h.get("error_message") or None,
                    result=json.loads(h["result"]) if h.get("result") else None, updated_at=to_utc(h.get("updated_at")),
                    history=[history_entry(e.get("status"), e.get("attempts"), e.get("stage"), e.get("message"),
                                            e.get("at")) for e in json.loads(h.get("history") or "[]")],
                    request=h.get("request") or None)
            if len(ids) < page_size:
                return
            start += page_size

    def dead_letters(self, job_id) -> list[DeadLetter]:
        self.job_status(job_id)
        out = []
        for raw in self._call(lambda: self.redis.lrange(self._k(job_id, ":dead"), 0, -1)):
            d = json.loads(raw)
            out.append(DeadLetter(d["request_id"], d.get("render_id") or None, d["stage"], d["message"],
                                  int(d["attempts"]), to_utc(d["at"])))
        return out

    # -- work loop

    def claim(self, job_id, limit=1) -> list[ClaimedRequest]:
        if limit <= 0:
            return []
        flat = self._run("claim", job_id, ("", ":pending"), [repr(time.time()), self._k(job_id, ":req:"), limit])
        return [ClaimedRequest(flat[i], int(flat[i + 1]), flat[i + 2] or None) for i in range(0, len(flat), 3)]

    def finish(self, job_id, finished: Sequence[Finished]) -> None:
        if not finished:
            return
        renders = {f"{self.prefix}render:{item.render_id}": json.dumps(item.result)
                   for item in finished if item.new_render}
        if renders:
            # Before the rows: a render is known whenever a row that made it is done. One round
            # trip; plain SETs, as render keys lie outside the job's hash slot.
            def _record() -> None:
                pipe = self.redis.pipeline(transaction=False)
                for key, payload in renders.items():
                    pipe.set(key, payload)
                pipe.execute()

            self._call(_record)
        args: list[Any] = [repr(time.time()), self._k(job_id, ":req:")]
        for item in finished:
            args += [item.request_id, json.dumps(item.result), item.render_id or ""]
        self._run("done", job_id, ("", ":pending"), args)

    def mark_failed(self, job_id, request_id, stage, message, *, transient=False, max_attempts=3) -> RequestStatus:
        return self._run("failed", job_id, ("", ":pending", ":dead"),
                         [repr(time.time()), self._k(job_id, ":req:"), request_id, stage, message,
                          "1" if transient else "0", max_attempts])

    def set_render_id(self, job_id, request_id, render_id) -> None:
        key = self._k(job_id, f":req:{request_id}")
        if not self._call(lambda: self.redis.exists(key)):
            self.job_status(job_id)
            raise KeyError(f"job {job_id!r} has no request {request_id!r}")
        self._call(lambda: self.redis.hset(key, "render_id", render_id))

    def requeue_failed(self, job_id, *, include_cancelled=True) -> int:
        return self._run("requeue", job_id, ("", ":pending", ":ids", ":dead"),
                         [repr(time.time()), self._k(job_id, ":req:"), "1" if include_cancelled else "0"])

    def cancel(self, job_id) -> int:
        return self._run("cancel", job_id, ("", ":pending"), [repr(time.time()), self._k(job_id, ":req:")])

    def is_cancelled(self, job_id) -> bool:
        flag = self._call(lambda: self.redis.hget(self._k(job_id), "cancelled"))
        if flag is None:
            raise JobNotFoundError(job_id)
        return flag == "1"

    def reset_running(self, job_id, *, max_attempts=None) -> int:
        return self._run("reset", job_id, ("", ":pending", ":ids", ":dead"),
                         [repr(time.time()), self._k(job_id, ":req:"), max_attempts or 0])

    # -- lease

    def acquire_lease(self, job_id, holder, ttl_s) -> tuple[str, float]:
        check_job_id(job_id)
        current, left_ms = self._run("lease", job_id, (":lease",), [holder, int(ttl_s * 1000)])
        return current, int(left_ms) / 1000.0

    def renew_lease(self, job_id, holder, ttl_s) -> bool:
        return self._run("renew", job_id, (":lease",), [holder, int(ttl_s * 1000)]) == 1

    def release_lease(self, job_id, holder) -> None:
        self._run("release", job_id, (":lease",), [holder])

    # -- idempotency

    def lookup_render(self, render_id) -> dict[str, Any] | None:
        raw = self._call(lambda: self.redis.get(f"{self.prefix}render:{render_id}"))
        return None if raw is None else json.loads(raw)

    def record_render(self, render_id, result) -> None:
        payload = json.dumps(result)
        self._call(lambda: self.redis.set(f"{self.prefix}render:{render_id}", payload))

    # -- input hashes

    def lookup_input(self, uri) -> tuple[str, str] | None:
        raw = self._call(lambda: self.redis.get(f"{self.prefix}input:{uri}"))
        return None if raw is None else tuple(json.loads(raw))

    def record_input(self, uri, fingerprint, sha256) -> None:
        payload = json.dumps([fingerprint, sha256])
        self._call(lambda: self.redis.set(f"{self.prefix}input:{uri}", payload))
