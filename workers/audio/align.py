"""Forced alignment of a transcript against speech, in any espeak-ng language.

:func:`align` returns the transcript's phones with times in the recording plus a
confidence in [0, 1]:

* **espeak + DTW** (every language, the approach of the aeneas aligner): espeak-ng speaks
  the text (``workers.audio.espeak``), which gives the synthetic speech's IPA phones with
  exact times; dynamic time warping of the synthetic speech's features (MFCC from the
  Slaney log-mel of ``workers.audio.features``, cepstral mean and variance normalisation)
  against the recording's maps every synthetic time onto the recording, which carries the
  phone boundaries over. The synthesis is re-spoken at a rate matched to the recording's
  speech duration, so the warping path stays near the diagonal (Sakoe-Chiba band).
* **pocketsphinx** (English): phone-level forced alignment with the acoustic model in the
  wheel (``workers.audio.phonemes.align_transcript``) gives the phone times; the DTW above
  still runs, for the confidence (and for the times when pocketsphinx fails, e.g. no word
  of the text is in its dictionary).

Confidence compares the mean cosine distance along the DTW path (``path``) with two
references on the same recording: the unordered nearest synthetic frame of each recorded
frame (``best``, a floor) and the DTW path through the synthetic speech played backwards
(``null``: the same sounds in the wrong order): (null - path) / (null - best), clipped to
[0, 1]. :data:`MIN_CONFIDENCE` separates the right text from a wrong one; the confidences
measured by ``bench/alignment.py`` are in BENCHMARKS.md, "Alignment".

Nothing is downloaded at run time: espeak-ng is the system library, pocketsphinx's model
ships in its wheel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft

from core.errors import BadInputError
from core.languages import check_language, espeak_voice, is_english
from core.speech import Phone
from workers.audio.espeak import EngineError, synthesize
from workers.audio.features import _power_spectrogram, slaney_mel_filterbank

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
VERSION = "align-3-pocketsphinx5-espeakng-dtw"
HOP_S = 0.010
NUM_MELS = 40
NUM_CEPS = 13
# Below this confidence the text is taken not to match the audio (fallback to audio-only).
MIN_CONFIDENCE = 0.18
# Sakoe-Chiba band half-width: this share of the longer sequence, at least / at most.
BAND_FRACTION = 0.25
BAND_MIN_FRAMES = 100
BAND_MAX_FRAMES = 1000
# Silence added around the synthetic speech (the recording usually has some too).
SYNTH_PAD_S = 0.15
DEFAULT_RATE_WPM = 175
# espeak-ng voice variants the text is spoken with (default male voice, a female one).
VOICE_VARIANTS = ("", "+f3")
# pocketsphinx aligns a clip as one utterance, and its memory and time grow with the square of
# the clip's length (LibriVox looped, one process: 36 s 0.13 GB and 2 s; 64 s 0.21 GB and 4 s;
# 121 s 0.48 GB and 22 s; a 10-minute dub's recognised transcript peaked at 10.3 GB). A longer
# clip with word times (a recognised transcript) is aligned span by span, cut at pauses
# between its words every SPAN_SECONDS or so; without them it keeps the espeak + DTW timings,
# whose band keeps memory linear in the length.
MAX_POCKETSPHINX_SECONDS = 120.0
SPAN_SECONDS = 60.0


@dataclass(frozen=True)
class PhoneAlignment:
    """Phones of a transcript placed in a recording.

    Attributes:
        phones: phones in time order (IPA from espeak-ng or ARPAbet from pocketsphinx; '_' or
            none for pauses), times in seconds of the recording.
        confidence: in [0, 1]; below :data:`MIN_CONFIDENCE` the text likely does not match.
        method: "pocketsphinx", "espeak-dtw", or "pocketsphinx+dtw" (a long clip some of
            whose spans kept the DTW timings).
        language: the espeak-ng language code used.
    """

    phones: list[Phone]
    confidence: float
    method: str
    language: str

    @property
    def matches(self) -> bool:
        return self.confidence >= MIN_CONFIDENCE


# ---------------------------------------------------------------------------- features

def _has_high_band(wave: np.ndarray) -> bool:
    """False for telephone / 8 kHz sources (no energy above ~4 kHz)."""
    spectrum = np.abs(np.fft.rfft(wave[: SAMPLE_RATE * 30].astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(min(len(wave), SAMPLE_RATE * 30), 1.0 / SAMPLE_RATE)
    total = spectrum.sum() + 1e-20
    return bool(spectrum[freqs > 4200].sum() / total > 1e-4)


def mfcc(wave: np.ndarray, fmax_hz: float = 8000.0) -> np.ndarray:
    """(hops, NUM_CEPS - 1) MFCC (c1..c12) at 10 ms, + log energy, mean/variance normalised.

    The log floor is relative to the loudest hop (60 dB below), so digital silence and
    room noise look alike.
    """
    wave = np.asarray(wave, dtype=np.float32)
    hop = int(round(HOP_S * SAMPLE_RATE))
    power, fft_size = _power_spectrogram(wave, SAMPLE_RATE, hop)
    filters = slaney_mel_filterbank(SAMPLE_RATE, fft_size, NUM_MELS, 60.0, fmax_hz)
    mel = power @ filters.T
    floor = max(float(mel.sum(axis=1).max()), 1e-12) * 1e-6
    log_mel = np.log(mel + floor / NUM_MELS)
    ceps = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, 1:NUM_CEPS]
    energy = np.log(power.sum(axis=1) + floor)[:, None]
    feats = np.concatenate([ceps, 0.5 * energy], axis=1)
    feats -= feats.mean(axis=0)
    feats /= feats.std(axis=0) + 1e-6
    return feats.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


# ---------------------------------------------------------------------------- DTW

def dtw_path(a: np.ndarray, b: np.ndarray, band: int | None = None) -> tuple[np.ndarray, float, float, float]:
    """Banded DTW of feature sequences a (N, D) and b (M, D), cosine distance.

    Each row of the cumulative cost is computed in one vectorised step: with
    A[j] = C[i, j] + min(D[i-1, j-1], D[i-1, j]) the horizontal recurrence
    D[i, j] = min(A[j], D[i, j-1] + C[i, j]) has the closed form
    D[i] = S + minimum.accumulate(A - S), S = cumsum(C[i]).

    Returns:
        (path (K, 2) int of (i, j) from (0, 0) to (N-1, M-1), mean distance along the path,
        mean distance of each frame of b to its nearest frame of a in any order, mean
        distance between unrelated frames), the last two on a sample of b's frames.
    """
    n, m = len(a), len(b)
    ua, ub = _unit(a), _unit(b)
    if band is None:
        band = int(min(BAND_MAX_FRAMES, max(BAND_MIN_FRAMES, BAND_FRACTION * max(n, m))))
    centre = np.arange(n) * ((m - 1) / max(n - 1, 1))
    lo = np.clip(np.floor(centre - band).astype(int), 0, m - 1)
    hi = np.clip(np.ceil(centre + band).astype(int) + 1, 1, m)
    lo[0], hi[-1] = 0, m
    lo = np.minimum.accumulate(lo[::-1])[::-1]          # monotone band edges
    hi = np.maximum.accumulate(hi)
    rows: list[np.ndarray] = []     # float32 band slices: memory ~ N * 2 * band * 4 bytes
    prev = np.full(m + 1, np.inf)                       # prev[j + 1] = D[i-1, j]; prev[0] = D[i-1, -1]
    prev[0] = 0.0
    for i in range(n):
        l, h = lo[i], hi[i]
        cost = (1.0 - ub[l:h] @ ua[i]).astype(np.float64)
        diag, up = prev[l:h], prev[l + 1:h + 1]
        acc = cost + np.minimum(diag, up)
        s = np.cumsum(cost)
        row = s + np.minimum.accumulate(acc - s)
        cur = np.full(m + 1, np.inf)
        cur[l + 1:h + 1] = row
        if i == 0:
            cur[0] = np.inf
        prev = cur
        rows.append(row.astype(np.float32))
    # Backtrack.
    path = []
    i, j = n - 1, m - 1
    while True:
        path.append((i, j))
        if i == 0 and j == 0:
            break

        def d(r: int, c: int) -> float:
            if r < 0 or c < 0 or c < lo[r] or c >= hi[r]:
                return np.inf
            return rows[r][c - lo[r]]

        options = ((d(i - 1, j - 1), i - 1, j - 1), (d(i - 1, j), i - 1, j), (d(i, j - 1), i, j - 1))
        _, i, j = min(options, key=lambda o: o[0])
        if not np.isfinite(_):
            break
    path_arr = np.array(path[::-1], dtype=int)
    path_cost = float(np.mean(1.0 - np.sum(ua[path_arr[:, 0]] * ub[path_arr[:, 1]], axis=1)))
    # Unordered best match of each recording frame (any synthetic frame), on a sample.
    cols = np.random.default_rng(0).choice(m, size=min(m, 1500), replace=False)
    best = float(np.mean(np.min(1.0 - ua @ ub[cols].T, axis=0)))
    baseline = float(np.mean(1.0 - ua @ ub[cols].T))
    return path_arr, path_cost, best, baseline


def path_confidence(path_cost: float, best: float, null_cost: float) -> float:
    """1 where the path is as close as the unordered nearest frames, 0 where it is no
    better than the path through the same synthetic speech played backwards."""
    return float(np.clip((null_cost - path_cost) / max(null_cost - best, 1e-6), 0.0, 1.0))


def _speech_seconds(feats_energy: np.ndarray) -> float:
    """Seconds of hops within 30 dB (in the normalised energy units) of the loudest."""
    e = feats_energy
    thr = np.percentile(e, 95) - 1.2  # ~ -25..30 dB given the 0.5 scaling and normalisation
    return float(np.sum(e > thr) * HOP_S)


def _warp(times_s: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Map synthetic times to recording times through the path (mean j per i, then
    linear interpolation between hop centres)."""
    i, j = path[:, 0], path[:, 1]
    counts = np.bincount(i)
    mean_j = np.bincount(i, weights=j) / np.maximum(counts, 1)
    keep = counts > 0
    hops = np.flatnonzero(keep)
    mapped = np.maximum.accumulate(mean_j[keep])
    return np.interp(times_s / HOP_S, hops, mapped) * HOP_S


# ---------------------------------------------------------------------------- align

def align_dtw(wave16k: np.ndarray, text: str, language: str, voice: str | None = None,
              rate_wpm: int | None = None) -> PhoneAlignment:
    """espeak-ng synthesis + DTW (see the module docstring).

    Without an explicit ``voice`` the text is spoken twice, by the language's default
    (male) voice and its ``+f3`` female variant; the one with the higher confidence wins
    (MFCCs of a high female voice match a low male one poorly).
    """
    wave16k = np.asarray(wave16k, dtype=np.float32).reshape(-1)
    fmax = 8000.0 if _has_high_band(wave16k) else 3800.0
    rec = mfcc(wave16k, fmax)
    voices = [voice] if voice else [espeak_voice(language) + variant for variant in VOICE_VARIANTS]
    results = [_align_voice(wave16k, rec, fmax, text, language, v, rate_wpm) for v in voices]
    return max(results, key=lambda r: r.confidence)


def _align_voice(wave16k: np.ndarray, rec: np.ndarray, fmax: float, text: str, language: str, voice: str,
                 rate_wpm: int | None) -> PhoneAlignment:
    duration = len(wave16k) / SAMPLE_RATE

    def speak(rate: int) -> tuple[np.ndarray, list[Phone]]:
        try:
            synth, phones = synthesize(text, voice, rate_wpm=rate, seed=0)
        except EngineError as error:
            raise BadInputError(f"espeak-ng could not speak the transcript ({error})") from None
        pad = np.zeros(int(SYNTH_PAD_S * SAMPLE_RATE), np.float32)
        dither = np.random.default_rng(0).standard_normal(len(synth) + 2 * len(pad)).astype(np.float32) * 1e-4
        return np.concatenate([pad, synth, pad]) + dither, [Phone(p.symbol, p.start_s + SYNTH_PAD_S, p.end_s + SYNTH_PAD_S)
                                                             for p in phones]

    rate = int(rate_wpm or DEFAULT_RATE_WPM)
    synth, phones = speak(rate)
    syn = mfcc(synth, fmax)
    if rate_wpm is None:
        ratio = _speech_seconds(syn[:, -1]) / max(_speech_seconds(rec[:, -1]), 0.2)
        if abs(ratio - 1.0) > 0.15:
            rate = int(np.clip(rate * ratio, 80, 450))
            synth, phones = speak(rate)
            syn = mfcc(synth, fmax)
    path, path_cost, best, _ = dtw_path(syn, rec)
    # Null model: the same sounds in the wrong order (the synthetic speech reversed).
    _, null_cost, _, _ = dtw_path(syn[::-1], rec)
    confidence = path_confidence(path_cost, best, null_cost)
    starts = _warp(np.array([p.start_s for p in phones]), path)
    ends = _warp(np.array([p.end_s for p in phones]), path)
    out = []
    for p, s, e in zip(phones, starts, ends):
        s, e = float(min(s, duration)), float(min(max(e, s), duration))
        if e > s and p.symbol != "_":
            out.append(Phone(p.symbol, s, e))
    return PhoneAlignment(out, confidence, "espeak-dtw", language)


def spans_at_pauses(words: Sequence[tuple[str, float, float]], duration_s: float,
                    span_s: float | None = None) -> list[tuple[float, float, str]]:
    """Cut a clip into spans of about ``span_s`` (default ``SPAN_SECONDS``) at the widest pause
    between its words.

    Args:
        words: (text, start_s, end_s) of each word in order (a recogniser's word times).
        duration_s: the clip's length.

    Returns:
        (start_s, end_s, text) spans covering the clip; each cut lies in the middle of the
        widest gap between words in the second half of its span.
    """
    span_s = SPAN_SECONDS if span_s is None else span_s
    spans: list[tuple[float, float, str]] = []
    start_s, first = 0.0, 0
    for k in range(len(words) - 1):
        if words[k + 1][2] - start_s <= span_s:
            continue
        # Word boundaries in the span's second half; the widest gap is the cut.
        candidates = [j for j in range(first, k + 1) if words[j][2] - start_s >= span_s / 2] or [k]
        j = max(candidates, key=lambda i: words[i + 1][1] - words[i][2])
        cut = 0.5 * (words[j][2] + words[j + 1][1])
        spans.append((start_s, cut, " ".join(word[0] for word in words[first:j + 1])))
        start_s, first = cut, j + 1
    spans.append((start_s, duration_s, " ".join(word[0] for word in words[first:])))
    return [span for span in spans if span[2].strip()]


def _align_spans(wave16k: np.ndarray, spans: list[tuple[float, float, str]],
                 fallback: PhoneAlignment) -> tuple[list[Phone], int]:
    """pocketsphinx on each span alone, phone times moved to the clip's.

    A span pocketsphinx cannot fit (a misheard word, noise it takes for speech) keeps
    ``fallback``'s phones (espeak + DTW of the whole clip) inside it, so one bad stretch of a
    ten-minute clip does not cost the other spans their alignment. A clip of one span raises.

    Returns:
        (phones in time order, number of spans that kept the fallback's phones).
    """
    from workers.audio.phonemes import align_transcript

    phones: list[Phone] = []
    failed = 0
    for start_s, end_s, text in spans:
        piece = wave16k[int(round(start_s * SAMPLE_RATE)):int(round(end_s * SAMPLE_RATE))]
        try:
            aligned = align_transcript(piece, text)
        except BadInputError:
            if len(spans) == 1:
                raise
            failed += 1
            phones += [phone for phone in fallback.phones if start_s <= phone.start_s < end_s]
            continue
        phones += [Phone(s.phone, s.start_s + start_s, s.end_s + start_s) for s in aligned]
    return phones, failed


def align(wave16k: np.ndarray, text: str, language: str = "en", method: str = "auto",
          words: Sequence[tuple[str, float, float]] | None = None) -> PhoneAlignment:
    """Phones of ``text`` in the 16 kHz recording ``wave16k``.

    Args:
        wave16k: (samples,) float waveform at 16 kHz, mono.
        text: what is said (any length; punctuation is fine).
        language: espeak-ng language code (``en``, ``es``, ``de``, ``pt-br``...).
        method: "auto" (pocketsphinx for English, else DTW), "dtw" or "pocketsphinx".
        words: (text, start_s, end_s) of the text's words when a recogniser gave them: a clip
            over ``MAX_POCKETSPHINX_SECONDS`` is then aligned span by span.

    Raises:
        BadInputError: unsupported language, empty text or audio, espeak-ng failure.
    """
    language = check_language(language)
    text = " ".join((text or "").split())
    if not text:
        raise BadInputError("transcript is empty")
    wave16k = np.asarray(wave16k, dtype=np.float32).reshape(-1)
    if wave16k.size < SAMPLE_RATE // 10:
        raise BadInputError("audio for alignment is shorter than 0.1 s")
    dtw = align_dtw(wave16k, text, language)
    use_sphinx = method == "pocketsphinx" or (method == "auto" and is_english(language))
    if not use_sphinx:
        return dtw
    duration_s = len(wave16k) / SAMPLE_RATE
    long_clip = duration_s > MAX_POCKETSPHINX_SECONDS
    if long_clip and not words:
        logger.warning("the clip is %.0f s, over pocketsphinx's %.0f s, and has no word times: using espeak + DTW "
                       "timings", duration_s, MAX_POCKETSPHINX_SECONDS)
        return dtw
    spans = spans_at_pauses(words, duration_s) if long_clip else [(0.0, duration_s, text)]
    try:
        phones, failed = _align_spans(wave16k, spans, dtw)
    except BadInputError as error:
        logger.warning("pocketsphinx alignment failed (%s); using espeak + DTW timings", error)
        return dtw
    if failed:
        logger.warning("pocketsphinx could not align %d of %d spans; those keep espeak + DTW timings",
                       failed, len(spans))
    return PhoneAlignment(phones, dtw.confidence, "pocketsphinx+dtw" if failed else "pocketsphinx", language)
