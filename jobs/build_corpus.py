"""Build the synthetic (speech, motion) training corpus of the motion diffusion model.

    python -m jobs.build_corpus --out /data/corpus --hours 2 --seed 0 [--shard-utterances 200]
    python -m jobs.build_corpus --out /data/corpus --retarget     # new mouth recipe, same speech
    python -m jobs.build_corpus --out /data/recorded --recordings DIR --transcripts LIST [--copies 2] [--exclude NAME ...]

Speech comes from three text-to-speech engines, each giving phone timings:

* espeak-ng, through libespeak-ng's C callback API (ctypes): many languages and voice
  variants, rates 120-220 wpm, varied pitch and pitch range; phone start times come from
  its ``espeakEVENT_PHONEME`` events (IPA names, ``audio_position`` in ms).
* festival (``festival --batch`` with a small Scheme script): English diphone and HTS
  voices; the script saves the wave and prints the ``Segment`` relation's end times.
* flite (CLI): English voices; it reports no timings, so the phones come from a
  pocketsphinx forced alignment of the text (``workers.audio.phonemes.align_transcript``).

Each utterance is augmented with a random subset of: additive white / pink / brown noise
(10-30 dB SNR), synthetic reverberation (RT60 0.2-0.8 s), level change (-20..+6 dB, then
clipping), telephone band-limiting (8 kHz, 300-3400 Hz) and a pitch shift by resampling
(0.9-1.1; the phone times are scaled with it). Audio features are computed exactly as at
inference (loudness normalisation, then ``compute_features`` at 25 fps) on the augmented
16 kHz audio. The target motion (T, 20) follows the latent layout of
``workers.face.latents`` relative to a neutral frontal source: head motion, blinks and
saccades from ``ProceduralMotion`` driven by the clean audio; the six mouth channels from
the phones (``workers.motion.articulation.mouth_targets``, jaw and lower lip opened up by
ARTICULATION_GAIN and following the clean speech's loudness down to EFFORT_FLOOR:
``articulated_mouth``) plus the emotion offset. ``--retarget`` rewrites the mouth channels of
an existing corpus from the phones and clean levels its shards keep.

``--recordings`` builds from recorded speech instead (real voices; ``jobs/recordings.py``):
each recording with a transcript is force-aligned (pocketsphinx in English; espeak-ng +
DTW in the ``--language`` given, alignments under MIN_TRAINING_CONFIDENCE refused) and goes
through the same augmentation and targets, ``--copies`` times with different augmentations.
Train on the corpora together (``jobs/train_motion.py --corpus SYNTH RECORDED ...``).

Output under ``--out`` (local path or s3:// URI): ``shard-00000.npz``, ... each holding the
concatenated frames of ~``--shard-utterances`` utterances::

    log_mel float16 (F, 80)       energy_db float16 (F,)      pitch_hz float16 (F,)
    voicing float16 (F,)          band_energy_db float16 (F, 4)
    clean_energy_db float16 (F,)  frame level of the speech before augmentation (the targets' vocal effort)
    motion float32 (F, 20)        offsets int64 (U + 1,)      frame boundaries of utterances
    emotion float32 (U, 12)       gaze float32 (U, 2)         NaN rows: no gaze condition
    distance float32 (U,)         meta: JSON string, per utterance engine, voice, language,
                                  text, augmentations, seconds, phones [[symbol, start_s, end_s]]

and ``summary.json`` (hours, utterances, counts per engine / voice / language, seed, fps,
articulation gain, shards). Utterance i is drawn from its own generator seeded with (seed, i), so a seed
gives the same corpus on any machine with the same engines installed. An utterance whose
engine fails is skipped and counted; the build never stops for one.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.signal

from core.speech import AudioFeatures
from core.storage import Storage, join_uri
from jobs.recordings import Recording
from workers.audio.decode import normalize_loudness
from workers.audio.espeak import (  # noqa: F401 - re-exported
    MIN_PAUSE_S,
    EngineError,
    Espeak,
    EspeakEvent,
    _run_forked,
    events_to_phones,
    to_16k,
)
from workers.audio.features import compute_features
from workers.face.latents import (
    DYN_SLICE,
    DYNAMICS,
    EMOTIONS,
    MOTION_DIM,
    emotion_offset,
)
from workers.motion.articulation import (
    CLASSES,
    CLOSED_JAW,
    CLOSED_PRESS,
    MOUTH_CHANNELS,
    MOUTH_DYN_INDEX,
    Phone,
    VisemeClass,
    mouth_targets,
)
from workers.motion.base import MotionControls
from workers.motion.procedural import ProceduralMotion

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FPS = 25.0
ENGINE_WEIGHTS = {"espeak": 0.6, "festival": 0.2, "flite": 0.2}
AUGMENT_PROBABILITY = {"noise": 0.35, "reverb": 0.3, "level": 0.4, "telephone": 0.15, "pitch": 0.35}
NEUTRAL_PROBABILITY = 0.6
# Jaw opening and lower-lip depression of the phone targets are scaled by this (articulated_mouth).
ARTICULATION_GAIN = 1.6
# The corpus's speakers rest with closed lips: the viseme model's silence (lip_press 0.15) taught
# the model a mouth left ajar in pauses, which a photo with parted lips shows as open
# (BENCHMARKS.md, "Motion generators": silence closed 0.0-0.5 on the astronaut).
REST = VisemeClass("rest", (0.02, 0.00, 0.00, 0.60, 0.00, 0.00), CLASSES["silence"].dominance,
                   CLASSES["silence"].theta_anticipatory, CLASSES["silence"].theta_carryover)
# Vocal effort: the jaw and lower lip of the phone targets open this share of their extent on the
# quietest speech and all of it at the utterance's speech level (``vocal_effort``). Louder speech
# opens the jaw wider; with phone targets alone the jaw held one height per vowel whatever the
# loudness, and the targets followed the speech envelope less than the procedural generator on
# French, Italian and Russian recordings (BENCHMARKS.md, "Motion diffusion").
EFFORT_FLOOR = 0.3
MAX_SENTENCES = 3
# Pauses around each utterance (add_pauses), and a breath before the speech in some leading ones.
PAUSE_PROBABILITY = 0.6
MAX_PAUSE_S = 0.8
BREATH_PROBABILITY = 0.5
BREATH_LEVEL_DB = (-36.0, -20.0)    # relative to the speech's power
# espeak + DTW alignments of recordings below this confidence are not trained on: stricter than
# the aligner's own accept threshold (0.18), since a misplaced phone teaches a wrong mouth.
MIN_TRAINING_CONFIDENCE = 0.25

# --------------------------------------------------------------------------- texts

TEXTS: dict[str, list[str]] = {
    "en": [
        "Bob bought a map and maybe more apples.",
        "Please pass the big blue book to Bobby.",
        "My mother made a warm plum pie on Monday.",
        "Who would move a whole room of boxes by noon?",
        "The puppy jumped up and bumped the lamp.",
        "Father parked the car far from the barn.",
        "We watched the moon rise over the pool.",
        "Maybe the bus will pick up both of them.",
        "Put the map back in the pocket of my coat.",
        "A happy man plays the piano at the palace.",
        "Peter Piper picked a peck of pickled peppers.",
        "Old boats float slowly on the open ocean.",
        "Sharp shells shine on the shore in June.",
        "Five very brave vets fixed the fence.",
        "Thank you, that was a wonderful evening.",
        "How about a cup of hot chocolate?",
        "The market opens at nine on Saturday morning.",
        "Bring me the purple umbrella, please.",
        "Mom and Pop bought a bamboo boat.",
        "Everybody wants a bit more time to think.",
        "Could you open the window a little bit?",
        "Boom, the balloon popped above the beach.",
        "The baby babbled happily in the pram.",
        "Jim might visit Paris in the summer.",
        "Why do you always whisper when you are worried?",
        "A moment of calm before the big storm.",
        "Mix the butter, the milk and the flour.",
        "Our neighbour plays music until midnight.",
        "The garden is full of poppies and blueberries.",
        "I hope you remember the name of that movie.",
        "She sells sea shells by the sea shore.",
        "Many people walk their dogs in the park.",
    ],
    "de": [
        "Mein Papa baut ein Boot am Bodensee.",
        "Bitte bring mir den blauen Ball mit.",
        "Am Morgen trinken wir Milch und Kaffee.",
        "Die Blumen blühen prächtig im Mai.",
        "Ob Mama morgen mitkommt, weiß ich nicht.",
        "Unser Hund spielt gern im großen Park.",
        "Der Mond scheint hell über dem Meer.",
        "Wir fahren mit dem Bus nach München.",
        "Das Brot im Backofen duftet wunderbar.",
        "Im Sommer schwimmen wir oft im See.",
        "Paul kauft Pflaumen, Birnen und Äpfel.",
        "Guten Morgen, haben Sie gut geschlafen?",
        "Die Musik war laut, aber sehr schön.",
        "Ein Bär brummt müde in seiner Höhle.",
        "Mach bitte das Fenster auf, es ist warm.",
        "Über den Bergen wohnen die Bauern.",
        "Morgen besuchen wir Oma in Bremen.",
        "Das Buch liegt unter dem Bett.",
        "Warum bist du so müde heute?",
        "Vater malt ein buntes Bild vom Mond.",
    ],
    "fr": [
        "Mon père a acheté un bateau bleu.",
        "Pourquoi pas une promenade au bord de la mer?",
        "Maman prépare une bonne soupe aux pommes.",
        "Le bébé boit son biberon tout doucement.",
        "Nous partons à Paris au mois de mai.",
        "Bonjour madame, vous allez bien aujourd'hui?",
        "Le petit bateau flotte sur le beau lac.",
        "Mes amis mangent du pain et du fromage.",
        "Où est mon manteau marron?",
        "Il pleut beaucoup au printemps à Bordeaux.",
        "La boulangerie ouvre à sept heures du matin.",
        "Pierre porte un pull bleu et un pantalon.",
        "Bonne nuit, à demain matin.",
        "Le musée est ouvert le mercredi.",
        "Nous aimons beaucoup la musique populaire.",
        "Papa boit un bol de café au lait.",
        "Le chat dort sur le mur du jardin.",
        "Tu veux un peu plus de beurre?",
        "Marie a oublié son parapluie au bureau.",
        "Les pommes du marché sont magnifiques.",
    ],
    "es": [
        "Mi mamá compra pan por la mañana.",
        "El barco blanco bordea la playa.",
        "Pablo bebe un poco de agua fría.",
        "Vamos a bailar bajo la luna llena.",
        "Buenos días, ¿cómo está usted?",
        "Me gusta mucho la música de Bogotá.",
        "El perro pequeño duerme en la cama.",
        "Mañana comemos paella con mis primos.",
        "La biblioteca abre a las ocho.",
        "Por favor, pásame el plato blanco.",
        "Nuestra abuela vive en Barcelona.",
        "Un burro bonito bebe en el pozo.",
        "¿Dónde pusiste mi mochila marrón?",
        "El mar está muy bravo hoy.",
        "Mi padre pinta paisajes de montaña.",
        "Ayer compramos manzanas y uvas.",
        "La mariposa vuela sobre las flores.",
        "Hablamos mucho por teléfono.",
        "El museo tiene cuadros muy bonitos.",
        "Por la tarde paseamos por el parque.",
    ],
    "it": [
        "Mio papà compra il pane ogni mattina.",
        "La bambina beve un bicchiere di latte.",
        "Andiamo al mare a maggio?",
        "Buongiorno, come sta la mamma?",
        "Il bimbo mangia una mela rossa.",
        "Le barche blu partono dal porto.",
        "Mi piace molto la musica popolare.",
        "Domani pomeriggio piove a Bologna.",
        "Paolo porta un bel mazzo di fiori.",
        "La pizza margherita è buonissima.",
        "Il museo apre alle nove in punto.",
        "Ombretta abita in una piccola casa.",
        "Mamma mia, che bella giornata!",
        "Il gatto dorme sopra il mobile.",
        "Prendiamo un caffè al bar della piazza.",
        "Un uomo buono aiuta sempre gli amici.",
        "Il pittore dipinge il monte bianco.",
        "Bevo molta acqua durante l'estate.",
        "Le api volano tra i prati in fiore.",
        "Mi passi il burro, per favore?",
    ],
    "pt": [
        "Meu pai compra pão de manhã.",
        "A menina bebe um copo de leite.",
        "Vamos à praia no mês de maio.",
        "Bom dia, como vai a sua mãe?",
        "O barco bonito passa pela ponte.",
        "Eu gosto muito de música brasileira.",
        "Amanhã vamos almoçar com os primos.",
        "O bebé dorme no berço azul.",
        "Por favor, passe-me a manteiga.",
        "O museu abre às nove horas.",
        "A bola bateu na parede do quarto.",
        "Minha mãe mora perto do mar.",
        "O macaco come bananas maduras.",
        "Pedro pintou a porta de branco.",
        "Hoje o tempo está muito bom.",
        "As pombas voam sobre a praça.",
        "Obrigado pela bela ajuda.",
        "O povo bebe café depois do almoço.",
        "Um homem bom abre a porta.",
        "Os meninos brincam no jardim.",
    ],
    "nl": [
        "Mijn moeder maakt morgen pannenkoeken.",
        "De boot vaart langzaam over het meer.",
        "Papa brengt de baby naar bed.",
        "Goedemorgen, hoe gaat het met u?",
        "We gaan met de bus naar Amsterdam.",
        "De bloemen bloeien mooi in mei.",
        "Bram eet een boterham met kaas.",
        "Het museum is op maandag open.",
        "Opa woont in een boerderij.",
        "Mag ik een beetje melk, alstublieft?",
        "De maan schijnt boven de bomen.",
        "Het paard loopt op de brug.",
        "Wij spelen muziek in het park.",
        "Bob zoekt zijn blauwe pet.",
        "Het regent veel in de herfst.",
        "Mama kookt soep met bonen.",
        "De poes slaapt op de bank.",
        "Morgen bezoeken we de markt.",
        "Pieter pakt zijn boeken in.",
        "De bakker bakt vers brood.",
    ],
    "pl": [
        "Mama piecze bardzo dobre ciasto.",
        "Bartek buduje piękny most.",
        "Dzień dobry, jak się pan miewa?",
        "Pies biegnie po parku z piłką.",
        "Pomidory są bardzo smaczne.",
        "Babcia mieszka blisko morza.",
        "Mój brat pije mleko rano.",
        "Poproszę bułkę z masłem.",
        "Po południu pójdziemy do muzeum.",
        "Ten obraz jest bardzo piękny.",
        "Paweł ma małego kota.",
        "Będziemy pływać w basenie.",
        "Mój ojciec pracuje w biurze.",
        "Lubię muzykę i poezję.",
        "W maju kwitną białe bzy.",
        "Proszę podać mi mapę.",
        "Ptaki śpiewają w ogrodzie.",
        "Po obiedzie pijemy kawę.",
        "Ala ma psa i dwa koty.",
        "Mamy bardzo ładną pogodę.",
    ],
    "ru": [
        "Мама мыла раму утром.",
        "Папа купил большую булку.",
        "Добрый день, как ваши дела?",
        "Мы поедем в Москву в мае.",
        "Бабушка пьёт молоко с мёдом.",
        "Море было спокойным и тёплым.",
        "Маленький мальчик пошёл в парк.",
        "Пожалуйста, подайте мне книгу.",
        "В субботу мы пойдём в музей.",
        "Белый пароход плывёт по реке.",
        "Мой брат любит музыку.",
        "Под окном растёт большая берёза.",
        "Утром было очень холодно.",
        "Медведь спит в берлоге.",
        "Павел пишет письмо маме.",
        "Мы обедаем в полдень.",
        "Собака бежит по мосту.",
        "Спасибо большое за помощь.",
        "Осенью падают жёлтые листья.",
        "Бабочка сидит на цветке.",
    ],
    "hi": [
        "मेरा नाम पूजा है।",
        "बाबा बाज़ार से आम लाए।",
        "आप कैसे हैं?",
        "मम्मी ने मीठा भोजन बनाया।",
        "बच्चे पार्क में खेल रहे हैं।",
        "मुझे पानी पीना है।",
        "हम कल मुंबई जाएँगे।",
        "बारिश में मोर नाचता है।",
        "पापा अख़बार पढ़ते हैं।",
        "यह बहुत सुंदर बाग़ है।",
        "माँ बाज़ार गई है।",
        "मेरे भाई को संगीत पसंद है।",
        "बिल्ली दूध पीती है।",
        "सुबह मौसम अच्छा था।",
        "हम सब मिलकर पढ़ेंगे।",
        "पहाड़ पर बर्फ़ गिरी।",
        "बस स्टेशन पास में है।",
        "मुझे मीठे फल पसंद हैं।",
        "बूढ़ा आदमी बगीचे में बैठा है।",
        "कृपया मेरी मदद करो।",
    ],
}

# espeak-ng voice names (as espeak_SetVoiceByName takes them) per language.
ESPEAK_LANGUAGES: dict[str, list[str]] = {
    "en": ["en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029"],
    "de": ["de"], "fr": ["fr", "fr-be"], "es": ["es", "es-419"], "it": ["it"],
    "pt": ["pt", "pt-br"], "nl": ["nl"], "pl": ["pl"], "ru": ["ru"], "hi": ["hi"],
}
ESPEAK_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7",
                   "+f1", "+f2", "+f3", "+f4", "+f5", "+klatt", "+klatt2", "+croak"]
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]


@dataclass
class Synth:
    """One synthesized utterance before augmentation."""

    wave: np.ndarray          # (samples,) float32 at SAMPLE_RATE
    phones: list[Phone]       # times in seconds
    alphabet: str             # "ipa" or "arpabet"
    voice: str
    language: str
    text: str


def _read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
        data = handle.readframes(handle.getnframes())
    if width != 2:
        raise EngineError(f"unexpected sample width {width}")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


# --------------------------------------------------------------------------- espeak-ng (workers.audio.espeak)

def synth_espeak(rng: np.random.Generator) -> Synth:
    engine = Espeak.get()
    language = str(rng.choice(sorted(ESPEAK_LANGUAGES)))
    voice = str(rng.choice(ESPEAK_LANGUAGES[language])) + str(rng.choice(ESPEAK_VARIANTS))
    text = _pick_text(rng, language)
    rate, pitch, pitch_range = int(rng.integers(120, 221)), int(rng.integers(25, 76)), int(rng.integers(25, 81))
    samples, events = engine.synth_isolated(text, voice, rate, pitch, pitch_range, int(rng.integers(2 ** 31)))
    if samples.size < engine.sample_rate // 10:
        raise EngineError("espeak-ng produced no audio")
    wave16 = to_16k(samples, engine.sample_rate)
    phones = events_to_phones(events, len(wave16) / SAMPLE_RATE)
    return Synth(wave16, phones, "ipa", f"{voice}@{rate}wpm", language, text)


# --------------------------------------------------------------------------- festival

FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices",)


def festival_voices() -> list[str]:
    if shutil.which("festival") is None:
        return []
    voices = []
    for root in FESTIVAL_VOICE_DIRS:
        for path in sorted(Path(root).glob("*/*")):
            if path.is_dir():
                voices.append(path.name)
    return voices


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synth_festival(rng: np.random.Generator, voices: list[str], workdir: Path) -> Synth:
    voice = str(rng.choice(voices))
    text = _pick_text(rng, "en")
    stretch = float(rng.uniform(0.8, 1.25))
    wav_path = workdir / "festival.wav"
    wav_path.unlink(missing_ok=True)
    script = (
        f"(voice_{voice})\n"
        f"(Parameter.set 'Duration_Stretch {stretch:.3f})\n"
        f"(set! utt (SynthText {_scheme_string(text)}))\n"
        f"(utt.save.wave utt {_scheme_string(str(wav_path))} 'riff)\n"
        "(mapcar (lambda (s) (format t \"SEG\\t%s\\t%f\\n\" (item.name s) (item.feat s \"end\")))"
        " (utt.relation.items utt 'Segment))\n"
    )
    script_path = workdir / "festival.scm"
    script_path.write_text(script, encoding="utf-8")
    result = subprocess.run(["festival", "--batch", str(script_path)], capture_output=True, timeout=60)
    if result.returncode != 0 or not wav_path.exists():
        raise EngineError(f"festival failed: {result.stderr.decode(errors='replace')[-300:]}")
    samples, rate = _read_wav(wav_path)
    wave16 = to_16k(samples, rate)
    duration = len(wave16) / SAMPLE_RATE
    phones, start = [], 0.0
    for line in result.stdout.decode(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] != "SEG":
            continue
        end = min(float(parts[2]), duration)
        if end > start:
            phones.append(Phone(parts[1], start, end))
        start = max(start, end)
    if not phones:
        raise EngineError("festival printed no segments")
    return Synth(wave16, phones, "arpabet", f"{voice}@x{stretch:.2f}", "en", text)


# --------------------------------------------------------------------------- flite

def flite_voices() -> list[str]:
    if shutil.which("flite") is None:
        return []
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split(":", 1)[-1].split()
    return [v for v in FLITE_VOICES if v in listed]


def synth_flite(rng: np.random.Generator, voices: list[str], workdir: Path) -> Synth:
    from workers.audio.phonemes import align_transcript  # pocketsphinx: only when used

    voice = str(rng.choice(voices))
    text = _pick_text(rng, "en")
    stretch = float(rng.uniform(0.8, 1.25))
    wav_path = workdir / "flite.wav"
    wav_path.unlink(missing_ok=True)
    result = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}",
                             "-t", text, "-o", str(wav_path)], capture_output=True, timeout=60)
    if result.returncode != 0 or not wav_path.exists():
        raise EngineError(f"flite failed: {result.stderr.decode(errors='replace')[-300:]}")
    samples, rate = _read_wav(wav_path)
    wave16 = to_16k(samples, rate)
    try:
        segments = align_transcript(wave16, text)
    except Exception as error:   # noqa: BLE001 - a failed alignment skips the utterance
        raise EngineError(f"alignment failed: {error}") from None
    phones = [Phone(s.phone, s.start_s, s.end_s) for s in segments]
    return Synth(wave16, phones, "arpabet", f"{voice}@x{stretch:.2f}", "en", text)


def _pick_text(rng: np.random.Generator, language: str) -> str:
    sentences = TEXTS[language]
    count = int(rng.integers(1, MAX_SENTENCES + 1))
    picks = rng.choice(len(sentences), size=count, replace=False)
    return " ".join(sentences[int(i)] for i in picks)


# --------------------------------------------------------------------------- augmentation

def _colored_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white" or n < 4:
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    spectrum /= np.sqrt(freqs) if color == "pink" else freqs
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.std(noise) + 1e-12)


def _speech_power(wave: np.ndarray) -> float:
    frame = SAMPLE_RATE // 50
    usable = len(wave) // frame * frame
    if usable == 0:
        return float(np.mean(wave ** 2) + 1e-12)
    power = np.mean(wave[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1)
    active = power[power > power.max() * 1e-3]
    return float(active.mean()) + 1e-12


def breath_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) unit-power inhalation-like noise: band-limited (0.5-4 kHz) with a rise and fall."""
    sos = scipy.signal.butter(2, [500.0, 4000.0], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    noise = scipy.signal.sosfilt(sos, rng.standard_normal(n + 400))[400:]
    noise *= np.sin(np.linspace(0.0, np.pi, n)) ** 2
    return (noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)).astype(np.float32)


def add_pauses(wave: np.ndarray, phones: list[Phone], rng: np.random.Generator
               ) -> tuple[np.ndarray, list[Phone], list[str]]:
    """Pauses before and after the speech (each with PAUSE_PROBABILITY, 0.1-MAX_PAUSE_S long),
    sometimes with a breath in the leading one; phone times move with the speech.

    Synthesised speech starts at once; recordings start out of a pause, often after an audible
    inhalation. Without such onsets in the corpus the model parted the lips in the silence
    before recorded speech (BENCHMARKS.md, "Motion diffusion").
    """
    lead, tail = (float(rng.uniform(0.1, MAX_PAUSE_S)) if rng.random() < PAUSE_PROBABILITY else 0.0 for _ in range(2))
    n_lead, n_tail = int(lead * SAMPLE_RATE), int(tail * SAMPLE_RATE)
    out = np.concatenate([np.zeros(n_lead, np.float32), np.asarray(wave, np.float32), np.zeros(n_tail, np.float32)])
    applied = [f"pause={lead + tail:.2f}"] if n_lead + n_tail else []
    if lead >= 0.35 and rng.random() < BREATH_PROBABILITY:
        end = n_lead - int(rng.uniform(0.03, 0.12) * SAMPLE_RATE)
        start = max(0, end - int(rng.uniform(0.2, 0.5) * SAMPLE_RATE))
        level_db = float(rng.uniform(*BREATH_LEVEL_DB))
        out[start:end] += breath_noise(rng, end - start) * np.float32(np.sqrt(_speech_power(wave)) * 10 ** (level_db / 20))
        applied.append(f"breath={level_db:.0f}dB")
    shift = n_lead / SAMPLE_RATE
    return out, [Phone(p.symbol, p.start_s + shift, p.end_s + shift) for p in phones], applied


def pitch_shift(wave: np.ndarray, factor: float) -> np.ndarray:
    """Resample so playback is ``factor`` times higher and faster (duration / factor)."""
    down = int(round(100 * factor))
    g = math.gcd(100, down)
    return scipy.signal.resample_poly(wave, 100 // g, down // g).astype(np.float32)


def augment(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Reverb, telephone band, noise and level change (each with its probability)."""
    applied = []
    out = wave.astype(np.float64)
    if rng.random() < AUGMENT_PROBABILITY["reverb"]:
        rt60 = rng.uniform(0.2, 0.8)
        t = np.arange(int(rt60 * 1.2 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = rng.standard_normal(len(t)) * np.exp(-6.9078 * t / rt60)
        ir[: int(0.002 * SAMPLE_RATE)] = 0.0
        ir[0] = 1.0
        ir /= np.sqrt(np.sum(ir ** 2))
        out = scipy.signal.fftconvolve(out, ir)[: len(out)]
        applied.append(f"reverb_rt60={rt60:.2f}")
    if rng.random() < AUGMENT_PROBABILITY["telephone"]:
        narrow = scipy.signal.resample_poly(out, 1, 2)
        sos = scipy.signal.butter(4, [300.0, 3400.0], btype="bandpass", fs=8000, output="sos")
        narrow = scipy.signal.sosfilt(sos, narrow)
        out = scipy.signal.resample_poly(narrow, 2, 1)[: len(out)]
        out = np.pad(out, (0, len(wave) - len(out)))
        applied.append("telephone")
    if rng.random() < AUGMENT_PROBABILITY["noise"]:
        color = str(rng.choice(["white", "pink", "brown"]))
        snr = rng.uniform(10.0, 30.0)
        noise = _colored_noise(rng, len(out), color)
        out = out + noise * math.sqrt(_speech_power(out) / 10 ** (snr / 10))
        applied.append(f"noise_{color}_snr={snr:.1f}")
    if rng.random() < AUGMENT_PROBABILITY["level"]:
        gain_db = rng.uniform(-20.0, 6.0)
        out = out * 10 ** (gain_db / 20)
        applied.append(f"level={gain_db:+.1f}dB")
    return np.clip(out, -1.0, 1.0).astype(np.float32), applied


# --------------------------------------------------------------------------- motion

def sample_conditions(rng: np.random.Generator) -> tuple[str, np.ndarray, tuple[float, float] | None, float]:
    """(emotion name, dynamics offset (12,), gaze (yaw, pitch) degrees or None, distance)."""
    if rng.random() < NEUTRAL_PROBABILITY:
        name, vector = "neutral", np.zeros(len(DYNAMICS), np.float32)
    else:
        name = str(rng.choice([e for e in EMOTIONS if e != "neutral"]))
        scale = float(rng.uniform(0.5, 1.0))
        vector = emotion_offset(name) * np.float32(scale)
        name = f"{name}@{scale:.2f}"
    gaze = None if rng.random() < 0.5 else (float(rng.uniform(-20, 20)), float(rng.uniform(-12, 12)))
    distance = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.8, 1.25))
    return name, vector, gaze, distance


def vocal_effort(clean_energy_db: np.ndarray) -> np.ndarray:
    """(T,) in [EFFORT_FLOOR, 1]: how far the jaw opens from its phone target's extent, from the
    clean speech's frame level (dBFS, (T,)) relative to the utterance's speech level (its 95th
    percentile, as ``CueStatistics``): the procedural generator's ``loud`` cue, floored."""
    from workers.audio.cues import loudness

    energy = np.asarray(clean_energy_db, np.float64)
    if not len(energy):
        return energy
    return EFFORT_FLOOR + (1.0 - EFFORT_FLOOR) * loudness(energy, float(np.percentile(energy, 95)))


def articulated_mouth(phones: list[Phone], num_frames: int, alphabet: str, clean_energy_db: np.ndarray,
                      unknown: Counter | None = None) -> np.ndarray:
    """(T, len(MOUTH_CHANNELS)) mouth targets of the phones, opened up by ARTICULATION_GAIN and
    scaled by the speech's vocal effort (``clean_energy_db`` (T,) dBFS per frame).

    The viseme model's coarticulated jaw peaks sit near 0.45 on open vowels, and a face
    rendered from them opens about 0.14 mouth widths (p95 - p5) where real talking video
    opens 0.43 (BENCHMARKS.md, "Quality control"): the corpus asked for a mumble. The jaw and
    the lower lip are scaled up; frames where the lips close on p / b / m stay closed; in
    silence the lips rest closed (REST). Then both follow the loudness (vocal_effort).
    """
    mouth = mouth_targets(phones, num_frames, FPS, alphabet=alphabet, unknown=unknown, rest=REST)
    jaw, press = MOUTH_CHANNELS.index("jaw_open"), MOUTH_CHANNELS.index("lip_press")
    lower = MOUTH_CHANNELS.index("lower_lip_depress")
    closed = mouth[:, press] >= CLOSED_PRESS
    effort = vocal_effort(np.asarray(clean_energy_db)[:num_frames])
    for channel in (jaw, lower):
        mouth[:, channel] = np.minimum(mouth[:, channel] * ARTICULATION_GAIN, 1.0)
        mouth[closed, channel] = np.minimum(mouth[closed, channel], CLOSED_JAW)
        mouth[: len(effort), channel] *= effort
    return mouth


def target_motion(clean: AudioFeatures, phones: list[Phone], alphabet: str, emotion: np.ndarray,
                  gaze: tuple[float, float] | None, distance: float, seed: int,
                  unknown: Counter | None = None) -> np.ndarray:
    """(T, MOTION_DIM) float32 motion relative to a neutral frontal source."""
    controls = MotionControls(seed=seed, gaze=gaze, distance=distance, emotion=emotion)
    motion = ProceduralMotion().generate(clean, np.zeros(MOTION_DIM, np.float32), controls)
    set_mouth(motion, articulated_mouth(phones, clean.num_frames, alphabet, clean.energy_db, unknown), emotion)
    return motion.astype(np.float32)


def set_mouth(motion: np.ndarray, mouth: np.ndarray, emotion: np.ndarray) -> None:
    """Write the mouth targets (T, len(MOUTH_CHANNELS)) plus the emotion offset into motion (T, MOTION_DIM)."""
    for k, index in enumerate(MOUTH_DYN_INDEX):
        motion[:, DYN_SLICE.start + index] = mouth[:, k] + emotion[index]


# --------------------------------------------------------------------------- build

@dataclass
class Utterance:
    features: AudioFeatures
    clean_energy_db: np.ndarray     # (T,) dBFS of the speech before augmentation (vocal_effort)
    motion: np.ndarray
    emotion: np.ndarray
    gaze: np.ndarray
    distance: float
    meta: dict


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
        features = compute_features(normalize_loudness(noisy, sample_rate=SAMPLE_RATE), SAMPLE_RATE, fps=FPS)
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


def available_engines() -> dict[str, list[str]]:
    engines: dict[str, list[str]] = {}
    try:
        espeak = Espeak.get()
        voices = espeak.available_voices([v for vs in ESPEAK_LANGUAGES.values() for v in vs])
        if voices:
            engines["espeak"] = voices
    except (OSError, EngineError) as error:
        logger.warning("espeak-ng unavailable: %s", error)
    if voices := festival_voices():
        engines["festival"] = voices
    if voices := flite_voices():
        engines["flite"] = voices
    return engines


def shard_arrays(utterances: list[Utterance]) -> dict[str, np.ndarray]:
    """The npz arrays of one shard (see the module docstring)."""
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
        "motion": np.concatenate([u.motion for u in utterances]).astype(np.float32),
        "offsets": offsets,
        "emotion": np.stack([u.emotion for u in utterances]).astype(np.float32),
        "gaze": np.stack([u.gaze for u in utterances]).astype(np.float32),
        "distance": np.array([u.distance for u in utterances], dtype=np.float32),
        "meta": np.array(json.dumps([u.meta for u in utterances], ensure_ascii=False)),
    }


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
        buffer = io.BytesIO()
        np.savez(buffer, **shard_arrays(pending))
        storage.write_bytes(join_uri(out, name), buffer.getvalue())
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
        "articulation_gain": ARTICULATION_GAIN,
        **({"recordings": {**(recorded_from or {}), "copies": copies}} if recordings is not None else {}),
        "rest_press": REST.target[MOUTH_CHANNELS.index("lip_press")],
        "effort_floor": EFFORT_FLOOR,
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
    storage.write_bytes(join_uri(out, "summary.json"), json.dumps(summary, indent=2, ensure_ascii=False).encode())
    return summary


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
        buffer = io.BytesIO()
        np.savez(buffer, **shard)
        storage.write_bytes(join_uri(uri, name), buffer.getvalue())
    summary["articulation_gain"] = ARTICULATION_GAIN
    summary["rest_press"] = REST.target[MOUTH_CHANNELS.index("lip_press")]
    summary["effort_floor"] = EFFORT_FLOOR
    storage.write_bytes(join_uri(uri, "summary.json"), json.dumps(summary, indent=2, ensure_ascii=False).encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output prefix (local path or s3:// URI)")
    parser.add_argument("--hours", type=float, default=None, help="hours of speech to build")
    parser.add_argument("--retarget", action="store_true",
                        help="rewrite the mouth targets of the corpus already under --out (no new speech)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-utterances", type=int, default=200, help="utterances per shard (~)")
    parser.add_argument("--recordings", type=Path, default=None,
                        help="folder of recorded speech to use instead of synthesis (see jobs/recordings.py)")
    parser.add_argument("--transcripts", type=Path, default=None, help="transcript list of --recordings ('name: text' lines)")
    parser.add_argument("--language", default="en",
                        help="espeak-ng code of the recordings' language: en is aligned with pocketsphinx, "
                             "others with espeak-ng + DTW (workers/audio/align.py)")
    parser.add_argument("--copies", type=int, default=2, help="differently augmented copies of each recording")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="NAME",
                        help="recordings to leave out (names as in --transcripts), e.g. the source of a benchmark clip")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.retarget:
        summary = retarget(args.out)
        print(f"retargeted {len(summary['shards'])} shards (articulation gain {summary['articulation_gain']})")
        return 0
    if args.recordings:
        if not args.transcripts:
            parser.error("--recordings needs --transcripts")
        from core.errors import BadInputError
        from core.languages import check_language, is_english
        from jobs.recordings import find_recordings, read_transcripts
        from workers.audio.phonemes import in_dictionary

        try:
            args.language = check_language(args.language)
        except BadInputError as error:
            parser.error(str(error))
        recordings, left_out = find_recordings(args.recordings, read_transcripts(args.transcripts),
                                               known_word=in_dictionary if is_english(args.language) else None,
                                               exclude=frozenset(args.exclude), language=args.language)
        if not recordings:
            raise SystemExit(f"no usable recording under {args.recordings} ({dict(left_out)})")
        summary = build(args.out, None, args.seed, args.shard_utterances, progress=not args.no_progress,
                        recordings=recordings, copies=args.copies,
                        recorded_from={"folder": str(args.recordings), "transcripts": str(args.transcripts),
                                       "language": args.language, "used": len(recordings), "left_out": dict(left_out)})
    elif args.hours is None:
        parser.error("--hours (synthesised speech) or --recordings is required to build a corpus")
    else:
        summary = build(args.out, args.hours, args.seed, args.shard_utterances, progress=not args.no_progress)
    print(f"corpus: {summary['hours']:.3f} h, {summary['utterances']} utterances, {len(summary['shards'])} shards "
          f"in {summary['build_seconds']:.0f} s ({summary['realtime_factor']:.1f}x real time), "
          f"skipped {sum(summary['skipped'].values())}")
    for key in ("engines", "languages", "voices", "augmentations"):
        print(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in summary[key].items()))
    if "recordings" in summary:
        print(f"  recordings: {summary['recordings']['used']} used x {summary['recordings']['copies']} copies, left out: "
              + ", ".join(f"{k}={v}" for k, v in summary["recordings"]["left_out"].items()))
    if summary["unknown_phones"]:
        print("  unknown phones: " + ", ".join(f"{k!r}={v}" for k, v in summary["unknown_phones"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
