"""The take's own open mouths, as the interior of the mouths a dub opens.

Where the new speech opens a mouth the take had closed, the decoder has no picture of the
inside of this actor's mouth and synthesises one (``workers.decoder.mouth.paint_mouth``):
smooth shading that reads as a painted band of teeth. The take itself has those pictures:
the frames where the actor speaks with the mouth open show their real teeth, tongue and
cavity under the take's own light.

While the take stage reads the take (``workers.take.track.track_take``), :class:`MouthBankBuilder`
keeps, per mouth shape bin (opening x width), the sharpest most frontal open mouth it has
seen: a small box of the frame around the inner lips, turned level, with its inner lip lines.
At most ``len(OPENING_EDGES) x (len(WIDTH_EDGES) + 1)`` boxes whatever the take's length, so
memory stays flat, and the bank travels on the take's track (``core.take.TakeTrack.mouth_bank``)
to every frame chunk: every decoder fills from the same frames.

:func:`fill_interior` then fills a decoded crop's open mouth, inside its target inner lip
line, with the one or two bank mouths nearest in shape, each warped in mouth coordinates
(u along the corner-to-corner axis, v from the upper inner lip line to the lower: the bank
mouth's lip lines land on the target's), and feathered at the lip. Its light is the bank
frame's own, unmatched: the bank comes from the same take, and a match by the ratio of the lips'
colours read a closed mouth's lips stretched open by the dub paler than an open mouth's, and
lightened and whitened every filled interior (~+8 L* on the webcam take; round 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.take import MouthBank, MouthInterior
from workers.face import topology as topo
from workers.face.mouth import to_lab
from workers.take.mouth_look import interior_pixels

MOUTH_BANK_VERSION = "take-mouth-bank-3"
# Inner-lip gap over mouth width (workers.face.mouth.read_mouth's opening) from which a frame's
# mouth is open enough to show its interior, and the shape bins the bank keeps one mouth for.
MIN_OPENING = 0.12
OPENING_EDGES = (0.12, 0.2, 0.28, 0.38, 0.5)
# Mouth width over the outer eye corners' distance: narrow (rounded), neutral, wide (spread).
WIDTH_EDGES = (0.54, 0.6)
# Longest mouth width kept (pixels): the bank is at most the take's own resolution.
MAX_MOUTH_PX = 128
# Box around the inner lips kept, grown by this share of the mouth width (the lip rim and a
# little lip, which the feathered edge reaches).
BOX_MARGIN = 0.12
# A frame's mouth is filled from the bank where its target opening exceeds its own by this
# much (ramped over the interval), and is at least MIN_FILL_OPENING: below, the interior is a
# dark slit the decoder's own shading covers.
OPEN_BEYOND = (0.01, 0.05)
MIN_FILL_OPENING = 0.04
# Bank mouths are weighted by shape distance (Gaussian; these spreads), the nearest two blended
# so a mouth opening through the bins cross-fades rather than jumps between frames.
OPENING_SPREAD = 0.06
WIDTH_SPREAD = 0.05
# A mouth opened wider than the bank's keeps what is bright (teeth, the lip rim) at its size and
# opens dark cavity between the upper teeth, which stay under the upper lip, and the lower teeth,
# which ride with the lower lip, as a real mouth opening further shows more of its dark inside
# and not longer teeth (see _depth_in_entry). Where the bank mouth shows a cavity, its own cavity
# stretches: each depth sample along the middle of the mouth (this share of its width, in this
# many samples) stretches by its darkness squared, the brightest PROFILE_FLOOR as much as the
# darkest; a profile whose grey levels span less than PROFILE_MIN_CONTRAST (0-255) is one
# cavity, stretched evenly.
PROFILE_SPAN = (0.3, 0.7)
PROFILE_SAMPLES = 24
PROFILE_FLOOR = 0.03
PROFILE_MIN_CONTRAST = 12.0
# A grin shows no cavity: teeth from lip to lip, the lower lip's pink under them. A depth sample
# is cavity where its L* is below the lips' by CAVITY_BELOW_LIP (ramped). A bank mouth whose
# profile is less than CAVITY_SHARE[0] cavity takes all of the extra opening as a new cavity
# between its teeth (nothing of it stretches); from CAVITY_SHARE[1] its own cavity stretches
# (ramped between).
CAVITY_BELOW_LIP = (4.0, 12.0)
CAVITY_SHARE = (0.04, 0.15)
# Teeth: L* this far above the lips'; the upper and lower sets meet at the deepest dip of at
# least TEETH_DIP L* within the teeth (the shadow under the upper teeth's edge), read in each of
# SPLIT_COLUMNS columns across SPLIT_SPAN of the mouth in SPLIT_SAMPLES depth samples (a smile
# shows its lower set in the middle only); where fewer than SPLIT_MIN_COLUMNS show a dip, the
# middle's one set of teeth ends where it falls below teeth.
TEETH_ABOVE_LIP = 8.0
TEETH_DIP = 2.0
SPLIT_SPAN = (0.15, 0.85)
SPLIT_COLUMNS = 15
SPLIT_SAMPLES = 32
SPLIT_MIN_COLUMNS = 3
# ... each column within this much of their median, smoothed along the mouth (no jagged edge).
SPLIT_WAVE = 0.08
# The opened cavity's colour: the median of the bank mouth's darkest interior pixels (this share
# of them, by L*: a grin's shadowed corners), as the take shows its darkest inside; shaded from
# CAVITY_SHADE[0] of it under the upper teeth (their shadow) to CAVITY_SHADE[1] at the lower
# (the floor of the mouth, lit from the front).
CAVITY_DARKEST = 0.05
CAVITY_SHADE = (0.6, 1.15)
# Feather of the filled interior at the lip line (Gaussian sigma, pixels).
FEATHER_PX = 0.6
_EYE_CORNERS = (33, 263)


def mouth_shape(landmarks: np.ndarray) -> tuple[float, float]:
    """(opening, width) of (478, 2+) landmarks: the inner-lip gap at the centre over the mouth
    width (outer corners), and the mouth width over the outer eye corners' distance."""
    points = np.asarray(landmarks, np.float64)[:, :2]
    right, left = topo.MOUTH_CORNERS_OUTER
    width = max(float(np.linalg.norm(points[left] - points[right])), 1e-6)
    up, low = topo.LIP_CENTER_INNER
    gap = float(points[low, 1] - points[up, 1])
    eyes = max(float(np.linalg.norm(points[_EYE_CORNERS[1]] - points[_EYE_CORNERS[0]])), 1e-6)
    return gap / width, width / eyes


def shape_bin(opening: float, width: float) -> tuple[int, int] | None:
    """The bank's bin of a mouth shape, or None for a mouth not open enough to keep."""
    if not opening >= MIN_OPENING:
        return None
    return int(np.searchsorted(OPENING_EDGES, opening, side="right")), int(np.searchsorted(WIDTH_EDGES, width))


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray, origin=(0.0, 0.0)) -> np.ndarray:
    """(h, w) uint8 0/1 filled polygon (N, 2) in pixels, anti-aliased to a quarter pixel."""
    mask = np.zeros(shape, np.uint8)
    points = np.round((np.asarray(polygon, np.float64) - np.asarray(origin) - 0.5) * 4).astype(np.int32)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=2)
    return mask


def lip_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """(3,) float32 median RGB (0-1) of the lips (between the outer and inner lip lines) of
    ``image`` (H, W, 3) uint8 with landmarks (478, 2+) in its pixels; None if too few pixels."""
    points = np.asarray(landmarks, np.float64)[:, :2]
    outer = points[list(topo.LIP_OUTER_UPPER) + list(topo.LIP_OUTER_LOWER[-2:0:-1])]
    inner = points[topo.inner_mouth_polygon()]
    x0, y0 = np.floor(outer.min(0)).astype(int).clip(0, None)
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 1
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    box = (y1 - y0, x1 - x0)
    lips = _polygon_mask(box, outer, (x0, y0)) > _polygon_mask(box, inner, (x0, y0))
    if lips.sum() < 10:
        return None
    return (np.median(image[y0:y1, x0:x1][lips], axis=0) / 255.0).astype(np.float32)


def extract_interior(frame: np.ndarray, landmarks: np.ndarray, index: int, teeth: bool
                     ) -> tuple[MouthInterior, float] | None:
    """One frame's open mouth as a bank entry, and its sharpness (mean |Laplacian| of grey levels
    inside the inner lips: detail, not motion blur); None for a mouth too small to read."""
    points = np.asarray(landmarks, np.float64)[:, :2]
    opening, width_ratio = mouth_shape(points)
    right, left = topo.MOUTH_CORNERS_OUTER
    axis = points[left] - points[right]
    width = float(np.linalg.norm(axis))
    if width < 8:
        return None
    lip = lip_colour(frame, points)
    if lip is None:
        return None
    scale = min(1.0, MAX_MOUTH_PX / width)
    cos, sin = axis / width
    rotation = scale * np.array([[cos, sin], [-sin, cos]])
    inner = points[topo.inner_mouth_polygon()] @ rotation.T
    margin = BOX_MARGIN * width * scale + 2.0
    low = inner.min(0) - margin
    size = np.ceil(inner.max(0) + margin - low).astype(int)
    # frame -> box, in pixel-index coordinates (landmarks put pixel i's centre at i + 0.5)
    matrix = np.hstack([rotation, (-low + rotation @ [0.5, 0.5] - 0.5)[:, None]])
    box = cv2.warpAffine(frame, matrix, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def place(line):
        return (points[list(line)] @ rotation.T - low).astype(np.float32)

    upper, lower = place(topo.LIP_INNER_UPPER), place(topo.LIP_INNER_LOWER)
    inside = _polygon_mask(box.shape[:2], np.concatenate([upper, lower[-2:0:-1]]))
    core = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    if core.sum() < 6:
        return None
    grey = cv2.cvtColor(box, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sharpness = float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[core].mean())
    entry = MouthInterior(crop=box, upper=upper, lower=lower, opening=opening, width=width_ratio, teeth=bool(teeth),
                          lip_rgb=lip, frame=int(index))
    return entry, sharpness


class MouthBankBuilder:
    """Keeps the best open mouth per shape bin of the frames it is offered (in take order)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[int, int], tuple[float, MouthInterior]] = {}

    def offer(self, index: int, frame: np.ndarray, landmarks: np.ndarray, turn_deg: float, teeth: bool) -> None:
        """Frame ``index`` of the take (H, W, 3) uint8 RGB, its landmarks (478, 2+) in frame
        pixels and its head turn (|yaw| + |pitch|, degrees): kept if its mouth is open and it
        is the sharpest, most frontal of its bin so far."""
        key = shape_bin(*mouth_shape(landmarks))
        if key is None:
            return
        found = extract_interior(frame, landmarks, index, teeth)
        if found is None:
            return
        entry, sharpness = found
        score = sharpness / (1.0 + turn_deg / 20.0)
        if key not in self._kept or score > self._kept[key][0]:
            self._kept[key] = (score, entry)

    def bank(self) -> MouthBank:
        return MouthBank(sorted((entry for _, entry in self._kept.values()), key=lambda entry: entry.frame))


def _smoothstep(low: float, high: float, x):
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def choose(bank: MouthBank, opening: float, width: float) -> list[tuple[MouthInterior, float]]:
    """The (at most two) bank mouths nearest a shape, with weights summing to 1."""
    distance = np.array([((entry.opening - opening) / OPENING_SPREAD) ** 2 + ((entry.width - width) / WIDTH_SPREAD) ** 2
                         for entry in bank.entries])
    nearest = np.argsort(distance)[:2]
    weight = np.exp(-0.5 * (distance[nearest] - distance[nearest[0]]))
    weight /= weight.sum()
    return [(bank.entries[i], float(w)) for i, w in zip(nearest, weight) if w > 1e-3]


def _mouth_frame(upper: np.ndarray, lower: np.ndarray):
    """The corner-to-corner axis of inner lip lines (11, 2) each (right corner first): its
    origin, axis vector, unit normal (pointing down the face), and each line's (u, offset) pairs
    (u: 0 at the right corner, 1 at the left; offset along the normal, pixels)."""
    origin = upper[0].astype(np.float64)
    axis = upper[-1].astype(np.float64) - origin
    length2 = max(float(axis @ axis), 1e-6)
    normal = np.array([-axis[1], axis[0]]) / math.sqrt(length2)
    lines = []
    for line in (upper, lower):
        relative = line.astype(np.float64) - origin
        u, offset = relative @ axis / length2, relative @ normal
        order = np.argsort(u)
        lines.append((u[order], offset[order]))
    return origin, axis, normal, lines


def fill_interior(crop: np.ndarray, target: np.ndarray, own: np.ndarray, bank: MouthBank | None) -> np.ndarray:
    """A decoded face crop with its open mouth's interior from the take's own open mouths.

    Args:
        crop: (S, S, 3) uint8 RGB, the decoded crop (its mouth interior synthesised).
        target: (478, 2+) the decoded face's landmarks, crop pixels.
        own: (478, 2+) the frame's own landmarks, crop pixels (what the take showed).
        bank: the take's mouth bank.

    Returns:
        The crop, filled where the target opening exceeds the frame's own (OPEN_BEYOND) and the
        bank holds a mouth, else as it was.
    """
    if bank is None or not bank.entries:
        return crop
    opening, width = mouth_shape(target)
    own_opening, _ = mouth_shape(own)
    strength = float(_smoothstep(*OPEN_BEYOND, opening - own_opening))
    if strength <= 0.0 or opening < MIN_FILL_OPENING:
        return crop
    target = np.asarray(target, np.float64)[:, :2]
    upper, lower = target[list(topo.LIP_INNER_UPPER)], target[list(topo.LIP_INNER_LOWER)]
    polygon = np.concatenate([upper, lower[-2:0:-1]])
    size = crop.shape[0]
    x0, y0 = np.floor(polygon.min(0) - 3).astype(int).clip(0, size)
    x1, y1 = np.ceil(polygon.max(0) + 3).astype(int).clip(0, size)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return crop
    mask = _polygon_mask((y1 - y0, x1 - x0), polygon, (x0, y0)).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), FEATHER_PX) * strength
    # Each box pixel in mouth coordinates (u along the corners' axis, v from the upper inner
    # lip line to the lower).
    origin, axis, normal, ((u_top, top), (u_bottom, bottom)) = _mouth_frame(upper, lower)
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    relative = np.stack([xs - origin[0], ys - origin[1]], -1)
    u = np.clip(relative @ axis / max(float(axis @ axis), 1e-6), 0.0, 1.0)
    offset = relative @ normal
    top_at, bottom_at = np.interp(u, u_top, top), np.interp(u, u_bottom, bottom)
    gap = np.maximum(bottom_at - top_at, 0.5)
    v = np.clip((offset - top_at) / gap, -0.1, 1.1)
    filled = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    for entry, weight in choose(bank, opening, width):
        e_origin, e_axis, e_normal, e_lines = _mouth_frame(entry.upper, entry.lower)
        # columns matched by the share of the opening's area on their side, not by width: a
        # rounder opened mouth's corners sample the bank mouth's open middle, not its shut,
        # shadowed corners stretched tall
        e_u = _matched_u(u, ((u_top, top), (u_bottom, bottom)), e_lines)
        e_top_at, e_bottom_at = np.interp(e_u, *e_lines[0]), np.interp(e_u, *e_lines[1])
        e_gap = np.maximum(e_bottom_at - e_top_at, 0.5)
        scale = math.sqrt(float(e_axis @ e_axis) / max(float(axis @ axis), 1e-6))
        plan = _depth_plan(entry)
        share, cavity, across = _depth_in_entry(v, gap * scale / e_gap, gap, np.interp(e_u, plan.split_u, plan.split),
                                                plan)
        depth = e_top_at + share * e_gap
        source = e_origin + e_u[..., None] * e_axis + depth[..., None] * e_normal          # box pixel centres
        sampled = cv2.remap(entry.crop, (source[..., 0] - 0.5).astype(np.float32),
                            (source[..., 1] - 0.5).astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        shade = CAVITY_SHADE[0] + (CAVITY_SHADE[1] - CAVITY_SHADE[0]) * across
        filled += weight * (sampled + cavity[..., None] * (plan.cavity_rgb * shade[..., None] - sampled))
    region = crop[y0:y1, x0:x1].astype(np.float32)
    out = crop.copy()
    out[y0:y1, x0:x1] = np.round(region + mask[..., None] * (filled - region)).clip(0, 255).astype(np.uint8)
    return out


def _matched_u(u: np.ndarray, lines, entry_lines) -> np.ndarray:
    """The bank mouth's column (u, 0-1 corner to corner) for the target's columns ``u``: the one
    with the same share of its mouth's opening area to its right (``lines``, ``entry_lines``:
    each mouth's ((u, offset) upper, (u, offset) lower) inner lip lines, :func:`_mouth_frame`)."""
    grid = np.linspace(0.0, 1.0, 65)
    shares = []
    for (u_top, top), (u_bottom, bottom) in (lines, entry_lines):
        gap = np.maximum(np.interp(grid, u_bottom, bottom) - np.interp(grid, u_top, top), 0.0)
        gap = np.maximum(gap, 1e-3 * max(float(gap.max()), 1e-3))
        area = np.concatenate([[0.0], np.cumsum((gap[1:] + gap[:-1]) / 2)])
        shares.append(area / area[-1])
    return np.interp(np.interp(u, grid, shares[0]), shares[1], grid)


@dataclass(frozen=True)
class _DepthPlan:
    """How a bank mouth's depth (0 at its upper inner lip, 1 at the lower) opens wider.

    Attributes:
        profile: (PROFILE_SAMPLES + 1,) cumulative stretch weight of its own cavity at depths
            0, 1/PROFILE_SAMPLES, ..., 1 (the darker, the more it stretches).
        stretched: the share of the extra opening its own cavity takes (0-1); the rest opens
            between the teeth as new cavity.
        split_u, split: (SPLIT_COLUMNS,) columns along the mouth (0-1 corner to corner) and the
            depth in each where the upper teeth end and the lower (teeth and lip) begin.
        cavity_rgb: (3,) float32 0-255, the new cavity's colour (the mouth's darkest inside).
    """

    profile: np.ndarray
    stretched: float
    split_u: np.ndarray
    split: np.ndarray
    cavity_rgb: np.ndarray


def _along_depth(entry: MouthInterior, channel: np.ndarray, u: np.ndarray, samples: int) -> np.ndarray:
    """(samples, len(u)) ``channel`` (h, w) of a bank mouth's box at depths (i + 0.5) / samples
    of its opening (0 at the upper inner lip, 1 at the lower) in columns ``u`` (0-1 along it)."""
    origin, axis, normal, ((u_top, top), (u_bottom, bottom)) = _mouth_frame(entry.upper, entry.lower)
    v = (np.arange(samples) + 0.5) / samples
    top_at, bottom_at = np.interp(u, u_top, top), np.interp(u, u_bottom, bottom)
    depth = top_at[None, :] + v[:, None] * (bottom_at - top_at)[None, :]
    points = origin + u[None, :, None] * axis + depth[..., None] * normal
    return cv2.remap(channel.astype(np.float32), (points[..., 0] - 0.5).astype(np.float32),
                     (points[..., 1] - 0.5).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _depth_plan(entry: MouthInterior) -> _DepthPlan:
    """Read a bank mouth's depth (:class:`_DepthPlan`)."""
    middle = np.linspace(*PROFILE_SPAN, 9)
    grey = _along_depth(entry, cv2.cvtColor(entry.crop, cv2.COLOR_RGB2GRAY), middle, PROFILE_SAMPLES).mean(1)
    contrast = float(grey.max() - grey.min())
    if contrast < PROFILE_MIN_CONTRAST:
        weight = np.ones_like(grey)
    else:
        weight = PROFILE_FLOOR + (1.0 - PROFILE_FLOOR) * ((grey.max() - grey) / contrast) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(weight)])
    lab = to_lab(entry.crop)
    lip_l = float(to_lab(np.round(np.asarray(entry.lip_rgb) * 255.0).clip(0, 255).astype(np.uint8))[0])
    light = _along_depth(entry, lab[..., 0], middle, PROFILE_SAMPLES).mean(1)
    cavity = float(_smoothstep(*CAVITY_BELOW_LIP, lip_l - light).mean())
    # where the upper teeth end: column by column (the sets meet along a wavy line), the columns
    # without a dip of their own at the others' median, or at the middle's one set's end
    split_u = np.linspace(*SPLIT_SPAN, SPLIT_COLUMNS)
    columns = _along_depth(entry, lab[..., 0], split_u, SPLIT_SAMPLES)
    split = np.array([_teeth_dip(columns[:, k], lip_l) for k in range(SPLIT_COLUMNS)], np.float64)
    found = np.isfinite(split)
    if found.sum() >= SPLIT_MIN_COLUMNS:
        middle_split = float(np.median(split[found]))
        split = np.where(found, split, middle_split).clip(middle_split - SPLIT_WAVE, middle_split + SPLIT_WAVE)
        split = np.convolve(np.pad(split, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    else:
        split = np.full(SPLIT_COLUMNS, _one_set_end(_along_depth(entry, lab[..., 0], middle, SPLIT_SAMPLES).mean(1), lip_l))
    inside = _polygon_mask(entry.crop.shape[:2], np.concatenate([entry.upper, entry.lower[-2:0:-1]])) > 0
    pixels = entry.crop[inside].astype(np.float32)
    darkest = np.argsort(lab[inside][:, 0])[:max(1, int(round(CAVITY_DARKEST * len(pixels))))]
    return _DepthPlan(profile=cumulative / cumulative[-1], stretched=float(_smoothstep(*CAVITY_SHARE, cavity)),
                      split_u=split_u, split=split, cavity_rgb=np.median(pixels[darkest], axis=0))


def _teeth_dip(light: np.ndarray, lip_l: float) -> float:
    """The depth (0-1) of the deepest dip of at least TEETH_DIP L* in the lower half of the teeth
    (L* above the lips' ``lip_l`` by TEETH_ABOVE_LIP) of an L* profile ``light`` (samples at
    depths (i + 0.5) / len): the shadow under the upper teeth's edge, over the lower set (a
    smile shows more of the upper set; dips higher up lie between upper teeth); NaN if none."""
    teeth = np.flatnonzero(light > lip_l + TEETH_ABOVE_LIP)
    best, where = TEETH_DIP, np.nan
    if len(teeth):
        first, last = int(teeth[0]), int(teeth[-1])
        for i in range(max(first + 1, (first + last + 1) // 2), last):
            dip = min(light[first:i].max(), light[i + 1:last + 1].max()) - light[i]
            if light[i] <= min(light[i - 1], light[i + 1]) and dip >= best:
                best, where = dip, (i + 0.5) / len(light)
    return where


def _one_set_end(light: np.ndarray, lip_l: float) -> float:
    """The depth (0-1) where the one set of teeth an L* profile ``light`` shows ends: the upper
    set's lower end where the teeth lie mostly in the upper half, else the lower set's upper end;
    without teeth, the darkest depth."""
    teeth = np.flatnonzero(light > lip_l + TEETH_ABOVE_LIP)
    if not len(teeth):
        return (int(np.argmin(light)) + 0.5) / len(light)
    first, last = int(teeth[0]), int(teeth[-1])
    return (last + 1.0) / len(light) if first + last + 1 <= len(light) else first / len(light)


def _depth_in_entry(v: np.ndarray, ratio: np.ndarray, pixels: np.ndarray, split: np.ndarray, plan: _DepthPlan
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a pixel at share ``v`` of the target's opening (0 at its upper inner lip, 1 at the
    lower; a little beyond at the feathered rim) samples the bank mouth, as a share of the bank
    mouth's opening there, and how much of it is new cavity (0-1). ``ratio``: the target's
    opening over the bank mouth's, both in bank pixels, one per pixel alike ``v``, each sampling
    a pixel of 1 / ``pixels`` of the opening.

    A mouth the bank shows at least as open is squeezed evenly. One opened wider opens the bank
    mouth's depth w by (ratio - 1) * P'(w), where P(w) = stretched * profile(w) + (1 - stretched)
    * [w > split]: the share v of bank depth w is (w + (ratio - 1) * P(w)) / ratio, solved for w
    (bisection; monotone). The bright bands (teeth, lip rim) keep their pixel size, the upper
    ones under the upper lip and the lower ones on the lower lip; the cavity between takes the
    extra opening, stretched where the bank mouth has one, new at the split where it has not."""
    grid = np.linspace(0.0, 1.0, len(plan.profile))
    ratio = np.maximum(ratio, 1.0)
    extra = ratio - 1.0
    inside = np.clip(v, 0.0, 1.0)

    def opened(w):
        return w + extra * (plan.stretched * np.interp(w, grid, plan.profile) + (1.0 - plan.stretched) * (w > split))

    low, high = np.zeros_like(inside), np.ones_like(inside)
    for _ in range(14):
        middle = 0.5 * (low + high)
        below = opened(middle) / ratio < inside
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    # the new cavity: [start, start + extra * (1 - stretched)] in bank depth units of the target's
    # opening; each pixel covers ratio / pixels of it (anti-aliased)
    start = split + extra * plan.stretched * np.interp(split, grid, plan.profile)
    end = start + extra * (1.0 - plan.stretched)
    at, half = v * ratio, 0.5 * ratio / pixels
    cavity = np.clip((np.minimum(at + half, end) - np.maximum(at - half, start)) / (2.0 * half), 0.0, 1.0)
    across = np.clip((at - start) / np.maximum(end - start, 1e-6), 0.0, 1.0)
    # beyond the lip lines (the feathered rim) at the bank's pixel size
    return 0.5 * (low + high) + (v - inside) * ratio, np.where(v == inside, cavity, 0.0), across


def openings(landmarks: np.ndarray) -> np.ndarray:
    """(T,) :func:`mouth_shape` openings of (T, 478, 2+) landmarks."""
    points = np.asarray(landmarks, np.float64)
    right, left = topo.MOUTH_CORNERS_OUTER
    up, low = topo.LIP_CENTER_INNER
    width = np.maximum(np.linalg.norm(points[:, left, :2] - points[:, right, :2], axis=-1), 1e-6)
    return (points[:, low, 1] - points[:, up, 1]) / width


def opened_beyond(model, landmarks: np.ndarray, own: np.ndarray, target: np.ndarray, batch: int = 256) -> np.ndarray:
    """(T,) bool: the frames whose dubbed mouth opens beyond the take's own there, as
    :func:`fill_interior` decides (its opening above its own by OPEN_BEYOND's start, at least
    MIN_FILL_OPENING). The frames' own openings are read on their landmarks (T, 478, 2+); the
    dub's adds the change the take's face ``model`` (``FaceModel``) makes from the latents
    ``own`` to ``target`` (T, MOTION_DIM), as each frame's decoder adds it to its own."""
    import torch

    change = np.zeros(len(own))
    with torch.inference_mode():
        for start in range(0, len(own), batch):
            pair = torch.as_tensor(np.concatenate([own[start:start + batch], target[start:start + batch]]),
                                   dtype=torch.float32)
            decoded = model.landmarks(pair)[..., :2].numpy()
            half = len(decoded) // 2
            change[start:start + half] = openings(decoded[half:]) - openings(decoded[:half])
    return (change > OPEN_BEYOND[0]) & (openings(landmarks) + change >= MIN_FILL_OPENING)


def bank_note(bank: MouthBank | None, opened: int, frames: int) -> str | None:
    """The result's line on the mouth interiors: how many of ``frames`` frames a dub opens
    beyond the take's own mouth, and whether the take's own open mouths fill them."""
    if not opened:
        return None
    if bank is None or not bank.entries:
        return (f"{opened} of {frames} frames open the mouth beyond the take's; the take never opens its mouth, "
                "so their interiors are synthesised")
    return (f"{opened} of {frames} frames open the mouth beyond the take's; their interiors come from "
            f"{len(bank)} of the take's own open-mouth frames")


def interior_lab(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """(3,) mean CIELAB colour (L* 0-100) of a frame's (H, W, 3) uint8 RGB mouth interior: inside
    the inner lip line of its landmarks (478, 2+), the rim pixel left out; None when the mouth is
    barely open (fewer than 6 pixels). What bench/dub.py and the tests compare interiors by."""
    found = interior_pixels(frame, landmarks)
    return None if found is None else found[0].mean(0)
