"""Encode stage: frame chunks in order -> one watermarked MP4 per render, written atomically.

Every frame gets the invisible watermark (workers.encode.watermark) carrying the render id
prefix; the provenance record goes into the MP4 metadata and, once the video is in place,
into the ``<output>.provenance.json`` sidecar. Outputs may be local paths or ``s3://`` URIs:
remote outputs are written to a local staging file and uploaded atomically when complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.errors import TransientError
from core.identity import sha256_file
from core.provenance import SIDECAR_SUFFIX, build_record, mp4_metadata, write_sidecar
from core.stage import Resources, Stage
from core.storage import Storage, is_s3
from core.task import FrameChunk, RenderTask, StageFailure
from workers.encode import watermark
from workers.encode.regions import region_weights
from workers.encode.video import Mp4Writer

if TYPE_CHECKING:   # imported when quality_check is on, so a plain encoder never loads the QC's stack
    from workers.quality.qc import BatchQC


@dataclass
class _OpenVideo:
    """A render being written: its ffmpeg writer, provenance record, render id, for remote
    outputs or fetched audio the staging folder, and with quality_check its running QC.

    Kept here, in the encoder, because on Ray every chunk arrives with its own copy of the
    task: what the first chunk learnt must not live on that chunk's copy.
    """

    writer: Mp4Writer
    record: dict
    render_id: str
    staging: Path | None
    audio: str
    next_frame: int = 0
    qc: "BatchQC | None" = None


class EncodeStage(Stage[FrameChunk, FrameChunk]):
    """Appends each chunk to its render's video; the last chunk closes, hashes and places it.

    Chunks of one render must arrive in order (``ordered``: the executors route all of a
    render's chunks to one encoder). A chunk starting at frame 0 begins the video afresh
    (a retried render never appends to a failed attempt's file). A failed task's chunk
    aborts the writer, leaving no output. With ``quality_check`` (batch renders) every chunk's
    frames, as written, also feed the batch QC (``workers.quality.qc.BatchQC``: landmarks on
    every ``quality_stride``-th frame, mouth and eyes of every frame from patches calibrated on
    those, flicker on one pair per tracked frame), whose metrics and flags are complete
    when the last chunk closes the video, before it is placed; the video is never decoded
    again. QC time is booked as its own stage, "qc", beside "encode".
    """

    name: ClassVar[str] = "encode"
    idempotent: ClassVar[bool] = False
    resources: ClassVar[Resources] = Resources(cpus=0.5)
    record: ClassVar[str] = "chunk"
    ordered: ClassVar[bool] = True

    def __init__(self, crf: int = 18, preset: str = "veryfast", storage: Storage | None = None,
                 quality_check: bool = False, quality_stride: int | None = None):
        self.crf = crf
        self.preset = preset
        self.storage = storage or Storage()
        self.quality_check = quality_check
        self.quality_stride = quality_stride    # None: workers.quality.qc.BATCH_STRIDE
        self._open: dict[tuple[str, str], _OpenVideo] = {}

    def setup(self) -> None:
        if self.quality_check:
            # the QC's stack (OpenCV, pocketsphinx, Face Mesh): loaded only with quality_check
            from workers.quality.tracking import warm_up_tracker

            warm_up_tracker()

    def __call__(self, batch: list[FrameChunk]) -> list[FrameChunk]:
        for chunk in batch:
            task = chunk.task
            key = (task.request.id, task.request.output)
            if task.failure is not None or chunk.start == 0:
                self.abort(key)
            if task.failure is not None:
                continue
            expected = self._open[key].next_frame if key in self._open else 0
            if chunk.start != expected:
                # A chunk went missing (its decoder died) or this encoder restarted mid-render:
                # never write a video with a gap; drop the attempt and let the driver retry it.
                self.abort(key)
                raise TransientError(f"encoder expected frame {expected} of {task.request.id}, got {chunk.start} "
                                     "(a chunk was lost)")
            started = time.perf_counter()
            video = None
            qc_before = 0.0
            try:
                video = self._open[key] if key in self._open else self._begin(task, chunk, key)
                qc_before = video.qc.seconds if video.qc is not None else 0.0
                # the same pattern in every frame, so chunk.start needs no stride bookkeeping
                weights = None if chunk.edited_regions is None else region_weights(
                    *chunk.frames.shape[1:3], chunk.edited_regions)
                # Marked in place where the chunk's frames are this stage's to change (a writable
                # array: the decoder's own, or mapped from a worker process; not Ray's read-only
                # store): no second chunk-sized array. The driver never reads them again.
                frames = chunk.frames
                in_place = isinstance(frames, np.ndarray) and frames.flags.writeable
                marked = watermark.embed(frames, watermark.payload_for(video.render_id), weights,
                                         out=frames if in_place else None)
                video.writer.write(marked)
                if video.qc is not None:
                    video.qc.add(marked)     # measured as written: what the viewer gets, less h264
                chunk.frames = marked = None  # written; free the memory now
                video.next_frame = chunk.stop
                if chunk.is_last:
                    self._finish(task, self._open.pop(key))
            except (RuntimeError, OSError, ValueError) as err:
                self.abort(key)
                task.failure = StageFailure(stage=self.name, message=str(err))
            spent = {self.name: time.perf_counter() - started}
            if video is not None and video.qc is not None:
                # QC ran inside this call (per chunk, and its finish on the last): book it apart
                spent["qc"] = video.qc.seconds - qc_before
                spent[self.name] -= spent["qc"]
            for seconds in (task.seconds, chunk.seconds):
                for stage, value in spent.items():
                    seconds[stage] = seconds.get(stage, 0.0) + value
        return batch

    def _begin(self, task: RenderTask, chunk: FrameChunk, key: tuple[str, str]) -> _OpenVideo:
        output = task.request.output
        staging = Path(tempfile.mkdtemp(prefix="talkfarm-encode-")) if is_s3(output) else None
        audio = task.audio_path
        if audio is None or not Path(audio).is_file():      # decoded on another worker: fetch it here
            staging = staging or Path(tempfile.mkdtemp(prefix="talkfarm-encode-"))
            audio = str(self.storage.fetch(task.request.audio, staging))
        record = build_record(task)            # sets task.render_id if the driver has not
        record["watermark_payload"] = str(watermark.payload_for(task.render_id))
        task.provenance = record
        local = staging / Path(output).name if is_s3(output) else Path(output)
        local.parent.mkdir(parents=True, exist_ok=True)
        height, width = chunk.frames.shape[1:3]
        # A dub may be trimmed to a take shorter than its speech: the video's end ends the file.
        writer = Mp4Writer(local, (width, height), task.request.controls.fps, audio, self.crf, self.preset,
                           metadata=mp4_metadata(record), shortest=task.take is not None,
                           colour=None if task.take is None else task.take.colour)
        qc = None
        if self.quality_check:
            # the QC's stack: loaded only with quality_check
            from workers.quality.qc import BATCH_STRIDE, BatchQC

            # The aligned portrait's landmarks stand for the photo: identity drift is measured
            # after a similarity fit, so the crop's coordinates serve.
            portrait = None if task.face is None else task.face.landmarks
            qc = BatchQC(task.request.controls.fps, portrait, stride=self.quality_stride or BATCH_STRIDE)
        self._open[key] = video = _OpenVideo(writer, record, task.render_id, staging, audio, qc=qc)
        return video

    def _finish(self, task: RenderTask, video: _OpenVideo) -> None:
        local = video.writer.close()
        task.render_id, task.provenance = video.render_id, video.record
        task.output_sha256 = sha256_file(local)
        task.provenance["output_sha256"] = task.output_sha256
        if video.qc is not None:
            # the audio stage's frame levels give the envelope; the file only without them
            task.quality, flags = video.qc.finish(task.audio, video.audio)
            # flags raised before the video existed (the alignment's mouth_hidden) stay
            task.quality_flags = [flag for flag in task.quality_flags if flag not in flags] + flags
        output = task.request.output
        try:
            if is_s3(output):
                # sidecar first: a video that exists always has its provenance beside it
                sidecar = json.dumps(task.provenance, indent=2, sort_keys=True).encode()
                self.storage.write_bytes(output + SIDECAR_SUFFIX, sidecar)
                self.storage.put(local, output)
            else:
                write_sidecar(output, task.provenance)
        finally:
            if video.staging is not None:
                shutil.rmtree(video.staging, ignore_errors=True)

    def abort(self, key: tuple[str, str]) -> None:
        video = self._open.pop(key, None)
        if video is not None:
            video.writer.abort()
            if video.qc is not None:
                video.qc.close()
            if video.staging is not None:
                shutil.rmtree(video.staging, ignore_errors=True)
