"""Real mouth interiors, for the parts of a mouth the photo never showed.

Smooth shading in this face's colours (cavity, tongue, teeth bands) reads as paint. Real
interiors have structure at every scale and light that falls off into the mouth: teeth in the
upper lip's shadow, the gaps between them, the tongue's wet highlights, the inner cheeks. The
atlas holds real open mouths (sources and licences in data/mouth_interiors.json), each
resampled between its inner lip lines to mouth coordinates (u across the opening, -1 at one
corner to 1 at the other; v down it, 0 at the upper inner lip line to 1 at the lower):

* the whole interior's colour over its photo's light on the lips (:func:`interior_albedo`),
  which :func:`sample_interior` lays into another face's opening (teeth hanging from the upper
  lip and standing on the lower one at their own size, the cavity stretched between) for
  :func:`workers.decoder.mouth.paint_mouth` to multiply by that face's light;
* its log-luma detail along the mouth (:func:`interior_detail`, :func:`load_atlas`), which
  decoder-5 to -8 laid over a painted interior at small openings; since decoder-9 the renderer
  lays the whole interiors at every opening, and the detail atlas is only measured (its
  exemplars' structure, tests/workers/decoder/test_interior.py), not rendered.

Built once by ``bench/mouth_interiors.py`` and stored in the package as 16-bit PNGs of the
stacked exemplars plus the JSON sidecar (opening, source, licence, whether laid whole).

:func:`texture_along_mouth` measures on a frame what the real interiors are for (bench/mouth.py).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from workers.face import topology as topo
from workers.face.mouth import mouth_width, polygon_mask

DATA = Path(__file__).resolve().parent / "data"
ATLAS_PNG = DATA / "mouth_interiors.png"
ATLAS_JSON = DATA / "mouth_interiors.json"
# Texels of one exemplar: v (down the opening) x u (across it).
TEXELS = (40, 96)
# High-pass: log luma minus its Gaussian blur along the mouth of this many texels; detail
# clipped to +-DETAIL_CLIP.
DETAIL_SIGMA = 3.0
DETAIL_CLIP = 0.6
# Exemplars are blended by how near their opening is to the frame's (Gaussian, this sigma).
OPENING_SIGMA = 0.06


def interior_detail(crop: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """One open mouth's interior detail in mouth coordinates, (40, 96) float.

    Args:
        crop: (S, S, 3) uint8 RGB, the photo's aligned crop.
        upper, lower: (11, 2) inner lip lines in crop pixels, corner to corner.
    """
    rows, cols = TEXELS
    order_u, order_l = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
    left = max(upper[:, 0].min(), lower[:, 0].min())
    right = min(upper[:, 0].max(), lower[:, 0].max())
    u = (np.arange(cols) + 0.5) / cols                     # 0..1 across, right corner to left
    v = (np.arange(rows) + 0.5) / rows
    xs = left + u * (right - left)
    top = np.interp(xs, upper[order_u, 0], upper[order_u, 1])
    bottom = np.interp(xs, lower[order_l, 0], lower[order_l, 1])
    map_x = np.broadcast_to(xs[None, :], (rows, cols)).astype(np.float32) - 0.5
    map_y = (top[None, :] + v[:, None] * (bottom - top)[None, :]).astype(np.float32) - 0.5
    patch = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255.0
    luma = np.log(np.maximum(patch @ np.array([0.299, 0.587, 0.114], np.float32), 0.02))
    # High-pass along the mouth only: what varies along a row (gaps between teeth, highlights)
    # is kept; bands along the mouth (each exemplar's lip rims and teeth rows) are this face's
    # own shading's to draw, and laid over it they read as streaks of chrome.
    taps = 2 * int(np.ceil(3.0 * DETAIL_SIGMA)) + 1
    detail = luma - cv2.GaussianBlur(luma, (taps, 1), DETAIL_SIGMA, borderType=cv2.BORDER_REFLECT)
    return np.clip(detail, -DETAIL_CLIP, DETAIL_CLIP)


def write_atlas(details: list[np.ndarray], records: list[dict]) -> None:
    """Store exemplars (each (40, 96)) and their records (opening, source, licence)."""
    DATA.mkdir(parents=True, exist_ok=True)
    stacked = np.concatenate(details, 0)
    encoded = np.round((stacked / DETAIL_CLIP * 0.5 + 0.5) * 65535.0).clip(0, 65535).astype(np.uint16)
    cv2.imwrite(str(ATLAS_PNG), encoded)
    ATLAS_JSON.write_text(json.dumps({"texels": list(TEXELS), "detail_clip": DETAIL_CLIP,
                                      "exemplars": records}, indent=2) + "\n")


def _read_atlas(png: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the JSON sidecar, the 16-bit PNG ``png`` as stored, each exemplar's opening (E,) float32)."""
    meta = json.loads(ATLAS_JSON.read_text())
    encoded = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    if encoded is None:
        raise FileNotFoundError(f"mouth interior atlas missing: {png}")
    return meta, encoded, np.array([record["opening"] for record in meta["exemplars"]], np.float32)


@functools.lru_cache(maxsize=1)
def load_atlas() -> tuple[np.ndarray, np.ndarray]:
    """(details (E, 40, 96) float32, openings (E,) float32) from the package's atlas."""
    meta, encoded, openings = _read_atlas(ATLAS_PNG)
    details = (encoded.astype(np.float32) / 65535.0 - 0.5) * 2.0 * float(meta["detail_clip"])
    rows, cols = meta["texels"]
    return details.reshape(len(openings), rows, cols), openings


def texture_along_mouth(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """How much a mouth interior varies along the mouth: what flat paint lacks.

    Median |d/dx| of log luma inside the inner lip line, per 1 % of the mouth width, on a
    frame (H, W, 3) uint8 RGB with its Face Mesh landmarks (478, 2+) in pixels.

    Across the mouth, not down it: painted interiors are bands along the mouth (teeth rows,
    the dark ring, the tongue's edge), whose edges are horizontal; what paint lacks is what
    varies along the row (gaps between teeth, the tongue's highlights). Taken at Gaussian scale
    1 % of the mouth width, over the interior shrunk by 4 % of it (the lip rim left out), so a
    webcam mouth and a studio portrait are measured at the same scale of the mouth. None when
    the interior is too small (a closed or barely parted mouth).
    """
    width = mouth_width(landmarks)
    inside = polygon_mask(frame.shape[:2], landmarks[topo.inner_mouth_polygon(), :2]).astype(np.uint8)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    core = depth > 0.04 * width
    if core.sum() < 30:
        return None
    luma = np.log(np.maximum(frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32), 2.0))
    sigma = max(0.5, 0.01 * width)
    smooth = cv2.GaussianBlur(luma, (0, 0), sigma)
    across = cv2.Sobel(smooth, cv2.CV_32F, 1, 0) / 8.0
    return float(np.median(np.abs(across)[core]) * 0.01 * width)


# Whole real interiors (colour, not only detail): each exemplar's interior between its inner lip
# lines, resampled to mouth coordinates and divided by its photo's light on the lips (the
# renderer's mouth_light), so this face's light multiplies it back. Stored as a 16-bit PNG of
# the stacked exemplars (albedo / ALBEDO_SCALE) beside the detail atlas.
ALBEDO_PNG = DATA / "mouth_interiors_rgb.png"
ALBEDO_TEXELS = (48, 96)
ALBEDO_SCALE = 2.0
# The inner lip lines are anti-aliased and a webcam frame's lip rim is a few crop pixels thick:
# sampled this far inside them (share of the mouth width, at least 1 px) the exemplar's own lip
# stays out (this face's rim is drawn by paint_mouth; with 1 px, the exemplars' pink rims read
# as lip to Face Mesh and halved its reading of Biden's half-open mouth).
ALBEDO_INSET = 0.02
# ... and the lower line this far: the lower lip's wet inner side is thick, and laid along this
# face's lower lip it reads as more lip (a pink band over the lower lip line at small openings).
ALBEDO_INSET_LOWER = 0.05
# Exemplars blended per frame: the three nearest in opening (more ghost the teeth of one over
# the gaps of another; three, so the small openings take the mid-speech photo's sharper interior
# as well as the two dim half-open webcam ones).
ALBEDO_BLEND = 3
# How a real interior is laid into an opening of another height: the upper teeth hang from the
# upper lip and the lower teeth stand on the lower one at their own size in mouth widths; the
# middle (cavity, tongue) stretches. In a smaller opening than the exemplar's, what shows is its
# lower part (the lower teeth's tips, the tongue), the upper teeth behind the upper lip: with
# the upper teeth's tips hanging from the upper lip (the exemplar's upper 54 %, its lower 46 %
# below them), Face Mesh read the lower part's dim tongue as lip and the slit less open
# (Grace Hopper's lip r 0.482 against 0.498 with the lower part alone, both with paint_mouth's
# small-opening shade at 0.5).
UPPER_BAND, LOWER_BAND = 0.35, 0.3
ALBEDO_SHARPEN, ALBEDO_SHARPEN_SIGMA = 0.8, 1.5
# log-luma detail std (at ALBEDO_SHARPEN_SIGMA) of a sharp exemplar: none of it is added there.
SHARP_DETAIL = 0.15


def interior_albedo(crop: np.ndarray, upper: np.ndarray, lower: np.ndarray, light: np.ndarray) -> np.ndarray:
    """One open mouth's interior colour in mouth coordinates over its light, (48, 96, 3) float.

    Args:
        crop: (S, S, 3) uint8 RGB, the photo's aligned crop.
        upper, lower: (11, 2) inner lip lines in crop pixels, corner to corner.
        light: (3,) RGB light on the photo's lips (workers.decoder.mouth.mouth_light).
    """
    rows, cols = ALBEDO_TEXELS
    order_u, order_l = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
    left = max(upper[:, 0].min(), lower[:, 0].min())
    right = min(upper[:, 0].max(), lower[:, 0].max())
    xs = left + (np.arange(cols) + 0.5) / cols * (right - left)
    top = np.interp(xs, upper[order_u, 0], upper[order_u, 1])
    bottom = np.interp(xs, lower[order_l, 0], lower[order_l, 1])
    gap = bottom - top
    top = top + np.minimum(max(1.0, ALBEDO_INSET * (right - left)), 0.25 * gap)
    bottom = bottom - np.minimum(max(1.0, ALBEDO_INSET_LOWER * (right - left)), 0.25 * gap)
    v = (np.arange(rows) + 0.5) / rows
    map_x = np.broadcast_to(xs[None, :], (rows, cols)).astype(np.float32) - 0.5
    map_y = (top[None, :] + v[:, None] * (bottom - top)[None, :]).astype(np.float32) - 0.5
    # Area-averaged: a 512 px portrait's mouth is several times the texel grid.
    blurred = cv2.GaussianBlur(crop, (0, 0), max(0.5, 0.35 * (right - left) / cols))
    patch = cv2.remap(blurred, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return patch.astype(np.float32) / 255.0 / np.asarray(light, np.float32)[None, None, :]


def write_albedo_atlas(albedos: list[np.ndarray]) -> None:
    """Store exemplars' interiors (each (48, 96, 3)) in the order of the detail atlas's records."""
    stacked = np.concatenate(albedos, 0) / ALBEDO_SCALE
    encoded = np.round(stacked * 65535.0).clip(0, 65535).astype(np.uint16)
    cv2.imwrite(str(ALBEDO_PNG), encoded[..., ::-1])


@functools.lru_cache(maxsize=1)
def load_albedo_atlas() -> tuple[np.ndarray, np.ndarray]:
    """(albedos (E, 48, 96, 3) float32 RGB, openings (E,) float32) of the exemplars used whole."""
    meta, encoded, openings = _read_atlas(ALBEDO_PNG)
    albedo = encoded[..., ::-1].astype(np.float32) / 65535.0 * ALBEDO_SCALE
    whole = np.array([record.get("whole", True) for record in meta["exemplars"]])
    albedo = albedo.reshape(len(openings), *ALBEDO_TEXELS, 3)[whole]
    # Most exemplars are webcam frames, softer than a portrait: their own log-luma detail at
    # a few texels is raised by ALBEDO_SHARPEN (an unsharp mask on log luma, colour kept).
    for image in albedo:
        luma = np.log(np.maximum(image @ np.array([0.299, 0.587, 0.114], np.float32), 1e-3))
        detail = luma - cv2.GaussianBlur(luma, (0, 0), ALBEDO_SHARPEN_SIGMA, borderType=cv2.BORDER_REFLECT)
        # Only as much as a soft exemplar lacks: a sharp portrait's interior (detail std ~0.2)
        # sharpened read above every real interior's texture.
        gain = ALBEDO_SHARPEN * float(np.clip((SHARP_DETAIL - detail.std()) / SHARP_DETAIL, 0.0, 1.0))
        image *= np.exp(gain * detail)[..., None]
    return albedo, openings[whole]


def sample_interior(u: torch.Tensor, from_top: torch.Tensor, gap: torch.Tensor, opening: torch.Tensor) -> torch.Tensor:
    """Real interiors laid into this frame's opening: albedo (B, 3, h, w) to multiply by the light.

    Args:
        u: (B, 1, 1, w) across the opening, -1 right corner .. 1 left corner.
        from_top: (B, 1, h, w) distance below the upper inner lip line, mouth widths.
        gap: (B, 1, 1, w) the opening's height at each column, mouth widths.
        opening: (B,) the frame's largest gap over the mouth width.
    """
    albedos, openings = load_albedo_atlas()
    atlas = torch.as_tensor(albedos, dtype=u.dtype, device=u.device).permute(0, 3, 1, 2)     # (E, 3, r, c)
    known = torch.as_tensor(openings, dtype=u.dtype, device=u.device)
    weight = torch.exp(-0.5 * ((opening[:, None] - known[None]) / OPENING_SIGMA).square())    # (B, E)
    # Only the nearest few, renormalised; the farther get none.
    keep = weight >= weight.topk(min(ALBEDO_BLEND, len(openings)), dim=1).values[:, -1:]
    nearest = (opening[:, None] - known[None]).abs().argmin(1)
    weight = torch.where(keep, weight, torch.zeros_like(weight))
    weight[torch.arange(len(weight)), nearest] += 1e-6
    weight = weight / weight.sum(1, keepdim=True)
    batch = u.shape[0]
    y = from_top.clamp_min(0.0)
    below = (gap - y).clamp_min(0.0)
    out = torch.zeros(batch, 3, *from_top.shape[2:], dtype=u.dtype, device=u.device)
    # The column's share of the frame's gap, as a share of the largest.
    profile = gap / opening.view(-1, 1, 1, 1).clamp_min(1e-3)
    for index in range(atlas.shape[0]):
        if float(weight[:, index].max()) == 0.0:
            continue
        theirs = (known[index] * profile).clamp_min(1e-3)                                    # (B, 1, 1, w)
        top_band, bottom_band = UPPER_BAND * theirs, LOWER_BAND * theirs
        middle = (gap - top_band - bottom_band).clamp_min(1e-3)
        stretched = torch.where(y < top_band, y, torch.where(
            below < bottom_band, theirs - below,
            top_band + (y - top_band) * (theirs - top_band - bottom_band) / middle))
        cropped = theirs - below
        v = torch.where(gap >= theirs, stretched, cropped) / theirs
        grid = torch.stack(torch.broadcast_tensors(u.clamp(-1.0, 1.0), v.clamp(0.0, 1.0) * 2.0 - 1.0), -1)[:, 0]
        sampled = F.grid_sample(atlas[index:index + 1].expand(batch, -1, -1, -1), grid, mode="bilinear",
                                padding_mode="border", align_corners=False)
        out = out + weight[:, index].view(-1, 1, 1, 1) * sampled
    return out
