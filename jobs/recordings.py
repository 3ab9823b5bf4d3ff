"""Recorded speech with transcripts: real voices for the motion corpus (jobs/build_corpus.py).

The synthetic corpus knows every phone's timing exactly, but its voices are synthetic; the
model trained on it alone missed lip closures in recorded speech (BENCHMARKS.md, "Motion
diffusion"). A folder of recordings plus a transcript list adds real voices: each recording
is force-aligned to its transcript (pocketsphinx in English; espeak-ng + DTW,
``workers.audio.align``, in any other language espeak-ng speaks), and the aligned phones give
its mouth targets exactly as the synthetic voices' do.

Transcript list: one ``name: text`` line per recording, ``name`` being the recording's path
under the folder without its extension (``dictate/paused``); ``;`` starts a comment; the
file may be gzipped. That is the format of asterisk's ``core-sounds-en.txt``, so Debian's
``asterisk-core-sounds-en-g722`` (Allison Smith reading ~500 IVR prompts at 16 kHz,
CC-BY-SA 3.0) works as it is installed::

    python -m jobs.build_corpus --out /data/recorded \
        --recordings /usr/share/asterisk/sounds/en_US_f_Allison \
        --transcripts /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz --copies 3 \
        --exclude vm-options

(``vm-options`` is left out because its Spanish version by the same speaker is one of the
shared benchmark clips, ``speech_asterisk_esMX_allison_28s_8k.wav``; the speaker herself is
shared with that clip, which BENCHMARKS.md reports separately.)

Texts are spelled as spoken before alignment (``press 1 or #`` -> ``press one or pound``).
A recording is left out when its text holds a description (``[ascending tones]``, ``(1
second of silence)``, ``<beep>``), when a word is not in the pronunciation dictionary (the
aligner would skip it and shift its neighbours) or when its name falls in the held-out tenth
(:func:`is_held_out`), kept for evaluation.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from workers.audio.phonemes import SYMBOL_WORDS, number_words, spell_out  # noqa: F401 - re-exported

AUDIO_SUFFIXES = (".wav", ".flac", ".g722", ".ogg", ".mp3", ".gsm", ".sln16")
# One recording in this many (by a hash of its name) is held out of every corpus.
HELD_OUT_EVERY = 10
# Bracketed parts describe sounds rather than transcribe words: "[ascending tones]", "<beep>".
DESCRIPTION = re.compile(r"[\[\]<>()]")
@dataclass(frozen=True)
class Recording:
    """One recording and what is said in it.

    Attributes:
        name: path under the recordings folder without extension, e.g. ``dictate/paused``.
        path: the audio file.
        text: the transcript as spoken (English numerals and keypad symbols spelled as words).
        speaker: the recordings folder's name (``en_US_f_Allison``).
        language: espeak-ng language code of the speech (``en``, ``fr``, ``it``...).
    """

    name: str
    path: Path
    text: str
    speaker: str
    language: str = "en"


def read_transcripts(path: str | Path) -> dict[str, str]:
    """``{name: text}`` from a transcript list (see the module doc)."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    transcripts = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if sep and name.strip() and text.strip() and " " not in name.strip():
            transcripts[name.strip()] = text.strip()
    return transcripts


def is_held_out(name: str) -> bool:
    """True for the tenth of recordings kept out of training (stable across machines and runs)."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0


def spoken_words(text: str, language: str) -> tuple[str, list[str]]:
    """The transcript as it is spoken and its lower-case words. English numerals and keypad
    symbols are spelled for pocketsphinx's dictionary; other languages keep their digits,
    which espeak-ng reads in the language when it speaks the text for alignment."""
    from core.languages import is_english

    if is_english(language):
        from workers.audio.phonemes import normalize_transcript

        spoken = spell_out(text)
        return spoken, normalize_transcript(spoken)
    return text, re.findall(r"\w+", text.lower())


def find_recordings(folder: str | Path, transcripts: dict[str, str], held_out: bool = False,
                    known_word=None, exclude: frozenset[str] = frozenset(),
                    language: str = "en") -> tuple[list[Recording], Counter]:
    """The usable recordings of ``folder`` in name order, and a count of the reasons for the others.

    Args:
        held_out: False for the training recordings, True for the held-out tenth.
        known_word: predicate on a lower-case word (the pronunciation dictionary); None
            accepts every word.
        exclude: names left out whatever their split (e.g. a prompt whose translation is a
            benchmark clip).
        language: espeak-ng code of the recordings' language.
    """
    folder = Path(folder)
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            files.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    usable, skipped = [], Counter()
    for name, text in sorted(transcripts.items()):
        spoken, words = spoken_words(text, language)
        if name in exclude:
            skipped["excluded"] += 1
        elif name not in files:
            skipped["no audio file"] += 1
        elif is_held_out(name) != held_out:
            skipped["held out" if not held_out else "training"] += 1
        elif DESCRIPTION.search(text) or not words:
            skipped["not speech"] += 1
        elif known_word is not None and not all(known_word(w) for w in words):
            skipped["word not in dictionary"] += 1
        else:
            usable.append(Recording(name, files[name], spoken, folder.resolve().name, language))
    return usable, skipped
