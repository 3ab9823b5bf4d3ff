"""MP4 writing: raw RGB frames piped into ffmpeg (libx264 yuv420p + aac), atomically."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import ffmpeg
import imageio_ffmpeg
import numpy as np

from core.errors import BadInputError

STALE_PARTIAL_S = 3600.0
"""A temporary video untouched this long belongs to a dead writer and may be removed."""

_WRITER = re.compile(r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{32}\.partial")


def _writer_gone(temporary: Path, output: Path) -> bool:
    """True when the process writing ``temporary`` (of ``output``) is dead (same host) or it is stale."""
    try:
        if time.time() - temporary.stat().st_mtime > STALE_PARTIAL_S:
            return True
    except OSError:
        return False
    match = _WRITER.fullmatch(temporary.name[len(output.name) + 2:])     # after ".<output name>."
    if match is None or match["host"] != socket.gethostname():
        return False          # another host's writer (shared folder), or an older name: age decides
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:   # alive, another user's
        return False
    return False


def check_writable(path: str | os.PathLike) -> Path:
    """Fail fast, before any rendering, if the output cannot be created."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise BadInputError("output path is a directory", path)
    if not parent.is_dir():
        raise BadInputError("output folder does not exist", path)
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".talkfarm-probe-"):
            pass
    except OSError:
        raise BadInputError("output folder is not writable", path) from None
    return path


# ffmpeg's colour-space names (as ``core.video.probe_video`` reads them) -> the scale filter's matrix names.
_SCALE_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "fcc": "fcc",
                 "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}


def colour_options(colour: dict[str, str]) -> dict[str, str]:
    """ffmpeg output options that convert RGB to YUV with ``colour``'s matrix and range and tag
    the stream with its range, matrix, primaries and transfer; {} for no tags. The tags are set
    on the frames (``setparams``): ffmpeg takes the stream's from them, not from ``-color_*``."""
    colour = {key: value for key, value in colour.items() if re.fullmatch(r"[a-z0-9][a-z0-9.-]*", value)}
    scale, tags = [], []
    if colour.get("matrix") in _SCALE_MATRIX:
        scale.append(f"out_color_matrix={_SCALE_MATRIX[colour['matrix']]}")
        tags.append(f"colorspace={colour['matrix']}")
    if colour.get("range") in ("tv", "pc"):
        scale.append(f"out_range={colour['range']}")
        tags.append(f"range={colour['range']}")
    for key, name in (("primaries", "color_primaries"), ("transfer", "color_trc")):
        if colour.get(key):
            tags.append(f"{name}={colour[key]}")
    if not tags:
        return {}
    steps = (["scale=" + ":".join(scale)] if scale else []) + ["format=yuv420p", "setparams=" + ":".join(tags)]
    return {"vf": ",".join(steps)}


class Mp4Writer:
    """Streams frames into an MP4 next to ``path`` and renames it into place on close.

    A reader never sees a half-written file at ``path``: frames go to a hidden temporary
    name in the same folder, moved over ``path`` only once ffmpeg has finished cleanly.

    Args:
        path: final output file.
        size: (width, height) of the frames, both even.
        fps: frames per second.
        audio_path: speech file muxed in (re-encoded to AAC 48 kHz), or None.
        crf, preset: libx264 quality / speed.
        metadata: container tags (e.g. ``comment``) written with ``-metadata key=value``.
        shortest: end the file with the shorter of frames and audio (a dub trimmed to a take
            shorter than its speech); otherwise the audio is muxed whole.
        colour: colour tags to carry (``core.video.probe_video``'s ``colour`` of a dub's take: range,
            matrix, primaries, transfer). The RGB frames are converted to YUV with that matrix
            and range, and the stream is tagged with all four, so a player shows the take's
            colours; None or empty: untagged, converted as ffmpeg's default (BT.601, tv range).
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: float,
                 audio_path: str | os.PathLike | None = None, crf: int = 18, preset: str = "veryfast",
                 metadata: dict[str, str] | None = None, shortest: bool = False,
                 colour: dict[str, str] | None = None):
        self.path = Path(path)
        self.size = size
        # Unique per attempt and named by its writer (host, pid): two writers of one output
        # never touch each other's file.
        self.temporary = self.path.with_name(
            f".{self.path.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.partial")
        # A writer that died mid-video (its worker killed) left its temporary behind: clear those
        # whose writer process is gone, or that nobody has written to for STALE_PARTIAL_S. A live
        # writer's (another attempt, another job with the same output) is left alone.
        for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.partial"):
            if _writer_gone(stale, self.path):
                with contextlib.suppress(OSError):
                    stale.unlink()
        width, height = size
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
        streams = [video.video]
        options = dict(vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset=preset, movflags="+faststart",
                       format="mp4", r=fps)
        options.update(colour_options(colour or {}))
        if audio_path is not None:
            streams.append(ffmpeg.input(str(audio_path)).audio)
            options.update(acodec="aac", audio_bitrate="128k", ar=48000)
            if shortest:
                options["shortest"] = None
        # Claim the name before ffmpeg starts (it creates its output only once the first frames
        # arrive): from here on another writer's sweep sees a live writer's file, not a gap.
        self.temporary.touch(exist_ok=False)
        self._log = tempfile.TemporaryFile()
        command = ffmpeg.output(*streams, str(self.temporary), **options).global_args("-loglevel", "error", "-nostdin")
        arguments = command.overwrite_output().compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
        where = arguments.index(str(self.temporary))
        for key, value in (metadata or {}).items():   # output options go before the output file name
            arguments[where:where] = ["-metadata", f"{key}={value}"]
            where += 2
        self._process = subprocess.Popen(
            arguments,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        self.frames_written = 0
        self._piping: threading.Thread | None = None
        self._broken = False

    def write(self, frames: np.ndarray) -> None:
        """Append frames (N, H, W, 3) uint8 RGB.

        Returns once the frames before these are in ffmpeg's hands; these are piped on a
        thread, so x264 encodes them while the caller makes the next ones (the pipe write waits
        outside the GIL). At most one call's frames are held here. A failure of ffmpeg is
        raised by the next ``write`` or by ``close``.
        """
        if frames.shape[1:] != (self.size[1], self.size[0], 3) or frames.dtype != np.uint8:
            raise ValueError(f"expected (N, {self.size[1]}, {self.size[0]}, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        self._finish_piping()
        data = memoryview(np.ascontiguousarray(frames).reshape(-1))
        self._piping = threading.Thread(target=self._pipe, args=(data,), name="mp4-writer", daemon=True)
        self._piping.start()
        self.frames_written += len(frames)

    def _pipe(self, data: memoryview) -> None:
        try:
            self._process.stdin.write(data)
        except (BrokenPipeError, ValueError):     # ffmpeg died, or abort() closed the pipe
            self._broken = True

    def _finish_piping(self) -> None:
        """Wait for the frames being piped; ffmpeg's failure raised (RuntimeError)."""
        if self._piping is not None:
            self._piping.join()
            self._piping = None
        if self._broken:
            self._fail()

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        self._finish_piping()
        self._process.stdin.close()
        if self._process.wait() != 0:
            self._fail()
        self._log.close()
        os.replace(self.temporary, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary file; nothing is left at ``path``."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._piping is not None:      # its write ends with the pipe broken by the kill
            self._piping.join()
            self._piping = None
        self._log.close()
        self.temporary.unlink(missing_ok=True)

    def _fail(self) -> None:
        self._process.wait()
        self._log.seek(0)
        message = self._log.read().decode(errors="replace").strip().splitlines()
        self.abort()
        raise RuntimeError(f"ffmpeg failed writing {self.path}: {message[-1] if message else 'no message'}")
