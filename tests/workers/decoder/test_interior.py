"""Real mouth-interior detail for what a photo never showed (workers/decoder/interior.py).

The atlas is real data with a recorded source and licence per exemplar; a closed-mouth photo's
opened mouth, rendered, varies along the mouth like a real interior instead of reading as
smooth painted bands (measured with texture_along_mouth on the rendered pixels)."""

from __future__ import annotations

import numpy as np

from pipeline.preview import save_contact_sheet
from workers.decoder.interior import ATLAS_JSON, TEXELS, load_atlas, texture_along_mouth
from workers.decoder.renderer import FaceRenderer
from workers.face.latents import dyn_index

# Portraits bench/mouth.py holds out from tuning: none of them may give the atlas detail.
HELD_OUT = ("grace_hopper", "biden", "obama_standing", "frame125", "frame200", "frame300")
# Texture along the mouth (texture_along_mouth) that flat paint does not reach: Grace Hopper's
# half-open frame read 0.0157 painted, 0.019 with the atlas; the bench's real open-mouth photos
# read 0.015 (a blurred dark webcam O) to 0.041.
MIN_TEXTURE = 0.0175


def test_every_exemplar_is_real_recorded_and_not_held_out():
    import json

    meta = json.loads(ATLAS_JSON.read_text())
    details, openings = load_atlas()
    assert details.shape == (len(meta["exemplars"]), *TEXELS) and len(openings) == len(details)
    for record in meta["exemplars"]:
        assert record["source"] and record["licence"], record
        assert not any(name in record["name"] for name in HELD_OUT), record["name"]
    # Detail only (zero-mean high-pass), with real structure in it.
    assert np.abs(details.mean(axis=(1, 2))).max() < 0.05
    assert details.std(axis=(1, 2)).min() > 0.03


def test_a_closed_mouth_opened_varies_along_the_mouth_like_a_real_one(aligned_grace, detector, test_output):
    """Grace Hopper's photo shows no teeth or interior: her half- and wide-open frames are all
    synthesis. Along the mouth they vary more than the smooth painted bands did (half open
    0.0157 before the atlas, 0.019 with it; wide open 0.027 and 0.031)."""
    rows = np.repeat(aligned_grace.model.source_latent[None], 2, 0).astype(np.float32)
    rows[:, dyn_index("jaw_open")] = [0.35, 0.85]
    frames = FaceRenderer(aligned_grace).render(rows)
    save_contact_sheet(list(frames), test_output / "decoder_interior_grace.png", columns=2, tile=384)
    for frame in frames:
        texture = texture_along_mouth(frame, detector.detect(frame)[0].landmarks)
        assert texture is not None and texture >= MIN_TEXTURE, texture
