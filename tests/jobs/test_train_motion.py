"""Training on several corpora at once: merged shards, merged summary, a short run that exports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from jobs import train_motion as tm
from jobs.corpus.build import build
from workers.audio.espeak import Espeak

pytestmark = pytest.mark.skipif(not Espeak.installed(), reason="libespeak-ng.so.1 not installed")


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    build(str(root / "a"), 0.004, seed=3, shard_utterances=3, progress=False)
    build(str(root / "b"), 0.004, seed=4, shard_utterances=3, progress=False)
    return root / "a", root / "b"


def test_corpora_load_as_one(two_corpora):
    a, b = two_corpora
    one, other = tm.load_corpus(str(a)), tm.load_corpus(str(b))
    both = tm.load_corpus([str(a), str(b)])
    assert len(both.offsets) - 1 == (len(one.offsets) - 1) + (len(other.offsets) - 1)
    assert np.array_equal(both.motion, np.concatenate([one.motion, other.motion]))
    assert np.array_equal(both.lengths, np.concatenate([one.lengths, other.lengths]))
    assert both.summary["utterances"] == one.summary["utterances"] + other.summary["utterances"]
    assert both.summary["hours"] == pytest.approx(one.summary["hours"] + other.summary["hours"], abs=1e-3)
    engines = {k: one.summary["engines"].get(k, 0) + other.summary["engines"].get(k, 0)
               for k in set(one.summary["engines"]) | set(other.summary["engines"])}
    assert both.summary["engines"] == dict(sorted(engines.items()))
    assert [p["seed"] for p in both.summary["parts"]] == [3, 4]


def test_corpora_with_other_mouth_recipes_are_refused(two_corpora, tmp_path):
    a, b = two_corpora
    changed = tmp_path / "changed"
    shutil.copytree(b, changed)
    summary = json.loads((changed / "summary.json").read_text())
    summary["articulation_gain"] = 1.0
    (changed / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match="articulation_gain"):
        tm.load_corpus([str(a), str(changed)])


def test_short_run_on_two_corpora_exports_a_checkpoint(two_corpora, tmp_path):
    a, b = two_corpora
    # The process's own thread count: a test must not change it for the tests after it.
    small = ["--width", "32", "--layers", "1", "--heads", "2", "--window", "20", "--context", "4", "--overlap", "2",
             "--threads", str(torch.get_num_threads())]
    assert tm.main(["--corpus", str(a), str(b), "--run", str(tmp_path / "run"), "--steps", "3", "--batch", "4",
                    "--export", str(tmp_path / "export"), *small]) == 0
    meta = json.loads((tmp_path / "export" / "motion-diffusion.json").read_text())
    assert meta["training"]["steps"] == 3 and len(meta["corpus"]["parts"]) == 2
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    # Fine-tuning from that checkpoint records which one it started from.
    assert tm.main(["--corpus", str(a), "--run", str(tmp_path / "tune"), "--steps", "1", "--batch", "4",
                    "--init", str(tmp_path / "export"), "--export", str(tmp_path / "tuned"), *small]) == 0
    tuned = json.loads((tmp_path / "tuned" / "motion-diffusion.json").read_text())
    assert tuned["training"]["initialised_from"] == meta["version"] != tuned["version"]


def test_a_model_from_before_the_whisper_states_is_widened_without_changing_its_output():
    """--init from a checkpoint that reads the 98 acoustic columns: the widened model predicts
    exactly what the old one did until training gives the Whisper columns weight."""
    from workers.motion.conditioning import CUES_MODEL_DIM, MODEL_AUDIO_DIM
    from workers.motion.diffusion import DiffusionConfig, MotionTransformer

    config = DiffusionConfig(width=32, layers=1, heads=2, window=20, context=4, overlap=2)
    torch.manual_seed(0)
    old = MotionTransformer(config, audio_dim=CUES_MODEL_DIM).eval()
    for block in old.blocks:                        # adaLN-zero starts at zero: make the blocks act
        torch.nn.init.normal_(block.modulation.weight, std=0.05)
    new = MotionTransformer(config).eval()
    new.audio_mean.normal_()
    new.audio_std.uniform_(0.5, 2.0)
    tm.load_widened(new, old)
    assert new.audio_dim == MODEL_AUDIO_DIM and new.audio_in[0].weight.shape[1] == MODEL_AUDIO_DIM
    # The corpus's standardisation is kept for the new columns; the old ones read as before.
    new.audio_mean[:CUES_MODEL_DIM], new.audio_std[:CUES_MODEL_DIM] = old.audio_mean, old.audio_std
    generator = torch.Generator().manual_seed(1)
    b, k, w = 2, config.context, config.window
    inputs = dict(noisy=torch.randn(b, w, 20, generator=generator), t=torch.tensor([10, 500]),
                  audio=torch.randn(b, k + w, MODEL_AUDIO_DIM, generator=generator),
                  previous=torch.randn(b, k, 20, generator=generator), controls=torch.zeros(b, 16),
                  keep_audio=torch.ones(b), keep_previous=torch.ones(b))
    with torch.no_grad():
        assert torch.allclose(new(**inputs), old(**inputs), atol=1e-5)
        inputs["audio"][..., CUES_MODEL_DIM:] *= 3.0      # the Whisper columns do not matter yet
        assert torch.allclose(new(**inputs), old(**inputs), atol=1e-5)
