"""Decode any speech file to 16 kHz mono float32 and check that it is usable.

ffmpeg does the decoding (the static binary that ships with imageio-ffmpeg, so no system
ffmpeg is needed), which covers wav/flac/ogg/mp3/m4a at any rate and channel count.
"""

from __future__ import annotations

import os
import re
import subprocess

import ffmpeg
import imageio_ffmpeg
import numpy as np

from core.errors import BadInputError

# A 20 ms frame is "active" (speech, not room noise) above this level.
ACTIVE_FRAME_DBFS = -50.0
# Peaks below this are indistinguishable from digital silence / dither.
SILENT_PEAK = 1e-3
FRAME_SECONDS = 0.020


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, max_seconds: float = 600.0) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``.

    Args:
        path: any audio (or video-with-audio) file ffmpeg can read.
        sample_rate: output rate in Hz.
        max_seconds: longest accepted duration; only max_seconds + 1 s is ever decoded, so an
            over-long file is rejected without decoding all of it.

    Returns:
        (num_samples,) float32 in [-1, 1].

    Raises:
        BadInputError: missing, empty, undecodable, too long, or silent audio.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadInputError("audio file not found.", path=path)
    if os.path.getsize(path) == 0:
        raise BadInputError("audio file is empty.", path=path)

    ffmpeg_exe = imageio_ffmpeg.get_ffmpeg_exe()
    try:
        pcm_bytes, ffmpeg_log = (
            ffmpeg.input(path)
            .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate, t=max_seconds + 1.0)
            .global_args("-nostdin", "-hide_banner")
            .run(cmd=ffmpeg_exe, capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as error:
        raise BadInputError(_ffmpeg_failure_sentence(error.stderr), path=path) from None

    # Trim to whole samples: a truncated file can end mid-sample.
    usable_bytes = len(pcm_bytes) - len(pcm_bytes) % 4
    wave = np.frombuffer(pcm_bytes[:usable_bytes], dtype="<f4").astype(np.float32)
    if wave.size == 0:
        raise BadInputError("file contains no audio samples.", path=path)
    if not np.all(np.isfinite(wave)):
        wave = np.nan_to_num(wave, nan=0.0, posinf=1.0, neginf=-1.0)
    # Float decoders (mp3, aac) can overshoot full scale slightly.
    np.clip(wave, -1.0, 1.0, out=wave)

    duration_s = audio_duration(wave, sample_rate)
    if duration_s > max_seconds + 0.5 / sample_rate:
        # Only max_seconds + 1 was decoded; the container header usually knows the real length.
        header_duration_s = _header_duration_seconds(ffmpeg_log)
        if header_duration_s is not None and header_duration_s > duration_s:
            shown = f"{header_duration_s:.1f} s"
        elif duration_s >= max_seconds + 1.0:
            shown = f"over {duration_s:.0f} s"
        else:
            shown = f"{duration_s:.1f} s"
        raise BadInputError(f"audio is {shown} long; the limit is {max_seconds:g} s.", path=path)
    if is_silent(wave, sample_rate):
        raise BadInputError("audio is silent.", path=path)
    return wave


def header_seconds(path: str | os.PathLike) -> float | None:
    """The speech's length as its container states it (seconds; no decoding: ~20 ms), or None
    where it states none, or only ffmpeg's estimate from the bitrate (VBR MP3 without a header)."""
    completed = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", os.fspath(path)],
                               capture_output=True)
    if b"Estimating duration from bitrate" in completed.stderr:
        return None
    return _header_duration_seconds(completed.stderr)


def _header_duration_seconds(ffmpeg_log: bytes | None) -> float | None:
    """The input duration ffmpeg printed ("Duration: 00:10:12.30"), if it knew one."""
    match = re.search(rb"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", ffmpeg_log or b"")
    if match is None:
        return None
    hours, minutes, seconds = (float(group) for group in match.groups())
    return hours * 3600.0 + minutes * 60.0 + seconds


def _ffmpeg_failure_sentence(stderr: bytes | None) -> str:
    """One sentence from ffmpeg's stderr (its last meaningful line)."""
    text = (stderr or b"").decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any("does not contain any stream" in line or "matches no streams" in line for line in lines):
        return "file has no audio stream."
    detail = lines[-1] if lines else "unknown error"
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return f"file is not decodable audio (ffmpeg: {detail})."


def audio_duration(wave: np.ndarray, sample_rate: int) -> float:
    """Duration in seconds of a (num_samples,) waveform at ``sample_rate`` Hz."""
    return float(len(wave)) / float(sample_rate)


def frame_rms_dbfs(wave: np.ndarray, sample_rate: int, frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """RMS level of consecutive non-overlapping frames.

    Returns:
        (num_frames,) float64 dBFS (0 dBFS = full-scale square wave), floored at -120. A
        waveform shorter than one frame is treated as a single frame.
    """
    frame_len = max(1, int(round(frame_seconds * sample_rate)))
    num_frames = max(1, len(wave) // frame_len)
    if len(wave) < frame_len:
        frames = np.asarray(wave, dtype=np.float64)[None, :]
    else:
        frames = np.asarray(wave[: num_frames * frame_len], dtype=np.float64).reshape(num_frames, frame_len)
    mean_square = np.mean(frames * frames, axis=1) if frames.size else np.zeros(1)
    return 10.0 * np.log10(np.maximum(mean_square, 1e-12))


def is_silent(wave: np.ndarray, sample_rate: int) -> bool:
    """True when no 20 ms frame reaches -50 dBFS or the peak is below 1e-3 full scale."""
    if wave.size == 0:
        return True
    if float(np.max(np.abs(wave))) < SILENT_PEAK:
        return True
    return bool(np.max(frame_rms_dbfs(wave, sample_rate)) < ACTIVE_FRAME_DBFS)


def normalize_loudness(wave: np.ndarray, target_dbfs: float = -20.0, sample_rate: int = 16000) -> np.ndarray:
    """Scale speech so its active level is ``target_dbfs``.

    The level is the RMS over active 20 ms frames (those above -50 dBFS), so pauses do not
    drag it down; when fewer than a quarter of the frames are active (very quiet
    recordings) the loudest half of the frames is used instead. The gain is then reduced if
    needed so the peak stays at or below 0.99 (no clipping).

    Args:
        wave: (num_samples,) float waveform.
        target_dbfs: desired active RMS level in dBFS.
        sample_rate: rate of ``wave`` in Hz (sets the 20 ms frame length).

    Returns:
        (num_samples,) float32 scaled copy; an all-zero input is returned unchanged.
    """
    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0.0:
        return wave.copy()
    frame_db = frame_rms_dbfs(wave, sample_rate)
    active = frame_db > ACTIVE_FRAME_DBFS
    if np.count_nonzero(active) < max(1, len(frame_db) // 4):
        loudest_half = np.argsort(frame_db)[len(frame_db) // 2 :]
        active = np.zeros_like(active)
        active[loudest_half] = True
    # Average power (not dB) over the chosen frames: that is their joint RMS.
    active_power = float(np.mean(10.0 ** (frame_db[active] / 10.0)))
    active_dbfs = 10.0 * np.log10(max(active_power, 1e-12))
    gain = 10.0 ** ((target_dbfs - active_dbfs) / 20.0)
    gain = min(gain, 0.99 / peak)
    return (wave * np.float32(gain)).astype(np.float32)
