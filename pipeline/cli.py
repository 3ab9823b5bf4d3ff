"""The ``talkfarm`` command line.

Commands import their machinery (torch, mediapipe, ffmpeg, pyarrow) inside their bodies, once
they are going to run: `--help` and bad input answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from core.errors import BadInputError, TalkfarmError
from core.schemas import TAKE_FITS, RenderRequest, TakeOptions
from pipeline.batch_cli import add_batch_commands
from pipeline.controls import (
    add_control_options,
    controls_from_args,
    option_name,
    validation_message,
)
from pipeline.qc_cli import add_qc_commands
from pipeline.submit import add_submit_command

# The controls a dub takes: the take decides frame rate, pose, gaze and framing; ``size`` caps
# the face crop (a smaller face is dubbed at its own resolution).
DUB_CONTROLS = ("size", "seed", "motion", "sampling_steps", "audio_guidance", "transcript", "language", "recognise")
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
MAX_PROCESSES = 64


class CliError(Exception):
    """A bad argument or input: printed as one line, exit code 2."""


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
    add_control_options(render)
    render.add_argument("--device", default=None, help="torch device for decoding (default: cuda if available, else cpu)")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)
    dub = commands.add_parser(
        "dub", help="lip-sync an actor's take to new speech (visual dubbing)",
        description="Dub a filmed take: the mouth and jaw follow the new speech, everything else (head, eyes, "
                    "brows, body, background, cuts) stays the take's own. The MP4 (h264 + aac) keeps the take's "
                    "size and frame rate, with the new speech as its sound.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dub.add_argument("--video", required=True, help="the actor's take (MP4, MOV, MKV or WebM; any size and frame "
                                                    "rate, up to 10 minutes)")
    dub.add_argument("--audio", required=True, help="the new speech (WAV, FLAC, OGG or MP3; up to 10 minutes)")
    dub.add_argument("-o", "--output", required=True, help="output .mp4 path (written atomically)")
    dub.add_argument("--fit", choices=TAKE_FITS, default="trim",
                     help="lengths: trim (the shorter of take and speech), hold (the speech's, the take's last frame "
                          "held) or error (refuse when they differ by more than a second)")
    dub.add_argument("--face", type=int, default=0, help="face to dub when the take shows several: 0 the largest, "
                                                         "1 the next largest, ...")
    add_control_options(dub, only=DUB_CONTROLS)
    dub.add_argument("--processes", type=int, default=None, metavar="N",
                     help="worker processes that dub the take's frames while this one tracks and encodes "
                          "(0: all in this process, best on cores other work keeps busy; default: one per core on two or "
                          "more cores, else 0)")
    dub.add_argument("--device", default=None, help="torch device for decoding (default: cuda if available, else cpu)")
    dub.add_argument("--quiet", action="store_true", help="no progress bar")
    dub.set_defaults(handler=_dub)
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
    add_batch_commands(commands)
    add_qc_commands(commands)
    add_submit_command(commands)
    return parser


def _render(args: argparse.Namespace) -> int:

    for label, path in (("image", args.image), ("audio", args.audio)):
        if not Path(path).is_file():
            raise BadInputError(f"{label} file not found", path)
    controls = controls_from_args(args)
    try:
        request = RenderRequest(id=Path(args.output).stem, image=args.image, audio=args.audio,
                                output=args.output, controls=controls)
    except ValidationError as err:
        raise CliError(validation_message(err, option_name)) from None

    return _render_locally(request, args, dub=False)


def _dub(args: argparse.Namespace) -> int:
    for label, path in (("video", args.video), ("audio", args.audio)):
        if not Path(path).is_file():
            raise BadInputError(f"{label} file not found", path)
    if args.processes is not None and not 0 <= args.processes <= MAX_PROCESSES:
        raise CliError(f"--processes must be between 0 and {MAX_PROCESSES}")
    controls = controls_from_args(args)
    try:
        request = RenderRequest(id=Path(args.output).stem, video=args.video, audio=args.audio, output=args.output,
                                controls=controls, take=TakeOptions(fit=args.fit, face=args.face))
    except ValidationError as err:
        raise CliError(validation_message(err, option_name)) from None
    # A dub works a frame at a time on small tensors: torch's intra-op threads cost more than
    # they give there, most on shared cores (bench/dub_speed.py: the whole dub 2.2x faster on one
    # thread at load 7-8, BENCHMARKS "Visual dubbing: speed, round 4"). Set before torch loads
    # (it is imported below, in _render_locally) and only where the user has not chosen.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    return _render_locally(request, args, dub=True)


def _render_locally(request: RenderRequest, args: argparse.Namespace, dub: bool) -> int:
    """Render (or dub) one request in this process through its graph, with a progress bar."""
    with _loading():
        # Imported here, not at the top: --help and bad input exit before paying for torch.
        from workers.encode.video import check_writable

        check_writable(args.output)
        from tqdm import tqdm

        from core.devices import local_device
        from pipeline.graph import DUB_GRAPH, GraphConfig
        from pipeline.render import LocalRenderer, default_processes
        from workers.decoder.renderer import DecoderConfig

        device = args.device or local_device()
        progress = None

        def on_progress(state) -> None:
            nonlocal progress
            if args.quiet or not state.frames_planned:
                return
            if progress is None:
                progress = tqdm(total=state.frames_planned, unit="frame", desc="dubbing" if dub else "rendering",
                                leave=False)
            progress.update(state.frames - progress.n)

        # The driver's per-request failure log is for batch operators; a render states its error once.
        logging.getLogger("pipeline.batch").setLevel(logging.ERROR)
        graph = GraphConfig(stages=DUB_GRAPH) if dub else GraphConfig()
        # Worker processes share out CPU work; a GPU dubs in this process (CUDA does not survive a fork).
        processes = (0 if not dub else args.processes if args.processes is not None
                     else default_processes() if device == "cpu" else 0)
        renderer = LocalRenderer(DecoderConfig(device=device), on_progress=on_progress, graph=graph,
                                 processes=processes)  # loads models
    started = time.perf_counter()
    try:
        result = renderer.render(request)
    finally:
        renderer.close()
    # Wall time, not the stages' summed seconds: with worker processes the stages overlap.
    wall_seconds = time.perf_counter() - started
    if progress is not None:
        progress.close()
    for warning in result.warnings:
        print(f"talkfarm: warning: {warning}", file=sys.stderr)
    if result.status == "failed":
        raise CliError(f"{result.error_stage}: {result.error_message}")
    if not args.quiet:
        print(f"wrote {result.output}: {result.frames} frames, {result.audio_seconds:.2f} s of audio, "
              f"{'dubbed' if dub else 'rendered'} in {wall_seconds:.1f} s "
              f"(realtime factor {wall_seconds / max(result.audio_seconds, 1e-9):.2f})", file=sys.stderr)
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
    from core.provenance import read_sidecar, sidecar_path
    from workers.encode import watermark  # imports torch: kept off the CLI's start-up

    video = Path(args.video)
    if not video.is_file():
        raise BadInputError("video file not found", video)
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
    reading = watermark.read_video(video, max_frames=max(1, args.frames))
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
