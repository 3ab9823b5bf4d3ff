"""Reading takes: one clear refusal per kind of bad input; chunks that are the stream's frames."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from core.errors import BadInputError
from workers.take.reader import TakeFrameReader, probe_take, read_take, read_take_frames


def test_a_take_reads_whole_and_in_chunks_alike(short_take):
    info = probe_take(short_take, 600)
    assert (info.width, info.height, info.fps) == (400, 300, 25.0)
    whole = np.concatenate(list(read_take(short_take, info, batch=7)))
    assert len(whole) == info.expected_frames == 30
    # a chunk from the middle seeks, and gets the very frames the whole read got
    chunk = read_take_frames(short_take, info, np.arange(17, 25))
    assert np.array_equal(chunk, whole[17:25])
    # a held ending repeats the last frame
    held = read_take_frames(short_take, info, np.array([28, 29, 29, 29]))
    assert np.array_equal(held[2], whole[29]) and np.array_equal(held[3], whole[29])


def test_a_decoder_reading_chunks_on_gets_the_frames_a_whole_read_gets(short_take, make_take, tmp_path):
    # One reader serving a worker's chunks in the orders a pool gives them: in turn, every
    # other chunk (several decoders), back to an earlier chunk (a retry), a held ending, and
    # another take between; every chunk is the whole read's frames.
    info = probe_take(short_take, 600)
    whole = np.concatenate(list(read_take(short_take, info)))
    other = make_take(tmp_path / "other.mp4", 5.0, 1.2)
    other_info = probe_take(other, 600)
    other_whole = np.concatenate(list(read_take(other, other_info)))
    reader = TakeFrameReader()
    reads = [(0, 6), (6, 12), (18, 24), (6, 12), (12, 18), (24, 30)]
    for start, stop in reads:
        assert np.array_equal(reader.frames(short_take, info, np.arange(start, stop)), whole[start:stop])
    held = reader.frames(short_take, info, np.array([29, 29, 29]))
    assert all(np.array_equal(frame, whole[29]) for frame in held)
    assert np.array_equal(reader.frames(other, other_info, np.arange(10, 20)), other_whole[10:20])
    assert np.array_equal(reader.frames(short_take, info, np.arange(3, 9)), whole[3:9])
    with pytest.raises(BadInputError, match="ended before frame 31"):
        reader.frames(short_take, info, np.arange(9, 32))
    reader.close()


def test_frames_a_decoder_reads_past_take_one_frame_of_memory(make_take, tmp_path):
    # A worker given every other chunk reads on through the chunks the other workers dub: those
    # frames pass through one reused frame's buffer, not a new array each (memory flat).
    take = make_take(tmp_path / "four.mp4", 3.0, 4.0)
    info = probe_take(take, 600)
    whole = np.concatenate(list(read_take(take, info)))
    reader = TakeFrameReader()
    assert np.array_equal(reader.frames(take, info, np.arange(0, 2)), whole[0:2])
    frame_bytes = whole[0].nbytes
    tracemalloc.start()
    try:
        chunk = reader.frames(take, info, np.arange(80, 82))        # 78 frames read past
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    reader.close()
    assert np.array_equal(chunk, whole[80:82])
    # the chunk (2 frames), the reused buffer and the copy of the last frame read: 4 frames
    assert peak < 5 * frame_bytes, f"{peak / frame_bytes:.1f} frames' memory to read 2"


def test_a_variable_frame_rate_take_is_read_at_its_average_rate(make_take, tmp_path):
    # frames 10-19 twice as long as the others: a variable frame rate
    vfr = make_take(tmp_path / "vfr.mkv", 3.0, 1.2, "-vf",
                      "setpts='(N+if(gte(N,10),min(N-10,10),0))/25/TB'", "-fps_mode", "vfr")
    info = probe_take(vfr, 600)
    whole = np.concatenate(list(read_take(vfr, info)))
    assert abs(len(whole) - info.expected_frames) <= 1
    assert np.array_equal(read_take_frames(vfr, info, np.arange(20, 26)), whole[20:26])
    reader = TakeFrameReader()
    for start in range(0, len(whole) - 5, 6):
        assert np.array_equal(reader.frames(vfr, info, np.arange(start, start + 6)), whole[start:start + 6])


@pytest.mark.parametrize("kind, message", [
    ("audio", "no video stream"), ("image", "still image"), ("garbage", "not a readable video")])
def test_what_is_not_a_take_is_refused_in_one_line(kind, message, shared_assets, run_ffmpeg, tmp_path):
    path = {"audio": tmp_path / "speech.mp4", "image": shared_assets / "face_grace_hopper.jpg",
            "garbage": tmp_path / "noise.mp4"}[kind]
    if kind == "audio":
        run_ffmpeg("-i", str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"), str(path))
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(BadInputError, match=message) as raised:
        probe_take(path, 600)
    assert "\n" not in str(raised.value)


def test_a_take_over_the_length_limit_is_refused(short_take):
    with pytest.raises(BadInputError, match="at most 1 s"):
        probe_take(short_take, 1.0)


@pytest.mark.parametrize("suffix, codec", [("mp4", "libx265"), ("webm", "libvpx-vp9"), ("mov", "prores_ks")])
def test_common_codecs_read_alike(make_take, tmp_path, suffix, codec):
    take = make_take(tmp_path / f"take.{suffix}", 3.0, 0.6, "-c:v", codec)
    info = probe_take(take, 600)
    assert (info.width, info.height) == (400, 300)
    whole = np.concatenate(list(read_take(take, info)))
    assert len(whole) == info.expected_frames == 15
    assert np.array_equal(read_take_frames(take, info, np.arange(9, 15)), whole[9:15])
