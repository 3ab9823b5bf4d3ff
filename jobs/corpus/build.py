"""Build a corpus: utterances from the speech engines or from recordings, augmented,
featurised and given target motion, written as shards (``jobs.corpus.shards``).

Audio features are computed exactly as at inference (loudness normalisation, then
``compute_features`` and the Whisper states of ``workers.audio.whisper.motion_features`` at
25 fps) on the augmented 16 kHz audio. Utterance i is drawn from its own
generator seeded with (seed, i), so a seed gives the same corpus on any machine with the same
engines installed. An utterance whose engine fails is skipped and counted; the build never
stops for one.

With recordings (real voices; ``jobs/recordings.py``) each recording with a transcript is
force-aligned (pocketsphinx in English; espeak-ng + DTW in its language, alignments under
MIN_TRAINING_CONFIDENCE refused) and goes through the same augmentation and targets, ``copies``
times with different augmentations.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.storage import Storage
from jobs.corpus import FPS, SAMPLE_RATE
from jobs.corpus.augment import AUGMENT_PROBABILITY, add_pauses, augment, pitch_shift
from jobs.corpus.engines import (
    ENGINE_WEIGHTS,
    Synth,
    available_engines,
    synth_espeak,
    synth_festival,
    synth_flite,
)
from jobs.corpus.shards import Utterance, shard_arrays, write_shard, write_summary
from jobs.corpus.targets import recipe, sample_conditions, target_motion
from jobs.recordings import Recording
from workers.audio.decode import normalize_loudness
from workers.audio.espeak import EngineError
from workers.audio.features import compute_features
from workers.audio.whisper import with_motion_features
from workers.motion.articulation import Phone

logger = logging.getLogger(__name__)

# espeak + DTW alignments of recordings below this confidence are not trained on: stricter than
# the aligner's own accept threshold (0.18), since a misplaced phone teaches a wrong mouth.
MIN_TRAINING_CONFIDENCE = 0.25


@dataclass
class Builder:
    seed: int
    workdir: Path
    engines: dict[str, list[str]] = field(default_factory=dict)
    unknown_phones: Counter = field(default_factory=Counter)
    recorded: bool = False
    # (name, wave, (aligned phones, their alphabet) or the alignment's error) of the last
    # recording: its augmented copies come one after another and share it.
    last_recording: tuple[str, np.ndarray, tuple[list[Phone], str] | str] | None = None

    def __post_init__(self) -> None:
        if self.recorded:
            return
        if not self.engines:
            self.engines = available_engines()
        if not self.engines:
            raise SystemExit("no speech engine available (need libespeak-ng, festival or flite)")

    def utterance(self, index: int) -> Utterance:
        rng = np.random.default_rng([self.seed, index])
        names = sorted(self.engines)
        weights = np.array([ENGINE_WEIGHTS[n] for n in names])
        engine = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        synth_rng = np.random.default_rng(rng.integers(2 ** 63))
        if engine == "espeak":
            synth = synth_espeak(synth_rng)
        elif engine == "festival":
            synth = synth_festival(synth_rng, self.engines["festival"], self.workdir)
        else:
            synth = synth_flite(synth_rng, self.engines["flite"], self.workdir)
        return self.speech_utterance(rng, synth, engine)

    def recorded_utterance(self, index: int, recording: Recording) -> Utterance:
        """Utterance ``index`` of a corpus of recordings: one augmented copy of ``recording``
        (loaded and aligned once, on its first copy; a failed alignment fails every copy)."""
        rng = np.random.default_rng([self.seed, index])
        if self.last_recording is None or self.last_recording[0] != recording.name:
            from workers.audio.decode import load_audio

            wave16 = load_audio(recording.path, SAMPLE_RATE)
            try:
                aligned = align_recording(wave16, recording)
            except Exception as error:   # noqa: BLE001 - a failed alignment skips the recording
                aligned = f"alignment failed: {error}"
            self.last_recording = (recording.name, wave16, aligned)
        _, wave16, aligned = self.last_recording
        if isinstance(aligned, str):
            raise EngineError(aligned)
        phones, alphabet = aligned
        synth = Synth(wave16, phones, alphabet, recording.speaker, recording.language, recording.text)
        utterance = self.speech_utterance(rng, synth, "recorded")
        utterance.meta["recording"] = recording.name
        return utterance

    def speech_utterance(self, rng: np.random.Generator, synth: Synth, engine: str) -> Utterance:
        """Augment one utterance's speech and make its audio features and target motion."""
        wave16, phones = synth.wave, synth.phones
        augmentations = []
        if rng.random() < AUGMENT_PROBABILITY["pitch"]:
            factor = float(rng.uniform(0.9, 1.1))
            wave16 = pitch_shift(wave16, factor)
            phones = [Phone(p.symbol, p.start_s / factor, p.end_s / factor) for p in phones]
            augmentations.append(f"pitch={factor:.3f}")
        wave16, phones, paused = add_pauses(wave16, phones, rng)
        augmentations += paused
        duration = len(wave16) / SAMPLE_RATE
        phones = [Phone(p.symbol, min(p.start_s, duration), min(p.end_s, duration)) for p in phones]
        phones = [p for p in phones if p.end_s > p.start_s]
        noisy, applied = augment(wave16, rng)
        augmentations += applied

        clean = compute_features(normalize_loudness(wave16, sample_rate=SAMPLE_RATE), SAMPLE_RATE, fps=FPS)
        heard = normalize_loudness(noisy, sample_rate=SAMPLE_RATE)
        features = with_motion_features(compute_features(heard, SAMPLE_RATE, fps=FPS), heard)
        emotion_name, emotion, gaze, distance = sample_conditions(rng)
        motion = target_motion(clean, phones, synth.alphabet, emotion, gaze, distance,
                               int(rng.integers(2 ** 31)), self.unknown_phones)
        meta = {
            "engine": engine, "voice": synth.voice, "language": synth.language, "text": synth.text,
            "augmentations": augmentations, "seconds": round(duration, 4), "emotion": emotion_name,
            "alphabet": synth.alphabet,
            "phones": [[p.symbol, round(p.start_s, 4), round(p.end_s, 4)] for p in phones],
        }
        gaze_row = np.full(2, np.nan, np.float32) if gaze is None else np.asarray(gaze, np.float32)
        return Utterance(features, clean.energy_db, motion, emotion.astype(np.float32), gaze_row, float(distance),
                         meta)


def align_recording(wave16: np.ndarray, recording: Recording) -> tuple[list[Phone], str]:
    """The phones of a recording's transcript with their times in it, and their alphabet:
    pocketsphinx for English ("arpabet"), espeak-ng + DTW for other languages (espeak's "ipa"
    names), refused below MIN_TRAINING_CONFIDENCE."""
    from core.languages import is_english
    from workers.audio.align import align_dtw

    if is_english(recording.language):
        from workers.audio.phonemes import align_transcript

        return [Phone(s.phone, s.start_s, s.end_s) for s in align_transcript(wave16, recording.text)], "arpabet"
    aligned = align_dtw(wave16, recording.text, recording.language)
    if aligned.confidence < MIN_TRAINING_CONFIDENCE:
        raise EngineError(f"alignment confidence {aligned.confidence:.2f} < {MIN_TRAINING_CONFIDENCE}")
    return aligned.phones, "ipa"


def build(out: str, hours: float | None, seed: int, shard_utterances: int = 200, progress: bool = True,
          storage: Storage | None = None, recordings: list[Recording] | None = None, copies: int = 1,
          recorded_from: dict | None = None) -> dict:
    """Build the corpus under ``out``; returns the summary (also written as summary.json).

    Synthesised speech until ``hours`` of it, or, with ``recordings``, ``copies`` differently
    augmented copies of each recording (jobs/recordings.py); ``recorded_from`` (where they
    came from, which were left out) goes into the summary.
    """
    from tqdm import tqdm

    storage = storage or Storage()
    started = time.monotonic()
    counts = {"engines": Counter(), "voices": Counter(), "languages": Counter(), "augmentations": Counter()}
    skipped: Counter = Counter()
    shards: list[str] = []
    pending: list[Utterance] = []
    total_s, total_frames, utterances = 0.0, 0, 0

    def flush() -> None:
        nonlocal pending
        if not pending:
            return
        name = f"shard-{len(shards):05d}.npz"
        write_shard(storage, out, name, shard_arrays(pending))
        shards.append(name)
        pending = []

    with tempfile.TemporaryDirectory(prefix="build_corpus_") as tmp:
        builder = Builder(seed, Path(tmp), recorded=recordings is not None)
        if recordings is None:
            target = round(hours * 3600.0)
            bar = tqdm(total=target, unit="s", desc="corpus audio", disable=not progress, smoothing=0.05)
            makers = (lambda i=i: builder.utterance(i) for i in itertools.count())
        else:
            target = len(recordings) * copies
            bar = tqdm(total=target, unit="utt", desc="recordings", disable=not progress, smoothing=0.05)
            makers = (lambda i=i, r=r: builder.recorded_utterance(i, r)
                      for i, (r, _) in enumerate(itertools.product(recordings, range(copies))))
        for index, make in enumerate(makers):
            if recordings is None and total_s >= target:
                break
            try:
                utterance = make()
            except Exception as error:   # noqa: BLE001 - one failed utterance never stops the build
                skipped[type(error).__name__] += 1
                logger.warning("utterance %d skipped: %s", index, error)
                if sum(skipped.values()) > 100 + index // 2:
                    raise SystemExit("too many failed utterances; giving up") from error
                continue
            meta = utterance.meta
            pending.append(utterance)
            utterances += 1
            total_s += meta["seconds"]
            total_frames += utterance.features.num_frames
            counts["engines"][meta["engine"]] += 1
            counts["voices"][f"{meta['engine']}:{meta['voice'].split('@')[0]}"] += 1
            counts["languages"][meta["language"]] += 1
            for aug in meta["augmentations"] or ["none"]:
                counts["augmentations"][aug.split("=")[0].split("_")[0]] += 1
            bar.update(min(round(total_s), target) - bar.n if recordings is None else 1)
            if len(pending) >= shard_utterances:
                flush()
        flush()
        bar.close()
    elapsed = time.monotonic() - started
    summary = {
        "hours": round(total_s / 3600.0, 4),
        "seconds": round(total_s, 2),
        "utterances": utterances,
        "frames": total_frames,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "seed": seed,
        **recipe(),
        **({"recordings": {**(recorded_from or {}), "copies": copies}} if recordings is not None else {}),
        "engines": dict(sorted(counts["engines"].items())),
        "voices": dict(sorted(counts["voices"].items())),
        "languages": dict(sorted(counts["languages"].items())),
        "augmentations": dict(sorted(counts["augmentations"].items())),
        "skipped": dict(skipped),
        "unknown_phones": dict(builder.unknown_phones.most_common(50)),
        "shards": shards,
        "build_seconds": round(elapsed, 1),
        "realtime_factor": round(total_s / max(elapsed, 1e-9), 2),
    }
    write_summary(storage, out, summary)
    return summary
