"""Transcript-aware lip sync on rendered video: the same render with and without the text.

    .venv/bin/python bench/transcript.py [--size 256] [--assets ../shared/assets]

English: the shared real recordings with their known text (LibriVox, CMU ARCTIC a0007 /
a0009), measured exactly as ``talkfarm eval --transcript`` (``workers.quality.qc.evaluate``:
pocketsphinx phones of the text, lips on P/B/M, open vowels, articulation contrast).
Other languages: speech synthesized by espeak-ng voices the system was not tuned on (Klatt
variants +klatt3 / +klatt4, absent from the training corpus and from the aligner); the
same frame measurements (``evaluate`` + ``phone_articulation``) on the synthesis's own,
exact phone times (bilabial class -> P/B/M, open / open-rounded vowels -> open vowels).
Transcript "none" renders recognise the speech (Whisper, ``workers.audio.recognise``) and
align what they heard; "yes" renders are given the text. One wrong-text render checks the
fallback. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import wave as wavmod
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.schemas import RenderControls, RenderRequest  # noqa: E402
from pipeline.render import LocalRenderer  # noqa: E402
from workers.audio.espeak import synthesize  # noqa: E402
from workers.decoder.renderer import DecoderConfig  # noqa: E402
from workers.motion.articulation import classify  # noqa: E402
from workers.quality.measure import phone_articulation  # noqa: E402
from workers.quality.qc import evaluate  # noqa: E402

ENGLISH = {
    "speech_librivox_austen_7s.wav": None,
    "speech_cmu_arctic_a0007_4s.wav": "And you always want to see it in the superlative degree.",
    "speech_cmu_arctic_a0009_3s.wav": "He turned sharply, and faced Gregson across the table.",
}
OTHER = {
    "es": ("es+klatt4", 150, "Mi mamá me mima mucho. Pablo bebe un poco de agua y se va a la playa a pasear."),
    "de": ("de+klatt3", 170, "Mein Papa baut ein Boot am Bodensee. Bitte bring mir morgen die blauen Blumen mit."),
}
WRONG = "Please pass the big blue book to Bobby before the bus leaves the station."


class _P:
    def __init__(self, phone, start_s, end_s):
        self.phone, self.start_s, self.end_s = phone, start_s, end_s


def _measure_labels(phones):
    """Reference IPA phones -> objects phone_articulation reads (P for bilabials, AA for open vowels)."""
    out = []
    for p in phones:
        parts = classify(p.symbol)
        label = "P" if parts and parts[0] == "bilabial" else "AA" if parts and parts[0] in ("open", "open_rounded") else "X"
        out.append(_P(label, p.start_s, p.end_s))
    return out


def _write_wav(path: Path, wave: np.ndarray) -> None:
    with wavmod.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--image", default="face_grace_hopper.jpg")
    args = parser.parse_args(argv)
    assets = Path(args.assets)
    runner = LocalRenderer(DecoderConfig(device="cpu"))
    tmp = Path(tempfile.mkdtemp(prefix="talkfarm-bench-transcript-"))
    image = str(assets / args.image)
    rows = ["| speech | language | transcript | P/B/M | lips closed on P/B/M | open vowels parted | articulation contrast "
            "| lip-sync r | alignment | render s |", "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]

    def render(name, audio, language, transcript):
        out = tmp / f"{name}.mp4"
        started = time.perf_counter()
        result = runner.render(RenderRequest(id=name, image=image, audio=str(audio), output=str(out),
                                             controls=RenderControls(size=args.size, transcript=transcript,
                                                                     language=language)))
        assert result.status == "done", result
        return out, result, time.perf_counter() - started

    def row(label, language, mode, m, art, result, seconds):
        # Without text the render recognises the speech (workers.audio.recognise).
        heard = result.transcript or {}
        recognised = (f"recognised ({heard.get('confidence', 0.0):.2f}): {heard.get('text', '')[:40]!r}; "
                      if heard.get("source") == "recognised" else "")
        alignment = recognised + ("; ".join(result.warnings) if result.warnings else "used")
        rows.append(f"| {label} | {language} | {mode} | {art['n']} | {art['closed']:.2f} | {art['open']:.2f} "
                    f"| {art['contrast']:.3f} | {m['lipsync_r']:.2f} | {alignment} | {seconds:.1f} |")
        print(rows[-1], flush=True)

    for name, text in ENGLISH.items():
        text = text or (assets / name).with_suffix(".txt").read_text().strip()
        for mode, transcript in (("none", None), ("yes", text)):
            out, result, seconds = render(f"{Path(name).stem}_{mode}", assets / name, "en", transcript)
            m = evaluate(out, assets / name, transcript=text).metrics
            art = {"n": m["bilabials"], "closed": m["bilabial_closed_fraction"], "open": m["open_vowel_open_fraction"],
                   "contrast": m["articulation_contrast"]}
            row(name.removeprefix("speech_").removesuffix(".wav"), "en", mode, m, art, result, seconds)
    for language, (voice, rate, text) in OTHER.items():
        wave, phones = synthesize(text, voice, rate_wpm=rate, pitch=45, seed=5)
        lead = np.zeros(8000, np.float32)
        wave = np.concatenate([lead, wave, lead])
        wave = wave + np.random.default_rng(0).standard_normal(len(wave)).astype(np.float32) * 0.002
        audio = tmp / f"{language}.wav"
        _write_wav(audio, wave)
        labels = [_P(p.phone, p.start_s + 0.5, p.end_s + 0.5) for p in _measure_labels(phones)]
        for mode, transcript in (("none", None), ("yes", text)):
            out, result, seconds = render(f"{language}_{mode}", audio, language, transcript)
            qc = evaluate(out, audio)
            pa = phone_articulation(qc.opening, labels, qc.metrics["fps"])
            art = {"n": pa.bilabials, "closed": pa.bilabial_closed_fraction, "open": pa.open_vowel_open_fraction,
                   "contrast": pa.contrast}
            row(f"espeak-ng {voice} {rate} wpm", language, mode, qc.metrics, art, result, seconds)
    name = "speech_librivox_austen_7s.wav"
    out, result, seconds = render("wrong_text", assets / name, "en", WRONG)
    text = (assets / name).with_suffix(".txt").read_text().strip()
    m = evaluate(out, assets / name, transcript=text).metrics
    art = {"n": m["bilabials"], "closed": m["bilabial_closed_fraction"], "open": m["open_vowel_open_fraction"],
           "contrast": m["articulation_contrast"]}
    row("librivox_austen_7s", "en", "wrong text", m, art, result, seconds)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
