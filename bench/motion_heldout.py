"""Lip articulation on real speech that no benchmark or training run has seen.

    .venv/bin/python bench/motion_heldout.py [--checkpoint PATH ...] [--seeds 3] [--per-clip] [--render]

The shared speech assets are the test set of bench/motion.py, so they must not pick
checkpoints or settings. This script scores motion generators on two other sets of real
recordings with transcripts:

* the eight channel names ("Front Left", "Rear Center", ...) a human speaker reads in Debian's
  alsa-utils (/usr/share/sounds/alsa; ``apt-get install alsa-utils``), transcripts = file
  names; a speaker no corpus holds;
* the held-out tenth of a recordings folder (``jobs/recordings.py``; by default Debian's
  ``asterisk-core-sounds-en-g722``, Allison Smith's IVR prompts): never trained on, but the
  other nine tenths are in the recorded corpus, so this set measures a known voice;
* the held-out tenth of the French, Italian and Russian asterisk prompts (Debian's
  ``asterisk-core-sounds-{fr,it,ru}-g722``: June, Carlo and a Russian IVR voice), when installed:
  speech in other languages; scored on the envelope and silences only (the phone measures
  need the English aligner).

* the shared speech clips with known text (LibriVox, CMU ARCTIC a0007 / a0009; speakers in no
  corpus): scored, never tuned on (each checkpoint is trained once and measured once here).

In the latents, per clip (diffusion averaged over seeds), of the generator's mouth opening
(jaw_open x (1 - lip_press)): Pearson r (best lag within +-2 frames) against the opening the
pocketsphinx-aligned phones call for (``workers.quality.measure.phone_target_opening``) and
against the audio envelope in dB (``talkfarm eval``'s lip r), the share of p / b / m whose
lips shut (opening < 0.05 within a frame of the phone), the share of silent frames
with the lips shut, and the articulation contrast (median opening on open vowels minus on
P / B / M, ``workers.quality.measure.phone_articulation``); means over the clips.
``--per-clip`` prints every clip and, per checkpoint, on how many clips it is above
procedural; several ``--checkpoint`` are compared side by side.

What the generators get here: the audio only, no transcript, for procedural and diffusion
alike (the latents before any viseme correction). A render as a user gets it also recognises
the speech and blends the recognised words' visemes into either generator's mouth; that
comparison, on the rendered frames, against procedural audio-only *and* procedural with the
same recognised transcript, is ``bench/rendered_heldout.py``.

``--render`` also renders every alsa recording with each generator on each shared portrait
(512 px, seed 0) and measures the video with ``talkfarm eval`` and the transcript: the
phone-target r on the rendered frames, the share of open vowels whose lips part (the
recordings hold no p / b / m), the opening range and the lip r.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
ASTERISK_SOUNDS = ASTERISK_ROOT / "en_US_f_Allison"
# Other languages' prompts (another speaker each): held-out tenths scored without transcripts.
OTHER_LANGUAGES = {"fr": "fr_CA_f_June", "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}


def asterisk_transcripts(language: str) -> Path:
    """Where Debian's asterisk-core-sounds-LANGUAGE package installs its transcript list."""
    return Path(f"/usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz")


ASTERISK_TRANSCRIPTS = asterisk_transcripts("en")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="*", default=[None],
                        help="diffusion checkpoint(s) compared side by side (default: the shipped one)")
    parser.add_argument("--per-clip", action="store_true",
                        help="also print every clip's measures and, per checkpoint, on how many clips it beats procedural")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--render", action="store_true", help="also render and measure the alsa videos")
    parser.add_argument("--assets", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets"),
                        help="folder with the face_* portraits (for --render)")
    parser.add_argument("--recordings", default=str(ASTERISK_SOUNDS), help="folder of recordings whose held-out "
                        "tenth (jobs/recordings.py) is scored too; skipped when absent")
    parser.add_argument("--transcripts", default=str(ASTERISK_TRANSCRIPTS), help="transcript list of --recordings")
    parser.add_argument("--english-only", action="store_true", help="leave out the other languages' prompts")
    args = parser.parse_args(argv)

    from jobs.recordings import find_recordings, read_transcripts
    from workers.audio.phonemes import in_dictionary

    paths = sorted(ALSA_SOUNDS.glob("*_*.wav"))
    if not paths:
        print(f"no recordings in {ALSA_SOUNDS}: apt-get install alsa-utils", file=sys.stderr)
        return 2
    sets = {"alsa (another speaker)": [(p, p.stem.replace("_", " ")) for p in paths]}
    shared = shared_clips(Path(args.assets))
    if shared:
        sets["shared speech clips (other speakers)"] = shared
    if Path(args.recordings).is_dir() and Path(args.transcripts).is_file():
        held_out, _ = find_recordings(args.recordings, read_transcripts(args.transcripts), held_out=True,
                                      known_word=in_dictionary)
        sets[f"{Path(args.recordings).name} held-out tenth"] = [(r.path, r.text) for r in held_out]
    for language, folder in ({} if args.english_only else OTHER_LANGUAGES).items():
        transcripts = asterisk_transcripts(language)
        if (ASTERISK_ROOT / folder).is_dir() and transcripts.is_file():
            held_out, _ = find_recordings(ASTERISK_ROOT / folder, read_transcripts(transcripts), held_out=True,
                                          language=language)
            sets[f"{folder} held-out tenth"] = [(r.path, None) for r in held_out]
    scorer = LatentScorer(args.checkpoint, args.seeds)
    print("| recordings | clips | generator | " + " | ".join(LatentScorer.MEASURES) + " |\n"
          "|---|---|---|" + "---|" * len(LatentScorer.MEASURES))
    per_set, clip_names = {}, {}
    for name, clips in sets.items():
        per_set[name] = scores = scorer.score_set(clips)
        clip_names[name] = scorer.last_clip_names
        for generator, values in scores.items():
            cells = " | ".join(f"{np.nanmean(values[k]):.3f}" if np.isfinite(values[k]).any() else "-"
                               for k in LatentScorer.MEASURES)
            print(f"| {name} | {len(values['phone-target r'])} | {generator} | {cells} |", flush=True)
    if args.per_clip:
        print_per_clip(per_set, clip_names)
    if args.render:
        render_rows(paths, Path(args.assets), args.checkpoint[0])
    return 0


def shared_clips(assets: Path) -> list[tuple[Path, str]]:
    """The shared speech clips whose text is known (bench/speech.py's list): speakers no corpus holds."""
    from bench.speech import KNOWN_TEXT

    clips = []
    for name, text in KNOWN_TEXT.items():
        path = assets / name
        if path.is_file() and (text or path.with_suffix(".txt").is_file()):
            clips.append((path, text or path.with_suffix(".txt").read_text().strip()))
    return clips


def print_per_clip(per_set: dict, clip_names: dict) -> None:
    """Per clip: each generator's articulation contrast, P/B/M closed and envelope r; then, per
    diffusion checkpoint, on how many clips (with a value) it is above, equal to and below procedural."""
    keys = ("articulation contrast", "P/B/M closed", "envelope r")
    print("\n| recordings | clip | generator | " + " | ".join(keys) + " |\n|---|---|---|" + "---|" * len(keys))
    wins: dict = {}
    for name, scores in per_set.items():
        for index, clip in enumerate(clip_names[name]):
            for generator, values in scores.items():
                cells = " | ".join("-" if not np.isfinite(values[k][index]) else f"{values[k][index]:.3f}" for k in keys)
                print(f"| {name} | {clip} | {generator} | {cells} |")
                if generator == "procedural":
                    continue
                for k in keys:
                    ours, theirs = values[k][index], scores["procedural"][k][index]
                    if np.isfinite(ours) and np.isfinite(theirs):
                        tally = wins.setdefault((generator, k), [0, 0, 0])
                        tally[0 if ours > theirs + 1e-9 else 1 if ours >= theirs - 1e-9 else 2] += 1
    print("\n| generator | measure | clips above / equal to / below procedural |\n|---|---|---|")
    for (generator, key), (above, equal, below) in wins.items():
        print(f"| {generator} | {key} | {above} / {equal} / {below} |")


class LatentScorer:
    """Scores the procedural and diffusion generators' mouth opening (jaw_open x (1 - lip_press))
    in the latents of real recordings with transcripts."""

    MEASURES = ("phone-target r", "envelope r", "P/B/M closed", "silence closed", "articulation contrast")
    CLOSED = 0.05          # latent opening below this: lips shut

    def __init__(self, checkpoints: list[str | None], seeds: int):
        from workers.face.latents import DYN_SLICE, DYNAMICS
        from workers.motion.learned import DiffusionMotion
        from workers.motion.procedural import ProceduralMotion

        self.jaw, self.press = (DYN_SLICE.start + DYNAMICS.index(n) for n in ("jaw_open", "lip_press"))
        generators = [DiffusionMotion(checkpoint) for checkpoint in checkpoints]
        self.models = {f"diffusion {generator.version}": generator.model for generator in generators}
        self.procedural = ProceduralMotion()
        self.seeds = seeds
        self.last_clip_names: list[str] = []

    def openings(self, features) -> dict[str, list[np.ndarray]]:
        from workers.motion.conditioning import features_matrix
        from workers.motion.diffusion import Conditions, sample_motion

        mouth = self.procedural.mouth(features)
        openings = {"procedural": [mouth["jaw_open"] * (1 - mouth["lip_press"])]}
        for name, model in self.models.items():
            samples = [sample_motion(model, features_matrix(features), Conditions(), seed) for seed in range(self.seeds)]
            openings[name] = [s[:, self.jaw] * (1 - s[:, self.press]) for s in samples]
        return openings

    def score_set(self, clips: list[tuple[Path, str | None]]) -> dict[str, dict[str, list[float]]]:
        """Measures per generator, one value per clip; a clip without a transcript (None) gets
        the envelope and silence measures only, a clip that cannot be read or aligned none."""
        from workers.audio.decode import load_audio, normalize_loudness
        from workers.audio.features import compute_features
        from workers.audio.phonemes import BILABIALS, align_transcript
        from workers.audio.whisper import with_motion_features
        from workers.quality.measure import (
            audio_envelope,
            lagged_correlations,
            phone_articulation,
            phone_target_opening,
            silence_closure,
        )

        def best_r(a, b):
            values = [v for v in lagged_correlations(a, b, 2).values() if np.isfinite(v)]
            return max(values) if values else float("nan")

        scores: dict[str, dict[str, list[float]]] = {}
        names = []
        for path, text in clips:
            try:
                wave = normalize_loudness(load_audio(path))
                phones = align_transcript(wave, text) if text is not None else None
            except Exception:   # noqa: BLE001 - a silent clip, or one the aligner cannot place, is left out
                continue
            features = with_motion_features(compute_features(wave), wave)
            target = phone_target_opening(phones, features.fps, features.num_frames) if phones else None
            envelope = audio_envelope(wave, features.fps, features.num_frames)
            bilabials = [p for p in phones if p.phone in BILABIALS] if phones else []
            names.append(Path(path).stem)
            for generator, openings in self.openings(features).items():
                out = scores.setdefault(generator, {k: [] for k in self.MEASURES})
                per_seed = {k: [] for k in self.MEASURES}
                for opening in openings:
                    per_seed["phone-target r"].append(best_r(opening, target) if target is not None else float("nan"))
                    per_seed["envelope r"].append(best_r(opening, envelope))
                    closed = [opening[max(0, int(p.start_s * 25) - 1): int(p.end_s * 25) + 2].min() < self.CLOSED
                              for p in bilabials]
                    per_seed["P/B/M closed"].append(float(np.mean(closed)) if closed else float("nan"))
                    silence = silence_closure(opening, envelope, closed_threshold=self.CLOSED)
                    per_seed["silence closed"].append(silence.closed_fraction)
                    per_seed["articulation contrast"].append(
                        phone_articulation(opening, phones, features.fps).contrast if phones else float("nan"))
                for k, values in per_seed.items():
                    out[k].append(float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"))
        self.last_clip_names = names      # the clips scored, in the order of the values
        return scores


def render_rows(paths: list[Path], assets: Path, checkpoint: str | None) -> None:
    """Render each recording with both generators on each portrait; print the measures of the videos."""
    import os
    import tempfile

    from bench.common import render_and_measure
    from pipeline.render import LocalRenderer
    from workers.decoder.renderer import DecoderConfig

    if checkpoint:
        os.environ["TALKFARM_MOTION_CHECKPOINT"] = str(checkpoint)
    portraits = sorted(p for p in assets.glob("face_*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    runner = LocalRenderer(DecoderConfig(device="cpu"))
    keys = ("articulation_target_r", "open_vowel_open_fraction", "opening_range", "lipsync_r")
    scores: dict[str, dict[str, list[float]]] = {}
    print("\n| motion | portrait | recording | phone-target r | vowels open | opening range | lip r |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="talkfarm-heldout-") as folder:
        for motion in ("procedural", "diffusion"):
            for portrait in portraits:
                for path in paths:
                    m = render_and_measure(runner, portrait, path, Path(folder) / f"{motion}_{portrait.stem}_{path.stem}.mp4",
                                           motion, path.stem.replace("_", " "))
                    if isinstance(m, str):
                        print(f"| {motion} | {portrait.stem} | {path.stem} | failed: {m} |")
                        continue
                    values = [m.get(k) for k in keys]
                    for key, value in zip(keys, values):
                        if value is not None and np.isfinite(value):
                            scores.setdefault(motion, {}).setdefault(key, []).append(float(value))
                    cells = " | ".join("-" if v is None or not np.isfinite(v) else f"{v:.2f}" for v in values)
                    print(f"| {motion} | {portrait.stem.removeprefix('face_')} | {path.stem} | {cells} |", flush=True)
    for motion, by_key in scores.items():
        means = " | ".join(f"{np.mean(by_key.get(k, [np.nan])):.3f}" for k in keys)
        print(f"| {motion} | mean | | {means} |")


if __name__ == "__main__":
    sys.exit(main())
