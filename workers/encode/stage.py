"""Encode stage: frame chunks in order -> one MP4 per render, written atomically."""

from __future__ import annotations

import time
from typing import ClassVar

from pipeline.stage import Resources, Stage
from pipeline.task import FrameChunk, StageFailure
from pipeline.identity import sha256_file
from workers.encode.video import Mp4Writer


class EncodeStage(Stage[FrameChunk, FrameChunk]):
    """Appends each chunk to its render's video; the last chunk closes and hashes it.

    Chunks of one render must arrive in order (the runner and the Ray graph route all of a
    render's chunks to one encoder). A failure aborts the writer, leaving no output.
    """

    name: ClassVar[str] = "encode"
    resources: ClassVar[Resources] = Resources(cpus=1.0)

    def __init__(self, crf: int = 18, preset: str = "veryfast"):
        self.crf = crf
        self.preset = preset
        self._writers: dict[tuple[str, str], Mp4Writer] = {}

    def __call__(self, batch: list[FrameChunk]) -> list[FrameChunk]:
        for chunk in batch:
            task = chunk.task
            key = (task.request.id, task.request.output)
            if task.failure is not None:
                self.abort(key)
                continue
            started = time.perf_counter()
            try:
                writer = self._writers.get(key)
                if writer is None:
                    height, width = chunk.frames.shape[1:3]
                    writer = self._writers[key] = Mp4Writer(task.request.output, (width, height),
                                                            task.request.controls.fps, task.audio_path,
                                                            self.crf, self.preset)
                writer.write(chunk.frames)
                chunk.frames = None          # written; free the memory now
                if chunk.is_last:
                    del self._writers[key]
                    task.output_sha256 = sha256_file(writer.close())
            except (RuntimeError, OSError) as err:
                self.abort(key)
                task.failure = StageFailure(stage=self.name, message=str(err))
            task.seconds[self.name] = task.seconds.get(self.name, 0.0) + time.perf_counter() - started
        return batch

    def abort(self, key: tuple[str, str]) -> None:
        writer = self._writers.pop(key, None)
        if writer is not None:
            writer.abort()
