"""The batch driver: claims requests from the job store and pushes them through the graph.

Each request walks the task stages of the graph (``pipeline.graph.RENDER_GRAPH``: alignment
-> audio -> motion), named by its contents and reused instead when an identical render
exists, as soon as its inputs are hashed; then its frame chunks go through the chunk stages
(decoded across the decoder pool, written in order by one encoder). The driver
keeps a bounded number of requests and frame chunks in flight, so memory stays flat on a
10,000-row job: each claimed row's request comes from the job store with the claim, not from a
list held for the whole job. It records every outcome in the job store (retrying transient
failures up to ``max_attempts``), committing the rows finished in one turn of its loop together,
and finally writes the Parquet manifest, paging through the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from core.identity import render_id, take_options
from core.schemas import RenderRequest, RenderResult
from core.storage import Storage
from core.task import FrameChunk, RenderTask, StageFailure
from monitoring.metrics import MULTIPROC_ENV, metrics
from pipeline.executors import Executor, Handle, RayExecutor
from pipeline.graph import GraphConfig, StageOptions, frame_chunks, stage_factories
from pipeline.jobstate import ClaimedRequest, Finished, JobStore, RequestState
from pipeline.manifest import ManifestRow, history_lines, write_manifest
from pipeline.request_files import InvalidRow
from pipeline.reuse import InputHashes, link_render

log = logging.getLogger(__name__)

# Finished renders' records the driver keeps at hand (render id -> record), so a job that repeats
# a render looks it up in the store once: ~1 KB each.
RENDER_CACHE = 4096


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
    attempts: int = 1                                  # claims of this request, this one included
    started: bool = False                              # submitted to the graph (not backing off)
    waited: bool = False                               # held back while a twin was in flight
    twin: tuple[str, str, str] | None = None           # its twin key (``_twin_key``), once looked at
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
        self.input_hashes = InputHashes(storage, store=store)

    def run(self, job_id: str, requests: Mapping[str, RenderRequest] | None = None) -> BatchProgress:
        """Render every pending request of ``job_id``.

        Each claimed row renders the request registered with it in the job store
        (``pipeline.request_files.request_spec``), or, where the caller holds them anyway (an
        in-process render), ``requests[request_id]``.
        """
        self.store.reset_running(job_id, max_attempts=self.config.max_attempts)
        progress = BatchProgress()
        active: dict[str, _Active] = {}
        handles: list[Handle] = []
        self._retry_at: dict[str, float] = {}
        self._finished: list[Finished] = []
        self._renders: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._twins: dict[tuple[str, str, str], str] = {}     # twin key -> the request in flight with it
        limit = self.config.max_requests_in_flight or self.graph.requests_in_flight()
        with metrics().job_running():
            self._loop(job_id, requests, limit, progress, active, handles)
        return progress

    def _loop(self, job_id: str, requests: Mapping[str, RenderRequest] | None, limit: int, progress: BatchProgress,
              active: dict[str, _Active], handles: list[Handle]) -> None:
        while True:
            if self.lease is not None:
                self.lease.check()
            free = limit - len(active)
            claimed = self.store.claim(job_id, free) if free > 0 else []    # [] once the job is cancelled
            for row in claimed:
                active[row.request_id] = _Active(_claimed_request(row, requests), datetime.now(timezone.utc),
                                                 attempts=row.attempts)
                self._reuse_early(job_id, active[row.request_id], active, progress)
            self._commit_finished(job_id)
            for request_id, item in list(active.items()):
                if not item.started and time.monotonic() >= self._retry_at.get(request_id, 0.0):
                    handles.extend(self._start(job_id, item, active, progress))
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
            self._commit_finished(job_id)
            if self.on_progress is not None:
                self.on_progress(progress)
        self._commit_finished(job_id)        # rows the last turn finished by reuse
        metrics().observe_executor(self.executor)

    def _start(self, job_id: str, item: _Active, active: dict[str, _Active], progress: BatchProgress) -> list[Handle]:
        """Send a claimed request into the graph, unless a twin (same inputs and controls) is in
        flight: then it waits for the twin, and is reused once the twin's render is finished
        (a job that repeats a row renders -- and hashes -- it once, not once per slot)."""
        item.twin = item.twin or _twin_key(item.request)
        twin = self._twins.get(item.twin)
        if twin is not None and twin != item.request.id and twin in active:
            item.waited = True
            return []
        if item.waited and self._reuse_early(job_id, item, active, progress):
            return []
        item.started = True
        self._twins[item.twin] = item.request.id
        return [self.executor.submit(self.graph.task_stages[0], [RenderTask(item.request)], tag=item)]

    def _release_twin(self, item: _Active) -> None:
        if item.twin is not None and self._twins.get(item.twin) == item.request.id:
            del self._twins[item.twin]

    def _commit_finished(self, job_id: str) -> None:
        """Mark the rows finished since the last commit done, in one job-store transaction.

        Their videos and sidecars are already in place, so a driver killed before this commit
        leaves them ``running``: the next driver resets them to pending and finishes them again
        by reuse (the same render; the output replaced atomically by identical bytes), never
        rendering them twice and never losing one. Renders made here are recorded in the same
        commit, so a row done is always a render known.
        """
        if self._finished:
            self.store.finish(job_id, self._finished)
            self._finished = []

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

    def _reuse_early(self, job_id: str, item: _Active, active: dict[str, _Active], progress: BatchProgress) -> bool:
        """Finish a just-claimed request by reuse before any stage runs, when its inputs were
        hashed earlier in this job and unchanged (``pipeline.reuse``) and the render exists."""
        known = self.input_hashes.render_id(item.request)
        if known is None:
            return False
        task = RenderTask(item.request, render_id=known[0], image_sha256=known[1], audio_sha256=known[2])
        return self._try_reuse(job_id, item, task, active, progress)

    def _try_reuse(self, job_id: str, item: _Active, task: RenderTask, active: dict[str, _Active],
                   progress: BatchProgress) -> bool:
        """If the task's render is finished, reuse it and finish the request; else record the
        render id on the request (a reused one gets it with its result)."""
        previous = self._lookup_render(task.render_id)
        if previous is None or not link_render(self.storage, previous, task.request):
            self._renders.pop(task.render_id, None)      # gone or unreadable: look it up afresh next time
            self.store.set_render_id(job_id, task.request.id, task.render_id)
            return False
        result = RenderResult.model_validate({**previous["result"], "request_id": task.request.id,
                                              "output": task.request.output})
        progress.reused += 1
        self._finish(job_id, item, result, task, active, progress, reused=True)
        return True

    def _lookup_render(self, render_id: str) -> dict[str, Any] | None:
        """The finished render's record: from the driver's cache, else the job store (cached when found)."""
        record = self._renders.get(render_id)
        if record is None:
            record = self.store.lookup_render(render_id)
            if record is not None:
                self._remember_render(render_id, record)
        return record

    def _remember_render(self, render_id: str, record: dict[str, Any]) -> None:
        self._renders[render_id] = record
        self._renders.move_to_end(render_id)
        if len(self._renders) > RENDER_CACHE:
            self._renders.popitem(last=False)

    def _finish(self, job_id: str, item: _Active, result: RenderResult, task: RenderTask,
                active: dict[str, _Active], progress: BatchProgress, reused: bool = False) -> None:
        record = {"result": result.model_dump(mode="json"), "image_sha256": task.image_sha256,
                  "audio_sha256": task.audio_sha256, "render_id": task.render_id, "reused": reused,
                  "created_at": item.created_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat()}
        self._finished.append(Finished(task.request.id, record, task.render_id, new_render=not reused))
        if not reused:
            self._remember_render(task.render_id, record)
        progress.done += 1
        del active[task.request.id]
        self._release_twin(item)
        metrics().render_finished("reused" if reused else "done", result.frames, result.audio_seconds,
                                  seconds=(datetime.now(timezone.utc) - item.created_at).total_seconds())

    def _fail(self, job_id: str, request_id: str, active: dict[str, _Active], progress: BatchProgress,
              stage: str, message: str, transient: bool) -> list[Handle]:
        """Record a failure; returns the clean-up call to wait for, if any."""
        item = active.pop(request_id)
        self._release_twin(item)
        cleanup = []
        if item.task is not None and item.chunks_left:
            # Close this render's half-written video on its encoder (it removes the temp file).
            failed = RenderTask(item.request, failure=StageFailure(stage, message))
            for ordered in (name for name in self.graph.chunk_stages if self.graph.spec(name).ordered):
                cleanup.append(self.executor.submit(ordered, [FrameChunk(failed, 0, 0)], key=_render_key(item.request)))
        status = self.store.mark_failed(job_id, request_id, stage, message, transient=transient,
                                        max_attempts=self.config.max_attempts)
        if status == "pending":
            self._retry_at[request_id] = time.monotonic() + self.config.retry_backoff_s * 2 ** max(0, item.attempts - 1)
        if status == "failed":
            progress.failed += 1
        if status in ("pending", "failed"):
            metrics().request_failed(stage, final=status == "failed")
        log.warning("request %s: %s failed (%s)%s", request_id, stage, message,
                    "; will retry" if status == "pending" else "")
        return cleanup


def _claimed_request(row: ClaimedRequest, requests: Mapping[str, RenderRequest] | None) -> RenderRequest:
    if requests is not None:
        return requests[row.request_id]
    if row.request is None:
        raise KeyError(f"request {row.request_id!r} was registered without its request; resubmit the request file")
    return RenderRequest.model_validate_json(row.request)


def _twin_key(request: RenderRequest) -> tuple[str, str, str, str]:
    """Requests with equal keys name the same render (same input URIs, controls and, for a
    dub, take options)."""
    return request.source, request.audio, request.controls.model_dump_json(), json.dumps(take_options(request))


def _render_key(request: RenderRequest) -> str:
    return f"{request.id}|{request.output}"


def _describe(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:500]


def manifest_rows(job_id: str, store: JobStore, requests: Mapping[str, RenderRequest] | None = None,
                  invalid_rows: Mapping[str, InvalidRow] = MappingProxyType({})) -> Iterator[ManifestRow]:
    """One manifest row per request of the job, from the job store's records (paged and made
    one at a time, so the manifest writer streams them into row groups); each row's request is
    the one registered with it (or ``requests[id]`` where the caller holds them);
    ``invalid_rows`` (job id -> malformed request-file line) become failed rows of their own,
    with their history."""
    for state in store.iter_request_states(job_id):
        if requests is not None:
            request = requests.get(state.request_id)
        else:
            request = None if state.request is None else RenderRequest.model_validate_json(state.request)
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


def write_job_manifest(job_id: str, store: JobStore, storage: Storage, requests: Mapping[str, RenderRequest] | None,
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
