"""The motion stage samples with the controls the request carries: a batch row's sampling
steps and guidance scales reach the diffusion transformer (the shipped checkpoint, real speech,
the real audio and motion stages)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.task import RenderTask
from pipeline.request_files import parse_request_rows
from workers.audio.stage import AudioFeatureStage
from workers.motion.base import SamplingOptions, motion_controls
from workers.motion.diffusion import MotionTransformer
from workers.motion.stage import MotionStage


@pytest.fixture(scope="module")
def row_requests(shared_assets):
    """Three rows of one request file: the defaults, few steps without guidance, and other
    steps with every guidance pass on (gaze given) at non-default scales."""
    common = {"image": str(shared_assets / "face_grace_hopper.jpg"),
              "audio": str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"), "recognise": "false", "seed": "2"}
    rows = [{"id": "defaults", **common},
            {"id": "unguided", **common, "sampling_steps": "2", "audio_guidance": "0", "gaze_guidance": "0"},
            {"id": "guided", **common, "sampling_steps": "3", "audio_guidance": "0.8", "gaze_guidance": "1.5",
             "gaze_yaw": "10", "gaze_pitch": "0"}]
    parsed = parse_request_rows(enumerate(rows, start=2), "/nonexistent/out")
    assert parsed.invalid == []
    return {request.id: request for request, _ in parsed.valid}


def test_the_rows_controls_map_to_the_samplers_options(row_requests):
    assert motion_controls(row_requests["defaults"].controls).sampling == SamplingOptions(10, 0.5, 1.0)
    assert motion_controls(row_requests["unguided"].controls).sampling == SamplingOptions(2, 0.0, 0.0)
    guided = motion_controls(row_requests["guided"].controls)
    assert guided.sampling == SamplingOptions(3, 0.8, 1.5) and guided.gaze == (10.0, 0.0) and guided.seed == 2


def test_a_batch_rows_steps_and_guidance_reach_the_diffusion_transformer(row_requests, grace_task):
    """Each DDIM step is one forward pass of the transformer over a batch of guidance variants:
    all conditions, plus no-audio when lambda_A > 0, plus no-gaze when a gaze is given and
    lambda_g > 0. Counting the passes and their batch sizes shows the steps and which
    guidance the stage sampled with."""
    passes: list[int] = []

    def count(module, inputs, output):
        if isinstance(module, MotionTransformer):
            passes.append(inputs[0].shape[0])

    stage = MotionStage(device="cpu")
    seen: dict[str, list[int]] = {}
    motion: dict[str, np.ndarray] = {}
    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        for name in ("unguided", "guided"):
            task = RenderTask(row_requests[name], face=grace_task.face)
            AudioFeatureStage()([task])
            passes.clear()
            stage([task])
            assert task.failure is None, task.failure
            seen[name], motion[name] = list(passes), task.motion
    finally:
        hook.remove()
    windows = len(seen["unguided"]) // 2
    assert windows >= 1 and len(seen["unguided"]) == 2 * windows, seen["unguided"]
    assert set(seen["unguided"]) == {1}                     # lambda_A = lambda_g = 0: one variant
    assert len(seen["guided"]) == 3 * windows               # 3 steps per window, same windows
    assert set(seen["guided"]) == {3}                       # all, no audio, no gaze
    assert motion["unguided"].shape == motion["guided"].shape
