"""Lip articulation on real speech that no benchmark or training run has seen.

    .venv/bin/python bench/motion_heldout.py [--checkpoint PATH] [--seeds 3] [--render]

The shared speech assets are the test set of bench/motion.py, so they must not pick
checkpoints or settings. This script scores motion generators on another set of real
recordings: the eight channel names ("Front Left", "Rear Center", ...) a human speaker reads
in Debian's alsa-utils (/usr/share/sounds/alsa; ``apt-get install alsa-utils``), whose
transcripts are their file names. Score: Pearson r (best lag within +-2 frames) of the
generator's mouth opening (jaw_open x (1 - lip_press), in the latents) against the opening
the pocketsphinx-aligned phones call for (``workers.quality.measure.phone_target_opening``),
mean over the clips; diffusion samples averaged over seeds.

``--render`` also renders every recording with each generator on each shared portrait (512 px,
seed 0) and measures the video with ``talkfarm eval`` and the transcript: the phone-target r
on the rendered frames, the share of open vowels whose lips part (the recordings hold no
p / b / m) and the opening range.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="diffusion checkpoint (default: the shipped one)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--render", action="store_true", help="also render and measure the videos")
    parser.add_argument("--assets", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets"),
                        help="folder with the face_* portraits (for --render)")
    args = parser.parse_args(argv)

    from workers.audio.decode import load_audio, normalize_loudness
    from workers.audio.features import compute_features
    from workers.audio.phonemes import align_transcript
    from workers.face.latents import DYN_SLICE, DYNAMICS
    from workers.motion.conditioning import features_matrix
    from workers.motion.diffusion import Conditions, sample_motion
    from workers.motion.learned import DiffusionMotion
    from workers.motion.procedural import ProceduralMotion
    from workers.quality.measure import lagged_correlations, phone_target_opening

    paths = sorted(ALSA_SOUNDS.glob("*_*.wav"))
    if not paths:
        print(f"no recordings in {ALSA_SOUNDS}: apt-get install alsa-utils", file=sys.stderr)
        return 2
    jaw, press = (DYN_SLICE.start + DYNAMICS.index(name) for name in ("jaw_open", "lip_press"))
    model = DiffusionMotion(args.checkpoint).model
    procedural = ProceduralMotion()

    def procedural_opening(features):
        mouth = procedural.mouth(features)
        return mouth["jaw_open"] * (1 - mouth["lip_press"])

    def diffusion_opening(features):
        samples = [sample_motion(model, features_matrix(features), Conditions(), seed) for seed in range(args.seeds)]
        return np.mean([s[:, jaw] * (1 - s[:, press]) for s in samples], axis=0)

    scores: dict[str, list[float]] = {"procedural": [], "diffusion": []}
    print("| recording | procedural r | diffusion r |\n|---|---|---|")
    for path in paths:
        text = path.stem.replace("_", " ")
        wave = normalize_loudness(load_audio(path))
        features = compute_features(wave)
        target = phone_target_opening(align_transcript(wave, text), features.fps, features.num_frames)
        row = []
        for name, opening in (("procedural", procedural_opening), ("diffusion", diffusion_opening)):
            r = max(v for v in lagged_correlations(opening(features), target, 2).values() if np.isfinite(v))
            scores[name].append(r)
            row.append(f"{r:.2f}")
        print(f"| {text} | {' | '.join(row)} |", flush=True)
    print(f"| mean | {np.mean(scores['procedural']):.3f} | {np.mean(scores['diffusion']):.3f} |")
    if args.render:
        render_rows(paths, Path(args.assets), args.checkpoint)
    return 0


def render_rows(paths: list[Path], assets: Path, checkpoint: str | None) -> None:
    """Render each recording with both generators on each portrait; print the measures of the videos."""
    import os
    import tempfile

    from bench.common import render_and_measure
    from pipeline.runner import InProcessRunner
    from workers.decoder.renderer import DecoderConfig

    if checkpoint:
        os.environ["TALKFARM_MOTION_CHECKPOINT"] = str(checkpoint)
    portraits = sorted(p for p in assets.glob("face_*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    runner = InProcessRunner(DecoderConfig(device="cpu"))
    runner.setup()
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
