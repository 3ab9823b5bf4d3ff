"""Streaming: audio rows and rendered frames come out while the speech is still being written."""

from __future__ import annotations

import os
import threading
import time
import wave

import numpy as np
import pytest

from core.errors import BadInputError
from core.schemas import RenderControls
from pipeline.streaming import stream_audio_rows, stream_render
from workers.audio.decode import load_audio, normalize_loudness
from workers.audio.features import compute_features
from workers.audio.whisper import with_motion_features
from workers.motion.conditioning import WHISPER, features_matrix


def test_streamed_rows_match_the_whole_clip_features(shared_assets):
    path = shared_assets / "speech_librivox_austen_7s.wav"
    chunks = list(stream_audio_rows(path, block_seconds=0.2))
    rows = np.concatenate(chunks)
    wave = normalize_loudness(load_audio(path))
    whole = features_matrix(with_motion_features(compute_features(wave, 16000, 25.0), wave))
    assert rows.shape == whole.shape and len(chunks) > 10
    # Spectral shape, voicing and band balance are level-free: they match the whole-clip rows;
    # the level columns differ only by the running vs whole-clip loudness gain.
    assert np.median(np.abs(rows[:, :80] - whole[:, :80])) < 0.1
    assert np.mean(rows[:, 83] == whole[:, 83]) > 0.95          # voiced flag
    assert np.median(np.abs(rows[:, 81] - whole[:, 81])) < 0.15   # energy / 20 dB
    # Whisper's states, encoded block by block with 2 s of left context, keep the whole clip's.
    cosine = (rows[:, WHISPER] * whole[:, WHISPER]).sum(1) / (
        np.linalg.norm(rows[:, WHISPER], axis=1) * np.linalg.norm(whole[:, WHISPER], axis=1))
    assert np.median(cosine) > 0.95, np.median(cosine)


def _slow_writer(source, fifo, first_part: float, release: threading.Event):
    """Write a WAV into a FIFO: the first part at once, the rest only after ``release``."""
    with wave.open(str(source)) as wav:
        params, frames = wav.getparams(), wav.readframes(wav.getnframes())
    header_and_all = source.read_bytes()
    header = header_and_all[: len(header_and_all) - len(frames)]
    cut = int(len(frames) * first_part) // params.sampwidth * params.sampwidth
    with open(fifo, "wb") as out:
        out.write(header + frames[:cut])
        out.flush()
        release.wait(timeout=60)
        out.write(frames[cut:])


def test_frames_are_yielded_before_the_audio_is_complete(shared_assets, tmp_path):
    source = shared_assets / "speech_librivox_austen_7s.wav"      # 7.1 s, 178 frames
    fifo = tmp_path / "speech.wav"
    os.mkfifo(fifo)
    release = threading.Event()
    writer = threading.Thread(target=_slow_writer, args=(source, fifo, 0.6, release), daemon=True)
    writer.start()
    frames = stream_render(shared_assets / "face_grace_hopper.jpg", fifo, RenderControls(size=256, motion="diffusion"))
    started = time.perf_counter()
    first = next(frames)
    first_seconds = time.perf_counter() - started
    assert not release.is_set(), "the first frames came while 40 % of the speech was still unwritten"
    assert first.ndim == 4 and first.shape[1:] == (256, 256, 3) and first.dtype == np.uint8
    release.set()
    rest = list(frames)
    writer.join(timeout=10)
    assert len(first) + sum(len(part) for part in rest) == 178
    assert first_seconds < 60


def test_missing_audio_is_a_clear_error(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        next(stream_audio_rows(tmp_path / "nothing.wav"))
