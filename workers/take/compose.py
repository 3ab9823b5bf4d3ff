"""Dubbing one frame: its face re-posed with new mouth and jaw, pasted back into the frame.

Each frame is its own source: its face is aligned and modelled from its own landmarks
(``workers.alignment.face.align_face``), so its own latent decodes to exactly its own
landmarks, and the decoder (``workers.decoder.renderer.FaceRenderer``) warps it only by the
change of the mouth channels. That change is what the new speech asks for minus what the
take's face did at this frame (both read in the take's one face model), so pose, eyes, brows
and every other channel stay the frame's own. The decoded crop is pasted back through a
soft mask around the lower face (the source's and the target's jaw, lips and cheeks): every
pixel outside it is the frame's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from core.take import MouthBank
from workers.alignment.face import align_face
from workers.decoder.renderer import WARP_MAX_BLINK, DecoderConfig, FaceRenderer
from workers.face import topology as topo
from workers.face.latents import dyn_index
from workers.face.model import FaceModel
from workers.motion.articulation import MOUTH_CHANNELS
from workers.take.mouth_bank import fill_interior

MOUTH_INDEX = np.array([dyn_index(name) for name in MOUTH_CHANNELS])
JAW_INDEX = dyn_index("jaw_open")
# The mouth channels' change is kept within what the rig holds (coefficients ~[-1, 1.5]).
MOUTH_RANGE = (-1.0, 1.5)
# Lower-face landmarks the paste mask covers (face outline below the cheekbones, lips, chin).
_LOWER_FACE = tuple(sorted(set(topo.FACE_OVAL[8:29] + topo.LIPS_ALL + topo.CHIN + topo.CHEEKS + (2, 98, 327))))
# Mask growth and feather, in units of the crop side.
MASK_GROW = 0.035
MASK_FEATHER = 0.025
# The face outline grown by a tenth about its centre: the region a dubbed frame's watermark is
# whole in (the paste mask lies inside it, with the opened jaw's reach below the chin).
FACE_REGION_GROW = 1.1


@dataclass(frozen=True)
class FrameTargets:
    """What one frame's mouth should do.

    Attributes:
        landmarks: (478, 3) the frame's tracked landmarks, frame pixels.
        own: (MOTION_DIM,) the frame's own latent in the take's face model.
        target: (MOTION_DIM,) the dubbed latent (the take's own with new mouth channels).
    """

    landmarks: np.ndarray
    own: np.ndarray
    target: np.ndarray


def face_region(landmarks: np.ndarray) -> np.ndarray:
    """(len(FACE_OVAL), 2) float32 polygon, frame pixels: the face outline of (478, 2+)
    ``landmarks`` grown by ``FACE_REGION_GROW`` about its centre."""
    oval = np.asarray(landmarks, np.float32)[list(topo.FACE_OVAL), :2]
    centre = oval.mean(0)
    return centre + FACE_REGION_GROW * (oval - centre)


def mouth_change(own: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(len(MOUTH_CHANNELS),) change of the mouth channels from ``own`` to ``target``."""
    return target[MOUTH_INDEX] - own[MOUTH_INDEX]


def dub_frame(frame: np.ndarray, targets: FrameTargets, crop_size: int,
              config: DecoderConfig = DecoderConfig(), bank: MouthBank | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """One frame (H, W, 3) uint8 RGB with its mouth and jaw dubbed -> (H, W, 3) uint8 RGB
    (``out``, which may be ``frame`` itself to dub it in place, or a new array).

    A mouth the new speech opens beyond the frame's own gets its interior from the take's own
    open mouths (``bank``, :func:`workers.take.mouth_bank.fill_interior`) where the bank has any;
    otherwise (and without a bank) the decoder's synthesised interior stays."""
    points = targets.landmarks.astype(np.float64)
    face_px = float((points[:, :2].max(0) - points[:, :2].min(0)).max())
    face = align_face(frame, points, crop_size, face_px)
    latent = face.model.source_latent.astype(np.float32).copy()
    moved = latent[MOUTH_INDEX] + mouth_change(targets.own, targets.target)
    latent[MOUTH_INDEX] = np.clip(moved, *MOUTH_RANGE)
    latent[JAW_INDEX] = max(0.0, float(latent[JAW_INDEX]))
    motion = torch.as_tensor(latent[None])
    with torch.inference_mode():
        target_points = face.model.landmarks(motion)[0, :, :2].numpy()
        source_points = face.model.landmarks(torch.as_tensor(face.model.source_latent[None]))[0, :, :2].numpy()
        mask = lower_face_mask(crop_size, source_points, target_points)
        # The paste keeps only what the mask covers: where it misses both eyes, the renderer's
        # eye redraw (iris sprite, inpainted eyeball, lids) would be thrown away.
        eyes = eyes_reach_mask(mask, face.model, motion, target_points)
    renderer = FaceRenderer(face, config, redraw_eyes=eyes)
    crop = renderer.render(latent[None])[0]
    # The frame's own landmarks (not its model's decode, which closes a barely parted mouth).
    crop = fill_interior(crop, target_points, face.landmarks, bank)
    return paste(frame, crop, mask, face.crop_from_photo, out)


def eyes_reach_mask(mask: np.ndarray, model: FaceModel, motion: torch.Tensor,
                    target: np.ndarray | None = None) -> bool:
    """Whether the (S, S) paste ``mask`` is non-zero anywhere the renderer may repaint an eye
    for ``motion`` (1, MOTION_DIM). ``target``: ``model.landmarks(motion)[0, :, :2]`` where the
    caller has it already (not decoded twice).

    ``FaceRenderer._paint_eyes`` changes pixels only between an eye's lids (the target's, and
    the upper lid as warped with the blink held to WARP_MAX_BLINK; its lid skin lies above
    that), within 0.75 px (the anti-aliasing) of the lids' columns and of the lowest lid line.
    So each eye's columns, grown by 2 px, are looked at down to 2 px below the lowest of its
    lid lines: a mask that starts lower than that in every such column misses every repainted
    pixel (the cheeks of the lower-face mask come close, so a box around the eyes would not do).
    """
    warped = motion.clone()
    blinks = [dyn_index("blink_left"), dyn_index("blink_right")]
    warped[:, blinks] = warped[:, blinks].clamp(max=WARP_MAX_BLINK)
    if target is None:
        target = model.landmarks(motion)[0, :, :2].numpy()
    warp = model.landmarks(warped)[0, :, :2].numpy()
    height, width = mask.shape
    rows = np.arange(height)[:, None]
    for upper, lower in ((topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER), (topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER)):
        curves = [target[list(upper)], target[list(lower)], warp[list(upper)]]
        xs = np.concatenate([curve[:, 0] for curve in curves])
        x0, x1 = (int(np.clip(v, 0, width)) for v in (np.floor(xs.min()) - 2, np.ceil(xs.max()) + 3))
        if x1 <= x0:
            continue
        centres = np.arange(x0, x1) + 0.5
        lowest = np.max([np.interp(centres, *curve[np.argsort(curve[:, 0])].T) for curve in curves], axis=0)
        if (mask[:, x0:x1] > 0)[rows <= np.floor(lowest + 2)[None, :]].any():
            return True
    return False


def lower_face_mask(size: int, *point_sets: np.ndarray) -> np.ndarray:
    """(size, size) float32 soft mask in [0, 1] over the lower face of each (478, 2) point set
    (crop pixels): their hull, grown by MASK_GROW and feathered by MASK_FEATHER of the side."""
    hull_points = np.concatenate([points[list(_LOWER_FACE), :2] for points in point_sets])
    hull = cv2.convexHull(np.round(hull_points * 4).astype(np.int32))
    grow = max(1, int(round(MASK_GROW * size)))
    sigma = MASK_FEATHER * size
    # The grown, feathered hull reaches grow + 4 sigma (OpenCV's float kernel) past the hull:
    # the filters run on that box only, and the mask is zero beyond it.
    reach = grow + int(np.ceil(4 * sigma)) + 2
    (x0, y0), (x1, y1) = hull.reshape(-1, 2).min(0) // 4 - reach, hull.reshape(-1, 2).max(0) // 4 + reach + 1
    x0, y0, x1, y1 = (int(np.clip(v, 0, size)) for v in (x0, y0, x1, y1))
    mask = np.zeros((size, size), np.float32)
    if x1 <= x0 or y1 <= y0:
        return mask
    box = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(box, hull - np.array([4 * x0, 4 * y0], np.int32), 255, shift=2)
    box = dilate_convex(box, grow)
    soft = cv2.GaussianBlur(box.astype(np.float32) / 255.0, (0, 0), sigma)
    # Inside the hull itself the mask is whole; the feather lies outside it.
    mask[y0:y1, x0:x1] = np.maximum(soft * 2.0 - 1.0, 0.0).clip(0.0, 1.0)
    return mask


def dilate_convex(image: np.ndarray, radius: int) -> np.ndarray:
    """``cv2.dilate`` of a (h, w) uint8 0/255 image by the (2r+1)-pixel ellipse structuring element,
    exactly, for an image whose every row is one run (a filled convex polygon): each output row
    is the union of its neighbour rows' runs, each grown by the element's half-width at that
    offset. ~10x cheaper than OpenCV's general (per-pixel) dilation with a disc at r ~ 18."""
    height, width = image.shape
    filled = image > 0
    rows = np.flatnonzero(filled.any(1))
    if not len(rows):
        return image.copy()
    first = filled[rows].argmax(1)
    last = width - 1 - filled[rows, ::-1].argmax(1)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    if (filled[rows].sum(1) != last - first + 1).any() or (image[filled] != 255).any():
        return cv2.dilate(image, element)
    offsets = np.arange(-radius, radius + 1)
    half = radius - element.argmax(1)                  # half-width of the element's row at each offset
    # output row y takes input row y + offset's run grown by half[offset]
    out_rows = rows[:, None] - offsets[None, :]
    starts = np.clip(first[:, None] - half[None, :], 0, width)
    stops = np.clip(last[:, None] + half[None, :] + 1, 0, width)
    keep = (out_rows >= 0) & (out_rows < height) & (stops > starts)
    cells = height * (width + 1)
    change = (np.bincount(out_rows[keep] * (width + 1) + starts[keep], minlength=cells)
              - np.bincount(out_rows[keep] * (width + 1) + stops[keep], minlength=cells))
    covered = np.cumsum(change.reshape(height, width + 1)[:, :width], axis=1) > 0
    return covered.view(np.uint8) * np.uint8(255)


def paste(frame: np.ndarray, crop: np.ndarray, mask: np.ndarray, crop_from_frame: np.ndarray,
          out: np.ndarray | None = None) -> np.ndarray:
    """The frame with ``crop`` (S, S, 3) blended in through ``mask`` (S, S), both mapped back by
    the inverse of the (2, 3) affine frame -> crop; pixels the mask misses are the frame's own.
    Written into ``out`` (may be ``frame``: only the pasted box changes) or a copy of the frame."""
    height, width = frame.shape[:2]
    if out is None:
        out = frame.copy()
    elif out is not frame:
        out[...] = frame
    covered = mask > 0       # its bounding box from the rows and columns it covers (not every pixel's index)
    ys, xs = np.flatnonzero(covered.any(1)), np.flatnonzero(covered.any(0))
    if not len(xs):
        return out
    corners = np.array([[xs[0], ys[0]], [xs[-1] + 1, ys[0]], [xs[0], ys[-1] + 1],
                        [xs[-1] + 1, ys[-1] + 1]], np.float64)
    inverse = cv2.invertAffineTransform(crop_from_frame)
    box = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(box.min(0)).clip(0, [width, height]).astype(int)
    x1, y1 = np.ceil(box.max(0)).clip(0, [width, height]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return out
    # crop pixel of box pixel (u, v): the affine applied at (u + x0, v + y0)
    local = crop_from_frame.astype(np.float64).copy()
    local[:, 2] += local[:, :2] @ np.array([x0, y0], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(crop, local, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(mask, local, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0.0)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region + weight * (warped.astype(np.float32) - region)
    out[y0:y1, x0:x1] = np.where(weight > 0, np.round(blended), region).astype(np.uint8)
    return out

