"""Speed and quality benchmark on the shared assets.

    .venv/bin/python bench/render.py [--assets /work/shared/assets] [--out out/bench] [--device cpu]

Renders Grace Hopper with every shared speech clip and the astronaut with a0007 through the
in-process runner (the same stages as ``talkfarm render``), prints per-stage seconds, model
loading, decoder frames/s, realtime factor and peak RSS, then measures each video with
workers.quality (landmarks tracked on the rendered frames) and writes a contact sheet per
render. Copy the printed tables into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import cpu_model, peak_rss_mib  # noqa: E402 - needs the repo on sys.path
from pipeline.graph import STAGES  # noqa: E402

RENDERS = (
    ("face_grace_hopper.jpg", "speech_cmu_arctic_a0007_4s.wav"),
    ("face_grace_hopper.jpg", "speech_cmu_arctic_a0009_3s.wav"),
    ("face_grace_hopper.jpg", "speech_librivox_austen_7s.wav"),
    ("face_grace_hopper.jpg", "speech_asterisk_esMX_allison_28s_8k.wav"),
    ("face_astronaut_eileen_collins.png", "speech_cmu_arctic_a0007_4s.wav"),
)


def fmt(value, spec=".2f") -> str:
    if value is None:
        return "-"
    try:
        if value != value:   # NaN
            return "n/a"
    except TypeError:
        pass
    return format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--out", default=str(REPO / "out" / "bench"))
    parser.add_argument("--device", default=None, help="decoder torch device (default: cuda if available, else cpu)")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from core.devices import local_device
    from core.schemas import RenderRequest
    from pipeline.preview import save_contact_sheet
    from pipeline.render import LocalRenderer
    from workers.decoder.renderer import DecoderConfig

    assets, out = Path(args.assets), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = args.device or local_device()

    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
          f"torch threads {torch.get_num_threads()}, decoder device {device}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.platform()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")

    runner = LocalRenderer(DecoderConfig(device=device))
    print(f"model loading (LocalRenderer construction): {runner.setup_seconds:.2f} s, peak RSS after setup {peak_rss_mib():.0f} MiB\n")

    # one throw-away render first: the first call pays one-off costs (torch kernels, MediaPipe graph)
    warm = runner.render(RenderRequest(id="warmup", image=str(assets / RENDERS[1][0]), audio=str(assets / RENDERS[1][1]),
                                       output=str(out / "warmup.mp4")))
    print(f"warm-up render: {sum(warm.seconds.values()):.2f} s (not in the tables)\n")
    (out / "warmup.mp4").unlink(missing_ok=True)

    results = []
    for image, audio in RENDERS:
        name = f"{Path(image).stem.removeprefix('face_')}__{Path(audio).stem.removeprefix('speech_')}"
        output = out / f"{name}.mp4"
        request = RenderRequest(id=name, image=str(assets / image), audio=str(assets / audio), output=str(output))
        started = time.perf_counter()
        result = runner.render(request)
        wall = time.perf_counter() - started
        if result.status != "done":
            print(f"{name}: FAILED in {result.error_stage}: {result.error_message}")
            continue
        results.append((name, image, audio, output, result, wall, peak_rss_mib()))

    # ---- speed
    rows = []
    for name, _, _, _, result, wall, rss in results:
        total = sum(result.seconds.values())
        stage_cells = [f"{result.seconds.get(s, 0.0):.2f} ({100 * result.seconds.get(s, 0.0) / total:.0f}%)"
                       for s in STAGES]
        decode_fps = result.frames / max(result.seconds.get("decode", 0.0), 1e-9)
        rows.append([name, f"{result.audio_seconds:.2f}", str(result.frames), *stage_cells, f"{total:.2f}",
                     f"{wall:.2f}", f"{decode_fps:.0f}", f"{total / result.audio_seconds:.2f}", f"{rss:.0f}"])
    print("Speed (seconds per stage, share of the render's stage total)\n")
    print(table(["render", "audio s", "frames", *STAGES, "stages total s", "wall s", "decode fps",
                 "realtime factor", "peak RSS MiB"], rows))
    print(f"\nmodel loading (not in the render times): {runner.setup_seconds:.2f} s")
    if args.skip_quality:
        return 0

    # ---- quality
    from core.video import read_frames
    from workers.alignment.landmarks import FaceMeshDetector
    from workers.quality.measure import measure_render

    detector = FaceMeshDetector(max_faces=1)
    rows, phone_rows, extra_rows = [], [], []
    for name, image, audio, output, result, _, _ in results:
        transcript_path = (assets / audio).with_suffix(".txt")
        transcript = transcript_path.read_text() if transcript_path.is_file() else None
        report = measure_render(output, assets / audio, transcript=transcript, detector=detector)
        s = report.silence
        rows.append([name, f"{report.face_found_fraction:.2f}", fmt(report.lipsync_r), f"{report.lipsync_lag:+d}",
                     fmt(report.lipsync_r_by_lag[0]), f"{report.opening_p05:.3f} / {report.opening_p50:.3f} / {report.opening_p95:.3f}",
                     str(s.silent_frames), fmt(s.mean_opening_silence, ".3f"), fmt(s.mean_opening_speech, ".3f"),
                     fmt(s.closed_fraction)])
        extra_rows.append([name, fmt(report.head_rotation_frame_to_frame_deg), str(report.blinks),
                           fmt(report.blinks_per_minute, ".1f"), f"{1000 * report.tracking_seconds / report.frames:.1f}"])
        if report.phones is not None:
            p = report.phones
            phone_rows.append([name, str(p.bilabials), fmt(p.bilabial_closed_fraction), fmt(p.bilabial_min_median, ".3f"),
                               str(p.open_vowels), fmt(p.open_vowel_open_fraction), fmt(p.open_vowel_max_median, ".3f"),
                               fmt(p.contrast, ".3f")])
        # contact sheet: 18 frames spread over the clip, labelled with frame number and opening
        frames = read_frames(output)
        picks = np.linspace(0, len(frames) - 1, num=min(18, len(frames))).round().astype(int)
        labels = [f"{i} o={report.opening[i]:.2f}" for i in picks]
        save_contact_sheet([frames[i] for i in picks], out / f"{name}.png", labels=labels)
    detector.close()

    print("\nLip sync and silences (mouth opening = inner-lip gap / mouth width; lag > 0: mouth after sound)\n")
    print(table(["render", "face found", "best r", "lag", "r at lag 0", "opening p5 / p50 / p95",
                 "silent frames", "opening in silence", "opening in speech", "closed in silence"], rows))
    if phone_rows:
        print("\nArticulation on aligned phones (closed < 0.06, open >= 0.15)\n")
        print(table(["render", "P/B/M", "closed fraction", "median min opening", "open vowels", "open fraction",
                     "median max opening", "contrast"], phone_rows))
    print("\nHead and eyes\n")
    print(table(["render", "head rotation deg/frame", "blinks", "blinks/min", "tracking ms/frame"], extra_rows))
    print(f"\ncontact sheets and videos in {out}; peak RSS {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
