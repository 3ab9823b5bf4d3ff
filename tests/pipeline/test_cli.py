"""``talkfarm render`` end to end, as a user runs it: real photo, real speech, real exit codes.

Every run is a subprocess of the installed CLI (``python -m pipeline.cli``). The bad-input
runs are started together in one module fixture (they are mostly start-up time).
"""

from __future__ import annotations

import subprocess
import sys
import wave as wavfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from core.video import probe_video

SPEECH = "speech_cmu_arctic_a0009_3s.wav"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def talkfarm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[2])


def render(image, audio, output, *extra: str) -> subprocess.CompletedProcess:
    return talkfarm("render", "--image", str(image), "--audio", str(audio), "-o", str(output), "--quiet", *extra)


def wav_seconds(path: Path) -> float:
    with wavfile.open(str(path)) as reader:
        return reader.getnframes() / reader.getframerate()


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wavfile.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.asarray(samples, "<i2").tobytes())
    return path


# ---------------------------------------------------------------- a good render

@pytest.fixture(scope="module")
def good_render(shared_assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    output = folder / "grace.mp4"
    done = render(shared_assets / "face_grace_hopper.jpg", shared_assets / SPEECH, output, "--size", "256")
    return done, output, folder


def test_render_writes_an_h264_aac_video_matching_the_audio(good_render, shared_assets):
    done, output, folder = good_render
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(output)
    assert "Traceback" not in done.stderr
    info = probe_video(output)
    assert (info["video_codec"], info["pix_fmt"], info["audio_codec"]) == ("h264", "yuv420p", "aac")
    assert (info["width"], info["height"]) == (256, 256) and info["fps"] == 25.0
    audio_s = wav_seconds(shared_assets / SPEECH)
    assert abs(info["duration_s"] - audio_s) <= 1 / 25 + 0.03, (info["duration_s"], audio_s)  # +0.03: aac priming
    from core.video import read_frames

    frames = read_frames(output)
    assert len(frames) == round(audio_s * 25), (len(frames), audio_s)
    # the face moves: the mouth region changes across the clip, the corners do not
    assert frames[:, 150:200, 100:156].std(0).mean() > 3
    assert frames[:, :20, :20].astype(float).std(0).mean() < 1.5
    assert sorted(p.name for p in folder.iterdir()) == ["grace.mp4", "grace.mp4.provenance.json"]


def test_render_help_lists_every_option():
    done = talkfarm("render", "--help")
    assert done.returncode == 0
    for option in ("--image", "--audio", "--output", "--size", "--fps", "--seed", "--gaze", "--distance",
                   "--emotion", "--paste-back", "--motion", "--device", "--quiet"):
        assert option in done.stdout, option
    text = " ".join(done.stdout.split())           # argparse wraps lines
    assert "up to 10 minutes" in text and "YAW,PITCH" in text and "8-48 kHz" in text


@pytest.mark.parametrize("options, message", [
    (["--sampling-steps", "0"], "--sampling-steps: Input should be greater than or equal to 1"),
    (["--gaze", "ten,0"], "--gaze must be a number, got 'ten'"),
])
def test_a_bad_render_control_is_one_line_exit_2(options, message, shared_assets, tmp_path):
    output = tmp_path / "out.mp4"
    done = render(shared_assets / "face_grace_hopper.jpg", shared_assets / SPEECH, output, *options)
    assert done.returncode == 2 and done.stderr.strip() == f"talkfarm: error: {message}", done.stderr
    assert not output.exists()


@pytest.mark.parametrize("kind", ["mp3", "flac"])
def test_mp3_and_44k_stereo_flac_render(kind, shared_assets, tmp_path):
    speech = shared_assets / SPEECH
    audio = tmp_path / f"speech.{kind}"
    if kind == "mp3":
        ffmpeg("-i", str(speech), "-codec:a", "libmp3lame", "-b:a", "64k", str(audio))
    else:
        ffmpeg("-i", str(speech), "-ar", "44100", "-ac", "2", str(audio))
    output = tmp_path / "out.mp4"
    done = render(shared_assets / "face_grace_hopper.jpg", audio, output, "--size", "128")
    assert done.returncode == 0, done.stderr
    info = probe_video(output)
    assert (info["width"], info["height"], info["audio_codec"]) == (128, 128, "aac")
    assert abs(info["duration_s"] - wav_seconds(speech)) < 0.15   # mp3 adds encoder padding


# ---------------------------------------------------------------- bad inputs

@pytest.fixture(scope="module")
def bad_cases(shared_assets, tmp_path_factory):
    """name -> (image, audio, output, the file the message must name)."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    grace = shared_assets / "face_grace_hopper.jpg"
    speech = shared_assets / SPEECH

    blank = folder / "no_face.jpg"
    Image.new("RGB", (640, 480), (230, 230, 230)).save(blank)
    tiny = folder / "tiny_face.png"
    canvas = Image.new("RGB", (250, 250), (120, 140, 160))
    canvas.paste(Image.open(grace).convert("RGB").resize((102, 120), Image.LANCZOS), (65, 65))
    canvas.save(tiny)
    data = grace.read_bytes()
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text_image = folder / "notes.jpg"
    text_image.write_text("not a picture\n")
    huge = folder / "huge.png"
    Image.new("1", (8000, 7000)).save(huge)
    empty_audio = folder / "empty.wav"
    empty_audio.write_bytes(b"")
    silent = write_wav(folder / "silent.wav", np.zeros(16000 * 2))
    text_audio = folder / "speech.wav"
    text_audio.write_text("RIFF? no, just text\n" * 20)
    long_audio = folder / "long.ogg"      # 601 s of quiet noise, a few hundred kB as 8 kHz vorbis
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=601:c=pink:r=8000:a=0.05", "-ac", "1", "-c:a", "libvorbis",
           "-q:a", "0", str(long_audio))
    not_a_file = folder / "existing_file"
    not_a_file.write_text("x")
    cases = {
        "no face": (blank, speech, None, blank),
        "tiny face": (tiny, speech, None, tiny),
        "truncated image": (truncated, speech, None, truncated),
        "non-image": (text_image, speech, None, text_image),
        "huge image": (huge, speech, None, huge),
        "empty audio": (grace, empty_audio, None, empty_audio),
        "silent audio": (grace, silent, None, silent),
        "non-audio": (grace, text_audio, None, text_audio),
        "over 10 minutes": (grace, long_audio, None, long_audio),
        "missing image": (folder / "missing.jpg", speech, None, folder / "missing.jpg"),
        "missing audio": (grace, folder / "missing.wav", None, folder / "missing.wav"),
        "output folder missing": (grace, speech, folder / "no_such_dir" / "out.mp4", folder / "no_such_dir" / "out.mp4"),
        "output under a file": (grace, speech, not_a_file / "out.mp4", not_a_file / "out.mp4"),
        "output not writable": (grace, speech, Path("/proc/talkfarm_out.mp4"), Path("/proc/talkfarm_out.mp4")),
    }
    runs = {}
    for i, (name, (image, audio, output, _)) in enumerate(cases.items()):
        out_dir = folder / f"out{i}"
        out_dir.mkdir()
        runs[name] = (image, audio, output or out_dir / "video.mp4")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(render, *args, "--size", "128") for name, args in runs.items()}
        results = {name: future.result() for name, future in futures.items()}
    return {name: (results[name], runs[name][2], cases[name][3]) for name in cases}


BAD = ["no face", "tiny face", "truncated image", "non-image", "huge image", "empty audio", "silent audio",
       "non-audio", "over 10 minutes", "missing image", "missing audio", "output folder missing",
       "output under a file", "output not writable"]
EXPECTED = {
    "no face": "no face found", "tiny face": "at least 64 px", "truncated image": "corrupt or truncated",
    "non-image": "not an image file", "huge image": "megapixels", "empty audio": "empty",
    "silent audio": "silent", "non-audio": "not decodable audio", "over 10 minutes": "limit is 600 s",
    "missing image": "not found", "missing audio": "not found", "output folder missing": "does not exist",
    "output under a file": "does not exist", "output not writable": "not writable",
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_fails_with_one_clear_line(name, bad_cases):
    done, output, culprit = bad_cases[name]
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("talkfarm: error: ")
    assert str(culprit) in lines[0], lines[0]
    assert EXPECTED[name] in lines[0], lines[0]
    assert done.stdout == ""
    assert not output.exists()
    if output.parent.is_dir() and str(output.parent) != "/proc":
        leftovers = [p.name for p in output.parent.iterdir() if p.name != "existing_file"]
        assert leftovers == [], leftovers


def test_long_audio_fixture_really_is_over_ten_minutes(bad_cases):
    _, _, culprit = bad_cases["over 10 minutes"]
    assert culprit.stat().st_size < 5_000_000
    assert probe_video(culprit)["duration_s"] > 600
