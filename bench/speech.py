"""Speech recognition, voice activity and Whisper encoder features: accuracy and cost on this CPU.

    .venv/bin/python bench/speech.py [--assets ../shared/assets] [--heldout 20] [--probe 60]

* **WER** of the recogniser (``workers.audio.recognise``, as the audio stage calls it) on the
  shared recordings whose text is known (LibriVox's .txt, the CMU ARCTIC prompts) and, when
  Debian's ``asterisk-core-sounds-{en,fr}-g722`` are installed, on ``--heldout`` prompts of
  the held-out tenth (``jobs.recordings.is_held_out``): recordings no choice here was tuned on.
* **Cost** in seconds per audio second with the models loaded (a render's steady state):
  silero-vad, the motion features (``workers.audio.whisper.motion_features``: the tiny.en
  encoder port up to block 3 on the clip's own length) and recognition (faster-whisper's decoder;
  windows with 2.5 s of audio or more encoded by the port over their audio, others by
  CTranslate2 whole, see ``workers.audio.recognise``); model load times printed apart.
* **Which encoder layer** (``--probe N``): ridge regression from each layer's 25 fps
  features to the transcript's mouth targets (``articulation.mouth_targets`` of the aligned
  phones, jaw opening and lip closure) on N English held-out-set prompts, fitted on half the
  prompts and scored (Pearson r) on the other half. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers.audio.decode import load_audio  # noqa: E402
from workers.audio.recognise import recognise, word_errors  # noqa: E402
from workers.audio.vad import speech_mask, speech_probability  # noqa: E402
from workers.audio.whisper import load_encoder, model_files, motion_features  # noqa: E402

KNOWN_TEXT = {
    "speech_librivox_austen_7s.wav": None,      # its .txt beside it
    "speech_cmu_arctic_a0007_4s.wav": "And you always want to see it in the superlative degree.",
    "speech_cmu_arctic_a0009_3s.wav": "He turned sharply, and faced Gregson across the table.",
}
ASTERISK = {"en": Path("/usr/share/asterisk/sounds/en_US_f_Allison"),
            "fr": Path("/usr/share/asterisk/sounds/fr_CA_f_June")}


def spelled_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """:func:`word_errors` with numbers spelled out on both sides ("1" and "one" agree)."""
    from jobs.recordings import spell_out

    return word_errors(spell_out(reference), spell_out(hypothesis))


def timed(function, *args, **kwargs):
    """(value, wall seconds). The CPU seconds of the call (all threads) go to CPU_SECONDS: on
    a machine shared with other jobs wall time overstates the cost, CPU time does not."""
    started, cpu_started = time.perf_counter(), time.process_time()
    value = function(*args, **kwargs)
    CPU_SECONDS.append(time.process_time() - cpu_started)
    return value, time.perf_counter() - started


CPU_SECONDS: list[float] = []


def clip_rows(clips: list[tuple[str, np.ndarray, str | None, str]]) -> list[dict]:
    """Recognise, VAD and encode each (name, wave, reference text or None, language) clip."""
    load_encoder("tiny.en")          # loaded (and sha256-checked) before anything is timed
    rows = []
    for name, wave, reference, language in clips:
        seconds = len(wave) / 16000
        probability, vad_s = timed(speech_probability, wave, 25.0)
        speech_s = speech_mask(probability, 25.0).sum() / 25.0
        _, encoder_s = timed(motion_features, wave, 25.0)      # what the audio stage computes for the motion model
        encoder_cpu = CPU_SECONDS[-1]
        result, asr_s = timed(recognise, wave, language, speech_s)
        asr_cpu = CPU_SECONDS[-1]
        errors, words = spelled_errors(reference, result.text) if reference else (None, None)
        rows.append({"name": name, "seconds": seconds, "language": language, "model": result.model,
                     "recognised_language": result.language, "confidence": result.confidence,
                     "usable": result.usable, "errors": errors, "words": words, "text": result.text,
                     "vad": vad_s / seconds, "encoder": encoder_s / seconds, "asr": asr_s / seconds,
                     "encoder_cpu": encoder_cpu / seconds, "asr_cpu": asr_cpu / seconds})
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| clip | s | lang -> model | confidence | used | WER | VAD s/s | encoder s/s (CPU) | ASR s/s (CPU) | text |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        wer = "" if r["errors"] is None else f"{r['errors']}/{r['words']} = {r['errors'] / max(r['words'], 1):.3f}"
        print(f"| {r['name']} | {r['seconds']:.1f} | {r['language']} -> {r['model']} ({r['recognised_language']}) | "
              f"{r['confidence']:.2f} | {r['usable']} | {wer} | {r['vad']:.3f} | {r['encoder']:.3f} ({r['encoder_cpu']:.3f}) | "
              f"{r['asr']:.3f} ({r['asr_cpu']:.3f}) | {r['text'][:70]} |")
    scored = [r for r in rows if r["errors"] is not None]
    if scored:
        total_errors, total_words = sum(r["errors"] for r in scored), sum(r["words"] for r in scored)
        print(f"\nWER {total_errors}/{total_words} = {total_errors / total_words:.3f}; ", end="")
    audio_s = sum(r["seconds"] for r in rows)

    def cost(key: str) -> float:
        return sum(r[key] * r["seconds"] for r in rows) / audio_s

    print(f"wall seconds per audio second: VAD {cost('vad'):.3f}, encoder {cost('encoder'):.3f}, "
          f"recognition {cost('asr'):.3f}, encoder + recognition {cost('encoder') + cost('asr'):.3f}; CPU seconds "
          f"(all threads): encoder {cost('encoder_cpu'):.3f}, recognition {cost('asr_cpu'):.3f} "
          f"(over {audio_s:.0f} s of audio; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def heldout_clips(language: str, count: int) -> list[tuple[str, np.ndarray, str, str]]:
    from bench.motion_heldout import asterisk_transcripts
    from jobs.recordings import find_recordings, read_transcripts

    folder, transcripts = ASTERISK[language], asterisk_transcripts(language)
    if not folder.is_dir() or not transcripts.is_file():
        return []
    recordings, _ = find_recordings(folder, read_transcripts(transcripts), held_out=True, language=language)
    return [(recording.name, load_audio(recording.path, 16000, 60), recording.text, language)
            for recording in recordings[:count]]


def probe_layers(clips: list[tuple[str, np.ndarray, str, str]]) -> None:
    """Ridge probe of each encoder layer onto the aligned transcript's mouth targets."""
    from workers.audio.align import align
    from workers.motion.articulation import MOUTH_CHANNELS, mouth_targets

    encoder = load_encoder("tiny.en")
    layers = list(range(encoder.num_layers + 1))
    features = {layer: [] for layer in layers}
    targets = []
    for name, wave, text, _ in clips:
        result = align(wave, text, "en")
        if not result.matches:
            continue
        num_frames = max(1, int(round(len(wave) / 16000 * 25)))
        mouth = mouth_targets(result.phones, num_frames, 25.0)
        targets.append(mouth[:, [MOUTH_CHANNELS.index("jaw_open"), MOUTH_CHANNELS.index("lip_press")]])
        for layer, pooled in zip(layers, encoder.frame_features_by_layer(wave, 25.0)):
            features[layer].append(pooled)
    half = len(targets) // 2
    print(f"\n### Encoder layer probe (tiny.en, {len(targets)} aligned prompts: fit on {half}, scored on the rest)\n")
    print("| layer | jaw r | lip-closure r |")
    print("|---|---|---|")
    for layer in layers:
        train_x, test_x = np.concatenate(features[layer][:half]), np.concatenate(features[layer][half:])
        train_y, test_y = np.concatenate(targets[:half]), np.concatenate(targets[half:])
        mean, scale = train_x.mean(0), train_x.std(0) + 1e-6
        a, b = (train_x - mean) / scale, (test_x - mean) / scale
        weights = np.linalg.solve(a.T @ a + 10.0 * len(a) / 100 * np.eye(a.shape[1]), a.T @ (train_y - train_y.mean(0)))
        predicted = b @ weights + train_y.mean(0)
        r = [np.corrcoef(predicted[:, k], test_y[:, k])[0, 1] for k in range(2)]
        label = "final (normed)" if layer == encoder.num_layers else f"input of block {layer}"
        print(f"| {label} | {r[0]:.3f} | {r[1]:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=REPO.parent / "shared" / "assets")
    parser.add_argument("--heldout", type=int, default=20, help="held-out asterisk prompts per language")
    parser.add_argument("--languages", nargs="+", default=["en", "fr"], choices=sorted(ASTERISK),
                        help="held-out prompt sets to score")
    parser.add_argument("--shared", action=argparse.BooleanOptionalAction, default=True,
                        help="score the shared recordings")
    parser.add_argument("--probe", type=int, default=0, help="English prompts for the encoder-layer probe")
    args = parser.parse_args(argv)

    for name in ("tiny.en", "base"):
        _, load_s = timed(model_files.__wrapped__, name)
        print(f"{name}: files read and sha256 checked in {load_s:.2f} s")
    _, encoder_s = timed(load_encoder, "tiny.en")
    print(f"tiny.en encoder port loaded in {encoder_s:.2f} s")
    warm = load_audio(args.assets / "speech_cmu_arctic_a0009_3s.wav", 16000, 60)
    _, warm_s = timed(recognise, warm, "en")        # loads the decoder models once
    print(f"first recognition (loads faster-whisper tiny.en) {warm_s:.2f} s")

    shared = []
    for name, text in KNOWN_TEXT.items():
        text = text or (args.assets / name.replace(".wav", ".txt")).read_text().strip()
        shared.append((name, load_audio(args.assets / name, 16000, 60), text, "en"))
    spanish = load_audio(args.assets / "speech_asterisk_esMX_allison_28s_8k.wav", 16000, 60)
    shared.append(("speech_asterisk_esMX_allison_28s_8k.wav", spanish, None, "es"))
    shared.append(("speech_asterisk_esMX_allison_28s_8k.wav", spanish, None, "en"))
    if args.shared:
        print_rows("Shared recordings", clip_rows(shared))
    for language in args.languages if args.heldout else []:
        clips = heldout_clips(language, args.heldout)
        if clips:
            print_rows(f"Held-out asterisk prompts ({language}, {len(clips)})", clip_rows(clips))
        else:
            print(f"\n(asterisk-core-sounds-{language}-g722 not installed: no held-out {language} prompts)")
    if args.probe:
        probe_layers(heldout_clips("en", args.probe) or shared[:3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
