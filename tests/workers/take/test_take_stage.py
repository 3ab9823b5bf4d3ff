"""The take's motion: the new speech's mouth on the take's own motion, fitted per --fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.errors import BadInputError
from core.schemas import RenderRequest, TakeOptions
from core.speech import AudioFeatures
from core.task import RenderTask
from workers.take.compose import JAW_INDEX, MOUTH_INDEX
from workers.take.stage import (
    TAKE_JAW_WEIGHT,
    TakeMotionStage,
    fitted_frames,
    jaw_match,
)


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


def test_jaw_match_reads_where_the_take_moves_with_the_speech():
    t = np.arange(200) / 25.0
    speech = 0.3 + 0.25 * np.sin(2 * np.pi * 3.0 * t)                   # a syllable rhythm
    take = np.concatenate([0.2 + 0.1 * np.sin(2 * np.pi * 3.0 * t[:100]),   # in step with it
                           0.2 - 0.1 * np.sin(2 * np.pi * 3.0 * t[100:])])  # against it
    match = jaw_match(take, speech, 15)
    assert match.shape == (200,) and match.dtype == np.float32
    assert match[10:85].min() > 0.9 and match[115:190].max() < 0.05
    still = jaw_match(np.full(200, 0.2), speech, 15)                    # a closed mouth matches nothing
    assert not still.any()


def test_the_jaw_blend_follows_the_match(short_take, short_track):
    """Voiced all through: the take's jaw is kept (up to TAKE_JAW_WEIGHT) only where it moves
    with the new speech's; where it moves against it, the jaw is the speech's alone."""
    track, face = short_track
    frames = track.num_frames
    rng = np.random.default_rng(1)
    speech = rng.uniform(0.0, 0.3, (frames, track.own.shape[1])).astype(np.float32)
    t = np.arange(frames) / track.fps
    speech[:, JAW_INDEX] = 0.3 + 0.25 * np.sin(2 * np.pi * 3.0 * t)
    own = track.own.copy()
    own[:, JAW_INDEX] = 0.2 + 0.1 * np.sin(2 * np.pi * 3.0 * t) * np.where(np.arange(frames) < frames // 2, 1, -1)
    take = dataclasses.replace(track, own=own)
    request = RenderRequest(id="dub", video=str(short_take), audio="speech.wav", output="out.mp4")
    zeros = np.zeros(frames, np.float32)
    audio = AudioFeatures(fps=track.fps, sample_rate=16000, duration_s=frames / track.fps, num_frames=frames,
                          log_mel=np.zeros((frames, 80), np.float32), energy_db=zeros, pitch_hz=zeros, voicing=zeros,
                          band_energy_db=np.zeros((frames, 4), np.float32), speech_probability=np.ones(frames, np.float32))
    task = RenderTask(request, face=face, take=take, motion=speech, audio=audio)
    TakeMotionStage()([task])
    jaw = task.motion[:, JAW_INDEX]
    kept = (jaw - speech[:, JAW_INDEX]) / (own[:, JAW_INDEX] - speech[:, JAW_INDEX])    # share of the take's
    assert kept.max() <= TAKE_JAW_WEIGHT + 1e-5
    assert np.median(kept[2:10]) > 0.6 * TAKE_JAW_WEIGHT
    assert np.abs(kept[frames // 2 + 4:frames - 2]).max() < 0.05 * TAKE_JAW_WEIGHT
