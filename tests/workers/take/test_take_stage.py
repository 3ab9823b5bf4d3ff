"""The take's motion: the new speech's mouth on the take's own motion, fitted per --fit."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInputError
from core.schemas import RenderRequest, TakeOptions
from core.task import RenderTask
from workers.take.compose import JAW_INDEX, MOUTH_INDEX
from workers.take.stage import TakeMotionStage, fitted_frames


def test_fit_policies():
    assert fitted_frames(100, 80, 25.0, "trim", "t.mp4") == 80
    assert fitted_frames(80, 100, 25.0, "trim", "t.mp4") == 80
    assert fitted_frames(80, 100, 25.0, "hold", "t.mp4") == 100
    assert fitted_frames(100, 80, 25.0, "hold", "t.mp4") == 80
    assert fitted_frames(100, 80, 25.0, "error", "t.mp4") == 80       # 0.8 s apart: allowed
    with pytest.raises(BadInputError, match="--fit error allows 1 s"):
        fitted_frames(100, 70, 25.0, "error", "t.mp4")


@pytest.mark.parametrize("fit, frames", [("trim", 30), ("hold", 40)])
def test_the_speech_gives_the_mouth_and_the_take_everything_else(short_take, short_track, fit, frames):
    track, face = short_track
    request = RenderRequest(id="dub", video=str(short_take), audio="speech.wav", output="out.mp4",
                            take=TakeOptions(fit=fit))
    speech = np.random.default_rng(0).uniform(0.0, 0.8, (40, track.own.shape[1])).astype(np.float32)
    task = RenderTask(request, face=face, take=track, motion=speech)
    TakeMotionStage()([task])
    assert task.failure is None and task.motion.shape == (frames, track.own.shape[1])
    # no speech-activity record here: the mouth channels are the speech's, all of them
    assert np.allclose(task.motion[:, MOUTH_INDEX], speech[:frames][:, MOUTH_INDEX])
    others = np.setdiff1d(np.arange(track.own.shape[1]), MOUTH_INDEX)
    held = np.minimum(np.arange(frames), track.num_frames - 1)
    assert np.array_equal(task.motion[:, others], track.own[held][:, others])
    assert JAW_INDEX in MOUTH_INDEX
