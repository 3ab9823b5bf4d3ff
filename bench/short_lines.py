"""Recognition cost and accuracy on short dialogue lines (1-2.5 s), as game dialogue comes.

    .venv/bin/python bench/short_lines.py [--cost] [--accuracy] [--packed] [--per-clip]

Whisper reads 30 s windows: a 1 s line pays for the whole window's encoder (CTranslate2,
int8), and a line tiny.en doubts is decoded again by base (``workers.audio.recognise``).

* ``--cost``: CPU seconds (this process, all threads) per audio second of the motion features
  (``whisper.motion_features``) and of recognition (``recognise``), as the audio stage calls
  them, on held-out real speech of about 1, 2, 2.5, 5 and 10 s: Allison's held-out asterisk
  prompts within 15 % of 1 / 2 / 2.5 s, and consecutive held-out prompts joined (each with
  its own leading and trailing silence) up to 5 and 10 s.
* ``--accuracy``: word errors of ``recognise`` on short lines, a line it refuses (problem
  set: audio-only lips) counting all its words wrong: a tuning set (Allison's training
  prompts of 0.6-2.5 s, espeak-ng and flite lines of game dialogue) and a held-out set
  (Allison's held-out prompts of 0.6-2.5 s, the alsa channel names, pocketsphinx's cards).
* ``--packed``: the candidate of packing lines into one window: consecutive lines joined with
  1 s of silence up to 25 s and recognised as one clip, each word given to the line its middle
  falls in; a line whose words' mean probability is under ``MIN_CONFIDENCE`` is recognised on
  its own (the fallback). Word errors, CPU, and how far the packed word times are from the
  line's own (lines heard with the same words both ways).

Prints Markdown tables (BENCHMARKS.md "Recognition cost on short lines, round 8").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.speech import spelled_errors  # noqa: E402
from workers.audio.decode import load_audio  # noqa: E402
from workers.audio.recognise import MIN_CONFIDENCE, RecognisedWord, recognise  # noqa: E402
from workers.audio.whisper import motion_features  # noqa: E402

GAME_LINES = ("Get down!", "Over here, quickly.", "I need more ammo.", "Watch your back.", "Follow me.",
              "The door is locked.", "Where did he go?", "Thank you, stranger.", "Hold the line!", "Nice shot.",
              "Let's move out.", "I can't see anything.")
ESPEAK_VOICES = ("en-us", "en", "en-us+f3")
FLITE_VOICES = ("slt", "kal", "rms", "awb")
POCKETSPHINX = Path("/work/data19r3/pocketsphinx")
PACK_GAP_S, PACK_MAX_S = 1.0, 25.0
ASSIGN = "overlap"

Clip = tuple[str, np.ndarray, str]          # (name, 16 kHz waveform, true text)


def allison(held_out: bool) -> list[Clip]:
    from bench.motion_heldout import ASTERISK_SOUNDS, asterisk_transcripts
    from jobs.recordings import find_recordings, read_transcripts

    if not asterisk_transcripts("en").is_file():
        return []
    recordings, _ = find_recordings(ASTERISK_SOUNDS, read_transcripts(asterisk_transcripts("en")), held_out=held_out)
    return [(r.name, load_audio(r.path, 16000, 600), " ".join(r.text.replace("...", " ").split())) for r in recordings]


def short(clips: list[Clip], low: float = 0.6, high: float = 2.5) -> list[Clip]:
    return [clip for clip in clips if low <= len(clip[1]) / 16000 < high]


def synthetic_lines() -> list[Clip]:
    """GAME_LINES spoken by espeak-ng and by flite (several voices each)."""
    from workers.audio.espeak import synthesize

    clips = [(f"espeak {ESPEAK_VOICES[i % 3]}: {text}", synthesize(text, ESPEAK_VOICES[i % 3])[0], text)
             for i, text in enumerate(GAME_LINES)]
    with tempfile.TemporaryDirectory() as folder:
        for i, text in enumerate(GAME_LINES):
            path, voice = f"{folder}/{i}.wav", FLITE_VOICES[i % len(FLITE_VOICES)]
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", path], check=True)
            clips.append((f"flite {voice}: {text}", load_audio(path, 16000, 60), text))
    return clips


def tuning_set() -> list[Clip]:
    allison_short = short(allison(False))
    return allison_short[:: max(1, len(allison_short) // 30)][:30] + synthetic_lines()


def held_out_set() -> list[Clip]:
    from bench.rendered_heldout import choose_set

    return short(allison(True)) + [(path.stem, load_audio(path, 16000, 60), text) for path, text in choose_set(POCKETSPHINX)]


def cpu(function, *args):
    started = time.process_time()
    value = function(*args)
    return value, time.process_time() - started


def cost_table(per_clip: bool) -> None:
    prompts = allison(True)
    groups = {f"{target:g} s": [c for c in prompts if abs(len(c[1]) / 16000 - target) <= 0.15 * target][:8]
              for target in (1.0, 2.0, 2.5)}
    for target in (5.0, 10.0):
        joined, pieces = [], []
        for clip in short(prompts, 0.6, target):
            pieces.append(clip)
            if sum(len(p[1]) for p in pieces) >= target * 16000:
                wave = np.concatenate([p[1] for p in pieces])
                if len(wave) <= 1.3 * target * 16000:
                    joined.append((" + ".join(p[0] for p in pieces), wave, " ".join(p[2] for p in pieces)))
                pieces = []
            if len(joined) == 4:
                break
        groups[f"{target:g} s"] = joined
    print("\n| length | clips | audio s | features CPU s/s | recognition CPU s/s | together | decoded by base | word errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, clips in groups.items():
        audio = features = recognition = 0.0
        errors = words = by_base = 0
        for name, wave, text in clips:
            _, features_s = cpu(motion_features, wave, 25.0)
            result, recognition_s = cpu(recognise, wave, "en")
            audio, features, recognition = audio + len(wave) / 16000, features + features_s, recognition + recognition_s
            errors, words = errors + scored(text, result), words + spelled_errors(text, "")[1]
            by_base += result.model == "base"
            if per_clip:
                print(f"<!-- {name} {len(wave) / 16000:.2f} s: features {features_s:.2f}, recognition {recognition_s:.2f} CPU-s, "
                      f"{result.model} {result.confidence:.2f} {result.usable}: {result.text} -->")
        print(f"| {label} | {len(clips)} | {audio:.1f} | {features / audio:.3f} | {recognition / audio:.3f} | "
              f"**{(features + recognition) / audio:.3f}** | {by_base} | {errors}/{words} |")


def scored(text: str, result) -> int:
    """Word errors of a result against the true text; a refused result has all words wrong."""
    if not result.usable:
        return spelled_errors(text, "")[1]
    return spelled_errors(text, result.text)[0]


def accuracy(label: str, clips: list[Clip], per_clip: bool) -> None:
    audio = sum(len(c[1]) for c in clips) / 16000
    total = errors = refused = by_base = 0
    started = time.process_time()
    for name, wave, text in clips:
        result = recognise(wave, "en")
        e = scored(text, result)
        errors, total = errors + e, total + spelled_errors(text, "")[1]
        refused, by_base = refused + (not result.usable), by_base + (result.model == "base")
        if per_clip:
            print(f"<!-- {name}: {result.model} {result.confidence:.2f} {result.usable} {e} | {text} | {result.text} -->")
    print(f"| {label} | {len(clips)} | {audio:.0f} | {errors}/{total} = {errors / max(total, 1):.3f} | {refused} | {by_base} | "
          f"{(time.process_time() - started) / audio:.3f} |")


def line_of(word: RecognisedWord, spans: list[tuple[float, float]]) -> int:
    """The line a packed word belongs to: ``--assign middle``, the last line starting before its
    middle (a word in a gap goes to the line before); ``overlap``, the line its times overlap most, else the
    nearest (Whisper stretches a line's first word back into the silence before it)."""
    if ASSIGN == "middle":
        middle = (word.start_s + word.end_s) / 2
        return max([0] + [k for k, (start, _) in enumerate(spans) if start <= middle])
    overlap = [min(word.end_s, end) - max(word.start_s, start) for start, end in spans]
    return int(np.argmax(overlap))       # the nearest line when nothing overlaps (least negative)


def packed(clips: list[Clip]) -> tuple[list[tuple[str, float, list[RecognisedWord]] | None], float]:
    """Each clip's (text, confidence, words in its own time) from packed windows, None where the
    line must fall back to its own recognition; and the packs' CPU seconds."""
    gap = np.zeros(int(PACK_GAP_S * 16000), np.float32)
    results: list = []
    spent = 0.0
    start = 0
    while start < len(clips):
        end, length = start, 0.0
        while end < len(clips) and (end == start or length + len(clips[end][1]) / 16000 + PACK_GAP_S <= PACK_MAX_S):
            length += len(clips[end][1]) / 16000 + PACK_GAP_S
            end += 1
        pieces, offsets, at = [], [], 0.0
        for _, wave, _ in clips[start:end]:
            offsets.append(at)
            pieces += [wave.astype(np.float32), gap]
            at += (len(wave) + len(gap)) / 16000
        result, seconds = cpu(recognise, np.concatenate(pieces), "en")
        spent += seconds
        spans = [(offset, offset + len(clips[start + index][1]) / 16000) for index, offset in enumerate(offsets)]
        owner = [line_of(word, spans) for word in result.words]
        for index, (offset, _) in enumerate(spans):
            words = [RecognisedWord(w.text, w.start_s - offset, w.end_s - offset, w.probability)
                     for w, line in zip(result.words, owner) if line == index]
            confidence = float(np.mean([w.probability for w in words])) if words else 0.0
            results.append((" ".join(w.text for w in words), confidence, words)
                           if result.model == "tiny.en" and confidence >= MIN_CONFIDENCE else None)
        start = end
    return results, spent


def packed_table(label: str, clips: list[Clip], per_clip: bool) -> None:
    audio = sum(len(c[1]) for c in clips) / 16000
    lines, spent = packed(clips)
    errors = total = fallbacks = 0
    start_shift, end_shift = [], []
    for (name, wave, text), line in zip(clips, lines):
        alone, seconds = cpu(recognise, wave, "en")        # the line on its own: the fallback, and the times to compare
        total += spelled_errors(text, "")[1]
        if line is None:
            fallbacks, spent, e = fallbacks + 1, spent + seconds, scored(text, alone)
        else:
            e = spelled_errors(text, line[0])[0]
            if alone.usable and [w.text for w in alone.words] == [w.text for w in line[2]]:
                start_shift += [abs(a.start_s - b.start_s) for a, b in zip(alone.words, line[2])]
                end_shift += [abs(a.end_s - b.end_s) for a, b in zip(alone.words, line[2])]
        errors += e
        if per_clip:
            print(f"<!-- {name}: {'fallback' if line is None else f'packed {line[1]:.2f}'} {e} | {text} | "
                  f"{alone.text if line is None else line[0]} -->")
    print(f"| {label}, packed | {len(clips)} | {audio:.0f} | {errors}/{total} = {errors / max(total, 1):.3f} | "
          f"{fallbacks} fall back | | {spent / audio:.3f} | start {np.mean(start_shift or [np.nan]):.3f} / "
          f"end {np.mean(end_shift or [np.nan]):.3f} s over {len(start_shift)} words |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--packed", action="store_true")
    parser.add_argument("--assign", choices=("middle", "overlap"), default="overlap",
                        help="how --packed gives a word to a line (see line_of)")
    parser.add_argument("--sets", nargs="+", default=["tuning", "held-out"], choices=("tuning", "held-out", "longer"),
                        help="longer: Allison's held-out prompts of 2.5-6 s, packed as lines too")
    parser.add_argument("--per-clip", action="store_true", help="each clip's result as an HTML comment")
    args = parser.parse_args(argv)
    warm = load_audio(REPO.parent / "shared" / "assets" / "speech_cmu_arctic_a0009_3s.wav", 16000, 60)
    recognise(warm[:16000], "en")          # loads tiny.en and base (a 1 s clip it doubts)
    motion_features(warm, 25.0)
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if args.cost:
        cost_table(args.per_clip)
    if args.accuracy or args.packed:
        global ASSIGN
        ASSIGN = args.assign
        builders = {"tuning": ("tuning: Allison training prompts + espeak-ng / flite lines", tuning_set),
                    "held-out": ("held out: Allison held-out prompts + alsa + cards", held_out_set),
                    "longer": ("Allison held-out prompts of 2.5-6 s", lambda: short(allison(True), 2.5, 6.0))}
        sets = {builders[name][0]: builders[name][1]() for name in args.sets}
        print("\n| set | lines | audio s | word errors (refused = all wrong) | refused | decoded by base | "
              "recognition CPU s/s | packed word times against the line's own |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for label, clips in sets.items():
            if args.accuracy:
                accuracy(label, clips, args.per_clip)
            if args.packed:
                packed_table(label, clips, args.per_clip)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
