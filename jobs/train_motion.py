"""Train the motion diffusion transformer on corpus shards (see jobs/build_corpus.py).

    python -m jobs.train_motion --corpus /work/corpus --run runs/motion --minutes 50
    python -m jobs.train_motion --corpus s3://bucket/corpus --run runs/motion --steps 4000 \
        --export workers/motion/checkpoints
    python -m jobs.train_motion --corpus /work/synthetic /work/recorded ...   # trained on together

``--init CHECKPOINT`` starts a new run from a shipped checkpoint's weights (fine-tuning after
the corpus targets changed; the standardisation is the new corpus's). A checkpoint that reads
fewer audio columns (one trained before the Whisper states) gets its input projection widened:
the new columns' weights start at zero, so training starts from the old model's motion and
learns what the Whisper states add.

Resumable: every ``--save-every`` steps the run folder gets ``state.pt`` (model, optimiser,
step, RNG) and a loss curve ``loss.png``; running the same command again continues from it.
``--export`` writes the shipped checkpoint: ``motion-diffusion.safetensors`` plus
``motion-diffusion.json`` (config, version, sha256 of the weights, corpus summary, training
figures). The recipe is VASA-1's: predict clean x0 from a noisy window given audio, the
previous K frames, gaze, distance and emotion, with condition dropout for guidance.

The audio rows are normalised per utterance with the utterance's own statistics and carry
the articulation cues (``workers.motion.conditioning.ClipNormalization``), and every
utterance's formants are warped by a random factor (vocal tract length perturbation): the
synthetic voices are few next to real speakers, and these two steps are what carried the lips
over to recorded speech (BENCHMARKS.md, "Motion generators"). Recorded speech, built with
``jobs/build_corpus.py --recordings``, trains alongside the synthetic corpus.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.storage import Storage, join_uri
from workers.face.latents import DYN_SLICE, DYNAMICS, MOTION_DIM
from workers.motion.articulation import CLOSED_PRESS, MOUTH_DYN_INDEX
from workers.motion.conditioning import (
    AUDIO_FEATURES,
    ClipNormalization,
    audio_matrix,
    silence_matrix,
    warp_formants,
)
from workers.motion.diffusion import (
    GAZE_SCALE_DEGREES,
    DiffusionConfig,
    MotionTransformer,
)

CHECKPOINT_NAME = "motion-diffusion"
AUDIO_DROP = 0.1
GAZE_DROP = 0.1
PREVIOUS_DROP = 0.5
# The mouth channels carry lip sync; weight their error up against head pose and blinks.
MOUTH_WEIGHT = 2.0
# Lips closed on p / b / m are brief (2-3 frames) and the audio of a stop is ambiguous (p, t
# or k): without more weight the model half-presses them.
CLOSURE_WEIGHT = 5.0
VELOCITY_WEIGHT = 0.5
# Vocal tract length perturbation: each utterance's formants scaled by a factor in this range.
FORMANT_WARP = (0.87, 1.13)


@dataclass
class Corpus:
    """All shards in memory.

    Attributes:
        audio: (N, MODEL_AUDIO_DIM) float32 model audio rows of every frame, each utterance
            normalised with its own statistics.
        motion: (N, MOTION_DIM) float32 target motion.
        offsets: (U + 1,) frame offsets of the utterances.
        controls: (U, CONTROL_DIM) control vectors (gaze zeroed and flagged 0 where none).
        silence: (U, MODEL_AUDIO_DIM) a silent frame normalised like each utterance (padding).
        summary: the corpus summary.json.
    """

    audio: np.ndarray
    motion: np.ndarray
    offsets: np.ndarray
    controls: np.ndarray
    silence: np.ndarray
    summary: dict

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def load_corpus(uri: str | list[str], storage: Storage | None = None, seed: int = 0) -> Corpus:
    """Read every ``shard-*.npz`` under ``uri`` (local folder or s3:// prefix, or a list of
    them: one corpus of all); each utterance's formants are warped by a seeded random factor
    in FORMANT_WARP, then its rows normalised."""
    storage = storage or Storage()
    uris = [uri] if isinstance(uri, str) else list(uri)
    summaries = [json.loads(storage.read_bytes(join_uri(u, "summary.json"))) for u in uris]
    names = []
    for u in uris:
        found = sorted(n for n in storage.list(u) if n.rsplit("/", 1)[-1].startswith("shard-") and n.endswith(".npz"))
        if not found:
            raise SystemExit(f"no shard-*.npz under {u}")
        names += found
    summary = merge_summaries(summaries)
    rng = np.random.default_rng(seed)
    audio, motion, offsets, controls, silence = [], [], [0], [], []
    for name in names:
        shard = np.load(io.BytesIO(storage.read_bytes(name)))
        if "whisper_states" not in shard:
            raise SystemExit(f"{name} has no whisper_states (built before the Whisper features): build the corpus again")
        bounds = shard["offsets"]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            log_mel = warp_formants(shard["log_mel"][lo:hi], rng.uniform(*FORMANT_WARP))
            rows = audio_matrix(log_mel, shard["energy_db"][lo:hi], shard["pitch_hz"][lo:hi],
                                shard["voicing"][lo:hi], shard["band_energy_db"][lo:hi],
                                shard["whisper_states"][lo:hi])
            normalization = ClipNormalization.fit(rows)
            audio.append(normalization.apply(rows))
            silence.append(normalization.apply(silence_matrix(1))[0])
        motion.append(shard["motion"].astype(np.float32))
        offsets.extend((offsets[-1] + shard["offsets"][1:]).tolist())
        gaze = shard["gaze"].astype(np.float32)
        given = np.isfinite(gaze).all(axis=1)
        gaze = np.where(given[:, None], gaze, 0.0) / GAZE_SCALE_DEGREES
        controls.append(np.concatenate([gaze, given[:, None].astype(np.float32),
                                        np.log(shard["distance"].astype(np.float32))[:, None],
                                        shard["emotion"].astype(np.float32)], axis=1))
    return Corpus(np.concatenate(audio), np.concatenate(motion), np.asarray(offsets, np.int64),
                  np.concatenate(controls), np.stack(silence), summary)


def merge_summaries(summaries: list[dict]) -> dict:
    """One summary for several corpora trained on together: totals added, counts merged."""
    if len(summaries) == 1:
        return summaries[0]
    merged: dict = {"hours": round(sum(s.get("hours", 0.0) for s in summaries), 4),
                    "utterances": sum(s.get("utterances", 0) for s in summaries),
                    "seed": [s.get("seed") for s in summaries],
                    "parts": [{k: v for k, v in s.items() if k not in ("shards", "voices")} for s in summaries]}
    for key in ("engines", "voices", "languages"):
        counts: Counter = Counter()
        for s in summaries:
            counts.update(s.get(key, {}))
        merged[key] = dict(sorted(counts.items()))
    for key in ("articulation_gain", "rest_press", "effort_floor"):
        values = {s.get(key) for s in summaries}
        if len(values) > 1:
            raise SystemExit(f"the corpora were built with different {key}: {sorted(map(str, values))}")
        merged[key] = values.pop()
    return merged


class WindowBatches:
    """Random training windows: audio of K + W frames, previous K motion frames, target W frames."""

    def __init__(self, corpus: Corpus, config: DiffusionConfig, seed: int):
        self.corpus = corpus
        self.config = config
        self.rng = np.random.default_rng(seed)
        lengths = corpus.lengths
        self.weights = lengths / lengths.sum()

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        cfg, c = self.config, self.corpus
        k, w = cfg.context, cfg.window
        utt = self.rng.choice(len(self.weights), size=batch, p=self.weights)
        length = c.lengths[utt]
        # Half the windows start at the utterance start (the first window of a clip, no
        # previous motion); the rest anywhere that leaves at least a quarter window of speech.
        start = (self.rng.random(batch) * np.maximum(1, length - w // 4)).astype(np.int64)
        start[self.rng.random(batch) < 0.25] = 0
        rel = start[:, None] + np.arange(-k, w)[None]                       # (B, K + W)
        inside = (rel >= 0) & (rel < length[:, None])
        index = np.clip(c.offsets[utt][:, None] + rel, 0, len(c.audio) - 1)
        audio = np.where(inside[..., None], c.audio[index], c.silence[utt][:, None])
        motion = np.where(inside[..., None], c.motion[index], 0.0).astype(np.float32)
        has_previous = start >= k
        keep_previous = has_previous & (self.rng.random(batch) >= PREVIOUS_DROP)
        controls = c.controls[utt].copy()
        controls[self.rng.random(batch) < GAZE_DROP, :3] = 0.0
        return {
            "audio": torch.from_numpy(audio.astype(np.float32)),
            "previous": torch.from_numpy(motion[:, :k]),
            "target": torch.from_numpy(motion[:, k:]),
            "valid": torch.from_numpy(inside[:, k:].astype(np.float32)),
            "pad": torch.from_numpy(rel < 0),
            "controls": torch.from_numpy(controls),
            "keep_audio": torch.from_numpy((self.rng.random(batch) >= AUDIO_DROP).astype(np.float32)),
            "keep_previous": torch.from_numpy(keep_previous.astype(np.float32)),
        }


MOUTH_MASK = torch.zeros(MOTION_DIM)
MOUTH_MASK[[DYN_SLICE.start + index for index in MOUTH_DYN_INDEX]] = 1.0
PRESS = DYN_SLICE.start + DYNAMICS.index("lip_press")


def channel_weights() -> torch.Tensor:
    """(MOTION_DIM,) loss weight per channel, mean 1: the mouth's MOUTH_WEIGHT times the rest."""
    weights = 1.0 + (MOUTH_WEIGHT - 1.0) * MOUTH_MASK
    return weights / weights.mean()


def training_loss(model: MotionTransformer, batch: dict[str, torch.Tensor], generator: torch.Generator,
                  weights: torch.Tensor) -> torch.Tensor:
    """Weighted x0 MSE plus a velocity term, over valid frames, in standardised units."""
    target = model.normalize_motion(batch["target"])
    previous = model.normalize_motion(batch["previous"])
    b = target.shape[0]
    t = torch.randint(0, model.config.diffusion_steps, (b,), generator=generator)
    ab = model.alpha_bar[t][:, None, None]
    noisy = ab.sqrt() * target + (1 - ab).sqrt() * torch.randn(target.shape, generator=generator)
    pred = model(noisy, t, batch["audio"], previous, batch["controls"], batch["keep_audio"],
                 batch["keep_previous"], batch["pad"])
    valid = batch["valid"][..., None]
    closed = (batch["target"][..., PRESS] >= CLOSED_PRESS).float()[..., None]          # (B, W, 1)
    weights = weights * (1.0 + (CLOSURE_WEIGHT - 1.0) * closed * MOUTH_MASK)
    err = ((pred - target) ** 2 * weights * valid).sum() / (valid.sum() * MOTION_DIM).clamp(min=1)
    vel_valid = valid[:, 1:] * valid[:, :-1]
    vel = (((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])) ** 2 * weights[:, 1:] * vel_valid).sum()
    vel = vel / (vel_valid.sum() * MOTION_DIM).clamp(min=1)
    return err + VELOCITY_WEIGHT * vel


def set_statistics(model: MotionTransformer, corpus: Corpus) -> None:
    """Standardisation of motion and audio from the corpus (kept in the checkpoint)."""
    with torch.no_grad():
        model.motion_mean.copy_(torch.from_numpy(corpus.motion.mean(0)))
        model.motion_std.copy_(torch.from_numpy(corpus.motion.std(0)).clamp(min=0.02))
        model.audio_mean.copy_(torch.from_numpy(corpus.audio.mean(0)))
        model.audio_std.copy_(torch.from_numpy(corpus.audio.std(0)).clamp(min=1e-3))


def load_widened(model: MotionTransformer, initial: MotionTransformer) -> None:
    """Copy ``initial``'s weights into ``model``; when ``initial`` reads fewer audio columns, its
    input projection fills the leading columns and the new ones start at zero."""
    state = initial.state_dict()
    if initial.audio_dim != model.audio_dim:
        old = state["audio_in.0.weight"]                              # (width, old columns, kernel)
        widened = torch.zeros(old.shape[0], model.audio_dim, old.shape[2])
        widened[:, : initial.audio_dim] = old
        state["audio_in.0.weight"] = widened
        state["audio_mean"], state["audio_std"] = model.audio_mean, model.audio_std   # the corpus's, set after
    model.load_state_dict(state)


def plot_losses(losses: list[tuple[int, float]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, values = zip(*losses)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, values, lw=0.6, alpha=0.4, label="batch")
    if len(values) >= 20:
        width = max(5, len(values) // 50)
        smooth = np.convolve(values, np.ones(width) / width, mode="valid")
        ax.plot(steps[width - 1:], smooth, lw=1.5, label=f"mean of {width}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (standardised x0 MSE + velocity)")
    ax.set_title("motion diffusion training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def export(model: MotionTransformer, folder: Path, summary: dict, training: dict) -> Path:
    """Write the shipped checkpoint: safetensors weights + JSON config with the weights' sha256."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights_path = folder / f"{CHECKPOINT_NAME}.safetensors"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path))
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    params = sum(p.numel() for p in model.parameters())
    meta = {
        "name": CHECKPOINT_NAME,
        "version": f"{CHECKPOINT_NAME}-{digest[:12]}",
        "sha256": digest,
        "parameters": params,
        "config": dataclasses.asdict(model.config),
        "fps": 25.0,
        "audio_dim": model.audio_dim,
        "audio_features": AUDIO_FEATURES,
        "motion_dim": MOTION_DIM,
        "corpus": {k: summary.get(k) for k in ("hours", "utterances", "engines", "voices", "languages", "seed", "articulation_gain", "rest_press", "effort_floor", "recordings", "parts")},
        "training": training,
    }
    (folder / f"{CHECKPOINT_NAME}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return weights_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.train_motion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, nargs="+",
                        help="corpus prefix (folder or s3:// URI) with shard-*.npz; several are trained on together")
    parser.add_argument("--run", required=True, type=Path, help="run folder: state.pt, loss.png, log")
    parser.add_argument("--steps", type=int, default=100_000, help="stop after this many steps in all")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes of this call")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--export", type=Path, default=None, help="folder for the shipped safetensors + JSON")
    parser.add_argument("--init", default=None,
                        help="start a new run from this checkpoint's weights (path or URI of a shipped "
                             "motion-diffusion.safetensors, or its folder): fine-tuning on a changed corpus")
    for f in dataclasses.fields(DiffusionConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default)
    args = parser.parse_args(argv)

    if torch.get_num_threads() != args.threads:
        # Changing the thread count after torch has run parallel work can deadlock MKL's LU solver
        # in the same process later on; leave it alone when it already matches.
        torch.set_num_threads(args.threads)
    config = DiffusionConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DiffusionConfig)})
    corpus = load_corpus(args.corpus, seed=args.seed)
    print(f"corpus: {len(corpus.offsets) - 1} utterances, {len(corpus.audio) / 25 / 3600:.2f} h", flush=True)
    model = MotionTransformer(config)
    set_statistics(model, corpus)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    batches = WindowBatches(corpus, config, args.seed)
    step, losses, seconds_trained = 0, [], 0.0
    initialised_from = None
    args.run.mkdir(parents=True, exist_ok=True)
    state_path = args.run / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["config"] != dataclasses.asdict(config):
            raise SystemExit(f"{state_path} was trained with {state['config']}; pass the same model options")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, losses, seconds_trained = state["step"], state["losses"], state["seconds"]
        initialised_from = state.get("initialised_from")
        generator.set_state(state["generator"])
        batches.rng.bit_generator.state = state["numpy_rng"]
        print(f"resumed at step {step}", flush=True)
    elif args.init is not None:
        from workers.motion.learned import load_model, locate_checkpoint

        init_checkpoint = locate_checkpoint(args.init)
        initial = load_model(init_checkpoint)
        initialised_from = init_checkpoint.version
        if dataclasses.asdict(initial.config) != dataclasses.asdict(config):
            raise SystemExit(f"--init checkpoint has {initial.config}; pass the same model options")
        load_widened(model, initial)
        set_statistics(model, corpus)    # the corpus's own standardisation; the weights adapt to it
        print(f"initialised from {args.init}", flush=True)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {config}", flush=True)
    weights = channel_weights()
    warmup = 200

    def save() -> None:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "losses": losses, "seconds": seconds_trained, "config": dataclasses.asdict(config),
                    "generator": generator.get_state(), "numpy_rng": batches.rng.bit_generator.state,
                    "initialised_from": initialised_from},
                   state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)
        if losses:
            plot_losses(losses, args.run / "loss.png")

    started = time.monotonic()
    model.train()
    while step < args.steps:
        if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
            break
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        tick = time.monotonic()
        loss = training_loss(model, batches.sample(args.batch), generator, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seconds_trained += time.monotonic() - tick
        step += 1
        losses.append((step, loss.item()))
        if step % 50 == 0:
            recent = np.mean([v for _, v in losses[-50:]])
            print(f"step {step:6d}  loss {recent:.4f}  lr {lr:.2e}  {seconds_trained / step:.2f} s/step", flush=True)
        if step % args.save_every == 0:
            save()
    save()
    if args.export is not None:
        recent = float(np.mean([v for _, v in losses[-200:]])) if losses else float("nan")
        path = export(model.eval(), args.export, corpus.summary,
                      {"steps": step, "batch": args.batch, "lr": args.lr, "seconds": round(seconds_trained),
                       "initialised_from": initialised_from,
                       "final_loss": round(recent, 4), "seed": args.seed})
        print(f"exported {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
