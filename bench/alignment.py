"""Transcript alignment accuracy: synthesized speech with known phone times, real recordings.

    .venv/bin/python bench/alignment.py [--assets ../shared/assets]

1. Synthesized speech in six languages from voices the aligner does not use (espeak-ng Klatt
   and whisper variants at other rates and pitches, festival's HTS voice cmu_us_slt_arctic
   for English), with 0.5 s of leading silence and light noise; the engines' own phone
   times are the truth. Per language: median |phone start error| in ms and the share within
   50 ms, confidence with the right text and with another sentence (rejected below
   MIN_CONFIDENCE). Phones of the two sequences are paired by viseme class
   (difflib on ``workers.motion.articulation.classify``), so IPA and ARPAbet compare.
2. Real English recordings with their known text (LibriVox, CMU ARCTIC a0007 / a0009):
   agreement of the espeak + DTW aligner with pocketsphinx, confidences right / wrong text.
3. Time to align the 28 s Spanish clip.

Prints a Markdown section; paste it into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers.audio.align import MIN_CONFIDENCE, align  # noqa: E402
from workers.audio.decode import load_audio  # noqa: E402
from workers.audio.espeak import synthesize, to_16k  # noqa: E402
from workers.motion.articulation import Phone, classify  # noqa: E402

LEAD_S = 0.5
SYNTHETIC = {
    # language: (reference voice, rate wpm, pitch, [sentences], wrong sentence)
    "es": ("es+klatt3", 140, 30, ["Mañana comemos paella con mis primos en la playa de Valencia.",
                                  "Para escuchar sus mensajes, oprima uno; para borrar, oprima siete."],
           "Los perros ladran toda la noche cuando llueve sobre el tejado viejo."),
    "de": ("de+klatt4", 200, 60, ["Mein Papa baut ein Boot am Bodensee, und wir fahren mit dem Bus nach München.",
                                  "Bitte bring mir morgen früh den blauen Ball und die Milch mit."],
           "Unser Hund schläft den ganzen Tag im warmen Wohnzimmer."),
    "fr": ("fr+klatt3", 150, 40, ["Le petit garçon mange une pomme dans le jardin de sa mère.",
                                  "Nous partirons demain matin pour visiter le musée de Bordeaux."],
           "Il fait très froid en hiver dans les montagnes du nord."),
    "it": ("it+klatt4", 130, 35, ["Il mio babbo compra il pane e la frutta al mercato ogni mattina.",
                                  "Domani andiamo al mare con i bambini e la nonna."],
           "La scuola chiude alle quattro del pomeriggio durante l'estate."),
    "pt-br": ("pt-br+whisper", 160, 50, ["Amanhã vamos almoçar com os primos na praia do Rio.",
                                         "Meu pai comprou um barco bonito para pescar no lago."],
              "O gato dorme o dia inteiro em cima do sofá da sala."),
}
ENGLISH = (["Bob bought a map and maybe more apples at the market.",
            "Please remember to bring the purple umbrella tomorrow morning."],
           "The river flows quietly through the old stone village.")
REAL = {
    "speech_librivox_austen_7s.wav": None,  # text from the .txt beside it
    # CMU ARCTIC prompts a0007 / a0009 (also what pocketsphinx decodes from these files).
    "speech_cmu_arctic_a0007_4s.wav": "And you always want to see it in the superlative degree.",
    "speech_cmu_arctic_a0009_3s.wav": "He turned sharply, and faced Gregson across the table.",
}
WRONG_EN = "Please pass the big blue book to Bobby before the bus leaves the station."


def _key(symbol: str) -> str:
    parts = classify(symbol)
    return parts[0] if parts else "?"


def paired_errors_ms(reference: list[Phone], aligned: list[Phone], offset_s: float = 0.0) -> np.ndarray:
    """|start difference| of phones paired by viseme-class sequence alignment, in ms."""
    ref = [p for p in reference if _key(p.symbol) != "silence"]
    hyp = [p for p in aligned if _key(p.symbol) != "silence"]
    matcher = difflib.SequenceMatcher(None, [_key(p.symbol) for p in ref], [_key(p.symbol) for p in hyp],
                                      autojunk=False)
    errors = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            errors.append(abs(hyp[block.b + k].start_s - (ref[block.a + k].start_s + offset_s)) * 1000.0)
    return np.array(errors)


def _with_lead(wave: np.ndarray, seed: int) -> np.ndarray:
    lead = np.zeros(int(LEAD_S * 16000), np.float32)
    wave = np.concatenate([lead, wave.astype(np.float32), lead[:4000]])
    return wave + np.random.default_rng(seed).standard_normal(len(wave)).astype(np.float32) * 0.003


def festival_slt(text: str, workdir: Path) -> tuple[np.ndarray, list[Phone]]:
    """cmu_us_slt_arctic_hts speech + its Segment relation (ARPAbet, times in s)."""
    wav = workdir / "slt.wav"
    script = workdir / "slt.scm"
    quoted = '"' + text.replace('"', '\\"') + '"'
    script.write_text(f"(voice_cmu_us_slt_arctic_hts)\n(set! utt (SynthText {quoted}))\n"
                      f"(utt.save.wave utt \"{wav}\" 'riff)\n"
                      "(mapcar (lambda (s) (format t \"SEG\\t%s\\t%f\\n\" (item.name s) (item.feat s \"end\")))"
                      " (utt.relation.items utt 'Segment))\n")
    out = subprocess.run(["festival", "--batch", str(script)], capture_output=True, text=True, timeout=120).stdout
    import wave as wavmod

    with wavmod.open(str(wav), "rb") as handle:
        rate = handle.getframerate()
        samples = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768.0
    phones, start = [], 0.0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == "SEG":
            end = float(parts[2])
            if end > start and parts[1] != "pau":
                phones.append(Phone(parts[1], start, end))
            start = max(start, end)
    return to_16k(samples, rate), phones


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    args = parser.parse_args(argv)
    assets = Path(args.assets)
    lines = ["| language | reference voice | method | phones paired | median error ms | within 50 ms "
             "| confidence right text | confidence wrong text |", "|---|---|---|---:|---:|---:|---:|---:|"]
    all_err: list[float] = []
    rejected, wrong_total = 0, 0
    seconds = []
    for language, (voice, rate, pitch, sentences, wrong) in SYNTHETIC.items():
        errs, confs, wrong_confs = [], [], []
        for k, text in enumerate(sentences):
            synth, ref = synthesize(text, voice, rate_wpm=rate, pitch=pitch, seed=11 + k)
            wave = _with_lead(synth, k)
            started = time.perf_counter()
            result = align(wave, text, language)
            seconds.append(time.perf_counter() - started)
            errs.extend(paired_errors_ms(ref, result.phones, LEAD_S))
            confs.append(result.confidence)
            wrong_confs.append(align(wave, wrong, language).confidence)
        errs = np.array(errs)
        all_err.extend(errs)
        rejected += sum(c < MIN_CONFIDENCE for c in wrong_confs)
        wrong_total += len(wrong_confs)
        lines.append(f"| {language} | espeak-ng {voice} {rate} wpm | espeak-dtw | {len(errs)} | {np.median(errs):.0f} "
                     f"| {np.mean(errs < 50):.0%} | {min(confs):.2f}-{max(confs):.2f} "
                     f"| {min(wrong_confs):.2f}-{max(wrong_confs):.2f} |")
        print(lines[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        en_cases = [festival_slt(text, Path(tmp)) for text in ENGLISH[0]]
    for method in ("pocketsphinx", "dtw"):
        errs, confs, wrong_confs = [], [], []
        for k, (text, (synth, ref)) in enumerate(zip(ENGLISH[0], en_cases)):
            wave = _with_lead(synth, 20 + k)
            result = align(wave, text, "en", method=method)
            errs.extend(paired_errors_ms(ref, result.phones, LEAD_S))
            confs.append(result.confidence)
            wrong_confs.append(align(wave, ENGLISH[1], "en", method=method).confidence)
        errs = np.array(errs)
        if method == "pocketsphinx":
            all_err.extend(errs)
            rejected += sum(c < MIN_CONFIDENCE for c in wrong_confs)
            wrong_total += len(wrong_confs)
        lines.append(f"| en | festival cmu_us_slt_arctic_hts | {result.method} | {len(errs)} | {np.median(errs):.0f} "
                     f"| {np.mean(errs < 50):.0%} | {min(confs):.2f}-{max(confs):.2f} "
                     f"| {min(wrong_confs):.2f}-{max(wrong_confs):.2f} |")
        print(lines[-1], flush=True)
    all_err = np.array(all_err)
    lines.append(f"\nAll synthesized languages (pocketsphinx for English): median error {np.median(all_err):.0f} ms, "
                 f"{np.mean(all_err < 50):.0%} within 50 ms; wrong text rejected {rejected}/{wrong_total}; "
                 f"alignment of a 3-6 s sentence {np.median(seconds):.2f} s median.")
    lines += ["", "| real recording | words | pocketsphinx vs DTW: phones paired | median difference ms | within 50 ms "
              "| confidence right text | confidence wrong text |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, text in REAL.items():
        wave = load_audio(assets / name)
        text = text or (assets / name).with_suffix(".txt").read_text().strip()
        sphinx = align(wave, text, "en", method="pocketsphinx")
        dtw = align(wave, text, "en", method="dtw")
        diff = paired_errors_ms(sphinx.phones, dtw.phones)
        wrong = align(wave, WRONG_EN, "en").confidence
        lines.append(f"| {name} | {len(text.split())} | {len(diff)} | {np.median(diff):.0f} | {np.mean(diff < 50):.0%} "
                     f"| {sphinx.confidence:.2f} | {wrong:.2f} |")
        print(lines[-1], flush=True)
    spanish = load_audio(assets / "speech_asterisk_esMX_allison_28s_8k.wav")
    long_text = " ".join((SYNTHETIC["es"][3] + [SYNTHETIC["es"][4]]) * 3)
    started = time.perf_counter()
    result = align(spanish, long_text, "es")
    lines.append(f"\nAligning the 28.4 s Spanish clip (8 kHz source) against 28 s of unrelated Spanish text: "
                 f"{time.perf_counter() - started:.1f} s, confidence {result.confidence:.2f} (rejected: "
                 f"{result.confidence < MIN_CONFIDENCE}).")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
