"""EncodeStage: chunks of a render must arrive in order and without gaps, or nothing is written."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import TransientError
from core.schemas import RenderControls, RenderRequest
from core.task import FrameChunk, RenderTask
from workers.encode.stage import EncodeStage


def _chunks(shared_assets, output, frames: int = 30, size: int = 64):
    request = RenderRequest(id="clip", image=str(shared_assets / "face_grace_hopper.jpg"),
                            audio=str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"), output=str(output),
                            controls=RenderControls(size=128))
    task = RenderTask(request, audio_path=request.audio, motion=np.zeros((frames, 20), np.float32))
    rng = np.random.default_rng(0)
    return [FrameChunk(task, start, min(frames, start + 10),
                       rng.integers(0, 255, (min(frames, start + 10) - start, size, size, 3), dtype=np.uint8))
            for start in range(0, frames, 10)]


def test_in_order_chunks_make_one_video(shared_assets, tmp_path):
    output = tmp_path / "clip.mp4"
    stage = EncodeStage()
    for chunk in _chunks(shared_assets, output):
        stage([chunk])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.mp4.provenance.json"]


def test_a_lost_chunk_fails_the_attempt_and_leaves_nothing(shared_assets, tmp_path):
    output = tmp_path / "clip.mp4"
    stage = EncodeStage()
    first, _lost, last = _chunks(shared_assets, output)
    stage([first])
    with pytest.raises(TransientError, match="expected frame 10"):
        stage([last])                    # would otherwise close a video missing frames 10-19
    assert list(tmp_path.iterdir()) == []


def test_a_restarted_encoder_never_starts_mid_render(shared_assets, tmp_path):
    output = tmp_path / "clip.mp4"
    with pytest.raises(TransientError, match="got 10"):
        EncodeStage()([_chunks(shared_assets, output)[1]])
    assert list(tmp_path.iterdir()) == []
