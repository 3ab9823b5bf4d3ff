"""Synthesised mouth interior: cavity, upper and lower teeth, tongue, lip shadow.

Painted wherever the target inner lip line is open, so the warp (which can only stretch
the closed lips of the photo) never shows smeared lip texture inside an open mouth.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from workers.decoder.shapes import between_curves_distance, polyline_y, smoothstep, soft_inside

CAVITY_RGB = (0.20, 0.08, 0.09)
TONGUE_RGB = (0.62, 0.30, 0.31)
TEETH_RGB = (0.86, 0.80, 0.70)


def paint_mouth(region: torch.Tensor, origin: tuple[int, int], upper: torch.Tensor, lower: torch.Tensor,
                light: torch.Tensor) -> torch.Tensor:
    """Composite the mouth interior into a region of the frames.

    Args:
        region: (B, 3, h, w) float RGB in [0, 1], the warped frames' mouth box.
        origin: (x0, y0) crop pixel of the region's top-left corner.
        upper: (B, 11, 2) inner upper lip line, right corner to left corner (sorted by x).
        lower: (B, 11, 2) inner lower lip line, same order.
        light: (3,) RGB light on the face in the photo (see :func:`mouth_light`).

    Returns:
        (B, 3, h, w) the region with the interior painted in.
    """
    batch, _, h, w = region.shape
    device, dtype = region.device, region.dtype
    xs = torch.arange(w, device=device, dtype=dtype) + origin[0] + 0.5
    ys = torch.arange(h, device=device, dtype=dtype) + origin[1] + 0.5
    signed = between_curves_distance(xs, ys, upper, lower)[:, None]                 # (B, 1, h, w)
    coverage = soft_inside(signed)
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

    def rgb(color: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(color, device=device, dtype=dtype).view(1, 3, 1, 1)

    # Cavity: dark, darkest deep in the middle of the opening.
    depth = smoothstep(0.0, 1.0, (1.0 - across)) * smoothstep(0.0, 0.5, (y - top) / gap.clamp_min(1.0))
    interior = rgb(CAVITY_RGB) * (1.0 - 0.45 * depth)
    # Tongue: a rounded mass resting behind the lower teeth.
    tongue_cy = bottom - 0.18 * gap
    tongue = ((x - center) / (0.62 * half_width)).square() + ((y - tongue_cy) / (0.42 * gap + 1.0)).square()
    tongue_cover = smoothstep(1.0, 0.75, tongue) * smoothstep(0.0, 0.35, gap / (2 * half_width))
    interior = interior + tongue_cover * (rgb(TONGUE_RGB) * (1.0 - 0.35 * depth) - interior)
    # Teeth: bands hanging from the upper lip line and standing on the lower one, shaded
    # darker toward the corners, with faint gaps between teeth.
    tooth = 2.0 * half_width / 9.0
    phase = torch.remainder((x - center) / tooth, 1.0)
    seams = 1.0 - 0.12 * torch.exp(-((torch.minimum(phase, 1.0 - phase)) / 0.07).square())
    corner_shade = (1.0 - 0.65 * across.square()).clamp_min(0.0) * seams
    upper_h = 0.28 * half_width
    upper_teeth = smoothstep(upper_h, upper_h * 0.75, y - top) * smoothstep(0.96, 0.7, across)
    lower_h = 0.18 * half_width
    lower_teeth = smoothstep(lower_h, lower_h * 0.7, bottom - y) * smoothstep(0.85, 0.55, across)
    lower_teeth = lower_teeth * smoothstep(0.25, 0.5, gap / upper_h)
    teeth_rgb = rgb(TEETH_RGB) * corner_shade
    interior = interior + lower_teeth * (0.82 * teeth_rgb - interior)
    # Upper teeth: shaded under the lip at the top and toward their biting edge.
    upper_shade = (0.7 + 0.3 * smoothstep(0.0, 0.35, (y - top) / upper_h)) * (1.0 - 0.25 * smoothstep(0.5, 1.0, (y - top) / upper_h))
    interior = interior + upper_teeth * (teeth_rgb * upper_shade - interior)
    # Lips cast a soft shadow just inside the opening.
    interior = interior * (0.55 + 0.45 * smoothstep(0.0, 3.0, -signed))
    interior = interior * light.view(1, 3, 1, 1)
    return region + coverage * (interior - region)


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
# readable as two lips, for people and for landmark trackers alike.
SEAM_DARKEN = 0.5
SEAM_WIDTH_PX = 2.0
# The fill mirrors the lips about lines this far outside the inner lip lines, so the
# anti-aliased edge pixels (half lip, half tooth) and the photo's dark lip rim go too.
EDGE_MARGIN_PX = 1.5
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
    # Mirror about lines 1.5 px outside the inner lip lines: the anti-aliased edge pixels,
    # half lip and half tooth, are replaced too.
    top_axis, bottom_axis = top - EDGE_MARGIN_PX, bottom + EDGE_MARGIN_PX
    middle = 0.5 * (top + bottom)
    half = (middle - top_axis)[None, :]                                                   # (1, S)
    squeeze = np.minimum(1.0, MIRROR_DEPTH_PX / np.maximum(half, 1e-6))
    ys = np.arange(size, dtype=np.float64)[:, None] + 0.5
    band = columns[None, :] & (ys > top_axis[None, :]) & (ys < bottom_axis[None, :])
    source_y = np.where(ys < middle[None, :], top_axis[None, :] - squeeze * (ys - top_axis[None, :]),
                        bottom_axis[None, :] + squeeze * (bottom_axis[None, :] - ys))
    map_x = np.broadcast_to(xs[None, :] - 0.5, (size, size)).astype(np.float32)
    map_y = np.where(band, source_y - 0.5, ys - 0.5).astype(np.float32)
    mirrored = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    seam = 1.0 - SEAM_DARKEN * np.exp(-0.5 * ((ys - middle[None, :]) / SEAM_WIDTH_PX) ** 2)
    filled = crop.astype(np.float64)
    filled[band] = (mirrored * seam[..., None])[band]
    return filled.round().clip(0, 255).astype(np.uint8)
