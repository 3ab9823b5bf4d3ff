"""Motion diffusion transformer (VASA-1 section 3): audio + controls -> motion latents.

The model denoises a window of W motion latents (25 per second, the 20-float layout of
:mod:`workers.face.latents`, relative to the photo: pose offsets, dynamics, gaze) while
reading the audio of the window, the previous K frames of motion and audio, and the
controls: gaze direction, head distance and an emotion offset. It predicts the clean motion
x0 directly (as VASA-1 does). The diffusion step enters every block through adaLN-zero.

Guidance: in training each condition is dropped at random (audio and gaze p=0.1, the
previous window p=0.5), so at sampling time

    x0 = (1 + lambda_A + lambda_g) f(all) - lambda_A f(no audio) - lambda_g f(no gaze)

with lambda_A and lambda_g from the request (``RenderControls.audio_guidance`` and
``gaze_guidance``; ``workers.motion.base.sampling_options``). Sampling is DDIM (deterministic given
the seeded initial noise) with a configurable number of steps, over sliding windows that
start W - O frames apart, each conditioned on the K final frames before it and blended
into the previous window over O frames, so any length works and windows join smoothly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from core.schemas import RenderControls
from workers.face.latents import DYNAMICS, MOTION_DIM, POSE_SLICE
from workers.motion.base import SamplingOptions, sampling_options
from workers.motion.conditioning import (
    AUDIO_DIM,
    MODEL_AUDIO_DIM,
    ClipNormalization,
    silence_matrix,
)

FPS = 25.0
EMOTION_DIM = len(DYNAMICS)
# gaze yaw, pitch (2), gaze given (1), log distance (1), emotion offset (12)
CONTROL_DIM = 2 + 1 + 1 + EMOTION_DIM
GAZE_SCALE_DEGREES = 20.0


@dataclass(frozen=True)
class DiffusionConfig:
    """Shape of the model and of its windows.

    Attributes:
        width: transformer width (channels per token).
        layers: transformer blocks.
        heads: attention heads.
        window: W, frames denoised per window (W / 25 seconds).
        context: K, previous frames of motion and audio each window is conditioned on.
        overlap: O, frames over which consecutive windows are blended.
        diffusion_steps: training noise levels (cosine schedule).
    """

    width: int = 256
    layers: int = 4
    heads: int = 4
    window: int = 80
    context: int = 10
    overlap: int = 6
    diffusion_steps: int = 1000


@dataclass(frozen=True)
class Conditions:
    """Per-clip controls in the model's terms.

    Attributes:
        gaze: (yaw, pitch) degrees relative to the head, or None (no gaze condition).
        distance: head-to-camera scale (1.0 as in the photo).
        emotion: (12,) dynamics offset.
    """

    gaze: tuple[float, float] | None = None
    distance: float = 1.0
    emotion: np.ndarray = field(default_factory=lambda: np.zeros(EMOTION_DIM, dtype=np.float32))

    def vector(self) -> np.ndarray:
        """(CONTROL_DIM,) float32 control vector."""
        gaze = np.zeros(2, np.float32) if self.gaze is None else np.asarray(self.gaze, np.float32) / GAZE_SCALE_DEGREES
        given = np.float32(0.0 if self.gaze is None else 1.0)
        return np.concatenate([gaze, [given, math.log(self.distance)], np.asarray(self.emotion, np.float32)]).astype(np.float32)


def cosine_alpha_bar(steps: int) -> torch.Tensor:
    """Cumulative signal fraction alpha_bar(t) (steps,) of the cosine schedule (Nichol & Dhariwal)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return (f[1:] / f[0]).clamp(1e-5, 0.9999).float()


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of integer diffusion steps t (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-zero modulation from the condition vector."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).unsqueeze(1).chunk(6, dim=-1)
        x = self.norm1(h) * (1 + scale1) + shift1
        h = h + gate1 * self.attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]
        x = self.norm2(h) * (1 + scale2) + shift2
        return h + gate2 * self.mlp(x)


class MotionTransformer(nn.Module):
    """Predicts clean motion x0 (B, W, MOTION_DIM) of a window from its noisy version.

    Inputs are standardised with the corpus statistics held in the buffers
    (``motion_mean/std``, ``audio_mean/std``); :meth:`forward` takes and returns raw units.
    ``audio_dim`` is how many leading model audio columns it reads (``FEATURE_RECIPES``).
    """

    def __init__(self, config: DiffusionConfig, audio_dim: int = MODEL_AUDIO_DIM):
        super().__init__()
        self.config = config
        self.audio_dim = audio_dim
        width = config.width
        self.motion_in = nn.Linear(MOTION_DIM, width)
        self.audio_in = nn.Sequential(nn.Conv1d(audio_dim, width, 5, padding=2), nn.GELU(),
                                      nn.Conv1d(width, width, 3, padding=1))
        self.null_audio = nn.Parameter(torch.zeros(width))
        self.null_previous = nn.Parameter(torch.zeros(width))
        self.segment = nn.Parameter(torch.randn(2, width) * 0.02)
        self.position = nn.Parameter(torch.randn(config.context + config.window, width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.control_mlp = nn.Sequential(nn.Linear(CONTROL_DIM, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(Block(width, config.heads) for _ in range(config.layers))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, MOTION_DIM)
        self.register_buffer("motion_mean", torch.zeros(MOTION_DIM))
        self.register_buffer("motion_std", torch.ones(MOTION_DIM))
        self.register_buffer("audio_mean", torch.zeros(audio_dim))
        self.register_buffer("audio_std", torch.ones(audio_dim))
        self.register_buffer("alpha_bar", cosine_alpha_bar(config.diffusion_steps))

    def normalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self.motion_std + self.motion_mean

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, previous: torch.Tensor,
                controls: torch.Tensor, keep_audio: torch.Tensor, keep_previous: torch.Tensor,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        """One denoising prediction, everything standardised.

        Args:
            noisy: (B, W, MOTION_DIM) standardised noisy motion x_t.
            t: (B,) integer diffusion steps.
            audio: (B, K + W, MODEL_AUDIO_DIM) clip-normalised audio rows of the context and the
                window (:class:`workers.motion.conditioning.ClipNormalization`); the model reads
                the first ``audio_dim`` columns.
            previous: (B, K, MOTION_DIM) standardised final motion of the K frames before.
            controls: (B, CONTROL_DIM) control vectors (gaze zeroed where not given).
            keep_audio, keep_previous: (B,) 1.0 to use that condition, 0.0 to drop it.
            pad: (B, K + W) True where a token is padding, or None.

        Returns:
            (B, W, MOTION_DIM) standardised prediction of x0.
        """
        k = self.config.context
        audio = audio[..., : self.audio_dim]
        a = self.audio_in(((audio - self.audio_mean) / self.audio_std).transpose(1, 2)).transpose(1, 2)
        keep_a = keep_audio[:, None, None]
        a = a * keep_a + self.null_audio * (1 - keep_a)
        keep_p = keep_previous[:, None, None]
        prev_tokens = self.motion_in(previous) * keep_p + self.null_previous * (1 - keep_p)
        tokens = torch.cat([prev_tokens + self.segment[0], self.motion_in(noisy) + self.segment[1]], dim=1)
        h = tokens + a + self.position[: tokens.shape[1]]
        cond = self.time_mlp(timestep_embedding(t, self.config.width)) + self.control_mlp(controls)
        for block in self.blocks:
            h = block(h, cond, pad)
        return self.out(self.out_norm(h[:, k:]))


class WindowSampler:
    """Turns audio rows into motion, window by window (the streaming core of sampling).

    Feed audio rows with :meth:`push` as they arrive; each call returns the motion frames
    that became final. :meth:`finish` flushes the rest. Motion is relative to the photo
    (pose offsets, dynamics, gaze), raw units, (n, MOTION_DIM) float32.
    """

    def __init__(self, model: MotionTransformer, conditions: Conditions, seed: int,
                 options: SamplingOptions | None = None, device: str | torch.device = "cpu"):
        self.model = model
        self.options = options or sampling_options(RenderControls())   # RenderControls' defaults
        self.device = torch.device(device)
        self.config = model.config
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.controls = torch.from_numpy(conditions.vector())[None].to(self.device)
        self.gaze_given = conditions.gaze is not None
        self.audio = np.zeros((0, AUDIO_DIM), np.float32)
        self.motion = np.zeros((0, MOTION_DIM), np.float32)   # sampled so far, tail still tentative
        self.final = 0            # frames of self.motion that no later window will change
        self.window_start = 0     # first frame of the next window
        self.emitted = 0          # final frames already returned

    def push(self, audio_rows: np.ndarray) -> np.ndarray:
        """Add audio rows (n, AUDIO_DIM); returns newly final motion frames (m, MOTION_DIM)."""
        self.audio = np.concatenate([self.audio, np.asarray(audio_rows, np.float32)])
        while len(self.audio) >= self.window_start + self.config.window:
            self._sample_window(len(self.audio))
        return self._emit()

    def finish(self) -> np.ndarray:
        """Sample what is left of the clip (padding its last window with silence) and flush."""
        total = len(self.audio)
        while self.window_start < total and len(self.motion) < total:
            self._sample_window(total)
        self.final = total
        return self._emit()

    def _emit(self) -> np.ndarray:
        out = self.motion[self.emitted: self.final]
        self.emitted = self.final
        return out

    @torch.no_grad()
    def _sample_window(self, available: int) -> None:
        cfg, model = self.config, self.model
        start, k, w = self.window_start, cfg.context, cfg.window
        # Audio of the K context frames and the W window frames; silence before 0 and past the end.
        lo, hi = start - k, start + w
        rows = self.audio[max(lo, 0): min(hi, available)]
        rows = np.concatenate([silence_matrix(max(0, -lo)), rows, silence_matrix(max(0, hi - available))])
        # Voice statistics of the audio up to the window's end: the same whether the clip came
        # whole or in chunks, so streaming and whole-clip sampling give the same motion.
        rows = ClipNormalization.fit(self.audio[: min(hi, available)]).apply(rows, FPS)
        has_previous = start > 0
        previous = np.zeros((k, MOTION_DIM), np.float32)
        if has_previous:
            previous = self.motion[start - k: start]
        audio = torch.from_numpy(rows)[None].to(self.device)
        prev = model.normalize_motion(torch.from_numpy(previous)[None].to(self.device))
        pad = torch.zeros(1, k + w, dtype=torch.bool, device=self.device)
        pad[0, : max(0, -lo)] = True
        window = self._ddim(audio, prev, 1.0 if has_previous else 0.0, pad)
        window = window[: max(0, min(w, available - start))]
        self._merge(start, window)
        self.window_start = start + w - cfg.overlap
        self.final = min(self.window_start, len(self.motion))

    def _ddim(self, audio: torch.Tensor, previous: torch.Tensor, keep_previous: float,
              pad: torch.Tensor) -> np.ndarray:
        model, opts = self.model, self.options
        alpha_bar = model.alpha_bar
        steps = torch.linspace(model.config.diffusion_steps - 1, 0, max(1, opts.steps)).round().long()
        noise = torch.randn(1, model.config.window, MOTION_DIM, generator=self.generator).to(self.device)
        x = noise
        # Batch the guidance passes: all conditions, no audio, and (when gaze is given) no gaze;
        # x0 = the passes summed with per-channel weights (the head pose has its own lambda_A).
        audio_scale = torch.full((MOTION_DIM,), opts.audio_guidance)
        audio_scale[POSE_SLICE] = opts.pose_audio_guidance
        gaze_scale = torch.full((MOTION_DIM,), opts.gaze_guidance if self.gaze_given else 0.0)
        variants = [(1.0, self.controls)]
        weights = [1.0 + audio_scale + gaze_scale]
        if bool(audio_scale.any()):
            variants.append((0.0, self.controls))
            weights.append(-audio_scale)
        if bool(gaze_scale.any()):
            no_gaze = self.controls.clone()
            no_gaze[:, :3] = 0.0
            variants.append((1.0, no_gaze))
            weights.append(-gaze_scale)
        n = len(variants)
        keep_audio = torch.tensor([v[0] for v in variants], device=self.device)
        controls = torch.cat([v[1] for v in variants])
        keep_prev = torch.full((n,), keep_previous, device=self.device)
        weight = torch.stack(weights).to(self.device)[:, None, :]                # (n, 1, MOTION_DIM)
        for i, t in enumerate(steps):
            tt = torch.full((n,), int(t), device=self.device)
            x0 = model(x.expand(n, -1, -1), tt, audio.expand(n, -1, -1), previous.expand(n, -1, -1),
                       controls, keep_audio, keep_prev, pad.expand(n, -1))
            x0 = (weight * x0).sum(0, keepdim=True)
            if i + 1 == len(steps):
                x = x0
                break
            ab, ab_next = alpha_bar[t], alpha_bar[steps[i + 1]]
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
        return model.denormalize_motion(x)[0].cpu().numpy().astype(np.float32)

    def _merge(self, start: int, window: np.ndarray) -> None:
        """Blend the new window into the motion over the frames both cover."""
        shared = max(0, min(len(self.motion) - start, len(window)))
        if shared:
            ramp = (np.arange(1, shared + 1, dtype=np.float32) / (shared + 1))[:, None]
            self.motion[start: start + shared] = (1 - ramp) * self.motion[start: start + shared] + ramp * window[:shared]
        self.motion = np.concatenate([self.motion[: start + shared], window[shared:]])


def sample_motion(model: MotionTransformer, audio_rows: np.ndarray, conditions: Conditions, seed: int,
                  options: SamplingOptions | None = None, device: str = "cpu") -> np.ndarray:
    """Motion (T, MOTION_DIM) relative to the photo for a whole clip's audio rows (T, AUDIO_DIM).
    ``options`` None: RenderControls' defaults."""
    sampler = WindowSampler(model, conditions, seed, options, device)
    parts = [sampler.push(audio_rows), sampler.finish()]
    return np.concatenate(parts)[: len(audio_rows)]


def stream_motion(model: MotionTransformer, audio_chunks: Iterator[np.ndarray], conditions: Conditions, seed: int,
                  options: SamplingOptions | None = None, device: str = "cpu") -> Iterator[np.ndarray]:
    """Yields motion frames (n, MOTION_DIM) as soon as each window is final, while audio arrives."""
    sampler = WindowSampler(model, conditions, seed, options, device)
    for chunk in audio_chunks:
        ready = sampler.push(chunk)
        if len(ready):
            yield ready
    rest = sampler.finish()
    if len(rest):
        yield rest
