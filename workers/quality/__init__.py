"""Quality measurements of rendered talking-face videos, taken from the video's own frames.

One job per module (imports run down this list, never up):

* ``qc``: the entry points: ``evaluate`` (``talkfarm eval``), ``BatchQC`` (the encoder's QC),
  ``qc_for_batch``, the manifest's quality columns;
* ``streaming``: the measurement itself (``StreamingQC``) and its result (``QCResult``);
* ``thresholds``: the limits and the flags; ``presentation``: metric order, units, formats;
* ``patches``: mouth / eye patches between tracked frames and their per-clip calibration;
* ``flicker``: frame-to-frame luma change outside the mouth;
* ``measure``: mouth opening, audio envelope, lip sync, silences, phones, eyes and blinks;
* ``theval``: THEval-style naturalness: head translation and rotation, brow and lip dynamics,
  the lips in pauses;
* ``geometry``: rigid fits, head rotation and pose, identity drift, jitter;
* ``tracking``: Face Mesh trackers (and their pool) and detectors; ``landmark_wire``: its
  landmark message read from bytes;
* ``frames``: the frames measured (decoded scaled, or scaled in memory);
* ``mouth``: mouth appearance (teeth colour) for the decoder's tests and bench/mouth.py.

Video files are read by ``core.video``. Metrics, units, reference ranges: README.md.
"""
