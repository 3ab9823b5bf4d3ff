"""Synthesised mouth interior: cavity, upper and lower teeth, tongue, lip shadow.

Painted wherever the target inner lip line is open, so the warp (which can only stretch
the closed lips of the photo) never shows smeared lip texture inside an open mouth.
"""

from __future__ import annotations

import math

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
