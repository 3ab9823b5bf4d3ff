"""Procedural motion: facial dynamics and head motion driven by the acoustics.

No learned weights: mouth shapes come from loudness and spectral shape (open vowels load
the 300-1000 Hz band and open the jaw; nasal murmur and stop gaps close and press the lips;
a low second formant rounds them, a high one stretches them), silence closes the mouth,
the head drifts slowly, nods on stressed syllables and stills in pauses, the eyes blink
at a human rate and make small saccades. Kept as the baseline for learned generators.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from core.speech import AudioFeatures
from workers.audio.cues import CueStatistics, acoustic_cues, smoothstep
from workers.face.latents import DYN_SLICE, DYNAMICS, GAZE_SLICE, POSE_SLICE
from workers.motion.base import MotionControls
from workers.motion.silences import blink_profile

BLINKS_PER_MINUTE = 17.0
HEAD_DRIFT_DEGREES = (2.5, 1.6, 1.0)      # stationary std of yaw, pitch, roll drift
HEAD_DRIFT_SECONDS = 1.6                  # drift time constant
NOD_DEGREES = 1.6                         # pitch impulse on a stressed syllable
HEAD_LIMIT_DEGREES = np.array([8.0, 6.0, 5.0])   # yaw, pitch, roll range around the photo's pose


def _ou_process(rng: np.random.Generator, n: int, fps: float, std: float, tau_s: float,
                gain: np.ndarray) -> np.ndarray:
    """Ornstein-Uhlenbeck drift (n,) with stationary std, its noise scaled per frame by gain."""
    alpha = np.exp(-1.0 / (tau_s * fps))
    noise = rng.standard_normal(n) * std * np.sqrt(1 - alpha ** 2) * gain
    out = np.empty(n)
    value = rng.standard_normal() * std * 0.5
    for i in range(n):
        value = alpha * value + noise[i]
        out[i] = value
    return out


class ProceduralMotion:
    name = "procedural"
    version = "procedural-2"

    def mouth(self, audio: AudioFeatures) -> dict[str, np.ndarray]:
        """Speech-driven dynamics, each (T,): jaw_open, lip_press, lip_pucker, lip_stretch, ..."""
        fps = audio.fps
        stats = CueStatistics.fit(audio.energy_db, audio.band_energy_db, audio.voicing)
        cues = acoustic_cues(audio.energy_db, audio.band_energy_db, audio.voicing, fps, stats)
        loud, openness, closure = cues["loud"], cues["openness"], cues["closure"]
        fricative, rounding, spread = cues["fricative"], cues["rounding"], cues["spread"]
        relative = audio.energy_db.astype(np.float64) - stats.speech_level_db

        sigma = 0.6 * fps / 25.0

        def smooth(value: np.ndarray) -> np.ndarray:
            # Lips move a touch ahead of the sound and never jump between frames.
            return np.roll(gaussian_filter1d(value, sigma), -1) if len(value) > 1 else value

        # Closures are applied after smoothing so a neighbouring vowel cannot blur them open.
        keep_open = 1.0 - smooth(closure) ** 0.5
        jaw = smooth(0.9 * loud * (0.25 + 0.75 * openness) * (1.0 - 0.4 * fricative)) * keep_open
        press = np.clip(smooth(closure) * 1.2 + 0.25 * smooth(1.0 - loud) * (relative > -45), 0.0, 1.0)
        return {
            "jaw_open": jaw,
            "lip_press": press,
            "lip_pucker": smooth(0.7 * rounding) * keep_open,
            "lip_stretch": smooth(0.5 * spread) * keep_open,
            "upper_lip_raise": smooth(0.25 * fricative),
            "lower_lip_depress": smooth(0.25 * loud * openness) * keep_open,
        }

    def generate(self, audio: AudioFeatures, source_latent: np.ndarray, controls: MotionControls) -> np.ndarray:
        """Motion latents (T, MOTION_DIM) for the clip, around the photo's own pose."""
        n, fps = audio.num_frames, audio.fps
        rng = np.random.default_rng(controls.seed)
        motion = np.repeat(source_latent[None].astype(np.float64), n, 0)
        dyn = motion[:, DYN_SLICE]
        dyn[:, DYNAMICS.index("jaw_open")] = 0.0     # the mouth is driven by speech alone
        dyn += controls.emotion[None]
        for name, value in self.mouth(audio).items():
            dyn[:, DYNAMICS.index(name)] += value

        # Head: slow drift that quietens in pauses, nods on stressed syllables.
        energy = audio.energy_db.astype(np.float64)
        if audio.speech_probability is not None:     # the VAD's speech, when the audio stage ran it
            from workers.audio.vad import speech_mask

            speech = speech_mask(audio.speech_probability, fps).astype(np.float64)
        else:
            speech = smoothstep(-35.0, -15.0, energy - np.percentile(energy, 95))
        speaking = gaussian_filter1d(speech, 0.3 * fps)
        gain = 0.25 + 0.75 * speaking
        pose = motion[:, POSE_SLICE]
        for axis, std in enumerate(HEAD_DRIFT_DEGREES):
            pose[:, axis] += _ou_process(rng, n, fps, std, HEAD_DRIFT_SECONDS, gain)
        pitch = audio.pitch_hz.astype(np.float64)
        voiced_pitch = pitch[pitch > 0]
        if len(voiced_pitch) and n > 4:
            high_pitch = smoothstep(0.0, 0.25, np.where(pitch > 0, pitch / np.median(voiced_pitch) - 1.0, -1.0))
            stress = high_pitch * smoothstep(-10.0, -3.0, energy - np.percentile(energy, 95))
            peaks = (stress > 0.3) & (stress == maximum_filter1d(stress, size=int(0.25 * fps) * 2 + 1))
            impulses = np.zeros(n)
            impulses[peaks] = NOD_DEGREES * stress[peaks]
            nods = gaussian_filter1d(impulses, 0.09 * fps) * (0.09 * fps * np.sqrt(2 * np.pi))
            pose[:, 1] += nods
            pose[:, 0] += 0.3 * nods * rng.choice([-1.0, 1.0])
        # A single photo holds up to moderate turns; past these the warp would show its seams.
        pose[:, :3] = np.clip(pose[:, :3], source_latent[:3] - HEAD_LIMIT_DEGREES, source_latent[:3] + HEAD_LIMIT_DEGREES)
        pose[:, 5] += np.log(controls.distance)

        self._blinks(rng, dyn, speaking, fps)
        gaze = motion[:, GAZE_SLICE]
        if controls.gaze is not None:
            gaze[:] = controls.gaze
        gaze += self._saccades(rng, n, fps)
        return motion.astype(np.float32)

    @staticmethod
    def _blinks(rng: np.random.Generator, dyn: np.ndarray, speaking: np.ndarray, fps: float) -> None:
        """Add blinks to both lids in place: gamma-distributed intervals averaging
        BLINKS_PER_MINUTE, each moved to a pause when one starts within half a second."""
        n = len(dyn)
        profile = blink_profile(fps)
        mean_interval = 60.0 / BLINKS_PER_MINUTE
        pause_starts = np.flatnonzero((speaking[1:] < 0.5) & (speaking[:-1] >= 0.5)) + 1
        t = rng.uniform(0.2, 1.0) * mean_interval
        while int(t * fps) < n:
            frame = int(t * fps)
            near = pause_starts[np.abs(pause_starts - frame) <= 0.5 * fps]
            if len(near):
                frame = int(near[0])
            end = min(n, frame + len(profile))
            for name in ("blink_left", "blink_right"):
                column = dyn[frame:end, DYNAMICS.index(name)]
                column += profile[: end - frame] * (1.0 - column.clip(0, 1))
            t = frame / fps + max(0.6, rng.gamma(4.0, mean_interval / 4.0))

    @staticmethod
    def _saccades(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
        """Small gaze fixation changes (n, 2) in degrees: a jump every 0.8-3 s."""
        out = np.zeros((n, 2))
        t, current = 0, np.zeros(2)
        while t < n:
            length = int(rng.uniform(0.8, 3.0) * fps)
            target = rng.normal(0.0, [2.0, 1.2])
            ramp = min(3, n - t)
            out[t:t + ramp] = current + (target - current) * np.linspace(0.5, 1.0, ramp)[:, None]
            out[t + ramp:t + length] = target
            current, t = target, t + length
        return out


