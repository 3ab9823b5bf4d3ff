"""Render + QC over every shared portrait x speech asset x motion generator; one table in BENCHMARKS.md.

    .venv/bin/python bench/quality.py [--size 512] [--assets ../shared/assets] [--no-write]

Each render is measured twice: by the batch QC inside the render (the encoder's
``quality_check``: ``workers.quality.qc.BatchQC`` on the frames as they are encoded, Face
Mesh on every 8th frame and calibrated mouth / eye patches between, nothing decoded again),
whose seconds (the "qc" stage) are compared with
the rest of the render's, and afterwards by the full ``talkfarm eval`` measurement of the
written file (every frame, with the transcript where a ``speech_*.txt`` sits next to the
audio) for the quality columns; "batch lip r" is the batch QC's lip-sync r beside the full
one, to show that the two agree. The table replaces the "## Quality control" section of
BENCHMARKS.md (appended the first time), so every change to the face model shows its effect
in the diff.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "## Quality control"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch / OpenCV threads (1 = steadier QC-vs-render ratios on a shared machine)")
    parser.add_argument("--compare-file-qc", action="store_true",
                        help="also time the QC of the written file (decode at 192 px + the same measurement, "
                             "the batch QC before it moved into the encoder) and print it per render")
    args = parser.parse_args(argv)
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)

    from core.schemas import MOTION_GENERATORS, RenderControls, RenderRequest
    from pipeline.render import LocalRenderer
    from workers.decoder.renderer import DecoderConfig
    from workers.quality.qc import evaluate, qc_for_batch

    assets = Path(args.assets)
    portraits = sorted(p for p in assets.glob("face_*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    speech = sorted(p for p in assets.glob("speech_*") if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
    runner = LocalRenderer(DecoderConfig(device="cpu"), quality_check=True)   # as the batch pipeline's encoder runs
    lines = []
    header = ("| motion | portrait | speech | s | face | lip r | lag | silence closed | P/B/M closed | vowels open "
              "| head deg/frame | head range deg | blinks/min | identity % IOD | jitter % IOD | flicker grey "
              "| A/V s | flags | batch lip r | render s | batch QC s (% of render) |")
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))
    with tempfile.TemporaryDirectory(prefix="talkfarm-bench-quality-") as folder:
        for motion in MOTION_GENERATORS:
            for portrait in portraits:
                for audio in speech:
                    name = f"{portrait.stem.removeprefix('face_')}__{audio.stem.removeprefix('speech_')}"
                    out = Path(folder) / f"{motion}_{name}.mp4"
                    request = RenderRequest(id=name, image=str(portrait), audio=str(audio), output=str(out),
                                            controls=RenderControls(size=args.size, motion=motion))
                    started = time.perf_counter()
                    result = runner.render(request)
                    # the render without its QC: what the batch QC is added to
                    qc_s = result.seconds.get("qc", 0.0)
                    render_s = time.perf_counter() - started - qc_s
                    if result.status != "done":
                        lines.append(f"| {motion} | {portrait.stem} | {audio.stem} | failed: {result.error_stage} |")
                        continue
                    transcript_file = audio.with_suffix(".txt")
                    transcript = transcript_file.read_text() if transcript_file.is_file() else None
                    if args.compare_file_qc:
                        started = time.perf_counter()
                        file_metrics, _ = qc_for_batch(out, audio, portrait, max_side=192)
                        file_s = time.perf_counter() - started
                        print(f"file QC {motion} {name}: {file_s:.2f} s ({100 * file_s / render_s:.1f}% of render; "
                              f"lip r {_fmt(file_metrics.get('lipsync_r'), '.2f')}) vs in-encoder {qc_s:.2f} s "
                              f"({100 * qc_s / render_s:.1f}%)", flush=True)
                    full = evaluate(out, audio, portrait, transcript)
                    m, batch = full.metrics, result.quality or {}
                    row = (f"| {motion} | {portrait.stem.removeprefix('face_')} | {audio.stem.removeprefix('speech_')} "
                           f"| {_fmt(m['video_seconds'], '.1f')} | {_fmt(m['face_found_fraction'], '.2f')} "
                           f"| {_fmt(m['lipsync_r'], '.2f')} | {m['lipsync_lag_frames']:+d} "
                           f"| {_fmt(m['silence_closed_fraction'], '.2f')} "
                           f"| {_fmt(m.get('bilabial_closed_fraction'), '.2f')} "
                           f"| {_fmt(m.get('open_vowel_open_fraction'), '.2f')} "
                           f"| {_fmt(m['head_motion_deg_per_frame'], '.2f')} | {_fmt(m['head_range_deg'], '.1f')} "
                           f"| {_fmt(m['blinks_per_minute'], '.0f')} | {_fmt(m['identity_drift_pct'], '.1f')} "
                           f"| {_fmt(m['jitter_pct_iod'], '.2f')} | {_fmt(m['flicker_grey'], '.2f')} "
                           f"| {_fmt(m['duration_mismatch_s'], '+.2f')} | {'; '.join(full.flags) or '-'} "
                           f"| {_fmt(batch.get('lipsync_r'), '.2f')} "
                           f"| {render_s:.2f} | {qc_s:.2f} ({100 * qc_s / render_s:.1f}%) |")
                    lines.append(row)
                    print(row, flush=True)
    text = "\n".join(lines)
    section = (f"{SECTION}\n\nProduced by `.venv/bin/python bench/quality.py` ({date.today().isoformat()}, "
               f"{os.cpu_count()} CPUs shared, Python {platform.python_version()}, {args.size} px, CPU decoder): "
               "every shared portrait x speech clip x motion generator rendered, then measured on its own frames "
               "with `talkfarm eval` (all frames; transcript where one exists). The batch QC ran inside each "
               "render (the encoder measures the frames it writes: Face Mesh on every 8th frame at 256 px, mouth "
               "and eyes of every frame from patches calibrated on those, luma flicker on one pair in 8; `BatchQC`): "
               "\"batch lip r\" is its lip-sync r, \"render s\" the render without "
               "it and the last column its seconds and their share of that. Units and the real-video reference ranges: "
               "`workers/quality/README.md`. Real webcam clip for comparison: head 0.26 deg/frame, range 11.3 deg, "
               "blinks 5.9/min, identity 3.0 % IOD (vs its first frame), jitter 0.26 % IOD, flicker 0.33 grey.\n\n"
               f"{text}\n")
    print(section)
    if not args.no_write:
        from bench.common import replace_section

        replace_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
