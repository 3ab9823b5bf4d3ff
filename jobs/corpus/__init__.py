"""The synthetic (speech, motion) training corpus of the motion diffusion model, one module per job.

* ``texts`` -- the sentence lists (``sentences/<language>.txt``) and the text of an utterance;
* ``engines`` -- the three text-to-speech engines (espeak-ng, festival, flite) with phone timings;
* ``augment`` -- noise, reverberation, level, telephone band, pitch shift, pauses and breaths;
* ``targets`` -- the target motion (T, 20) of an utterance, its mouth from the phones;
* ``build`` -- utterances from engines or recordings, augmented, featurised, written as shards;
* ``shards`` -- the shard layout, and ``retarget`` (new mouth targets for a built corpus).

The command line is ``python -m jobs.build_corpus`` (``jobs/build_corpus.py``).
"""

SAMPLE_RATE = 16000
"""Hz of the corpus audio."""
FPS = 25.0
"""Frames per second of the features and the motion."""
