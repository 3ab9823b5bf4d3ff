"""The synthetic training corpus: real engines, real features, shards the trainer can read."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jobs.corpus import augment, engines, targets
from jobs.corpus.build import build
from jobs.corpus.shards import retarget
from workers.audio.espeak import Espeak, events_to_phones
from workers.face.latents import DYN_SLICE, DYNAMICS, MOTION_DIM
from workers.motion.articulation import (
    CLASSES,
    MOUTH_CHANNELS,
    Phone,
    bilabial_centre_frames,
    classify,
)

needs_espeak = pytest.mark.skipif(not Espeak.installed(), reason="libespeak-ng.so.1 not installed")
HOURS, SEED = 0.02, 1
JAW = DYN_SLICE.start + DYNAMICS.index("jaw_open")
PRESS = DYN_SLICE.start + DYNAMICS.index("lip_press")


def load_shards(root) -> tuple[dict, list[dict]]:
    summary = json.loads((root / "summary.json").read_text())
    shards = []
    for name in summary["shards"]:
        with np.load(root / name) as z:
            shards.append({k: z[k] for k in z.files})
    return summary, shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    build(str(root), HOURS, SEED, shard_utterances=8, progress=False)
    return root, *load_shards(root)


@needs_espeak
def test_shard_layout(corpus):
    root, summary, shards = corpus
    assert summary["seed"] == SEED and summary["fps"] == 25.0
    assert summary["hours"] >= HOURS and summary["utterances"] == sum(len(s["offsets"]) - 1 for s in shards)
    assert sorted(p.name for p in root.glob("shard-*.npz")) == summary["shards"]
    assert len(shards) >= 2
    for s in shards:
        assert set(s) == {"log_mel", "energy_db", "pitch_hz", "voicing", "band_energy_db", "clean_energy_db", "motion",
                          "offsets", "emotion", "gaze", "distance", "meta", "whisper_states"}
        offsets = s["offsets"]
        frames, utts = int(offsets[-1]), len(offsets) - 1
        assert offsets.dtype == np.int64 and offsets[0] == 0 and np.all(np.diff(offsets) > 0)
        for name, shape in (("log_mel", (frames, 80)), ("energy_db", (frames,)), ("pitch_hz", (frames,)),
                            ("voicing", (frames,)), ("band_energy_db", (frames, 4)), ("clean_energy_db", (frames,)),
                            ("whisper_states", (frames, 384))):
            assert s[name].dtype == np.float16 and s[name].shape == shape, name
        assert s["motion"].dtype == np.float32 and s["motion"].shape == (frames, MOTION_DIM)
        assert s["emotion"].dtype == np.float32 and s["emotion"].shape == (utts, len(DYNAMICS))
        assert s["gaze"].dtype == np.float32 and s["gaze"].shape == (utts, 2)
        assert s["distance"].dtype == np.float32 and s["distance"].shape == (utts,)
        assert np.all((s["distance"] >= 0.8) & (s["distance"] <= 1.25))
        nan_rows = np.isnan(s["gaze"]).all(axis=1)
        assert np.all(nan_rows | ~np.isnan(s["gaze"]).any(axis=1))
        assert np.all(np.abs(s["gaze"][~nan_rows]) <= [20, 12])
        assert np.all(np.isfinite(s["motion"])) and np.all(np.isfinite(s["log_mel"].astype(np.float32)))
        meta = json.loads(str(s["meta"]))
        assert len(meta) == utts
        for k, m in enumerate(meta):
            n = offsets[k + 1] - offsets[k]
            assert n == max(1, round(m["seconds"] * 25))
            assert {"engine", "voice", "language", "text", "augmentations", "seconds", "phones"} <= set(m)
            # Head pose relative to a frontal source; log_scale = log(distance).
            pose = s["motion"][offsets[k]:offsets[k + 1], :6]
            assert np.all(np.abs(pose[:, :3]) <= 8.0 + 1e-4)
            assert np.allclose(pose[:, 5], np.log(s["distance"][k]), atol=1e-5)


@needs_espeak
def test_engines_and_languages(corpus):
    _, summary, shards = corpus
    available = engines.available_engines()
    assert len(summary["engines"]) >= min(2, len(available))
    assert set(summary["engines"]) <= set(available)
    assert len(summary["languages"]) >= 3
    assert sum(summary["engines"].values()) == summary["utterances"]


@needs_espeak
def test_phones_inside_audio_and_lips_follow_them(corpus):
    _, _, shards = corpus
    bilabial_checked = 0
    open_jaw, closed_jaw = [], []
    for s in shards:
        offsets, motion = s["offsets"], s["motion"]
        for k, m in enumerate(json.loads(str(s["meta"]))):
            phones = [Phone(*p) for p in m["phones"]]
            assert phones, m["text"]
            starts = [p.start_s for p in phones]
            assert starts == sorted(starts)
            for p in phones:
                assert 0.0 <= p.start_s < p.end_s <= m["seconds"] + 1e-3
            n = offsets[k + 1] - offsets[k]
            clip = motion[offsets[k]:offsets[k + 1]]
            emotion = s["emotion"][k]
            jaw = clip[:, JAW] - emotion[DYNAMICS.index("jaw_open")]
            press = clip[:, PRESS] - emotion[DYNAMICS.index("lip_press")]
            frames = bilabial_centre_frames(phones, n, 25.0, alphabet=m["alphabet"])
            for f in frames:
                assert press[f] >= 0.9 and jaw[f] <= 0.1, (m["voice"], f)
            bilabial_checked += len(frames)
            closed_jaw += [jaw[f] for f in frames]
            for p in phones:
                if classify(p.symbol, m["alphabet"]) == ["open"] and p.end_s - p.start_s >= 0.08:
                    open_jaw.append(jaw[min(n - 1, int(0.5 * (p.start_s + p.end_s) * 25))])
    assert bilabial_checked >= 20 and len(open_jaw) >= 10
    assert np.mean(open_jaw) > np.mean(closed_jaw) + 0.3


@needs_espeak
def test_same_seed_same_arrays(corpus, tmp_path):
    _, _, shards = corpus
    build(str(tmp_path), HOURS, SEED, shard_utterances=8, progress=False)
    _, again = load_shards(tmp_path)
    assert len(again) == len(shards)
    for a, b in zip(shards, again):
        for name in a:
            if name == "meta":
                assert str(a[name]) == str(b[name])
            else:
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@needs_espeak
def test_retarget_rewrites_the_mouth_as_a_fresh_build_does(corpus, tmp_path, monkeypatch):
    root, _, shards = corpus
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    # With the viseme model's own amplitude and rest the mouth changes and nothing else does ...
    monkeypatch.setattr(targets, "ARTICULATION_GAIN", 1.0)
    monkeypatch.setattr(targets, "REST", CLASSES["silence"])
    assert retarget(str(copy))["articulation_gain"] == 1.0
    _, plain = load_shards(copy)
    mouth = [DYN_SLICE.start + DYNAMICS.index(name) for name in MOUTH_CHANNELS]
    others = np.setdiff1d(np.arange(MOTION_DIM), mouth)
    for built, redone in zip(shards, plain):
        for name in built:
            if name == "meta":
                assert str(built[name]) == str(redone[name])
            elif name != "motion":
                np.testing.assert_array_equal(built[name], redone[name], err_msg=name)
        np.testing.assert_array_equal(built["motion"][:, others], redone["motion"][:, others])
        offsets = built["offsets"]
        for k, m in enumerate(json.loads(str(built["meta"]))):
            n = offsets[k + 1] - offsets[k]
            phones = [Phone(*p) for p in m["phones"]]
            expected = targets.articulated_mouth(phones, n, m["alphabet"], built["clean_energy_db"][offsets[k]:offsets[k + 1]]) + \
                built["emotion"][k][[DYNAMICS.index(c) for c in MOUTH_CHANNELS]]
            np.testing.assert_allclose(redone["motion"][offsets[k]:offsets[k + 1]][:, mouth], expected, atol=1e-5)
        assert np.abs(built["motion"][:, JAW] - redone["motion"][:, JAW]).mean() > 0.02
    # ... and back at the build's gain it gives the build's targets again (phone times are
    # stored to 0.1 ms, so a frame at a phone boundary may differ a little).
    monkeypatch.undo()
    retarget(str(copy))
    _, again = load_shards(copy)
    for built, redone in zip(shards, again):
        difference = np.abs(built["motion"] - redone["motion"])
        assert difference.mean() < 1e-4 and difference.max() < 0.05


@needs_espeak
def test_espeak_phoneme_events():
    engine = Espeak.get()
    samples, events = engine.synth_isolated("Bob bought a map.", "en-us", 175, 50, 50, seed=0)
    assert engine.sample_rate == 22050 and samples.dtype == np.float32 and len(samples) > 0.5 * 22050
    names = [n for _, n in events if n]
    assert names == ["b", "ɑː", "b", "b", "ɔː", "t", "ɐ", "m", "æ", "p"]
    times = [t for t, _ in events]
    assert times == sorted(times) and 0 <= times[0] < 0.1 and times[-1] <= len(samples) / 22050 + 1e-3
    phones = events_to_phones(events, len(samples) / 22050)
    assert [p.symbol for p in phones if p.symbol != "_"] == names
    # A slower rate stretches the same phones.
    slow, slow_events = engine.synth_isolated("Bob bought a map.", "en-us", 120, 50, 50, seed=0)
    assert len(slow) > 1.2 * len(samples) and [n for _, n in slow_events if n] == names


@pytest.mark.skipif(shutil.which("festival") is None or not engines.festival_voices(), reason="festival not installed")
def test_festival_segments(tmp_path):
    rng = np.random.default_rng(3)
    synth = engines.synth_festival(rng, engines.festival_voices(), tmp_path)
    assert synth.alphabet == "arpabet" and synth.language == "en"
    assert synth.phones[0].symbol == "pau" and len(synth.phones) > 10
    duration = len(synth.wave) / 16000
    assert all(0 <= p.start_s < p.end_s <= duration for p in synth.phones)


@pytest.mark.skipif(not engines.flite_voices(), reason="flite not installed")
def test_flite_aligned(tmp_path):
    synth = engines.synth_flite(np.random.default_rng(5), ["slt"], tmp_path)
    assert synth.alphabet == "arpabet" and len(synth.phones) > 10
    assert all(p.symbol.isupper() for p in synth.phones)
    duration = len(synth.wave) / 16000
    assert all(0 <= p.start_s < p.end_s <= duration for p in synth.phones)


def test_augment_and_pitch_shift():
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32)
    shifted = augment.pitch_shift(wave, 1.1)
    assert abs(len(shifted) - round(16000 / 1.1)) <= 2
    for _ in range(20):
        out, applied = augment.augment(wave, rng)
        assert out.shape == wave.shape and out.dtype == np.float32 and np.all(np.abs(out) <= 1.0)


def test_pauses_around_the_speech_and_a_breath_before_it():
    rng = np.random.default_rng(0)
    speech = (0.3 * np.sin(2 * np.pi * 180 * np.arange(16000) / 16000)).astype(np.float32)
    phones = [Phone("a", 0.1, 0.9)]
    seen = set()
    for _ in range(60):
        wave, moved, applied = augment.add_pauses(speech, phones, rng)
        lead = moved[0].start_s - 0.1
        n_lead = int(round(lead * 16000))
        assert lead >= 0 and moved[0].end_s - moved[0].start_s == pytest.approx(0.8)
        np.testing.assert_array_equal(wave[n_lead:n_lead + len(speech)], speech)
        assert not wave[n_lead + len(speech):].any()              # the trailing pause is silent
        breath = wave[:n_lead]
        if any(a.startswith("breath") for a in applied):
            seen.add("breath")
            level_db = float(applied[-1].removeprefix("breath=").removesuffix("dB"))
            active = breath[np.abs(breath) > 0]
            # Quieter than the speech by about the drawn level, and over before the speech.
            power_db = 10 * np.log10(np.mean(active ** 2) / np.mean(speech ** 2))
            assert level_db - 4 < power_db < level_db + 4
            assert not breath[-int(0.03 * 16000):].any()
        else:
            assert not breath.any()
        seen.add("lead" if n_lead else "none")
    assert seen == {"breath", "lead", "none"}


def test_louder_speech_opens_the_jaw_wider():
    """The same phones with the speech 20 dB quieter in their second half: the jaw opens less there,
    never below EFFORT_FLOOR of its extent, and the lip closures and the rest are untouched."""
    phones = [Phone(symbol, 0.2 + 0.2 * k, 0.4 + 0.2 * k) for k, symbol in enumerate(["AA", "M", "AA", "AA", "M", "AA"])]
    n = 40
    level = np.full(n, -80.0)
    level[5:25], level[25:35] = -20.0, -40.0
    flat = targets.articulated_mouth(phones, n, "arpabet", np.where(level > -80, -20.0, -80.0))
    mouth = targets.articulated_mouth(phones, n, "arpabet", level)
    jaw = MOUTH_CHANNELS.index("jaw_open")
    np.testing.assert_allclose(mouth[:25, jaw], flat[:25, jaw], atol=1e-6)   # at the speech level: unchanged
    quiet = slice(27, 33)
    assert np.all(mouth[quiet, jaw] < 0.7 * flat[quiet, jaw])
    assert np.all(mouth[quiet, jaw] >= targets.EFFORT_FLOOR * flat[quiet, jaw] - 1e-6)
    np.testing.assert_array_equal(mouth[:, MOUTH_CHANNELS.index("lip_press")], flat[:, MOUTH_CHANNELS.index("lip_press")])
