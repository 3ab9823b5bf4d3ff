"""Mouth opening and eye aspect ratio between tracked frames: small mouth and eye patches cut
on every frame (:class:`FacePatches`), fitted per clip onto Face Mesh's values on the tracked
frames (:func:`calibrate`). Why patches and not optical flow: workers/quality/README.md."""

from __future__ import annotations

import cv2
import numpy as np

from workers.face.topology import (
    LEFT_EYE_CORNERS,
    MOUTH_CORNERS_OUTER,
    RIGHT_EYE_CORNERS,
)
from workers.quality.measure import _pearson

# Mouth patch: a grid in the mouth's own frame, x along the outer corners (61 -> 291), y
# perpendicular (image-down for an upright face), in mouth widths from the corners' midpoint:
# the lip seam and where the inner mouth shows when the lips part, ~27 px per mouth width.
MOUTH_PATCH_BOX = (-0.36, 0.36, -0.16, 0.5)     # x0, x1, y0, y1 in mouth widths
MOUTH_PATCH_SIZE = (20, 18)                     # (w, h) px
# Eye band: both eyes, x from the subject's right outer eye corner (33) at 0 to the left one
# (263) at 1, y perpendicular, in that distance (an eye is ~0.3 of it wide); its left half
# is the subject's right eye.
EYE_BAND_BOX = (-0.1, 1.1, -0.12, 0.12)
EYE_BAND_SIZE = (64, 12)
# Ridge penalty of the per-clip calibration on standardized features; with 8-12 tracked frames
# (a 3-4 s clip at stride 8) it keeps the fit near the features' common direction, with
# hundreds it vanishes (bench/qc_tracking.py).
CALIBRATION_RIDGE = 3.0
MIN_CALIBRATION_FRAMES = 8      # fewer tracked frames with a face: interpolate between them instead
# Around the mouth, nose to chin: where the frames between two tracked ones are registered to
# the tracked one (phase correlation), so the mouth patch follows the head's few pixels of
# travel instead of staying where the tracked frame had the mouth.
MOTION_BOX = (-1.0, 1.0, -1.6, -0.2)              # in mouth widths, as MOUTH_PATCH_BOX: nose and upper lip
MOTION_SIZE = (48, 32)
# Grey levels added before the log of the mouth's darkening (mouth_features): the sensor's
# floor, so noise in a black cavity does not dominate.
DARK_OFFSET = 8.0


def _patch_map(origin: np.ndarray, axis: np.ndarray, box: tuple[float, float, float, float],
               size: tuple[int, int]) -> np.ndarray:
    """2x3 affine taking patch pixel (column, row) to frame pixel (x, y), for cv2.warpAffine
    with WARP_INVERSE_MAP: the patch covers ``box`` = (x0, x1, y0, y1) in units of ``axis``
    (a frame vector; y runs along ``axis`` turned +90 deg, image-down for an upright face)
    around ``origin``, sampled at pixel centres."""
    x0, x1, y0, y1 = box
    down = np.array([-axis[1], axis[0]])
    step_x, step_y = axis * (x1 - x0) / size[0], down * (y1 - y0) / size[1]
    corner = origin + x0 * axis + y0 * down + 0.5 * (step_x + step_y)
    return np.column_stack([step_x, step_y, corner]).astype(np.float64)


class FacePatches:
    """Small grey patches of the mouth and of the eyes on every frame, for :func:`calibrate`.

    Face Mesh runs on every ``stride``-th frame only; each of its faces (:meth:`locate`) fixes
    where the patches of the frames up to the next tracked one are cut (the head moves a few
    pixels in that time; the features are region statistics). Per frame two cv2.warpAffine
    calls from the full-resolution frame (~0.03 ms at 512 px); the patches are kept (~1 KB
    a frame) because the mouth's features compare every frame with the clip's closed
    mouth, known only at the end. Frames after a tracked frame without a face get no patch.
    """

    def __init__(self):
        self._mouth_map: np.ndarray | None = None
        self._motion_map: np.ndarray | None = None
        self._reference: np.ndarray | None = None
        self._window = cv2.createHanningWindow(MOTION_SIZE, cv2.CV_32F)
        self._eye_map: np.ndarray | None = None
        self._mouth: list[np.ndarray | None] = []
        self._eyes: list[np.ndarray | None] = []

    def locate(self, landmarks: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> None:
        """Cut the next frames' patches where this face is.

        Args:
            landmarks: (478, 3) pixels of a tracked frame (NaN: no face, no patches until
                the next face).
            scale: (x, y) frame pixels per landmark pixel (the frames added may be larger
                than the ones tracked).
        """
        xy = np.asarray(landmarks, dtype=np.float64)[:, :2] * np.asarray(scale, dtype=np.float64)
        corners = xy[[MOUTH_CORNERS_OUTER[0], MOUTH_CORNERS_OUTER[1], RIGHT_EYE_CORNERS[0], LEFT_EYE_CORNERS[0]]]
        if not np.all(np.isfinite(corners)) or np.linalg.norm(corners[1] - corners[0]) < 1.0:
            self._mouth_map = self._eye_map = None
            return
        self._mouth_map = _patch_map((corners[0] + corners[1]) / 2, corners[1] - corners[0], MOUTH_PATCH_BOX,
                                     MOUTH_PATCH_SIZE)
        self._motion_map = _patch_map((corners[0] + corners[1]) / 2, corners[1] - corners[0], MOTION_BOX,
                                      MOTION_SIZE)
        self._reference = None          # the located frame's area around the mouth, cut on its add
        self._eye_map = _patch_map(corners[2], corners[3] - corners[2], EYE_BAND_BOX, EYE_BAND_SIZE)

    def add(self, frame: np.ndarray) -> None:
        """Cut the patches of the next (H, W, 3) uint8 RGB frame."""
        if self._mouth_map is None:
            self._mouth.append(None)
            self._eyes.append(None)
            return
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        around = cv2.cvtColor(cv2.warpAffine(frame, self._motion_map, MOTION_SIZE, flags=flags,
                                             borderMode=cv2.BORDER_REPLICATE), cv2.COLOR_RGB2GRAY).astype(np.float32)
        mouth_map = self._mouth_map
        if self._reference is None:
            self._reference = around
        else:
            (dx, dy), _ = cv2.phaseCorrelate(self._reference, around, self._window)
            if abs(dx) < MOTION_SIZE[0] / 4 and abs(dy) < MOTION_SIZE[1] / 4:
                mouth_map = mouth_map.copy()
                mouth_map[:, 2] += dx * self._motion_map[:, 0] + dy * self._motion_map[:, 1]
        for patches, matrix, size in ((self._mouth, mouth_map, MOUTH_PATCH_SIZE),
                                      (self._eyes, self._eye_map, EYE_BAND_SIZE)):
            colour = cv2.warpAffine(frame, matrix, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            patches.append(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY))

    def __len__(self) -> int:
        return len(self._mouth)

    @staticmethod
    def _stack(patches: list, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(patches), size[1], size[0]), np.float32)
        have = np.array([p is not None for p in patches], bool)
        for i in np.flatnonzero(have):
            out[i] = patches[i]
        return out, have

    def mouth_features(self, closed: np.ndarray) -> np.ndarray:
        """(T, 4) per-frame statistics of the mouth patch that grow as the lips part; NaN rows
        for frames without a patch.

        Columns: mean |vertical luma step| (lip lines, teeth edges), luma standard deviation,
        share of pixels brighter than 1.25 x the patch's mean luma (lit teeth), and how much
        darker than the clip's closed mouth (the mean patch of the frames listed in
        ``closed``) the patch is, mean of max(0, log(closed + 8) - log(patch + 8)) (the
        interior's shadow). Grey levels / shares / log luma.

        Why the darkening against the closed mouth: a real interior at a small opening is a
        dim slit with its teeth in the upper lip's shadow, not a lit band. The earlier
        columns (|difference| from the closed mouth, share darker than 0.6 x the patch's mean)
        followed painted interiors (lit teeth) but not real ones: on Grace Hopper's test
        render with real interiors at every opening the fit followed Face Mesh between
        tracked frames with r 0.67 (painted 0.82); with these columns 0.81 (painted 0.90).

        Args:
            closed: frame indices whose mouths are (nearly) closed, e.g. the tracked frames
                with the lowest Face Mesh opening.
        """
        patches, have = self._stack(self._mouth, MOUTH_PATCH_SIZE)
        usable = [i for i in np.asarray(closed, dtype=int) if 0 <= i < len(have) and have[i]]
        template = patches[usable].mean(0) if usable else np.median(patches[have], axis=0) if have.any() else patches[0]
        mean = patches.mean((1, 2), keepdims=True)
        darker = np.log(template + DARK_OFFSET) - np.log(patches + DARK_OFFSET)
        features = np.stack([
            np.abs(np.diff(patches, axis=1)).mean((1, 2)),
            patches.std((1, 2)),
            (patches > 1.25 * mean).mean((1, 2)),
            darker.clip(0.0, None).mean((1, 2)),
        ], axis=1).astype(np.float64)
        features[~have] = np.nan
        return features

    def eye_features(self) -> np.ndarray:
        """(T, 8) per-frame statistics of each eye's half of the eye band, NaN rows for frames
        without a patch. Per eye: mean luma (the lid covering the iris brightens it), share of
        pixels darker than 0.7 x the clip's mean band luma (iris, pupil, lashes), mean
        |vertical luma step|, luma standard deviation."""
        patches, have = self._stack(self._eyes, EYE_BAND_SIZE)
        dark = 0.7 * float(patches[have].mean()) if have.any() else 0.0
        half = EYE_BAND_SIZE[0] // 2
        columns = []
        for eye in (patches[:, :, :half], patches[:, :, half:]):
            columns += [eye.mean((1, 2)), (eye < dark).mean((1, 2)), np.abs(np.diff(eye, axis=1)).mean((1, 2)),
                        eye.std((1, 2))]
        features = np.stack(columns, axis=1).astype(np.float64)
        features[~have] = np.nan
        return features


def _pool_adjacent_violators(values: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest (least squares) to ``values``."""
    blocks: list[list[float]] = []                # [mean, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count),
                          blocks[-1][1] + count]
    return np.concatenate([np.full(int(count), mean) for mean, count in blocks])


def _monotone_map(score: np.ndarray, anchor_score: np.ndarray, anchor_value: np.ndarray,
                  slope: float) -> np.ndarray:
    """(T,) every frame's value from its (T,) fit score: the lower of the straight fit (slope
    ``slope`` through the anchors' means) and the anchors' values made non-decreasing in the
    score (isotonic), interpolated between anchors and continued with ``slope`` beyond them.

    Why not the straight line alone: a mouth's patch statistics hardly change among closed
    and nearly closed frames (the lips meet wherever they are), so the opening is a convex
    function of the score; a line through all anchors sits above the closed ones and reads
    silent, closed mouths as parted (decoder-5, Eileen Collins / arctic_a0007: 0.06-0.08
    against Face Mesh's 0.03-0.05, silence closed 0.22 against 1.00)."""
    straight = anchor_value.mean() + slope * (score - anchor_score.mean())
    order = np.argsort(anchor_score, kind="stable")
    xs, ys = anchor_score[order], _pool_adjacent_violators(anchor_value[order])
    if slope <= 0 or xs[-1] - xs[0] <= 0:
        return straight
    out = np.interp(score, xs, ys)
    out = np.where(score < xs[0], ys[0] + slope * (score - xs[0]), out)
    out = np.where(score > xs[-1], ys[-1] + slope * (score - xs[-1]), out)
    # the lower of the two: the isotonic curve alone follows the anchors' noise between
    # open frames (skipped-frame r on Grace Hopper / arctic_a0007 0.862 -> 0.844), the
    # lower envelope keeps the line there and bends only where the line overshoots
    return np.minimum(out, straight)


def calibrate(features: np.ndarray, anchors: np.ndarray, values: np.ndarray,
              ridge: float = CALIBRATION_RIDGE) -> tuple[np.ndarray, float]:
    """A Face Mesh quantity on every frame, from per-frame patch features fitted on the
    frames where Face Mesh measured it.

    Ridge regression (penalty ``ridge`` on features standardized over the clip, free
    intercept) of ``values`` on the features of the ``anchors`` frames, applied to every
    frame; the anchors keep their own values. This is per clip on purpose: how a mouth looks
    when it opens depends on the face, the renderer and the light, and a clip has tracked
    frames at every degree of opening. With fewer than MIN_CALIBRATION_FRAMES usable anchors
    the series is the anchors' linear interpolation instead.

    Args:
        features: (T, F) per-frame features, NaN rows where a frame has none.
        anchors: (A,) increasing frame indices with a Face Mesh value.
        values: (A,) the quantity there, NaN where Face Mesh found no face.

    Returns:
        ((T,) float64 series, NaN where a frame has no features (or nothing is known);
        leave-one-out Pearson r of the fit against ``values`` on the anchors, i.e. its
        accuracy on frames it was not fitted on; NaN when not fitted).
    """
    features = np.asarray(features, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=int)
    values = np.asarray(values, dtype=np.float64)
    frames = len(features)
    has = np.all(np.isfinite(features), axis=1) if features.size else np.zeros(frames, bool)
    out = np.full(frames, np.nan)
    known = np.isfinite(values)
    if not known.any():
        return out, float("nan")
    series = np.interp(np.arange(frames), anchors[known], values[known])
    fit_r = float("nan")
    usable = known & has[anchors]
    if usable.sum() >= MIN_CALIBRATION_FRAMES:
        mean, spread = features[has].mean(0), features[has].std(0)
        spread[spread == 0] = 1.0
        z = np.c_[(features - mean) / spread, np.ones(frames)]
        a, y = z[anchors[usable]], values[usable]
        penalty = ridge * np.eye(z.shape[1])
        penalty[-1, -1] = 0.0                     # the intercept is not shrunk
        # the inverse from eigh: this numpy's OpenBLAS inv / solve (LU) wake a BLAS thread that
        # then spins for ~120 ms of CPU, several times what the whole QC finish costs
        eigenvalues, vectors = np.linalg.eigh(a.T @ a + penalty)
        inverse = (vectors / eigenvalues) @ vectors.T
        coef = inverse @ (a.T @ y)
        leverage = np.einsum("ij,jk,ik->i", a, inverse, a)
        left_out = y - (y - a @ coef) / np.maximum(1.0 - leverage, 1e-6)
        fit_r = _pearson(left_out, y)
        # ridge pulls the fitted values toward the mean (by a third with 10 anchors), which
        # would lift closed mouths over CLOSED_OPENING: a least-squares line from its score
        # to the anchors' values restores their spread, the direction staying ridge's
        score = z @ coef
        fitted = score[anchors[usable]] - score[anchors[usable]].mean()
        slope = float(fitted @ (y - y.mean())) / max(float(fitted @ fitted), 1e-300)
        series = np.where(has, _monotone_map(score, score[anchors[usable]], y, slope), series)
    out[has] = series[has]
    out[anchors[known]] = values[known]
    return out, fit_r


__all__ = ["FacePatches", "calibrate", "CALIBRATION_RIDGE", "MIN_CALIBRATION_FRAMES"]
