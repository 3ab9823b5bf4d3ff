"""workers.quality.thresholds: what each limit flags, on metric dicts."""

from __future__ import annotations

from workers.quality.thresholds import QualityThresholds, flags


def test_thresholds_on_metric_dicts():
    ok = {"frames": 100, "face_found_fraction": 1.0, "lipsync_r": 0.6, "lipsync_lag_frames": -1,
          "audio_seconds": 4.0, "video_seconds": 4.0, "duration_mismatch_s": 0.0, "head_motion_deg_per_frame": 0.3,
          "head_range_deg": 5.0, "identity_drift_pct": 3.0, "jitter_pct_iod": 0.4, "flicker_grey": 1.0,
          "silent_frames": 10, "silence_closed_fraction": 0.9, "blinks_per_minute": 0.0}
    assert flags(ok) == []                                      # 4 s: no blink check
    bad = dict(ok, lipsync_lag_frames=5, identity_drift_pct=12.0, duration_mismatch_s=0.5,
               silence_closed_fraction=0.1, video_seconds=20.0, face_found_fraction=0.5)
    keys = {f.split(" ")[0] for f in flags(bad)}
    assert keys == {"lipsync_lag_frames", "identity_drift_pct", "duration_mismatch_s", "silence_closed_fraction",
                    "blinks_per_minute", "face_found_fraction"}
    assert flags(dict(ok, lipsync_r=0.5), QualityThresholds(min_lipsync_r=0.55)) == ["lipsync_r 0.50 < 0.55"]
    assert flags(dict(ok, lipsync_r=None)) == ["lipsync_r undefined (mouth or audio never moves)"]
