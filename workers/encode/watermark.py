"""Invisible, re-encoding-robust video watermark: a tiled band-limited spread-spectrum pattern.

Scheme (``talkfarm-wm`` format version 1):

* **Payload.** A 64-bit codeword = 4-bit format version + 44-bit render id prefix (11 hex
  digits) + CRC-16/CCITT of those 48 bits, whitened by XOR with a fixed pseudo-random word.
* **Pattern.** One ``TILE`` x ``TILE`` pixel tile (68 px) carries a 16 x 16 grid of +-1 values:
  64 grid points are a fixed *sync* sequence, 192 carry the codeword (each bit three times,
  at scattered points). The grid is Fourier-interpolated to the tile (a smooth, band-limited
  pattern) and its lowest frequencies (< 2.5 cycles per tile, the most visible, the most masked
  by image content) are removed. The tile repeats over the whole frame and is the same in
  every frame, so h264 P-frames carry it almost for free and any run of frames can be read.
* **Embedding** adds the pattern to the luma (equal delta on R, G and B) at an RMS of
  ``STRENGTH`` grey levels: one batched int16 add + clamp per chunk (torch, on the frames'
  device). Its cost and PSNR, measured by ``bench/watermark.py``, are in BENCHMARKS.md, "Watermark".
* **Reading** is blind and geometry-tolerant. The high-passed luma's autocorrelation has peaks
  at multiples of the tile period, which gives the scale (so 75 % scaling is undone); the
  frames are resampled to the native tile size and *folded* (all whole tiles of all frames
  averaged into one tile), so cropping, which only shifts the periodic pattern, costs nothing
  but a cyclic offset; the offset is found by FFT cross-correlation with the sync sequence
  (sub-pixel). The codeword's 64 soft bits are the tile's projection onto its grid, summed
  over the three repeats (soft-decision repetition decoding), then the CRC is checked.
  Reading votes over every frame, so trimming the start changes nothing.

A video counts as watermarked only when the CRC matches *and* the sync peak and the bit
signal-to-noise ratio clear thresholds; the false-positive rate on unmarked video is measured
in tests and ``bench/watermark.py``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

from core.errors import BadInputError
from core.video import probe_video, read_frames
from workers.encode.regions import BACKGROUND_WEIGHT, RegionWeights

FORMAT_VERSION = 1
ID_BITS = 44                      # render id prefix: 11 hex digits
CODE_BITS = 64                    # 4 version + 44 id + 16 CRC
TILE = 68                         # tile period in pixels (deliberately not a multiple of 8/16: h264 blocks)
BAND = (2.5, 9)                   # pattern frequencies, cycles per tile (radius)
SYNC_COUNT = 40                   # FFT bins given to the sync sequence; the rest carry the codeword
STRENGTH = 2.6                    # RMS of the luma delta, grey levels
SCALES = (0.55, 1.2)              # range of scale factors searched when reading
MIN_SYNC_Z = 6.0                  # sync peak, in standard deviations of the correlation surface
MIN_BIT_SNR = 2.0                 # mean soft bit / its spread
_SEED = 0x7A1CF


def _band_bins() -> list[tuple[int, int]]:
    """Half-plane FFT bins (cycles per tile) of the pattern's band, one per conjugate pair."""
    bins = []
    for v in range(0, BAND[1] + 1):
        for u in range(-BAND[1], BAND[1] + 1):
            if (v == 0 and u <= 0) or not BAND[0] <= math.hypot(u, v) <= BAND[1] + 0.5:
                continue
            bins.append((u, v))
    return bins


_rng = np.random.default_rng(_SEED)
_BINS = [_band_bins()[i] for i in _rng.permutation(len(_band_bins()))]
SYNC_BINS = _BINS[:SYNC_COUNT]
SYNC_PHASES = np.exp(2j * np.pi * _rng.random(SYNC_COUNT))
_DATA_SLOTS = [(u, v, part) for (u, v) in _BINS[SYNC_COUNT:] for part in (0, 1)]   # 0: real, 1: imaginary
REPEATS = len(_DATA_SLOTS) // CODE_BITS
DATA_SLOTS = np.array(_DATA_SLOTS[: CODE_BITS * REPEATS]).reshape(REPEATS, CODE_BITS, 3)
WHITEN = _rng.integers(0, 2, CODE_BITS).astype(np.uint8)


# ---------------------------------------------------------------- codeword

def crc16(bits: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of a bit array, as 16 bits MSB first."""
    register = 0xFFFF
    for bit in bits:
        top = ((register >> 15) & 1) ^ int(bit)
        register = (register << 1) & 0xFFFF
        if top:
            register ^= 0x1021
    return np.array([(register >> (15 - i)) & 1 for i in range(16)], np.uint8)


def _int_bits(value: int, count: int) -> np.ndarray:
    return np.array([(value >> (count - 1 - i)) & 1 for i in range(count)], np.uint8)


def _bits_int(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2)


@dataclass(frozen=True)
class Payload:
    """What the watermark says: format version and the first 11 hex digits of the render id."""

    version: int
    render_id_prefix: str

    def __str__(self) -> str:
        return f"talkfarm-wm v{self.version} render {self.render_id_prefix}"

    def matches(self, render_id: str | None) -> bool:
        return bool(render_id) and render_id.lower().startswith(self.render_id_prefix)


def payload_for(render_id: str, version: int = FORMAT_VERSION) -> Payload:
    prefix = render_id.lower()[: ID_BITS // 4]
    int(prefix, 16)  # validates hex
    if len(prefix) != ID_BITS // 4:
        raise ValueError(f"render id needs at least {ID_BITS // 4} hex digits, got {render_id!r}")
    return Payload(version, prefix)


def encode_payload(payload: Payload) -> np.ndarray:
    """The 64 whitened codeword bits of a payload."""
    data = np.concatenate([_int_bits(payload.version, 4), _int_bits(int(payload.render_id_prefix, 16), ID_BITS)])
    return np.concatenate([data, crc16(data)]) ^ WHITEN


def decode_bits(bits: np.ndarray) -> Payload | None:
    """The payload of 64 hard codeword bits, or None when the CRC does not match."""
    plain = np.asarray(bits, np.uint8) ^ WHITEN
    data, check = plain[:48], plain[48:]
    if not np.array_equal(crc16(data), check):
        return None
    return Payload(_bits_int(data[:4]), f"{_bits_int(data[4:]):011x}")


# ---------------------------------------------------------------- pattern

def _spectrum(values: dict[tuple[int, int], complex]) -> np.ndarray:
    """A Hermitian (TILE, TILE) spectrum with the given half-plane bins."""
    spectrum = np.zeros((TILE, TILE), complex)
    for (u, v), value in values.items():
        spectrum[v % TILE, u % TILE] = value
        spectrum[-v % TILE, -u % TILE] = np.conj(value)
    return spectrum


@lru_cache(maxsize=1)
def _sync_spectrum() -> np.ndarray:
    return _spectrum(dict(zip(SYNC_BINS, SYNC_PHASES)))


@lru_cache(maxsize=1)
def _band_mask() -> np.ndarray:
    return _spectrum({bin_: 1.0 for bin_ in _BINS}) != 0


def _pattern_spectrum(codeword: np.ndarray) -> np.ndarray:
    values = dict(zip(SYNC_BINS, SYNC_PHASES))
    signs = 2.0 * codeword.astype(float) - 1.0
    for repeat in DATA_SLOTS:
        for bit, (u, v, part) in enumerate(repeat):
            values[(u, v)] = values.get((u, v), 0j) + signs[bit] * (1j if part else 1.0)
    return _spectrum(values)


@lru_cache(maxsize=64)
def _tile(payload: Payload) -> np.ndarray:
    tile = np.real(np.fft.ifft2(_pattern_spectrum(encode_payload(payload))))
    return (tile * STRENGTH / tile.std()).astype(np.float32)


@lru_cache(maxsize=16)
def _frame_delta_float(payload: Payload, height: int, width: int) -> np.ndarray:
    reps = (-(-height // TILE), -(-width // TILE))
    return np.tile(_tile(payload), reps)[:height, :width]


@lru_cache(maxsize=16)
def _frame_delta(payload: Payload, height: int, width: int) -> np.ndarray:
    return np.rint(_frame_delta_float(payload, height, width)).astype(np.int16)


@lru_cache(maxsize=16)
def _frame_delta_parts(payload: Payload, height: int, width: int,
                       weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The delta at ``weight`` strength as two (H, W, 3) uint8 planes, positive and negative
    part, for saturating adds."""
    delta = _frame_delta(payload, height, width) if weight == 1.0 else np.rint(
        _frame_delta_float(payload, height, width) * np.float32(weight)).astype(np.int16)
    positive = np.repeat(np.clip(delta, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    negative = np.repeat(np.clip(-delta, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return positive, negative


# ---------------------------------------------------------------- embedding

def embed(frames: np.ndarray | torch.Tensor, payload: Payload,
          weights: RegionWeights | None = None, out: np.ndarray | None = None) -> np.ndarray | torch.Tensor:
    """Watermark (N, H, W, 3) uint8 RGB frames (numpy or a torch tensor on any device).

    ``weights``: optional strength per pixel in [0, 1] (:func:`workers.encode.regions.region_weights`); None marks
    every pixel at full strength. Returns new frames of the same type, or numpy frames marked into
    ``out`` (the same shape; may be ``frames`` itself: marked in place, the same pixels as new ones,
    without a new chunk-sized array to fault in, ~190 MB a 960p chunk).
    """
    height, width = frames.shape[1:3]
    if isinstance(frames, torch.Tensor):   # batched int16 add on the frames' device
        if weights is None:
            delta = torch.from_numpy(_frame_delta(payload, height, width))[None]
        else:
            delta = torch.from_numpy(np.rint(_frame_delta_float(payload, height, width)[None]
                                              * weights.dense()).astype(np.int16))
        marked = frames.to(torch.int16) + delta.to(frames.device)[..., None]
        return marked.clamp_(0, 255).to(torch.uint8)
    # CPU numpy: two saturating uint8 passes per frame (SIMD in OpenCV), no int16 temporaries;
    # a dub's re-rendered box then gets its own strength.
    positive, negative = _frame_delta_parts(payload, height, width, 1.0 if weights is None else BACKGROUND_WEIGHT)
    marked = np.empty(frames.shape, np.uint8) if out is None else out
    if marked.shape != frames.shape or marked.dtype != np.uint8:
        raise ValueError(f"out is {marked.shape} {marked.dtype}, the frames {frames.shape} uint8")
    for index, frame in enumerate(frames):
        box = None if weights is None else weights.boxes[index]
        if box is not None:     # the frame's own pixels there, before a pass in place marks them
            x0, y0, x1, y1 = box
            own = frame[y0:y1, x0:x1].astype(np.int16)
        cv2.add(frame, positive, dst=marked[index])
        cv2.subtract(marked[index], negative, dst=marked[index])
        if box is not None:
            delta = np.rint(_frame_delta_float(payload, height, width)[y0:y1, x0:x1] * weights.inside[index])
            marked[index, y0:y1, x0:x1] = np.clip(own + delta.astype(np.int16)[..., None], 0, 255)
    return marked


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class Reading:
    """What :func:`read` found.

    Attributes:
        payload: the decoded payload, or None (unmarked, or the watermark was destroyed).
        confidence: 0-1; probability-like score that every codeword bit is right (0 if none).
        sync_z: height of the sync correlation peak in standard deviations.
        bit_snr: mean soft bit over its spread (clean: > 10; noise: ~1).
        scale: tile period found / native tile period (0.75 after scaling to 75 %).
        frames: frames read.
        soft_bits: the 64 soft codeword bits (for bit accuracy measurements).
    """

    payload: Payload | None
    confidence: float
    sync_z: float
    bit_snr: float
    scale: float
    frames: int
    soft_bits: np.ndarray

    @property
    def found(self) -> bool:
        return self.payload is not None


HIGHPASS_SIGMA = 2.0               # reader's high-pass: luma minus its Gaussian blur
# The high-passed residual is divided by its local RMS (Gaussian window of this sigma, pixels;
# floor LOCAL_FLOOR grey levels squared), then clipped to RESIDUAL_CLIP. The host image is what
# limits the reading, and its texture is far from uniform over the frame: whitening weights the
# flat areas, where the pattern is most of the residual, over edges and texture. Measured on a
# dub of the shared 400x300 webcam take (the weakest case: the pattern at 0.6 outside the
# face): bit SNR 2.05 -> 2.61, sync 7.7 -> 8.3; the unmarked take 1.53 -> 1.47 (BENCHMARKS.md,
# "Watermark", "The reader whitens").
LOCAL_SIGMA = 4.0
LOCAL_FLOOR = 0.5
RESIDUAL_CLIP = 3.0


def _luma_residual(frame: np.ndarray) -> np.ndarray:
    luma = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    residual = luma - cv2.GaussianBlur(luma, (0, 0), HIGHPASS_SIGMA)
    local_rms = np.sqrt(cv2.GaussianBlur(residual * residual, (0, 0), LOCAL_SIGMA) + LOCAL_FLOOR)
    return np.clip(residual / local_rms, -RESIDUAL_CLIP, RESIDUAL_CLIP)


def _candidate_periods(residuals: list[np.ndarray], count: int = 3) -> list[float]:
    """Tile periods (pixels) suggested by the residuals' autocorrelation, best first."""
    height, width = residuals[0].shape
    power = np.zeros((2 * height, width + 1))
    for residual in residuals:
        spectrum = np.fft.rfft2(residual, s=(2 * height, 2 * width))
        power += np.abs(spectrum) ** 2
    auto = np.fft.irfft2(power, s=(2 * height, 2 * width))
    auto /= auto[0, 0] + 1e-9
    half = min(height, width) / 2
    periods = np.arange(SCALES[0] * TILE, SCALES[1] * TILE, 0.05)
    scores = np.zeros_like(periods)
    counts = np.zeros_like(periods)
    for k in range(1, 8):
        lags = k * periods
        valid = lags <= half
        if not valid.any():
            break
        low = np.floor(lags).astype(int)
        frac = lags - low
        low = np.minimum(low, 2 * min(height, width) - 2)
        along_x = auto[0, low] * (1 - frac) + auto[0, low + 1] * frac
        along_y = auto[low, 0] * (1 - frac) + auto[low + 1, 0] * frac
        scores += np.where(valid, along_x + along_y, 0.0)
        counts += valid
    scores /= np.maximum(counts, 1)      # mean over harmonics: half the period does not score as well
    # local maxima, best first
    peaks = [i for i in range(1, len(scores) - 1) if scores[i] >= scores[i - 1] and scores[i] >= scores[i + 1]]
    peaks.sort(key=lambda i: -scores[i])
    chosen: list[float] = [float(TILE)]          # unscaled first: the common case, and cheapest
    for i in peaks:
        if all(abs(periods[i] - p) > 1.0 for p in chosen):
            chosen.append(float(periods[i]))
        if len(chosen) == count + 1:
            break
    return chosen


def _fold(residuals: list[np.ndarray], period: float) -> tuple[np.ndarray, np.ndarray]:
    """Spectrum of the mean tile, and each bin's noise variance across tiles.

    The residuals are resampled so one tile is TILE pixels, cut into whole tiles and each
    tile transformed; the pattern is the same in every tile, so the spread across tiles
    is the image's (and the codec's) noise, bin by bin.
    """
    spectra = []
    factor = TILE / period
    for residual in residuals:
        if abs(factor - 1.0) > 1e-3:
            height, width = residual.shape
            residual = cv2.resize(residual, (round(width * factor), round(height * factor)),
                                  interpolation=cv2.INTER_LINEAR)
        rows, cols = residual.shape[0] // TILE, residual.shape[1] // TILE
        if rows == 0 or cols == 0:
            continue
        tiles = residual[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).transpose(0, 2, 1, 3)
        spectra.append(torch.fft.fft2(torch.from_numpy(np.ascontiguousarray(tiles.reshape(-1, TILE, TILE)))))
    if not spectra:
        return np.zeros((TILE, TILE), complex), np.ones((TILE, TILE))
    spectra = torch.cat(spectra)
    mean = spectra.mean(dim=0)
    variance = (spectra - mean).abs().square().mean(dim=0) if len(spectra) > 1 else spectra[0].abs().square()
    return mean.numpy().astype(complex), variance.numpy().astype(float) + 1e-9


def _decode_tile(mean: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, float]:
    """Soft codeword bits and sync z-score from the mean tile's spectrum (bins weighted by 1 / noise)."""
    spectrum = mean * _band_mask() / variance
    corr = np.real(np.fft.ifft2(spectrum * np.conj(_sync_spectrum())))
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    rows = np.abs((np.arange(TILE) - peak[0] + TILE // 2) % TILE - TILE // 2)
    cols = np.abs((np.arange(TILE) - peak[1] + TILE // 2) % TILE - TILE // 2)
    away = (rows[:, None] > 4) | (cols[None, :] > 4)          # the surface without the peak's main lobe
    sync_z = float((corr[peak] - corr[away].mean()) / (corr[away].std() + 1e-12))
    # sub-pixel peak by parabola through the neighbours
    shift = []
    for axis in (0, 1):
        before = list(peak); before[axis] = (peak[axis] - 1) % TILE
        after = list(peak); after[axis] = (peak[axis] + 1) % TILE
        a, b, c = corr[tuple(before)], corr[peak], corr[tuple(after)]
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
        value = peak[axis] + float(np.clip(offset, -0.5, 0.5))
        shift.append(value if value <= TILE / 2 else value - TILE)
    freq = np.fft.fftfreq(TILE)
    ramp = np.exp(2j * np.pi * (freq[:, None] * shift[0] + freq[None, :] * shift[1]))
    aligned = spectrum * ramp
    rows, cols, parts = DATA_SLOTS[..., 1] % TILE, DATA_SLOTS[..., 0] % TILE, DATA_SLOTS[..., 2]
    values = aligned[rows, cols]
    soft = np.where(parts == 1, values.imag, values.real).sum(axis=0)
    return soft, sync_z


def _reading(soft: np.ndarray, sync_z: float, scale: float, frames: int) -> Reading:
    hard = (soft > 0).astype(np.uint8)
    agree = np.abs(soft)
    bit_snr = float(agree.mean() / (agree.std() + 1e-12))
    payload = decode_bits(hard) if sync_z >= MIN_SYNC_Z and bit_snr >= MIN_BIT_SNR else None
    # probability that all 64 bits are right if the soft bits are Gaussian around +-mean
    mean, spread = agree.mean(), agree.std() + 1e-12
    bit_error = 0.5 * math.erfc(mean / spread / math.sqrt(2))
    confidence = (1 - bit_error) ** CODE_BITS if payload is not None else 0.0
    return Reading(payload, float(confidence), sync_z, bit_snr, scale, frames, soft)


def read(frames: np.ndarray | list[np.ndarray], max_frames: int = 24) -> Reading:
    """Read the watermark from (N, H, W, 3) uint8 RGB frames; soft-votes over up to ``max_frames``.

    Each candidate scale is first tried on a few frames; the best is then read from all.
    """
    if len(frames) == 0:
        return Reading(None, 0.0, 0.0, 0.0, 0.0, 0, np.zeros(CODE_BITS))
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int))
    residuals = [_luma_residual(np.asarray(frames[i])) for i in picks]
    sample = residuals[:: max(1, len(residuals) // 6)]
    trials = []
    for period in _candidate_periods(sample):
        soft, sync_z = _decode_tile(*_fold(sample, period))
        trials.append((sync_z, period))
        if sync_z >= 2 * MIN_SYNC_Z:        # unmistakable: no need to try other scales
            break
    trials.sort(reverse=True)
    best: Reading | None = None
    for _, period in trials[:2]:
        soft, sync_z = _decode_tile(*_fold(residuals, period))
        reading = _reading(soft, sync_z, period / TILE, len(picks))
        if best is None or (reading.found, reading.sync_z) > (best.found, best.sync_z):
            best = reading
        if reading.found:
            break
    return best


def read_video(path: str | os.PathLike, max_frames: int = 24) -> Reading:
    """Read the watermark of a video file (``talkfarm verify``): all its frames decoded, up to
    ``max_frames`` spread over them voted (:func:`read`).

    Raises:
        BadInputError: no video stream ffmpeg can read, or its frames do not decode.
    """
    info = probe_video(path)
    if info.get("video_codec") is None or "width" not in info:
        raise BadInputError("not a video file (no video stream ffmpeg can read)", path)
    try:
        frames = read_frames(path)
    except Exception:  # noqa: BLE001 - any decode failure is bad input here
        raise BadInputError("cannot decode the video's frames", path) from None
    return read(frames, max_frames)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0 ** 2 / error))
