"""Silences and blinks on every render: the real audio and motion stages on a clip of real
speech with real pauses in it (two shared recordings joined by room noise)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io.wavfile

from core.schemas import RenderControls, RenderRequest
from core.task import RenderTask
from workers.audio.decode import load_audio
from workers.face.latents import DYN_SLICE, DYNAMICS, MOTION_DIM
from workers.motion.silences import (
    MAX_BLINKS_PER_MINUTE,
    MIN_BLINKS_PER_MINUTE,
    blink_onsets,
    ensure_blinks,
    rest_weight,
)

JAW = DYN_SLICE.start + DYNAMICS.index("jaw_open")
FPS = 25.0


@pytest.fixture(scope="module")
def speech_with_pauses(shared_assets, tmp_path_factory):
    """a0007, 1.5 s of room noise, a0009, 1 s of room noise: 11 s with two long silences."""
    first = load_audio(shared_assets / "speech_cmu_arctic_a0007_4s.wav", 16000, 60)
    second = load_audio(shared_assets / "speech_cmu_arctic_a0009_3s.wav", 16000, 60)
    room = np.random.default_rng(3).standard_normal(16000 * 3).astype(np.float32) * 0.003
    wave = np.concatenate([first, room[:24000], second, room[:16000]])
    path = tmp_path_factory.mktemp("silences") / "two_phrases.wav"
    scipy.io.wavfile.write(path, 16000, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
    return path


@pytest.mark.parametrize("generator", ["diffusion", "procedural"])
def test_mouth_rests_closed_in_silences_and_eyes_blink_at_a_human_rate(generator, speech_with_pauses, grace_task):
    from workers.audio.stage import AudioFeatureStage
    from workers.audio.vad import speech_mask
    from workers.motion.stage import MotionStage

    request = RenderRequest(id="pauses", image=grace_task.request.image, audio=str(speech_with_pauses),
                            output="/nonexistent/unused.mp4", controls=RenderControls(motion=generator, seed=1))
    task = RenderTask(request, face=grace_task.face)
    AudioFeatureStage()([task])
    MotionStage()([task])
    assert task.failure is None, task.failure
    motion, fps = task.motion, task.audio.fps
    speaking = speech_mask(task.audio.speech_probability, fps)
    resting = rest_weight(speaking, fps) >= 1.0
    # The clip has silences: the leading one, the 1.5 s pause and the trailing second.
    assert resting.sum() >= 1.5 * fps, resting.sum()
    assert np.all(motion[resting, JAW] < 0.06), motion[resting, JAW].max()
    # ...yet not frozen: real mouths keep small movements in pauses.
    assert motion[resting, JAW].std() > 0.003 and np.ptp(motion[resting, JAW]) > 0.01, motion[resting, JAW]
    assert np.median(motion[speaking, JAW]) > 3 * np.median(motion[resting, JAW]) + 0.02
    minutes = len(motion) / fps / 60.0
    blinks = len(blink_onsets(motion, fps))
    assert MIN_BLINKS_PER_MINUTE * minutes - 1 < blinks <= MAX_BLINKS_PER_MINUTE * minutes + 1, blinks
    # Head settles in the long pause: slower than while speaking, but not frozen.
    head_speed = np.linalg.norm(np.diff(motion[:, :3], axis=0), axis=1)
    assert head_speed[resting[1:]].mean() < head_speed[speaking[1:]].mean()
    assert task.transcript.source == "recognised" and task.transcript.used, task.transcript
    assert task.model_versions["silences"] and task.model_versions["voice_activity"]


def test_added_blinks_fill_the_blink_free_stretches_and_keep_the_generators_own():
    n = int(11 * FPS)
    motion = np.zeros((n, MOTION_DIM), np.float32)
    speaking = np.ones(n, bool)
    speaking[100:130] = False                                  # a pause starting at 4.0 s
    out = ensure_blinks(motion, speaking, FPS, seed=0)
    onsets = blink_onsets(out, FPS)
    assert len(onsets) == int(np.ceil(MIN_BLINKS_PER_MINUTE * 11 / 60))
    assert np.min(np.diff(onsets)) >= FPS                      # at least 1 s apart
    assert np.any(np.abs(onsets - 100) <= 1)                  # one moved to the pause start
    # A generator that already blinks often (27 a minute) keeps its blinks and gets none added.
    lids = [DYN_SLICE.start + DYNAMICS.index(k) for k in ("blink_left", "blink_right")]
    busy = motion.copy()
    for start in range(10, n - 10, 60):
        busy[start:start + 4, lids] = 1.0
    assert np.array_equal(ensure_blinks(busy, speaking, FPS, seed=0), busy)
    # One blinking 38 a minute loses its excess blinks down to 30 a minute; the rest stay.
    busier = motion.copy()
    for start in range(10, n - 10, 40):
        busier[start:start + 4, lids] = 1.0
    kept = ensure_blinks(busier, speaking, FPS, seed=0)
    onsets = blink_onsets(kept, FPS)
    assert len(onsets) == int(MAX_BLINKS_PER_MINUTE * 11 / 60), onsets
    assert set(onsets.tolist()) <= set(range(10, n - 10, 40))
    assert np.all(kept[:, lids] <= 1.0) and kept[:, lids].min() >= 0.0
    for onset in onsets:
        np.testing.assert_array_equal(kept[onset:onset + 4, lids], busier[onset:onset + 4, lids])
