"""The per-frame audio vector the motion diffusion model reads, from AudioFeatures or shards.

Two steps. :func:`audio_matrix` makes raw rows (T, AUDIO_DIM) frame by frame: the log-mel
spectrum split into its shape (each frame minus its own mean over bins) and its level, log
pitch, voicing and band energies relative to the frame's level. :class:`ClipNormalization`
then removes what differs between voices and microphones, with statistics of the clip's own
speech (as far as it has been heard, so streaming works): the mean spectral shape (cepstral
mean normalisation in the mel domain), the speech level, the median pitch, the mean band
balance; and appends the hand-built articulation cues of :mod:`workers.audio.cues`
(MODEL_AUDIO_DIM columns in all). The model was trained on synthetic voices only; without
this step its lips did not transfer to recorded speech. Global standardisation (mean / std
over the training corpus) lives in the model checkpoint, not here.

The Whisper encoder states of :func:`workers.audio.whisper.motion_features` (tiny.en after
its third block, 384 per frame) follow as the last columns of both, unchanged by the clip
normalisation (Whisper was trained on many voices; it is its own speaker normalisation). A
checkpoint names the recipe it reads (:data:`FEATURE_RECIPES`); one trained before the Whisper
columns existed reads the first 98 model columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.speech import AudioFeatures
from workers.audio.cues import CUE_NAMES, CueStatistics, acoustic_cues, speech_frames
from workers.audio.features import (
    MEL_FMAX_HZ,
    NUM_MELS,
    hz_to_slaney_mel,
    slaney_mel_to_hz,
)
from workers.audio.whisper import (
    MOTION_FEATURE_DIM,
    MOTION_FEATURES,
    silence_motion_features,
)

# log_mel shape (80) + mel level + energy dB + log pitch + voiced flag + voicing + 4 relative bands
ACOUSTIC_DIM = NUM_MELS + 1 + 1 + 1 + 1 + 1 + 4
# Raw rows: the acoustic columns, then the Whisper states.
AUDIO_DIM = ACOUSTIC_DIM + MOTION_FEATURE_DIM
# Columns of the raw rows.
LEVEL, ENERGY, LOG_PITCH, VOICED, VOICING = NUM_MELS, NUM_MELS + 1, NUM_MELS + 2, NUM_MELS + 3, NUM_MELS + 4
BANDS = slice(NUM_MELS + 5, NUM_MELS + 9)
WHISPER = slice(ACOUSTIC_DIM, AUDIO_DIM)
# Model rows: normalised acoustic columns, one column per articulation cue, the Whisper states.
CUES_MODEL_DIM = ACOUSTIC_DIM + len(CUE_NAMES)
MODEL_AUDIO_DIM = CUES_MODEL_DIM + MOTION_FEATURE_DIM
# Name of this feature recipe, stored in checkpoints: a model only reads the rows it was trained on.
AUDIO_FEATURES = f"clip-normalized-cues-{CUES_MODEL_DIM}+{MOTION_FEATURES}"
# Recipes a checkpoint may name -> how many leading model columns it reads (the Whisper states
# come last, so a model trained before them reads the columns it knows).
FEATURE_RECIPES = {AUDIO_FEATURES: MODEL_AUDIO_DIM, f"clip-normalized-cues-{CUES_MODEL_DIM}": CUES_MODEL_DIM}
# A frame quieter than this (dBFS, after loudness normalisation) is silence for padding.
SILENCE_DB = -80.0


def audio_matrix(log_mel: np.ndarray, energy_db: np.ndarray, pitch_hz: np.ndarray, voicing: np.ndarray,
                 band_energy_db: np.ndarray, whisper_states: np.ndarray) -> np.ndarray:
    """Per-frame raw rows (T, AUDIO_DIM) float32 from the fields of :class:`AudioFeatures`.

    Args:
        log_mel: (T, 80) natural-log mel power.
        energy_db: (T,) frame RMS in dBFS.
        pitch_hz: (T,) F0 in Hz, 0 where unvoiced.
        voicing: (T,) periodicity in [0, 1].
        band_energy_db: (T, 4) band levels in dBFS.
        whisper_states: (T, 384) Whisper motion features.
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
        np.asarray(whisper_states, dtype=np.float32).reshape(len(energy), MOTION_FEATURE_DIM),
    ], axis=1).astype(np.float32)


def features_matrix(features: AudioFeatures) -> np.ndarray:
    """:func:`audio_matrix` of a clip's :class:`AudioFeatures` (T, AUDIO_DIM); its
    ``whisper_states`` must have been computed (the audio stage does for the diffusion model)."""
    if features.whisper_states is None:
        raise ValueError("these audio features have no Whisper states (workers.audio.whisper.motion_features)")
    return audio_matrix(features.log_mel, features.energy_db, features.pitch_hz, features.voicing,
                        features.band_energy_db, features.whisper_states)


def silence_matrix(num_frames: int) -> np.ndarray:
    """Audio rows for frames with no sound (padding past the end of a clip), (T, AUDIO_DIM)."""
    log_mel = np.full((num_frames, NUM_MELS), np.log(1e-10), dtype=np.float32)
    floor = np.full(num_frames, SILENCE_DB, dtype=np.float32)
    return audio_matrix(log_mel, floor, np.zeros(num_frames), np.zeros(num_frames),
                        np.full((num_frames, 4), SILENCE_DB, dtype=np.float32),
                        np.repeat(silence_motion_features()[None], num_frames, axis=0))


@dataclass(frozen=True)
class ClipNormalization:
    """Voice and channel statistics of a clip, fitted on its raw rows (see the module doc).

    Attributes:
        cues: reference levels of the articulation cues.
        mel_shape_mean: (80,) mean spectral shape over the speech frames (log power).
        mel_level: 95th percentile of the frame mel level (log power).
        log_pitch_median: median log2 pitch (re 150 Hz) over voiced speech frames.
        band_mean: (4,) mean relative band level over the speech frames (/20 dB).
    """

    cues: CueStatistics
    mel_shape_mean: np.ndarray
    mel_level: float
    log_pitch_median: float
    band_mean: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> "ClipNormalization":
        """Statistics of raw rows (T, AUDIO_DIM); silence-only or empty clips get neutral ones."""
        rows = np.asarray(rows, np.float32)
        if len(rows) == 0:
            rows = silence_matrix(1)
        energy, bands, voicing = _cue_inputs(rows)
        cues = CueStatistics.fit(energy, bands, voicing)
        speech = speech_frames(energy, voicing, cues.speech_level_db)
        voiced = speech & (rows[:, VOICED] > 0.5)
        return cls(
            cues=cues,
            mel_shape_mean=rows[speech, :NUM_MELS].mean(axis=0),
            mel_level=float(np.percentile(rows[:, LEVEL], 95)),
            log_pitch_median=float(np.median(rows[voiced, LOG_PITCH])) if voiced.any() else 0.0,
            band_mean=rows[speech][:, BANDS].mean(axis=0),
        )

    def apply(self, rows: np.ndarray, fps: float = 25.0) -> np.ndarray:
        """Model rows (T, MODEL_AUDIO_DIM) float32 from raw rows (T, AUDIO_DIM) of this clip."""
        rows = np.asarray(rows, np.float32)
        out = rows[:, :ACOUSTIC_DIM].copy()
        out[:, :NUM_MELS] -= self.mel_shape_mean
        out[:, LEVEL] -= self.mel_level
        out[:, ENERGY] -= self.cues.speech_level_db / 20.0
        out[:, LOG_PITCH] = np.where(rows[:, VOICED] > 0.5, rows[:, LOG_PITCH] - self.log_pitch_median, 0.0)
        out[:, BANDS] -= self.band_mean
        energy, bands, voicing = _cue_inputs(rows)
        cues = acoustic_cues(energy, bands, voicing, fps, self.cues)
        return np.concatenate([out, np.stack([cues[name] for name in CUE_NAMES], axis=1), rows[:, WHISPER]],
                              axis=1).astype(np.float32)


def _cue_inputs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy (T,) dBFS, band levels (T, 4) dBFS and voicing (T,) recovered from raw rows."""
    energy = rows[:, ENERGY].astype(np.float64) * 20.0
    return energy, rows[:, BANDS].astype(np.float64) * 20.0 + energy[:, None], rows[:, VOICING].astype(np.float64)


def normalize_clip(rows: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """Model rows (T, MODEL_AUDIO_DIM) of a whole clip's raw rows, with the clip's own statistics."""
    return ClipNormalization.fit(rows).apply(rows, fps)


def warp_formants(log_mel: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """Vocal tract length perturbation of a log-mel spectrogram (T, 80): every frequency f
    shows what was at f / factor, as if the speaker's vocal tract were 1 / factor as long.

    Training augmentation: the synthetic voices span fewer vocal tracts than real speakers.
    """
    fmax = min(MEL_FMAX_HZ, sample_rate / 2)
    edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(0.0), hz_to_slaney_mel(fmax), NUM_MELS + 2))
    centres = edges[1:-1]
    source = np.clip(centres / factor, centres[0], centres[-1])
    index = np.interp(source, centres, np.arange(NUM_MELS))
    lo = np.floor(index).astype(int)
    hi = np.minimum(lo + 1, NUM_MELS - 1)
    frac = (index - lo).astype(np.float32)
    log_mel = np.asarray(log_mel, np.float32)
    return (log_mel[:, lo] * (1 - frac) + log_mel[:, hi] * frac).astype(np.float32)
