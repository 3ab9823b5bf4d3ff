"""Reading video files: container facts and decoded RGB frames (ffmpeg through imageio-ffmpeg).

The readers every layer shares: the encoder's tests, ``talkfarm verify`` (the watermark
reader) and the quality control all decode with these, so none of them imports the writer
(``workers.encode.video.Mp4Writer``).
"""

from __future__ import annotations

import os
import re
import subprocess

import ffmpeg
import imageio_ffmpeg
import numpy as np


def probe_video(path: str | os.PathLike) -> dict:
    """Container facts from ffmpeg's header dump: width, height, fps, duration_s, has_audio, codecs,
    and the video's colour tags (``colour``: :func:`_colour_tags`)."""
    completed = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                               capture_output=True, text=True)
    info: dict = {"has_audio": False, "video_codec": None, "audio_codec": None, "pix_fmt": None, "colour": {}}
    for line in completed.stderr.splitlines():
        line = line.strip()
        if line.startswith("Duration:"):
            stamp = line.split(",")[0].split()[1]
            if stamp != "N/A":
                hours, minutes, seconds = stamp.split(":")
                info["duration_s"] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        elif "Video:" in line:
            fields = line.split("Video:")[1].split(",")
            info["video_codec"] = fields[0].split()[0]
            info["pix_fmt"] = fields[1].strip().split("(")[0].strip()
            info["colour"] = _colour_tags(line)
            for field in fields:
                token = field.strip().split(" ")[0]
                if "x" in token and token.replace("x", "").isdigit():
                    info["width"], info["height"] = (int(v) for v in token.split("x"))
                if field.strip().endswith(" fps"):
                    info["fps"] = float(field.strip().split()[0])
        elif "Audio:" in line:
            info["has_audio"] = True
            info["audio_codec"] = line.split("Audio:")[1].split(",")[0].split()[0]
    return info


# ffmpeg's stream line prints the pixel format's colour as "yuv420p(tv, bt709, progressive)" or,
# when they differ, "yuv420p(pc, space/primaries/transfer)": range first, then the matrix.
_COLOUR_RANGES = ("tv", "pc")
_COLOUR_KEYS = ("matrix", "primaries", "transfer")
_COLOUR_TOKEN = re.compile(r"[a-z0-9.-]+(/[a-z0-9.-]+){2}|[a-z0-9.-]+")


def _colour_tags(stream_line: str) -> dict[str, str]:
    """The colour tags of an ``ffmpeg -i`` video stream line, as ffmpeg names them: ``range``
    (tv / pc), ``matrix`` (e.g. bt709, smpte170m), ``primaries``, ``transfer``; a tag the file
    leaves unset is absent."""
    found = re.search(r"Video: [^,]+, \w+\(([^)]*)\)", stream_line)
    colour: dict[str, str] = {}
    for token in (part.strip() for part in (found.group(1).split(",") if found else [])):
        if token in _COLOUR_RANGES:
            colour["range"] = token
        elif token in ("progressive", "interlaced") or token.endswith("first") or "matrix" in colour:
            continue                                  # the scan order, not a colour
        elif _COLOUR_TOKEN.fullmatch(token):
            parts = token.split("/")
            colour.update(zip(_COLOUR_KEYS, parts if len(parts) == 3 else parts * 3))
    return {key: value for key, value in colour.items() if value not in ("unknown", "reserved")}


def read_frames(path: str | os.PathLike) -> np.ndarray:
    """Decode every frame of a video to (N, H, W, 3) uint8 RGB at its own size."""
    info = probe_video(path)
    out, _ = (ffmpeg.input(str(path)).output("pipe:", format="rawvideo", pix_fmt="rgb24")
              .run(cmd=imageio_ffmpeg.get_ffmpeg_exe(), capture_stdout=True, capture_stderr=True))
    return np.frombuffer(out, np.uint8).reshape(-1, info["height"], info["width"], 3)


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) of a width x height video scaled so its longer side <= max_side, both even.

    The one rule for frames decoded scaled (:func:`decode_scaled`, ffmpeg scales while
    decoding) and frames scaled in memory (the quality control's ``fit_frame``), so both
    paths see frames of the same size. None: the frames' own size.
    """
    if max_side is None:
        return int(width), int(height)
    factor = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * factor / 2)) * 2), max(2, int(round(height * factor / 2)) * 2)


def decode_scaled(path: str | os.PathLike, max_side: int | None) -> tuple[np.ndarray, dict]:
    """Every frame of a video, area-averaged to :func:`scaled_size` while decoding.

    Returns:
        ((T, h, w, 3) uint8 RGB frames, :func:`probe_video`'s facts of the file).

    Raises:
        ValueError: ffmpeg finds no video stream or cannot decode it.
    """
    info = probe_video(path)
    if info.get("video_codec") is None or "width" not in info:
        raise ValueError(f"not a video file: {path}")
    w, h = scaled_size(info["width"], info["height"], max_side)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-an",
               "-vf", f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        raise ValueError(f"cannot decode {path}: {done.stderr.decode(errors='replace').strip()[-200:]}")
    frames = np.frombuffer(done.stdout, np.uint8)
    frames = frames[: len(frames) // (w * h * 3) * (w * h * 3)].reshape(-1, h, w, 3)
    return frames, info


__all__ = ["probe_video", "read_frames", "scaled_size", "decode_scaled"]
