"""Render + QC over every shared portrait x speech asset x motion generator; one table in BENCHMARKS.md.

    .venv/bin/python bench/quality.py [--size 512] [--assets ../shared/assets] [--no-write]

Each render is measured twice: the full ``talkfarm eval`` measurement (every frame, with the
transcript where a ``speech_*.txt`` sits next to the audio) for the quality columns, and
``qc_for_batch`` (every 3rd frame) whose time is compared with the render's. The table
replaces the "## Quality control" section of BENCHMARKS.md (appended the first time), so
every change to the face model shows its effect in the diff.
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
    args = parser.parse_args(argv)

    from pipeline.runner import InProcessRunner
    from pipeline.schemas import MOTION_GENERATORS, RenderControls, RenderRequest
    from workers.decoder.renderer import DecoderConfig
    from workers.quality.qc import evaluate, qc_for_batch

    assets = Path(args.assets)
    portraits = sorted(p for p in assets.glob("face_*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    speech = sorted(p for p in assets.glob("speech_*") if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
    runner = InProcessRunner(DecoderConfig(device="cpu"))
    runner.setup()
    lines = []
    header = ("| motion | portrait | speech | s | face | lip r | lag | silence closed | P/B/M closed | vowels open "
              "| head deg/frame | head range deg | blinks/min | identity % IOD | jitter % IOD | flicker grey "
              "| A/V s | flags | render s | batch QC s (%) |")
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
                    render_s = time.perf_counter() - started
                    if result.status != "done":
                        lines.append(f"| {motion} | {portrait.stem} | {audio.stem} | failed: {result.error_stage} |")
                        continue
                    transcript_file = audio.with_suffix(".txt")
                    transcript = transcript_file.read_text() if transcript_file.is_file() else None
                    full = evaluate(out, audio, portrait, transcript)
                    started = time.perf_counter()
                    qc_for_batch(out, audio, portrait)
                    qc_s = time.perf_counter() - started
                    m = full.metrics
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
                           f"| {render_s:.2f} | {qc_s:.2f} ({100 * qc_s / render_s:.0f}%) |")
                    lines.append(row)
                    print(row, flush=True)
    text = "\n".join(lines)
    section = (f"{SECTION}\n\nProduced by `.venv/bin/python bench/quality.py` ({date.today().isoformat()}, "
               f"{os.cpu_count()} CPUs shared, Python {platform.python_version()}, {args.size} px, CPU decoder): "
               "every shared portrait x speech clip x motion generator rendered, then measured on its own frames "
               "with `talkfarm eval` (all frames; transcript where one exists) and timed with the batch QC "
               "(`qc_for_batch`, every 3rd frame). Units and the real-video reference ranges: "
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
