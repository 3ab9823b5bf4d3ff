"""Reading an actor's take: what it is, and its frames at a constant rate, in chunks.

Every reader of a take sees the same frames: the video stream resampled to its own average
frame rate (ffmpeg's ``fps`` filter, from time 0), so a variable-frame-rate take is read as a
constant-rate one and frame ``i`` means the same picture to the tracker and to every decoder.
A chunk starting at frame ``i`` seeks (to two seconds before it, then decodes forward), never
decoding the take from its start again.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import imageio_ffmpeg
import numpy as np

from core.errors import BadInputError
from core.video import probe_video

# Still-image codecs: a "video" in one of these is a photo (talkfarm render takes those).
IMAGE_CODECS = {"png", "mjpeg", "jpeg2000", "webp", "bmp", "tiff", "gif", "jpegls", "pam", "ppm"}
MIN_FPS, MAX_FPS = 10.0, 60.0
# A take decoding to fewer frames than its header promises by this fraction is truncated.
MIN_DECODED_FRACTION = 0.9
_SEEK_MARGIN_S = 2.0


@dataclass(frozen=True)
class TakeInfo:
    """What the take's header says.

    Attributes:
        width, height: frame size, pixels.
        fps: its (average) frame rate, frames per second.
        duration_s: length, seconds.
        expected_frames: frames at ``fps`` over ``duration_s``.
        colour: the colour tags the take states (``core.video.probe_video``'s ``colour``).
    """

    width: int
    height: int
    fps: float
    duration_s: float
    colour: dict[str, str] = field(default_factory=dict)

    @property
    def expected_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


def probe_take(path: str | os.PathLike, max_seconds: float) -> TakeInfo:
    """The take's facts, or BadInputError saying in one line why it cannot be dubbed."""
    info = probe_video(path)
    if info.get("video_codec") is None:
        if info.get("has_audio"):
            raise BadInputError("has no video stream (audio only); dubbing needs the actor's take", path)
        raise BadInputError("is not a readable video (corrupt, truncated or not a video file)", path)
    if info["video_codec"] in IMAGE_CODECS or not info.get("duration_s"):
        raise BadInputError("is a still image, not a video; use talkfarm render for a photo", path)
    if "width" not in info or "fps" not in info:
        raise BadInputError("is not a readable video (no frame size or rate in its header)", path)
    if info["duration_s"] > max_seconds:
        raise BadInputError(f"the take is {info['duration_s']:.0f} s long; at most {max_seconds:.0f} s", path)
    if not MIN_FPS <= info["fps"] <= MAX_FPS:
        raise BadInputError(f"frame rate {info['fps']:g} fps is outside {MIN_FPS:g}-{MAX_FPS:g} fps", path)
    return TakeInfo(int(info["width"]), int(info["height"]), float(info["fps"]), float(info["duration_s"]),
                    info["colour"])


def read_take(path: str | os.PathLike, info: TakeInfo, start: int = 0, count: int | None = None,
              batch: int = 25) -> Iterator[np.ndarray]:
    """Frames [start, start + count) of the take (all from ``start`` when None), in batches.

    Yields:
        (b, height, width, 3) uint8 RGB, b <= ``batch``; only one batch is in memory at a time.

    Raises:
        BadInputError: ffmpeg cannot decode the take.
    """
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin"]
    if start > 0:
        command += ["-ss", f"{max(0.0, start / info.fps - _SEEK_MARGIN_S):.6f}"]
    # -copyts keeps the take's own timestamps through the seek, so after the fps filter (from
    # time 0) a frame's pts is its index in the take and the select picks frames by index.
    command += ["-copyts", "-i", str(path), "-an", "-sn", "-vf",
                f"fps={info.fps}:start_time=0,select=gte(pts\\,{start})"]
    if count is not None:
        command += ["-frames:v", str(count)]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    frame_bytes = info.width * info.height * 3
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            data = process.stdout.read(frame_bytes * batch)
            whole = len(data) // frame_bytes
            if whole:
                yield np.frombuffer(data[:whole * frame_bytes], np.uint8).reshape(whole, info.height, info.width, 3)
            if len(data) < frame_bytes * batch:
                break
        errors = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            raise BadInputError(f"cannot decode the take ({errors.splitlines()[-1] if errors else 'ffmpeg failed'})",
                                path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def read_take_frames(path: str | os.PathLike, info: TakeInfo, frames: np.ndarray) -> np.ndarray:
    """The take's frames at consecutive, non-decreasing indices ``frames`` (an index may repeat:
    a held ending repeats the last frame) -> (len(frames), height, width, 3) uint8 RGB."""
    first, last = int(frames[0]), int(frames[-1])
    parts = list(read_take(path, info, first, last - first + 1, batch=last - first + 1))
    decoded = np.concatenate(parts) if parts else np.empty((0, info.height, info.width, 3), np.uint8)
    if len(decoded) < last - first + 1:
        raise BadInputError(f"the take ended before frame {last}", path)
    return decoded[frames - first]
