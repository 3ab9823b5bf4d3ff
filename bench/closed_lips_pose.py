"""Closed lips under head pose: one closed mouth latent rendered at several head poses, read on
the frames.

    .venv/bin/python bench/closed_lips_pose.py [--portrait face_astronaut_eileen_collins.png] [--size 256]

The photo's latent with jaw 0 and lip press 1 (a p / b / m closure, as ``workers.motion.visemes``
enforces it) or 0 (a mouth at rest), the head at pitch -3..+3 degrees and yaw -10 / +10 off the
photo's pose. Each row is read by ``talkfarm eval``'s reader (``evaluate_frames``: Face Mesh
tracking at <= 256 px, one session) and by the attention mesh (the alignment stage's static
detector); eval counts a p / b / m closed under CLOSED_OPENING (0.06 of the mouth width).
Prints a Markdown table of the inner-lip gap per pose.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POSES = [(0.0, float(p)) for p in range(-3, 4)] + [(-10.0, 0.0), (10.0, 0.0)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--portrait", default="face_astronaut_eileen_collins.png")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)

    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.alignment.landmarks import FaceMeshDetector
    from workers.alignment.stage import AlignmentStage
    from workers.decoder.renderer import DECODER_VERSION, FaceRenderer
    from workers.face.latents import dyn_index
    from workers.quality.frames import DECODE_MAX_SIDE
    from workers.quality.measure import mouth_opening
    from workers.quality.qc import evaluate_frames

    task = RenderTask(RenderRequest(id="pose", image=str(Path(args.assets) / args.portrait), audio="unused.wav",
                                    output="/nonexistent/unused.mp4", controls=RenderControls(size=args.size)))
    AlignmentStage()([task])
    if task.failure is not None:
        print(task.failure.message, file=sys.stderr)
        return 2
    source = task.face.model.source_latent.astype(np.float32)
    detector = FaceMeshDetector()
    labels = [f"pitch {p:+.0f}" if y == 0 else f"yaw {y:+.0f}" for y, p in POSES]
    print(f"{DECODER_VERSION}, {args.portrait}, {args.size} px\n")
    print("| mouth | reader | " + " | ".join(labels) + " |\n|---|---|" + "---:|" * len(labels))
    for press in (1.0, 0.0):
        rows = []
        for yaw, pitch in POSES:
            row = source.copy()
            row[0] += yaw
            row[1] += pitch
            row[dyn_index("jaw_open")] = 0.0
            row[dyn_index("lip_press")] = source[dyn_index("lip_press")] + press
            rows.append(row)
        frames = FaceRenderer(task.face).render(np.stack(rows))
        eval_gap = evaluate_frames(frames, 25.0, max_side=DECODE_MAX_SIDE, thumbs=0).opening
        found = [detector.detect(frame) for frame in frames]
        attention = [mouth_opening(f[0].landmarks) if f else float("nan") for f in found]
        for reader, gaps in (("eval tracker", eval_gap), ("attention mesh", attention)):
            print(f"| press {press:.0f} | {reader} | " + " | ".join(f"{g:.3f}" for g in gaps) + " |")
    detector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
