"""workers.quality.streaming between tracked frames: patches calibrated on the Face Mesh frames
recover per-frame mouth motion that the tracked frames alone cannot see.

Real data: frames of the shared webcam clip rearranged into a mouth rhythm the test chooses.
The patches on their own (drawn faces with known blinks): test_patches.py. The render-level
check (patch opening against every-frame Face Mesh on a real render) is in test_batch_qc.py,
beside the render it needs.
"""

from __future__ import annotations

import numpy as np

from workers.quality.measure import _pearson
from workers.quality.qc import BATCH_STRIDE
from workers.quality.streaming import StreamingQC


def test_mouth_rhythm_and_lag_are_recovered_between_tracked_frames(webcam):
    """A mouth that opens for 3 frames every 11 (real frames of the webcam clip: 414-418 wide
    open, 421-424 closed, the head still) against speech that starts each opening 2 frames
    earlier: the batch's per-frame opening follows the rhythm on the frames Face Mesh skips,
    and lip sync finds the 2-frame lag."""
    frames, fps = webcam
    t = np.arange(120)
    rhythm = ((t - 2) % 11 < 3).astype(float)
    opened, closed = frames[414:419], frames[421:425]
    clip = np.stack([opened[i % 5] if on else closed[i % 4] for i, on in enumerate(rhythm)])
    level_db = -45.0 + 40.0 * np.r_[rhythm[2:], [0.0, 0.0]]     # the sound leads the mouth by 2 frames

    stream = StreamingQC(fps, BATCH_STRIDE, patches=True, flicker_every=BATCH_STRIDE)
    stream.add(clip)
    result = stream.finish(level_db=level_db, audio_seconds=len(clip) / fps)
    skipped = np.ones(len(clip), bool)
    skipped[::BATCH_STRIDE] = False
    assert _pearson(result.opening[skipped], rhythm[skipped]) > 0.95      # measured 0.99
    m = result.metrics
    assert m["lipsync_lag_frames"] == 2 and m["lipsync_r"] > 0.9          # measured 0.99
    assert m["opening_patch_r"] > 0.95 and m["tracked_frames"] == 15
    # opened frames read ~0.45 mouth widths on Face Mesh, closed ones ~0.02
    assert np.nanmedian(result.opening[rhythm == 1]) > 0.3 and np.nanmedian(result.opening[rhythm == 0]) < 0.06
