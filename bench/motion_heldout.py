"""Lip articulation on real speech that no benchmark or training run has seen.

    .venv/bin/python bench/motion_heldout.py [--checkpoint PATH] [--seeds 3] [--render]

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

In the latents, per clip (diffusion averaged over seeds), of the generator's mouth opening
(jaw_open x (1 - lip_press)): Pearson r (best lag within +-2 frames) against the opening the
pocketsphinx-aligned phones call for (``workers.quality.measure.phone_target_opening``) and
against the audio envelope in dB (``talkfarm eval``'s lip r), the share of p / b / m whose
lips shut (opening < 0.05 within a frame of the phone), and the share of silent frames
with the lips shut; means over the clips.

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
    parser.add_argument("--checkpoint", default=None, help="diffusion checkpoint (default: the shipped one)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--render", action="store_true", help="also render and measure the alsa videos")
    parser.add_argument("--assets", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets"),
                        help="folder with the face_* portraits (for --render)")
    parser.add_argument("--recordings", default=str(ASTERISK_SOUNDS), help="folder of recordings whose held-out "
                        "tenth (jobs/recordings.py) is scored too; skipped when absent")
    parser.add_argument("--transcripts", default=str(ASTERISK_TRANSCRIPTS), help="transcript list of --recordings")
    args = parser.parse_args(argv)

    from jobs.recordings import find_recordings, read_transcripts
    from workers.audio.phonemes import in_dictionary

    paths = sorted(ALSA_SOUNDS.glob("*_*.wav"))
    if not paths:
        print(f"no recordings in {ALSA_SOUNDS}: apt-get install alsa-utils", file=sys.stderr)
        return 2
    sets = {"alsa (another speaker)": [(p, p.stem.replace("_", " ")) for p in paths]}
    if Path(args.recordings).is_dir() and Path(args.transcripts).is_file():
        held_out, _ = find_recordings(args.recordings, read_transcripts(args.transcripts), held_out=True,
                                      known_word=in_dictionary)
        sets[f"{Path(args.recordings).name} held-out tenth"] = [(r.path, r.text) for r in held_out]
    for language, folder in OTHER_LANGUAGES.items():
        transcripts = asterisk_transcripts(language)
        if (ASTERISK_ROOT / folder).is_dir() and transcripts.is_file():
            held_out, _ = find_recordings(ASTERISK_ROOT / folder, read_transcripts(transcripts), held_out=True,
                                          language=language)
            sets[f"{folder} held-out tenth"] = [(r.path, None) for r in held_out]
    scorer = LatentScorer(args.checkpoint, args.seeds)
    print("| recordings | clips | generator | phone-target r | envelope r | P/B/M closed | silence closed |\n"
          "|---|---|---|---|---|---|---|")
    for name, clips in sets.items():
        scores = scorer.score_set(clips)
        for generator, values in scores.items():
            cells = " | ".join(f"{np.nanmean(values[k]):.3f}" if np.isfinite(values[k]).any() else "-"
                               for k in LatentScorer.MEASURES)
            print(f"| {name} | {len(values['phone-target r'])} | {generator} | {cells} |", flush=True)
    if args.render:
        render_rows(paths, Path(args.assets), args.checkpoint)
    return 0


class LatentScorer:
    """Scores the procedural and diffusion generators' mouth opening (jaw_open x (1 - lip_press))
    in the latents of real recordings with transcripts."""

    MEASURES = ("phone-target r", "envelope r", "P/B/M closed", "silence closed")
    CLOSED = 0.05          # latent opening below this: lips shut

    def __init__(self, checkpoint: str | None, seeds: int):
        from workers.face.latents import DYN_SLICE, DYNAMICS
        from workers.motion.learned import DiffusionMotion
        from workers.motion.procedural import ProceduralMotion

        self.jaw, self.press = (DYN_SLICE.start + DYNAMICS.index(n) for n in ("jaw_open", "lip_press"))
        self.model = DiffusionMotion(checkpoint).model
        self.procedural = ProceduralMotion()
        self.seeds = seeds

    def openings(self, features) -> dict[str, list[np.ndarray]]:
        from workers.motion.conditioning import features_matrix
        from workers.motion.diffusion import Conditions, sample_motion

        mouth = self.procedural.mouth(features)
        samples = [sample_motion(self.model, features_matrix(features), Conditions(), seed) for seed in range(self.seeds)]
        return {"procedural": [mouth["jaw_open"] * (1 - mouth["lip_press"])],
                "diffusion": [s[:, self.jaw] * (1 - s[:, self.press]) for s in samples]}

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
            phone_target_opening,
            silence_closure,
        )

        def best_r(a, b):
            values = [v for v in lagged_correlations(a, b, 2).values() if np.isfinite(v)]
            return max(values) if values else float("nan")

        scores: dict[str, dict[str, list[float]]] = {}
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
                for k, values in per_seed.items():
                    out[k].append(float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"))
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
