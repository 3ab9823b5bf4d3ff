"""load_audio / normalize_loudness on the shared speech assets and on files made from them."""

from __future__ import annotations

import subprocess
import wave as wavfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from core.errors import BadInputError
from workers.audio.decode import (
    audio_duration,
    frame_rms_dbfs,
    load_audio,
    normalize_loudness,
)


@pytest.fixture(scope="module")
def short_speech(shared_assets) -> Path:
    return shared_assets / "speech_cmu_arctic_a0007_4s.wav"


def header_duration_s(path: Path) -> float:
    with wavfile.open(str(path)) as reader:
        return reader.getnframes() / reader.getframerate()


def transcode(source: Path, target: Path, *ffmpeg_args: str) -> Path:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *ffmpeg_args, str(target)],
        check=True,
    )
    return target


def write_wav_int16(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    with wavfile.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


def test_assets_present(shared_assets):
    assert len(list(shared_assets.glob("speech_*.wav"))) >= 4


def test_every_speech_asset_decodes_to_16k_with_its_duration(shared_speech_wav):
    samples = load_audio(shared_speech_wav)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(audio_duration(samples, 16000) - header_duration_s(shared_speech_wav)) <= 0.02
    assert np.max(np.abs(samples)) <= 1.0
    assert np.max(np.abs(samples)) > 0.05  # real speech, not near-silence


def test_8k_asset_is_resampled_to_16k_and_keeps_speech_band(shared_assets):
    path = shared_assets / "speech_asterisk_esMX_allison_28s_8k.wav"
    with wavfile.open(str(path)) as reader:
        assert reader.getframerate() == 8000
    samples = load_audio(path)
    assert abs(len(samples) / 16000 - header_duration_s(path)) <= 0.02
    # Upsampling cannot invent content above the old Nyquist: almost all power is below 4 kHz.
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / 16000)
    assert spectrum[frequencies < 4000].sum() / spectrum.sum() > 0.99


def test_other_rate_is_honoured(short_speech):
    samples = load_audio(short_speech, sample_rate=24000)
    assert abs(len(samples) / 24000 - header_duration_s(short_speech)) <= 0.02


@pytest.mark.parametrize(
    "suffix, ffmpeg_args",
    [
        ("flac", ["-ac", "2", "-ar", "44100"]),
        ("mp3", ["-ac", "2", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "96k"]),
        ("ogg", ["-ar", "48000", "-c:a", "libvorbis"]),
        ("m4a", ["-ar", "22050", "-c:a", "aac"]),
    ],
)
def test_compressed_and_stereo_formats_decode_to_same_duration(tmp_path, suffix, ffmpeg_args, short_speech):
    encoded = transcode(short_speech, tmp_path / f"speech.{suffix}", *ffmpeg_args)
    reference = load_audio(short_speech)
    samples = load_audio(encoded)
    # Lossy codecs add encoder delay/padding of a few tens of ms at most.
    tolerance_s = 0.02 if suffix == "flac" else 0.06
    assert abs(audio_duration(samples, 16000) - audio_duration(reference, 16000)) <= tolerance_s
    if suffix == "flac":
        # Lossless, but resampled 16k -> 44.1k -> 16k: the same waveform up to resampler ripple.
        common = min(len(samples), len(reference))
        assert np.corrcoef(samples[:common], reference[:common])[0, 1] > 0.99


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="not found") as error:
        load_audio(tmp_path / "nope.wav")
    assert error.value.path.endswith("nope.wav")


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        load_audio(empty)


def test_text_file_named_wav(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio at all, just some words in a text file\n" * 20)
    with pytest.raises(BadInputError, match="not decodable audio") as error:
        load_audio(fake)
    assert "\n" not in error.value.message


def test_file_without_audio_stream(shared_assets):
    with pytest.raises(BadInputError, match="no audio stream"):
        load_audio(shared_assets / "face_grace_hopper.jpg")


def test_silent_wav(tmp_path):
    silent = write_wav_int16(tmp_path / "silent.wav", np.zeros(16000 * 2), 16000)
    with pytest.raises(BadInputError, match="silent"):
        load_audio(silent)


def test_faint_hiss_counts_as_silent(tmp_path):
    # Peak above 1e-3 but every 20 ms frame far below -50 dBFS.
    hiss = np.random.default_rng(0).integers(-60, 61, size=16000 * 2)
    path = write_wav_int16(tmp_path / "hiss.wav", hiss, 16000)
    with pytest.raises(BadInputError, match="silent"):
        load_audio(path)


def test_too_long_reports_length_and_limit(short_speech):
    with pytest.raises(BadInputError, match=r"audio is 4\.0 s long; the limit is 2 s"):
        load_audio(short_speech, max_seconds=2)


def test_exactly_at_limit_is_accepted(short_speech):
    samples = load_audio(short_speech, max_seconds=4.0)
    assert len(samples) == 64000


def test_normalize_loudness_hits_target_on_active_frames(short_speech):
    samples = load_audio(short_speech)
    for target_dbfs in (-26.0, -20.0):
        louder = normalize_loudness(samples, target_dbfs=target_dbfs)
        # Measure on the frames that were active in the input (scaling moves the -50 dBFS gate).
        active = frame_rms_dbfs(samples, 16000) > -50
        frame_db = frame_rms_dbfs(louder, 16000)
        active_db = 10 * np.log10(np.mean(10 ** (frame_db[active] / 10)))
        assert abs(active_db - target_dbfs) < 0.5
        assert np.max(np.abs(louder)) <= 0.99 + 1e-6


def test_normalize_loudness_is_clip_safe(short_speech):
    samples = load_audio(short_speech)
    louder = normalize_loudness(samples, target_dbfs=-3.0)
    assert np.max(np.abs(louder)) == pytest.approx(0.99, abs=1e-4)
    # Gain limited, shape preserved.
    correlation = np.corrcoef(louder, samples)[0, 1]
    assert correlation > 0.9999
