"""Rendered lips on real speech no training run has heard: the default against procedural.

    .venv/bin/python bench/rendered_heldout.py --set choose|confirm|codec2 [--pocketsphinx DIR] [--size 256]
        [--portrait face_astronaut_eileen_collins.png] [--viseme-weight W] [--modes ...] [--keep DIR [--reuse]]

Every clip is rendered through the product (``pipeline.render.LocalRenderer``) and measured on
the frames as ``talkfarm eval --transcript TRUE_TEXT`` does (``workers.quality.qc.evaluate``):
articulation contrast (median opening on open vowels minus on p / b / m), the share of p / b / m
with closed lips, and lip r (mouth opening against the loudness envelope, best lag). Four
renders per clip, all seed 0 (``--seed N`` for another):

* ``default``: ``--motion diffusion`` with no text, as a user gets it: the speech is recognised
  (Whisper) and the recognised words' visemes shape the mouth;
* ``diffusion+text``: the true text given (the with-transcript level);
* ``procedural audio-only``: ``--motion procedural --no-recognise`` (the hand rules alone, the
  baseline the issue first compared against);
* ``procedural+recognised``: ``--motion procedural`` with no text: the same recognised
  transcript as the default (recognition is deterministic), so the two differ only in the
  generator under the visemes.

Two sets of voices that are in no corpus; settings are chosen on ``choose`` and confirmed on
``confirm``:

* ``choose``: the eight channel names of Debian's alsa-utils (/usr/share/sounds/alsa, one
  speaker) and the five "cards" prompts of pocketsphinx 5.1.1's sdist (``test/data/cards``,
  another speaker; "ten of clubs", "eight of spades ...");
* ``confirm``: the shared clips with known text (LibriVox 0870, CMU ARCTIC a0007 / a0009) and
  the four other LibriVox prompts of the pocketsphinx sdist (``test/data/librivox`` 0880-0930).

* ``codec2`` (round 5; chosen before any tuning; one gain range's results on it were seen
  before the last sweep, BENCHMARKS.md issue 19 round 5): five Harvard-sentence recordings
  in Debian's ``codec2-examples`` 1.0.5-1 (``/usr/share/codec2/wav``; LGPL-2.1, David Rowe;
  sha256 of the .deb 7af8cd12...), speakers in no corpus. Their text: the Harvard sentence
  where it is one (IEEE 1969 lists), else what Whisper tiny.en and base both heard
  (big_dog, morig; their true words may differ).

* ``allison`` (round 6, a tuning set with long p / b / m-rich prompts, which ``choose`` lacks):
  the held-out tenth of Allison Smith's English asterisk prompts (``jobs/recordings.py``;
  Debian ``asterisk-core-sounds-en-g722``) of 2.5 s and more, their text from the package's
  transcript list. A known voice (the other nine tenths are in the motion corpus), so it tunes,
  never confirms.
* ``codec2-new`` (round 6, never looked at before the round's settings were fixed): the two
  other Harvard-style sentences of ``codec2-examples`` (cross, forig); text = what Whisper
  tiny.en and base heard (forig: base's, tiny.en heard "Belt" for "Don't").

* ``ps-other`` (round 6, never looked at before the round's settings were fixed): the other
  speech files of the same pocketsphinx 5.1.1 sdist (``test/data``: goforward, something,
  forever/input_2_16k, forever/input_4_16k; the ``.raw`` ones are 16 kHz 16-bit mono, given a
  WAV header); text = what Whisper base heard (tiny.en agrees but on goforward, which it
  repeats to its token limit).

``--noise-db D`` (round 7, a tuning stress test): every clip gets seeded white noise D dB under
its speech level (its 95th-percentile 40 ms frame) before it is rendered and measured, a noise
floor like that of the 64 kb/s LibriVox readings (-21 .. -33 dB), where a level threshold no
longer finds the pauses.

``--pocketsphinx DIR``: the sdist's ``test/data`` folder (``pip download`` the sdist, unpack).
``--codec2 DIR``: the package's ``wav`` folder (``apt-get download codec2-examples``,
``dpkg-deb -x``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
MODES = ("default", "diffusion+text", "procedural audio-only", "procedural+recognised", "diffusion audio-only")
KEYS = ("articulation_contrast", "bilabial_closed_fraction", "lipsync_r")


def choose_set(pocketsphinx: Path) -> list[tuple[Path, str]]:
    clips = [(p, p.stem.replace("_", " ").lower()) for p in sorted(ALSA_SOUNDS.glob("*_*.wav"))]
    cards = pocketsphinx / "cards"
    if (cards / "cards.transcription").is_file():
        for line in (cards / "cards.transcription").read_text().splitlines():
            text, _, name = line.replace("<s>", "").replace("</s>", "").rpartition("(")
            clips.append((cards / f"{name.strip(') ')}.wav", " ".join(text.split())))
    return clips


def confirm_set(pocketsphinx: Path, assets: Path) -> list[tuple[Path, str]]:
    from bench.speech import KNOWN_TEXT

    clips = []
    for name, text in KNOWN_TEXT.items():
        path = assets / name
        if path.is_file() and (text or path.with_suffix(".txt").is_file()):
            clips.append((path, text or path.with_suffix(".txt").read_text().strip()))
    for wav in sorted((pocketsphinx / "librivox").glob("*.wav")):
        if wav.stem.endswith("0870"):        # the shared LibriVox clip, already in the list
            continue
        clips.append((wav, wav.with_suffix(".txt").read_text().strip()))
    return clips


CODEC2_TEXT = {
    "hts1a": "The Navy attacked the big task force.",
    "hts2a": "These days a chicken leg is a rare dish.",
    "big_dog": "The big dog left it to you on the old rag doll.",     # tiny.en = base
    "mmt1": "It's easy to tell the depth of a well.",
    "morig": "That frog jumped through the weeds.",      # not a Harvard sentence: tiny.en = base
}


def codec2_set(folder: Path, texts: dict[str, str] | None = None) -> list[tuple[Path, str]]:
    texts = CODEC2_TEXT if texts is None else texts
    return [(folder / f"{name}.wav", text) for name, text in texts.items() if (folder / f"{name}.wav").is_file()]


CODEC2_NEW_TEXT = {
    "cross": "They took the cross-town bus.",          # tiny.en = base
    "forig": "Don't throw trash on the street.",       # base (tiny.en: "Belt throw ...")
}
PS_OTHER_TEXT = {
    "goforward": "Go forward ten meters.",
    "something": "Go somewhere and do something.",
    "input_2_16k": "Feels like these days go on forever.",
    "input_4_16k": "Feels like these days go on forever.",
}
ALLISON_MIN_SECONDS = 2.5


def ps_other_set(folder: Path) -> list[tuple[Path, str]]:
    paths = {p.stem: p for p in sorted(folder.rglob("*.wav"))}
    return [(paths[name], text) for name, text in PS_OTHER_TEXT.items() if name in paths]


def allison_set() -> list[tuple[Path, str]]:
    from bench.motion_heldout import ASTERISK_SOUNDS, asterisk_transcripts
    from jobs.recordings import find_recordings, read_transcripts
    from workers.audio.decode import load_audio
    from workers.audio.phonemes import in_dictionary

    transcripts = asterisk_transcripts("en")
    if not transcripts.is_file():
        return []
    held_out, _ = find_recordings(ASTERISK_SOUNDS, read_transcripts(transcripts), held_out=True, known_word=in_dictionary)
    return [(r.path, " ".join(r.text.replace("...", " ").split())) for r in held_out
            if len(load_audio(r.path)) >= ALLISON_MIN_SECONDS * 16000]


def controls_of(mode: str, text: str, size: int, guidance: float | None = None, seed: int = 0) -> dict:
    if guidance is not None and mode in ("default", "diffusion+text", "diffusion audio-only"):
        return _controls(mode, text, size) | dict(audio_guidance=guidance, seed=seed)
    return _controls(mode, text, size) | dict(seed=seed)


class _Reused:
    """A render kept from an earlier run (--reuse): done, with the transcript its provenance records."""

    status = "done"

    def __init__(self, video: Path):
        import json

        provenance = video.with_name(video.name + ".provenance.json")
        record = json.loads(provenance.read_text()) if provenance.is_file() else {}
        self.transcript = record.get("transcript")


def with_noise(path: Path, noise_db: float, folder: Path, seed: int = 0) -> Path:
    """``path`` at 16 kHz with seeded white noise ``noise_db`` dB re its speech level (the
    95th-percentile RMS of its 40 ms frames), written into ``folder`` under the same stem."""
    from scipy.io import wavfile

    from workers.audio.decode import load_audio

    wave = load_audio(path, 16000).astype(np.float64)
    frames = wave[: len(wave) // 640 * 640].reshape(-1, 640)
    speech_rms = float(np.percentile(np.sqrt((frames ** 2).mean(axis=1)), 95))
    noisy = wave + np.random.default_rng(seed).standard_normal(len(wave)) * speech_rms * 10 ** (noise_db / 20)
    out = folder / f"{path.stem}.wav"
    wavfile.write(out, 16000, (np.clip(noisy, -1, 1) * 32767).astype(np.int16))
    return out


def _controls(mode: str, text: str, size: int) -> dict:
    return {
        "default": dict(motion="diffusion"),
        "diffusion+text": dict(motion="diffusion", transcript=text),
        "procedural audio-only": dict(motion="procedural", recognise=False),
        "procedural+recognised": dict(motion="procedural"),
        "diffusion audio-only": dict(motion="diffusion", recognise=False),
    }[mode] | dict(size=size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("choose", "confirm", "codec2", "codec2-new", "allison", "ps-other"), required=True)
    parser.add_argument("--codec2", default="/work/data19r5/codec2/usr/share/codec2/wav")
    parser.add_argument("--pocketsphinx", default="/work/data19r3/pocketsphinx")
    parser.add_argument("--ps-other", default="/work/data19r6/ps/pocketsphinx-5.1.1/test/data",
                        help="the sdist's test/data with its .raw files given a WAV header (--set ps-other)")
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--portrait", default="face_astronaut_eileen_collins.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--modes", nargs="*", default=list(MODES[:4]), choices=MODES)
    parser.add_argument("--audio-guidance", type=float, default=None,
                        help="lambda_A of the diffusion renders (a sweep; default: the render default)")
    parser.add_argument("--only", nargs="*", default=None, help="clip names (stems) to render")
    parser.add_argument("--viseme-weight", type=float, default=None,
                        help="override workers.motion.visemes.VISEME_WEIGHT (a sweep; default: the shipped value)")
    parser.add_argument("--seed", type=int, default=0, help="render seed (motion sampling, head, blinks)")
    parser.add_argument("--noise-db", type=float, default=None,
                        help="add white noise this many dB re the clip's speech level (e.g. -28; a stress test)")
    parser.add_argument("--limit", type=int, default=0, help="first N clips only")
    parser.add_argument("--keep", default=None, help="keep the renders in this folder (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the renders already in --keep again instead of rendering (a change of the measure)")
    args = parser.parse_args(argv)

    from core.errors import BadInputError
    from core.schemas import RenderControls, RenderRequest
    from pipeline.render import LocalRenderer
    from workers.decoder.renderer import DecoderConfig
    from workers.motion import visemes
    from workers.quality.qc import evaluate

    if args.viseme_weight is not None:
        visemes.VISEME_WEIGHT = args.viseme_weight
    pocketsphinx, assets = Path(args.pocketsphinx), Path(args.assets)
    clips = {"choose": lambda: choose_set(pocketsphinx), "confirm": lambda: confirm_set(pocketsphinx, assets),
             "codec2": lambda: codec2_set(Path(args.codec2)),
             "codec2-new": lambda: codec2_set(Path(args.codec2), CODEC2_NEW_TEXT), "allison": allison_set,
             "ps-other": lambda: ps_other_set(Path(args.ps_other))}[args.set]()
    clips = clips[: args.limit] if args.limit else clips
    clips = [c for c in clips if args.only is None or c[0].stem in args.only]
    portrait = assets / args.portrait
    runner = LocalRenderer(DecoderConfig(device="cpu"))
    print("| clip | mode | heard | contrast | P/B/M (n) closed | lip r | render s |\n|---|---|---|---:|---:|---:|---:|")
    values: dict[str, dict[str, list[float]]] = {m: {k: [] for k in KEYS} for m in args.modes}
    with tempfile.TemporaryDirectory(prefix="talkfarm-rendered-heldout-") as scratch:
        folder = args.keep or scratch
        Path(folder).mkdir(parents=True, exist_ok=True)
        for path, text in clips:
            if args.noise_db is not None:
                path = with_noise(path, args.noise_db, Path(scratch))
            for mode in args.modes:
                out = Path(folder) / f"{path.stem}_{mode.replace(' ', '_').replace('+', '_')}.mp4"
                started = time.perf_counter()
                if args.reuse and out.is_file():
                    result = _Reused(out)
                else:
                    result = runner.render(RenderRequest(id=out.stem, image=str(portrait), audio=str(path), output=str(out),
                                                         controls=RenderControls(**controls_of(mode, text, args.size,
                                                                                               args.audio_guidance, args.seed))))
                seconds = time.perf_counter() - started
                if result.status != "done":
                    print(f"| {path.stem} | {mode} | failed: {result.error_stage}: {result.error_message} |")
                    for k in KEYS:
                        values[mode][k].append(float("nan"))
                    continue
                try:
                    m = evaluate(out, path, portrait, text).metrics
                except BadInputError as error:         # the eval's aligner refused the text
                    print(f"| {path.stem} | {mode} | not measured: {error} |")
                    for k in KEYS:
                        values[mode][k].append(float("nan"))
                    continue
                heard = result.transcript or {}
                said = (f"{heard.get('text', '')!r} ({heard.get('confidence', 0):.2f}, {heard.get('source')}"
                        f"{'' if heard.get('used', True) else ', not used'})" if heard else "-")
                for k in KEYS:
                    v = m.get(k)
                    values[mode][k].append(float(v) if v is not None else float("nan"))
                contrast, closed, r = (values[mode][k][-1] for k in KEYS)
                print(f"| {path.stem} | {mode} | {said} | {contrast:.3f} | {m.get('bilabials', 0)} "
                      f"{closed:.2f} | {r:.2f} | {seconds:.1f} |", flush=True)
    print("\n| mode | clips | contrast mean | P/B/M closed mean | lip r mean |\n|---|---:|---:|---:|---:|")
    for mode, by_key in values.items():
        cells = " | ".join(f"{np.nanmean(by_key[k]):.3f}" if np.isfinite(by_key[k]).any() else "-" for k in KEYS)
        print(f"| {mode} | {len(by_key[KEYS[0]])} | {cells} |")
    if "default" in values:
        print("\n| default against | measure | clips above / equal / below |\n|---|---|---|")
        for base in ("procedural audio-only", "procedural+recognised", "diffusion+text"):
            if base not in values:
                continue
            for k in KEYS:
                tally = [0, 0, 0]
                for ours, theirs in zip(values["default"][k], values[base][k]):
                    if np.isfinite(ours) and np.isfinite(theirs):
                        tally[0 if ours > theirs + 1e-9 else 1 if ours >= theirs - 1e-9 else 2] += 1
                print(f"| {base} | {k} | {tally[0]} / {tally[1]} / {tally[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
