"""Alignment on real portraits and on the bad inputs users actually send."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from core.errors import BadInputError
from workers.alignment.image import load_image
from workers.face import topology as topo


@pytest.fixture(scope="module")
def grace_photo(shared_assets) -> Image.Image:
    return Image.open(shared_assets / "face_grace_hopper.jpg").convert("RGB")


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return landmarks[list(topo.RIGHT_EYE_CORNERS), :2].mean(0), landmarks[list(topo.LEFT_EYE_CORNERS), :2].mean(0)


def assert_well_aligned(face, size: int) -> None:
    assert face.crop.shape == (size, size, 3) and face.crop.dtype == np.uint8
    assert face.landmarks.shape == (478, 3)
    xy = face.landmarks[:, :2]
    assert (xy >= 0).all() and (xy < size).all(), "landmarks outside the crop"
    right, left = eye_centres(face.landmarks)
    assert right[0] < left[0]                      # subject's right eye on the image left
    tilt = np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))
    assert abs(tilt) < 4.0, f"eyes tilted {tilt:.1f} degrees"
    # centred horizontally, eyes in the upper half, face about a third of the crop wide
    eye_mid = (right + left) / 2
    assert abs(eye_mid[0] - size / 2) < 0.05 * size and 0.25 * size < eye_mid[1] < 0.5 * size
    assert 0.12 * size < np.linalg.norm(left - right) < 0.3 * size


def test_grace_aligns(grace_task, aligned_grace, shared_assets):
    assert grace_task.failure is None and grace_task.warnings == []
    assert_well_aligned(aligned_grace, 512)
    assert aligned_grace.photo.shape == (600, 512, 3)
    assert 150 < aligned_grace.face_px < 400
    assert grace_task.model_versions["alignment"].startswith("mediapipe")
    # the crop is the photo under crop_from_photo: map a landmark from photo to crop
    inverse = np.linalg.inv(np.vstack([aligned_grace.crop_from_photo, [0, 0, 1]]))[:2]
    nose_crop = aligned_grace.landmarks[1, :2]
    nose_photo = inverse[:, :2] @ nose_crop + inverse[:, 2]
    assert (0 <= nose_photo).all() and nose_photo[0] < 512 and nose_photo[1] < 600
    patch = lambda img, p: img[int(p[1]) - 3:int(p[1]) + 4, int(p[0]) - 3:int(p[0]) + 4].astype(float).mean((0, 1))
    assert np.abs(patch(aligned_grace.crop, nose_crop) - patch(aligned_grace.photo, nose_photo)).max() < 25


def _offset_canvas(photo: Image.Image, size: tuple[int, int], path) -> tuple[int, int]:
    canvas = Image.new("RGB", size, (128, 128, 128))
    corner = (size[0] - 600, size[1] - 620)        # off-centre, toward the bottom right
    canvas.paste(photo, corner)
    canvas.save(path)
    return corner


def _check_offset_alignment(task, aligned_grace, corner) -> None:
    assert task.failure is None, task.failure
    assert_well_aligned(task.face, 512)
    shift = np.abs(task.face.landmarks[:, :2] - aligned_grace.landmarks[:, :2]).mean()
    assert shift < 3.0, f"landmarks moved {shift:.1f} px on average vs the plain photo"
    # the offset is in the transform: the nose maps back into the pasted photo's rectangle
    inverse = np.linalg.inv(np.vstack([task.face.crop_from_photo, [0, 0, 1]]))[:2]
    nose = inverse[:, :2] @ task.face.landmarks[1, :2] + inverse[:, 2]
    assert corner[0] < nose[0] < corner[0] + 512 and corner[1] < nose[1] < corner[1] + 600


def test_face_at_an_offset_on_a_large_canvas(align, grace_photo, aligned_grace, tmp_path):
    """Grace (face ~200 px) pasted off-centre into a 1600x1200 grey canvas aligns to the same crop."""
    corner = _offset_canvas(grace_photo, (1600, 1200), tmp_path / "offset.png")
    _check_offset_alignment(align(tmp_path / "offset.png"), aligned_grace, corner)


def test_face_at_an_offset_on_a_2000x1500_canvas(align, grace_photo, aligned_grace, tmp_path):
    """The face is 11 % of the photo's width: too small for the whole-photo detector pass,
    found by the tile scan."""
    corner = _offset_canvas(grace_photo, (2000, 1500), tmp_path / "offset.png")
    _check_offset_alignment(align(tmp_path / "offset.png"), aligned_grace, corner)


def test_small_face_in_a_4000x3000_photo_is_found(align, grace_photo, tmp_path):
    """A ~110 px face (under 3 % of the width) in a 12-megapixel photo."""
    canvas = Image.new("RGB", (4000, 3000), (90, 110, 100))
    canvas.paste(grace_photo.resize((256, 300)), (2900, 600))
    canvas.save(tmp_path / "big.jpg", quality=90)
    task = align(tmp_path / "big.jpg")
    assert task.failure is None, task.failure
    assert 80 < task.face.face_px < 160
    assert_well_aligned(task.face, 512)


def test_two_faces_use_the_largest_and_warn(align, grace_photo, tmp_path):
    canvas = Image.new("RGB", (1100, 700), (200, 200, 200))
    # (both faces must be found by the whole-photo pass: the small-face tile scan runs only
    # when that pass finds none)
    canvas.paste(grace_photo.resize((358, 420)), (20, 50))         # smaller copy, left
    canvas.paste(grace_photo, (560, 50))                           # full size, right
    path = tmp_path / "two.png"
    canvas.save(path)
    task = align(path)
    assert task.failure is None, task.failure
    assert len(task.warnings) == 1 and "2 faces" in task.warnings[0] and "largest" in task.warnings[0]
    inverse = np.linalg.inv(np.vstack([task.face.crop_from_photo, [0, 0, 1]]))[:2]
    nose = inverse[:, :2] @ task.face.landmarks[1, :2] + inverse[:, 2]
    assert nose[0] > 560, "the smaller face was used"
    assert task.face.face_px > 150


# ---------------------------------------------------------------- bad inputs

def _grace_with_tiny_face(photo: Image.Image, path):
    """Grace scaled so her face is ~40 px (photo 102x120) in a 250x250 plain canvas; the face
    must fill enough of the image for the short-range detector to find it at all."""
    canvas = Image.new("RGB", (250, 250), (120, 140, 160))
    canvas.paste(photo.resize((102, 120), Image.LANCZOS), (65, 65))
    canvas.save(path)


def _bad_inputs(tmp_path, photo: Image.Image, shared_assets):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(noise)
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (640, 480), (240, 240, 240)).save(blank)
    tiny = tmp_path / "tiny_face.png"
    _grace_with_tiny_face(photo, tiny)
    data = (shared_assets / "face_grace_hopper.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 7000)).save(huge)             # 56 MP, a few kB on disk
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    return {
        "noise": (noise, "no face found"),
        "blank": (blank, "no face found"),
        "tiny face": (tiny, r"the face is only \d+ px; at least 64 px"),
        "truncated": (truncated, "corrupt or truncated"),
        "not an image": (text, "not an image file"),
        "over 50 MP": (huge, r"8000x7000 \(56\.0 megapixels\); the limit is 50 megapixels"),
        "missing": (tmp_path / "missing.jpg", "image file not found"),
        "empty": (empty, "image file is empty"),
    }


BAD = ["noise", "blank", "tiny face", "truncated", "not an image", "over 50 MP", "missing", "empty"]


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory, grace_photo, shared_assets):
    return _bad_inputs(tmp_path_factory.mktemp("bad_images"), grace_photo, shared_assets)


@pytest.mark.parametrize("case", BAD)
def test_bad_image_fails_the_task_with_a_clear_message(case, bad_images, align):
    path, message = bad_images[case]
    task = align(path)
    assert task.face is None and task.failure is not None
    assert task.failure.stage == "alignment"
    assert str(path) in task.failure.message
    assert re.search(message, task.failure.message), task.failure.message
    assert "\n" not in task.failure.message


@pytest.mark.parametrize("case", ["truncated", "not an image", "over 50 MP", "missing", "empty"])
def test_load_image_raises_bad_input(case, bad_images):
    path, message = bad_images[case]
    with pytest.raises(BadInputError, match=message) as caught:
        load_image(path)
    assert caught.value.path == str(path)


def test_tiny_face_is_really_a_face(bad_images, detector):
    """The tiny-face case fails for its size, not because the detector misses it."""
    faces = detector.detect(load_image(bad_images["tiny face"][0]))
    assert len(faces) == 1 and 25 < faces[0].size < 64


def test_huge_image_is_rejected_from_its_header_alone(bad_images):
    path = bad_images["over 50 MP"][0]
    assert path.stat().st_size < 200_000


def test_load_image_flattens_transparency_and_exif(tmp_path):
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0] = 255            # red, fully transparent on the left half
    rgba[:, 10:, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    out = load_image(tmp_path / "alpha.png")
    assert out.shape == (10, 20, 3)
    assert (out[:, :10] == 255).all() and (out[:, 10:] == [255, 0, 0]).all()
    rotated = Image.new("RGB", (30, 10), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6              # rotate 90 degrees clockwise to display
    rotated.save(tmp_path / "exif.jpg", exif=exif)
    assert load_image(tmp_path / "exif.jpg").shape == (30, 10, 3)
