"""`talkfarm render`: clips rendered in this process, on the batch path.

The batch driver (``pipeline.batch``) over the in-process executor, with a job store that
lives as long as the call: a render on a laptop goes through the same graph, frame
chunking, reuse check and results as a job on a cluster. Frames stream from the decoder to
the encoder chunk by chunk, so memory stays flat however long the audio.
"""

from __future__ import annotations

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
from workers.decoder.renderer import DecoderConfig

JOB_ID = "local-render"


class LocalRenderer:
    """Builds every stage once in this process (models loaded), then renders requests.

    Args:
        decoder: decoder settings; its ``device`` runs motion sampling and decoding.
        device: torch device of motion sampling and decoding; overrides ``decoder.device``.
        quality_check: measure every finished video (batch QC), as batch renders do.
        on_progress: called with the driver's :class:`~pipeline.batch.BatchProgress`.
        graph: pools (in-process: their ``max_in_flight`` bounds frames held in memory) and
            the frame chunk size.
    """

    def __init__(self, decoder: DecoderConfig = DecoderConfig(), device: str | None = None,
                 quality_check: bool = False, on_progress: Callable[[BatchProgress], None] | None = None,
                 graph: GraphConfig = GraphConfig()):
        self.graph = graph
        self.on_progress = on_progress
        options = StageOptions(decoder=decoder, quality_check=quality_check, device=device or decoder.device)
        started = time.perf_counter()
        self.executor = LocalExecutor(stage_factories(options, graph), graph)
        self.setup_seconds = time.perf_counter() - started

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

