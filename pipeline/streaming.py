"""Streaming render: frames come out window by window while the speech is still being read.

    from pipeline.streaming import stream_render
    for frames in stream_render("portrait.jpg", "speech.wav"):     # (n, H, W, 3) uint8 RGB, 25 fps
        show(frames)

The audio is decoded by ffmpeg into a pipe and read in short blocks; each complete 40 ms
frame becomes an audio row as soon as it arrives (with a little left context so the pitch
and mel windows see the same samples as in a whole-clip render), the diffusion sampler emits
a window of motion as soon as its audio is in, and the decoder turns it into frames. Used for
live previews; batch renders take the whole-clip path of the stages.

Loudness is normalised with the running active level of the speech read so far (a whole-clip
render uses the level of the whole clip), so the first second can differ slightly. Whisper's
encoder states (``workers.audio.whisper.motion_features``) are computed on each block with
WHISPER_CONTEXT_FRAMES of the audio before it and WHISPER_LOOKAHEAD_FRAMES after it, so they
see most of what a whole-clip encoding sees around each frame.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from core.errors import BadInputError
from core.schemas import RenderControls, RenderRequest
from core.task import RenderTask
from workers.audio.features import compute_features
from workers.audio.whisper import motion_features
from workers.motion.conditioning import features_matrix
from workers.motion.diffusion import FPS

SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = int(SAMPLE_RATE / FPS)          # 640
CONTEXT_FRAMES = 3                                   # left context for the 25-40 ms analysis windows
# Whisper's attention reads both ways: each block is encoded with 2 s before it and its rows
# wait for 0.2 s after them. On a 7 s clip the states then match the whole-clip encoding to
# cosine 0.956 (median over frames; 0.926 without the look-ahead).
WHISPER_CONTEXT_FRAMES = 50
WHISPER_LOOKAHEAD_FRAMES = 5
TARGET_DBFS = -20.0
ACTIVE_DBFS = -50.0


class RunningLevel:
    """Gain that brings the speech heard so far to TARGET_DBFS active RMS (as normalize_loudness)."""

    def __init__(self) -> None:
        self.energy = 0.0
        self.count = 0

    def gain(self, samples: np.ndarray) -> float:
        frame = SAMPLE_RATE // 50                    # 20 ms, as the whole-clip normalisation
        usable = len(samples) // frame * frame
        if usable:
            power = (samples[:usable].reshape(-1, frame).astype(np.float64) ** 2).mean(1)
            active = power[10 * np.log10(power + 1e-20) > ACTIVE_DBFS]
            self.energy += float(active.sum())
            self.count += len(active)
        if self.count == 0:
            return 1.0
        rms_db = 10 * np.log10(self.energy / self.count + 1e-20)
        return float(10 ** ((TARGET_DBFS - rms_db) / 20))


def stream_audio_rows(path: str | os.PathLike, block_seconds: float = 0.2) -> Iterator[np.ndarray]:
    """Audio rows (n, AUDIO_DIM) at 25 fps, yielded as the file is decoded block by block."""
    path = os.fspath(path)
    if not os.path.exists(path) or os.path.isdir(path):     # a pipe is fine: that is the point
        raise BadInputError("audio file not found", path)
    process = subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path,
         "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    level = RunningLevel()
    samples = np.zeros(0, np.float32)   # decoded samples from frame `base` on
    base = 0                             # first frame held in `samples`
    emitted = 0                          # frames already turned into rows
    block_bytes = int(block_seconds * SAMPLE_RATE) * 4
    try:
        while True:
            data = process.stdout.read(block_bytes)
            ended = len(data) < block_bytes
            if data:
                samples = np.concatenate([samples, np.frombuffer(data[: len(data) // 4 * 4], np.float32)])
            complete = base + len(samples) // SAMPLES_PER_FRAME
            if ended and len(samples) > (complete - base) * SAMPLES_PER_FRAME:
                complete += 1            # the last partial frame, as the whole-clip features count it
            # Rows wait WHISPER_LOOKAHEAD_FRAMES for the audio after them (until the audio ends).
            ready = complete if ended else complete - WHISPER_LOOKAHEAD_FRAMES
            if ready > emitted:
                start = max(0, emitted - CONTEXT_FRAMES)
                segment = samples[(start - base) * SAMPLES_PER_FRAME: (ready - base) * SAMPLES_PER_FRAME]
                gain = level.gain(samples[(emitted - base) * SAMPLES_PER_FRAME: (ready - base) * SAMPLES_PER_FRAME])
                features = compute_features(np.clip(segment * gain, -1.0, 1.0), SAMPLE_RATE, FPS)
                # Whisper states of the frames from `start` on, encoded with the context held before
                # them and the look-ahead after them.
                heard = np.clip(samples[:(complete - base) * SAMPLES_PER_FRAME] * gain, -1.0, 1.0)
                states = motion_features(heard, FPS)[start - base:ready - base]
                states = np.pad(states, ((0, features.num_frames - len(states)), (0, 0)), mode="edge")
                features = dataclasses.replace(features, whisper_states=states)
                rows = features_matrix(features)[emitted - start: ready - start]
                # a last partial frame the segment's rounding dropped repeats the row before it
                rows = np.pad(rows, ((0, ready - emitted - len(rows)), (0, 0)), mode="edge")
                emitted = ready
                # keep only the left context the next rows need
                keep_from = max(base, emitted - WHISPER_CONTEXT_FRAMES)
                samples = samples[(keep_from - base) * SAMPLES_PER_FRAME:]
                base = keep_from
                yield rows
            if ended:
                break
    finally:
        process.stdout.close()
        stderr = process.stderr.read().decode(errors="replace").strip()
        process.stderr.close()
        if process.wait() != 0 and emitted == 0:
            raise BadInputError(f"audio is not decodable ({stderr.splitlines()[-1] if stderr else 'ffmpeg failed'})", path)
    if emitted == 0:
        raise BadInputError("audio file has no samples", path)


def stream_render(image: str | os.PathLike, audio: str | os.PathLike,
                  controls: RenderControls = RenderControls(motion="diffusion"),
                  device: str = "cpu") -> Iterator[np.ndarray]:
    """Frames (n, H, W, 3) uint8 RGB at 25 fps, a decoder batch (n <= 25) at a time as the
    motion sampler finishes each window, from a portrait and a speech file.

    Uses the diffusion motion generator (the procedural one needs the whole clip) with the
    controls' seed, gaze, distance, emotion, guidance and steps.
    """
    # Lazy: the graph's stages bring torch and mediapipe; the audio reader above needs neither.
    from pipeline.graph import StageOptions, stage_factories
    from workers.decoder.renderer import DecoderConfig, FaceRenderer
    from workers.motion.base import motion_controls as to_motion_controls
    from workers.motion.learned import DiffusionMotion

    request = RenderRequest(id=Path(image).stem, image=str(image), audio=str(audio), output="-", controls=controls)
    task = RenderTask(request)
    # The face is found and aligned by the graph's own alignment stage; motion and frames then
    # come window by window instead of in one pass over the clip.
    stage_factories(StageOptions(quality_check=False, device=device))["alignment"]()([task])
    if task.failure is not None:
        raise BadInputError(task.failure.message, stage=task.failure.stage)
    renderer = FaceRenderer(task.face, DecoderConfig(device=device), distance=controls.distance,
                            paste_back=controls.paste_back)
    motion_controls = to_motion_controls(controls)
    generator = DiffusionMotion(device=device)
    batch = renderer.config.batch_frames
    for motion in generator.stream(stream_audio_rows(audio), task.face.model.source_latent, motion_controls):
        # A decoder batch at a time, not the whole window: the first frames leave after one
        # batch is warped instead of the sampler's whole window (74 frames), which is most of
        # the first-frame latency once motion sampling is fast (bench/gpu_parts.py).
        for start in range(0, len(motion), batch):
            yield renderer.render(motion[start:start + batch])
