"""Phonemes -> mouth targets: classes, coarticulation, closures on bilabials."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from workers.face.latents import DYNAMICS
from workers.motion.articulation import (
    CLASSES,
    MOUTH_CHANNELS,
    Phone,
    bilabial_centre_frames,
    classify,
    mouth_targets,
    viseme_class,
)

JAW, STRETCH, PUCKER, PRESS = (MOUTH_CHANNELS.index(n) for n in ("jaw_open", "lip_stretch", "lip_pucker", "lip_press"))
FPS = 25.0


def seq(*items: tuple[str, float]) -> list[Phone]:
    """Phones back to back from 0.2 s, each (symbol, duration_s)."""
    out, t = [], 0.2
    for symbol, duration in items:
        out.append(Phone(symbol, t, t + duration))
        t += duration
    return out


def frame_at(t: float) -> int:
    return int(t * FPS)


def test_channels_are_dynamics_names():
    assert all(name in DYNAMICS for name in MOUTH_CHANNELS)
    assert len(MOUTH_CHANNELS) == 6


@pytest.mark.parametrize("symbol, expected", [
    ("p", "bilabial"), ("B", "bilabial"), ("m", "bilabial"), ("em", "bilabial"),
    ("f", "labiodental"), ("V", "labiodental"),
    ("uː", "rounded_close"), ("ˈoː", "rounded_mid"), ("w", "labial_approx"), ("UW1", "rounded_close"),
    ("iː", "spread_close"), ("IY0", "spread_close"), ("ɑː", "open"), ("aa", "open"), ("æ", "open"),
    ("ʃ", "postalveolar"), ("tʃ", "postalveolar"), ("JH", "postalveolar"),
    ("ə", "mid"), ("ax", "mid"), ("", "silence"), ("pau", "silence"), ("SIL", "silence"), ("_", "silence"),
    ("k", "velar"), ("ɡ", "velar"), ("ɐ̃", "mid"), ("ɑ̃", "open"), ("Y", "palatal"), ("y", "rounded_close"),
])
def test_classify(symbol, expected):
    assert classify(symbol)[0] == expected


def test_diphthongs_split():
    assert classify("eɪ") == ["spread_mid", "spread_close"]
    assert classify("AY1") == ["open", "spread_close"]
    assert classify("aʊ") == ["open", "rounded_close"]
    assert classify("y", alphabet="arpabet") == ["palatal"]


def test_class_targets_ordered():
    bil, open_, sil = CLASSES["bilabial"], CLASSES["open"], CLASSES["silence"]
    assert bil.target[PRESS] == 1.0 and bil.target[JAW] <= 0.06
    assert 0.7 <= open_.target[JAW] <= 0.9
    assert max(sil.target) <= 0.2 and sil.target[JAW] < 0.05
    assert bil.dominance > CLASSES["mid"].dominance and CLASSES["labiodental"].dominance > CLASSES["glottal"].dominance
    assert CLASSES["rounded_close"].target[PUCKER] > 0.8 and CLASSES["spread_close"].target[STRETCH] > 0.5


def test_shape_dtype_and_silence_edges():
    phones = seq(("m", 0.08), ("ɑː", 0.2), ("p", 0.08), ("a", 0.2))
    out = mouth_targets(phones, 40, FPS)
    assert out.shape == (40, 6) and out.dtype == np.float32
    assert np.all(out >= 0) and np.all(out <= 1)
    # Before speech and long after it the mouth rests closed.
    assert out[0, JAW] < 0.1 and out[-1, JAW] < 0.1
    assert mouth_targets([], 10, FPS).shape == (10, 6)
    assert np.all(mouth_targets([], 10, FPS)[:, JAW] < 0.05)


def test_bilabials_closed_in_the_middle_even_between_open_vowels():
    # Short bilabials (40-60 ms, about one frame) between long open vowels.
    phones = seq(("a", 0.25), ("b", 0.04), ("a", 0.25), ("m", 0.06), ("ɑ", 0.25), ("p", 0.05), ("æ", 0.3))
    out = mouth_targets(phones, 50, FPS)
    frames = bilabial_centre_frames(phones, 50, FPS)
    assert len(frames) == 3
    for f in frames:
        assert out[f, PRESS] >= 0.9 and out[f, JAW] <= 0.1
    # Open vowels open the jaw well above the closures.
    for p in phones:
        if p.symbol in ("a", "ɑ", "æ"):
            centre = frame_at(0.5 * (p.start_s + p.end_s))
            assert out[centre, JAW] > 0.5 and out[centre, JAW] > out[frames, JAW].max() + 0.4


def test_coarticulation_schwa_takes_context_but_closures_do_not():
    # Schwa (low dominance) between rounded vowels gets rounded; /p/ between open vowels stays shut.
    rounded = mouth_targets(seq(("u", 0.2), ("ə", 0.06), ("u", 0.2)), 30, FPS)
    schwa_frame = frame_at(0.2 + 0.2 + 0.03)
    assert rounded[schwa_frame, PUCKER] > 0.5
    alone = mouth_targets(seq(("t", 0.2), ("ə", 0.06), ("t", 0.2)), 30, FPS)
    assert alone[schwa_frame, PUCKER] < 0.2


def test_lips_lead_the_sound():
    # A bilabial starting at 0.5 s: the lips are already mostly closed on the frame showing
    # ~0.48 s, before the closure is heard.
    phones = [Phone("a", 0.2, 0.5), Phone("m", 0.5, 0.6), Phone("a", 0.6, 0.9)]
    led = mouth_targets(phones, 30, FPS)
    lagged = mouth_targets(phones, 30, FPS, lead_s=0.0)
    f = 11   # frame covering 0.44-0.48 s
    assert led[f, PRESS] > lagged[f, PRESS]


def test_unknown_symbols_fall_back_and_are_counted():
    unknown = Counter()
    out = mouth_targets([Phone("☃", 0.1, 0.4), Phone("QQQ9", 0.4, 0.6)], 20, FPS, unknown=unknown)
    assert unknown == Counter({"☃": 1, "QQQ9": 1})
    assert np.all(np.isfinite(out)) and 0.15 < out[6, JAW] < 0.45
    assert viseme_class("☃").name == "default"


def test_long_sequence_is_fast_and_finite():
    rng = np.random.default_rng(0)
    symbols = ["p", "a", "t", "i", "m", "u", "s", "ə", "", "f", "o"]
    phones, t = [], 0.0
    for _ in range(5000):
        d = float(rng.uniform(0.04, 0.15))
        phones.append(Phone(str(rng.choice(symbols)), t, t + d))
        t += d
    out = mouth_targets(phones, int(t * FPS) + 5, FPS)
    assert np.all(np.isfinite(out))
    frames = bilabial_centre_frames(phones, len(out), FPS)
    assert np.all(out[frames, PRESS] >= 0.9) and np.all(out[frames, JAW] <= 0.1)
