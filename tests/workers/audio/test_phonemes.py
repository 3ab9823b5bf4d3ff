"""Forced alignment of the LibriVox clip against its transcript with pocketsphinx."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInputError
from workers.audio.decode import load_audio
from workers.audio.features import compute_features
from workers.audio.phonemes import (
    BILABIALS,
    OPEN_VOWELS,
    PhoneSegment,
    align_transcript,
    normalize_transcript,
)

CLIP = "speech_librivox_austen_7s.wav"


@pytest.fixture(scope="module")
def speech(shared_assets) -> np.ndarray:
    return load_audio(shared_assets / CLIP)


@pytest.fixture(scope="module")
def transcript(shared_assets) -> str:
    """What the LibriVox clip says (its .txt beside it)."""
    return (shared_assets / CLIP).with_suffix(".txt").read_text()


@pytest.fixture(scope="module")
def segments(speech, transcript) -> list[PhoneSegment]:
    return align_transcript(speech, transcript)


def words_in_order(segments: list[PhoneSegment]) -> list[str]:
    """Word labels in time order, one per run of phones with the same label."""
    words: list[str] = []
    for segment in segments:
        if not words or segment.word != words[-1]:
            words.append(segment.word)
    return words


def test_words_come_out_in_transcript_order(segments, transcript):
    expected = transcript.split()
    # The transcript has no immediately repeated word, so label changes delimit words.
    assert all(a != b for a, b in zip(expected, expected[1:]))
    assert words_in_order(segments) == expected


def test_phones_are_arpabet_without_stress_and_include_bilabials(segments):
    phones = [segment.phone for segment in segments]
    assert all(phone.isalpha() and phone.isupper() for phone in phones)
    assert {"P", "M", "B"} <= set(phones)
    assert set(phones) & OPEN_VOWELS
    assert BILABIALS == {"P", "B", "M"}
    # Dictionary pronunciations: "mister" starts with M, "prudently" with P R.
    first_phones = {}
    for segment in segments:
        first_phones.setdefault(segment.word, []).append(segment.phone)
    assert first_phones["mister"][0] == "M"
    assert first_phones["prudently"][:2] == ["P", "R"]


def test_segments_are_monotonic_and_inside_the_clip(segments, speech):
    duration_s = len(speech) / 16000
    assert segments[0].start_s >= 0
    for segment in segments:
        assert segment.start_s < segment.end_s <= duration_s + 1e-9
    for earlier, later in zip(segments, segments[1:]):
        assert later.start_s >= earlier.end_s - 1e-9
    # The speech covers most of the clip, not a squeezed corner of it.
    assert segments[-1].end_s - segments[0].start_s > 0.7 * duration_s


def test_open_vowels_are_louder_than_bilabial_closures(segments, speech):
    # Cross-check the alignment against the audio: during P/B/M the lips are closed, so the
    # 300-2500 Hz bands carry much less energy than during open vowels.
    features = compute_features(speech, 16000, fps=100.0)

    def mid_band_db(phone_set):
        frames = [
            frame
            for segment in segments
            if segment.phone in phone_set
            for frame in range(int(segment.start_s * 100), int(segment.end_s * 100))
        ]
        return float(np.mean(features.band_energy_db[frames, 1:3]))

    assert mid_band_db(OPEN_VOWELS) > mid_band_db(BILABIALS) + 6


def test_numerals_are_spelled_as_spoken():
    # Whisper writes numbers as digits; the pronunciation dictionary knows only words.
    assert normalize_transcript("8 of spades, 4 of clubs, 1,500 times & 10%") == (
        "eight of spades four of clubs one thousand five hundred times and ten percent".split())


def test_punctuation_and_case_are_normalized(speech, transcript):
    messy = "And Mister John-Dashwood had then leisure, to consider how much there might be prudently in his power to do for them!"
    assert normalize_transcript(messy) == transcript.split()
    assert [segment.phone for segment in align_transcript(speech, messy)][:3] == ["AE", "N", "D"]


def test_unknown_words_are_skipped_not_fatal(speech, transcript):
    segments = align_transcript(speech, transcript + " qqxzv")
    assert "qqxzv" not in {segment.word for segment in segments}
    assert segments[-1].word == "them"


def test_empty_transcript_is_bad_input(speech):
    with pytest.raises(BadInputError, match="no words"):
        align_transcript(speech, "  ...  ")


def test_only_unknown_words_is_bad_input(speech):
    with pytest.raises(BadInputError, match="dictionary"):
        align_transcript(speech, "qqxzv zzkrq")


def test_silence_fails_alignment():
    with pytest.raises(BadInputError, match="alignment"):
        align_transcript(np.zeros(16000, np.float32), "and mister john dashwood")
