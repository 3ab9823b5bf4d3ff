"""Sampling machinery of the motion diffusion transformer: windows, streaming, seeds, guidance
passes, checkpoint round trip. Uses a small freshly initialised model so it runs in seconds;
the trained checkpoint's behaviour is tested in test_diffusion_model.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.schemas import RenderControls
from jobs.train_motion import export
from workers.face.latents import GAZE_SLICE, MOTION_DIM, POSE_SLICE
from workers.motion.base import SamplingOptions, sampling_options
from workers.motion.conditioning import AUDIO_DIM, silence_matrix
from workers.motion.diffusion import (
    Conditions,
    DiffusionConfig,
    MotionTransformer,
    sample_motion,
    stream_motion,
)
from workers.motion.learned import (
    compose_motion,
    from_model_rate,
    load_model,
    locate_checkpoint,
    to_model_rate,
)

CONFIG = DiffusionConfig(width=64, layers=2, heads=2, window=40, context=6, overlap=4)


def options(steps: int, **controls) -> SamplingOptions:
    """The sampler's settings of RenderControls with ``steps`` DDIM steps (guidance as given or default)."""
    return sampling_options(RenderControls(sampling_steps=steps, **controls))


@pytest.fixture(scope="module")
def model() -> MotionTransformer:
    torch.manual_seed(0)
    net = MotionTransformer(CONFIG)
    with torch.no_grad():   # adaLN-zero starts as the identity; give the blocks something to do
        for block in net.blocks:
            block.modulation.weight.normal_(0.0, 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((173, AUDIO_DIM)).astype(np.float32)


@pytest.mark.parametrize("frames", [1, 7, 40, 41, 173])
def test_any_length_gives_one_row_per_frame(model, rows, frames):
    out = sample_motion(model, rows[:frames], Conditions(), seed=0, options=options(4))
    assert out.shape == (frames, MOTION_DIM)
    assert np.isfinite(out).all()


def test_streaming_equals_whole_clip_and_yields_before_the_audio_ends(model, rows):
    four_steps = options(4)
    whole = sample_motion(model, rows, Conditions(gaze=(10.0, -5.0)), seed=3, options=four_steps)
    chunks = [rows[i:i + 13] for i in range(0, len(rows), 13)]
    fed = 0
    yielded_at = []

    def audio():
        nonlocal fed
        for chunk in chunks:
            fed += len(chunk)
            yield chunk

    parts = []
    for part in stream_motion(model, audio(), Conditions(gaze=(10.0, -5.0)), seed=3, options=four_steps):
        parts.append(part)
        yielded_at.append(fed)
    assert np.array_equal(np.concatenate(parts), whole)
    # The first window is final once W frames of audio have arrived, long before the end.
    assert yielded_at[0] < len(rows) / 2


def test_same_seed_same_motion_other_seed_other_motion(model, rows):
    four_steps = options(4)
    a = sample_motion(model, rows, Conditions(), seed=5, options=four_steps)
    b = sample_motion(model, rows, Conditions(), seed=5, options=four_steps)
    c = sample_motion(model, rows, Conditions(), seed=6, options=four_steps)
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_guidance_scales_change_the_sample(model, rows):
    base = sample_motion(model, rows[:60], Conditions(gaze=(15.0, 0.0)), seed=0, options=options(4))
    unguided = sample_motion(model, rows[:60], Conditions(gaze=(15.0, 0.0)), seed=0,
                             options=options(4, audio_guidance=0.0, gaze_guidance=0.0))
    assert np.abs(base - unguided).mean() > 1e-4


def test_audio_guidance_reaches_the_head_pose_only_when_asked(model, rows):
    def sample(pose_guidance):
        return sample_motion(model, rows[:60], Conditions(), seed=0,
                             options=SamplingOptions(steps=4, audio_guidance=0.5, gaze_guidance=1.0,
                                                     pose_audio_guidance=pose_guidance))

    face_only, with_pose = sample(0.0), sample(0.5)
    assert np.abs(face_only[:, POSE_SLICE] - with_pose[:, POSE_SLICE]).mean() > 1e-4


def test_checkpoint_round_trip_reproduces_the_samples(model, rows, tmp_path):
    path = export(model, tmp_path, {"hours": 0.0, "utterances": 0}, {"steps": 0})
    meta = json.loads((tmp_path / "motion-diffusion.json").read_text())
    assert meta["config"]["window"] == CONFIG.window and len(meta["sha256"]) == 64
    checkpoint = locate_checkpoint(path)
    assert checkpoint.version == meta["version"]
    loaded = load_model(checkpoint)
    three_steps = options(3)
    assert np.array_equal(sample_motion(loaded, rows[:50], Conditions(), 2, three_steps),
                          sample_motion(model, rows[:50], Conditions(), 2, three_steps))


def test_checkpoint_of_other_audio_features_is_refused(model, tmp_path):
    """A model trained on another feature recipe would read garbage: refuse it by name."""
    from core.errors import BadInputError

    path = export(model, tmp_path, {"hours": 0.0, "utterances": 0}, {"steps": 0})
    meta_path = tmp_path / "motion-diffusion.json"
    meta = json.loads(meta_path.read_text())
    meta["audio_features"] = "raw-89"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BadInputError, match="reads audio features 'raw-89'"):
        load_model(locate_checkpoint(path))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from core.errors import BadInputError

    with pytest.raises(BadInputError, match="motion checkpoint not found"):
        locate_checkpoint(tmp_path / "nothing.safetensors")


def test_resampling_between_frame_rates_keeps_the_curve():
    t = np.arange(50) / 25.0
    rows = np.stack([np.sin(t * 3), np.cos(t * 2)], 1).astype(np.float32)
    at30 = from_model_rate(rows, 30.0, 60)
    assert at30.shape == (60, 2)
    back = to_model_rate(at30, 30.0)
    assert back.shape == (50, 2)
    assert np.abs(back[2:-2] - rows[2:-2]).max() < 0.03


def test_compose_motion_gaze_is_absolute_only_when_asked():
    source = np.zeros(MOTION_DIM, np.float32)
    source[GAZE_SLICE] = (4.0, 2.0)
    source[0] = 3.0
    relative = np.zeros((5, MOTION_DIM), np.float32)
    relative[:, GAZE_SLICE] = (10.0, -3.0)
    relative[:, 0] = 40.0        # far past what a photo holds
    free = compose_motion(relative, source, gaze_given=False)
    asked = compose_motion(relative, source, gaze_given=True)
    assert np.allclose(free[:, GAZE_SLICE], (14.0, -1.0))
    assert np.allclose(asked[:, GAZE_SLICE], (10.0, -3.0))
    assert np.all(free[:, 0] <= 3.0 + 8.0 + 1e-5)


def test_silence_rows_are_finite():
    assert np.isfinite(silence_matrix(3)).all()
