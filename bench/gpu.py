"""The GPU path: decoder frames/s at 512x512, whole-render realtime factor, streaming first-frame
latency and GPU memory, with the decoder and motion sampling on one device.

    .venv/bin/python bench/gpu.py                      # cuda when torch sees it, else cpu
    .venv/bin/python bench/gpu.py --device cpu         # the same measurements on the CPU
    .venv/bin/python bench/gpu.py --device cpu --quick # small sizes: checks the script end to end

Goals (issue 20): decoder >= 200 frames/s at 512x512 (five times VASA-1's 40), first frames of
a stream within 100 ms. Prints markdown tables for BENCHMARKS.md.

Measured:
  * decoder frames/s: ``FaceRenderer.render`` on diffusion motion of the portrait, after a
    warm-up batch, frames back on the host as uint8 (the copy off the GPU is included);
  * whole render: the in-process runner (the same stages as ``talkfarm render`` and the batch
    graph's workers) on each clip; realtime factor = wall seconds / audio seconds;
  * streaming: ``pipeline.streaming.stream_render`` from call to first frames, cold (the first
    stream of the process: alignment, model load) and warm (models loaded, the call repeated);
  * memory: peak GPU memory allocated / reserved by torch per measurement (cuda), peak RSS.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import cpu_model, peak_rss_mib  # noqa: E402 - needs the repo on sys.path

PORTRAIT = "face_grace_hopper.jpg"
CLIPS = ("speech_cmu_arctic_a0009_3s.wav", "speech_cmu_arctic_a0007_4s.wav", "speech_librivox_austen_7s.wav")


class DeviceClock:
    """Wall time and peak memory of a block on a torch device (synchronised on cuda)."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> "DeviceClock":
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.started
        self.memory = (f"{self.torch.cuda.max_memory_allocated() / 2**20:.0f} / "
                       f"{self.torch.cuda.max_memory_reserved() / 2**20:.0f}") if self.cuda else "n/a (cpu)"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def decoder_rate(assets: Path, device: str, size: int, frames: int, batch: int) -> list[str]:
    """One row: decoder frames/s on ``frames`` frames of diffusion motion at ``size`` px."""
    import numpy as np

    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.alignment.stage import AlignmentStage
    from workers.audio.stage import AudioFeatureStage
    from workers.decoder.renderer import DecoderConfig, FaceRenderer
    from workers.motion.stage import MotionStage

    request = RenderRequest(id="gpu-bench", image=str(assets / PORTRAIT), audio=str(assets / CLIPS[1]),
                            output="/nonexistent/unused.mp4", controls=RenderControls(size=size))
    task = RenderTask(request)
    for stage in (AlignmentStage(), AudioFeatureStage(), MotionStage(device)):
        stage([task])
    assert task.failure is None, task.failure
    motion = np.concatenate([task.motion] * int(np.ceil(frames / len(task.motion))))[:frames]
    renderer = FaceRenderer(task.face, DecoderConfig(device=device, batch_frames=batch))
    renderer.render(motion[:batch])                                   # warm-up: kernels, caches
    with DeviceClock(device) as clock:
        out = renderer.render(motion)
    assert out.shape == (frames, size, size, 3), out.shape
    return [f"{size}x{size}", str(frames), str(batch), f"{clock.seconds:.2f}", f"{frames / clock.seconds:.1f}",
            clock.memory]


def whole_renders(assets: Path, device: str, size: int, clips: list[str], out: Path) -> tuple[list[list[str]], float]:
    """Rows per clip: the in-process runner's stage seconds and realtime factor."""
    from core.schemas import RenderControls, RenderRequest
    from pipeline.render import LocalRenderer
    from workers.decoder.renderer import DecoderConfig

    runner = LocalRenderer(DecoderConfig(device=device))
    rows = []
    for clip in clips:
        request = RenderRequest(id=Path(clip).stem, image=str(assets / PORTRAIT), audio=str(assets / clip),
                                output=str(out / f"{Path(clip).stem}.mp4"), controls=RenderControls(size=size))
        with DeviceClock(device) as clock:
            result = runner.render(request)
        if result.status != "done":
            raise SystemExit(f"{clip}: render failed in {result.error_stage}: {result.error_message}")
        stages = " / ".join(f"{result.seconds.get(s, 0.0):.2f}" for s in ("alignment", "audio", "motion", "decode",
                                                                          "encode"))
        rows.append([clip, f"{result.audio_seconds:.2f}", str(result.frames), stages, f"{clock.seconds:.2f}",
                     f"{clock.seconds / result.audio_seconds:.2f}", clock.memory])
    return rows, runner.setup_seconds


def stream_latency(assets: Path, device: str, size: int) -> list[list[str]]:
    """Rows: seconds from calling stream_render to its first frames, cold then warm."""
    from core.schemas import RenderControls
    from pipeline.streaming import stream_render

    rows = []
    for label in ("cold (first stream of the process)", "warm (repeated)"):
        with DeviceClock(device) as clock:
            stream = stream_render(assets / PORTRAIT, assets / CLIPS[1], RenderControls(size=size), device=device)
            first = next(stream)
        stream.close()
        rows.append([label, f"{1000 * clock.seconds:.0f}", str(len(first)), clock.memory])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--device", default=None, help="torch device (default: cuda if torch sees it, else cpu)")
    parser.add_argument("--size", type=int, default=512, help="face crop side, pixels")
    parser.add_argument("--frames", type=int, default=500, help="frames decoded for the frames/s figure")
    parser.add_argument("--batch", type=int, default=25, help="frames per batched decoder call")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), help="speech clips rendered whole")
    parser.add_argument("--quick", action="store_true", help="128 px, 50 frames, one clip: checks the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.frames, args.clips = 128, 50, [CLIPS[0]]

    import torch

    from core.devices import local_device

    device = args.device or local_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/gpu.py: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    assets = Path(args.assets)
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "none"
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, GPU {gpu}; device {device}; torch {torch.__version__}; "
          f"python {platform.python_version()}; {datetime.date.today().isoformat()}\n")

    print("Decoder (FaceRenderer.render, frames back on the host; goal >= 200 frames/s at 512x512)\n")
    print(table(["size", "frames", "batch", "seconds", "frames/s", "peak GPU MiB alloc / reserved"],
                [decoder_rate(assets, device, args.size, args.frames, args.batch)]))

    with tempfile.TemporaryDirectory(prefix="talkfarm-gpu-bench-") as out:
        rows, setup_seconds = whole_renders(assets, device, args.size, args.clips, Path(out))
    print(f"\nWhole render (in-process runner; model loading {setup_seconds:.2f} s not included)\n")
    print(table(["clip", "audio s", "frames", "alignment / audio / motion / decode / encode s", "wall s",
                 "realtime factor", "peak GPU MiB alloc / reserved"], rows))

    print("\nStreaming (stream_render: call to first frames; goal <= 100 ms)\n")
    print(table(["stream", "first frames ms", "frames first yielded", "peak GPU MiB alloc / reserved"],
                stream_latency(assets, device, args.size)))
    print(f"\npeak RSS {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
