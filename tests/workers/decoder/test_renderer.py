"""The warp decoder on Grace Hopper's real portrait: what changes, what must not, and where."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.preview import save_contact_sheet
from workers.decoder.renderer import DecoderConfig, FaceRenderer
from workers.face import topology as topo
from workers.face.latents import MOTION_NAMES, dyn_index

JAW = dyn_index("jaw_open")
GAZE_YAW = MOTION_NAMES.index("gaze_yaw")


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points[:, :2] * 4).astype(np.int32)], 1, shift=2)
    return mask.astype(bool)


def motions(source: np.ndarray, **changes: list[float]) -> np.ndarray:
    """One row per value of the single changed latent, the rest as in the photo."""
    (name, values), = changes.items()
    rows = np.repeat(source[None], len(values), 0).astype(np.float32)
    rows[:, MOTION_NAMES.index(name)] = values
    return rows


@pytest.fixture(scope="module")
def renderer(aligned_grace):
    return FaceRenderer(aligned_grace)


@pytest.fixture(scope="module")
def source(aligned_grace):
    return aligned_grace.model.source_latent


@pytest.fixture(scope="module")
def varied(renderer, source, test_output):
    """A spread of head, mouth, eye and gaze latents rendered once: (motion, frames)."""
    rows = np.repeat(source[None], 6, 0).astype(np.float32)
    rows[1, MOTION_NAMES.index("yaw")] += 15
    rows[2, MOTION_NAMES.index("pitch")] -= 10
    rows[3, MOTION_NAMES.index("roll")] += 8
    rows[3, JAW] = 0.6
    rows[4, MOTION_NAMES.index("log_scale")] += np.log(1.15)
    rows[4, dyn_index("smile_left")] = rows[4, dyn_index("smile_right")] = 0.8
    rows[5, MOTION_NAMES.index("tx")] += 0.03
    rows[5, dyn_index("blink_left")] = 1.0
    rows[5, GAZE_YAW] = -15
    frames = renderer.render(rows)
    save_contact_sheet(list(frames), test_output / "renderer_varied.png", columns=6, tile=256,
                       labels=["source", "yaw+15", "pitch-10", "roll+8 jaw.6", "closer smile", "tx blinkL gaze-15"])
    return rows, frames


def test_frames_have_the_crop_geometry(varied, aligned_grace):
    _, frames = varied
    assert frames.shape == (6, 512, 512, 3) and frames.dtype == np.uint8


def test_background_outside_the_face_region_is_the_source_crop(renderer, varied, aligned_grace):
    """Every pixel outside the face region is the crop's own pixel, whatever the head does."""
    _, frames = varied
    x0, y0, x1, y1 = renderer.region
    # the region is a strict sub-box around the face, not the whole crop
    assert 0 < x1 - x0 < 512 and 0 < y1 - y0 <= 512
    oval = aligned_grace.landmarks[list(topo.FACE_OVAL), :2]
    assert x0 <= oval[:, 0].min() and oval[:, 0].max() <= x1 and y0 <= oval[:, 1].min() and oval[:, 1].max() <= y1
    outside = np.ones((512, 512), bool)
    outside[y0:y1, x0:x1] = False
    assert outside.sum() > 50_000
    for frame in frames:
        np.testing.assert_array_equal(frame[outside], aligned_grace.crop[outside])
    # and the face itself does change for a head turn
    assert np.abs(frames[1].astype(int) - aligned_grace.crop).mean() > 1.0


def test_source_latent_renders_the_photo(varied, aligned_grace):
    """The photo's own latent warps nothing: within a few grey levels on average (measured ~0.3)."""
    frame = varied[1][0].astype(np.float64)
    diff = np.abs(frame - aligned_grace.crop)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 12


def test_rendering_is_deterministic(renderer, varied, aligned_grace):
    rows, frames = varied
    np.testing.assert_array_equal(renderer.render(rows), frames)
    # a fresh renderer, and frames rendered in other batch splits, give the same pixels
    fresh = FaceRenderer(aligned_grace, DecoderConfig(batch_frames=4))
    np.testing.assert_array_equal(fresh.render(rows), frames)


def test_pressed_pitched_lips_render_alike_in_any_batch(align):
    """The warp's spline is solved per frame, and a frame must not change with the frames it is
    batched with (a render's chunks are split across the decoder pool). Closed, pressed lips
    of a toothy smile put near-coincident controls in the spline's system; solved in float32
    its error moved the whole face by a fraction of a pixel with the batch: 63 grey levels at
    edges, 14,565 pixels off by more than 2 on the official smile at pitch +10, press 0.5."""
    from pathlib import Path

    face = align(Path(__file__).resolve().parents[3] / "bench" / "data" / "mouth" / "face_obama_official_smile.jpg").face
    rows = np.repeat(face.model.source_latent[None], 4, 0).astype(np.float32)
    rows[:, JAW] = 0.0
    rows[:, dyn_index("lip_press")] = [0.0, 0.5, 0.5, 0.5]
    rows[1:, MOTION_NAMES.index("pitch")] += [10.0, -10.0, 0.0]
    rows[3, MOTION_NAMES.index("yaw")] += 15.0
    together = FaceRenderer(face).render(rows)
    alone = FaceRenderer(face, DecoderConfig(batch_frames=1)).render(rows)
    assert np.abs(together.astype(int) - alone).max() <= 1


def test_mouth_interior_is_painted_only_when_the_jaw_opens(renderer, source, aligned_grace):
    """Inside the target inner-lip polygon of an open mouth, dark cavity pixels appear and the
    mean luminance drops against the same pixels of the closed-mouth frame; a closed mouth
    leaves the lips as in the photo (no dark interior at all).

    Measured: dark (luma < 60) share 0.01 -> 0.05 at jaw 0.35 (the opening is mostly teeth,
    and since talkfarm-warp-decoder-4 no dark outline is drawn along the lips) and 0.01 ->
    0.16 at 0.7 (0.09 and 0.19 with the outline); mean luma 155 -> 142 and 141 -> 117.
    Tolerances: dark share over max(0.04, 3x closed), mean luma at least 10 lower.
    """
    rows = motions(source, jaw_open=[0.0, 0.35, 0.7])
    frames = renderer.render(rows)
    target = aligned_grace.model.landmarks(torch.as_tensor(rows))[..., :2].numpy()
    polygon = topo.inner_mouth_polygon()
    closed_luma = luminance(frames[0])
    for frame, points, jaw in zip(frames[1:], target[1:], rows[1:, JAW]):
        inside = polygon_mask(points[polygon], (512, 512))
        assert inside.sum() > 150, jaw       # the mouth really is open in the target shape
        luma = luminance(frame)[inside]
        dark_open, dark_closed = (luma < 60).mean(), (closed_luma[inside] < 60).mean()
        assert dark_closed < 0.04 and dark_open > max(0.04, 3 * dark_closed), (jaw, dark_open, dark_closed)
        assert luma.mean() < closed_luma[inside].mean() - 10, jaw
    # closed: no dark interior anywhere around the mouth, the lips are the photo's
    x0, y0 = target[0][list(topo.LIPS_ALL)].min(0).astype(int) - 4
    x1, y1 = target[0][list(topo.LIPS_ALL)].max(0).astype(int) + 4
    assert np.abs(frames[0][y0:y1, x0:x1].astype(int) - aligned_grace.crop[y0:y1, x0:x1]).mean() < 2.0
    darker = luminance(aligned_grace.crop[y0:y1, x0:x1]) - closed_luma[y0:y1, x0:x1]
    assert (darker > 40).sum() == 0


def test_gaze_moves_the_iris_the_asked_way(renderer, source, aligned_grace, test_output):
    """The dark iris centroid inside each eye opening shifts right (+x) for +gaze yaw and
    left for -yaw, by at least a pixel per 10 degrees; the eye outline does not move."""
    rows = motions(source, gaze_yaw=[-20.0, 0.0, 20.0])
    frames = renderer.render(rows)
    target = aligned_grace.model.landmarks(torch.as_tensor(rows))[..., :2].numpy()
    np.testing.assert_allclose(target[0][list(topo.RIGHT_EYE_UPPER)], target[2][list(topo.RIGHT_EYE_UPPER)], atol=1e-3)
    tiles = []
    for side in ("right", "left"):
        polygon = topo.eye_polygon(side)
        inside = polygon_mask(target[1][polygon], (512, 512))
        ys, xs = np.nonzero(inside)
        centroids = []
        for frame in frames:
            luma = luminance(frame)[inside]
            dark = luma <= np.percentile(luma, 30)
            centroids.append(xs[dark].mean())
        assert centroids[0] < centroids[1] - 1.0 < centroids[2] - 2.0, (side, centroids)
        x0, x1, y0, y1 = xs.min() - 6, xs.max() + 6, ys.min() - 6, ys.max() + 6
        tiles += [cv2.resize(frame[y0:y1, x0:x1], None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC) for frame in frames]
    save_contact_sheet(tiles, test_output / "renderer_gaze_eyes.png", columns=3, tile=256,
                       labels=["R gaze -20", "R gaze 0", "R gaze +20", "L gaze -20", "L gaze 0", "L gaze +20"])


def test_paste_back_renders_into_the_full_photo(aligned_grace, source):
    """Paste-back output has the photo's size and equals the photo far from the face."""
    renderer = FaceRenderer(aligned_grace, paste_back=True)
    rows = motions(source, jaw_open=[0.0, 0.6])
    rows[1, MOTION_NAMES.index("yaw")] += 10
    frames = renderer.render(rows)
    photo = aligned_grace.photo
    assert frames.shape == (2, *photo.shape)                  # 600 x 512, already even
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
    px0, py0, px1, py1 = renderer.paste_box
    assert (px1 - px0) * (py1 - py0) < photo.shape[0] * photo.shape[1]
    far = np.ones(photo.shape[:2], bool)
    far[py0:py1, px0:px1] = False
    assert far.sum() > 20_000
    for frame in frames:
        np.testing.assert_array_equal(frame[far], photo[far])
    # the face did move in the second frame, inside the paste box
    assert np.abs(frames[1].astype(int) - photo).max() > 60


def test_paste_back_output_is_even_for_an_odd_sized_photo(align, shared_assets, tmp_path):
    odd = tmp_path / "grace_odd.png"
    Image.open(shared_assets / "face_grace_hopper.jpg").crop((0, 0, 511, 599)).save(odd)
    task = align(odd, size=256)
    assert task.failure is None, task.failure
    frames = FaceRenderer(task.face, paste_back=True).render(task.face.model.source_latent[None])
    height, width = frames.shape[1:3]
    assert height % 2 == 0 and width % 2 == 0
    assert abs(height - 599) <= 1 and abs(width - 511) <= 1
