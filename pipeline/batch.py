"""The batch driver: claims requests from the job store and pushes them through the graph.

Each request walks the task stages of the graph (``pipeline.graph.RENDER_GRAPH``: alignment
-> audio -> motion), named by its contents and reused instead when an identical render
exists, as soon as its inputs are hashed; then its frame chunks go through the chunk stages
(decoded across the decoder pool, written in order by one encoder). The driver
keeps a bounded number of requests and frame chunks in flight, so memory stays flat on a
10,000-row job; it records every outcome in the job store (retrying transient failures up
to ``max_attempts``) and finally writes the Parquet manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from core.errors import TalkfarmError
from core.identity import render_id, take_options
from core.provenance import SIDECAR_SUFFIX
from core.schemas import RenderRequest, RenderResult
from core.storage import Storage
from core.task import FrameChunk, RenderTask, StageFailure
from monitoring.metrics import MULTIPROC_ENV, metrics
from pipeline.executors import Executor, Handle, RayExecutor
from pipeline.graph import GraphConfig, StageOptions, frame_chunks, stage_factories
from pipeline.jobstate import JobStore, RequestState
from pipeline.manifest import ManifestRow, history_lines, write_manifest
from pipeline.request_files import InvalidRow
from pipeline.reuse import InputHashes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchConfig:
    """Driver settings.

    Attributes:
        max_attempts: runs per request before a transient failure becomes final.
        max_requests_in_flight: requests between claim and finish at any time; None: the
            graph's (``GraphConfig.requests_in_flight()``, derived from the pool sizes).
        poll_seconds: longest wait for a result before re-checking cancellation.
        retry_backoff_s: a request retried after a transient failure waits this long, doubled
            per attempt, so a crashed worker has time to come back.
    """

    max_attempts: int = 3
    max_requests_in_flight: int | None = None
    poll_seconds: float = 0.5
    retry_backoff_s: float = 3.0


@dataclass
class BatchProgress:
    """Running totals handed to the progress callback."""

    done: int = 0
    failed: int = 0
    reused: int = 0
    running: int = 0
    frames: int = 0
    frames_planned: int = 0        # frames of the renders whose motion is sampled so far
    started: float = field(default_factory=time.perf_counter)

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(1e-9, time.perf_counter() - self.started)


@dataclass
class _Active:
    """A claimed request on its way through the graph."""

    request: RenderRequest
    created_at: datetime
    started: bool = False                              # submitted to the graph (not backing off)
    task: RenderTask | None = None
    chunks: deque = field(default_factory=deque)      # FrameChunks not yet submitted
    chunks_left: int = 0                               # submitted-or-pending chunks not yet encoded
    chunk_seconds: dict[str, float] = field(default_factory=dict)   # decode + encode, all chunks


class BatchDriver:
    """Runs one job to completion on an executor (Ray or local).

    Args:
        executor: an :class:`~pipeline.executors.Executor` (Ray actor pools or in-process).
        store: the job store holding the job's requests and their states.
        storage: where outputs and the manifest are written.
        graph: pool layout and chunk size (must match the executor's).
        config: retries and in-flight bounds.
        on_progress: called with a :class:`BatchProgress` after every change.
        lease: the job's :class:`~pipeline.lease.DriverLease`, held by this driver; checked on
            every turn of the loop, so a driver that lost it stops before it claims again.
    """

    def __init__(self, executor: Executor, store: JobStore, storage: Storage, graph: GraphConfig = GraphConfig(),
                 config: BatchConfig = BatchConfig(), on_progress: Callable[[BatchProgress], None] | None = None,
                 lease=None):
        self.executor = executor
        self.store = store
        self.storage = storage
        self.graph = graph
        self.config = config
        self.on_progress = on_progress
        self.lease = lease
        self.input_hashes = InputHashes(storage)

    def run(self, job_id: str, requests: dict[str, RenderRequest]) -> BatchProgress:
        """Render every pending request of ``job_id`` (``requests``: id -> request)."""
        self.store.reset_running(job_id, max_attempts=self.config.max_attempts)
        progress = BatchProgress()
        active: dict[str, _Active] = {}
        handles: list[Handle] = []
        self._retry_at: dict[str, float] = {}
        limit = self.config.max_requests_in_flight or self.graph.requests_in_flight()
        with metrics().job_running():
            self._loop(job_id, requests, limit, progress, active, handles)
        return progress

    def _loop(self, job_id: str, requests: dict[str, RenderRequest], limit: int, progress: BatchProgress,
              active: dict[str, _Active], handles: list[Handle]) -> None:
        while True:
            if self.lease is not None:
                self.lease.check()
            claimed = []
            if not self.store.is_cancelled(job_id):
                free = limit - len(active)
                claimed = self.store.claim_next(job_id, free) if free > 0 else []
                for request_id in claimed:
                    active[request_id] = _Active(requests[request_id], datetime.now(timezone.utc))
                    self._reuse_early(job_id, active[request_id], active, progress)
            for request_id, item in active.items():
                if not item.started and time.monotonic() >= self._retry_at.get(request_id, 0.0):
                    item.started = True
                    handles.append(self.executor.submit(self.graph.task_stages[0], [RenderTask(item.request)], tag=item))
            handles.extend(self._feed_chunks(active))
            progress.running = len(active)
            metrics().observe_executor(self.executor)
            if not handles:
                if not active and not claimed:     # claimed rows may all have finished by reuse
                    break
                if not claimed:
                    time.sleep(min(self.config.poll_seconds, 0.1))     # only retries waiting out their backoff
                continue
            for handle in self.executor.wait(handles, timeout=self.config.poll_seconds):
                handles.remove(handle)
                handles.extend(self._advance(job_id, handle, active, progress))
            if self.on_progress is not None:
                self.on_progress(progress)
        metrics().observe_executor(self.executor)

    def _feed_chunks(self, active: dict[str, _Active]) -> list[Handle]:
        """Submit waiting frame chunks while every chunk stage's pool has room.

        A chunk's call to each chunk stage is submitted right behind its call to the one
        before, with that call's result as its argument; an ``ordered`` stage's calls carry
        the render as their key, so one encoder gets all of a render's chunks, in order, and
        Ray runs them in that order.
        """
        submitted = []
        for item in active.values():
            chunk_stages = self.graph.chunk_stages
            while item.chunks and all(self.executor.capacity(stage) > 0 for stage in chunk_stages):
                batch: Any = [item.chunks.popleft()]
                for stage in chunk_stages:
                    key = _render_key(item.request) if self.graph.spec(stage).ordered else None
                    batch = self.executor.submit(stage, batch, key=key, tag=item)
                    submitted.append(batch)
        return submitted

    def _advance(self, job_id: str, handle: Handle, active: dict[str, _Active], progress: BatchProgress) -> list[Handle]:
        # Handles are tagged with the attempt (_Active) that made them: a result of an attempt
        # that already failed, arriving after the retry started, must not touch the retry.
        item: _Active | None = handle.tag
        if item is None or active.get(item.request.id) is not item:
            return []              # a clean-up call, or a late result of a failed attempt
        request_id = item.request.id
        try:
            batch = self.executor.result(handle)
        except Exception as err:  # worker crash, lost actor, storage hiccup: retry the request
            return self._fail(job_id, request_id, active, progress, handle.stage, _describe(err), transient=True)
        chunk_stages, task_stages = self.graph.chunk_stages, self.graph.task_stages
        if handle.stage in chunk_stages[:-1]:
            return []              # its result already went on to the next chunk stage
        task: RenderTask = batch[0].task if handle.stage in chunk_stages else batch[0]
        if task.failure is not None:
            return self._fail(job_id, request_id, active, progress, task.failure.stage, task.failure.message,
                              transient=False)
        if handle.stage in task_stages:
            return self._after_task_stage(job_id, item, handle.stage, batch, active, progress)
        # the last chunk stage: one more chunk written
        chunk: FrameChunk = batch[0]
        progress.frames += chunk.stop - chunk.start
        for stage, seconds in chunk.seconds.items():
            item.chunk_seconds[stage] = item.chunk_seconds.get(stage, 0.0) + seconds
        item.chunks_left -= 1
        if item.chunks_left == 0:
            task.seconds.update(item.chunk_seconds)
            self._finish(job_id, item, task.result(), task, active, progress)
        return []

    def _after_task_stage(self, job_id: str, item: _Active, stage: str, batch: list[RenderTask],
                          active: dict[str, _Active], progress: BatchProgress) -> list[Handle]:
        """Name the render once its inputs are hashed (and reuse an identical finished render);
        then the next task stage, or, after the last, its frame chunks."""
        task = batch[0]
        if task.render_id is None and task.image_sha256 and task.audio_sha256:
            if self._identify(job_id, item, task, active, progress):
                return []
        task_stages = self.graph.task_stages
        following = task_stages.index(stage) + 1
        if following < len(task_stages):
            return [self.executor.submit(task_stages[following], batch, tag=item)]
        item.task = task
        item.chunks = deque(frame_chunks(task, self.graph.chunk_frames))
        item.chunks_left = len(item.chunks)
        progress.frames_planned += task.num_frames
        return []

    def _identify(self, job_id: str, item: _Active, task: RenderTask, active: dict[str, _Active],
                  progress: BatchProgress) -> bool:
        """Name the render by its contents; True when an identical finished render was reused."""
        self.input_hashes.learn(task.request.source, task.image_sha256)
        self.input_hashes.learn(task.request.audio, task.audio_sha256)
        task.render_id = render_id(task.image_sha256, task.audio_sha256, task.request.controls,
                                   self.graph.model_versions(task.request.controls), take_options(task.request))
        return self._try_reuse(job_id, item, task, active, progress)

    def _reuse_early(self, job_id: str, item: _Active, active: dict[str, _Active], progress: BatchProgress) -> None:
        """Finish a just-claimed request by reuse before any stage runs, when its inputs were
        hashed earlier in this job and unchanged (``pipeline.reuse``) and the render exists."""
        known = self.input_hashes.render_id(item.request)
        if known is not None:
            task = RenderTask(item.request, render_id=known[0], image_sha256=known[1], audio_sha256=known[2])
            self._try_reuse(job_id, item, task, active, progress)

    def _try_reuse(self, job_id: str, item: _Active, task: RenderTask, active: dict[str, _Active],
                   progress: BatchProgress) -> bool:
        """Record the task's render id; if that render is finished, reuse it and finish the request."""
        self.store.set_render_id(job_id, task.request.id, task.render_id)
        previous = self.store.lookup_render(task.render_id)
        if previous is None or not self._reuse(previous, task.request):
            return False
        result = RenderResult.model_validate({**previous["result"], "request_id": task.request.id,
                                              "output": task.request.output})
        progress.reused += 1
        self._finish(job_id, item, result, task, active, progress, reused=True)
        return True

    def _reuse(self, previous: dict[str, Any], request: RenderRequest) -> bool:
        """Make a finished render's video and provenance available at the request's output;
        False if either is gone (then the render runs again)."""
        source, output = previous["result"].get("output"), request.output
        if not source:
            return False
        if not (self.storage.is_allowed(source) and self.storage.is_allowed(source + SIDECAR_SUFFIX)):
            return False       # another job's output, outside this job's prefixes: render afresh
        try:
            return self._copy_previous(source, output, request)
        except (TalkfarmError, OSError, ValueError) as err:   # gone, unreadable or a bad sidecar
            log.warning("request %s: not reusing an earlier render (%s); rendering it", request.id, _describe(err))
            return False

    def _copy_previous(self, source: str, output: str, request: RenderRequest) -> bool:
        if not self.storage.exists(source) or not self.storage.exists(source + SIDECAR_SUFFIX):
            return False
        if source != output:
            record = json.loads(self.storage.read_bytes(source + SIDECAR_SUFFIX))
            record["request_id"] = request.id
            # sidecar first: a video that exists always has its provenance beside it
            self.storage.write_bytes(output + SIDECAR_SUFFIX, json.dumps(record, indent=2, sort_keys=True).encode())
            self.storage.copy(source, output)     # server-side / a hard link: the video never passes through here
        return True

    def _finish(self, job_id: str, item: _Active, result: RenderResult, task: RenderTask,
                active: dict[str, _Active], progress: BatchProgress, reused: bool = False) -> None:
        record = {"result": result.model_dump(mode="json"), "image_sha256": task.image_sha256,
                  "audio_sha256": task.audio_sha256, "render_id": task.render_id, "reused": reused,
                  "created_at": item.created_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat()}
        self.store.mark_done(job_id, task.request.id, record)
        if not reused:
            self.store.record_render(task.render_id, record)
        progress.done += 1
        del active[task.request.id]
        metrics().render_finished("reused" if reused else "done", result.frames, result.audio_seconds,
                                  seconds=(datetime.now(timezone.utc) - item.created_at).total_seconds())

    def _fail(self, job_id: str, request_id: str, active: dict[str, _Active], progress: BatchProgress,
              stage: str, message: str, transient: bool) -> list[Handle]:
        """Record a failure; returns the clean-up call to wait for, if any."""
        item = active.pop(request_id)
        cleanup = []
        if item.task is not None and item.chunks_left:
            # Close this render's half-written video on its encoder (it removes the temp file).
            failed = RenderTask(item.request, failure=StageFailure(stage, message))
            for ordered in (name for name in self.graph.chunk_stages if self.graph.spec(name).ordered):
                cleanup.append(self.executor.submit(ordered, [FrameChunk(failed, 0, 0)], key=_render_key(item.request)))
        status = self.store.mark_failed(job_id, request_id, stage, message, transient=transient,
                                        max_attempts=self.config.max_attempts)
        if status == "pending":
            attempts = next((s.attempts for s in self.store.request_states(job_id) if s.request_id == request_id), 1)
            self._retry_at[request_id] = time.monotonic() + self.config.retry_backoff_s * 2 ** max(0, attempts - 1)
        if status == "failed":
            progress.failed += 1
        if status in ("pending", "failed"):
            metrics().request_failed(stage, final=status == "failed")
        log.warning("request %s: %s failed (%s)%s", request_id, stage, message,
                    "; will retry" if status == "pending" else "")
        return cleanup


def _render_key(request: RenderRequest) -> str:
    return f"{request.id}|{request.output}"


def _describe(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:500]


def manifest_rows(job_id: str, store: JobStore, requests: dict[str, RenderRequest],
                  invalid_rows: Mapping[str, InvalidRow] = MappingProxyType({})) -> Iterator[ManifestRow]:
    """One manifest row per request of the job, from the job store's records (made one at a
    time, so the manifest writer streams them into row groups); ``invalid_rows`` (job id ->
    malformed request-file line) become failed rows of their own, with their history."""
    for state in store.request_states(job_id):
        request = requests.get(state.request_id)
        record = state.result or {}
        if request is None:
            invalid = invalid_rows.get(state.request_id)
            if invalid is not None:
                row = ManifestRow.for_invalid_row(job_id, invalid.row_number, state.request_id, invalid.message)
                row.attempt_history = history_lines(state.history)
                yield row
            continue
        result = request_result(request, state)
        yield ManifestRow.from_result(
            job_id, request, result, render_id=state.render_id, image_sha256=record.get("image_sha256"),
            audio_sha256=record.get("audio_sha256"), attempts=state.attempts,
            watermark_payload=result.watermark_payload if hasattr(result, "watermark_payload") else None,
            created_at=_parse_time(record.get("created_at")), finished_at=_parse_time(record.get("finished_at")),
            attempt_history=history_lines(state.history))


def request_result(request: RenderRequest, state: RequestState) -> RenderResult:
    """A request's result as the job store holds it: the finished render's, or a failed one
    naming the stage and message of its last failure (or its status: pending, cancelled)."""
    record = state.result or {}
    if state.status == "done" and "result" in record:
        return RenderResult.model_validate(record["result"])
    return RenderResult(request_id=request.id, status="failed", error_stage=state.error_stage or state.status,
                        error_message=state.error_message or f"request {state.status}")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def write_job_manifest(job_id: str, store: JobStore, storage: Storage, requests: dict[str, RenderRequest],
                       uri: str, invalid_rows: Mapping[str, InvalidRow] = MappingProxyType({}),
                       metadata: dict[str, str] | None = None) -> str:
    """Write the job's manifest (malformed request-file lines included, see :func:`manifest_rows`)
    to ``uri``, streaming: rows are read from the store as they are written; ``metadata``: extra
    schema metadata (e.g. the job's access policy)."""
    return write_manifest(manifest_rows(job_id, store, requests, invalid_rows), uri, storage, metadata=metadata)


def default_job_id(storage: Storage, requests_uri: str, out_prefix: str) -> str:
    """The same request list to the same place is the same job (resubmitting resumes it)."""

    digest = hashlib.sha256(storage.read_bytes(requests_uri) + b"\0" + out_prefix.encode()).hexdigest()
    return f"job-{digest[:12]}"


# Ray's switch for multi-node networking (named for Windows / macOS, honoured everywhere): "0"
# makes ray.init resolve this node's address to 127.0.0.1 instead of the host's network address.
LOOPBACK_RAY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def open_executor(address: str | None, graph: GraphConfig, storage: Storage, quality_check: bool = True):
    """Start (or join, with ``address``) a Ray cluster and build the actor pools; with
    ``quality_check`` the encoders measure every render they write (batch QC)."""

    import ray


    if not ray.is_initialized():
        # Actors reach S3 with the driver's standard AWS settings, and record metrics into the
        # driver's metrics folder (pipeline.metrics_endpoint).
        env = {key: value for key, value in os.environ.items() if key.startswith("AWS_") or key == MULTIPROC_ENV}
        runtime_env = {"env_vars": env} if env else None
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            # An embedded single-node Ray: Ray rewrites a loopback node address to the host's
            # routable one unless cluster networking is off, so keep all its traffic on 127.0.0.1.
            os.environ.setdefault(LOOPBACK_RAY_ENV, "0")
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                     runtime_env=runtime_env)
    return RayExecutor(stage_factories(StageOptions(storage, quality_check=quality_check), graph), graph)
