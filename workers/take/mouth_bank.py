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
mouth's lip lines land on the target's), and feathered at the lip. A mouth opened wider than
the bank mouth keeps its teeth at their size and opens dark cavity between the upper set and
the lower (``workers.take.mouth_depth``): its own cavity stretched, or, in a grin that shows
none, a new one of the take's darkest inside. Its light is the bank
frame's own, unmatched: the bank comes from the same take, and a match by the ratio of the lips'
colours read a closed mouth's lips stretched open by the dub paler than an open mouth's, and
lightened and whitened every filled interior (~+8 L* on the webcam take; round 7).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.take import MouthBank, MouthInterior
from workers.face import topology as topo
from workers.take.mouth_depth import (
    CAVITY_SHADE,
    depth_in_entry,
    depth_plan,
    mouth_frame,
    polygon_mask,
    smoothstep,
)
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
    lips = polygon_mask(box, outer, (x0, y0)) > polygon_mask(box, inner, (x0, y0))
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
    inside = polygon_mask(box.shape[:2], np.concatenate([upper, lower[-2:0:-1]]))
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


def choose(bank: MouthBank, opening: float, width: float) -> list[tuple[MouthInterior, float]]:
    """The (at most two) bank mouths nearest a shape, with weights summing to 1."""
    distance = np.array([((entry.opening - opening) / OPENING_SPREAD) ** 2 + ((entry.width - width) / WIDTH_SPREAD) ** 2
                         for entry in bank.entries])
    nearest = np.argsort(distance)[:2]
    weight = np.exp(-0.5 * (distance[nearest] - distance[nearest[0]]))
    weight /= weight.sum()
    return [(bank.entries[i], float(w)) for i, w in zip(nearest, weight) if w > 1e-3]


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
    strength = float(smoothstep(*OPEN_BEYOND, opening - own_opening))
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
    mask = polygon_mask((y1 - y0, x1 - x0), polygon, (x0, y0)).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), FEATHER_PX) * strength
    # Each box pixel in mouth coordinates (u along the corners' axis, v from the upper inner
    # lip line to the lower).
    origin, axis, normal, ((u_top, top), (u_bottom, bottom)) = mouth_frame(upper, lower)
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    relative = np.stack([xs - origin[0], ys - origin[1]], -1)
    u = np.clip(relative @ axis / max(float(axis @ axis), 1e-6), 0.0, 1.0)
    offset = relative @ normal
    top_at, bottom_at = np.interp(u, u_top, top), np.interp(u, u_bottom, bottom)
    gap = np.maximum(bottom_at - top_at, 0.5)
    v = np.clip((offset - top_at) / gap, -0.1, 1.1)
    filled = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    for entry, weight in choose(bank, opening, width):
        e_origin, e_axis, e_normal, e_lines = mouth_frame(entry.upper, entry.lower)
        # columns matched by the share of the opening's area on their side, not by width: a
        # rounder opened mouth's corners sample the bank mouth's open middle, not its shut,
        # shadowed corners stretched tall
        e_u = _matched_u(u, ((u_top, top), (u_bottom, bottom)), e_lines)
        e_top_at, e_bottom_at = np.interp(e_u, *e_lines[0]), np.interp(e_u, *e_lines[1])
        e_gap = np.maximum(e_bottom_at - e_top_at, 0.5)
        scale = math.sqrt(float(e_axis @ e_axis) / max(float(axis @ axis), 1e-6))
        plan = depth_plan(entry)
        share, cavity, across = depth_in_entry(v, gap * scale / e_gap, gap, e_u, plan)
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
    each mouth's ((u, offset) upper, (u, offset) lower) inner lip lines, :func:`mouth_frame`)."""
    grid = np.linspace(0.0, 1.0, 65)
    shares = []
    for (u_top, top), (u_bottom, bottom) in (lines, entry_lines):
        gap = np.maximum(np.interp(grid, u_bottom, bottom) - np.interp(grid, u_top, top), 0.0)
        gap = np.maximum(gap, 1e-3 * max(float(gap.max()), 1e-3))
        area = np.concatenate([[0.0], np.cumsum((gap[1:] + gap[:-1]) / 2)])
        shares.append(area / area[-1])
    return np.interp(np.interp(u, grid, shares[0]), shares[1], grid)


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
