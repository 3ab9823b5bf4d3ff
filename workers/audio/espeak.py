"""libespeak-ng through ctypes: speech with IPA phoneme events and their timings.

Used by the transcript aligner (``workers.audio.align``: espeak-ng speaks the transcript,
its phoneme events give the synthetic speech's phone times) and by the training-corpus
builder (``jobs.corpus``). Synthesis through the C callback API, synchronous mode;
``espeakEVENT_PHONEME`` events carry the IPA name and ``audio_position`` in ms.

libespeak-ng keeps global state between calls, so :meth:`Espeak.synth_isolated` runs each
synthesis in a forked child (reproducible output; see its docstring).
"""

from __future__ import annotations

import ctypes
import math
import os

import numpy as np
import scipy.signal

from core.speech import Phone

SAMPLE_RATE = 16000


class EngineError(RuntimeError):
    """A text-to-speech engine failed (no such voice, no audio, the child died)."""


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample a float waveform to 16 kHz (polyphase)."""
    wave = np.asarray(samples, dtype=np.float32)
    if rate != SAMPLE_RATE:
        g = math.gcd(int(rate), SAMPLE_RATE)
        wave = scipy.signal.resample_poly(wave, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
    return wave

class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class EspeakEvent(ctypes.Structure):
    """espeak_EVENT of /usr/include/espeak-ng/speak_lib.h (40 bytes on x86-64)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),   # ms from the start of the synthesized audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_PHONEME_EVENTS = 0x0001
espeakINITIALIZE_PHONEME_IPA = 0x0002
espeakINITIALIZE_DONT_EXIT = 0x8000
espeakEVENT_LIST_TERMINATED = 0
espeakEVENT_PHONEME = 7
espeakRATE, espeakVOLUME, espeakPITCH, espeakRANGE = 1, 2, 3, 4
POS_CHARACTER = 1
espeakCHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.POINTER(EspeakEvent))


def _run_forked(work):
    """Run ``work()`` in a forked child process and return its (pickled) result; one child
    at a time, the parent waits. Raises EngineError when the child fails."""
    import pickle

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: never returns
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = ("ok", work())
            except Exception as error:   # noqa: BLE001
                payload = ("error", str(error))
            with os.fdopen(write_fd, "wb") as pipe:
                pickle.dump(payload, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:   # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        raise EngineError("espeak-ng child process died")
    status, result = pickle.loads(data)
    if status != "ok":
        raise EngineError(result)
    return result


class Espeak:
    """libespeak-ng in synchronous mode with IPA phoneme events (one per process)."""

    _instance: "Espeak | None" = None

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        options = espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA | espeakINITIALIZE_DONT_EXIT
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if self.sample_rate <= 0:
            raise EngineError("espeak_Initialize failed")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _SYNTH_CALLBACK(self._on_synth)   # kept alive on the instance
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @classmethod
    def installed(cls) -> bool:
        """Whether libespeak-ng loads on this machine."""
        try:
            cls.get()
        except OSError:
            return False
        return True

    def _on_synth(self, wav, num_samples, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != espeakEVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == espeakEVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append((int(event.audio_position), name))
            i += 1
        return 0

    def synth_isolated(self, text: str, voice: str, rate_wpm: int, pitch: int, pitch_range: int, seed: int
                       ) -> tuple[np.ndarray, list[tuple[float, str]]]:
        """:meth:`synth` in a forked child, for reproducible output.

        libespeak-ng keeps state across calls (the wave generator's flutter phase, its libc
        rand() noise, pitch-period alignment, settings left by previously selected voices),
        so the same text gives slightly different audio and phone times depending on what
        ran before. The child starts from the parent's state, which stays as
        espeak_Initialize left it (nothing in this process selects a voice or synthesizes
        outside such children), seeds rand() and sends the result back through a pipe.
        """
        def work():
            ctypes.CDLL(None).srand(ctypes.c_uint(seed & 0xFFFFFFFF))
            return self.synth(text, voice, rate_wpm, pitch, pitch_range)

        return _run_forked(work)

    def available_voices(self, names: list[str]) -> list[str]:
        """The voice names espeak_SetVoiceByName accepts (checked in a forked child)."""
        return _run_forked(lambda: [n for n in names if self.lib.espeak_SetVoiceByName(n.encode()) == 0])


    def synth(self, text: str, voice: str, rate_wpm: int = 175, pitch: int = 50, pitch_range: int = 50
              ) -> tuple[np.ndarray, list[tuple[float, str]]]:
        """Speak ``text``: ((samples,) float32 at self.sample_rate, [(start_s, IPA phoneme)]).

        Phoneme events mark phone starts; '' marks a pause; '(xx)' language switches are
        dropped. Changes libespeak-ng's global state: call it in-process only when
        reproducibility does not matter, else use :meth:`synth_isolated`.
        """
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EngineError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(espeakRATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(espeakPITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(espeakRANGE, int(pitch_range), 0)
        self.lib.espeak_SetParameter(espeakVOLUME, 100, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        if status != 0:
            raise EngineError(f"espeak_Synth returned {status}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        events = [(ms / 1000.0, name) for ms, name in self._events if not name.startswith("(")]
        return samples.astype(np.float32) / 32768.0, events


MIN_PAUSE_S = 0.06


def events_to_phones(events: list[tuple[float, str]], duration_s: float) -> list[Phone]:
    """Phone start events (seconds, IPA) -> Phones ending at the next event (the last at
    the audio end). Pauses ('' events) become '_'; those under MIN_PAUSE_S extend the
    previous phone instead; zero-length phones are dropped."""
    phones: list[Phone] = []
    for k, (start, name) in enumerate(events):
        end = events[k + 1][0] if k + 1 < len(events) else duration_s
        start, end = min(start, duration_s), min(end, duration_s)
        if not end > start:
            continue
        if name == "":
            # espeak-ng reports pauses with an empty name; the short ones inside words
            # (syllable or gemination gaps) are not pauses: the previous phone goes on.
            if end - start < MIN_PAUSE_S and phones and phones[-1].symbol != "_":
                phones[-1] = Phone(phones[-1].symbol, phones[-1].start_s, end)
                continue
            name = "_"
        if phones and name == "_" and phones[-1].symbol == "_":
            phones[-1] = Phone("_", phones[-1].start_s, end)
            continue
        phones.append(Phone(name, start, end))
    return phones


def synthesize(text: str, voice: str, rate_wpm: int = 175, pitch: int = 50, pitch_range: int = 50,
               seed: int = 0) -> tuple[np.ndarray, list[Phone]]:
    """Speak ``text`` with an espeak-ng voice (reproducibly, in a forked child).

    Returns:
        ((samples,) float32 waveform at 16 kHz, phones with IPA symbols and times in s;
        pauses are '_').

    Raises:
        EngineError: unknown voice, or no audio produced.
    """
    engine = Espeak.get()
    samples, events = engine.synth_isolated(text, voice, rate_wpm, pitch, pitch_range, seed)
    if samples.size == 0:
        raise EngineError("espeak-ng produced no audio")
    wave16 = to_16k(samples, engine.sample_rate)
    return wave16, events_to_phones(events, len(wave16) / SAMPLE_RATE)
