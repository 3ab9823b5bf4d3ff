"""Augmentation of an utterance's speech (16 kHz).

Each utterance gets a random subset of: additive white / pink / brown noise (10-30 dB SNR),
synthetic reverberation (RT60 0.2-0.8 s), level change (-20..+6 dB, then clipping), telephone
band-limiting (8 kHz, 300-3400 Hz) and a pitch shift by resampling (0.9-1.1; the phone times
are scaled with it); and pauses around the speech, some with a breath before it.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

from jobs.corpus import SAMPLE_RATE
from workers.motion.articulation import Phone

AUGMENT_PROBABILITY = {"noise": 0.35, "reverb": 0.3, "level": 0.4, "telephone": 0.15, "pitch": 0.35}
# Pauses around each utterance (add_pauses), and a breath before the speech in some leading ones.
PAUSE_PROBABILITY = 0.6
MAX_PAUSE_S = 0.8
BREATH_PROBABILITY = 0.5
BREATH_LEVEL_DB = (-36.0, -20.0)    # relative to the speech's power


def colored_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white" or n < 4:
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    spectrum /= np.sqrt(freqs) if color == "pink" else freqs
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.std(noise) + 1e-12)


def speech_power(wave: np.ndarray) -> float:
    frame = SAMPLE_RATE // 50
    usable = len(wave) // frame * frame
    if usable == 0:
        return float(np.mean(wave ** 2) + 1e-12)
    power = np.mean(wave[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1)
    active = power[power > power.max() * 1e-3]
    return float(active.mean()) + 1e-12


def breath_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) unit-power inhalation-like noise: band-limited (0.5-4 kHz) with a rise and fall."""
    sos = scipy.signal.butter(2, [500.0, 4000.0], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    noise = scipy.signal.sosfilt(sos, rng.standard_normal(n + 400))[400:]
    noise *= np.sin(np.linspace(0.0, np.pi, n)) ** 2
    return (noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)).astype(np.float32)


def add_pauses(wave: np.ndarray, phones: list[Phone], rng: np.random.Generator
               ) -> tuple[np.ndarray, list[Phone], list[str]]:
    """Pauses before and after the speech (each with PAUSE_PROBABILITY, 0.1-MAX_PAUSE_S long),
    sometimes with a breath in the leading one; phone times move with the speech.

    Synthesised speech starts at once; recordings start out of a pause, often after an audible
    inhalation. Without such onsets in the corpus the model parted the lips in the silence
    before recorded speech (BENCHMARKS.md, "Motion diffusion").
    """
    lead, tail = (float(rng.uniform(0.1, MAX_PAUSE_S)) if rng.random() < PAUSE_PROBABILITY else 0.0 for _ in range(2))
    n_lead, n_tail = int(lead * SAMPLE_RATE), int(tail * SAMPLE_RATE)
    out = np.concatenate([np.zeros(n_lead, np.float32), np.asarray(wave, np.float32), np.zeros(n_tail, np.float32)])
    applied = [f"pause={lead + tail:.2f}"] if n_lead + n_tail else []
    if lead >= 0.35 and rng.random() < BREATH_PROBABILITY:
        end = n_lead - int(rng.uniform(0.03, 0.12) * SAMPLE_RATE)
        start = max(0, end - int(rng.uniform(0.2, 0.5) * SAMPLE_RATE))
        level_db = float(rng.uniform(*BREATH_LEVEL_DB))
        out[start:end] += breath_noise(rng, end - start) * np.float32(np.sqrt(speech_power(wave)) * 10 ** (level_db / 20))
        applied.append(f"breath={level_db:.0f}dB")
    shift = n_lead / SAMPLE_RATE
    return out, [Phone(p.symbol, p.start_s + shift, p.end_s + shift) for p in phones], applied


def pitch_shift(wave: np.ndarray, factor: float) -> np.ndarray:
    """Resample so playback is ``factor`` times higher and faster (duration / factor)."""
    down = int(round(100 * factor))
    g = math.gcd(100, down)
    return scipy.signal.resample_poly(wave, 100 // g, down // g).astype(np.float32)


def augment(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Reverb, telephone band, noise and level change (each with its probability)."""
    applied = []
    out = wave.astype(np.float64)
    if rng.random() < AUGMENT_PROBABILITY["reverb"]:
        rt60 = rng.uniform(0.2, 0.8)
        t = np.arange(int(rt60 * 1.2 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = rng.standard_normal(len(t)) * np.exp(-6.9078 * t / rt60)
        ir[: int(0.002 * SAMPLE_RATE)] = 0.0
        ir[0] = 1.0
        ir /= np.sqrt(np.sum(ir ** 2))
        out = scipy.signal.fftconvolve(out, ir)[: len(out)]
        applied.append(f"reverb_rt60={rt60:.2f}")
    if rng.random() < AUGMENT_PROBABILITY["telephone"]:
        narrow = scipy.signal.resample_poly(out, 1, 2)
        sos = scipy.signal.butter(4, [300.0, 3400.0], btype="bandpass", fs=8000, output="sos")
        narrow = scipy.signal.sosfilt(sos, narrow)
        out = scipy.signal.resample_poly(narrow, 2, 1)[: len(out)]
        out = np.pad(out, (0, len(wave) - len(out)))
        applied.append("telephone")
    if rng.random() < AUGMENT_PROBABILITY["noise"]:
        color = str(rng.choice(["white", "pink", "brown"]))
        snr = rng.uniform(10.0, 30.0)
        noise = colored_noise(rng, len(out), color)
        out = out + noise * math.sqrt(speech_power(out) / 10 ** (snr / 10))
        applied.append(f"noise_{color}_snr={snr:.1f}")
    if rng.random() < AUGMENT_PROBABILITY["level"]:
        gain_db = rng.uniform(-20.0, 6.0)
        out = out * 10 ** (gain_db / 20)
        applied.append(f"level={gain_db:+.1f}dB")
    return np.clip(out, -1.0, 1.0).astype(np.float32), applied
