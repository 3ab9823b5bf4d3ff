"""Teeth a photo never showed, built from the teeth it did show (decoder-13), and the plates
that carry the photo's own teeth.

A smiling photo shows its upper teeth down to the lower lip; opened wide, the mouth shows lower
teeth the photo never had. Until decoder-12 they were a flat band of one colour (no seams, no
grain, no shading): it read as paint. Here they are the photo's own upper set, mirrored across
the opening into the lower arch: sampled from that set's plate (the photo's texels, with its
seams, grain, blur and JPEG character), narrower (a lower incisor is about 0.7 of an upper
one's width, the lower arch narrower and set back), recoloured, darker toward the corners and
toward their cutting edge, standing on the lower lip line as the real set would. (Only lower
sets are built since decoder-14: an upper set enlarged from the lower one read as a bright ring
on webcam frames whose upper teeth lie in the lip's shade; such photos take the real interiors.)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from workers.decoder.shapes import gaussian_blur, smoothstep

# A lower set is this much the size of the upper set it is built from, across and up (lower
# incisors are ~5.5 mm wide against ~8.5 mm for upper centrals; the lower arch sits inside the
# upper one).
LOWER_SCALE = 0.7
# The synthesized lower set shows at most this tall, in half mouth widths above the lower lip
# line (the lip covers the rest), and not before the opening is this share of the upper teeth'
# height open (a barely open mouth hides its lower teeth behind the upper ones).
LOWER_SHOW = 0.22
# (The upper teeth's own height, half mouth widths: the lower set shows from this share of it open.)
UPPER_SHOW = 0.28
# Lower teeth are in the upper teeth's and lip's shade and set back: this share of the upper
# set's photo colour (the flat band took 0.82 of the photo's few lower-teeth pixels; at 0.82 of
# the upper set the broad smile's interior brightened and its edge ratio fell to 0.79). Their
# cutting edge, thin and translucent over the dark cavity, is this
# much darker than their base.
LOWER_SHADE = 0.72
EDGE_SHADE = 0.15
# A built set is at least this much lighter than the interior it stands over, lifted up to the
# shown set's own colour, never past it (at up to 1.6 times, a held-out webcam frame's lower
# teeth came out 12 CIELAB units from its own teeth).
OVER_INTERIOR = 1.2


@dataclass(frozen=True)
class MirroredTeeth:
    """The lower set of teeth a photo never showed, to be built from its upper set.

    Attributes:
        plate: (1, 4, S, S) RGBA of the upper set (renderer's teeth plate), crop pixels.
        line: (S,) the photo's inner upper lip line that set grows from, height at each crop
            column's centre.
        gum: (S,) per crop column, the row (pixel centre) of the upper teeth nearest their lip,
            one pixel in: what lies between it and the lip (the lip's rim, gums, the plate's
            ragged gum side) is not drawn into the built set, whose base takes this row.
        center, half: the photo's mouth middle column and half width (inner corners), pixels.
        gain: (3,) colour gain from the upper set's mean colour to the built set's.
        span: how far toward the corners the built set reaches, half mouth widths.
    """

    plate: torch.Tensor
    line: torch.Tensor
    gum: torch.Tensor
    center: float
    half: float
    gain: torch.Tensor
    span: float


def mirrored_teeth(plate: torch.Tensor, teeth: np.ndarray, line: np.ndarray, center: float, half: float,
                   target_rgb: np.ndarray, span: float, device, dtype) -> MirroredTeeth:
    """Prepare the lower set the photo never showed from ``plate`` (1, 4, S, S), its upper set's plate.

    ``teeth`` (S, S) bool is the upper set (its mean colour is mapped to ``target_rgb`` (3,),
    0-1), ``line`` (S,) the inner upper lip line, ``span`` how far toward the corners it reaches
    in half mouth widths (the built set reaches that times LOWER_SCALE).
    """
    rgb = _unshaded(plate[0, :3].permute(1, 2, 0).cpu().numpy().astype(np.float64), teeth, line)
    plate = torch.cat([torch.as_tensor(rgb, dtype=plate.dtype, device=plate.device).permute(2, 0, 1)[None],
                       plate[:, 3:]], 1)
    gain = np.asarray(target_rgb, np.float64) / np.maximum(rgb[teeth].mean(0), 1e-3)
    as_tensor = lambda value: torch.as_tensor(np.asarray(value), dtype=dtype, device=device)   # noqa: E731
    rows = np.arange(teeth.shape[0], dtype=np.float64)[:, None] + 0.5
    # Toward its lip: the upper set's first row, one pixel in.
    gum = np.where(teeth.any(0), np.min(np.where(teeth, rows, np.inf), 0) + 1.0, line)
    return MirroredTeeth(plate, as_tensor(line), as_tensor(gum), float(center), float(half), as_tensor(gain),
                         min(0.95, span * LOWER_SCALE))


def _unshaded(rgb: np.ndarray, teeth: np.ndarray, line: np.ndarray) -> np.ndarray:
    """(S, S, 3) the shown set's plate colours without the light's profile along the teeth.

    The photo's teeth darken toward their lip (its shadow) or their edge: mirrored, that profile
    would put the shadowed gum side of the upper teeth at the lit base of the lower ones (a dark
    bar on the lip of the webcam frames). Each pixel is scaled by the set's mean brightness over
    the mean brightness of the set's pixels as far from the lip line as it is (within 0.6-1.6),
    which keeps the texture across the teeth (seams, grain) and drops the shading along them;
    paint_mirrored shades the built set as its own.
    """
    rows = np.arange(rgb.shape[0], dtype=np.float64)[:, None] + 0.5
    depth = np.clip(np.rint(np.abs(rows - line[None, :])), 0, rgb.shape[0] - 1).astype(int)       # (S, S)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    total = np.bincount(depth[teeth], luma[teeth], minlength=rgb.shape[0])
    count = np.bincount(depth[teeth], minlength=rgb.shape[0]).astype(np.float64)
    mean = luma[teeth].mean()
    # Rows with few teeth pixels borrow the set's mean; the profile is smoothed over ~3 rows.
    weight = np.convolve(count, np.ones(3), "same")
    profile = (np.convolve(total, np.ones(3), "same") + 5.0 * mean) / (weight + 5.0)
    return rgb * np.clip(mean / np.maximum(profile[depth], 1e-3), 0.6, 1.6)[..., None]


def paint_mirrored(interior: torch.Tensor, teeth: MirroredTeeth, x: torch.Tensor, y: torch.Tensor,
                   top: torch.Tensor, bottom: torch.Tensor, center: torch.Tensor, half_width: torch.Tensor,
                   blur: float) -> torch.Tensor:
    """Composite a built lower set of teeth into ``interior`` (B, 3, h, w), behind the photo's plates.

    ``x`` (1, 1, 1, w) and ``y`` (1, 1, h, 1) are crop pixel centres; ``top``, ``bottom``
    (B, 1, 1, w) the frame's inner lip lines; ``center``, ``half_width`` (B, 1, 1, 1) its
    mouth's middle and half width. Each frame pixel at (across, height above the lower lip line)
    samples the upper set at (across / LOWER_SCALE, depth / LOWER_SCALE) below the photo's upper
    lip line: the base of the built set at its lip, its cutting edge toward the opening.
    """
    scale = LOWER_SCALE
    across = (x - center) / half_width                                            # (B, 1, 1, w)
    gap = (bottom - top).clamp_min(0.0)
    # Height above the lower lip, in half mouth widths.
    height = (bottom - y) / half_width                                            # (B, 1, h, w)
    source_x = teeth.center + across / scale * teeth.half                         # (B, 1, 1, w)
    size = teeth.plate.shape[-1]
    column = (source_x - 0.5).clamp(0.0, size - 1.0)
    low = column.floor().long()
    frac = column - low
    high = (low + 1).clamp(max=size - 1)
    line = teeth.line[low] * (1.0 - frac) + teeth.line[high] * frac
    gum = teeth.gum[low] * (1.0 - frac) + teeth.gum[high] * frac
    # The upper set grows down from its lip line.
    source_y = torch.maximum(line + height / scale * teeth.half, gum)
    batch, _, h, w = interior.shape
    grid = torch.stack(torch.broadcast_tensors(source_x.expand(batch, 1, h, w), source_y), -1)[:, 0]
    sampled = F.grid_sample(teeth.plate.expand(batch, -1, -1, -1), grid / size * 2.0 - 1.0, mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    # Shrunk by ``scale`` the photo's texels are sharper than its own teeth: blurred back to its softness.
    sampled = gaussian_blur(sampled, blur * math.sqrt(1.0 - scale * scale))
    rgb, alpha = sampled[:, :3] * teeth.gain.view(1, 3, 1, 1), sampled[:, 3:4]
    show, opened = LOWER_SHOW, 0.25
    # The set stands in the opening: cut by how tall it shows, faded toward the corners past where
    # the upper set ends, and hidden behind the upper teeth at small openings.
    alpha = alpha * smoothstep(show, 0.75 * show, height) * smoothstep(teeth.span, teeth.span - 0.2, across.abs())
    alpha = alpha * smoothstep(opened * UPPER_SHOW, 2.0 * opened * UPPER_SHOW, gap / half_width)
    # Real lower teeth: darker toward the corners (as the painted sets) and toward their thin
    # cutting edge, which shows the dark cavity through it.
    corner = (1.0 - 0.65 * across.square()).clamp_min(0.0)
    edge = 1.0 - EDGE_SHADE * smoothstep(0.0, show, height)
    set_shade = LOWER_SHADE
    teeth_rgb = rgb * corner * edge * set_shade
    # Teeth are lighter than the tongue and cavity around them under the same light: where the
    # photo's own teeth are dim (a webcam's yellow teeth under the real interiors' lit tongue)
    # the built set is lifted toward OVER_INTERIOR times what it stands over (a dark bar otherwise).
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    weight = alpha.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    over = (alpha * (interior * luma).sum(1, keepdim=True)).sum(dim=(1, 2, 3)) / weight
    own = (alpha * (teeth_rgb * luma).sum(1, keepdim=True)).sum(dim=(1, 2, 3)) / weight
    lift = (OVER_INTERIOR * over / own.clamp_min(1e-6)).clamp(1.0, 1.0 / set_shade).view(-1, 1, 1, 1)
    return interior + alpha * (teeth_rgb * lift - interior)


# A set of teeth carries on across the opening, toward the other lip, only where something hid
# its far end in the photo: the other lip's inner line or the other set, within this many pixels.
# (Carried on everywhere, the mid-speech photo's upper set, whose tips end in the open mouth,
# grew a band of its own colour down over the lower teeth at smaller openings.)
TOUCH_PX = 3.0
# Share of a set's columns over which where it carries on to is smoothed.
REACH_SHARE = 0.2


def teeth_reach(teeth: np.ndarray, other: np.ndarray, gum: np.ndarray, far: np.ndarray, hangs: bool) -> np.ndarray:
    """(S, S) bool: where one set's plate may carry on (``teeth_plate``'s ``toward``).

    In each column that shows the set: from its gum side (``gum``, its lip's outer line) to the
    end of its teeth, or on to ``far`` (the other lip's inner line) where the photo hid that end.

    Args:
        teeth, other: (S, S) bool, this set and the other one.
        gum, far: (S,) line heights at each crop column's centre, crop pixels.
        hangs: the upper set (hangs from the upper lip; its end is its lowest row), else the lower.
    """
    rows = np.arange(teeth.shape[0], dtype=np.float64)[:, None] + 0.5
    sign = 1.0 if hangs else -1.0
    # Heights along the set's direction of growth (down for the upper set, up for the lower).
    end = np.max(np.where(teeth, sign * rows, -np.inf), axis=0) + 0.5
    other_start = np.min(np.where(other, sign * rows, np.inf), axis=0) - 0.5
    by_lip, by_other = sign * far - end <= TOUCH_PX, other_start - end <= TOUCH_PX
    # Hidden by the lip: on to it; by the other set: on to where that set starts (until decoder-12
    # on to the lip, a flat band of the spread colour over the lower teeth of the broad smile).
    reached = np.where(by_lip, np.maximum(end, sign * far), np.where(by_other, np.maximum(end, other_start), end))
    # One edge along the set, not a choice column by column: a column carried on beside one that
    # is not left a rectangle of the spread colour hanging past the teeth (a webcam's ragged row
    # of teeth, decoder-13). The carried-on end is the median over REACH_SHARE of the set's
    # columns around each, never short of the column's own teeth nor past the other lip.
    shown = np.flatnonzero(teeth.any(0))
    half = int(REACH_SHARE * len(shown)) // 2
    if half > 0:
        padded = np.pad(reached[shown], half, mode="edge")
        smooth = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
        reached[shown] = np.clip(smooth, end[shown], np.maximum(end[shown], sign * far[shown]))
    return teeth.any(0)[None, :] & (sign * rows >= sign * gum[None, :]) & (sign * rows <= reached[None, :])


# A plate's fill carries on over ``toward`` where the teeth's spread weight is above this.
FILL_WEIGHT = 0.02


def teeth_plate(crop: np.ndarray, teeth: np.ndarray, toward: np.ndarray, grain: float,
                seed: int = 0, opening: np.ndarray | None = None, lip: np.ndarray | None = None) -> np.ndarray:
    """One set of the photo's own teeth as an RGBA image over the crop, (S, S, 4) float in [0, 1].

    The teeth pixels keep the photo's colours (alpha 1, feathered half a pixel). Toward the
    gum (``toward``: the pixels between the teeth and the outer lip line that a lip moving
    off them may uncover) the plate carries on with what the photo never showed: the nearby
    teeth's colour, spread by normalised convolution, with the photo's grain added. The
    teeth's edge pixels facing the rest of the photo's ``opening`` are half tooth, half what
    lies beside them there (pink gums, the dark cavity past the tips): they take the teeth's
    spread colour (``_edge_recoloured``).

    (Until decoder-14 those edge pixels kept the photo's colours: beside the gums the plate
    replaces with the spread teeth colour, each tooth of a smile was outlined by a thin pink
    line; at its tips, half cavity, dark drips hung over the lighter opening below.)

    Args:
        crop: (S, S, 3) uint8 RGB.
        teeth: (S, S) bool, one set of teeth (MouthReading.upper_teeth or lower_teeth).
        toward: (S, S) bool, where the set may extend.
        grain: the photo's noise, 0-1 RGB units (MouthReading.noise).
        opening: (S, S) bool, the photo's mouth opening (MouthReading.interior); None: the
            edge pixels are left as they are (the renderer's lower set: what lies between its
            teeth and the lip is the lip's inner rim, which moves with the lip, not the jaw).
        lip: (S,) a lower plate's lip: the photo's inner lower lip line, crop pixels at each
            column's centre, or None. Given, the fill covers ``toward`` down to that line, not
            only where the teeth's spread weight is > ``FILL_WEIGHT`` (about 2 sigma past them).
            The renderer gives it for a lower plate with no upper one (its no-teeth path): the
            1-2 px short of the lip showed the real interior's red tongue there, a thin pink
            line under the lower teeth wide open (decoder-15). (Filled on to the outer lip line,
            a flat band replaced the lower lip's rim at half open. Filled to the lip for every
            plate, the mid-speech photo lost: inner-lip edge ratio 0.81 -> 0.80, own-teeth dE
            6.2 -> 7.0.)
    """
    image = crop.astype(np.float32) / 255.0
    sigma = max(1.5, 0.5 * np.sqrt(teeth.sum() / max(1, np.count_nonzero(teeth.any(0)))))
    weight = teeth.astype(np.float32)
    spread = cv2.GaussianBlur(image * weight[..., None], (0, 0), sigma)
    norm = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    filled = np.where(norm > 1e-4, spread / np.maximum(norm, 1e-4), image)
    noise = (grain * _unit_noise(seed, image.shape)).astype(np.float32)
    rgb = np.where(teeth[..., None], image, filled + noise)
    alpha = cv2.GaussianBlur(teeth.astype(np.float32), (0, 0), 0.5)
    fill = norm[..., 0] > FILL_WEIGHT
    if lip is not None:
        rows = np.arange(teeth.shape[0], dtype=np.float64)[:, None] + 0.5
        fill |= rows <= lip[None, :]
    alpha = np.maximum(alpha, (toward & fill).astype(np.float32))
    if opening is not None:
        rgb = _edge_recoloured(rgb, teeth, opening & ~teeth, filled)
        rgb = np.where((toward & ~teeth)[..., None], _gum_side(image, teeth, filled) + noise, rgb)
    return np.concatenate([rgb.clip(0.0, 1.0), alpha[..., None]], -1)


# Toward the gum a plate carries on each column's own teeth colour (its gum-most teeth rows), this
# share of it over the set's spread colour, so the seams between teeth go on up to the lip.
GUM_SIDE_COLUMN = 0.7


def _gum_side(image, teeth, filled):
    """(S, S, 3) what a set's plate shows above its teeth (its gum side, which a lip lifting off
    them uncovers): the spread teeth colour ``filled`` at the brightness of each column's two
    gum-most teeth pixels (GUM_SIDE_COLUMN of it), so the seams' shade goes on up. (Until decoder-16 the spread colour alone: the
    smiles' upper teeth fused into one flat white band toward the lip wide open.)"""
    rows = np.arange(teeth.shape[0])[:, None]
    first = np.where(teeth.any(0), np.argmax(teeth, 0), 0)
    shown = teeth.any(0)
    top = np.zeros((teeth.shape[1], 3), np.float32)
    for offset in (0, 1):
        row = np.clip(first + offset, 0, teeth.shape[0] - 1)
        top += 0.5 * image[row, np.arange(teeth.shape[1])]
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    column = np.where(shown, top @ luma, 0.0)[None, :]                                            # (1, S)
    # The column's brightness only, never its colour: its gum-most teeth pixels are part gum, and
    # their pink carried up drew the pink outline back round each tooth (teeth fringe 0.15 -> 0.29
    # on the official smile half open).
    gain = np.clip(column / np.maximum(filled @ luma, 1e-3), 0.6, 1.2)
    above = (rows < first[None, :]) & shown[None, :]
    return np.where(above[..., None], filled * (GUM_SIDE_COLUMN * gain + 1.0 - GUM_SIDE_COLUMN)[..., None], filled)


@functools.lru_cache(maxsize=4)
def _unit_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """``shape`` float64 standard normal noise from ``default_rng(seed)``, made once per crop size:
    ``grain *`` it is ``default_rng(seed).normal(0, grain, shape)`` value for value (that draw is
    ``0 + grain * z`` of this same ``z``), without drawing ~0.8 M normals each frame (~15 ms at a
    512 px crop)."""
    noise = np.random.default_rng(seed).standard_normal(shape)
    noise.flags.writeable = False
    return noise


def _edge_recoloured(rgb, teeth, beside, filled):
    """(S, S, 3) ``rgb`` with the teeth's edge pixels facing ``beside`` (the photo's opening that
    is not teeth) in the spread teeth colour ``filled``.

    Such a pixel is part tooth, part what lay beside it in the photo: pink gum, which the plate
    replaces with the spread teeth colour, or the dark cavity past the tips, where the frame may
    show a lighter opening. (Unmixed, the share of tooth in it as its alpha, the mid-speech
    photo's shaded tips let the cavity through along the lower lip: inner-lip edge ratio
    0.81 -> 0.79; the plate's half-pixel feather is kept instead.)
    """
    edge = teeth & (cv2.dilate(beside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    return np.where(edge[..., None], filled, rgb)


# The lower lip may uncover this many pixels of a lower plate's gum side before the plate rides
# down with it. (At 0 the mid-speech photo's lip r on the shared clip fell 0.787 -> 0.774, the
# version held; at 2, 0.783, and the flat strip is a line.)
RIDE_MARGIN_PX = 2.0


def fit_affine(frame_points: torch.Tensor, photo_points: torch.Tensor) -> torch.Tensor:
    """Least-squares affine (B, 2, 3) from frame pixels to photo pixels.

    frame_points: (B, N, 2) where N points are in each frame; photo_points: (N, 2) or (B, N, 2)
    where they are in the photo. N >= 3, not all on a line.
    """
    batch, count = frame_points.shape[:2]
    design = torch.cat([frame_points, torch.ones(batch, count, 1, dtype=frame_points.dtype,
                                                 device=frame_points.device)], -1)    # (B, N, 3)
    target = photo_points.expand(batch, -1, -1) if photo_points.dim() == 2 else photo_points
    return torch.linalg.lstsq(design.double(), target.double()).solution.to(frame_points.dtype).transpose(1, 2)


def teeth_affine(target: torch.Tensor, source: torch.Tensor, anchors: tuple[int, ...], lower: bool) -> torch.Tensor:
    """(B, 2, 3) frame->photo affine of one set's plate: fitted to its anchors (the skull's or
    the jaw's landmarks, ``target`` (B, 478, 2) in the frames, ``source`` (478, 2) in the photo).

    The lower set rides with the jaw, but never rises past the lower lip so far that the lip
    uncovers more of it than the photo showed: below that the plate holds only what the photo
    never showed (its teeth's colour spread toward the gum). When the jaw's anchors would put the
    target's inner lower lip (landmark 14) below the photo's in the plate, the plate moves down
    with the lip by the difference. (Until decoder-12 the mid-speech photo's half-open frames
    showed ~4 px of that flat fill between its lower teeth and lip: a flat white strip.)
    """
    affine = fit_affine(target[:, list(anchors)], source[list(anchors)])
    if not lower:
        return affine
    lip = torch.cat([target[:, 14], torch.ones_like(target[:, 14, :1])], -1)                    # (B, 3)
    uncovered = ((affine[:, 1] * lip).sum(-1) - source[14, 1] - RIDE_MARGIN_PX).clamp_min(0.0)
    return torch.cat([affine[:, :, :2], (affine[:, :, 2] - torch.stack([torch.zeros_like(uncovered), uncovered], -1))[..., None]], -1)
