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
