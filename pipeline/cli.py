"""The ``talkfarm`` command line."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from pathlib import Path

from core.errors import BadInputError, TalkfarmError
from core.schemas import EMOTION_NAMES, MOTION_GENERATORS
from core.transcripts import read_transcript

EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A bad argument or input: printed as one line, exit code 2."""


def _pair(text: str) -> tuple[float, float]:
    try:
        yaw, pitch = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YAW,PITCH in degrees, e.g. 10,-5; got {text!r}") from None
    return yaw, pitch


def _emotion(text: str) -> str | tuple[float, ...]:
    if text in EMOTION_NAMES:
        return text
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(EMOTION_NAMES)} or a comma-separated vector; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talkfarm",
        description="Render talking-face videos from one portrait and one speech clip (VASA-1 style).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = commands.add_parser(
        "render", help="render one video from a portrait and a speech clip",
        description="Render one talking-face MP4 (h264 + aac) whose duration matches the speech.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    render.add_argument("--image", required=True, help="portrait photo (JPEG, PNG or WebP; any size, face anywhere)")
    render.add_argument("--audio", required=True, help="speech clip (WAV, FLAC, OGG or MP3; 8-48 kHz, up to 10 minutes)")
    render.add_argument("-o", "--output", required=True, help="output .mp4 path (written atomically)")
    render.add_argument("--size", type=int, default=512, help="side of the square face crop in pixels")
    render.add_argument("--fps", type=float, default=25.0, help="video frames per second")
    render.add_argument("--seed", type=int, default=0, help="random seed for head motion and blinks")
    render.add_argument("--gaze", type=_pair, default=None, metavar="YAW,PITCH",
                        help="gaze direction in degrees relative to the head (+yaw: image right, +pitch: up); "
                             "default keeps the photo's gaze")
    render.add_argument("--distance", type=float, default=1.0,
                        help="head-to-camera scale: 1.0 as in the photo, 1.2 closer, 0.8 further (0.5-2.0)")
    render.add_argument("--emotion", type=_emotion, default="neutral",
                        help=f"expression offset: {', '.join(EMOTION_NAMES)}, or 12 comma-separated dynamics offsets")
    render.add_argument("--paste-back", action="store_true",
                        help="render the head back into the full original photo instead of the face crop")
    render.add_argument("--motion", choices=MOTION_GENERATORS, default="diffusion",
                        help="motion generator: diffusion (the trained transformer, default) or procedural "
                             "(hand-made baseline)")
    render.add_argument("--sampling-steps", type=int, default=10, help="diffusion denoising steps per window (1-100)")
    render.add_argument("--audio-guidance", type=float, default=0.5,
                        help="classifier-free guidance scale on the audio, lambda_A, for the face (diffusion; "
                             "the head pose is sampled without it)")
    render.add_argument("--gaze-guidance", type=float, default=1.0,
                        help="classifier-free guidance scale on the gaze direction, lambda_g (diffusion)")
    render.add_argument("--transcript", default=None, metavar="TEXT_OR_FILE",
                        help="what the speech says (text, or a path to a UTF-8 .txt file): aligned to the audio so "
                             "the lips follow the phonemes (closures on p/b/m, rounding, jaw height); text that does "
                             "not match the audio falls back to audio-only lip sync with a warning")
    render.add_argument("--language", default="en",
                        help="language of the speech and transcript, an espeak-ng code (en, es, de, fr, pt-br, ...; "
                             "`espeak-ng --voices` lists them)")
    render.add_argument("--no-recognise", dest="recognise", action="store_false",
                        help="without --transcript, do not recognise the speech: audio-only lip sync (faster)")
    render.add_argument("--device", default=None, help="torch device for decoding (default: cuda if available, else cpu)")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)
    verify = commands.add_parser(
        "verify", help="read a video's talkfarm watermark and check it against its provenance record",
        description="Read the invisible talkfarm watermark back from VIDEO (survives re-encoding, scaling, "
                    "cropping and trimming) and compare it with the provenance sidecar or a job manifest. "
                    "Exit code 0: a talkfarm watermark was found; 1: none found; 2: bad input.")
    verify.add_argument("video", metavar="VIDEO", help="video file to check")
    verify.add_argument("--sidecar", default=None,
                        help="provenance JSON to compare with (default: VIDEO.provenance.json, if present)")
    verify.add_argument("--manifest", default=None,
                        help="job manifest (Parquet, with a render_id column) to look the render up in")
    verify.add_argument("--frames", type=int, default=24, help="frames read (spread over the video)")
    verify.set_defaults(handler=_verify)
    from pipeline.batch_cli import add_batch_commands

    add_batch_commands(commands)
    from pipeline.qc_cli import add_qc_commands

    add_qc_commands(commands)
    from pipeline.submit_cli import add_submit_command

    add_submit_command(commands)
    return parser


def _render(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from core.schemas import RenderControls, RenderRequest

    for label, path in (("image", args.image), ("audio", args.audio)):
        if not Path(path).is_file():
            raise BadInputError(f"{label} file not found", path)
    transcript = None
    if args.transcript is not None:
        transcript = read_transcript(args.transcript)
    try:
        controls = RenderControls(size=args.size, fps=args.fps, seed=args.seed, gaze=args.gaze,
                                  distance=args.distance, emotion=args.emotion, paste_back=args.paste_back,
                                  motion=args.motion, sampling_steps=args.sampling_steps,
                                  audio_guidance=args.audio_guidance, gaze_guidance=args.gaze_guidance,
                                  transcript=transcript, language=args.language, recognise=args.recognise)
        request = RenderRequest(id=Path(args.output).stem, image=args.image, audio=args.audio,
                                output=args.output, controls=controls)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CliError(f"--{where.replace('_', '-')}: {first['msg'].removeprefix('Value error, ')}") from None

    with _loading():
        # Imported here, not at the top: --help and bad input exit before paying for torch.
        from workers.encode.video import check_writable

        check_writable(args.output)
        from tqdm import tqdm

        from core.devices import local_device
        from pipeline.runner import InProcessRunner
        from workers.decoder.renderer import DecoderConfig

        device = args.device or local_device()
        progress = None

        def on_frames(task, count: int) -> None:
            nonlocal progress
            if args.quiet:
                return
            if progress is None:
                progress = tqdm(total=task.num_frames, unit="frame", desc="rendering", leave=False)
            progress.update(count)

        runner = InProcessRunner(DecoderConfig(device=device), on_frames=on_frames)
        runner.setup()
    result = runner.render(request)
    if progress is not None:
        progress.close()
    for warning in result.warnings:
        print(f"talkfarm: warning: {warning}", file=sys.stderr)
    if result.status == "failed":
        raise CliError(f"{result.error_stage}: {result.error_message}")
    if not args.quiet:
        render_seconds = sum(result.seconds.values())
        print(f"wrote {result.output}: {result.frames} frames, {result.audio_seconds:.2f} s of audio, "
              f"rendered in {render_seconds:.1f} s (realtime factor {render_seconds / max(result.audio_seconds, 1e-9):.2f})",
              file=sys.stderr)
    print(result.output)
    return 0


@contextlib.contextmanager
def _loading():
    """Imports and model loading make objects that live as long as the process: collect none of
    them while they are made (the collector would walk them all several times), then keep them
    out of every later collection, the interpreter's last one at exit included. Measured in
    BENCHMARKS.md ("Start-up"): about 1 s of a render's start-up and exit on 2 cores."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _verify(args: argparse.Namespace) -> int:
    import json

    from core.provenance import read_sidecar, sidecar_path
    from workers.encode import watermark
    from workers.encode.video import probe_video, read_frames

    video = Path(args.video)
    if not video.is_file():
        raise BadInputError("video file not found", video)
    info = probe_video(video)
    if info.get("video_codec") is None or "width" not in info:
        raise BadInputError("not a video file (no video stream ffmpeg can read)", video)
    sidecar = Path(args.sidecar) if args.sidecar else sidecar_path(video)
    if args.sidecar and not sidecar.is_file():
        raise BadInputError("sidecar file not found", sidecar)
    record = None
    if sidecar.is_file():
        try:
            record = read_sidecar(sidecar)
        except (OSError, ValueError):
            raise BadInputError("sidecar is not a provenance JSON file", sidecar) from None
    manifest_ids: list[str] | None = None
    if args.manifest:
        try:
            import pyarrow.parquet as pq

            manifest_ids = [value for value in pq.read_table(args.manifest, columns=["render_id"])
                            .column("render_id").to_pylist() if value]
        except (OSError, KeyError, ValueError, ImportError) as err:
            raise BadInputError(f"cannot read render_id from manifest ({type(err).__name__})", args.manifest) from None
    try:
        frames = read_frames(video)
    except Exception:  # noqa: BLE001 - any decode failure is bad input here
        raise BadInputError("cannot decode the video's frames", video) from None
    reading = watermark.read(frames, max_frames=max(1, args.frames))
    report = {"video": str(video), "watermark": reading.found,
              "payload": None if reading.payload is None else {"format_version": reading.payload.version,
                                                                "render_id_prefix": reading.payload.render_id_prefix},
              "confidence": round(reading.confidence, 4), "sync_z": round(reading.sync_z, 2),
              "bit_snr": round(reading.bit_snr, 2), "scale": round(reading.scale, 3), "frames_read": reading.frames}
    if reading.found:
        print(f"watermark: {reading.payload} (confidence {reading.confidence:.3f}, sync {reading.sync_z:.1f} sd, "
              f"scale {reading.scale:.2f}, {reading.frames} frames)")
        print("synthetic: yes (made by talkfarm)")
    else:
        print(f"watermark: none found (sync {reading.sync_z:.1f} sd, {reading.frames} frames read)")
    if record is not None:
        matches = reading.found and reading.payload.matches(record.get("render_id"))
        report["sidecar"] = {"path": str(sidecar), "render_id": record.get("render_id"), "matches": bool(matches)}
        print(f"sidecar {sidecar}: render {record.get('render_id')} -> "
              f"{'MATCHES the watermark' if matches else 'does NOT match the watermark'}")
    if manifest_ids is not None:
        hits = [rid for rid in manifest_ids if reading.found and reading.payload.matches(rid)]
        report["manifest"] = {"path": str(args.manifest), "matches": hits}
        print(f"manifest {args.manifest}: " + (f"render {hits[0]} matches the watermark" if hits
                                                else "no render in it matches the watermark"))
    print(json.dumps(report, sort_keys=True))
    return 0 if reading.found else 1


def _silence_native_stderr() -> None:
    """Send fd 2 to /dev/null, keeping Python's sys.stderr on the real terminal.

    MediaPipe's C++ (TFLite, glog) writes start-up chatter straight to fd 2 from its own
    threads; users should see only talkfarm's own lines. TALKFARM_DEBUG=1 keeps it all.
    """
    if os.environ.get("TALKFARM_DEBUG"):
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(terminal, "w", buffering=1)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    _silence_native_stderr()
    try:
        return args.handler(args)
    except (BadInputError, CliError) as err:
        print(f"talkfarm: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TalkfarmError as err:    # the job could not finish: state / lease lost, manifest unwritable
        print(f"talkfarm: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_JOB_FAILED
    except KeyboardInterrupt:
        print("talkfarm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
