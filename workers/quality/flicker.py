"""Flicker: frame-to-frame luma change outside the mouth, measured one frame at a time."""

from __future__ import annotations

import cv2
import numpy as np

from workers.face.topology import LIPS_ALL


def _mouth_box(landmarks: np.ndarray, shape: tuple[int, int], margin: float = 0.35) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel box around every lip landmark of the clip, widened by ``margin``
    of its larger side and clipped to ``shape`` = (h, w); None without any tracked face."""
    lips = np.asarray(landmarks, dtype=np.float64)[:, list(LIPS_ALL), :2]
    ok = np.all(np.isfinite(lips.reshape(len(lips), -1)), axis=1)
    if not ok.any():
        return None
    lo, hi = lips[ok].reshape(-1, 2).min(0), lips[ok].reshape(-1, 2).max(0)
    pad = margin * (hi - lo).max()
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    h, w = shape
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


FLICKER_CELL = 8     # px; per-frame luma sums are kept on this grid (see FlickerMeter)


class FlickerMeter:
    """Frame-to-frame luma change, accumulated one frame at a time (see :func:`flicker`).

    The mouth box to leave out is only known once the whole clip is tracked, so nothing
    that depends on it is computed on the way: per pixel, the sum over frame pairs of
    |Y[t] - Y[t-1]| (one (h, w) image, whatever the clip length), and per frame the luma
    integral image sampled on a FLICKER_CELL grid ((h/8 + 1) x (w/8 + 1) numbers, ~9 KB per
    frame at 256 px), from which the mean luma outside any cell-aligned box follows. The
    box is therefore widened outward to that grid (at most 7 px at 256 px on a box already
    padded by 35 %).

    A pair is two frames added one after the other with no :meth:`skip` between them, so a
    caller can measure a sample of the pairs (the batch QC: one pair per tracked frame)
    instead of all of them; both figures are means over the pairs measured.

    Luma is OpenCV's RGB->GRAY (0.299 R + 0.587 G + 0.114 B, rounded to uint8); frames
    must all have one size.
    """

    def __init__(self):
        self.pairs = 0
        self._previous: np.ndarray | None = None
        self._change: np.ndarray | None = None       # (h, w) int64 sum of |dY| over pairs
        self._cells: list[np.ndarray] = []          # per frame added (h/8+1, w/8+1) luma integrals
        self._pair_ends: list[int] = []             # indices into _cells of each pair's second frame
        self._rows = self._cols = None

    def add(self, frame: np.ndarray, size: tuple[int, int] | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame, measured at ``size`` = (w, h) (None: its own).

        Luma is taken before scaling (area-averaged, like :func:`fit_frame`): scaling one
        channel instead of three costs a fifth, and the two orders differ only by rounding
        (so all frames of one measurement should come the same way).
        """
        luma = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if size is not None and (luma.shape[1], luma.shape[0]) != tuple(size):
            luma = cv2.resize(luma, tuple(size), interpolation=cv2.INTER_AREA)
        if self._change is None:
            h, w = luma.shape
            self._change = np.zeros((h, w), np.int64)
            self._rows = np.unique(np.r_[np.arange(0, h, FLICKER_CELL), h])
            self._cols = np.unique(np.r_[np.arange(0, w, FLICKER_CELL), w])
        self._cells.append(cv2.integral(luma, sdepth=cv2.CV_64F)[np.ix_(self._rows, self._cols)])
        if self._previous is not None:
            self._change += cv2.absdiff(luma, self._previous)
            self._pair_ends.append(len(self._cells) - 1)
            self.pairs += 1
        self._previous = luma

    def skip(self) -> None:
        """A frame not measured: the next frame added starts a new pair."""
        self._previous = None

    def result(self, landmarks: np.ndarray | None = None) -> tuple[float, float]:
        """(flicker_grey, global_flicker_grey) outside the clip's mouth box; NaN without a pair."""
        if self.pairs == 0:
            return float("nan"), float("nan")
        h, w = self._change.shape
        box = None if landmarks is None else _mouth_box(landmarks, (h, w))
        cells = np.stack(self._cells)                      # (frames, rows, cols) integrals
        totals = cells[:, -1, -1]
        outside_change, outside_area = float(self._change.sum()), h * w
        box_sums = np.zeros(len(cells))
        if box is not None:
            x0, y0, x1, y1 = box
            # widen to the cell grid: the integrals exist only there
            r0, r1 = np.searchsorted(self._rows, y0, "right") - 1, np.searchsorted(self._rows, y1, "left")
            c0, c1 = np.searchsorted(self._cols, x0, "right") - 1, np.searchsorted(self._cols, x1, "left")
            r1, c1 = min(r1, len(self._rows) - 1), min(c1, len(self._cols) - 1)
            y0, y1, x0, x1 = self._rows[r0], self._rows[r1], self._cols[c0], self._cols[c1]
            if y1 > y0 and x1 > x0:
                outside_change -= float(self._change[y0:y1, x0:x1].sum())
                outside_area -= (y1 - y0) * (x1 - x0)
                box_sums = cells[:, r1, c1] - cells[:, r0, c1] - cells[:, r1, c0] + cells[:, r0, c0]
        if outside_area <= 0:
            return float("nan"), float("nan")
        means = (totals - box_sums) / outside_area
        ends = np.asarray(self._pair_ends)
        return outside_change / (self.pairs * outside_area), float(np.mean(np.abs(means[ends] - means[ends - 1])))


def flicker(frames: np.ndarray, landmarks: np.ndarray | None = None) -> tuple[float, float]:
    """(flicker_grey, global_flicker_grey): frame-to-frame luminance change outside the mouth.

    Luma Y = 0.299 R + 0.587 G + 0.114 B (0-255) of every frame; the mouth (the box around all
    lip landmarks over the clip, widened by 35 % of its size, then out to an 8 px grid) is
    excluded because speech is supposed to change it. flicker_grey = mean over frame pairs of
    the mean |Y[t] - Y[t-1]| (includes motion of the head and hair; a static picture reads
    ~0); global_flicker_grey = mean |mean Y[t] - mean Y[t-1]| (brightness pumping of the
    whole frame). Grey levels. ``frames``: (T, h, w, 3) uint8 RGB; ``landmarks``: (T, 478, 3)
    pixels of those frames (NaN rows allowed) or None (no mouth box).
    """
    meter = FlickerMeter()
    for frame in frames:
        meter.add(frame)
    return meter.result(landmarks)


__all__ = ["FLICKER_CELL", "FlickerMeter", "flicker"]
