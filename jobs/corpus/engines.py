"""The text-to-speech engines of the corpus, each giving phone timings.

* espeak-ng, through libespeak-ng's C callback API (ctypes): many languages and voice
  variants, rates 120-220 wpm, varied pitch and pitch range; phone start times come from
  its ``espeakEVENT_PHONEME`` events (IPA names, ``audio_position`` in ms).
* festival (``festival --batch`` with a small Scheme script): English diphone and HTS
  voices; the script saves the wave and prints the ``Segment`` relation's end times.
* flite (CLI): English voices; it reports no timings, so the phones come from a
  pocketsphinx forced alignment of the text (``workers.audio.phonemes.align_transcript``).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.corpus import SAMPLE_RATE
from jobs.corpus.texts import pick_text
from workers.audio.espeak import EngineError, Espeak, events_to_phones, to_16k
from workers.motion.articulation import Phone

logger = logging.getLogger(__name__)

ENGINE_WEIGHTS = {"espeak": 0.6, "festival": 0.2, "flite": 0.2}

# espeak-ng voice names (as espeak_SetVoiceByName takes them) per language.
ESPEAK_LANGUAGES: dict[str, list[str]] = {
    "en": ["en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029"],
    "de": ["de"], "fr": ["fr", "fr-be"], "es": ["es", "es-419"], "it": ["it"],
    "pt": ["pt", "pt-br"], "nl": ["nl"], "pl": ["pl"], "ru": ["ru"], "hi": ["hi"],
}
ESPEAK_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7",
                   "+f1", "+f2", "+f3", "+f4", "+f5", "+klatt", "+klatt2", "+croak"]
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]


@dataclass
class Synth:
    """One synthesized utterance before augmentation."""

    wave: np.ndarray          # (samples,) float32 at SAMPLE_RATE
    phones: list[Phone]       # times in seconds
    alphabet: str             # "ipa" or "arpabet"
    voice: str
    language: str
    text: str


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A 16-bit WAV file as (samples,) float32 in [-1, 1) (channels averaged) and its sample rate."""
    with wave.open(str(path), "rb") as handle:
        rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
        data = handle.readframes(handle.getnframes())
    if width != 2:
        raise EngineError(f"unexpected sample width {width}")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def synth_espeak(rng: np.random.Generator) -> Synth:
    engine = Espeak.get()
    language = str(rng.choice(sorted(ESPEAK_LANGUAGES)))
    voice = str(rng.choice(ESPEAK_LANGUAGES[language])) + str(rng.choice(ESPEAK_VARIANTS))
    text = pick_text(rng, language)
    rate, pitch, pitch_range = int(rng.integers(120, 221)), int(rng.integers(25, 76)), int(rng.integers(25, 81))
    samples, events = engine.synth_isolated(text, voice, rate, pitch, pitch_range, int(rng.integers(2 ** 31)))
    if samples.size < engine.sample_rate // 10:
        raise EngineError("espeak-ng produced no audio")
    wave16 = to_16k(samples, engine.sample_rate)
    phones = events_to_phones(events, len(wave16) / SAMPLE_RATE)
    return Synth(wave16, phones, "ipa", f"{voice}@{rate}wpm", language, text)


FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices",)


def festival_voices() -> list[str]:
    if shutil.which("festival") is None:
        return []
    voices = []
    for root in FESTIVAL_VOICE_DIRS:
        for path in sorted(Path(root).glob("*/*")):
            if path.is_dir():
                voices.append(path.name)
    return voices


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synth_festival(rng: np.random.Generator, voices: list[str], workdir: Path) -> Synth:
    voice = str(rng.choice(voices))
    text = pick_text(rng, "en")
    stretch = float(rng.uniform(0.8, 1.25))
    wav_path = workdir / "festival.wav"
    wav_path.unlink(missing_ok=True)
    script = (
        f"(voice_{voice})\n"
        f"(Parameter.set 'Duration_Stretch {stretch:.3f})\n"
        f"(set! utt (SynthText {_scheme_string(text)}))\n"
        f"(utt.save.wave utt {_scheme_string(str(wav_path))} 'riff)\n"
        "(mapcar (lambda (s) (format t \"SEG\\t%s\\t%f\\n\" (item.name s) (item.feat s \"end\")))"
        " (utt.relation.items utt 'Segment))\n"
    )
    script_path = workdir / "festival.scm"
    script_path.write_text(script, encoding="utf-8")
    result = subprocess.run(["festival", "--batch", str(script_path)], capture_output=True, timeout=60)
    if result.returncode != 0 or not wav_path.exists():
        raise EngineError(f"festival failed: {result.stderr.decode(errors='replace')[-300:]}")
    samples, rate = read_wav(wav_path)
    wave16 = to_16k(samples, rate)
    duration = len(wave16) / SAMPLE_RATE
    phones, start = [], 0.0
    for line in result.stdout.decode(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] != "SEG":
            continue
        end = min(float(parts[2]), duration)
        if end > start:
            phones.append(Phone(parts[1], start, end))
        start = max(start, end)
    if not phones:
        raise EngineError("festival printed no segments")
    return Synth(wave16, phones, "arpabet", f"{voice}@x{stretch:.2f}", "en", text)


def flite_voices() -> list[str]:
    if shutil.which("flite") is None:
        return []
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split(":", 1)[-1].split()
    return [v for v in FLITE_VOICES if v in listed]


def synth_flite(rng: np.random.Generator, voices: list[str], workdir: Path) -> Synth:
    from workers.audio.phonemes import align_transcript  # pocketsphinx: only when used

    voice = str(rng.choice(voices))
    text = pick_text(rng, "en")
    stretch = float(rng.uniform(0.8, 1.25))
    wav_path = workdir / "flite.wav"
    wav_path.unlink(missing_ok=True)
    result = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}",
                             "-t", text, "-o", str(wav_path)], capture_output=True, timeout=60)
    if result.returncode != 0 or not wav_path.exists():
        raise EngineError(f"flite failed: {result.stderr.decode(errors='replace')[-300:]}")
    samples, rate = read_wav(wav_path)
    wave16 = to_16k(samples, rate)
    try:
        segments = align_transcript(wave16, text)
    except Exception as error:   # noqa: BLE001 - a failed alignment skips the utterance
        raise EngineError(f"alignment failed: {error}") from None
    phones = [Phone(s.phone, s.start_s, s.end_s) for s in segments]
    return Synth(wave16, phones, "arpabet", f"{voice}@x{stretch:.2f}", "en", text)


def available_engines() -> dict[str, list[str]]:
    """The voices of each engine installed here (``{"espeak": [...], ...}``; missing engines left out)."""
    engines: dict[str, list[str]] = {}
    try:
        espeak = Espeak.get()
        voices = espeak.available_voices([v for vs in ESPEAK_LANGUAGES.values() for v in vs])
        if voices:
            engines["espeak"] = voices
    except (OSError, EngineError) as error:
        logger.warning("espeak-ng unavailable: %s", error)
    if voices := festival_voices():
        engines["festival"] = voices
    if voices := flite_voices():
        engines["flite"] = voices
    return engines
