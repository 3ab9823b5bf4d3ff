"""`talkfarm render`: clips rendered in this process, on the batch path.

The batch driver (``pipeline.batch``) over the in-process executor, with a job store that
lives as long as the call: a render on a laptop goes through the same graph, frame
chunking, reuse check and results as a job on a cluster. Frames stream from the decoder to
the encoder chunk by chunk, so memory stays flat however long the audio.
With ``processes``, the decoders run in that many worker processes on the machine's other
cores (``pipeline.processes.ProcessExecutor``) while this process tracks, encodes and drives.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.schemas import RenderRequest, RenderResult
from core.storage import Storage
from pipeline.batch import BatchConfig, BatchDriver, BatchProgress, request_result
from pipeline.executors import LocalExecutor
from pipeline.graph import GraphConfig, StageOptions, stage_factories
from pipeline.jobstate import RequestSpec, SQLiteJobStore
from pipeline.processes import ProcessExecutor
from workers.decoder.renderer import DecoderConfig

JOB_ID = "local-render"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not Linux
        return os.cpu_count() or 1


def default_processes() -> int:
    """Decoder worker processes a local dub gets by default: one per core this process may run
    on where it may run on two or more (this process tracks and encodes beside them), none on
    one core, where they would only share it. The output is the same either way; where other
    work keeps the cores busy they measured no faster and cost 8-14 % more CPU (BENCHMARKS.md
    "Visual dubbing: round 7"): ``--processes 0`` there."""
    cores = available_cores()
    return cores if cores >= 2 else 0


def process_graph(graph: GraphConfig, processes: int) -> tuple[GraphConfig, tuple[str, ...]]:
    """``graph`` with its decoders (the chunk stages free of ordering, which any worker may run)
    in ``processes`` worker processes: the pools to host, and the graph whose pools say so.
    The ordered stages after them (the encoder) keep a slot per decoder call plus one, so a
    decoder's next chunk is sent while this process encodes the last."""
    hosted = tuple(name for name in graph.chunk_stages if not graph.spec(name).ordered)
    pools = dict(graph.pools)
    for name in hosted:
        pools[name] = dataclasses.replace(pools[name], size=processes)
    slots = sum(pools[name].size * pools[name].max_in_flight for name in hosted)
    for name in graph.chunk_stages:
        if name not in hosted:
            pools[name] = dataclasses.replace(pools[name], size=1, max_in_flight=max(pools[name].max_in_flight,
                                                                                     slots + 1))
    return dataclasses.replace(graph, pools=pools), hosted


class LocalRenderer:
    """Builds every stage once in this process (models loaded), then renders requests.

    Args:
        decoder: decoder settings; its ``device`` runs motion sampling and decoding.
        device: torch device of motion sampling and decoding; overrides ``decoder.device``.
        quality_check: measure every finished video (batch QC), as batch renders do.
        on_progress: called with the driver's :class:`~pipeline.batch.BatchProgress`.
        graph: pools (in-process: their ``max_in_flight`` bounds frames held in memory) and
            the frame chunk size.
        processes: decoder worker processes (0: every stage in this process); the renderer
            then holds them until :meth:`close` (or the ``with`` block's end, or exit).
    """

    def __init__(self, decoder: DecoderConfig = DecoderConfig(), device: str | None = None,
                 quality_check: bool = False, on_progress: Callable[[BatchProgress], None] | None = None,
                 graph: GraphConfig = GraphConfig(), processes: int = 0):
        self.on_progress = on_progress
        options = StageOptions(decoder=decoder, quality_check=quality_check, device=device or decoder.device)
        started = time.perf_counter()
        if processes > 0:
            graph, hosted = process_graph(graph, processes)
            self.executor = ProcessExecutor(stage_factories(options, graph), graph, hosted)
        else:
            self.executor = LocalExecutor(stage_factories(options, graph), graph)
        self.graph = graph
        self.setup_seconds = time.perf_counter() - started

    def close(self) -> None:
        """Stop the worker processes, if any (idempotent)."""
        self.executor.shutdown()

    def __enter__(self) -> LocalRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(self, request: RenderRequest) -> RenderResult:
        """Render one request; its result (failed ones too: one bad input never raises)."""
        return self.render_all([request])[0]

    def render_all(self, requests: Sequence[RenderRequest]) -> list[RenderResult]:
        """Render requests (distinct ids) one job after another; results in request order."""
        by_id = {request.id: request for request in requests}
        if len(by_id) != len(requests):
            raise ValueError("request ids must be distinct")
        with tempfile.TemporaryDirectory(prefix="talkfarm-render-") as folder:
            store = SQLiteJobStore(Path(folder) / "jobs.sqlite")
            try:
                store.create_job(JOB_ID, [RequestSpec(request.id) for request in requests])
                # One attempt: a local render reports its failure at once rather than retrying.
                driver = BatchDriver(self.executor, store, Storage(), self.graph, BatchConfig(max_attempts=1),
                                     on_progress=self.on_progress)
                driver.run(JOB_ID, by_id)
                states = {state.request_id: state for state in store.request_states(JOB_ID)}
            finally:
                store.close()
        return [request_result(request, states[request.id]) for request in requests]

