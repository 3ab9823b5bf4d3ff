"""Recorded speech as a corpus source: transcripts, spelling, the held-out split, and a build."""

from __future__ import annotations

import gzip
import json
import wave

import numpy as np
import pytest

from jobs import build_corpus
from jobs.corpus.build import build
from jobs.recordings import (
    find_recordings,
    is_held_out,
    number_words,
    read_transcripts,
    spell_out,
)
from workers.audio.espeak import Espeak
from workers.audio.phonemes import in_dictionary
from workers.face.latents import DYN_SLICE, DYNAMICS

needs_espeak = pytest.mark.skipif(not Espeak.installed(), reason="libespeak-ng.so.1 not installed")
PRESS = DYN_SLICE.start + DYNAMICS.index("lip_press")


def test_numbers_and_keypad_symbols_are_spelled_as_spoken():
    assert number_words(0) == "zero" and number_words(40) == "forty"
    assert number_words(162) == "one hundred sixty two"
    assert number_words(1500) == "one thousand five hundred"
    words = spell_out("Press 1, 4 or # to hear 1,500 messages, * to exit.").split()
    assert words == ["Press", "one", ",", "four", "or", "pound", "to", "hear", "one", "thousand", "five",
                     "hundred", "messages,", "star", "to", "exit."]


def test_transcript_lists_plain_and_gzipped(tmp_path):
    text = "; Core Asterisk Sounds in English\n\nactivated: Activated.\ndictate/paused: paused\nnot a line\n"
    (tmp_path / "list.txt").write_text(text)
    (tmp_path / "list.txt.gz").write_bytes(gzip.compress(text.encode()))
    for name in ("list.txt", "list.txt.gz"):
        assert read_transcripts(tmp_path / name) == {"activated": "Activated.", "dictate/paused": "paused"}


def test_held_out_tenth_is_stable_and_about_a_tenth():
    names = [f"prompt-{i}" for i in range(2000)]
    held = [n for n in names if is_held_out(n)]
    assert 0.08 < len(held) / len(names) < 0.12
    assert held == [n for n in names if is_held_out(n)]


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def training_names(count: int, prefix: str) -> list[str]:
    return [n for n in (f"{prefix}{i}" for i in range(100)) if not is_held_out(n)][:count]


@pytest.fixture(scope="module")
def recordings_folder(tmp_path_factory):
    """Three espeak-ng 'recordings' (one in a subfolder), a description, a missing file, a word
    the dictionary lacks and a held-out name, with their transcript list."""
    root = tmp_path_factory.mktemp("recordings")
    engine = Espeak.get()
    said = {"Bob bought a map.": "speech/", "Please press 1 or #.": "", "My mother made a plum pie.": ""}
    names = training_names(6, "prompt-")
    lines = []
    for name, (text, folder) in zip(names, said.items()):
        samples, _ = engine.synth_isolated(text, "en+f2", 170, 50, 50, seed=0)
        write_wav(root / "voice" / f"{folder}{name}.wav", samples, engine.sample_rate)
        lines.append(f"{folder}{name}: {text}")
    write_wav(root / "voice" / f"{names[3]}.wav", np.zeros(8000), 16000)
    lines.append(f"{names[3]}: [ascending tones]")
    lines.append(f"{names[4]}: This file was never recorded.")
    write_wav(root / "voice" / f"{names[5]}.wav", np.zeros(8000), 16000)
    lines.append(f"{names[5]}: Press the qwzxqy key.")
    held = next(n for n in (f"held-{i}" for i in range(100)) if is_held_out(n))
    samples, _ = engine.synth_isolated("Good morning.", "en+f2", 170, 50, 50, seed=0)
    write_wav(root / "voice" / f"{held}.wav", samples, engine.sample_rate)
    lines.append(f"{held}: Good morning.")
    (root / "transcripts.txt").write_text("\n".join(lines) + "\n")
    return root / "voice", read_transcripts(root / "transcripts.txt"), held


@needs_espeak
def test_find_recordings_keeps_the_alignable_training_ones(recordings_folder):
    folder, transcripts, held = recordings_folder
    usable, skipped = find_recordings(folder, transcripts, known_word=in_dictionary)
    assert sorted(r.text for r in usable) == ["Bob bought a map.", "My mother made a plum pie.",
                                              "Please press  one  or  pound ."]
    assert {r.speaker for r in usable} == {"voice"} and any(r.name.startswith("speech/") for r in usable)
    assert skipped == {"not speech": 1, "no audio file": 1, "word not in dictionary": 1, "held out": 1}
    held_out, _ = find_recordings(folder, transcripts, held_out=True, known_word=in_dictionary)
    assert [r.name for r in held_out] == [held]
    fewer, skipped = find_recordings(folder, transcripts, known_word=in_dictionary, exclude=frozenset([usable[0].name]))
    assert fewer == usable[1:] and skipped["excluded"] == 1


@needs_espeak
def test_build_from_recordings(recordings_folder, tmp_path):
    folder, transcripts, _ = recordings_folder
    usable, skipped = find_recordings(folder, transcripts, known_word=in_dictionary)
    summary = build(str(tmp_path), None, seed=2, shard_utterances=4, progress=False, recordings=usable,
                       copies=2, recorded_from={"folder": str(folder), "left_out": dict(skipped)})
    assert summary["utterances"] == 6 and summary["engines"] == {"recorded": 6}
    assert summary["recordings"]["copies"] == 2 and summary["recordings"]["left_out"]["held out"] == 1
    by_text: dict[str, list] = {}
    for name in summary["shards"]:
        with np.load(tmp_path / name) as shard:
            bounds = shard["offsets"]
            for u, meta in enumerate(json.loads(str(shard["meta"]))):
                mouth_press = shard["motion"][bounds[u]:bounds[u + 1], PRESS] - shard["emotion"][u][PRESS - DYN_SLICE.start]
                by_text.setdefault(meta["text"], []).append((meta, mouth_press))
    assert len(by_text) == 3
    for copies in by_text.values():
        assert len(copies) == 2
        for meta, _ in copies:
            assert meta["engine"] == "recorded" and meta["alphabet"] == "arpabet" and meta["voice"] == "voice"
            assert meta["recording"] in {r.name for r in usable}
            assert all(0 <= start < end <= meta["seconds"] + 1e-6 for _, start, end in meta["phones"])
        # Both copies of a recording share its alignment (a pitch shift rescales the times).
        assert [p[0] for p in copies[0][0]["phones"]] == [p[0] for p in copies[1][0]["phones"]]
    # ... but not their augmentation.
    assert any(c[0][0]["augmentations"] != c[1][0]["augmentations"] for c in by_text.values())
    # The lips close on the aligned b / m / p of the recording.
    meta, press = by_text["Bob bought a map."][0]
    bilabials = [(start, end) for symbol, start, end in meta["phones"] if symbol in ("B", "M", "P")]
    assert len(bilabials) == 5
    for start, end in bilabials:
        assert press[int(start * 25): int(np.ceil(end * 25))].max() >= 0.9, (start, end)


@needs_espeak
def test_recordings_in_another_language_align_with_espeak_and_dtw(tmp_path):
    """French 'recordings' (a klatt voice the aligner does not speak with): digits stay for espeak-ng
    to read in French, the phones are espeak's IPA, the lips close on the p / b / m, and a
    recording whose transcript is another sentence is refused by the alignment's confidence."""
    engine = Espeak.get()
    names = training_names(2, "fr-")
    said = ["Bonjour, composez le 3 pour parler à Paul.", "Merci de votre appel, au revoir."]
    for name, text in zip(names, said):
        samples, _ = engine.synth_isolated(text, "fr+klatt3", 140, 40, 50, seed=0)
        write_wav(tmp_path / "voice" / f"{name}.wav", samples, engine.sample_rate)
    transcripts = {names[0]: said[0], names[1]: "Le mot de passe est incorrect, veuillez recommencer plus tard."}
    usable, skipped = find_recordings(tmp_path / "voice", transcripts, language="fr")
    assert [r.text for r in usable] == [said[0], transcripts[names[1]]] and not skipped
    assert {r.language for r in usable} == {"fr"}
    summary = build(str(tmp_path / "corpus"), None, seed=1, shard_utterances=4, progress=False,
                       recordings=usable, copies=1, recorded_from={"folder": str(tmp_path / "voice")})
    assert summary["utterances"] == 1 and sum(summary["skipped"].values()) == 1
    with np.load(tmp_path / "corpus" / summary["shards"][0]) as shard:
        (meta,) = json.loads(str(shard["meta"]))
        press = shard["motion"][:, PRESS] - shard["emotion"][0][PRESS - DYN_SLICE.start]
    assert meta["language"] == "fr" and meta["alphabet"] == "ipa" and meta["recording"] == names[0]
    bilabials = [(start, end) for symbol, start, end in meta["phones"] if symbol in ("b", "p", "m")]
    assert len(bilabials) >= 3          # comPosez, Pour, Paul (+ bonjour)
    closed = [press[int(start * 25): int(np.ceil(end * 25)) + 1].max() >= 0.9 for start, end in bilabials]
    assert np.mean(closed) >= 0.75, closed


@needs_espeak
def test_an_unknown_language_is_refused_before_anything_is_built(recordings_folder, tmp_path, capsys):
    folder, _, _ = recordings_folder
    (tmp_path / "list.txt").write_text("a: hello\n")
    with pytest.raises(SystemExit) as exit_info:
        build_corpus.main(["--out", str(tmp_path / "corpus"), "--recordings", str(folder), "--transcripts",
                 str(tmp_path / "list.txt"), "--language", "zz"])
    assert exit_info.value.code == 2
    assert "unsupported language code 'zz'" in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()
