"""Decoding stage: frame chunks of motion latents -> RGB frames."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from typing import ClassVar

from core.schemas import RenderControls
from core.stage import Resources, Stage
from core.task import FrameChunk, RenderTask
from workers.decoder.renderer import DECODER_VERSION, DecoderConfig, FaceRenderer


class DecodeStage(Stage[FrameChunk, FrameChunk]):
    """Renders each chunk's frames; keeps the renderers of the last few tasks warm."""

    name: ClassVar[str] = "decode"
    resources: ClassVar[Resources] = Resources(cpus=0.5)

    record: ClassVar[str] = "chunk"

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        return {"decoder": DECODER_VERSION}

    def __init__(self, config: DecoderConfig = DecoderConfig(), cache_size: int = 4, device: str | None = None):
        """``device``: where to warp, overriding ``config.device`` (the graph passes its pool's
        device, ``core.devices.pool_device``)."""
        self.config = config if device is None else dataclasses.replace(config, device=device)
        self.device = self.config.device
        self.cache_size = cache_size
        self._renderers: OrderedDict[tuple[str, str], FaceRenderer] = OrderedDict()

    def renderer(self, task: RenderTask) -> FaceRenderer:
        key = (task.request.id, task.request.output)
        if key not in self._renderers:
            controls = task.request.controls
            self._renderers[key] = FaceRenderer(task.face, self.config, distance=controls.distance,
                                                paste_back=controls.paste_back)
            while len(self._renderers) > self.cache_size:
                self._renderers.popitem(last=False)
        self._renderers.move_to_end(key)
        return self._renderers[key]

    def __call__(self, batch: list[FrameChunk]) -> list[FrameChunk]:
        for chunk in batch:
            if chunk.task.failure is not None:
                continue
            started = time.perf_counter()
            chunk.frames = self.renderer(chunk.task).render(chunk.task.motion[chunk.start:chunk.stop])
            chunk.task.model_versions["decoder"] = DECODER_VERSION
            spent = time.perf_counter() - started
            for seconds in (chunk.task.seconds, chunk.seconds):
                seconds[self.name] = seconds.get(self.name, 0.0) + spent
        return batch
