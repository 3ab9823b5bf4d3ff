"""The take's stages of the dubbing graph (``pipeline.graph.DUB_GRAPH``).

``take``: reads the take, tracks its face and reads its own motion (task stage, first);
``take_motion``: fits the take to the new speech and puts the speech's mouth on the take's
own motion (task stage, after the shared motion stage), counting the frames whose new mouth
opens beyond the take's; ``take_decode``: dubs a chunk of the take's frames (chunk stage, in
place of the portrait decoder), those mouths' interiors from the take's own open mouths (the
``TakeTrack.mouth_bank`` the take stage kept), the same few frames for every chunk.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from core.errors import BadInputError
from core.identity import sha256_file
from core.schemas import RenderControls
from core.stage import Resources, Stage, TaskStage
from core.storage import Storage, is_s3
from core.take import FRAME_DUBBED, FRAME_STATUS_NAMES
from core.task import FrameChunk, RenderTask
from workers.audio.decode import header_seconds
from workers.audio.vad import speech_mask
from workers.decoder.renderer import DECODER_VERSION, DecoderConfig
from workers.face.model import RIG_VERSION
from workers.face.topology import FACE_OVAL
from workers.take.cache import TakeCache
from workers.take.compose import (
    JAW_INDEX,
    MOUTH_INDEX,
    FrameTargets,
    dub_frame,
    face_region,
)
from workers.take.mouth_bank import MOUTH_BANK_VERSION, bank_note, opened_beyond
from workers.take.reader import TakeFrameReader, TakeInfo
from workers.take.track import TRACKER_VERSION, track_take

MAX_TAKE_SECONDS = 600.0
TAKE_MOTION_VERSION = "talkfarm-take-motion-2"
TAKE_DECODER_VERSION = f"talkfarm-take-decoder-3+{MOUTH_BANK_VERSION}+{DECODER_VERSION}"
# Most of the take's own jaw kept where the new speech is voiced and the take's jaw moves with
# it (locally correlated): there the actor's jaw carries the speech's rhythm plus the head's
# motion and breath, which a wholly synthetic jaw loses. Where they disagree or the new speech
# is silent, the jaw is the speech's alone.
TAKE_JAW_WEIGHT = 0.5
# Window of the local correlation between the take's jaw and the new speech's (seconds).
JAW_MATCH_WINDOW_S = 0.6
# --fit error: the take and the speech may differ by at most this (seconds).
FIT_TOLERANCE_S = 1.0


class TakeTrackStage(TaskStage):
    """Reads the take (``request.video``), tracks its face, and reads the take's own motion.

    Fills ``task.take`` (``core.take.TakeTrack``), ``task.face`` (the take's most frontal
    dubbable frame, aligned: its face model is the take's, the motion stage samples around
    it) and the take's content hash (``task.image_sha256``: the face source's). The request's
    frame rate becomes the take's own, so the audio features, the motion and the video are
    all on the take's frames. Not a video, audio or a still image only, corrupt, truncated,
    over ``max_seconds``, no face in any frame: the request fails with one clear line.
    """

    name: ClassVar[str] = "take"
    resources: ClassVar[Resources] = Resources(cpus=0.3)

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        return {"take_tracking": TRACKER_VERSION, "face_model": RIG_VERSION}

    def __init__(self, max_seconds: float = MAX_TAKE_SECONDS, storage: Storage | None = None):
        self.max_seconds = max_seconds
        self.storage = storage or Storage()

    def process(self, task: RenderTask) -> None:
        request = task.request
        if not request.is_dub:
            raise BadInputError("the dubbing graph needs a request with a video (the take)", request.source)
        with self.storage.localized(request.video) as local:
            task.image_sha256 = sha256_file(local)
            track, face = track_take(local, request.take.face, request.controls.size, self.max_seconds,
                                     speech_seconds=self._speech_seconds(request))
        track.path = request.video if is_s3(request.video) else str(local)
        task.take, task.face = track, face
        # The take's frame rate is the render's: features, motion and video on the take's frames.
        controls = request.controls.model_copy(update={"fps": track.fps})
        task.request = request.model_copy(update={"controls": controls})
        task.model_versions.update({"take_tracking": TRACKER_VERSION, "face_model": RIG_VERSION})

    @staticmethod
    def _speech_seconds(request) -> float | None:
        """How long the new speech is, where the dub ends with it (``trim`` and ``hold``: the
        take's frames past it are never shown, so they are neither tracked nor decoded) and its
        header says so; None to track the whole take (``error`` compares the two lengths; a
        speech on S3 is not fetched twice; a header without a length)."""
        if request.take.fit not in ("trim", "hold") or is_s3(request.audio) or not Path(request.audio).is_file():
            return None
        return header_seconds(request.audio)


class TakeMotionStage(TaskStage):
    """Fits the take to the speech (``request.take.fit``) and gives each output frame the take's
    own latent with the mouth channels of the sampled motion (``task.motion``, on the take's
    frames); the jaw keeps up to ``TAKE_JAW_WEIGHT`` of the take's own where the speech is
    voiced, in proportion to how well the take's jaw follows the new speech's there
    (:func:`jaw_match`).

    Replaces ``task.motion`` with (frames, MOTION_DIM): one row per output frame. Counts the
    frames that pass through unchanged into the warnings.
    """

    name: ClassVar[str] = "take_motion"
    resources: ClassVar[Resources] = Resources(cpus=0.05)

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        return {"take_motion": TAKE_MOTION_VERSION}

    def process(self, task: RenderTask) -> None:
        take, speech = task.take, task.motion
        frames = fitted_frames(take.num_frames, len(speech), take.fps, task.request.take.fit, task.request.video)
        source = np.minimum(np.arange(frames), take.num_frames - 1)     # a held ending repeats the last
        motion = take.own[source].copy()
        new = speech[:frames]                  # every fit gives at most the speech's frames
        motion[:, MOUTH_INDEX] = new[:, MOUTH_INDEX]
        if task.audio is not None and task.audio.speech_probability is not None:
            voiced = speech_mask(task.audio.speech_probability, task.audio.fps)[:frames].astype(np.float32)
            weight = TAKE_JAW_WEIGHT * voiced * jaw_match(take.own[source, JAW_INDEX], new[:, JAW_INDEX],
                                                          round(JAW_MATCH_WINDOW_S * take.fps))
            motion[:, JAW_INDEX] = (1.0 - weight) * new[:, JAW_INDEX] + weight * take.own[source, JAW_INDEX]
        task.motion = motion.astype(np.float32)
        task.model_versions["take_motion"] = TAKE_MOTION_VERSION
        counts = take.counts(frames)
        passed = {name: count for name, count in counts.items() if name != FRAME_STATUS_NAMES[FRAME_DUBBED] and count}
        if passed:
            detail = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in passed.items())
            task.warnings.append(f"{sum(passed.values())} of {frames} frames passed through unchanged ({detail})")
        dubbed = np.flatnonzero(take.status[source] == FRAME_DUBBED)
        opened = opened_beyond(task.face.model, take.landmarks[source[dubbed]], take.own[source[dubbed]],
                               motion[dubbed]) if len(dubbed) else np.zeros(0, bool)
        note = bank_note(take.mouth_bank, int(opened.sum()), frames)
        if note:
            task.warnings.append(note)
        if take.cuts:
            task.warnings.append(f"{len(take.cuts)} shot cut(s) in the take; the face was detected afresh after each")


def jaw_match(own: np.ndarray, new: np.ndarray, window: int) -> np.ndarray:
    """(T,) in [0, 1]: how well the take's jaw ``own`` (T,) follows the new speech's ``new`` (T,)
    around each frame: their Pearson correlation over a centred ``window`` of frames (Gaussian
    weighted), negative clipped to 0, zero where either is still (spread under 0.02)."""
    sigma = max(1.0, window / 2.0)
    radius = int(np.ceil(2 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()

    def local_mean(values: np.ndarray) -> np.ndarray:
        padded = np.pad(values.astype(np.float64), radius, mode="edge")
        return np.convolve(padded, kernel, mode="valid")

    mean_own, mean_new = local_mean(own), local_mean(new)
    covariance = local_mean(own * new) - mean_own * mean_new
    spread_own = np.sqrt(np.maximum(local_mean(own * own) - mean_own ** 2, 0.0))
    spread_new = np.sqrt(np.maximum(local_mean(new * new) - mean_new ** 2, 0.0))
    moving = (spread_own > 0.02) & (spread_new > 0.02)
    r = np.where(moving, covariance / np.maximum(spread_own * spread_new, 1e-9), 0.0)
    return np.clip(r, 0.0, 1.0).astype(np.float32)


def fitted_frames(take_frames: int, speech_frames: int, fps: float, fit: str, path: str) -> int:
    """Output frames of a take of ``take_frames`` dubbed with speech of ``speech_frames``:
    ``trim`` the shorter, ``hold`` the speech's, ``error`` the speech's when within
    FIT_TOLERANCE_S, else BadInputError."""
    if fit == "trim":
        return min(take_frames, speech_frames)
    if fit == "error" and abs(take_frames - speech_frames) / fps > FIT_TOLERANCE_S:
        raise BadInputError(f"the take is {take_frames / fps:.2f} s and the speech {speech_frames / fps:.2f} s; "
                            f"--fit error allows {FIT_TOLERANCE_S:g} s of difference (use --fit trim or hold)", path)
    return speech_frames


class TakeDecodeStage(Stage[FrameChunk, FrameChunk]):
    """Dubs each chunk's frames of the take; frames the tracker could not dub pass through.

    A chunk reads only its own frames of the take (``workers.take.reader``), so a long take is
    spread over the pool chunk by chunk and no worker holds more than a chunk; a worker's
    consecutive chunks continue one decoding of the take (``TakeFrameReader``). A take on S3 is
    downloaded once per worker, not once per chunk (``workers.take.cache.TakeCache``).
    """

    name: ClassVar[str] = "take_decode"
    resources: ClassVar[Resources] = Resources(cpus=0.5)
    record: ClassVar[str] = "chunk"

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        return {"decoder": TAKE_DECODER_VERSION}

    def __init__(self, config: DecoderConfig = DecoderConfig(), device: str | None = None,
                 storage: Storage | None = None):
        self.config = config if device is None else dataclasses.replace(config, device=device)
        self.storage = storage or Storage()
        self.takes = TakeCache(self.storage)
        self.reader = TakeFrameReader()

    def close(self) -> None:
        """A worker that did not read a dub's last chunk still has its decoding of the take open."""
        self.reader.close()

    def __call__(self, batch: list[FrameChunk]) -> list[FrameChunk]:
        for chunk in batch:
            task = chunk.task
            if task.failure is not None:
                continue
            started = time.perf_counter()
            take = task.take
            source = np.minimum(np.arange(chunk.start, chunk.stop), take.num_frames - 1)
            info = TakeInfo(take.width, take.height, take.fps, take.num_frames / take.fps)
            frames = self.reader.frames(self.takes.local(take.path, task.image_sha256), info, source)
            if chunk.is_last:     # the dub's last frames: its decoding of the take is done
                self.reader.close()
            regions = np.full((len(source), len(FACE_OVAL), 2), np.nan, np.float32)
            for i, row in enumerate(take.rows(source)):
                if take.status[row] == FRAME_DUBBED:
                    targets = FrameTargets(take.landmarks[row], take.own[row], task.motion[chunk.start + i])
                    frame = frames[i]      # dubbed in place: only the pasted box is written
                    dub_frame(frame, targets, take.crop_size, self.config, take.mouth_bank, out=frame)
                    regions[i] = face_region(take.landmarks[row])
            chunk.frames = frames
            # Everything outside the face is the take's own: the watermark is lighter there.
            chunk.edited_regions = regions
            task.model_versions["decoder"] = TAKE_DECODER_VERSION
            spent = time.perf_counter() - started
            for seconds in (task.seconds, chunk.seconds):
                seconds[self.name] = seconds.get(self.name, 0.0) + spent
        return batch

