"""Tracking a take: the face followed through every frame, shot cuts re-detected, frames
without a face counted, the take's own motion read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import BadInputError
from core.take import FRAME_DUBBED, FRAME_MOUTH_OCCLUDED, FRAME_NO_FACE
from workers.face.latents import MOTION_DIM, dyn_index
from workers.take.track import track_take


def test_the_face_is_tracked_through_every_frame(short_track):
    track, face = short_track
    assert track.num_frames == 30 and (track.fps, track.width, track.height) == (25.0, 400, 300)
    assert (track.status == FRAME_DUBBED).all() and not track.cuts
    assert np.isfinite(track.landmarks).all() and track.landmarks.shape == (30, 478, 3)
    # the face box is ~120 px: dubbed at its own resolution, not blown up to 512
    assert 128 <= track.crop_size <= 320
    assert face.crop.shape == (track.crop_size, track.crop_size, 3)
    assert track.own.shape == (30, MOTION_DIM) and np.isfinite(track.own).all()
    # the man is speaking here: his own jaw moves
    jaw = track.own[:, dyn_index("jaw_open")]
    assert jaw.max() - jaw.min() > 0.1
    # landmarks move smoothly from frame to frame (tracking, not a new detection each frame)
    step = np.linalg.norm(np.diff(track.landmarks[:, :, :2], axis=0), axis=-1).mean(1)
    assert step.max() < 6.0


def test_a_cut_to_a_shot_without_a_face_is_detected_and_counted(short_take, faceless_clip, run_ffmpeg, tmp_path):
    joined = tmp_path / "cut.mp4"
    run_ffmpeg("-i", str(short_take), "-i", str(faceless_clip), "-i", str(short_take), "-filter_complex",
               "[0:v][1:v][2:v]concat=n=3:v=1[v]", "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast",
               str(joined))
    track, _ = track_take(joined, 0, 512, 600)
    assert track.num_frames == 85
    assert track.cuts == [30, 55]
    assert (track.status[30:55] == FRAME_NO_FACE).all()
    assert (track.status[:30] == FRAME_DUBBED).all() and (track.status[56:] == FRAME_DUBBED).all()
    assert track.counts() == {"dubbed": 60, "no_face": 25, "face_too_small": 0, "profile": 0, "mouth_occluded": 0}


def test_a_video_without_a_face_is_refused(faceless_clip):
    with pytest.raises(BadInputError, match="no face found in any frame"):
        track_take(faceless_clip, 0, 512, 600)


def test_asking_for_a_face_the_take_does_not_show_is_refused(short_take):
    with pytest.raises(BadInputError, match="face 1 .* not found in any frame"):
        track_take(short_take, 1, 512, 600)


def test_face_n_follows_the_nth_largest_face(short_take, run_ffmpeg, tmp_path):
    # the take beside itself at two thirds the size: two faces, the left one larger
    pair = tmp_path / "pair.mp4"
    run_ffmpeg("-i", str(short_take), "-filter_complex",
               "[0:v]split[a][b];[b]scale=268:200,pad=268:300:0:50[s];[a][s]hstack", "-c:v", "libx264",
               "-preset", "veryfast", str(pair))
    largest, _ = track_take(pair, 0, 512, 600)
    second, _ = track_take(pair, 1, 512, 600)
    assert (largest.status == FRAME_DUBBED).all() and (second.status == FRAME_DUBBED).all()
    assert (largest.landmarks[:, :, 0].mean(1) < 400).all() and (second.landmarks[:, :, 0].mean(1) > 400).all()
    size = lambda track: np.ptp(track.landmarks[:, :, 0], axis=1).mean()     # noqa: E731
    assert size(second) < 0.8 * size(largest)


@pytest.mark.parametrize("fit, tracked", [("trim", 20), ("hold", 20), ("error", 30)])
def test_a_dub_that_ends_with_its_speech_tracks_no_frame_past_it(short_take, short_track, shared_assets, run_ffmpeg,
                                                                 tmp_path, fit, tracked):
    """0.6 s of speech on the 1.2 s take: trimmed (or held) to the speech, the take is tracked to
    its end plus SPEECH_MARGIN_S (ceil(0.8 s x 25) = 20 frames), the same rows as the whole
    take's track; ``error`` compares the whole take's length, so tracks it all."""
    from core.schemas import RenderRequest, TakeOptions
    from core.task import RenderTask
    from workers.take.stage import TakeTrackStage

    speech = tmp_path / "speech.wav"
    run_ffmpeg("-i", str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"), "-t", "0.6", str(speech))
    task = RenderTask(RenderRequest(id="trim", video=str(short_take), audio=str(speech),
                                    output=str(tmp_path / "out.mp4"), take=TakeOptions(fit=fit)))
    TakeTrackStage().process(task)
    whole, _ = short_track
    assert task.take.num_frames == tracked and task.take.landmarks.shape[0] == tracked
    assert np.array_equal(task.take.landmarks, whole.landmarks[:tracked])
    assert np.array_equal(task.take.status, whole.status[:tracked])


def test_frames_with_fingers_over_the_mouth_pass_through_and_are_counted():
    """Frames 200-259 of the Pexels take (bench/data/mouth/SOURCES.md): two fingers over the
    right corner of her mouth until about frame 226, then her hand is gone and she smiles. The
    covered frames pass through (counted as mouth_occluded), the uncovered ones are dubbed."""
    take = Path(__file__).resolve().parents[3] / "bench" / "data" / "mouth" / "covered" / \
        "take_pexels_langer_frames200-259.mp4"
    track, _ = track_take(take, 0, 512, 600)
    assert track.num_frames == 60
    assert (track.status[:20] == FRAME_MOUTH_OCCLUDED).all(), track.status
    assert (track.status[32:] == FRAME_DUBBED).all(), track.status
    counts = track.counts()
    assert counts["mouth_occluded"] >= 20 and counts["dubbed"] >= 28, counts
