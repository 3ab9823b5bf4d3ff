"""The head turns about the neck, not about the face's centre, and the body under it sways.

Both generators sample head rotation; the translation channels (``tx``, ``ty``) they leave
nearly still, so the rendered face centre moved a tenth of what a real talking head's does
(BENCHMARKS.md, issue 19, THEval-style naturalness). A real head rotates about the top of the
spine, below and behind the face: with ``image = s R c + t`` about the canonical origin, a
rotation about a pivot ``p`` is the same rotation plus the translation ``s (R0 - R) p`` (R0:
the photo's own rotation, so the photo's pose stays where it is). On top, the torso's slow
sway carries the head as a whole (an Ornstein-Uhlenbeck drift per image axis, seeded).
"""

from __future__ import annotations

import numpy as np
import torch

from workers.face.latents import rotation_matrix
from workers.motion.procedural import HEAD_LIMIT_DEGREES

HEAD_VERSION = "head-pivot-3"
# The pivot in canonical units (outer-eye-corner distance, ~9 cm; y down, z away from the
# camera): the upper neck sits about 9 cm below and 9 cm behind the eyes' centre.
NECK_PIVOT = np.array([0.0, 1.0, 1.0])
SWAY_STD = 0.05          # torso sway, canonical units (~4.5 mm, ~7 % of the interocular distance)
SWAY_SECONDS = 2.5       # its time constant
# Gain on the generators' yaw, pitch and roll swings about the clip's mean (see widen_rotation).
ROTATION_GAIN = np.array([2.0, 1.0, 3.0])
# The widening stops where a swing reaches real talking video's: these latent stds (degrees)
# render at about the real webcam clip's yaw / roll std on the frames (3.4 / 1.8; Face Mesh
# reads the rendered yaw 1.4-1.9x and roll ~0.9x the latent's). Procedural's own swings are
# wider than diffusion's; the fixed gains alone took it past real video (rotation std 3.50
# degrees against 2.52 on the Biden / Spanish render; with these caps 2.57, the default 2.08;
# a yaw cap of 1.8 narrowed the default to 1.87: BENCHMARKS.md issue 19 round 5).
ROTATION_STD_CAP = np.array([2.4, np.inf, 2.1])


def _rotations(pose: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotation matrices of (T, 3) yaw, pitch, roll in degrees."""
    angles = torch.as_tensor(np.asarray(pose, np.float64))
    return rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2]).numpy()


def _sway(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """(frames, 2) Ornstein-Uhlenbeck drift with stationary std ``SWAY_STD``."""
    alpha = np.exp(-1.0 / (SWAY_SECONDS * fps))
    noise = rng.standard_normal((frames, 2)) * SWAY_STD * np.sqrt(1 - alpha ** 2)
    out = np.empty((frames, 2))
    value = rng.standard_normal(2) * SWAY_STD
    for i in range(frames):
        value = alpha * value + noise[i]
        out[i] = value
    return out


def widen_rotation(angles: np.ndarray, gain: np.ndarray = ROTATION_GAIN,
                   std_cap: np.ndarray = ROTATION_STD_CAP) -> np.ndarray:
    """(T, 3) yaw, pitch, roll degrees -> their swings about the clip's mean times ``gain``,
    less where that would take an axis's std past ``std_cap`` (never below the generator's own).

    The generators' head turns are a third of real talking video's (rotation std on the frames,
    held-out clips: yaw 1.4 / 2.1 degrees diffusion / procedural, pitch 1.5 / 1.3, roll 0.4 /
    0.6, against the real webcam clip's 3.4, 2.3, 1.8): yaw and roll are widened. Pitch is not:
    the head's pitch is what the rendered lips' closures are most sensitive to (BENCHMARKS.md,
    issue 19 round 4), and the generators' pitch is already the nearest to real.
    """
    angles = np.asarray(angles, np.float64)
    mean = angles.mean(0, keepdims=True)
    std = angles.std(0)
    gain = np.asarray(gain, np.float64)
    gain = np.clip(np.divide(std_cap, std, out=np.full(3, np.inf), where=std > 0), 1.0, gain)
    return (mean + (angles - mean) * gain).astype(np.float32)


def move_with_neck(motion: np.ndarray, source_latent: np.ndarray, fps: float, seed: int) -> np.ndarray:
    """(T, MOTION_DIM) motion latents -> the same with yaw and roll widened (:func:`widen_rotation`,
    within ``HEAD_LIMIT_DEGREES`` of the photo's pose)
    and ``tx``, ``ty`` following the head's rotation about the neck pivot and the torso's sway.

    Translation is in the latents' unit (fraction of the crop side); one canonical unit is
    ``exp(log_scale)`` of the crop side at each frame.
    """
    out = np.array(motion, np.float32, copy=True)
    if len(out) == 0:
        return out
    # Widened, the head still stays within the turns a single photo holds (the generators
    # clip to these before; the widening could take them past).
    limit = np.asarray(source_latent, np.float32)[:3]
    out[:, :3] = np.clip(widen_rotation(out[:, :3]), limit - HEAD_LIMIT_DEGREES, limit + HEAD_LIMIT_DEGREES)
    rotations = _rotations(out[:, :3])
    photo = _rotations(np.asarray(source_latent, np.float64)[None, :3])[0]
    shift = ((photo[None] - rotations) @ NECK_PIVOT)[:, :2]                 # (T, 2) canonical units
    shift += _sway(np.random.default_rng([seed, 0x5A7]), len(out), fps)
    out[:, 3:5] += (np.exp(out[:, 5:6].astype(np.float64)) * shift).astype(np.float32)
    return out
