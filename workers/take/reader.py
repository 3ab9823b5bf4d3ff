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


class _TakeStream:
    """One ffmpeg process decoding the take from frame ``start`` on, read ``count`` frames at a
    time (only what a call asks for is in memory)."""

    def __init__(self, path: str | os.PathLike, info: TakeInfo, start: int = 0, count: int | None = None):
        self.path, self.info = path, info
        self.next = start          # index of the next frame read() returns
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
        self.frame_bytes = info.width * info.height * 3
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.ended = False
        self._scratch: np.ndarray | None = None

    def read(self, count: int, into: np.ndarray | None = None) -> np.ndarray:
        """The next ``count`` frames, (n, height, width, 3) uint8 RGB, read straight from the pipe
        into a new array (or the first ``count`` of ``into``'s); n < ``count`` at the take's end
        (the stream then checks ffmpeg's exit: BadInputError when it could not decode)."""
        shape = (max(count, 0), self.info.height, self.info.width, 3)
        frames = np.empty(shape, np.uint8) if into is None else into[:shape[0]]
        buffer = memoryview(frames.reshape(-1))
        got = 0
        while got < len(buffer) and not self.ended:
            read = self.process.stdout.readinto(buffer[got:])
            if not read:
                break
            got += read
        whole = got // self.frame_bytes
        self.next += whole
        if whole < count:
            self.ended = True
            errors = self.process.stderr.read().decode(errors="replace").strip()
            if self.process.wait() != 0:
                raise BadInputError("cannot decode the take "
                                    f"({errors.splitlines()[-1] if errors else 'ffmpeg failed'})", self.path)
        return frames[:whole]

    def skip(self, count: int) -> None:
        """Read past the next ``count`` frames (fewer at the take's end) into one frame's buffer,
        reused: a frame skipped costs no new memory (a new array each time faulted its pages in
        afresh, ~4 MB a 960p frame)."""
        if self._scratch is None:
            self._scratch = np.empty((1, self.info.height, self.info.width, 3), np.uint8)
        for _ in range(count):
            if self.ended or len(self.read(1, into=self._scratch)) == 0:
                return

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


def read_take(path: str | os.PathLike, info: TakeInfo, start: int = 0, count: int | None = None,
              batch: int = 25) -> Iterator[np.ndarray]:
    """Frames [start, start + count) of the take (all from ``start`` when None), in batches.

    Yields:
        (b, height, width, 3) uint8 RGB, b <= ``batch``; only one batch is in memory at a time.

    Raises:
        BadInputError: ffmpeg cannot decode the take.
    """
    stream = _TakeStream(path, info, start, count)
    try:
        while True:
            frames = stream.read(batch)
            if len(frames):
                yield frames
            if stream.ended:
                break
    finally:
        stream.close()


def read_take_frames(path: str | os.PathLike, info: TakeInfo, frames: np.ndarray) -> np.ndarray:
    """The take's frames at consecutive, non-decreasing indices ``frames`` (an index may repeat:
    a held ending repeats the last frame) -> (len(frames), height, width, 3) uint8 RGB."""
    first, last = int(frames[0]), int(frames[-1])
    stream = _TakeStream(path, info, first, last - first + 1)
    try:
        decoded = stream.read(last - first + 1)
    finally:
        stream.close()
    if len(decoded) < last - first + 1:
        raise BadInputError(f"the take ended before frame {last}", path)
    return decoded[frames - first]


class TakeFrameReader:
    """A worker's reader of its chunks' frames, one decoding of the take for a run of chunks.

    A chunk read alone (:func:`read_take_frames`) seeks: ffmpeg decodes from the keyframe
    before it (h264's default keyframe interval is 10 s) plus ``_SEEK_MARGIN_S``, so a take
    read in 2-s chunks was decoded several times over. This reader keeps its ffmpeg process
    open after a chunk: a chunk that starts at or a little after where the last one stopped
    (within ``max_skip_s``: on a pool of several decoders each gets every n-th chunk) reads
    on, decoding the frames between and dropping them, which is the same picture (one reader
    of the take from its start, ``read_take``) and cheaper than a seek. Anything else (an
    earlier frame, another take, a far jump) opens a fresh, seeking process. The last frame
    read is kept, so a held ending (its index repeated) needs no re-reading. The process
    stays open, idle, until another take is read or :meth:`close` (at most one per reader).
    """

    def __init__(self, max_skip_s: float = 4.0):
        self.max_skip_s = max_skip_s
        self._stream: _TakeStream | None = None
        self._key: tuple[str, TakeInfo] | None = None
        self._last: np.ndarray | None = None      # frame _stream.next - 1

    def frames(self, path: str | os.PathLike, info: TakeInfo, frames: np.ndarray) -> np.ndarray:
        """As :func:`read_take_frames`: frames at consecutive, non-decreasing indices ->
        (len(frames), height, width, 3) uint8 RGB."""
        first, last = int(frames[0]), int(frames[-1])
        if not self._resumes(path, info, first):
            self.close()
            self._stream, self._key = _TakeStream(path, info, first), (str(path), info)
        stream = self._stream
        parts = []
        if first < stream.next:           # the frame read last, again
            parts.append(self._last[None])
        stream.skip(first - stream.next)      # frames another worker dubs, read past
        parts.append(stream.read(max(0, last + 1 - stream.next)))
        decoded = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if len(decoded) < last - first + 1:
            self.close()
            raise BadInputError(f"the take ended before frame {last}", path)
        self._last = decoded[-1].copy()
        if len(frames) == len(decoded):       # every frame once, in order: the frames as read
            return decoded
        return decoded[frames - first]

    def _resumes(self, path: str | os.PathLike, info: TakeInfo, first: int) -> bool:
        stream = self._stream
        if stream is None or stream.ended or self._key != (str(path), info):
            return False
        if first == stream.next - 1:
            return self._last is not None
        return stream.next <= first <= stream.next + self.max_skip_s * info.fps

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream, self._key, self._last = None, None, None
