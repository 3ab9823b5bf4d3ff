"""`talkfarm eval` (measure one rendered video) and `talkfarm report` (HTML page of a job,
built by :mod:`pipeline.qc_report`): their options, checks of the input, and output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import BadInputError


def add_qc_commands(commands) -> None:
    """Register ``eval`` and ``report`` on the CLI's subparsers."""
    ev = commands.add_parser(
        "eval", help="measure a rendered video's quality from its own frames",
        description="Measure a rendered talking-face video from its own frames (Face Mesh landmarks on the "
                    "output): face found, lip sync (mouth opening vs audio envelope, best lag), mouth in "
                    "silences, lips on P/B/M and open vowels (with --transcript), head motion and range, "
                    "blinks, identity drift vs the portrait (with --image), jitter, flicker, durations. "
                    "Prints a table with the thresholds each value broke; exit 0 (2: bad input).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("--video", required=True, help="rendered video to measure")
    ev.add_argument("--audio", default=None,
                    help="speech it was rendered from (default: the video's own audio track)")
    ev.add_argument("--image", default=None, help="portrait it was rendered from (enables identity drift)")
    ev.add_argument("--transcript", default=None,
                    help="English transcript: a text file, or the text itself (enables P/B/M and vowel checks)")
    ev.add_argument("--json", default=None, metavar="OUT", help="also write the metrics and flags as JSON here")
    ev.add_argument("--stride", type=int, default=1, help="track every N-th frame (1 = all)")
    ev.set_defaults(handler=_eval)

    report = commands.add_parser(
        "report", help="HTML report of a batch job's manifest (contact sheets, previews, curves, flags)",
        description="Write a self-contained HTML page with one row per render of MANIFEST: contact sheet, "
                    "animated preview, mouth-opening and audio-envelope curves, head pose, metrics with flags, "
                    "and a job summary (counts, timings, failures by stage). Renders whose manifest row has "
                    "no quality columns are measured now when their video is a local file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    report.add_argument("manifest", metavar="MANIFEST", help="job manifest (Parquet) written by `talkfarm batch`")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    report.add_argument("--stride", type=int, default=2, help="track every N-th frame when measuring now")
    report.add_argument("--no-measure", action="store_true",
                        help="never decode videos: no pictures, metrics only from the manifest")
    report.set_defaults(handler=_report)


# ---------------------------------------------------------------------------- eval

def _eval(args: argparse.Namespace) -> int:
    # numpy, ffmpeg and the QC's stack (OpenCV, pocketsphinx, Face Mesh): loaded by the command,
    # not by `talkfarm --help`
    from core.video import probe_video
    from workers.quality.presentation import METRICS, flagged_keys, format_metric
    from workers.quality.qc import evaluate

    video = Path(args.video)
    if not video.is_file():
        raise BadInputError("video file not found", video)
    for label, path in (("audio", args.audio), ("image", args.image)):
        if path is not None and not Path(path).is_file():
            raise BadInputError(f"{label} file not found", path)
    if args.stride < 1:
        raise BadInputError("--stride must be at least 1", args.stride)
    info = probe_video(video)
    if info.get("video_codec") is None or "width" not in info:
        raise BadInputError("not a video file (no video stream ffmpeg can read)", video)
    audio = args.audio
    if audio is None:
        if not info.get("has_audio"):
            raise BadInputError("the video has no audio track; give --audio", video)
        audio = str(video)
    transcript = None
    if args.transcript is not None:
        path = Path(args.transcript)
        transcript = path.read_text(encoding="utf-8") if path.is_file() else args.transcript
        if not transcript.strip():
            raise BadInputError("transcript is empty", args.transcript)
    if args.json:
        out_dir = Path(args.json).parent
        if not (out_dir if str(out_dir) else Path(".")).is_dir():
            raise BadInputError("folder of --json does not exist", args.json)
    try:
        result = evaluate(video, audio, args.image, transcript, stride=args.stride)
    except ValueError as err:
        raise BadInputError(f"cannot measure the video ({err})", video) from None
    m = result.metrics
    marked = flagged_keys(result.flags)
    print(f"{video}: {m['frames']} frames at {m['fps']:g} fps, {m['tracked_frames']} tracked")
    if args.image and not m.get("portrait_face_found"):
        print(f"note: no face found in {args.image}; identity drift not measured")
    rows = [(key, format_metric(key, m.get(key)), unit, "FLAG" if key in marked else "", what)
            for key, unit, _, what in METRICS if key in m]
    widths = [max(len(r[i]) for r in rows + [("metric", "value", "unit", "", "")]) for i in range(4)]
    print(f"{'metric':<{widths[0]}}  {'value':>{widths[1]}}  {'unit':<{widths[2]}}  {'':<{widths[3]}}  meaning")
    for key, value, unit, flag, what in rows:
        print(f"{key:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {flag:<{widths[3]}}  {what}")
    print("flags: " + ("; ".join(result.flags) if result.flags else "none"))
    if args.json:
        Path(args.json).write_text(result.to_json() + "\n", encoding="utf-8")
    return 0


def _report(args: argparse.Namespace) -> int:
    # pyarrow, Pillow and the QC's stack: loaded by the command, not by `talkfarm --help`
    from pipeline.manifest import read_manifest
    from pipeline.qc_report import build_report

    manifest = Path(args.manifest)
    if "://" not in args.manifest and not manifest.is_file():
        raise BadInputError("manifest file not found", args.manifest)
    try:
        rows = read_manifest(args.manifest)
    except Exception as err:  # noqa: BLE001 - any read failure is bad input here
        raise BadInputError(f"not a talkfarm manifest ({type(err).__name__})", args.manifest) from None
    output = Path(args.output)
    if not (output.parent if str(output.parent) else Path(".")).is_dir():
        raise BadInputError("output folder does not exist", output)
    text = build_report(rows, stride=max(1, args.stride), measure=not args.no_measure,
                        title=f"talkfarm report: {manifest.name}")
    temporary = output.with_name(f".{output.name}.partial")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(output)
    flagged = text.count("class='render flagged'")
    failed = text.count("class='render failed'")
    print(f"talkfarm: {len(rows)} rows, {failed} failed, {flagged} flagged -> {output}", file=sys.stderr)
    print(output)
    return 0


__all__ = ["add_qc_commands"]
