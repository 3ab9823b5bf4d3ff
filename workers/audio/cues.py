"""Articulation cues from the acoustics: loudness, jaw openness, lip closure, frication, rounding.

Hand-built detectors over the per-frame energies (Hz bands of :mod:`workers.audio.features`):

- open vowels put their first formant in 300-1000 Hz, so ``mid - low`` ranks openness;
- nasal murmur (m, n) and voiced closures (b) put their energy below 300 Hz with little above;
- a stop closure is a short dip well below the neighbouring syllables;
- frication loads 2500-8000 Hz over the vowel band;
- a low second formant rounds the lips (o, u, w), a high one spreads them (i, e).

Spectral tilt differs between voices and microphones (a low male voice puts its harmonics
below 300 Hz on every vowel), so each cue is ranked against the clip's own voiced speech
(:class:`CueStatistics`). The procedural generator turns the cues into mouth shapes; the
diffusion model reads them next to the spectrum, which keeps it speaker- and channel-neutral
where it was trained on synthetic voices only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d

CUE_NAMES = ("loud", "voiced", "openness", "nasal", "dip", "closure", "fricative", "rounding", "spread")


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a smooth cubic between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def loudness(energy_db: np.ndarray, speech_level_db: float) -> np.ndarray:
    """The ``loud`` cue, (T,) in [0, 1]: 0 at 32 dB or more under the speech level (silence), 1
    within 8 dB of it (a loud vowel); energy_db (T,) in dBFS."""
    return smoothstep(-32.0, -8.0, np.asarray(energy_db, np.float64) - speech_level_db)


def _band_contrasts(bands_db: np.ndarray) -> dict[str, np.ndarray]:
    low, mid, f2, hiss = bands_db[:, 0], bands_db[:, 1], bands_db[:, 2], bands_db[:, 3]
    return {"openness": mid - low, "nasal": low - mid, "rounding": mid - f2, "spread": f2 - mid, "hiss": hiss - mid}


def speech_frames(energy_db: np.ndarray, voicing: np.ndarray, speech_level_db: float) -> np.ndarray:
    """(T,) bool: the clip's own voiced speech, frames voiced and within 25 dB of the speech
    level; every frame when fewer than 5 qualify (a clip of silence or noise)."""
    voiced = np.clip(np.asarray(voicing, np.float64) * 1.4, 0.0, 1.0)
    speech = (voiced > 0.5) & (np.asarray(energy_db, np.float64) - speech_level_db > -25.0)
    return speech if speech.sum() >= 5 else np.ones_like(speech)


# cue -> (low, high) percentile of its band contrast over the clip's voiced speech
_RANKS = {"openness": (15.0, 75.0), "nasal": (55.0, 90.0), "rounding": (60.0, 95.0), "spread": (60.0, 95.0)}


@dataclass(frozen=True)
class CueStatistics:
    """A clip's own reference levels, fitted on the audio seen so far.

    Attributes:
        speech_level_db: 95th percentile of frame energy (dBFS): the level of loud vowels.
        ranges: cue name -> (low, high) band contrast (dB) mapped to 0 and 1.
    """

    speech_level_db: float
    ranges: dict[str, tuple[float, float]]

    @classmethod
    def fit(cls, energy_db: np.ndarray, band_energy_db: np.ndarray, voicing: np.ndarray) -> "CueStatistics":
        """Statistics of a clip from its energy (T,) dBFS, bands (T, 4) dBFS and voicing (T,) in [0, 1]."""
        energy = np.asarray(energy_db, np.float64)
        if len(energy) == 0:
            return cls(-30.0, {name: (0.0, 1.0) for name in _RANKS})
        speech_level = float(np.percentile(energy, 95))
        reference = speech_frames(energy, voicing, speech_level)
        contrasts = _band_contrasts(np.asarray(band_energy_db, np.float64))
        ranges = {}
        for name, (low_pct, high_pct) in _RANKS.items():
            lo, hi = np.percentile(contrasts[name][reference], [low_pct, high_pct])
            ranges[name] = (float(lo), float(max(hi, lo + 1.0)))
        return cls(speech_level, ranges)


def acoustic_cues(energy_db: np.ndarray, band_energy_db: np.ndarray, voicing: np.ndarray, fps: float,
                  stats: CueStatistics) -> dict[str, np.ndarray]:
    """Per-frame cues, each (T,) in [0, 1] (names in :data:`CUE_NAMES`).

    ``loud`` is 0 in silence and 1 on a loud vowel; ``closure`` combines nasal murmur and
    stop dips, held one extra frame because a lip closure lasts 60-100 ms.
    """
    energy = np.asarray(energy_db, np.float64)
    relative = energy - stats.speech_level_db
    loud = loudness(energy, stats.speech_level_db)
    voiced = np.clip(np.asarray(voicing, np.float64) * 1.4, 0.0, 1.0)
    contrasts = _band_contrasts(np.asarray(band_energy_db, np.float64))

    def ranked(name: str) -> np.ndarray:
        lo, hi = stats.ranges[name]
        return smoothstep(lo, hi, contrasts[name])

    openness = ranked("openness")
    nasal = voiced * ranked("nasal") * smoothstep(-40.0, -12.0, relative)
    window = max(3, int(round(0.12 * fps)))
    if len(energy):
        neighbours = maximum_filter1d(energy, size=2 * window + 1)
        dip = smoothstep(8.0, 18.0, neighbours - energy) * smoothstep(-45.0, -20.0, neighbours - stats.speech_level_db)
        dip = dip * (minimum_filter1d(energy, size=3) >= energy - 0.5)   # at the bottom of the dip
    else:
        dip = np.zeros(0)
    closure = np.clip(np.maximum(nasal, dip), 0.0, 1.0)
    closure = np.maximum(closure, np.concatenate([closure[:1], closure[:-1]]))
    return {
        "loud": loud,
        "voiced": voiced,
        "openness": openness,
        "nasal": nasal,
        "dip": dip,
        "closure": closure,
        "fricative": smoothstep(0.0, 10.0, contrasts["hiss"]) * loud,
        "rounding": ranked("rounding") * loud * voiced,
        "spread": ranked("spread") * loud * voiced,
    }
