"""Transcript alignment (workers.audio.align) on real and synthesized speech.

Synthesized references: espeak-ng Klatt voices (``+klatt3`` / ``+klatt4``, slower and lower
than the aligner's own default voice, with leading silence and noise); their phoneme events
are the true phone times. The aligner speaks the text with the plain language voice.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInputError
from core.languages import check_language, supported_languages
from workers.audio.align import MIN_CONFIDENCE, align, dtw_path
from workers.audio.decode import load_audio
from workers.audio.espeak import synthesize

TEXTS = {
    "es": "Mañana comemos paella con mis primos en la playa de Valencia.",
    "de": "Mein Papa baut ein Boot am Bodensee, und wir fahren mit dem Bus nach München.",
    "fr": "Le petit garçon mange une pomme dans le jardin de sa mère.",
    "it": "Il mio babbo compra il pane e la frutta al mercato ogni mattina.",
}
REFERENCE = {"es": ("es+klatt3", 140), "de": ("de+klatt4", 210), "fr": ("fr+klatt3", 150), "it": ("it+klatt4", 130)}
LEAD_S = 0.5


def reference_speech(language: str, text: str | None = None):
    voice, rate = REFERENCE[language]
    wave, phones = synthesize(text or TEXTS[language], voice, rate_wpm=rate, pitch=30, seed=7)
    lead = np.zeros(int(LEAD_S * 16000), np.float32)
    wave = np.concatenate([lead, wave, lead[:4000]])
    wave = wave + np.random.default_rng(1).standard_normal(len(wave)).astype(np.float32) * 0.003
    return wave, [p for p in phones if p.symbol != "_"]


def boundary_errors_ms(reference, aligned) -> np.ndarray:
    assert [p.symbol for p in aligned] == [p.symbol for p in reference]
    truth = np.array([p.start_s + LEAD_S for p in reference])
    return np.abs(np.array([p.start_s for p in aligned]) - truth) * 1000.0


@pytest.mark.parametrize("language", ["es", "de", "fr"])
def test_dtw_places_phone_boundaries_of_another_voice(language):
    wave, reference = reference_speech(language)
    result = align(wave, TEXTS[language], language)
    assert result.method == "espeak-dtw"
    errors = boundary_errors_ms(reference, result.phones)
    assert np.median(errors) < 25.0, np.median(errors)
    assert np.mean(errors < 50.0) > 0.85, np.mean(errors < 50.0)
    assert result.confidence >= MIN_CONFIDENCE and result.matches
    assert all(0.0 <= p.start_s < p.end_s <= len(wave) / 16000 for p in result.phones)


def test_text_that_does_not_match_the_audio_scores_low():
    wave, _ = reference_speech("es")
    wrong = align(wave, "Los perros ladran toda la noche cuando llueve sobre el tejado viejo.", "es")
    assert wrong.confidence < MIN_CONFIDENCE and not wrong.matches


def test_english_real_recording_aligns_with_pocketsphinx_and_rejects_wrong_text(shared_assets):
    wave = load_audio(shared_assets / "speech_librivox_austen_7s.wav")
    text = (shared_assets / "speech_librivox_austen_7s.txt").read_text()
    result = align(wave, text, "en")
    assert result.method == "pocketsphinx" and result.matches, result.confidence
    assert sum(p.symbol in ("P", "B", "M") for p in result.phones) >= 5
    wrong = align(wave, "Please pass the big blue book to Bobby before the bus leaves the station.", "en")
    assert not wrong.matches, wrong.confidence


def test_unsupported_language_is_a_clear_error():
    with pytest.raises(BadInputError, match=r"unsupported language code 'xx'.*espeak-ng --voices"):
        align(np.zeros(16000, np.float32), "hello", "xx")
    with pytest.raises(BadInputError):
        check_language("english")


def test_language_codes_and_aliases():
    assert {"en", "es", "de", "fr", "pt-br", "it"} <= set(supported_languages())
    assert check_language("EN") == "en" and check_language("pt_BR") == "pt-br"
    assert supported_languages()["fr"] == "fr" and supported_languages()["en"] == "en-us"


def test_dtw_path_is_monotone_and_follows_a_stretched_copy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 8)).astype(np.float32)
    b = np.repeat(a, 2, axis=0)                       # b is a at half speed
    path, cost, best, _ = dtw_path(a, b)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (39, 79)
    assert np.all(np.diff(path, axis=0) >= 0)
    assert cost < 1e-5 and best < 1e-5
    assert all(j // 2 == i for i, j in path)


def test_a_clip_over_pocketsphinx_length_keeps_the_dtw_timings(shared_assets, monkeypatch):
    """pocketsphinx's one-utterance alignment grows with the square of the clip (10.3 GB on a
    10-minute dub): past ``MAX_POCKETSPHINX_SECONDS`` an English clip without word times keeps
    espeak + DTW's timings. The limit is lowered here so that the shared 7 s reading is "long"."""
    import workers.audio.align as align_module

    wave = load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000)
    text = (shared_assets / "speech_librivox_austen_7s.txt").read_text()
    assert align(wave, text, "en").method == "pocketsphinx"
    monkeypatch.setattr(align_module, "MAX_POCKETSPHINX_SECONDS", 5.0)
    long = align(wave, text, "en")
    assert long.method == "espeak-dtw" and long.matches
    assert long.phones[-1].end_s > 0.8 * len(wave) / 16000


def test_a_long_clip_with_word_times_is_aligned_span_by_span(shared_assets, monkeypatch):
    """With a recogniser's word times a long clip is cut at pauses between words and each span
    aligned alone: the phones match the whole clip's alignment (limits lowered so that the
    shared 7 s reading is "long" and cut into 3 s spans)."""
    import difflib

    import workers.audio.align as align_module
    from workers.audio.recognise import recognise

    wave = load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000)
    recognition = recognise(wave, "en")
    words = [(word.text, word.start_s, word.end_s) for word in recognition.words]
    whole = align(wave, recognition.text, "en", words=words)
    monkeypatch.setattr(align_module, "MAX_POCKETSPHINX_SECONDS", 5.0)
    monkeypatch.setattr(align_module, "SPAN_SECONDS", 3.0)
    spans = align_module.spans_at_pauses(words, len(wave) / 16000)
    assert len(spans) >= 2 and spans[0][0] == 0.0 and spans[-1][1] == len(wave) / 16000
    assert " ".join(span[2] for span in spans).split() == recognition.text.split()
    split = align(wave, recognition.text, "en", words=words)
    assert split.method == "pocketsphinx" == whole.method
    ours, theirs = [p.symbol for p in split.phones], [p.symbol for p in whole.phones]
    matcher = difflib.SequenceMatcher(a=theirs, b=ours, autojunk=False)
    pairs = [(i, j) for block in matcher.get_matching_blocks()
             for i, j in zip(range(block.a, block.a + block.size), range(block.b, block.b + block.size))]
    assert len(pairs) >= 0.9 * len(theirs)
    shifts = np.abs([whole.phones[i].start_s - split.phones[j].start_s for i, j in pairs])
    assert np.median(shifts) < 0.02


def test_a_span_pocketsphinx_cannot_fit_keeps_the_dtw_timings_alone(shared_assets, monkeypatch):
    """One span whose words do not fit its audio (here the recogniser's words of the middle
    span replaced by others) keeps espeak + DTW's phones in its stretch; the other spans keep
    pocketsphinx's (limits lowered so that the shared 7 s reading is "long", in 3 s spans)."""
    import workers.audio.align as align_module
    from workers.audio.recognise import recognise

    wave = load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000)
    words = [(word.text, word.start_s, word.end_s) for word in recognise(wave, "en").words]
    monkeypatch.setattr(align_module, "MAX_POCKETSPHINX_SECONDS", 5.0)
    monkeypatch.setattr(align_module, "SPAN_SECONDS", 3.0)
    spans = align_module.spans_at_pauses(words, len(wave) / 16000)
    assert len(spans) >= 3
    middle_start, middle_end, middle_text = spans[1]
    replacement = iter(["zebra", "quantum", "xylophone", "jukebox"] * 10)
    words = [(next(replacement) if middle_start <= start < middle_end else text, start, end)
             for text, start, end in words]
    text = " ".join(word[0] for word in words)
    result = align(wave, text, "en", words=words)
    assert result.method == "pocketsphinx+dtw"
    dtw = align_module.align_dtw(wave, text, "en")
    inside = [p for p in result.phones if middle_start <= p.start_s < middle_end]
    assert inside and inside == [p for p in dtw.phones if middle_start <= p.start_s < middle_end]
    # pocketsphinx's ARPAbet phones on both sides of the stretch (DTW's are espeak-ng IPA)
    before = [p for p in result.phones if p.start_s < middle_start]
    after = [p for p in result.phones if p.start_s >= middle_end]
    spoken = [p.symbol for p in before + after if p.symbol not in ("", "pau", "SIL", "_")]
    assert before and after and spoken and all(symbol.isupper() for symbol in spoken), spoken
    starts = [p.start_s for p in result.phones]
    assert starts == sorted(starts)
