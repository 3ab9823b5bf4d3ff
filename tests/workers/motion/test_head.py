"""The head turns about the neck and the body sways: translation on every render, from the
real audio and motion stages, and the pivot's geometry on its own."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.schemas import RenderControls, RenderRequest
from core.task import RenderTask
from workers.face.latents import MOTION_DIM
from workers.motion.head import NECK_PIVOT, move_with_neck

# Interpupillary over outer-eye-corner distance (adult means, ~63 / ~90 mm): the canonical unit
# in interocular distances, for THEval's "% IOD".
IOD_PER_UNIT = 1 / 0.7


def test_a_turn_about_the_neck_moves_the_face_toward_the_turn():
    source = np.zeros(MOTION_DIM, np.float32)
    source[5] = math.log(0.3)                       # a canonical unit is 0.3 of the crop side
    still = np.repeat(source[None], 50, 0)
    turned = still.copy()
    turned[:, 0] = 10.0                              # +yaw: the nose turns toward image left
    turned[:, 1] = -6.0                              # -pitch: the head tips back (up)
    a, b = (move_with_neck(m, source, 25.0, seed=4) for m in (still, turned))
    # Same seed, same sway: the difference is the pivot alone.
    dx, dy = (b[:, 3:5] - a[:, 3:5]).mean(0) / 0.3
    pivot_y, pivot_z = NECK_PIVOT[1:]
    # A turn about a pivot behind the face swings the face toward the turn (image left) ...
    yaw, pitch = math.radians(10), math.radians(-6)
    assert dx == pytest.approx(-math.sin(yaw) * (math.sin(pitch) * pivot_y + math.cos(pitch) * pivot_z), rel=1e-3)
    assert dx < 0
    # ... and tipping the head back about a pivot below the face lifts it (image up).
    assert dy < 0
    # The photo's own pose stays where the photo has it (up to the sway).
    assert np.abs(a[:, 3:5] - still[:, 3:5]).max() / 0.3 < 5 * 0.05


@pytest.mark.parametrize("generator", ["diffusion", "procedural"])
def test_the_face_centre_moves_like_a_talking_head(generator, shared_assets, grace_task):
    """Before the pivot, both generators' face centre moved ~1 % IOD (a tenth of real video)."""
    from workers.audio.stage import AudioFeatureStage
    from workers.motion.stage import MotionStage

    request = RenderRequest(id="head", image=grace_task.request.image,
                            audio=str(shared_assets / "speech_librivox_austen_7s.wav"),
                            output="/nonexistent/unused.mp4", controls=RenderControls(motion=generator, seed=2))
    task = RenderTask(request, face=grace_task.face)
    AudioFeatureStage()([task])
    MotionStage()([task])
    assert task.failure is None, task.failure
    units = task.motion[:, 3:5] / np.exp(task.motion[:, 5:6])
    translation_pct_iod = 100 * IOD_PER_UNIT * math.sqrt(float(units.var(0).mean()))
    assert 2.0 < translation_pct_iod < 15.0, translation_pct_iod
    assert task.model_versions["head"]
    # Yaw and roll widened (widen_rotation): a third of real video's before (latents here:
    # diffusion yaw / roll std 0.77 / 0.38 degrees, procedural 0.97 / 0.67), now 1.1-2.0.
    yaw_std, _, roll_std = task.motion[:, :3].std(0)
    assert yaw_std > 1.0 and roll_std > 1.0, (yaw_std, roll_std)
