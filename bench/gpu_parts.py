"""The GPU's share of a render, model by model, checked against the CPU: the decoder's frames/s
at 512x512, the motion sampler's seconds per clip and the Whisper encoder's audio seconds per
second, each with its largest difference from the CPU's output on the same inputs.

    .venv/bin/python bench/gpu_parts.py prepare --out .gpu           # here: inputs + CPU outputs
    python3 bench/gpu_parts.py measure --inputs .gpu [--device cuda]  # on the GPU machine
    .venv/bin/python bench/gpu_parts.py measure --inputs .gpu --device cpu --quick

Why not ``bench/gpu.py`` on the lent GPU machine: a whole render also runs Face Mesh (mediapipe,
which needs numpy < 2), pocketsphinx and CTranslate2, which that machine's image lacks or
conflicts with, and the Whisper model's 75 MB ``model.bin`` is more than the 64 MiB that may
travel with the repo. The torch models are the part a GPU pool runs, so ``prepare`` runs
everything before them here -- alignment, audio features, the diffusion sample, Whisper's
log-mel -- and saves their inputs with the CPU's outputs (the face and features pickled, the
encoder's 16 MB of weights as read from the pinned ``model.bin``); ``measure`` loads the same
classes the pools use (``FaceRenderer``, ``DiffusionMotion``, ``WhisperEncoder``) on the device.

Measured:
  * decoder: ``FaceRenderer.render`` on the portrait's diffusion motion, frames back on the host
    as uint8, per batch size, after a warm-up batch; mean / max absolute pixel difference from
    the CPU's first frames;
  * motion: ``DiffusionMotion.generate`` per clip, the first call (model load, kernels) and the
    best of three repeats; max latent difference from the CPU (the noise is drawn on the CPU,
    so the samples are the same up to arithmetic);
  * Whisper encoder: ``WhisperEncoder.encode_layers`` to the motion features' block on padded
    30 s windows, batch by batch: audio seconds encoded per wall second; max state difference
    from the CPU on the same window.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pickle
import platform
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import cpu_model, peak_rss_mib  # noqa: E402 - needs the repo on sys.path
from bench.gpu import DeviceClock, table  # noqa: E402

PORTRAIT = "face_grace_hopper.jpg"
CLIPS = ("speech_cmu_arctic_a0009_3s.wav", "speech_cmu_arctic_a0007_4s.wav", "speech_librivox_austen_7s.wav")
WHISPER_CLIP = "speech_asterisk_esMX_allison_28s_8k.wav"   # the longest shared clip: one 30 s window
REFERENCE_FRAMES = 4                                         # CPU frames kept for the decoder's check


def prepare(assets: Path, out: Path, size: int) -> None:
    """Run everything before the models here and save their inputs and the CPU's outputs."""
    import numpy as np

    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.alignment.stage import AlignmentStage
    from workers.audio.decode import load_audio
    from workers.audio.stage import AudioFeatureStage
    from workers.audio.whisper import (
        MOTION_FEATURE_LAYER,
        MOTION_FEATURE_MODEL,
        WhisperEncoder,
        log_mel_windows,
        model_files,
        read_ctranslate2,
        silence_motion_features,
    )
    from workers.decoder.renderer import DecoderConfig, FaceRenderer
    from workers.motion.base import motion_controls
    from workers.motion.learned import DiffusionMotion

    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for clip in CLIPS:
        request = RenderRequest(id=Path(clip).stem, image=str(assets / PORTRAIT), audio=str(assets / clip),
                                output="/nonexistent/unused.mp4", controls=RenderControls(size=size))
        task = RenderTask(request)
        for stage in (AlignmentStage(), AudioFeatureStage()):
            stage([task])
        assert task.failure is None, task.failure
        controls = motion_controls(request.controls)
        motion = DiffusionMotion(device="cpu").generate(task.audio, task.face.model.source_latent, controls)
        clips.append({"clip": clip, "audio": task.audio, "controls": controls, "motion": motion})
    face = task.face
    frames = FaceRenderer(face, DecoderConfig(device="cpu")).render(clips[-1]["motion"][:REFERENCE_FRAMES])

    _, weights = read_ctranslate2(model_files(MOTION_FEATURE_MODEL)["model.bin"], "encoder/")
    wave = load_audio(assets / WHISPER_CLIP, 16000)
    mel, _ = log_mel_windows(wave)
    states = WhisperEncoder(MOTION_FEATURE_MODEL, "cpu", weights).encode_layers(mel[:1], MOTION_FEATURE_LAYER)[-1]

    with open(out / "inputs.pkl", "wb") as file:
        pickle.dump({"size": size, "face": face, "clips": clips, "frames": frames, "whisper_name": MOTION_FEATURE_MODEL,
                     "whisper_layer": MOTION_FEATURE_LAYER, "mel": mel[:1], "states": states,
                     "silence_row": silence_motion_features()}, file)
    np.savez(out / "whisper_encoder.npz", **{key.replace("/", "|"): value for key, value in weights.items()})
    print(f"prepared {out}: {sum(f.stat().st_size for f in out.iterdir()) / 2**20:.1f} MiB")


class _Unpickler(pickle.Unpickler):
    """Reads inputs pickled under numpy 1 (this project's pin) where numpy 2 runs (the GPU
    machine's image), whose ``numpy.core`` moved to ``numpy._core``."""

    def find_class(self, module: str, name: str):
        import numpy as np

        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def decoder_rows(torch, inputs: dict, device: str, frames: int, batches: list[int]) -> list[list[str]]:
    import numpy as np

    from workers.decoder.renderer import DecoderConfig, FaceRenderer

    source = inputs["clips"][-1]["motion"]
    motion = np.concatenate([source] * int(np.ceil(frames / len(source))))[:frames]
    reference = inputs["frames"].astype(np.int16)
    rows = []
    for batch in batches:
        renderer = FaceRenderer(inputs["face"], DecoderConfig(device=device, batch_frames=batch))
        first = renderer.render(motion[:len(reference)])                 # warm-up and the CPU check
        difference = np.abs(first.astype(np.int16) - reference)
        with DeviceClock(device) as clock:
            rendered = renderer.render(motion)
        assert rendered.shape == (frames, inputs["size"], inputs["size"], 3), rendered.shape
        rows.append([f"{inputs['size']}x{inputs['size']}", str(frames), str(batch), f"{clock.seconds:.2f}",
                     f"{frames / clock.seconds:.1f}", clock.memory, f"{difference.mean():.3f} / {difference.max()}"])
    return rows


def motion_rows(torch, inputs: dict, device: str) -> list[list[str]]:
    import numpy as np

    from workers.motion.learned import DiffusionMotion

    generator = DiffusionMotion(device=device)
    source_latent = inputs["face"].model.source_latent
    rows = []
    for index, clip in enumerate(inputs["clips"]):
        with DeviceClock(device) as first:
            motion = generator.generate(clip["audio"], source_latent, clip["controls"])
        repeats = []
        for _ in range(3):
            with DeviceClock(device) as clock:
                generator.generate(clip["audio"], source_latent, clip["controls"])
            repeats.append(clock.seconds)
        seconds = clip["audio"].num_frames / clip["audio"].fps
        label = " (model load)" if index == 0 else ""
        rows.append([clip["clip"], f"{seconds:.2f}", f"{first.seconds:.3f}{label}", f"{min(repeats):.3f}",
                     f"{seconds / min(repeats):.0f}", f"{np.abs(motion - clip['motion']).max():.2e}"])
    return rows


def stream_rows(torch, inputs: dict, device: str) -> list[list[str]]:
    """The streaming API's first frames on the device: the motion sampler's first window and
    its first decoder batch decoded, with the models loaded (the audio rows are computed beforehand: the
    feature front end is the CPU's share)."""
    from workers.decoder.renderer import DecoderConfig, FaceRenderer
    from workers.motion.conditioning import features_matrix
    from workers.motion.learned import DiffusionMotion, to_model_rate

    generator = DiffusionMotion(device=device)
    renderer = FaceRenderer(inputs["face"], DecoderConfig(device=device))
    clip = inputs["clips"][-1]
    rows = to_model_rate(features_matrix(clip["audio"]), clip["audio"].fps)
    source_latent = inputs["face"].model.source_latent
    out = []
    for label in ("first stream", "repeated"):
        with DeviceClock(device) as clock:
            # 0.2 s of audio rows at a time, as pipeline.streaming.stream_audio_rows yields them
            blocks = (rows[start:start + 5] for start in range(0, len(rows), 5))
            stream = generator.stream(blocks, source_latent, clip["controls"])
            motion = next(stream)
            # As pipeline.streaming.stream_render yields them: one decoder batch first.
            frames = renderer.render(motion[:renderer.config.batch_frames])
        stream.close()
        out.append([label, f"{1000 * clock.seconds:.0f}", str(len(frames))])
    return out


def whisper_rows(torch, inputs: dict, weights: dict, device: str, batches: list[int]) -> list[list[str]]:
    import numpy as np

    from workers.audio.whisper import WhisperEncoder

    encoder = WhisperEncoder(inputs["whisper_name"], device, weights)
    layer = inputs["whisper_layer"]
    states = encoder.encode_layers(inputs["mel"], layer)[-1]
    difference = np.abs(states - inputs["states"]).max() / np.abs(inputs["states"]).max()
    rows = []
    for batch in batches:
        windows = np.repeat(inputs["mel"], batch, axis=0)
        encoder.encode_layers(windows, layer)                            # warm-up at this shape
        with DeviceClock(device) as clock:
            encoder.encode_layers(windows, layer)
        rows.append([str(batch), f"{30 * batch}", f"{clock.seconds:.3f}", f"{30 * batch / clock.seconds:.0f}",
                     clock.memory, f"{difference:.1e}"])
    return rows


def measure(inputs_dir: Path, device: str, quick: bool) -> tuple[str, int]:
    import numpy as np
    import torch

    with open(inputs_dir / "inputs.pkl", "rb") as file:
        inputs = _Unpickler(file).load()
    with np.load(inputs_dir / "whisper_encoder.npz") as saved:
        weights = {key.replace("|", "/"): saved[key] for key in saved.files}
    # The sampler pads windows past the clip's ends with Whisper's features of silence, which
    # the audio front end (faster-whisper's log-mel, not on a machine that lacks the package)
    # computes once per process: the row computed here by prepare stands in for that cache.
    import workers.motion.conditioning as conditioning

    conditioning.silence_motion_features = lambda: inputs["silence_row"]
    frames, decoder_batches, whisper_batches = (8, [4], [1]) if quick else (1000, [25, 100], [1, 8, 32])
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "none"
    lines = [f"machine: {cpu_model()}, {os.cpu_count()} CPUs, GPU {gpu}; device {device}; torch {torch.__version__}; "
             f"numpy {np.__version__}; python {platform.python_version()}; {datetime.date.today().isoformat()}"]
    sections = [
        ("Decoder (`FaceRenderer.render`, frames back on the host as uint8)",
         ["size", "frames", "batch", "seconds", "frames/s", "peak GPU MiB alloc / reserved", "|device - CPU| mean / max"],
         lambda: decoder_rows(torch, inputs, device, frames, decoder_batches)),
        ("Motion (`DiffusionMotion.generate`, the default sampler; seconds per clip)",
         ["clip", "audio s", "first call s", "best of 3 s", "x real time", "max |device - CPU| latent"],
         lambda: motion_rows(torch, inputs, device)),
        ("Streaming (`DiffusionMotion.stream` + `FaceRenderer.render`: call to first frames, audio rows ready)",
         ["stream", "first frames ms", "frames first yielded"], lambda: stream_rows(torch, inputs, device)),
        ("Whisper encoder (tiny.en to the motion features' block, padded 30 s windows)",
         ["windows", "audio s", "seconds", "audio s per s", "peak GPU MiB alloc / reserved", "max |device - CPU| / max |CPU|"],
         lambda: whisper_rows(torch, inputs, weights, device, whisper_batches)),
    ]
    failed = 0
    for title, header, rows in sections:
        # One model failing on a device must not hide the others' figures: each section runs
        # on its own and a failure is reported in its place (and in the exit status).
        try:
            body = table(header, rows())
        except Exception:  # noqa: BLE001 - reported whole, below
            failed += 1
            body = "FAILED:\n" + traceback.format_exc()
        lines += ["", title, "", body]
    lines += ["", f"peak RSS {peak_rss_mib():.0f} MiB"]
    return "\n".join(lines), failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="run the stages before the models here; save inputs + CPU outputs")
    prep.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    prep.add_argument("--out", default=str(REPO / ".gpu"))
    prep.add_argument("--size", type=int, default=512, help="face crop side, pixels")
    run = commands.add_parser("measure", help="time the models on a device against the saved CPU outputs")
    run.add_argument("--inputs", default=str(REPO / ".gpu"))
    run.add_argument("--device", default=None, help="torch device (default: cuda if torch sees it, else cpu)")
    run.add_argument("--quick", action="store_true", help="8 frames, one window: checks the script runs")
    run.add_argument("--report", default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)

    if args.command == "prepare":
        prepare(Path(args.assets), Path(args.out), args.size)
        return 0
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/gpu_parts.py: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if not (Path(args.inputs) / "inputs.pkl").is_file():
        print(f"bench/gpu_parts.py: error: no prepared inputs in {args.inputs} (run `prepare` first)", file=sys.stderr)
        return 2
    report, failed = measure(Path(args.inputs), device, args.quick)
    print(report)
    if args.report:
        Path(args.report).write_text(report + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
