"""Per-video-frame speech features: log-mel, loudness, pitch, voicing and band energies.

Everything is computed at a 10 ms hop (100 Hz) and then pooled onto the video frame grid,
so motion models see exactly one feature row per rendered frame whatever the fps.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal
from numpy.lib.stride_tricks import sliding_window_view

from core.speech import AudioFeatures

WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
NUM_MELS = 80
MEL_FMAX_HZ = 8000.0
ENERGY_FLOOR_DB = -80.0
# Bands chosen to separate voicing bar / F1 of closed vowels (0-300), F1 of open vowels
# (300-1000), F2 (1000-2500) and frication (2500-8000): open vowels load the middle bands,
# nasals and closures mostly the lowest.
BAND_EDGES_HZ = ((0.0, 300.0), (300.0, 1000.0), (1000.0, 2500.0), (2500.0, 8000.0))

PITCH_WINDOW_SECONDS = 0.040
PITCH_MIN_HZ = 60.0
PITCH_MAX_HZ = 400.0
# Pitch is estimated on audio decimated to about this rate (integer factor).
PITCH_SAMPLE_RATE = 8000
# YIN's cumulative-mean-normalized difference must dip below this for a hop to be voiced.
YIN_THRESHOLD = 0.2
# Hops quieter than this are never voiced (YIN happily finds periodicity in hum and dither).
VOICING_MIN_DBFS = -50.0
# Bounds memory of the batched FFTs to a few tens of MB regardless of audio length.
PITCH_CHUNK_HOPS = 4096


def compute_features(wave: np.ndarray, sample_rate: int = 16000, fps: float = 25.0) -> AudioFeatures:
    """Compute per-video-frame features of a mono waveform.

    Args:
        wave: (num_samples,) float waveform in [-1, 1] (may be empty or shorter than a frame).
        sample_rate: rate of ``wave`` in Hz; 16000 expected (mel/bands stop at Nyquist below).
        fps: video frame rate; any positive value (hops are averaged per frame when fps is
            below 100, interpolated at frame centres when above).

    Returns:
        AudioFeatures with num_frames = max(1, round(duration_s * fps)) rows.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    wave = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
    duration_s = len(wave) / float(sample_rate)
    num_frames = max(1, int(round(duration_s * fps)))

    hop_length = int(round(HOP_SECONDS * sample_rate))
    power_spectrum, fft_size = _power_spectrogram(wave, sample_rate, hop_length)
    num_hops = power_spectrum.shape[0]
    hop_times_s = np.arange(num_hops) * (hop_length / sample_rate)

    mel_filters = slaney_mel_filterbank(sample_rate, fft_size, NUM_MELS, 0.0, min(MEL_FMAX_HZ, sample_rate / 2))
    mel_power = power_spectrum @ mel_filters.T
    band_power = _band_powers(power_spectrum, sample_rate, fft_size)

    hop_pitch_hz, hop_periodicity = estimate_pitch(wave, sample_rate, hop_length, num_hops)

    pool = _HopPooling(hop_times_s, num_frames, fps)
    frame_mel_power = pool.mean(mel_power)
    frame_band_power = pool.mean(band_power)
    frame_voicing = pool.mean(hop_periodicity[:, None])[:, 0]
    frame_pitch_hz = pool.voiced_pitch(hop_pitch_hz)

    return AudioFeatures(
        fps=float(fps),
        sample_rate=int(sample_rate),
        duration_s=float(duration_s),
        num_frames=num_frames,
        log_mel=np.log(np.maximum(frame_mel_power, 1e-10)).astype(np.float32),
        energy_db=_frame_rms_db(wave, sample_rate, num_frames, fps),
        pitch_hz=frame_pitch_hz.astype(np.float32),
        voicing=np.clip(frame_voicing, 0.0, 1.0).astype(np.float32),
        band_energy_db=_power_to_db(frame_band_power),
    )


def _power_spectrogram(wave: np.ndarray, sample_rate: int, hop_length: int) -> tuple[np.ndarray, int]:
    """One-sided power spectrum of 25 ms Hann frames centred on multiples of the hop.

    Scaled (Parseval) so that summing a row gives the mean square of the signal around
    that hop, i.e. power is relative to full scale.

    Returns:
        ((num_hops, fft_size // 2 + 1) float32 power, fft_size); num_hops = 1 + len // hop.
    """
    window_length = int(round(WINDOW_SECONDS * sample_rate))
    fft_size = 1 << int(np.ceil(np.log2(window_length)))
    num_hops = 1 + len(wave) // hop_length
    half = window_length // 2
    padded = np.zeros((num_hops - 1) * hop_length + window_length, dtype=np.float32)
    usable = min(len(wave), len(padded) - half)
    padded[half : half + usable] = wave[:usable]
    frames = sliding_window_view(padded, window_length)[::hop_length][:num_hops]
    window = np.hanning(window_length + 1)[:-1].astype(np.float32)  # periodic Hann
    spectrum = scipy.fft.rfft(frames * window, n=fft_size, axis=1, workers=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    power[:, 1 : fft_size // 2] *= 2.0  # fold negative frequencies (not DC / Nyquist)
    power /= np.float32(fft_size * np.sum(window.astype(np.float64) ** 2))
    return power, fft_size


def hz_to_slaney_mel(frequency_hz: np.ndarray) -> np.ndarray:
    """Slaney (Auditory Toolbox) mel: linear below 1 kHz, logarithmic above."""
    frequency_hz = np.asarray(frequency_hz, dtype=np.float64)
    linear_step_hz = 200.0 / 3.0
    break_hz, break_mel = 1000.0, 1000.0 / linear_step_hz
    log_step = np.log(6.4) / 27.0
    safe_hz = np.maximum(frequency_hz, break_hz)
    return np.where(
        frequency_hz < break_hz,
        frequency_hz / linear_step_hz,
        break_mel + np.log(safe_hz / break_hz) / log_step,
    )


def slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_slaney_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear_step_hz = 200.0 / 3.0
    break_hz, break_mel = 1000.0, 1000.0 / linear_step_hz
    log_step = np.log(6.4) / 27.0
    return np.where(mel < break_mel, mel * linear_step_hz, break_hz * np.exp(log_step * (mel - break_mel)))


def slaney_mel_filterbank(
    sample_rate: int, fft_size: int, num_mels: int = NUM_MELS, fmin_hz: float = 0.0, fmax_hz: float = MEL_FMAX_HZ
) -> np.ndarray:
    """Triangular mel filters with Slaney area normalization (each filter has unit area in Hz/2).

    Returns:
        (num_mels, fft_size // 2 + 1) float32 weights on rfft bins.
    """
    bin_hz = np.linspace(0.0, sample_rate / 2.0, fft_size // 2 + 1)
    edge_hz = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(fmin_hz), hz_to_slaney_mel(fmax_hz), num_mels + 2))
    lower, centre, upper = edge_hz[:-2, None], edge_hz[1:-1, None], edge_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)
    return weights.astype(np.float32)


def _band_powers(power_spectrum: np.ndarray, sample_rate: int, fft_size: int) -> np.ndarray:
    """(num_hops, 4) power summed over rfft bins in each of BAND_EDGES_HZ (upper edge exclusive,
    except the last band, which keeps its top bin)."""
    bin_hz = np.arange(power_spectrum.shape[1]) * (sample_rate / fft_size)
    band_masks = np.zeros((power_spectrum.shape[1], len(BAND_EDGES_HZ)), dtype=np.float32)
    for band_index, (low_hz, high_hz) in enumerate(BAND_EDGES_HZ):
        is_last = band_index == len(BAND_EDGES_HZ) - 1
        in_band = (bin_hz >= low_hz) & ((bin_hz <= high_hz) if is_last else (bin_hz < high_hz))
        band_masks[in_band, band_index] = 1.0
    return power_spectrum @ band_masks


def estimate_pitch(
    wave: np.ndarray, sample_rate: int, hop_length: int, num_hops: int
) -> tuple[np.ndarray, np.ndarray]:
    """YIN pitch on 40 ms windows centred on each hop, batched through FFTs.

    For each hop the cumulative-mean-normalized difference d'(lag) is computed for lags
    covering 60-400 Hz; the pitch is the minimum of the first dip below YIN_THRESHOLD
    (refined by parabolic interpolation), which avoids the octave-down errors of a global
    minimum. Pitch is then median-smoothed over 5 hops among voiced neighbours. The audio is
    first decimated to about 8 kHz (plenty for F0 <= 400 Hz, and half the work).

    Args:
        wave: (num_samples,) float waveform.
        sample_rate: its rate in Hz.
        hop_length: hop in samples at ``sample_rate`` (hop k is centred on sample k * hop_length).
        num_hops: number of hops to estimate.

    Returns:
        ((num_hops,) float32 pitch in Hz, 0 where unvoiced;
         (num_hops,) float32 periodicity 1 - min d' in [0, 1], 0 in quiet hops).
    """
    decimation = max(1, int(sample_rate // PITCH_SAMPLE_RATE))
    if decimation > 1 and len(wave) > 0:
        wave = scipy.signal.resample_poly(np.asarray(wave, dtype=np.float32), 1, decimation)
    pitch_rate = sample_rate / decimation
    pitch_hop = hop_length / decimation  # may be fractional (e.g. 44.1 kHz)

    window_length = int(round(PITCH_WINDOW_SECONDS * pitch_rate))
    min_lag = max(2, int(np.floor(pitch_rate / PITCH_MAX_HZ)))
    max_lag = int(np.ceil(pitch_rate / PITCH_MIN_HZ))
    segment_length = window_length + max_lag
    # r(lag) for lag <= max_lag only reads samples j + lag < segment_length, so a circular
    # correlation of this length never wraps.
    fft_size = 1 << int(np.ceil(np.log2(segment_length)))

    centred = np.asarray(wave, dtype=np.float32) - (np.float32(np.mean(wave)) if len(wave) else 0.0)
    # Segment for hop k starts half a window before its centre and runs max_lag past the window.
    half = window_length // 2
    segment_starts = np.round(np.arange(num_hops) * pitch_hop).astype(np.int64)
    padded = np.zeros(int(segment_starts[-1]) + segment_length, dtype=np.float32)
    usable = min(len(centred), len(padded) - half)
    padded[half : half + usable] = centred[:usable]
    segments = sliding_window_view(padded, segment_length)  # a view; rows gathered per chunk
    # Energy of x[lag : lag + W] in any segment is a difference of this running sum (float64:
    # the subtraction of two large sums would lose the quiet parts in float32).
    cumulative_square = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])

    pitch_hz = np.zeros(num_hops, dtype=np.float64)
    periodicity = np.zeros(num_hops, dtype=np.float64)
    lags = np.arange(max_lag + 1)
    for start in range(0, num_hops, PITCH_CHUNK_HOPS):
        chunk = segments[segment_starts[start : start + PITCH_CHUNK_HOPS]]
        head = chunk[:, :window_length]
        # r(lag) = sum_j x_j x_{j+lag}, j over the first window: a cross-correlation via FFT.
        cross = scipy.fft.irfft(
            np.conj(scipy.fft.rfft(head, n=fft_size, axis=1, workers=-1))
            * scipy.fft.rfft(chunk, n=fft_size, axis=1, workers=-1),
            n=fft_size,
            axis=1,
            workers=-1,
        )[:, : max_lag + 1]
        # Energy of x[lag : lag + W] for every lag, from a running sum of squares.
        chunk_starts = segment_starts[start : start + PITCH_CHUNK_HOPS, None]
        shifted_energy = (
            cumulative_square[chunk_starts + lags + window_length] - cumulative_square[chunk_starts + lags]
        )
        difference = np.maximum(shifted_energy[:, :1] + shifted_energy - 2.0 * cross, 0.0)
        # Cumulative-mean normalization: d'(lag) = d(lag) * lag / sum_{1..lag} d.
        running_sum = np.cumsum(difference[:, 1:].astype(np.float32), axis=1)
        normalized = np.ones_like(difference)
        normalized[:, 1:] = difference[:, 1:] * lags[1:] / np.maximum(running_sum, 1e-12)
        normalized[:, 1:][running_sum <= 1e-12] = 1.0  # all-zero segment: no periodicity

        search = normalized[:, min_lag : max_lag + 1]
        below = search < YIN_THRESHOLD
        first_dip = np.where(below.any(axis=1), np.argmax(below, axis=1), search.shape[1])
        positions = np.arange(search.shape[1])[None, :]
        after_first = positions >= first_dip[:, None]
        left_dip = np.cumsum(after_first & ~below, axis=1) > 0
        in_first_dip = below & after_first & ~left_dip
        has_dip = in_first_dip.any(axis=1)
        best_index = np.where(
            has_dip,
            np.argmin(np.where(in_first_dip, search, np.inf), axis=1),
            np.argmin(search, axis=1),
        )
        best_value = search[np.arange(len(chunk)), best_index]

        # Parabolic refinement around the chosen lag (edges keep the integer lag).
        left = search[np.arange(len(chunk)), np.maximum(best_index - 1, 0)]
        right = search[np.arange(len(chunk)), np.minimum(best_index + 1, search.shape[1] - 1)]
        curvature = left - 2.0 * best_value + right
        interior = (best_index > 0) & (best_index < search.shape[1] - 1) & (curvature > 1e-12)
        offset = np.where(interior, 0.5 * (left - right) / np.where(interior, curvature, 1.0), 0.0)
        best_lag = min_lag + best_index + np.clip(offset, -0.5, 0.5)

        window_energy = shifted_energy[:, 0] / window_length
        loud_enough = 10.0 * np.log10(np.maximum(window_energy, 1e-12)) > VOICING_MIN_DBFS
        chunk_periodicity = np.where(loud_enough, np.clip(1.0 - best_value, 0.0, 1.0), 0.0)
        voiced = has_dip & loud_enough
        pitch_hz[start : start + len(chunk)] = np.where(voiced, pitch_rate / best_lag, 0.0)
        periodicity[start : start + len(chunk)] = chunk_periodicity

    return _median_smooth_voiced(pitch_hz).astype(np.float32), periodicity.astype(np.float32)


def _median_smooth_voiced(pitch_hz: np.ndarray, width: int = 5) -> np.ndarray:
    """Median over the voiced hops of each ``width``-hop neighbourhood; unvoiced stay 0.

    Single voiced hops with no voiced neighbour are dropped as spurious.
    """
    if len(pitch_hz) == 0:
        return pitch_hz
    half = width // 2
    with_gaps = np.where(pitch_hz > 0, pitch_hz, np.nan)
    padded = np.pad(with_gaps, half, constant_values=np.nan)
    neighbourhoods = sliding_window_view(padded, width)
    voiced_neighbours = np.sum(~np.isnan(neighbourhoods), axis=1)
    keep = (pitch_hz > 0) & (voiced_neighbours >= 2)
    smoothed = np.zeros_like(pitch_hz)
    if np.any(keep):
        smoothed[keep] = np.nanmedian(neighbourhoods[keep], axis=1)
    return smoothed


class _HopPooling:
    """Maps 100 Hz hop values onto video frames.

    Frame i takes the mean of the hops whose centres lie in [i / fps, (i + 1) / fps); a frame
    that contains no hop centre (fps above the hop rate, or the tail) is linearly
    interpolated from the hops at the frame's centre time.
    """

    def __init__(self, hop_times_s: np.ndarray, num_frames: int, fps: float):
        self.hop_times_s = hop_times_s
        self.num_frames = num_frames
        frame_of_hop = np.floor(hop_times_s * fps + 1e-9).astype(np.int64)
        self.hop_in_range = frame_of_hop < num_frames
        self.frame_of_hop = frame_of_hop[self.hop_in_range]
        self.hops_per_frame = np.bincount(self.frame_of_hop, minlength=num_frames)[:num_frames]
        self.empty_frames = np.flatnonzero(self.hops_per_frame == 0)
        self.empty_frame_times_s = (self.empty_frames + 0.5) / fps

    def mean(self, hop_values: np.ndarray) -> np.ndarray:
        """(num_hops, C) -> (num_frames, C) float64 mean per frame."""
        values = np.asarray(hop_values, dtype=np.float64)[self.hop_in_range]
        num_columns = values.shape[1]
        # One bincount for all columns: column c of frame f lands in bin c * num_frames + f.
        flat_bins = (self.frame_of_hop[:, None] + self.num_frames * np.arange(num_columns)[None, :]).ravel()
        sums = np.bincount(flat_bins, weights=values.ravel(), minlength=self.num_frames * num_columns)
        sums = sums.reshape(num_columns, self.num_frames).T
        pooled = sums / np.maximum(self.hops_per_frame, 1)[:, None]
        if len(self.empty_frames):
            all_values = np.asarray(hop_values, dtype=np.float64)
            for column in range(num_columns):
                pooled[self.empty_frames, column] = np.interp(
                    self.empty_frame_times_s, self.hop_times_s, all_values[:, column]
                )
        return pooled

    def voiced_pitch(self, hop_pitch_hz: np.ndarray) -> np.ndarray:
        """(num_hops,) -> (num_frames,) mean pitch of voiced hops; 0 unless at least half of
        the frame's hops are voiced (frames without hops take the nearest hop's pitch)."""
        hop_pitch_hz = np.asarray(hop_pitch_hz, dtype=np.float64)
        in_range_pitch = hop_pitch_hz[self.hop_in_range]
        is_voiced = (in_range_pitch > 0).astype(np.float64)
        voiced_count = np.bincount(self.frame_of_hop, weights=is_voiced, minlength=self.num_frames)[: self.num_frames]
        pitch_sum = np.bincount(self.frame_of_hop, weights=in_range_pitch, minlength=self.num_frames)[: self.num_frames]
        mostly_voiced = voiced_count * 2 >= np.maximum(self.hops_per_frame, 1)
        pooled = np.where(mostly_voiced & (voiced_count > 0), pitch_sum / np.maximum(voiced_count, 1), 0.0)
        if len(self.empty_frames):
            nearest_hop = np.clip(
                np.round(np.interp(self.empty_frame_times_s, self.hop_times_s, np.arange(len(self.hop_times_s)))),
                0,
                len(self.hop_times_s) - 1,
            ).astype(np.int64)
            pooled[self.empty_frames] = hop_pitch_hz[nearest_hop]
        return pooled


def _frame_rms_db(wave: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """(num_frames,) float32 RMS dBFS of the samples in each frame's interval, floor -80.

    A frame reaching past the end of the audio uses the samples it has; a frame with none
    left takes the floor.
    """
    cumulative_square = np.concatenate([[0.0], np.cumsum(np.asarray(wave, dtype=np.float64) ** 2)])
    boundaries = np.minimum(np.round(np.arange(num_frames + 1) * (sample_rate / fps)).astype(np.int64), len(wave))
    counts = np.diff(boundaries)
    sums = cumulative_square[boundaries[1:]] - cumulative_square[boundaries[:-1]]
    mean_square = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return _power_to_db(mean_square)


def _power_to_db(power: np.ndarray) -> np.ndarray:
    """Power (mean square re full scale) to float32 dBFS, floored at -80."""
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-12)), ENERGY_FLOOR_DB).astype(np.float32)
