"""The per-frame audio vector the motion diffusion model reads, from AudioFeatures or shards.

Features are made speaker-neutral where it is cheap to do frame by frame (so streaming needs
no whole-clip statistics): the log-mel spectrum is split into its shape (each frame minus its
own mean over bins) and its level, pitch is on a log scale, band energies are relative to the
frame's level. Global standardisation (mean / std over the training corpus) lives in the
model checkpoint, not here.
"""

from __future__ import annotations

import numpy as np

from workers.audio.features import NUM_MELS, AudioFeatures

# log_mel shape (80) + mel level + energy dB + log pitch + voiced flag + voicing + 4 relative bands
AUDIO_DIM = NUM_MELS + 1 + 1 + 1 + 1 + 1 + 4
# A frame quieter than this (dBFS, after loudness normalisation) is silence for padding.
SILENCE_DB = -80.0


def audio_matrix(log_mel: np.ndarray, energy_db: np.ndarray, pitch_hz: np.ndarray, voicing: np.ndarray,
                 band_energy_db: np.ndarray) -> np.ndarray:
    """Per-frame model input (T, AUDIO_DIM) float32 from the fields of :class:`AudioFeatures`.

    Args:
        log_mel: (T, 80) natural-log mel power.
        energy_db: (T,) frame RMS in dBFS.
        pitch_hz: (T,) F0 in Hz, 0 where unvoiced.
        voicing: (T,) periodicity in [0, 1].
        band_energy_db: (T, 4) band levels in dBFS.
    """
    log_mel = np.asarray(log_mel, dtype=np.float32)
    energy = np.asarray(energy_db, dtype=np.float32)
    pitch = np.asarray(pitch_hz, dtype=np.float32)
    level = log_mel.mean(axis=1, keepdims=True)
    voiced = (pitch > 0).astype(np.float32)
    log_pitch = np.where(pitch > 0, np.log2(np.maximum(pitch, 1.0) / 150.0), 0.0).astype(np.float32)
    bands = np.asarray(band_energy_db, dtype=np.float32) - energy[:, None]
    return np.concatenate([
        log_mel - level, level, energy[:, None] / 20.0, log_pitch[:, None], voiced[:, None],
        np.asarray(voicing, dtype=np.float32)[:, None], np.clip(bands, -60.0, 0.0) / 20.0,
    ], axis=1).astype(np.float32)


def features_matrix(features: AudioFeatures) -> np.ndarray:
    """:func:`audio_matrix` of a clip's :class:`AudioFeatures` (T, AUDIO_DIM)."""
    return audio_matrix(features.log_mel, features.energy_db, features.pitch_hz, features.voicing,
                        features.band_energy_db)


def silence_matrix(num_frames: int) -> np.ndarray:
    """Audio rows for frames with no sound (padding past the end of a clip), (T, AUDIO_DIM)."""
    log_mel = np.full((num_frames, NUM_MELS), np.log(1e-10), dtype=np.float32)
    floor = np.full(num_frames, SILENCE_DB, dtype=np.float32)
    return audio_matrix(log_mel, floor, np.zeros(num_frames), np.zeros(num_frames),
                        np.full((num_frames, 4), SILENCE_DB, dtype=np.float32))
