"""Phone-level forced alignment of an English transcript with pocketsphinx 5.

The default US-English acoustic model and CMU dictionary ship inside the pocketsphinx
wheel, so this needs no downloads. Alignment runs in two passes, as pocketsphinx requires:
a word-level pass with the transcript as the only allowed path, then a sub-word pass
(``set_alignment``) that yields phone boundaries in 10 ms frames.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

import numpy as np
from pocketsphinx import Decoder

from core.errors import BadInputError

logger = logging.getLogger(__name__)

ALIGN_SAMPLE_RATE = 16000
# pocketsphinx's default front end analyses 100 frames per second (10 ms frame shift).
FRAMES_PER_SECOND = 100

BILABIALS = frozenset({"P", "B", "M"})
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})

# Words the aligner inserts itself (silence, noise fillers) rather than words of the text.
_NON_SPEECH_WORD = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
_PRONUNCIATION_VARIANT = re.compile(r"\(\d+\)$")
_STRESS_DIGITS = re.compile(r"\d+$")


@dataclass(frozen=True)
class PhoneSegment:
    """One aligned phone.

    Attributes:
        phone: ARPAbet symbol without stress digit, e.g. 'P', 'AA'.
        start_s: start time in seconds from the start of the audio.
        end_s: end time in seconds (exclusive); equals the next phone's start within a word.
        word: the transcript word (lower case, no pronunciation variant) it belongs to.
    """

    phone: str
    start_s: float
    end_s: float
    word: str


SYMBOL_WORDS = {"#": " pound ", "*": " star ", "&": " and ", "%": " percent ", "+": " plus ", "@": " at "}
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(number: int) -> str:
    """English words of 0 <= number < 1,000,000 (``162`` -> ``one hundred sixty two``)."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    if number < 1_000_000:
        thousands, rest = divmod(number, 1000)
        return number_words(thousands) + " thousand" + ("" if rest == 0 else " " + number_words(rest))
    raise ValueError(f"{number} is too large to spell")


def spell_out(text: str) -> str:
    """The transcript as spoken: numerals and keypad symbols become words."""
    for symbol, words in SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} " if len(m.group()) <= 6 else m.group(), text)


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words as the CMU dictionary spells them.

    Numerals and symbols are spelled as spoken (:func:`spell_out`: Whisper writes "10 of
    clubs", the dictionary knows "ten"); keeps letters and in-word apostrophes; hyphens,
    dashes and other punctuation split words.
    """
    text = spell_out(text).lower().replace("\u2019", "'").replace("\u2018", "'")
    words = re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text)
    return words


def _new_decoder() -> Decoder:
    # loglevel FATAL keeps pocketsphinx's (C-level, stderr) logging out of worker logs.
    return Decoder(samprate=ALIGN_SAMPLE_RATE, loglevel="FATAL")


@functools.lru_cache(maxsize=1)
def _dictionary_decoder() -> Decoder:
    return _new_decoder()


def in_dictionary(word: str) -> bool:
    """Whether a lower-case word (as :func:`normalize_transcript` gives it) can be aligned."""
    return _dictionary_decoder().lookup_word(word) is not None


def align_transcript(wave16k: np.ndarray, text: str) -> list[PhoneSegment]:
    """Force-align ``text`` to speech and return its phones in time order.

    Words missing from the pronunciation dictionary (rare names, numerals) are left out of
    the alignment with a warning, so their audio is absorbed by neighbouring words or
    silence; the alignment fails only if no word of the text is known.

    Args:
        wave16k: (num_samples,) float waveform in [-1, 1] at 16 kHz, mono.
        text: English transcript of the speech.

    Returns:
        Phones of the transcript's words in order (silences omitted: the gaps between
        segments are pauses). Times are in seconds and lie within the audio.

    Raises:
        BadInputError: empty audio or transcript, no known word, or the aligner failed.
    """
    wave16k = np.asarray(wave16k, dtype=np.float32).reshape(-1)
    if wave16k.size == 0:
        raise BadInputError("audio for phone alignment is empty.")
    words = normalize_transcript(text)
    if not words:
        raise BadInputError("transcript has no words to align.")

    decoder = _new_decoder()
    known_words = [word for word in words if decoder.lookup_word(word) is not None]
    unknown_words = sorted(set(words) - set(known_words))
    if not known_words:
        raise BadInputError(f"no transcript word is in the pronunciation dictionary ({', '.join(unknown_words[:5])}).")
    if unknown_words:
        logger.warning("phone alignment skips words not in the dictionary: %s", ", ".join(unknown_words))

    pcm = (np.clip(wave16k, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    try:
        decoder.set_align_text(" ".join(known_words))
        _decode_utterance(decoder, pcm)
        decoder.set_alignment()
        _decode_utterance(decoder, pcm)
        alignment = decoder.get_alignment()
    except RuntimeError as error:
        raise BadInputError(f"phone alignment of the transcript failed ({error}).") from None
    if alignment is None:
        raise BadInputError("phone alignment of the transcript failed (no alignment produced).")

    duration_s = len(wave16k) / ALIGN_SAMPLE_RATE
    segments: list[PhoneSegment] = []
    aligned_words: list[str] = []
    for word_entry in alignment:
        if _NON_SPEECH_WORD.match(word_entry.name):
            continue
        word = _PRONUNCIATION_VARIANT.sub("", word_entry.name)
        aligned_words.append(word)
        for phone_entry in word_entry:
            start_s = min(phone_entry.start / FRAMES_PER_SECOND, duration_s)
            end_s = min((phone_entry.start + phone_entry.duration) / FRAMES_PER_SECOND, duration_s)
            segments.append(PhoneSegment(_STRESS_DIGITS.sub("", phone_entry.name), start_s, end_s, word))

    if aligned_words != known_words or not segments:
        raise BadInputError("phone alignment of the transcript failed (the aligner did not place every word).")
    return segments


def _decode_utterance(decoder: Decoder, pcm: bytes) -> None:
    decoder.start_utt()
    # full_utt: the whole clip is one utterance, so no speech may be cut by endpointing.
    decoder.process_raw(pcm, no_search=False, full_utt=True)
    decoder.end_utt()
