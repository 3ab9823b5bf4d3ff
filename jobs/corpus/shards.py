"""Corpus shards: the arrays of one shard, and rewriting the mouth targets of a built corpus.

A corpus under one prefix (local path or s3:// URI) is ``shard-00000.npz``, ... each holding the
concatenated frames of ~``shard_utterances`` utterances::

    log_mel float16 (F, 80)       energy_db float16 (F,)      pitch_hz float16 (F,)
    voicing float16 (F,)          band_energy_db float16 (F, 4)
    clean_energy_db float16 (F,)  frame level of the speech before augmentation (the targets' vocal effort)
    whisper_states float16 (F, 384)  Whisper tiny.en states after block 3 (workers.audio.whisper.motion_features)
    motion float32 (F, 20)        offsets int64 (U + 1,)      frame boundaries of utterances
    emotion float32 (U, 12)       gaze float32 (U, 2)         NaN rows: no gaze condition
    distance float32 (U,)         meta: JSON string, per utterance engine, voice, language,
                                  text, augmentations, seconds, phones [[symbol, start_s, end_s]]

and ``summary.json`` (hours, utterances, counts per engine / voice / language, seed, fps,
articulation gain, shards).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from core.speech import AudioFeatures
from core.storage import Storage, join_uri
from jobs.corpus.targets import articulated_mouth, recipe, set_mouth
from workers.motion.articulation import Phone


@dataclass
class Utterance:
    features: AudioFeatures
    clean_energy_db: np.ndarray     # (T,) dBFS of the speech before augmentation (vocal_effort)
    motion: np.ndarray
    emotion: np.ndarray
    gaze: np.ndarray
    distance: float
    meta: dict


def shard_arrays(utterances: list[Utterance]) -> dict[str, np.ndarray]:
    """The npz arrays of one shard (the module docstring gives the layout)."""
    lengths = [u.features.num_frames for u in utterances]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(u.features, name) for u in utterances]).astype(np.float16)

    return {
        "log_mel": cat("log_mel"),
        "energy_db": cat("energy_db"),
        "pitch_hz": cat("pitch_hz"),
        "voicing": cat("voicing"),
        "band_energy_db": cat("band_energy_db"),
        "clean_energy_db": np.concatenate([u.clean_energy_db for u in utterances]).astype(np.float16),
        "whisper_states": cat("whisper_states"),
        "motion": np.concatenate([u.motion for u in utterances]).astype(np.float32),
        "offsets": offsets,
        "emotion": np.stack([u.emotion for u in utterances]).astype(np.float32),
        "gaze": np.stack([u.gaze for u in utterances]).astype(np.float32),
        "distance": np.array([u.distance for u in utterances], dtype=np.float32),
        "meta": np.array(json.dumps([u.meta for u in utterances], ensure_ascii=False)),
    }


def write_shard(storage: Storage, uri: str, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Write one shard's arrays as ``<uri>/<name>`` (npz, uncompressed)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    storage.write_bytes(join_uri(uri, name), buffer.getvalue())


def write_summary(storage: Storage, uri: str, summary: dict) -> None:
    """Write ``<uri>/summary.json``."""
    storage.write_bytes(join_uri(uri, "summary.json"), json.dumps(summary, indent=2, ensure_ascii=False).encode())


def retarget(uri: str, storage: Storage | None = None) -> dict:
    """Rewrite the mouth channels of every shard under ``uri`` with the current recipe
    (articulated_mouth) from the phones each shard keeps; audio, head, blinks and gaze stay.

    The same targets a fresh build with this code writes, without synthesising the speech
    again. Returns the updated summary (also written back as summary.json).
    """
    storage = storage or Storage()
    summary = json.loads(storage.read_bytes(join_uri(uri, "summary.json")))
    for name in summary["shards"]:
        shard = dict(np.load(io.BytesIO(storage.read_bytes(join_uri(uri, name)))))
        meta = json.loads(str(shard["meta"]))
        bounds = shard["offsets"]
        if "clean_energy_db" not in shard:
            raise SystemExit(f"{name} predates the vocal-effort targets (no clean_energy_db): build the corpus again")
        for u, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            phones = [Phone(symbol, start, end) for symbol, start, end in meta[u]["phones"]]
            mouth = articulated_mouth(phones, int(hi - lo), meta[u]["alphabet"], shard["clean_energy_db"][lo:hi])
            set_mouth(shard["motion"][lo:hi], mouth, shard["emotion"][u])
        write_shard(storage, uri, name, shard)
    summary.update(recipe())
    write_summary(storage, uri, summary)
    return summary
