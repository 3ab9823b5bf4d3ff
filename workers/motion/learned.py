"""The diffusion motion generator behind ``--motion diffusion``: checkpoint loading and the
step from motion relative to the photo to absolute motion latents.

The shipped checkpoint lives beside this file in ``checkpoints/``; another one is named by
``TALKFARM_MOTION_CHECKPOINT`` (a ``.safetensors`` path or storage URI with its ``.json``
beside it) or passed to :class:`DiffusionMotion`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from core.errors import BadInputError
from core.speech import AudioFeatures
from workers.face.latents import DYN_SLICE, DYNAMICS, GAZE_SLICE, POSE_SLICE
from workers.motion.base import MotionControls
from workers.motion.conditioning import AUDIO_FEATURES, FEATURE_RECIPES, features_matrix
from workers.motion.diffusion import (
    FPS,
    Conditions,
    DiffusionConfig,
    MotionTransformer,
    sample_motion,
    stream_motion,
)
from workers.motion.procedural import HEAD_LIMIT_DEGREES

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "motion-diffusion.safetensors"
CHECKPOINT_ENV = "TALKFARM_MOTION_CHECKPOINT"


@dataclass(frozen=True)
class Checkpoint:
    """A trained model: its weights file and JSON config (version, sha256, corpus summary)."""

    weights: Path
    meta: dict

    @property
    def version(self) -> str:
        return self.meta["version"]


def locate_checkpoint(uri: str | os.PathLike | None = None) -> Checkpoint:
    """Find the checkpoint (argument, then $TALKFARM_MOTION_CHECKPOINT, then the shipped one): the
    ``.safetensors`` path or URI, or a local folder holding ``motion-diffusion.safetensors``; a
    storage URI is fetched to a temporary folder first. The JSON must sit beside the weights."""
    uri = str(uri or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT)
    if "://" not in uri and Path(uri).is_dir():
        uri = str(Path(uri) / DEFAULT_CHECKPOINT.name)
    meta_uri = uri[: -len(".safetensors")] + ".json" if uri.endswith(".safetensors") else uri + ".json"
    if "://" in uri and not uri.startswith("file://"):
        from core.storage import Storage

        storage, folder = Storage(), tempfile.mkdtemp(prefix="talkfarm-motion-")
        weights, meta_path = storage.fetch(uri, folder), storage.fetch(meta_uri, folder)
    else:
        weights, meta_path = Path(uri.removeprefix("file://")), Path(meta_uri.removeprefix("file://"))
    if not weights.is_file() or not meta_path.is_file():
        raise BadInputError("motion checkpoint not found (needs the .safetensors and its .json)", uri)
    return Checkpoint(weights, json.loads(meta_path.read_text()))


def load_model(checkpoint: Checkpoint, device: str | torch.device = "cpu") -> MotionTransformer:
    """Build the transformer from the checkpoint's config and load its weights."""
    from safetensors.torch import load_file

    features = checkpoint.meta.get("audio_features")
    if features not in FEATURE_RECIPES:
        raise BadInputError(f"motion checkpoint reads audio features {features!r}; this code makes "
                            f"{AUDIO_FEATURES!r} (retrain it with jobs/train_motion.py)", str(checkpoint.weights))
    model = MotionTransformer(DiffusionConfig(**checkpoint.meta["config"]), FEATURE_RECIPES[features])
    model.load_state_dict(load_file(str(checkpoint.weights)))
    return model.eval().to(device)


def to_model_rate(rows: np.ndarray, fps: float) -> np.ndarray:
    """Resample per-frame rows (T, C) from ``fps`` onto the model's 25 fps grid."""
    if abs(fps - FPS) < 1e-6 or len(rows) < 2:
        return rows
    n = max(1, int(round(len(rows) * FPS / fps)))
    src = (np.arange(len(rows)) + 0.5) / fps
    dst = (np.arange(n) + 0.5) / FPS
    return np.stack([np.interp(dst, src, column) for column in rows.T], axis=1).astype(np.float32)


def from_model_rate(rows: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """Resample model-rate rows (n, C) onto ``num_frames`` frames at ``fps``."""
    if abs(fps - FPS) < 1e-6 and len(rows) == num_frames:
        return rows
    src = (np.arange(len(rows)) + 0.5) / FPS
    dst = (np.arange(num_frames) + 0.5) / fps
    return np.stack([np.interp(dst, src, column) for column in rows.T], axis=1).astype(np.float32)


def compose_motion(relative: np.ndarray, source_latent: np.ndarray, gaze_given: bool) -> np.ndarray:
    """Absolute motion latents (T, MOTION_DIM) from motion relative to the photo.

    Pose offsets add to the photo's pose (turns kept within the range a single photo holds),
    the dynamics replace the photo's jaw opening and add to its other coefficients, gaze
    adds to the photo's gaze unless a gaze direction was asked for (then it is absolute).
    """
    motion = np.repeat(source_latent[None].astype(np.float32), len(relative), 0)
    motion[:, DYN_SLICE.start + DYNAMICS.index("jaw_open")] = 0.0
    motion[:, POSE_SLICE] += relative[:, POSE_SLICE]
    motion[:, :3] = np.clip(motion[:, :3], source_latent[:3] - HEAD_LIMIT_DEGREES, source_latent[:3] + HEAD_LIMIT_DEGREES)
    motion[:, DYN_SLICE] += relative[:, DYN_SLICE]
    if gaze_given:
        motion[:, GAZE_SLICE] = relative[:, GAZE_SLICE]
    else:
        motion[:, GAZE_SLICE] += relative[:, GAZE_SLICE]
    return motion


class DiffusionMotion:
    """Motion generator sampling the diffusion transformer (loaded lazily, once)."""

    name = "diffusion"

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str | None = None):
        self._checkpoint_uri = checkpoint
        self._device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    @cached_property
    def checkpoint(self) -> Checkpoint:
        return locate_checkpoint(self._checkpoint_uri)

    @property
    def version(self) -> str:
        return self.checkpoint.version

    @cached_property
    def model(self) -> MotionTransformer:
        return load_model(self.checkpoint, self._device)

    @staticmethod
    def _conditions(controls: MotionControls) -> Conditions:
        return Conditions(gaze=controls.gaze, distance=controls.distance, emotion=controls.emotion)

    def generate(self, audio: AudioFeatures, source_latent: np.ndarray, controls: MotionControls) -> np.ndarray:
        """Motion latents (T, MOTION_DIM) for the clip, one row per video frame."""
        rows = to_model_rate(features_matrix(audio), audio.fps)
        relative = sample_motion(self.model, rows, self._conditions(controls), controls.seed,
                                 controls.sampling, self._device)
        relative = from_model_rate(relative, audio.fps, audio.num_frames)
        return compose_motion(relative, source_latent, controls.gaze is not None)

    def stream(self, audio_rows: Iterator[np.ndarray], source_latent: np.ndarray,
               controls: MotionControls) -> Iterator[np.ndarray]:
        """Absolute motion (n, MOTION_DIM) at 25 fps, window by window, from 25 fps audio rows
        (chunks of (m, AUDIO_DIM)) that may still be arriving."""
        for relative in stream_motion(self.model, audio_rows, self._conditions(controls), controls.seed,
                                      controls.sampling, self._device):
            yield compose_motion(relative, source_latent, controls.gaze is not None)
