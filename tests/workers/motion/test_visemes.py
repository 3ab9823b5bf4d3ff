"""Viseme correction of generated motion (workers.motion.visemes)."""

from __future__ import annotations

import numpy as np
import pytest

from workers.face.latents import DYN_SLICE, DYNAMICS, MOTION_DIM
from workers.motion.articulation import (
    MOUTH_CHANNELS,
    MOUTH_DYN_INDEX,
    Phone,
    bilabial_centre_frames,
)
from workers.motion.visemes import apply_visemes, opening_gain

PHONES = [Phone("b", 0.20, 0.28), Phone("a", 0.28, 0.48), Phone("m", 0.48, 0.58), Phone("u", 0.58, 0.80)]


def test_only_mouth_channels_change_and_closures_are_exact():
    rng = np.random.default_rng(0)
    motion = rng.uniform(0.0, 0.6, (30, MOTION_DIM)).astype(np.float32)
    source = np.zeros(MOTION_DIM, np.float32)
    energy = np.full(30, -15.0)
    out = apply_visemes(motion, PHONES, 25.0, source, energy_db=energy)
    mouth_cols = [DYN_SLICE.start + i for i in MOUTH_DYN_INDEX]
    others = [c for c in range(MOTION_DIM) if c not in mouth_cols]
    np.testing.assert_array_equal(out[:, others], motion[:, others])
    press = DYN_SLICE.start + DYNAMICS.index("lip_press")
    jaw = DYN_SLICE.start + DYNAMICS.index("jaw_open")
    for frame in bilabial_centre_frames(PHONES, 30, 25.0):
        assert out[frame, press] >= 0.95 - 1e-6 and out[frame, jaw] <= 0.06 + 1e-6
    vowel_a = int(0.38 * 25)
    assert out[vowel_a, jaw] > out[bilabial_centre_frames(PHONES, 30, 25.0)[0], jaw] + 0.3
    pucker = DYN_SLICE.start + DYNAMICS.index("lip_pucker")
    assert out[int(0.72 * 25), pucker] > out[vowel_a, pucker]


def test_no_phones_leaves_motion_unchanged_and_loud_frames_open_wider():
    motion = np.full((10, MOTION_DIM), 0.3, np.float32)
    np.testing.assert_array_equal(apply_visemes(motion, [], 25.0, np.zeros(MOTION_DIM)), motion)
    gain = opening_gain(np.array([-80.0, -40.0, -20.0, -12.0, -10.0]))
    assert np.all(np.diff(gain) >= 0) and gain[0] < gain[-1]
    assert len(MOUTH_CHANNELS) == 6


def test_a_short_bilabial_is_shut_for_at_least_two_frames():
    # A 30 ms /b/ (as the aligner places the b of "clubs") would be one frame of closure;
    # real closures last 60-120 ms, and one frame at the training targets' 0.95 press reads as
    # parted lips on a smiling portrait's rendered frames.
    phones = [Phone("a", 0.10, 0.40), Phone("b", 0.40, 0.43), Phone("a", 0.43, 0.80)]
    motion = np.full((25, MOTION_DIM), 0.4, np.float32)
    out = apply_visemes(motion, phones, 25.0, np.zeros(MOTION_DIM, np.float32))
    press = out[:, DYN_SLICE.start + DYNAMICS.index("lip_press")]
    jaw = out[:, DYN_SLICE.start + DYNAMICS.index("jaw_open")]
    shut = np.flatnonzero((press >= 1.0 - 1e-6) & (jaw <= 1e-6))
    assert len(shut) >= 2 and np.all(np.diff(shut) == 1) and 9 <= shut[0] <= 11, shut
    assert jaw[5] > 0.3 and jaw[16] > 0.3      # the vowels either side stay open


SENTENCE = "Maybe the big brown bear will come back by the pool before noon, but the cat sat on a mat all day."


@pytest.fixture(scope="module")
def spoken_task(tmp_path_factory, align, shared_assets):
    """Real espeak-ng speech of SENTENCE through the real audio and motion stages (diffusion),
    the transcript given, on Eileen Collins' photo."""
    from scipy.io import wavfile

    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.audio.espeak import synthesize
    from workers.audio.stage import AudioFeatureStage
    from workers.motion.stage import MotionStage

    wave, _ = synthesize(SENTENCE, "en-us", rate_wpm=160)
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    wavfile.write(path, 16000, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
    image = shared_assets / "face_astronaut_eileen_collins.png"
    face = align(image).face
    task = RenderTask(RenderRequest(id="loud", image=str(image), audio=str(path), output="/nonexistent/unused.mp4",
                                    controls=RenderControls(motion="diffusion", transcript=SENTENCE, seed=0)), face=face)
    AudioFeatureStage()([task])
    MotionStage()([task])
    assert task.failure is None and len(task.phones) > 40, task.failure
    return task


def _channel(task, name: str) -> np.ndarray:
    return task.motion[:, DYN_SLICE.start + DYNAMICS.index(name)]


def test_the_recognised_words_mouth_opens_with_the_loudness_of_real_speech(spoken_task):
    """Issue 19: with a transcript the mouth took its opening from the phones alone (a loudness
    gain of 1-2 that never closed it in quiet stretches) and followed loudness less than
    procedural's loudness-driven jaw on the rendered held-out clips (lip r 0.53 against 0.67).
    Real espeak-ng speech through the audio and motion stages, the transcript given: the jaw
    follows the frame level (r 0.58 with visemes-4, whose jaw also opens with the loudness
    whatever the phone; 0.45 with visemes-3, 0.32 with visemes-2's gain)."""
    jaw = _channel(spoken_task, "jaw_open")
    r = float(np.corrcoef(jaw, spoken_task.audio.energy_db)[0, 1])
    assert r > 0.52, r
    # The closures still shut whatever the level (the gain leaves them alone).
    shut = _channel(spoken_task, "lip_press") >= 1.0 - 1e-6
    assert shut.sum() >= 8 and jaw[shut].max() <= 0.06 + 1e-6, (shut.sum(), jaw[shut].max())


def test_closures_sit_in_the_quiet_of_each_bilabial_not_on_the_vowel_it_opens_into(spoken_task):
    """Issue 19 round 6: a closure shorter than CLOSURE_MIN_S was lengthened forward, so the
    lips stayed shut over the burst and the loud vowel after a /p/ or /b/ ("by": closed at the
    vowel's -1 dB), the main reason the default's lip r lost to procedural on p / b / m-rich
    prompts. Now each is the quietest window within a frame of the bilabial: on real speech
    every aligned p / b / m still has a shut frame where talkfarm eval looks (its frames +-1),
    and the shut frames are quieter (mean -15.8 dB re the speech level; -11.5 when lengthened
    forward)."""
    from workers.motion.articulation import viseme_class

    task = spoken_task
    fps = task.audio.fps
    shut = (_channel(task, "lip_press") >= 1.0 - 1e-6) & (_channel(task, "jaw_open") <= 1e-6)
    level = task.audio.energy_db - np.percentile(task.audio.energy_db, 95)
    bilabials = [p for p in task.phones if viseme_class(p.symbol).name == "bilabial"]
    assert len(bilabials) >= 10
    for phone in bilabials:
        first = int(np.floor(phone.start_s * fps))
        last = max(int(np.ceil(phone.end_s * fps)) - 1, first)
        assert shut[max(first - 1, 0):last + 2].any(), (phone, np.flatnonzero(shut))
    assert level[shut].mean() < -14.0, level[shut].mean()


def test_the_lips_come_together_in_the_quiet_before_and_after_real_speech(spoken_task):
    """Issue 19 round 6: in pauses the viseme mouth kept the silence target's light press
    (0.50 on this clip's frames 40 dB and more under the speech level), so the photo's smile
    parted the lips there as much as on a closure, against the loudness envelope's lowest
    frames. Now the lips are together there (0.95)."""
    level = spoken_task.audio.energy_db - np.percentile(spoken_task.audio.energy_db, 95)
    quiet = level < -40.0
    assert quiet.sum() >= 3
    assert _channel(spoken_task, "lip_press")[quiet].mean() > 0.9, _channel(spoken_task, "lip_press")[quiet]


@pytest.fixture(scope="module")
def noisy_pause_task(tmp_path_factory, align, shared_assets):
    """Two real espeak-ng phrases 0.7 s apart under a steady noise floor 27 dB below the speech
    level (as the 64 kb/s LibriVox readings have: their pauses sit at -21 .. -33 dB), through
    the real audio and motion stages, the transcript given, on Eileen Collins' photo."""
    from scipy.io import wavfile

    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.audio.espeak import synthesize
    from workers.audio.stage import AudioFeatureStage
    from workers.motion.stage import MotionStage

    first, _ = synthesize("Bring me the map.", "en-us", rate_wpm=160)
    second, _ = synthesize("Put it on the table by the lamp.", "en-us", rate_wpm=160)
    wave = np.concatenate([np.zeros(4000), first, np.zeros(11200), second, np.zeros(4000)])
    frames = wave[: len(wave) // 640 * 640].reshape(-1, 640)
    speech_rms = float(np.percentile(np.sqrt((frames ** 2).mean(axis=1)), 95))
    wave = wave + np.random.default_rng(5).standard_normal(len(wave)) * speech_rms * 10 ** (-27 / 20)
    path = tmp_path_factory.mktemp("noisy") / "noisy_pause.wav"
    wavfile.write(path, 16000, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
    image = shared_assets / "face_astronaut_eileen_collins.png"
    text = "Bring me the map. Put it on the table by the lamp."
    task = RenderTask(RenderRequest(id="noisy", image=str(image), audio=str(path), output="/nonexistent/unused.mp4",
                                    controls=RenderControls(motion="diffusion", transcript=text, seed=0)),
                      face=align(image).face)
    AudioFeatureStage()([task])
    MotionStage()([task])
    assert task.failure is None and len(task.phones) > 15, task.failure
    return task


def test_the_lips_come_together_where_the_voice_detector_hears_no_speech_above_a_noise_floor(noisy_pause_task):
    """Issue 19 round 7: lips were pressed together in pauses by the level alone (40 dB and more
    under the speech level), so pauses at a recording's noise floor (-21 .. -33 dB re the speech
    level on the LibriVox readings) kept the silence target's light press, and rendered more
    open (0.05-0.06 of the mouth width) than the loud /m/ closures beside them: lip r lost to
    procedural on those clips. Now silero-vad's non-speech presses them: on this clip's pause
    and edges, under a -27 dB floor, the press is over 0.9 on every non-speech frame away
    from speech (visemes-4: 0.1-0.3), and the lips still part on the words."""
    from workers.audio.vad import speech_mask

    task = noisy_pause_task
    fps = task.audio.fps
    speaking = speech_mask(task.audio.speech_probability, fps)
    level = task.audio.energy_db - np.percentile(task.audio.energy_db, 95)
    away = ~speaking & ~np.roll(speaking, 2) & ~np.roll(speaking, -2)
    away[:2] = away[-2:] = False
    # The pause reads as non-speech to the VAD and sits above the level threshold's reach.
    middle = away[int(0.9 * fps):int(1.0 * fps + len(task.motion) * 0.4)]
    assert away.sum() >= 10 and middle.any(), np.flatnonzero(away)
    assert np.median(level[away]) > -33.0, np.median(level[away])
    press = _channel(task, "lip_press")
    assert press[away].min() > 0.9, press[away]
    assert np.median(_channel(task, "jaw_open")[speaking]) > 0.2
    assert np.median(press[speaking]) < 0.5, np.median(press[speaking])


def test_a_short_m_is_shut_for_its_murmur_and_a_stop_for_its_gap(spoken_task):
    """Issue 19 round 7: every short bilabial was shut for 120 ms (3 frames). An /m/'s closure
    is its murmur, as loud as the vowels beside it (-2 .. -10 dB re the speech level), so the
    third frame was a shut mouth on a loud vowel: the largest share of what lip r lost on the
    LibriVox readings. Now a short /m/ is shut for 2 frames (its murmur), a short /p/ or /b/
    still for 3 (its silent gap); every one keeps a shut frame where the eval looks."""
    from workers.motion.articulation import viseme_class
    from workers.motion.visemes import _runs

    task = spoken_task
    fps = task.audio.fps
    shut = (_channel(task, "lip_press") >= 1.0 - 1e-6) & (_channel(task, "jaw_open") <= 1e-6)
    runs = _runs(shut)
    lengths = {"nasal": [], "stop": []}
    phones = list(task.phones)
    for index, phone in enumerate(phones):
        beside = [viseme_class(p.symbol).name for p in phones[max(index - 1, 0):index + 2] if p is not phone]
        if "bilabial" in beside:        # "come back": the /m/'s and the /b/'s closures are one
            continue
        # Under 160 ms the closed middle (half the phone) is under 2 frames: lengthened.
        if viseme_class(phone.symbol).name != "bilabial" or phone.end_s - phone.start_s >= 0.16:
            continue
        first = int(np.floor(phone.start_s * fps))
        last = max(int(np.ceil(phone.end_s * fps)) - 1, first)
        near = [end - start for start, end in runs if start <= last + 1 and end > first - 1]
        assert near, (phone, runs)
        lengths["nasal" if phone.symbol.strip().lower() == "m" else "stop"].append(max(near))
    assert len(lengths["nasal"]) >= 2 and len(lengths["stop"]) >= 4, lengths
    assert max(lengths["nasal"]) <= 2 and min(lengths["stop"]) >= 3, lengths
