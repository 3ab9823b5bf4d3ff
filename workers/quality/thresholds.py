"""The limits a render's QC metrics are checked against, and the flags that name what broke them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class QualityThresholds:
    """Limits outside which a render is flagged for a human to look at.

    Defaults sit outside the range measured on the real webcam clip AND on good talkfarm
    renders (workers/quality/README.md), so a flag means "unlike both real video and our usual output".

    Attributes:
        min_face_found: share of tracked frames with a face (0.95): losing the face on more
            than 1 frame in 20 means a broken render (face melted, off-frame, black frames).
        min_lipsync_r: best-lag Pearson r of mouth opening vs audio envelope (0.30). Good
            renders: 0.5-0.7; audio shifted by 1 s or a frozen mouth: < 0.2.
        max_abs_lag_frames: |best lag| (3 frames = 120 ms at 25 fps): more is visible A/V offset.
        min_silence_closed: share of silent frames with a closed mouth (0.5), only checked
            with >= min_silent_frames (5) silent frames.
        min_bilabial_closed / min_open_vowel_open: with a transcript, share of P/B/M phones
            whose lips close (0.5) / open vowels whose lips part (0.5).
        min_head_motion / max_head_motion: deg per frame (0.03 / 2.0). Below: a frozen head
            (tracker noise alone reads ~0.1); above: shaking (real webcam: 0.45).
        max_head_range / min_head_range: deg, largest p95-p5 span of yaw/pitch/roll (30 / 1.5,
            the minimum on clips >= 2 s). A frozen picture reads ~0.9 (tracking-mode Face Mesh
            wobbles on identical frames: 0.18 deg/frame, so head motion alone cannot tell),
            the real webcam clip 2.4-24 per 4.8 s window, renders 4-10.
        min_opening_range: mouth opening p95 - p05 (0.03 mouth widths): a mouth that never
            moves (frozen picture: 0.002; renders 0.1-0.3; real clip 0.43).
        min_blinks_per_minute / max_blinks_per_minute: (2 / 60), only checked on clips of at
            least min_blink_seconds (12 s): a 4 s clip may hold no blink.
        max_identity_drift_pct: median face-shape residual vs the portrait, % inter-ocular
            distance (8): real re-tracking of a moving head reads 2-3.
        max_jitter_pct_iod: high-frequency non-rigid landmark motion, % IOD per frame (1.5).
        max_flicker_grey: mean abs frame-to-frame luma change outside the mouth (4 grey levels).
        max_duration_mismatch_s: |video - audio| seconds (0.1 = 2.5 frames at 25 fps).
    """

    min_face_found: float = 0.95
    min_lipsync_r: float = 0.30
    max_abs_lag_frames: int = 3
    min_silence_closed: float = 0.5
    min_silent_frames: int = 5
    min_bilabial_closed: float = 0.5
    min_open_vowel_open: float = 0.5
    min_head_motion: float = 0.03
    max_head_motion: float = 2.0
    max_head_range: float = 30.0
    min_head_range: float = 1.5
    min_opening_range: float = 0.03
    min_blinks_per_minute: float = 2.0
    max_blinks_per_minute: float = 60.0
    min_blink_seconds: float = 12.0
    max_identity_drift_pct: float = 8.0
    max_jitter_pct_iod: float = 1.5
    max_flicker_grey: float = 4.0
    max_duration_mismatch_s: float = 0.1

    def flags(self, report) -> list[str]:
        """Human-readable reasons this render is out of range ([] = nothing to look at).

        Args:
            report: a :class:`QCResult` or its ``metrics`` dict. Missing / NaN metrics are
                not flagged (not measured), except that no face at all is.
        """
        m = dict(report) if isinstance(report, Mapping) else report.metrics

        def val(key):
            value = m.get(key)
            return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value

        out: list[str] = []

        def low(key, limit, fmt="{:.2f}"):
            value = val(key)
            if value is not None and value < limit:
                out.append(f"{key} {fmt.format(value)} < {fmt.format(limit)}")

        def high(key, limit, fmt="{:.2f}"):
            value = val(key)
            if value is not None and value > limit:
                out.append(f"{key} {fmt.format(value)} > {fmt.format(limit)}")

        if val("face_found_fraction") is None and m.get("frames"):
            out.append("face_found_fraction not measured")
        low("face_found_fraction", self.min_face_found)
        if (val("lipsync_r") is None and val("audio_seconds") and (val("face_found_fraction") or 0) > 0):
            out.append("lipsync_r undefined (mouth or audio never moves)")
        low("lipsync_r", self.min_lipsync_r)
        lag = val("lipsync_lag_frames")
        if lag is not None and abs(lag) > self.max_abs_lag_frames:
            out.append(f"lipsync_lag_frames {lag:+d} beyond +-{self.max_abs_lag_frames}")
        if (val("silent_frames") or 0) >= self.min_silent_frames:
            low("silence_closed_fraction", self.min_silence_closed)
        if val("bilabials"):
            low("bilabial_closed_fraction", self.min_bilabial_closed)
        if val("open_vowels"):
            low("open_vowel_open_fraction", self.min_open_vowel_open)
        low("head_motion_deg_per_frame", self.min_head_motion, "{:.3f}")
        high("head_motion_deg_per_frame", self.max_head_motion, "{:.3f}")
        high("head_range_deg", self.max_head_range, "{:.1f}")
        if (val("video_seconds") or 0) >= 2.0:
            low("head_range_deg", self.min_head_range, "{:.1f}")
        if val("audio_seconds"):
            low("opening_range", self.min_opening_range, "{:.3f}")
        if (val("video_seconds") or 0) >= self.min_blink_seconds:
            low("blinks_per_minute", self.min_blinks_per_minute, "{:.1f}")
            high("blinks_per_minute", self.max_blinks_per_minute, "{:.1f}")
        high("identity_drift_pct", self.max_identity_drift_pct, "{:.1f}")
        high("jitter_pct_iod", self.max_jitter_pct_iod)
        high("flicker_grey", self.max_flicker_grey)
        mismatch = val("duration_mismatch_s")
        if mismatch is not None and abs(mismatch) > self.max_duration_mismatch_s:
            out.append(f"duration_mismatch_s {mismatch:+.2f} beyond +-{self.max_duration_mismatch_s:.2f}")
        return out


DEFAULT_THRESHOLDS = QualityThresholds()


def flags(report, thresholds: QualityThresholds | None = None) -> list[str]:
    """``(thresholds or QualityThresholds()).flags(report)``."""
    return (thresholds or DEFAULT_THRESHOLDS).flags(report)


__all__ = ["QualityThresholds", "DEFAULT_THRESHOLDS", "flags"]
