"""Speed and quality benchmark on the shared assets.

    .venv/bin/python bench/render.py [--assets /work/shared/assets] [--out out/bench] [--device cpu]
                                     [--process-runs 2] [--skip-process] [--skip-quality]

First the whole process, as a user runs it: ``talkfarm render`` as a subprocess (a fresh
interpreter: imports, model loading, the stages, the encoder's finish) of an 11.1 s clip (two
shared clips joined: arctic a0007 + LibriVox Austen) on Grace Hopper at 512 px, timed from
spawn to exit, against the stages' own seconds it prints ("rendered in S s"); the issue-18
goal is whole process <= 1.5x the stages' own time. Then the stages alone: renders Grace
Hopper with every shared speech clip and the astronaut with a0007 through the in-process
runner (the same stages as ``talkfarm render``), prints per-stage seconds, model loading,
decoder frames/s, the realtime factor of the stage sum and of the wall time, and peak RSS,
then measures each video with workers.quality (landmarks tracked on the rendered frames) and
writes a contact sheet per render. Copy the printed tables into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import statistics
import subprocess
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
# The whole-process render: an 11.1 s clip made of two shared clips, on this portrait, at 512 px.
PROCESS_PORTRAIT = "face_grace_hopper.jpg"
PROCESS_CLIPS = ("speech_cmu_arctic_a0007_4s.wav", "speech_librivox_austen_7s.wav")
PROCESS_GOAL = 1.5   # whole process / stages' own seconds (issue 18)
# What `talkfarm render` prints when done: its frames, audio seconds and the sum of the stages' own seconds.
RENDERED = re.compile(r"(\d+) frames, ([0-9.]+) s of audio, rendered in ([0-9.]+) s")
# Every stage's module, as the render path imports them (workers only: no runner internals).
STAGE_MODULES = ("workers.alignment.stage", "workers.audio.stage", "workers.motion.stage", "workers.decoder.stage",
                 "workers.encode.stage")


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


def join_clips(clips: list[Path], target: Path) -> Path:
    """One 16 kHz mono WAV of ``clips`` played one after another (ffmpeg's concat filter)."""
    import imageio_ffmpeg

    inputs = [arg for clip in clips for arg in ("-i", str(clip))]
    resampled = "".join(f"[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}];" for i in range(len(clips)))
    joined = "".join(f"[a{i}]" for i in range(len(clips))) + f"concat=n={len(clips)}:v=0:a=1"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *inputs,
                    "-filter_complex", resampled + joined, str(target)], check=True)
    return target


def import_seconds() -> float:
    """Wall seconds a fresh interpreter takes to import every stage's module (torch, MediaPipe,
    SciPy and the rest of what a render loads before its first stage runs)."""
    code = ("import time; t = time.perf_counter(); import " + ", ".join(STAGE_MODULES)
            + "; print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return float(done.stdout.split()[-1])


def whole_process_renders(image: Path, audio: Path, out: Path, runs: int) -> list[dict]:
    """``talkfarm render`` as a subprocess, ``runs`` times: wall seconds from spawn to exit,
    the child's CPU seconds, and what it printed (frames, audio seconds, stages' own seconds)."""
    talkfarm = Path(sys.executable).with_name("talkfarm")
    command = [str(talkfarm)] if talkfarm.is_file() else [sys.executable, "-m", "pipeline.cli"]
    results = []
    for run in range(runs):
        output = out / f"whole_process_{run}.mp4"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([*command, "render", "--image", str(image), "--audio", str(audio), "-o", str(output),
                               "--size", "512"], capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        printed = RENDERED.search(done.stderr)
        if done.returncode != 0 or printed is None:
            raise SystemExit(f"talkfarm render failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        frames, audio_seconds, stage_seconds = int(printed[1]), float(printed[2]), float(printed[3])
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        results.append(dict(wall=wall, stages=stage_seconds, frames=frames, audio=audio_seconds, cpu=cpu))
    return results


def whole_process_table(results: list[dict], imports: float) -> str:
    rows = [[str(run + 1), f"{r['audio']:.2f}", str(r["frames"]), f"{r['wall']:.2f}", f"{r['stages']:.2f}",
             f"{r['wall'] - r['stages']:.2f}", f"{r['wall'] / r['stages']:.2f}", f"{r['wall'] / r['audio']:.2f}",
             f"{r['stages'] / r['audio']:.2f}", f"{r['cpu']:.1f}"] for run, r in enumerate(results)]
    ratio = statistics.median(r["wall"] / r["stages"] for r in results)
    return "\n".join([
        table(["run", "audio s", "frames", "whole process wall s", "stages' own s", "outside the stages s",
               "wall / stages", "wall realtime factor", "stage-sum realtime factor", "CPU s (all threads)"], rows),
        f"\nimports of the stage modules in a fresh interpreter: {imports:.2f} s (part of 'outside the stages')",
        f"goal whole process <= {PROCESS_GOAL}x the stages' own time: median {ratio:.2f}x "
        f"({'met' if ratio <= PROCESS_GOAL else 'NOT met'})"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--out", default=str(REPO / "out" / "bench"))
    parser.add_argument("--device", default=None, help="decoder torch device (default: cuda if available, else cpu)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--process-runs", type=int, default=2, help="whole-process `talkfarm render` runs")
    parser.add_argument("--skip-process", action="store_true", help="no whole-process `talkfarm render` runs")
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

    if not args.skip_process:
        clip = join_clips([assets / name for name in PROCESS_CLIPS], out / "whole_process_clip.wav")
        print(f"\nWhole process: `talkfarm render` subprocess, {PROCESS_PORTRAIT} + {' + '.join(PROCESS_CLIPS)} "
              f"joined, 512 px, {args.process_runs} runs (the first may pay cold file caches)\n", flush=True)
        results = whole_process_renders(assets / PROCESS_PORTRAIT, clip, out, args.process_runs)
        print(whole_process_table(results, import_seconds()) + "\n", flush=True)

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
                     f"{wall:.2f}", f"{decode_fps:.0f}", f"{total / result.audio_seconds:.2f}",
                     f"{wall / result.audio_seconds:.2f}", f"{rss:.0f}"])
    print("Speed in-process, models loaded (seconds per stage, share of the render's stage total; wall: the "
          "runner's render call)\n")
    print(table(["render", "audio s", "frames", *STAGES, "stages total s", "wall s", "decode fps",
                 "stage-sum realtime factor", "wall realtime factor", "peak RSS MiB"], rows))
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
