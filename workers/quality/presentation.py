"""How QC metrics are shown: their order, units, formats and meanings (``talkfarm eval``'s
table, ``talkfarm report``'s page), and which metrics a list of flags names."""

from __future__ import annotations

import math

# (key, unit, format, what it is) in the order the CLI and the report show them.
METRICS = (
    ("face_found_fraction", "share", "{:.2f}", "frames with a face found"),
    ("lipsync_r", "r", "{:.2f}", "mouth opening vs audio envelope, best lag"),
    ("lipsync_lag_frames", "frames", "{:+d}", "best lag (+ = mouth after sound)"),
    ("lipsync_r_lag0", "r", "{:.2f}", "same at lag 0"),
    ("silence_closed_fraction", "share", "{:.2f}", "silent frames with the mouth closed"),
    ("silent_frames", "frames", "{:d}", "silent frames"),
    ("bilabial_closed_fraction", "share", "{:.2f}", "P/B/M phones with closed lips (transcript)"),
    ("open_vowel_open_fraction", "share", "{:.2f}", "open vowels with parted lips (transcript)"),
    ("articulation_target_r", "r", "{:.2f}", "mouth opening vs the opening the phones call for (transcript)"),
    ("opening_p95", "mouth widths", "{:.3f}", "95th percentile mouth opening"),
    ("opening_range", "mouth widths", "{:.3f}", "mouth opening p95 - p05"),
    ("head_motion_deg_per_frame", "deg/frame", "{:.3f}", "mean head rotation per frame"),
    ("head_range_deg", "deg", "{:.1f}", "largest p95-p5 span of yaw / pitch / roll"),
    ("head_translation_pct_iod", "% IOD", "{:.1f}", "face centre movement, std (THEval-style)"),
    ("head_rotation_std_deg", "deg", "{:.2f}", "yaw / pitch / roll std, mean (THEval-style)"),
    ("head_motion_dynamics", "-", "{:.2f}", "THEval's head motion dynamics (deg, % IOD)"),
    ("brow_dynamics", "eye dist/frame", "{:.4f}", "mean brow-to-eye change per frame (THEval)"),
    ("brow_prosody_r", "r", "{:.2f}", "brow height vs audio envelope, best lag"),
    ("lip_dynamics", "x1e-3", "{:.2f}", "variance of lip shape over time (THEval)"),
    ("pause_lip_mad", "eye dist", "{:.4f}", "lip gap MAD in VAD pauses >= 0.3 s (THEval silent lip)"),
    ("blinks_per_minute", "1/min", "{:.1f}", "blink rate"),
    ("identity_drift_pct", "% IOD", "{:.2f}", "face shape vs the portrait (median)"),
    ("jitter_pct_iod", "% IOD/frame", "{:.2f}", "high-frequency landmark motion"),
    ("flicker_grey", "grey levels", "{:.2f}", "frame-to-frame luma change outside the mouth"),
    ("global_flicker_grey", "grey levels", "{:.2f}", "frame-to-frame change of mean luma"),
    ("video_seconds", "s", "{:.2f}", "video duration (frames / fps)"),
    ("audio_seconds", "s", "{:.2f}", "audio duration"),
    ("duration_mismatch_s", "s", "{:+.2f}", "video minus audio"),
    ("qc_seconds", "s", "{:.2f}", "time this measurement took"),
)


def format_metric(key: str, value) -> str:
    """A metric value as text with its METRICS format ("-" when missing / NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    fmt = next((f for k, _, f, _ in METRICS if k == key), "{}")
    try:
        return fmt.format(int(value) if "d}" in fmt else value)
    except (TypeError, ValueError):
        return str(value)


def flagged_keys(flag_list: list[str]) -> set[str]:
    """Metric keys named by flags (their first word)."""
    return {flag.split(" ")[0] for flag in flag_list}


__all__ = ["METRICS", "format_metric", "flagged_keys"]
