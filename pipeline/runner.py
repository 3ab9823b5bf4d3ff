"""The in-process runner: the same stage classes the Ray graph uses, chained in one process.

Used by ``talkfarm render`` on a laptop (no cluster, no GPU). Frames stream from the
decoder to the encoder in chunks, so memory stays flat however long the audio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from core.schemas import RenderRequest, RenderResult
from core.task import FrameChunk, RenderTask
from workers.alignment.stage import AlignmentStage
from workers.audio.stage import AudioFeatureStage
from workers.decoder.renderer import DecoderConfig
from workers.decoder.stage import DecodeStage
from workers.encode.stage import EncodeStage
from workers.motion.stage import MotionStage

CHUNK_FRAMES = 50


def frame_chunks(task: RenderTask, chunk_frames: int = CHUNK_FRAMES) -> Iterator[FrameChunk]:
    """Split a task's frames into consecutive chunks [start, stop)."""
    for start in range(0, task.num_frames, chunk_frames):
        yield FrameChunk(task, start, min(task.num_frames, start + chunk_frames))


def result_of(task: RenderTask) -> RenderResult:
    """The user-facing result of a finished (or failed) task."""
    failed = task.failure is not None
    return RenderResult(
        request_id=task.request.id,
        status="failed" if failed else "done",
        output=None if failed else task.request.output,
        output_sha256=None if failed else task.output_sha256,
        frames=0 if failed else task.num_frames,
        audio_seconds=0.0 if task.audio is None else task.audio.duration_s,
        seconds=dict(task.seconds),
        error_stage=task.failure.stage if failed else None,
        error_message=task.failure.message if failed else None,
        warnings=list(task.warnings),
        model_versions=dict(task.model_versions),
        render_id=task.render_id,
        watermark_payload=None if task.provenance is None else task.provenance.get("watermark_payload"),
        quality=None if failed else task.quality,
        quality_flags=[] if failed else list(task.quality_flags),
        transcript=None if task.transcript is None else task.transcript.to_json(),
    )


class InProcessRunner:
    """Runs render requests one after another through all stages in this process.

    Args:
        decoder: decoder settings (device, batch size).
        on_frames: called with (task, frames just encoded) for progress display.
    """

    def __init__(self, decoder: DecoderConfig = DecoderConfig(),
                 on_frames: Callable[[RenderTask, int], None] | None = None):
        # Motion sampling on the decoder's device: a local render uses one device throughout.
        self.task_stages = [AlignmentStage(), AudioFeatureStage(), MotionStage(decoder.device)]
        self.decode = DecodeStage(decoder)
        self.encode = EncodeStage()
        self.on_frames = on_frames
        self.setup_seconds = 0.0

    def setup(self) -> None:
        started = time.perf_counter()
        for stage in [*self.task_stages, self.decode, self.encode]:
            stage.setup()
        self.setup_seconds = time.perf_counter() - started

    def render(self, request: RenderRequest) -> RenderResult:
        task = RenderTask(request)
        for stage in self.task_stages:
            stage([task])
        for chunk in frame_chunks(task):
            if task.failure is not None:
                break
            self.decode([chunk])
            count = chunk.stop - chunk.start
            self.encode([chunk])
            if self.on_frames is not None and task.failure is None:
                self.on_frames(task, count)
        if task.failure is not None:
            self.encode.abort((request.id, request.output))
        return result_of(task)
