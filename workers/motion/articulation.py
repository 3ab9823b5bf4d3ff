"""Phonemes -> mouth dynamics targets (visemes with coarticulation).

A phone sequence with times (from espeak-ng's IPA phoneme events, festival's segment
relation, or a pocketsphinx forced alignment in ARPAbet) becomes one row of the six mouth
channels of the motion latent per video frame (:data:`MOUTH_CHANNELS`, a subset of
``workers.face.latents.DYNAMICS``).

Each phone symbol maps to a viseme class (:data:`CLASSES`): a target for the six
channels in ~[0, 1] and a dominance (Cohen & Massaro 1993): how strongly the class holds
its shape against its neighbours. Bilabials and labiodentals dominate (a closure is never
blurred open by the vowels around it); schwa and /h/ barely do and take the shape of
their context. :func:`mouth_targets` blends the targets of all phones with the dominance
functions and then enforces real closures in the middle of every bilabial.

Symbols accepted (case-insensitive unless stated): IPA as espeak-ng emits it with
``espeakINITIALIZE_PHONEME_IPA`` (stress marks, length marks, ties and other combining
diacritics are stripped; diphthongs and other multi-symbol strings such as ``eɪ``,
``aʊ``, ``əl`` are split into their parts, which share the phone's duration), ARPAbet
(pocketsphinx upper case with or without stress digits, festival's radio phoneset in
lower case, TIMIT extensions such as ``ax``, ``dx``, ``el``) and the silence names
``''``, ``_``, ``pau``, ``sil``, ``h#``, ``sp``. The ambiguous single letter ``y`` is the
IPA rounded vowel in lower case and ARPAbet /j/ in upper case (``alphabet="arpabet"``
forces the ARPAbet reading). Anything else falls back to :data:`DEFAULT_CLASS` (a mildly
open mouth) and is counted in :data:`UNKNOWN_PHONES`.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from core.speech import Phone
from workers.face.latents import DYNAMICS

logger = logging.getLogger(__name__)

MOUTH_CHANNELS = ("jaw_open", "lip_stretch", "lip_pucker", "lip_press", "upper_lip_raise", "lower_lip_depress")
# Column of each mouth channel inside the dynamics block of the motion latent.
MOUTH_DYN_INDEX = tuple(DYNAMICS.index(name) for name in MOUTH_CHANNELS)

# The lips move ahead of the sound they shape: frame t shows the articulation of audio at
# t + LIP_LEAD_S.
LIP_LEAD_S = 0.03
# Exponent c of the dominance function exp(-theta * tau ** c).
DOMINANCE_EXPONENT = 1.0
# Fraction of each phone's half-duration around its centre where its dominance is at its
# peak (tau counts from the edge of this plateau), so long phones hold their shape.
PLATEAU_FRACTION = 0.5
# Gaps between phones at least this long are filled with silence.
MIN_GAP_S = 0.04
# Enforced closure of a bilabial: its central part (this fraction of its duration) shows
# lip_press >= CLOSED_PRESS and jaw_open <= CLOSED_JAW.
CLOSURE_FRACTION = 0.5
CLOSED_PRESS = 0.95
CLOSED_JAW = 0.06

# Phones silently counted when their symbol is unknown (symbol -> count), process-wide.
UNKNOWN_PHONES: Counter[str] = Counter()


@dataclass(frozen=True)
class VisemeClass:
    """Mouth target and coarticulation strength of a class of phones.

    Attributes:
        name: class name.
        target: values of :data:`MOUTH_CHANNELS` in that order, ~[0, 1].
        dominance: peak dominance alpha in (0, 1]; high resists coarticulation.
        theta_anticipatory: decay rate (1/s) of the dominance before the phone (how early
            the mouth starts to prepare it).
        theta_carryover: decay rate (1/s) after the phone (how long the shape lingers).
    """

    name: str
    target: tuple[float, float, float, float, float, float]
    dominance: float
    theta_anticipatory: float
    theta_carryover: float


def _cls(name: str, target: tuple[float, ...], dominance: float, anticipatory: float, carryover: float) -> VisemeClass:
    return VisemeClass(name, tuple(float(v) for v in target), dominance, anticipatory, carryover)  # type: ignore[arg-type]


#                     jaw   stretch pucker press  upper  lower
CLASSES: dict[str, VisemeClass] = {c.name: c for c in (
    _cls("silence",      (0.02, 0.00, 0.00, 0.15, 0.00, 0.00), 0.50, 12.0, 12.0),
    _cls("bilabial",     (0.05, 0.05, 0.10, 1.00, 0.00, 0.00), 1.00, 28.0, 34.0),
    _cls("labiodental",  (0.12, 0.10, 0.00, 0.25, 0.45, 0.05), 0.90, 28.0, 34.0),
    _cls("dental",       (0.22, 0.15, 0.00, 0.00, 0.10, 0.05), 0.50, 30.0, 36.0),
    _cls("alveolar",     (0.15, 0.15, 0.00, 0.00, 0.05, 0.05), 0.35, 34.0, 40.0),
    _cls("sibilant",     (0.08, 0.30, 0.00, 0.00, 0.10, 0.05), 0.60, 30.0, 36.0),
    _cls("postalveolar", (0.14, 0.00, 0.55, 0.00, 0.15, 0.30), 0.80, 26.0, 32.0),
    _cls("rhotic",       (0.16, 0.00, 0.35, 0.00, 0.05, 0.05), 0.40, 30.0, 36.0),
    _cls("palatal",      (0.14, 0.35, 0.00, 0.00, 0.05, 0.05), 0.40, 32.0, 38.0),
    _cls("velar",        (0.25, 0.10, 0.00, 0.00, 0.00, 0.05), 0.30, 34.0, 40.0),
    _cls("glottal",      (0.30, 0.05, 0.00, 0.00, 0.00, 0.05), 0.10, 40.0, 40.0),
    _cls("labial_approx", (0.10, 0.00, 0.90, 0.10, 0.00, 0.00), 0.80, 24.0, 30.0),
    _cls("spread_close", (0.20, 0.70, 0.00, 0.00, 0.05, 0.05), 0.55, 24.0, 30.0),
    _cls("spread_mid",   (0.40, 0.55, 0.00, 0.00, 0.05, 0.10), 0.50, 24.0, 30.0),
    _cls("mid",          (0.35, 0.10, 0.05, 0.00, 0.00, 0.10), 0.15, 30.0, 36.0),
    _cls("open",         (0.80, 0.15, 0.00, 0.00, 0.05, 0.25), 0.60, 22.0, 28.0),
    _cls("open_rounded", (0.65, 0.00, 0.45, 0.00, 0.00, 0.15), 0.60, 22.0, 28.0),
    _cls("rounded_mid",  (0.40, 0.00, 0.70, 0.00, 0.00, 0.05), 0.60, 22.0, 28.0),
    _cls("rounded_close", (0.20, 0.00, 0.90, 0.05, 0.00, 0.00), 0.65, 22.0, 28.0),
)}
DEFAULT_CLASS = _cls("default", (0.30, 0.10, 0.10, 0.00, 0.00, 0.05), 0.30, 30.0, 36.0)

_SILENCE = ("", "_", "pau", "sil", "h#", "sp", "spn", "#", "pause", "ssil", "brth", "ns")
_IPA = {
    "bilabial": "p b m ɓ ʙ ɸ β",
    "labiodental": "f v ɱ ʋ",
    "dental": "θ ð",
    "alveolar": "t d n l ɾ ɫ ɬ ɮ ʈ ɖ ɳ ɭ ɺ r ʀ",
    "sibilant": "s z ts dz",
    "postalveolar": "ʃ ʒ tʃ dʒ ɕ ʑ tɕ dʑ ʂ ʐ",
    "rhotic": "ɹ ɻ ʁ ɚ ɝ",
    "palatal": "j c ɟ ç ɲ ʎ ʝ",
    "velar": "k ɡ g ŋ x ɣ q ɢ χ ɰ",
    "glottal": "h ɦ ʔ ħ ʕ",
    "labial_approx": "w ʍ ɥ",
    "spread_close": "i ɪ ɨ ʲ",
    "spread_mid": "e ɛ ɛ̝ ɘ",
    "mid": "ə ɜ ɞ ɐ ᵻ",
    "open": "a ɑ æ ʌ ä ɶ",
    "open_rounded": "ɒ ɔ",
    "rounded_mid": "o ø œ ɵ ɤ",
    "rounded_close": "u ʊ y ʏ ɯ ʉ",
}
_ARPABET = {
    "bilabial": "p b m em",
    "labiodental": "f v",
    "dental": "th dh",
    "alveolar": "t d n l dx nx el en",
    "sibilant": "s z",
    "postalveolar": "sh zh ch jh",
    "rhotic": "r er axr",
    "palatal": "y",
    "velar": "k g ng",
    "glottal": "hh hv q",
    "labial_approx": "w",
    "spread_close": "iy ih ix",
    "spread_mid": "eh",
    "mid": "ah ax",
    "open": "aa ae",
    "open_rounded": "ao",
    "rounded_mid": "ow",
    "rounded_close": "uw uh ux",
}
# ARPAbet diphthongs: two parts sharing the phone's duration.
_ARPABET_SPLIT = {"ay": ("open", "spread_close"), "aw": ("open", "rounded_close"), "oy": ("open_rounded", "spread_close"),
                  "ey": ("spread_mid", "spread_close"), "ow": ("rounded_mid", "rounded_close")}

IPA_CLASS: dict[str, str] = {sym: cls for cls, syms in _IPA.items() for sym in syms.split()}
ARPABET_CLASS: dict[str, str] = {sym: cls for cls, syms in _ARPABET.items() for sym in syms.split()}
_MAX_IPA_LEN = max(len(s) for s in IPA_CLASS)
_STRESS_DIGITS = re.compile(r"[0-9]+$")
_STRIP = set("ˈˌːˑ͡‿'ʰʷˠˤ̩̯̃.-|")


def _strip_ipa(symbol: str) -> str:
    """Remove stress and length marks, ties and combining diacritics (NFD-decomposed)."""
    decomposed = unicodedata.normalize("NFD", symbol)
    return "".join(ch for ch in decomposed if ch not in _STRIP and not unicodedata.combining(ch))


def classify(symbol: str, alphabet: str = "auto") -> list[str]:
    """Viseme class names of a phone symbol: one, or several parts for diphthongs and
    multi-symbol IPA strings; ``[]`` when the symbol is unknown (not counted here).

    Args:
        symbol: IPA or ARPAbet symbol.
        alphabet: "auto", "ipa" or "arpabet" (only changes how the letter 'y' is read and
            whether the other table is consulted).
    """
    raw = symbol.strip()
    lower = raw.lower()
    if lower in _SILENCE or lower.startswith("+") or lower.startswith("<") or lower.startswith("["):
        return ["silence"]
    if alphabet != "ipa":
        arpa = _STRESS_DIGITS.sub("", lower)
        if arpa == "y" and alphabet == "auto" and raw != "Y":
            pass  # lower-case 'y' in auto mode reads as IPA
        elif arpa in _ARPABET_SPLIT:
            return list(_ARPABET_SPLIT[arpa])
        elif arpa in ARPABET_CLASS:
            return [ARPABET_CLASS[arpa]]
        if alphabet == "arpabet":
            return []
    stripped = unicodedata.normalize("NFC", _strip_ipa(raw))
    if stripped in IPA_CLASS:
        return [IPA_CLASS[stripped]]
    # Greedy longest match over the string (diphthongs, syllabic consonants, affricates).
    parts: list[str] = []
    i = 0
    while i < len(stripped):
        for length in range(min(_MAX_IPA_LEN, len(stripped) - i), 0, -1):
            piece = stripped[i:i + length]
            if piece in IPA_CLASS:
                parts.append(IPA_CLASS[piece])
                i += length
                break
        else:
            i += 1  # an unknown character inside a longer string is skipped
    return parts


def viseme_class(symbol: str, alphabet: str = "auto") -> VisemeClass:
    """The (first) viseme class of a symbol, :data:`DEFAULT_CLASS` when unknown."""
    names = classify(symbol, alphabet)
    return CLASSES[names[0]] if names else DEFAULT_CLASS


def _expand(segments: Iterable[Phone], duration_s: float, alphabet: str,
            unknown: Counter[str] | None, rest: VisemeClass | None = None) -> list[tuple[VisemeClass, float, float]]:
    """(class, start_s, end_s) spans in time order, ``rest`` (the silence class) filling the
    gaps and the edges and standing for silence symbols."""
    rest = rest or CLASSES["silence"]
    spans: list[tuple[VisemeClass, float, float]] = []
    for phone in sorted(segments, key=lambda p: (p.start_s, p.end_s)):
        start, end = float(phone.start_s), float(phone.end_s)
        if not end > start:
            continue
        names = classify(phone.symbol, alphabet)
        if not names:
            UNKNOWN_PHONES[phone.symbol] += 1
            if unknown is not None:
                unknown[phone.symbol] += 1
            logger.debug("unknown phone symbol %r: using the default mouth shape", phone.symbol)
            spans.append((DEFAULT_CLASS, start, end))
            continue
        step = (end - start) / len(names)
        for k, name in enumerate(names):
            spans.append((rest if name == "silence" else CLASSES[name], start + k * step, start + (k + 1) * step))
    filled: list[tuple[VisemeClass, float, float]] = []
    cursor = 0.0
    silence = rest
    for span in spans:
        if span[1] - cursor >= MIN_GAP_S:
            filled.append((silence, cursor, span[1]))
        filled.append(span)
        cursor = max(cursor, span[2])
    end_time = max(duration_s, cursor)
    if end_time - cursor > 1e-6:
        filled.append((silence, cursor, end_time))
    return filled


def mouth_targets(segments: Sequence[Phone], num_frames: int, fps: float = 25.0, *,
                  alphabet: str = "auto", lead_s: float = LIP_LEAD_S,
                  unknown: Counter[str] | None = None, rest: VisemeClass | None = None) -> np.ndarray:
    """Coarticulated mouth targets on the video frame grid.

    Dominance model (Cohen & Massaro): phone s with target T_s, peak dominance alpha_s and
    centre c_s contributes D_s(t) = alpha_s * exp(-theta_s * tau ** c) where tau (seconds)
    is the distance of t from the phone's central plateau (PLATEAU_FRACTION of its
    half-duration around c_s) and theta_s is the anticipatory rate before the phone and
    the carry-over rate after it; F(t) = sum_s D_s(t) T_s / sum_s D_s(t). Gaps between
    phones (>= MIN_GAP_S) and the time before the first / after the last phone are silence.
    Afterwards every bilabial is closed in its middle: frames whose time falls in the
    central CLOSURE_FRACTION of the phone (at least the frame nearest its centre) get
    lip_press >= CLOSED_PRESS and jaw_open <= CLOSED_JAW.

    Args:
        segments: phones with times in seconds (any order; zero-length ones are ignored).
        num_frames: number of video frames; frame i covers [i / fps, (i + 1) / fps) seconds
            and is evaluated at its centre (i + 0.5) / fps.
        fps: video frame rate in frames per second.
        alphabet: "auto", "ipa" or "arpabet" (see :func:`classify`).
        lead_s: the lips lead the sound by this many seconds (frame time t shows the
            articulation of audio time t + lead_s).
        unknown: optional counter that receives unknown symbols (they are also counted in
            the process-wide :data:`UNKNOWN_PHONES`).
        rest: the mouth in silence (default ``CLASSES["silence"]``, lips just touching).

    Returns:
        (num_frames, 6) float32 values of :data:`MOUTH_CHANNELS` in [0, 1].
    """
    num_frames = int(num_frames)
    out = np.zeros((num_frames, len(MOUTH_CHANNELS)), dtype=np.float32)
    if num_frames <= 0:
        return out
    times = (np.arange(num_frames) + 0.5) / fps + lead_s       # audio time shown by each frame
    spans = _expand(segments, num_frames / fps, alphabet, unknown, rest)
    weighted = np.zeros((num_frames, len(MOUTH_CHANNELS)))
    total = np.full(num_frames, 1e-12)
    for cls, start, end in spans:
        centre = 0.5 * (start + end)
        half_plateau = PLATEAU_FRACTION * 0.5 * (end - start)
        # Beyond this distance the dominance is below 1e-4 of its peak: skip those frames.
        reach = half_plateau + (math.log(1e4) / min(cls.theta_anticipatory, cls.theta_carryover)) ** (1 / DOMINANCE_EXPONENT)
        lo = max(0, int(np.floor((centre - reach - lead_s) * fps)))
        hi = min(num_frames, int(np.ceil((centre + reach - lead_s) * fps)) + 1)
        if hi <= lo:
            continue
        offset = times[lo:hi] - centre
        tau = np.maximum(np.abs(offset) - half_plateau, 0.0)
        theta = np.where(offset < 0, cls.theta_anticipatory, cls.theta_carryover)
        dominance = cls.dominance * np.exp(-theta * tau ** DOMINANCE_EXPONENT)
        weighted[lo:hi] += dominance[:, None] * np.asarray(cls.target)[None]
        total[lo:hi] += dominance
    out[:] = weighted / total[:, None]

    jaw, press = MOUTH_CHANNELS.index("jaw_open"), MOUTH_CHANNELS.index("lip_press")
    upper, lower = MOUTH_CHANNELS.index("upper_lip_raise"), MOUTH_CHANNELS.index("lower_lip_depress")
    for cls, start, end in spans:
        if cls.name != "bilabial":
            continue
        centre = 0.5 * (start + end)
        half = 0.5 * CLOSURE_FRACTION * (end - start)
        frames = np.flatnonzero(np.abs(times - centre) <= half)
        nearest = int(np.clip(np.round((centre - lead_s) * fps - 0.5), 0, num_frames - 1))
        frames = np.union1d(frames, [nearest])
        out[frames, press] = np.maximum(out[frames, press], CLOSED_PRESS)
        out[frames, jaw] = np.minimum(out[frames, jaw], CLOSED_JAW)
        out[frames, upper] = np.minimum(out[frames, upper], 0.05)
        out[frames, lower] = np.minimum(out[frames, lower], 0.05)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def bilabial_centre_frames(segments: Sequence[Phone], num_frames: int, fps: float = 25.0, *,
                           alphabet: str = "auto", lead_s: float = LIP_LEAD_S) -> list[int]:
    """Frame index nearest the centre of every bilabial part (as :func:`mouth_targets`
    closes it), for checks and visualisation."""
    frames = []
    for cls, start, end in _expand(segments, num_frames / fps, alphabet, None):
        if cls.name == "bilabial":
            frames.append(int(np.clip(np.round((0.5 * (start + end) - lead_s) * fps - 0.5), 0, num_frames - 1)))
    return frames
