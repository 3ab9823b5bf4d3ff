"""Mp4Writer: playable h264/aac files from frames + real speech, atomic on close and on abort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import BadInputError
from core.identity import sha256_file
from core.video import probe_video, read_frames
from workers.encode.video import Mp4Writer, check_writable


def synthetic_frames(n: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A bright square moving right over a gradient: easy to check after lossy coding."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    frames[..., 2] = np.linspace(0, 200, width, dtype=np.uint8)[None, None, :]
    for i in range(n):
        frames[i, 30:60, 4 * i:4 * i + 30] = 255
    return frames


def test_writes_a_playable_mp4_with_audio(tmp_path, shared_assets):
    path = tmp_path / "out.mp4"
    frames = synthetic_frames(25)
    writer = Mp4Writer(path, (128, 96), 25.0, shared_assets / "speech_cmu_arctic_a0009_3s.wav")
    writer.write(frames[:10])
    writer.write(frames[10:])
    assert not path.exists()                       # nothing at the final path before close
    assert writer.close() == path and writer.frames_written == 25
    info = probe_video(path)
    assert (info["video_codec"], info["pix_fmt"], info["audio_codec"]) == ("h264", "yuv420p", "aac")
    assert (info["width"], info["height"]) == (128, 96) and info["fps"] == 25.0
    decoded = read_frames(path)
    assert decoded.shape[1:] == (96, 128, 3) and len(decoded) >= 25
    # the content survives coding: the bright square is where it was put
    for i in (0, 12, 24):
        assert np.abs(decoded[i].astype(int) - frames[i]).mean() < 6
    assert list(tmp_path.iterdir()) == [path]      # no temporary left over
    assert len(sha256_file(path)) == 64


def test_read_frames_round_trip_without_audio(tmp_path):
    path = tmp_path / "silent.mp4"
    frames = synthetic_frames(8, 64, 64)
    writer = Mp4Writer(path, (64, 64), 10.0)
    writer.write(frames)
    writer.close()
    decoded = read_frames(path)
    assert decoded.shape == (8, 64, 64, 3) and decoded.dtype == np.uint8
    assert not probe_video(path)["has_audio"]
    assert np.abs(decoded.astype(int) - frames).mean() < 6


def test_abort_leaves_nothing(tmp_path, shared_assets):
    path = tmp_path / "aborted.mp4"
    writer = Mp4Writer(path, (128, 96), 25.0, shared_assets / "speech_cmu_arctic_a0009_3s.wav")
    writer.write(synthetic_frames(5))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_frames_piped_on_while_the_caller_goes_on_are_all_written_in_order(tmp_path):
    # write() returns before ffmpeg has the frames (they are piped on a thread): the caller's
    # next frames follow them, and close() waits for the last ones.
    path = tmp_path / "piped.mp4"
    frames = synthetic_frames(30, 64, 128)
    writer = Mp4Writer(path, (128, 64), 25.0)
    for start in range(0, 30, 3):
        writer.write(frames[start:start + 3])
    writer.close()
    decoded = read_frames(path)
    assert len(decoded) == 30
    assert np.abs(decoded.astype(int) - frames).mean() < 6
    # the square's position, frame by frame: nothing reordered or dropped
    columns = [int(np.argmax(frame[45, :, 0] > 200)) for frame in decoded]
    assert columns == [4 * i for i in range(30)]


def test_an_encoder_that_dies_mid_video_fails_the_next_write_and_leaves_nothing(tmp_path):
    path = tmp_path / "died.mp4"
    writer = Mp4Writer(path, (640, 480), 25.0)
    writer.write(np.zeros((2, 480, 640, 3), np.uint8))
    writer._process.kill()                    # ffmpeg killed from outside (out of memory, a signal)
    writer._process.wait()
    with pytest.raises(RuntimeError, match="ffmpeg failed writing"):
        for _ in range(20):                   # one of these finds the pipe broken
            writer.write(np.zeros((25, 480, 640, 3), np.uint8))
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_shape_is_refused(tmp_path):
    writer = Mp4Writer(tmp_path / "x.mp4", (64, 64), 25.0)
    with pytest.raises(ValueError, match="expected"):
        writer.write(np.zeros((2, 32, 64, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "ok.mp4") == tmp_path / "ok.mp4"
    with pytest.raises(BadInputError, match="does not exist"):
        check_writable(tmp_path / "nope" / "out.mp4")
    with pytest.raises(BadInputError, match="is a directory"):
        check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []          # the probe file is gone


DIE_WRITING = """
import os, signal, sys
import numpy as np
from workers.encode.video import Mp4Writer
writer = Mp4Writer(sys.argv[1], (64, 64), 10.0)
writer.write(np.zeros((30, 64, 64, 3), np.uint8))
writer._process.stdin.close()                      # ffmpeg finishes the temporary...
writer._process.wait()
print(writer.temporary, flush=True)
os.kill(os.getpid(), signal.SIGKILL)               # ...and its worker dies before placing it
"""


def test_a_dead_writers_temporary_is_cleared_by_the_next_writer(tmp_path):
    path = tmp_path / "clip.mp4"
    died = subprocess.run([sys.executable, "-c", DIE_WRITING, str(path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[3])
    assert died.returncode == -9 and Path(died.stdout.strip()).exists(), died.stderr
    writer = Mp4Writer(path, (64, 64), 10.0)
    writer.write(synthetic_frames(4, 64, 64))
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_two_live_writers_of_one_output_never_touch_each_others_file(tmp_path):
    path = tmp_path / "clip.mp4"
    first = Mp4Writer(path, (64, 64), 10.0)
    first.write(synthetic_frames(6, 64, 64))
    second = Mp4Writer(path, (64, 64), 10.0)       # another attempt / job writing the same output
    assert first.temporary.exists() and first.temporary != second.temporary
    second.write(synthetic_frames(4, 64, 64))
    first.write(synthetic_frames(6, 64, 64))
    assert first.close() == path and probe_video(path)["duration_s"] == pytest.approx(1.2, abs=0.15)
    assert second.close() == path and probe_video(path)["duration_s"] == pytest.approx(0.4, abs=0.15)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("colour", [{"range": "pc", "matrix": "bt709", "primaries": "bt709", "transfer": "bt709"},
                                    {"range": "tv", "matrix": "smpte170m", "primaries": "bt470bg",
                                     "transfer": "smpte170m"}])
def test_carries_colour_tags_and_converts_with_them(tmp_path, colour):
    """A dub keeps its take's colour: the stream is tagged with the take's range, matrix,
    primaries and transfer, and the RGB is converted with that matrix and range, so a reader
    that honours the tags gets the colours back (saturated patches, where a matrix mismatch
    shows as ~10 levels)."""
    frame = np.zeros((64, 96, 3), np.uint8)
    for i, patch in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (230, 200, 60), (20, 20, 20), (240,) * 3]):
        frame[:, 16 * i:16 * (i + 1)] = patch
    path = tmp_path / "tagged.mp4"
    writer = Mp4Writer(path, (96, 64), 25.0, colour=colour)
    writer.write(np.repeat(frame[None], 10, 0))
    writer.close()
    assert probe_video(path)["colour"] == colour
    back = read_frames(path)[3].astype(int)
    error = np.abs(back - frame).reshape(64, 6, 16, 3)[8:56, :, 3:13].mean((0, 2))     # per patch, inner part
    assert error.max() <= 3
