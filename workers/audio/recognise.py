"""Speech recognition: a transcript with word times and a confidence for every render.

faster-whisper (CTranslate2, CPU) decodes with the packaged Whisper models of
:mod:`workers.audio.whisper` (loaded from memory after their sha256 check, nothing
downloaded): ``tiny.en`` when the request's language is English, ``base`` (99 languages) for
any other language, and ``base`` with language detection when English decoding is not
confident (a request left at the default ``en`` with speech in another language).

Confidence is the mean of the decoder's word probabilities. Below :data:`MIN_CONFIDENCE`, or
when the result is no speech, only sound descriptions ("(music)", "♪"), or a language
neither Whisper nor espeak-ng can align, the transcript is not used: the render goes on with
audio-only lip sync and a warning (:attr:`Recognition.problem`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from core.languages import supported_languages
from core.speech import Transcript
from workers.audio.phonemes import spell_out
from workers.audio.whisper import PACKAGES, SAMPLE_RATE, load_encoder, model_files

logger = logging.getLogger(__name__)

VERSION = "asr-5-one-encoding-for-language-detection-faster-whisper-1.2.1"
# Mean word probability below which a transcript is not trusted. Measured (bench/speech.py):
# real English read speech 0.89-0.93 with tiny.en (shared clips, held-out asterisk prompts);
# espeak-ng English 0.72-0.78; the shared Spanish clip decoded by tiny.en as English 0.61;
# noise and tones give no words at all.
MIN_CONFIDENCE = 0.7
# A detected language must be at least this probable to switch away from the request's.
MIN_LANGUAGE_PROBABILITY = 0.5
# Less speech than this (seconds, from the VAD) is not worth recognising.
MIN_SPEECH_SECONDS = 0.3
# tiny.en and base agreeing on all but one word in this many make an unconfident result usable.
AGREEMENT_WORDS = 10
# Greedy decoding: beam search (5) costs ~2.5x for no measured WER gain on the shared clips.
BEAM_SIZE = 1
# Whisper reads 30 s windows, and CTranslate2's encoder runs through a short clip's window,
# padding and all (about 0.5 CPU-s a call here: most of a few-second clip's recognition). A
# window holding at least MIN_TRUNCATED_CONTENT_FRAMES of audio (frames of 10 ms) is encoded
# by the PyTorch port (workers.audio.whisper) over that audio and ENCODED_PADDING_FRAMES of its
# padding; the rest of the window's states are those of a window of padding alone, encoded once
# per model. The decoder must see the whole window: given only the clip's states it cannot tell
# where speech ends ("Go forward 10 meters." repeated to the token limit, 175 word errors on a
# 2.8 s clip), and with them it reads what the whole window gives (BENCHMARKS.md "Cost, round 6":
# 12/258 word errors both ways on 25 held-out clips of 2.5-7.3 s, at half the CPU). Shorter
# content is encoded whole as before: on 1-2 s prompts the decoder was less sure of the words
# (more of them fell under MIN_CONFIDENCE) and the cost hardly fell (the clips tiny.en doubts go
# to base as well). Only tiny.en's window is completed so: base (other languages), given the
# padding's states, was less sure of its French words (2 of 14 held-out prompts fell under
# MIN_CONFIDENCE, 52/166 word errors against 31 on the clip's states alone and 29 whole).
MIN_TRUNCATED_CONTENT_FRAMES = 250
ENCODED_PADDING_FRAMES = 100
PADDING_STATES_MODELS = ("tiny.en",)
_DESCRIPTION = re.compile(r"[\(\[][^\)\]]*[\)\]]|[♪♫*]")


@dataclass(frozen=True)
class RecognisedWord:
    """One word as decoded: text, start and end in seconds of the clip, probability in [0, 1]."""

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Recognition:
    """What the recogniser made of a clip.

    Attributes:
        text: the transcript ("" when nothing was recognised).
        language: ISO 639-1 code of the text (``en``, ``es``...).
        words: the words with their times.
        confidence: mean word probability in [0, 1] (0 without words).
        model: packaged model name that decoded it (``tiny.en`` or ``base``).
        model_version: that model's version (file sha256 prefix).
        problem: why the transcript must not drive the lips; None when it may.
        language_probability: Whisper's probability of ``language`` when it was detected.
    """

    text: str
    language: str
    words: tuple[RecognisedWord, ...]
    confidence: float
    model: str
    model_version: str
    problem: str | None = None
    language_probability: float | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def transcript(self) -> Transcript:
        """The render's transcript record of this recognition."""
        return Transcript(text=self.text, source="recognised", language=self.language,
                          confidence=round(self.confidence, 3), model=self.model_version, words=len(self.words),
                          used=self.usable, problem=self.problem)


@lru_cache(maxsize=1)
def _clip_length_model_class():
    import ctranslate2
    from faster_whisper import WhisperModel

    class ClipLengthWhisperModel(WhisperModel):
        """faster-whisper whose encoder skips most of a window's padding (see
        :data:`MIN_TRUNCATED_CONTENT_FRAMES`); other windows go to CTranslate2's own encoder."""

        def __init__(self, name: str, **options):
            super().__init__(name, **options)
            self.encoder_port = load_encoder(name)
            self._padding: np.ndarray | None = None
            self._detected: tuple[np.ndarray, object] | None = None     # (window, its states)

        def detect(self, wave16k: np.ndarray) -> tuple[str, float]:
            """(language code, its probability) from the clip's first window, encoded as
            ``transcribe`` encodes that window afterwards (its content without the last mel
            frame, padded to 30 s), so :meth:`encode` hands the decoder the same states again
            instead of running the encoder twice (faster-whisper's own detection pads a
            slightly different window and its states are thrown away)."""
            from faster_whisper.audio import pad_or_trim

            mel = self.feature_extractor(wave16k)
            window = pad_or_trim(mel[:, :min(self.feature_extractor.nb_max_frames, mel.shape[-1] - 1)])
            states = self.encode(window)
            self._detected = (window, states)
            token, probability = self.model.detect_language(states)[0][0]
            return token[2:-2], float(probability)

        def encode(self, features: np.ndarray):
            """(80, 3000) or (1, 80, 3000) log-mel window, zero-padded past its content ->
            encoder states as a CTranslate2 StorageView: (1, 1500, width), or for a model not in
            :data:`PADDING_STATES_MODELS` (1, frames / 2, width) over the content and its padding."""
            window = features[0] if features.ndim == 3 else features
            detected, self._detected = self._detected, None
            if detected is not None and np.array_equal(detected[0], window):
                return detected[1]           # the window language detection just encoded
            content = np.flatnonzero(np.any(window != 0.0, axis=0))
            content_frames = int(content[-1]) + 1 if len(content) else 0
            frames = content_frames + ENCODED_PADDING_FRAMES
            frames += frames % 2                  # the encoder's stride-2 convolution
            if content_frames < MIN_TRUNCATED_CONTENT_FRAMES or frames >= window.shape[1]:
                return super().encode(features)
            states = self.encoder_port.encode(window[None, :, :frames])
            if self.encoder_port.name in PADDING_STATES_MODELS:
                states = np.concatenate([states, self._padding_states(window.shape)[:, states.shape[1]:]], axis=1)
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(states, dtype=np.float32))

        def _padding_states(self, shape: tuple[int, int]) -> np.ndarray:
            """(1, frames / 2, width) states of a window of padding alone (zeros, as faster-whisper
            pads a window's log-mel), from the same port, encoded once per model."""
            if self._padding is None or self._padding.shape[1] != -(-shape[1] // 2):
                self._padding = self.encoder_port.encode(np.zeros((1, *shape), np.float32))
            return self._padding

    return ClipLengthWhisperModel


@lru_cache(maxsize=2)
def _model(name: str):
    threads = max(1, min(4, os.cpu_count() or 1))
    return _clip_length_model_class()(name, device="cpu", compute_type="int8", cpu_threads=threads,
                                      files=dict(model_files(name)))


def _decode(wave16k: np.ndarray, name: str, language: str | None) -> Recognition:
    """One faster-whisper pass; ``language`` None detects it (multilingual models only)."""
    model = _model(name)
    language_probability = None
    if language is None:
        language, language_probability = model.detect(wave16k)
    segments, info = model.transcribe(wave16k, language=language, beam_size=BEAM_SIZE, word_timestamps=True,
                                      condition_on_previous_text=False, vad_filter=False)
    segments = list(segments)       # a generator: decoding happens here
    words = tuple(RecognisedWord(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                  for segment in segments for w in (segment.words or []) if w.word.strip())
    # The segments' own text keeps elisions whole ("n'êtes"), which joining the words would split.
    text = " ".join(segment.text.strip() for segment in segments if segment.text.strip())
    confidence = float(np.mean([w.probability for w in words])) if words else 0.0
    return Recognition(text=text, language=info.language, words=words, confidence=confidence, model=name,
                       model_version=PACKAGES[name].version,
                       language_probability=language_probability)


def _judge(result: Recognition, alignable: bool) -> Recognition:
    """The result with ``problem`` set when it must not be used."""
    spoken = _DESCRIPTION.sub(" ", result.text)
    problem = None
    if not re.search(r"\w", spoken):
        problem = "no speech recognised"
    elif result.confidence < MIN_CONFIDENCE:
        problem = f"speech recognition confidence {result.confidence:.2f} < {MIN_CONFIDENCE:.2f}"
    elif not alignable:
        problem = f"recognised language {result.language!r} has no espeak-ng voice to align it"
    if problem is None:
        return result
    return replace(result, problem=problem)


def _agreed(english: Recognition, detected: Recognition) -> Recognition:
    """tiny.en's unconfident result, usable when base (which decoded the clip anyway to
    detect its language, and found English) heard the same words.

    Short clips are where tiny.en is least sure of words it gets right: the alsa channel
    names ("front center", 1-2 s) come back right at 0.47-0.67, the first word of a clip having
    no context. Two models of different size and training agreeing on every word (at most one
    word in :data:`AGREEMENT_WORDS` differing) is the evidence the mean word probability
    lacks; the more confident decoding is kept, and the aligner's own confidence still refuses
    text that does not fit the audio (bench/rendered_heldout.py, BENCHMARKS.md round 3)."""
    errors, words = word_errors(spell_out(detected.text), spell_out(english.text))
    if not re.search(r"\w", _DESCRIPTION.sub(" ", detected.text)) or errors * AGREEMENT_WORDS > max(words, 1):
        return english
    best = detected if detected.confidence > english.confidence else english
    return replace(best, problem=None, confidence=max(english.confidence, detected.confidence))


def _alignable(language: str) -> bool:
    return language == "en" or language in supported_languages()


def words_of(text: str) -> list[str]:
    """Lower-case words of a text, punctuation dropped (apostrophes kept), for scoring."""
    return re.sub(r"[^\w' ]", " ", text.lower().replace("-", " ")).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance: substitutions + insertions + deletions, number of reference
    words); the word error rate is their ratio."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, heard in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != heard))
    return row[-1], len(ref)


def recognise(wave16k: np.ndarray, language: str = "en", speech_seconds: float | None = None) -> Recognition:
    """Transcribe a clip (see the module docstring for the model choice).

    Args:
        wave16k: (samples,) float waveform at 16 kHz, mono.
        language: the request's espeak-ng language code (``en``, ``es``, ``pt-br``...); its
            first part names the Whisper language.
        speech_seconds: seconds of speech found by the VAD; below MIN_SPEECH_SECONDS nothing
            is decoded.

    Returns:
        A Recognition; never raises for what the audio holds (music, noise, silence, an
        unknown language): those come back with ``problem`` set.
    """
    wave16k = np.ascontiguousarray(wave16k, dtype=np.float32).reshape(-1)
    whisper_language = (language or "en").split("-")[0].lower()
    if speech_seconds is not None and speech_seconds < MIN_SPEECH_SECONDS or len(wave16k) < SAMPLE_RATE // 10:
        return Recognition("", whisper_language, (), 0.0, "", "", f"no speech found ({speech_seconds or 0.0:.1f} s)")
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if whisper_language == "en":
        english = _judge(_decode(wave16k, "tiny.en", "en"), True)
        if english.usable:
            return english
        # Perhaps not English at all: let the multilingual model name the language.
        detected = _decode(wave16k, "base", None)
        if detected.language != "en" and (detected.language_probability or 0.0) >= MIN_LANGUAGE_PROBABILITY:
            return _judge(detected, _alignable(detected.language))
        if detected.language == "en" and english.problem and english.problem.startswith("speech recognition confidence"):
            return _agreed(english, detected)
        return english
    if whisper_language not in _LANGUAGE_CODES:
        return Recognition("", whisper_language, (), 0.0, "", "",
                           f"language {language!r} is not one Whisper recognises")
    return _judge(_decode(wave16k, "base", whisper_language), True)
