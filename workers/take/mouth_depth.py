"""How a bank mouth's depth opens wider than the take showed it (``workers.take.mouth_bank``).

A mouth the dub opens wider than the take's bank mouth nearest in shape is filled from that
mouth column by column, from its upper inner lip down to its lower. What is bright keeps its
pixel size (teeth, the lip rim): the upper teeth stay under the upper lip, the lower teeth and
the lower lip's rim ride with the lower lip, and what opens between them is dark cavity, as a
real mouth opening further shows more of its dark inside and never longer teeth.
:func:`depth_plan` reads a bank mouth once (its cavity, where its teeth part, its darkest
colour); :func:`depth_in_entry` maps a target pixel's depth to the bank mouth's.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from core.take import MouthInterior
from workers.face.mouth import to_lab

# A mouth opened wider than the bank's keeps what is bright (teeth, the lip rim) at its size and
# opens dark cavity between the upper teeth, which stay under the upper lip, and the lower teeth,
# which ride with the lower lip, as a real mouth opening further shows more of its dark inside
# and not longer teeth (see depth_in_entry). Where the bank mouth shows a cavity, its own cavity
# stretches: each depth sample along the middle of the mouth (this share of its width, in this
# many samples) stretches by its darkness squared, the brightest PROFILE_FLOOR as much as the
# darkest; a profile whose grey levels span less than PROFILE_MIN_CONTRAST (0-255) is one
# cavity, stretched evenly.
PROFILE_SPAN = (0.3, 0.7)
PROFILE_SAMPLES = 24
PROFILE_FLOOR = 0.03
PROFILE_MIN_CONTRAST = 12.0
# ... read in each of this many columns across this span of the mouth (each averaged with its
# neighbours); the share of cavity a mouth shows is read on the middle's profile.
PROFILE_COLUMNS = 19
PROFILE_COLUMNS_SPAN = (0.05, 0.95)
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


def polygon_mask(shape: tuple[int, int], polygon: np.ndarray, origin=(0.0, 0.0)) -> np.ndarray:
    """(h, w) uint8 0/1 filled polygon (N, 2) in pixels, anti-aliased to a quarter pixel."""
    mask = np.zeros(shape, np.uint8)
    points = np.round((np.asarray(polygon, np.float64) - np.asarray(origin) - 0.5) * 4).astype(np.int32)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=2)
    return mask


def smoothstep(low: float, high: float, x):
    """0 below ``low``, 1 above ``high``, smooth (cubic) between."""
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def mouth_frame(upper: np.ndarray, lower: np.ndarray):
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


@dataclass(frozen=True)
class DepthPlan:
    """How a bank mouth's depth (0 at its upper inner lip, 1 at the lower) opens wider.

    Attributes:
        profile_u, profile: (PROFILE_COLUMNS,) columns along the mouth (0-1 corner to corner)
            and (PROFILE_COLUMNS, PROFILE_SAMPLES + 1) in each the cumulative stretch weight of
            its own cavity at depths 0, 1/PROFILE_SAMPLES, ..., 1 (the darker, the more it stretches).
        stretched: the share of the extra opening its own cavity takes (0-1); the rest opens
            between the teeth as new cavity.
        split_u, split: (SPLIT_COLUMNS,) columns along the mouth (0-1 corner to corner) and the
            depth in each where the upper teeth end and the lower (teeth and lip) begin.
        cavity_rgb: (3,) float32 0-255, the new cavity's colour (the mouth's darkest inside).
    """

    profile_u: np.ndarray
    profile: np.ndarray
    stretched: float
    split_u: np.ndarray
    split: np.ndarray
    cavity_rgb: np.ndarray


def _along_depth(entry: MouthInterior, channel: np.ndarray, u: np.ndarray, samples: int) -> np.ndarray:
    """(samples, len(u)) ``channel`` (h, w) of a bank mouth's box at depths (i + 0.5) / samples
    of its opening (0 at the upper inner lip, 1 at the lower) in columns ``u`` (0-1 along it)."""
    origin, axis, normal, ((u_top, top), (u_bottom, bottom)) = mouth_frame(entry.upper, entry.lower)
    v = (np.arange(samples) + 0.5) / samples
    top_at, bottom_at = np.interp(u, u_top, top), np.interp(u, u_bottom, bottom)
    depth = top_at[None, :] + v[:, None] * (bottom_at - top_at)[None, :]
    points = origin + u[None, :, None] * axis + depth[..., None] * normal
    return cv2.remap(channel.astype(np.float32), (points[..., 0] - 0.5).astype(np.float32),
                     (points[..., 1] - 0.5).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# Plans by bank mouth (``id``), each dropped with its mouth: a plan costs 4-6 ms to read and the
# same one or two bank mouths fill every opened frame of a chunk.
_PLANS: dict[int, DepthPlan] = {}


def depth_plan(entry: MouthInterior) -> DepthPlan:
    """A bank mouth's depth (:class:`DepthPlan`), read once per mouth in this process."""
    plan = _PLANS.get(id(entry))
    if plan is None:
        plan = _PLANS[id(entry)] = _read_depth_plan(entry)
        weakref.finalize(entry, _PLANS.pop, id(entry), None)
    return plan


def _read_depth_plan(entry: MouthInterior) -> DepthPlan:
    """Read a bank mouth's depth (:class:`DepthPlan`)."""
    middle = np.linspace(*PROFILE_SPAN, 9)
    # column by column: a smile's teeth reach lower at its corners than in its middle, where the
    # cavity under them is; a profile read in the middle stretched the corners' teeth into fangs
    profile_u = np.linspace(*PROFILE_COLUMNS_SPAN, PROFILE_COLUMNS)
    grey = _along_depth(entry, cv2.cvtColor(entry.crop, cv2.COLOR_RGB2GRAY), profile_u, PROFILE_SAMPLES)
    grey = np.apply_along_axis(np.convolve, 1, np.pad(grey, ((0, 0), (1, 1)), mode="edge"), [0.25, 0.5, 0.25], "valid")
    contrast = grey.max(0) - grey.min(0)
    weight = PROFILE_FLOOR + (1.0 - PROFILE_FLOOR) * ((grey.max(0) - grey) / np.maximum(contrast, 1e-6)) ** 2
    weight = np.where(contrast < PROFILE_MIN_CONTRAST, 1.0, weight)
    cumulative = np.concatenate([np.zeros((1, PROFILE_COLUMNS)), np.cumsum(weight, axis=0)])
    lab = to_lab(entry.crop)
    lip_l = float(to_lab(np.round(np.asarray(entry.lip_rgb) * 255.0).clip(0, 255).astype(np.uint8))[0])
    light = _along_depth(entry, lab[..., 0], middle, PROFILE_SAMPLES).mean(1)
    cavity = float(smoothstep(*CAVITY_BELOW_LIP, lip_l - light).mean())
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
        middle_light = _along_depth(entry, lab[..., 0], middle, SPLIT_SAMPLES).mean(1)
        split = np.full(SPLIT_COLUMNS, _one_set_end(middle_light, lip_l))
    inside = polygon_mask(entry.crop.shape[:2], np.concatenate([entry.upper, entry.lower[-2:0:-1]])) > 0
    pixels = entry.crop[inside].astype(np.float32)
    darkest = np.argsort(lab[inside][:, 0])[:max(1, int(round(CAVITY_DARKEST * len(pixels))))]
    return DepthPlan(profile_u=profile_u, profile=(cumulative / cumulative[-1]).T,
                     stretched=float(smoothstep(*CAVITY_SHARE, cavity)), split_u=split_u, split=split,
                     cavity_rgb=np.median(pixels[darkest], axis=0))


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


def depth_in_entry(v: np.ndarray, ratio: np.ndarray, pixels: np.ndarray, u: np.ndarray, plan: DepthPlan
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a pixel at share ``v`` of the target's opening (0 at its upper inner lip, 1 at the
    lower; a little beyond at the feathered rim) samples the bank mouth, as a share of the bank
    mouth's opening there; how much of the pixel is new cavity (0-1); and where in the new
    cavity it lies (0 at its top, 1 at its bottom). Arrays alike ``v``: ``ratio``, the target's
    opening over the bank mouth's, both in bank pixels; ``pixels``, the target's opening in its
    pixels (a pixel covers 1 / pixels of it); ``u``, the pixel's column in the bank mouth (0-1).

    A mouth the bank shows at least as open is squeezed evenly. One opened wider opens the bank
    mouth's depth w by (ratio - 1) * P'(w), where P(w) = stretched * profile(w) + (1 - stretched)
    * [w > split]: the share v of bank depth w is (w + (ratio - 1) * P(w)) / ratio, solved for w
    (bisection; monotone). The bright bands (teeth, lip rim) keep their pixel size, the upper
    ones under the upper lip and the lower ones on the lower lip; the cavity between takes the
    extra opening, stretched where the bank mouth has one, new at the split where it has not."""
    split = np.interp(u, plan.split_u, plan.split)
    column = np.interp(u, plan.profile_u, np.arange(len(plan.profile_u)))
    ratio = np.maximum(ratio, 1.0)
    extra = ratio - 1.0
    inside = np.clip(v, 0.0, 1.0)

    def opened(w):
        own = _profile_at(plan.profile, column, w)
        return w + extra * (plan.stretched * own + (1.0 - plan.stretched) * (w > split))

    low, high = np.zeros_like(inside), np.ones_like(inside)
    for _ in range(14):
        middle = 0.5 * (low + high)
        below = opened(middle) / ratio < inside
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    # the new cavity: [start, start + extra * (1 - stretched)] in bank depth units of the target's
    # opening; each pixel covers ratio / pixels of it (anti-aliased)
    start = split + extra * plan.stretched * _profile_at(plan.profile, column, split)
    end = start + extra * (1.0 - plan.stretched)
    at, half = v * ratio, 0.5 * ratio / pixels
    cavity = np.clip((np.minimum(at + half, end) - np.maximum(at - half, start)) / (2.0 * half), 0.0, 1.0)
    across = np.clip((at - start) / np.maximum(end - start, 1e-6), 0.0, 1.0)
    # beyond the lip lines (the feathered rim) at the bank's pixel size
    return 0.5 * (low + high) + (v - inside) * ratio, np.where(v == inside, cavity, 0.0), across


def _profile_at(profile: np.ndarray, column: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a (columns, samples + 1) cumulative profile at fractional ``column``
    indices and depths ``w`` (0-1), arrays alike."""
    x = np.clip(w, 0.0, 1.0) * (profile.shape[1] - 1)
    c0 = np.clip(np.floor(column).astype(int), 0, profile.shape[0] - 2)
    x0 = np.clip(np.floor(x).astype(int), 0, profile.shape[1] - 2)
    fc, fx = np.clip(column - c0, 0.0, 1.0), x - x0
    top = profile[c0, x0] + fx * (profile[c0, x0 + 1] - profile[c0, x0])
    bottom = profile[c0 + 1, x0] + fx * (profile[c0 + 1, x0 + 1] - profile[c0 + 1, x0])
    return top + fc * (bottom - top)
