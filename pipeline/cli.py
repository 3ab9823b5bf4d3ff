"""The ``talkfarm`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.errors import BadInputError
from pipeline.schemas import EMOTION_NAMES, MOTION_GENERATORS

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
    render.add_argument("--motion", choices=MOTION_GENERATORS, default="procedural", help="motion generator")
    render.add_argument("--device", default=None, help="torch device for decoding (default: cuda if available, else cpu)")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)
    return parser


def _render(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.schemas import RenderControls, RenderRequest

    for label, path in (("image", args.image), ("audio", args.audio)):
        if not Path(path).is_file():
            raise BadInputError(f"{label} file not found", path)
    try:
        controls = RenderControls(size=args.size, fps=args.fps, seed=args.seed, gaze=args.gaze,
                                  distance=args.distance, emotion=args.emotion, paste_back=args.paste_back,
                                  motion=args.motion)
        request = RenderRequest(id=Path(args.output).stem, image=args.image, audio=args.audio,
                                output=args.output, controls=controls)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CliError(f"--{where.replace('_', '-')}: {first['msg']}") from None

    from workers.encode.video import check_writable

    check_writable(args.output)
    import torch
    from tqdm import tqdm

    from pipeline.runner import InProcessRunner
    from workers.decoder.renderer import DecoderConfig

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
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
    except KeyboardInterrupt:
        print("talkfarm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
