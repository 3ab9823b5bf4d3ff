"""Speech records that flow between stages: the audio features on the video frame grid, and
phones with their time spans (what transcript alignment produces and the mouth follows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Phone:
    """One phone with its time span.

    Attributes:
        symbol: IPA (espeak-ng) or ARPAbet (pocketsphinx) symbol; '' or 'pau' for silence.
        start_s: start time in seconds from the start of the audio.
        end_s: end time in seconds (exclusive), >= start_s.
    """

    symbol: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class AudioFeatures:
    """Speech features on the video frame grid; frame i covers [i / fps, (i + 1) / fps).

    Attributes:
        fps: video frame rate in frames per second.
        sample_rate: rate of the analysed waveform in Hz.
        duration_s: waveform duration in seconds.
        num_frames: number of video frames, max(1, round(duration_s * fps)).
        log_mel: (num_frames, 80) float32 natural log of mel-band power (Slaney mel scale,
            0-8000 Hz, area-normalized filters; power of a full-scale signal ~ 1), averaged
            in the power domain over the frame's 10 ms hops; floored at log(1e-10).
        energy_db: (num_frames,) float32 RMS level of the frame's samples in dBFS, floor -80.
        pitch_hz: (num_frames,) float32 fundamental frequency in Hz, 0 where unvoiced.
        voicing: (num_frames,) float32 periodicity in [0, 1] (1 - YIN aperiodicity, 0 in
            silence), averaged over the frame's hops.
        band_energy_db: (num_frames, 4) float32 power in 0-300, 300-1000, 1000-2500 and
            2500-8000 Hz in dBFS (the four bands sum to the frame's mean square), floor -80.
        speech_probability: (num_frames,) float32 voice activity in [0, 1] from silero-vad
            (``workers.audio.vad``), filled by the audio stage; None where not computed.
        whisper_states: (num_frames, 384) float32 Whisper tiny.en encoder states after its
            third block (``workers.audio.whisper.motion_features``), what the diffusion
            motion model reads; filled by the audio stage for it; None where not computed.
    """

    fps: float
    sample_rate: int
    duration_s: float
    num_frames: int
    log_mel: np.ndarray
    energy_db: np.ndarray
    pitch_hz: np.ndarray
    voicing: np.ndarray
    band_energy_db: np.ndarray
    speech_probability: np.ndarray | None = None
    whisper_states: np.ndarray | None = None


@dataclass(frozen=True)
class Transcript:
    """A render's transcript: what the speech says and where the text came from.

    Attributes:
        text: the words.
        source: "given" (the request's ``transcript``) or "recognised" (``workers.audio.recognise``).
        language: language code of the text.
        confidence: recognised only: the recogniser's mean word probability in [0, 1].
        model: recognised only: version of the recogniser's model.
        words: recognised only: how many words it heard.
        used: recognised only: whether the text shaped the lips (it was confident and aligned).
        problem: recognised only: why the text must not drive the lips; None when it may.
    """

    text: str
    source: str
    language: str
    confidence: float | None = None
    model: str | None = None
    words: int | None = None
    used: bool | None = None
    problem: str | None = None

    def to_json(self) -> dict:
        """The published record (manifest ``transcript_json``, provenance ``transcript``): text,
        source and language, plus the recogniser's fields for a recognised transcript."""
        record = {"text": self.text, "source": self.source, "language": self.language}
        if self.source == "recognised":
            record.update(confidence=self.confidence, model=self.model, words=self.words, used=self.used,
                          problem=self.problem)
        return record


@dataclass(frozen=True)
class TranscriptAlignment:
    """How a transcript was placed in the speech (``workers.audio.align``); not the face
    alignment, which is the alignment stage's.

    Attributes:
        method: "pocketsphinx", "espeak-dtw" or "pocketsphinx+dtw" (a long clip aligned span by
            span, some spans keeping the DTW timings); None when the text could not be aligned.
        language: espeak-ng language code it was aligned in.
        confidence: in [0, 1], 3 decimals; below ``workers.audio.align.MIN_CONFIDENCE`` the text
            likely does not match the audio.
        phones: how many phones were placed.
        used: whether the phones shape the lips (False: the motion is audio-only).
    """

    method: str | None
    language: str
    confidence: float
    phones: int
    used: bool
