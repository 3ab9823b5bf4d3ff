"""The device a torch stage runs on follows its pool's resources, chosen in one place
(``core.devices.pool_device``): CUDA only for pools that reserve GPUs, and only where
CUDA exists."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.devices import pool_device
from core.stage import Resources
from pipeline.executors import LocalExecutor, StageWorker
from pipeline.graph import GraphConfig, PoolSpec, StageOptions, stage_factories

CUDA = torch.cuda.is_available()


def _graph(motion_gpus: float, decode_gpus: float) -> GraphConfig:
    base = GraphConfig()
    return dataclasses.replace(base, pools={**base.pools,
                                            "motion": PoolSpec(1, Resources(cpus=0.1, gpus=motion_gpus)),
                                            "decode": PoolSpec(2, Resources(cpus=0.5, gpus=decode_gpus))})


def test_device_follows_the_gpu_reservation():
    assert pool_device(0.0, cuda=True) == "cpu", "a CPU pool never takes a GPU it did not reserve"
    assert pool_device(0.25, cuda=True) == "cuda"
    assert pool_device(1.0, cuda=False) == "cpu", "a GPU pool without CUDA runs on the CPU"
    assert pool_device(1.0) == ("cuda" if CUDA else "cpu")


def test_workers_build_their_stage_on_the_pool_device():
    """The factories carry each pool's reservation; the worker resolves it where it runs."""
    gpu_graph = stage_factories(graph=_graph(motion_gpus=0.25, decode_gpus=0.5))
    cpu_graph = stage_factories(graph=_graph(motion_gpus=0.0, decode_gpus=0.0))
    assert (gpu_graph["motion"].gpus, gpu_graph["decode"].gpus) == (0.25, 0.5)
    for stage in ("motion", "decode"):
        assert StageWorker(gpu_graph[stage]).device() == ("cuda" if CUDA else "cpu"), stage
        assert StageWorker(cpu_graph[stage]).device() == "cpu", stage
    decoder = StageWorker(gpu_graph["decode"]).stage
    assert decoder.config.device == decoder.device     # the renderer gets the worker's device
    assert StageWorker(gpu_graph["encode"]).device() == "cpu"


def test_the_executor_builds_each_stage_for_its_pool():
    """Factories bound to a graph put the GPU pools' stages on CUDA (where it exists) in the
    executor that runs that graph; a device named in the options puts them all on it."""
    from core.storage import Storage

    graph = _graph(motion_gpus=0.0, decode_gpus=1.0)
    executor = LocalExecutor(stage_factories(StageOptions(Storage(), quality_check=False), graph), graph)
    assert executor.workers["decode"].device() == ("cuda" if CUDA else "cpu")
    assert executor.workers["motion"].device() == "cpu"
    one_device = stage_factories(StageOptions(Storage(), quality_check=False, device="cpu"), graph)
    assert StageWorker(one_device["decode"]).device() == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_pool_decodes_on_cuda_like_the_cpu(grace_task):
    """A decode worker of a GPU pool renders on CUDA, and its frames match the CPU's."""
    from core.task import FrameChunk
    from workers.decoder.renderer import DecoderConfig, FaceRenderer

    worker = StageWorker(stage_factories(graph=_graph(motion_gpus=0.25, decode_gpus=0.5))["decode"])
    assert worker.device() == "cuda"
    motion = np.repeat(grace_task.face.model.source_latent[None], 10, axis=0).astype(np.float32)
    motion[:, 6] = np.linspace(0.0, 0.8, 10)                       # the jaw opens over the chunk
    task = dataclasses.replace(grace_task, motion=motion)
    [chunk] = worker.run([FrameChunk(task, 0, 10)])
    on_cpu = FaceRenderer(grace_task.face, DecoderConfig(device="cpu")).render(motion)
    assert chunk.frames.shape == on_cpu.shape
    assert np.abs(chunk.frames.astype(np.int16) - on_cpu).mean() < 2.0
