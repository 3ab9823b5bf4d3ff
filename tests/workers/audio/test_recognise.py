"""Speech recognition (packaged Whisper via faster-whisper) and voice activity (silero-vad)
on the shared real recordings, synthesized noise and tones, and espeak-ng speech with pauses."""

from __future__ import annotations

import numpy as np
import pytest

from workers.audio.decode import load_audio
from workers.audio.recognise import MIN_CONFIDENCE, recognise, word_errors
from workers.audio.vad import speech_mask, speech_probability

ARCTIC_A0009 = "He turned sharply, and faced Gregson across the table."


def test_english_speech_gets_a_confident_transcript_with_word_times(shared_assets):
    wave = load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000, 60)
    reference = (shared_assets / "speech_librivox_austen_7s.txt").read_text()
    result = recognise(wave, "en")
    assert result.usable and result.model == "tiny.en" and result.language == "en", result
    assert result.confidence >= MIN_CONFIDENCE
    errors, count = word_errors(reference, result.text)
    assert errors / count <= 0.1, result.text
    starts = [w.start_s for w in result.words]
    assert starts == sorted(starts) and 0.0 <= starts[0] and result.words[-1].end_s <= len(wave) / 16000 + 0.05
    # The first word starts after the recording's leading silence that the VAD finds too.
    mask = speech_mask(speech_probability(wave, 25.0), 25.0)
    assert abs(result.words[0].start_s - np.argmax(mask) / 25.0) < 0.3


def test_spanish_speech_is_recognised_with_the_multilingual_model(shared_assets):
    wave = load_audio(shared_assets / "speech_asterisk_esMX_allison_28s_8k.wav", 16000, 60)[: 9 * 16000]
    given = recognise(wave, "es")
    assert given.usable and given.model == "base" and given.language == "es", given
    assert "número" in given.text.lower() and "grabar" in given.text.lower(), given.text
    # Left at the default English, the English model is not confident and the language is detected.
    detected = recognise(wave, "en")
    assert detected.usable and detected.language == "es" and detected.model == "base", detected
    assert detected.language_probability >= 0.5


def test_a_short_clip_is_used_when_both_models_hear_the_same_words(shared_assets):
    """0.9 s of LibriVox ("much there might"): tiny.en gets the words right but below the
    confidence bar (no context before the first word); base, run to detect the language,
    hears the same words, so the transcript is used, at the unconfident level it has."""
    wave = load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000, 60)[int(3.95 * 16000): int(4.81 * 16000)]
    result = recognise(wave, "en")
    assert result.usable and result.language == "en", result
    assert result.confidence < MIN_CONFIDENCE
    assert word_errors("much there might", result.text)[0] == 0, result.text


def test_a_short_clip_the_models_disagree_on_is_not_used(shared_assets):
    # 1 s of LibriVox cut inside "leisure": tiny.en "had then leave", base "had then le-".
    wave = load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000, 60)[int(1.53 * 16000): int(2.51 * 16000)]
    result = recognise(wave, "en")
    assert not result.usable and "confidence" in result.problem, result


@pytest.mark.parametrize("kind", ["noise", "tones", "silence"])
def test_noise_music_and_silence_give_no_transcript_and_no_error(kind):
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 4) / 16000
    wave = {"noise": rng.standard_normal(len(t)) * 0.05,
            "tones": 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0) + 0.1 * np.sin(2 * np.pi * 660 * t),
            "silence": np.zeros(len(t))}[kind].astype(np.float32)
    speech_seconds = speech_mask(speech_probability(wave, 25.0), 25.0).sum() / 25.0
    result = recognise(wave, "en", speech_seconds)
    assert not result.usable and result.problem, result


def test_an_unknown_whisper_language_is_a_problem_not_an_error(shared_assets):
    wave = load_audio(shared_assets / "speech_cmu_arctic_a0009_3s.wav", 16000, 60)
    result = recognise(wave, "xx-yy")
    assert not result.usable and "not one Whisper recognises" in result.problem


def test_voice_activity_finds_the_pause_between_two_phrases():
    from workers.audio.espeak import synthesize

    first, _ = synthesize("Good morning, everybody.", "en-us", rate_wpm=160, seed=0)
    second, _ = synthesize("Shall we begin the meeting?", "en-us", rate_wpm=160, seed=0)
    pause = np.random.default_rng(2).standard_normal(16000).astype(np.float32) * 0.002   # 1 s of room noise
    wave = np.concatenate([pause[:8000], first, pause, second, pause[:8000]])
    probability = speech_probability(wave, 25.0)
    mask = speech_mask(probability, 25.0)
    assert len(mask) == round(len(wave) / 16000 * 25)
    # Frames: 0.5 s of noise (12.5), the first phrase, 1 s of noise (25), the second phrase.
    first_end = 12.5 + len(first) / 16000 * 25
    assert not mask[:10].any() and mask[15:int(first_end) - 2].all()
    # The pause is silence once the VAD's hangover (~0.2 s) is past; the second phrase is speech.
    assert not mask[int(first_end) + 8:int(first_end) + 23].any()
    assert mask[int(first_end) + 28:int(first_end) + 25 + int(len(second) / 16000 * 25) - 3].all()


def test_a_short_window_is_encoded_over_its_speech_not_its_padding(shared_assets):
    """A 3 s clip's 30 s window is nine tenths padding: the port encodes the clip and
    ENCODED_PADDING_FRAMES of padding, and the rest of the window's states are a window of
    padding's own, so the decoder still reads a whole window (1500 states). A window of speech
    throughout, and one with under MIN_TRUNCATED_CONTENT_FRAMES of audio, are encoded whole
    (CTranslate2's encoder)."""
    from faster_whisper.audio import pad_or_trim

    from workers.audio.recognise import (
        ENCODED_PADDING_FRAMES,
        MIN_TRUNCATED_CONTENT_FRAMES,
        _model,
    )

    model = _model("tiny.en")

    def encoded(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mel = model.feature_extractor(wave)[:, :-1]
        window = pad_or_trim(mel)
        states = np.array(model.encode(window))
        assert states.shape == (1, 1500, 384)
        return mel, states

    mel, states = encoded(load_audio(shared_assets / "speech_cmu_arctic_a0009_3s.wav", 16000, 60))
    frames = mel.shape[1]
    assert frames >= MIN_TRUNCATED_CONTENT_FRAMES
    spoken = -(-(frames + ENCODED_PADDING_FRAMES) // 2)
    window = pad_or_trim(mel)
    port = model.encoder_port.encode(window[None, :, :2 * spoken])
    np.testing.assert_allclose(states[:, :spoken], port, atol=1e-5)
    padding = model.encoder_port.encode(np.zeros((1, *window.shape), np.float32))
    np.testing.assert_allclose(states[:, spoken:], padding[:, spoken:], atol=1e-5)
    # what the speech's states do not reach is padding; the spoken part is not
    assert np.abs(states[:, :spoken] - padding[:, :spoken]).mean() > 10 * np.abs(states[:, spoken:] - padding[:, spoken:]).mean()
    librivox = load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000, 60)
    mel, states = encoded(librivox[: 2 * 16000])
    assert mel.shape[1] < MIN_TRUNCATED_CONTENT_FRAMES
    whole = np.array(super(type(model), model).encode(pad_or_trim(mel)))
    np.testing.assert_array_equal(states, whole)
    long = load_audio(shared_assets / "speech_asterisk_esMX_allison_28s_8k.wav", 16000, 60)
    encoded(np.concatenate([long, long]))


def test_a_short_line_tiny_en_doubts_is_encoded_once_for_base_s_language_detection_and_words(monkeypatch):
    """A short espeak-ng line tiny.en is unsure of goes to base, which names the language and
    decodes: one encoding of its window serves both (faster-whisper's own detection encoded a
    window of its own, then transcribe encoded the window again), and the language detected is
    the one faster-whisper's own detection finds, at the same probability."""
    from faster_whisper import WhisperModel

    from workers.audio.espeak import synthesize
    from workers.audio.recognise import _model

    wave, _ = synthesize("Get down!", "en-us")
    encoded = []
    whole_window = WhisperModel.encode

    def counted(model, features):
        encoded.append(model.encoder_port.name)
        return whole_window(model, features)

    monkeypatch.setattr(WhisperModel, "encode", counted)
    result = recognise(wave, "en")
    assert encoded == ["tiny.en", "base"], encoded
    assert result.usable and result.language == "en", result
    assert word_errors("get down", result.text)[0] == 0, result.text
    monkeypatch.undo()
    base = _model("base")
    # faster-whisper's detection on the window transcribe decodes (the content less its last mel
    # frame), asked first so that it encodes the window itself; on the whole clip, the same language
    # (one mel frame more moves a short line's probability by up to ~0.1, so only the language).
    mel = base.feature_extractor(wave)
    theirs, their_probability, _ = base.detect_language(features=mel[:, : mel.shape[1] - 1])
    language, probability = base.detect(wave)
    assert language == theirs == "en" and abs(probability - their_probability) < 0.02
    assert base.detect_language(wave)[0] == "en"
