"""Voice activity from silero-vad (MIT, ``silero-vad==6.2.3``): speech probability per video frame.

The ONNX model inside the wheel (``silero_vad/data/silero_vad.onnx``, sha256 checked at
load) runs on onnxruntime over 32 ms chunks (512 samples at 16 kHz, each with the previous
64 samples as context, the recurrent state carried along), as the package's own
``OnnxWrapper`` does. The package is located, not imported: importing ``silero_vad`` sets
torch's global thread count to 1.

Silences (mouth at rest, head settling, blinks) follow :func:`speech_mask`, the VAD's
speech with its usual hysteresis and padding, instead of an energy threshold: room noise,
breaths and music read as loud but are not speech.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from workers.audio.whisper import ModelUnavailableError

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 512
CONTEXT_SAMPLES = 64
MODEL_FILE = "data/silero_vad.onnx"
MODEL_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
VERSION = f"silero-vad-6.2.3-{MODEL_SHA256[:12]}"
# silero's get_speech_timestamps defaults: speech starts above 0.5, ends below 0.35.
SPEECH_ON = 0.5
SPEECH_OFF = 0.35
# Pauses shorter than this stay speech (a stop closure is not a silence); speech is padded
# by SPEECH_PAD_S on both sides (the mouth opens just before the sound).
MIN_SILENCE_S = 0.2
SPEECH_PAD_S = 0.06


@lru_cache(maxsize=1)
def _session():
    import onnxruntime

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError("silero-vad is not installed (pip install silero-vad==6.2.3)")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    model = path.read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    if digest != MODEL_SHA256:
        raise ModelUnavailableError(f"{path} has sha256 {digest[:12]}..., expected {MODEL_SHA256[:12]}... "
                                    "(reinstall silero-vad==6.2.3)")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def chunk_probabilities(wave16k: np.ndarray) -> np.ndarray:
    """(ceil(samples / 512),) float32 speech probability of each 32 ms chunk (last one zero-padded)."""
    wave16k = np.asarray(wave16k, dtype=np.float32).reshape(-1)
    num_chunks = -(-len(wave16k) // CHUNK_SAMPLES)
    padded = np.zeros(CONTEXT_SAMPLES + num_chunks * CHUNK_SAMPLES, dtype=np.float32)
    padded[CONTEXT_SAMPLES:CONTEXT_SAMPLES + len(wave16k)] = wave16k
    session = _session()
    state = np.zeros((2, 1, 128), dtype=np.float32)
    rate = np.array(SAMPLE_RATE, dtype=np.int64)
    probabilities = np.zeros(num_chunks, dtype=np.float32)
    for index in range(num_chunks):
        start = index * CHUNK_SAMPLES
        window = padded[start:start + CONTEXT_SAMPLES + CHUNK_SAMPLES][None]
        output, state = session.run(None, {"input": window, "state": state, "sr": rate})
        probabilities[index] = float(output.reshape(-1)[0])
    return probabilities


def speech_probability(wave16k: np.ndarray, fps: float) -> np.ndarray:
    """(num_frames,) float32 speech probability per video frame (the chunks overlapping it,
    weighted by overlap), num_frames = max(1, round(seconds * fps))."""
    chunks = chunk_probabilities(wave16k)
    num_frames = max(1, int(round(len(np.asarray(wave16k).reshape(-1)) / SAMPLE_RATE * fps)))
    if len(chunks) == 0:
        return np.zeros(num_frames, dtype=np.float32)
    chunk_s = CHUNK_SAMPLES / SAMPLE_RATE
    # Piecewise-constant probability integrated over each frame's interval.
    edges = np.arange(len(chunks) + 1) * chunk_s
    integral = np.concatenate([[0.0], np.cumsum(chunks * chunk_s)])
    frame_edges = np.arange(num_frames + 1) / fps
    at = np.interp(frame_edges, edges, integral)
    return (np.diff(at) * fps).clip(0.0, 1.0).astype(np.float32)


def speech_mask(probability: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool speech frames from per-frame probabilities: on above SPEECH_ON, off below
    SPEECH_OFF (hysteresis), pauses under MIN_SILENCE_S bridged, speech padded by SPEECH_PAD_S."""
    probability = np.asarray(probability, dtype=np.float64)
    speaking = np.zeros(len(probability), dtype=bool)
    state = False
    for index, value in enumerate(probability):
        state = value >= SPEECH_ON if not state else value >= SPEECH_OFF
        speaking[index] = state
    min_gap = int(round(MIN_SILENCE_S * fps))
    pad = int(round(SPEECH_PAD_S * fps))
    starts, ends = _runs(speaking)
    for gap_start, gap_end in zip(ends[:-1], starts[1:]):
        if gap_end - gap_start < min_gap:
            speaking[gap_start:gap_end] = True
    starts, ends = _runs(speaking)
    for start, end in zip(starts, ends):
        speaking[max(0, start - pad):min(len(speaking), end + pad)] = True
    return speaking


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of a bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    change = np.diff(padded)
    return np.flatnonzero(change == 1), np.flatnonzero(change == -1)
