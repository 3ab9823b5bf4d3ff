"""Blinks per render, counted on the rendered frames of a portrait without glasses.

Grace Hopper's glasses hide her lids from Face Mesh (test_face_model's xfail), so the blink
rate of a render is measured on Eileen Collins; at 512 px her eyes are tall enough for
``talkfarm eval`` to see a blink (at 256 px they are ~10 px and most blinks read 0)."""

from __future__ import annotations

import pytest

from core.schemas import RenderControls, RenderRequest
from pipeline.render import LocalRenderer
from workers.decoder.renderer import DecoderConfig
from workers.quality.qc import evaluate


@pytest.mark.slow
@pytest.mark.parametrize("motion", ["diffusion", "procedural"])
def test_every_render_blinks_at_a_human_rate(shared_assets, tmp_path, motion):
    portrait = shared_assets / "face_astronaut_eileen_collins.png"
    audio = shared_assets / "speech_librivox_austen_7s.wav"
    out = tmp_path / f"{motion}.mp4"
    result = LocalRenderer(DecoderConfig(device="cpu")).render(
        RenderRequest(id=motion, image=str(portrait), audio=str(audio), output=str(out),
                      controls=RenderControls(motion=motion, size=512)))
    assert result.status == "done", result
    metrics = evaluate(out, audio, portrait).metrics
    # People blink 10-30 times a minute in conversation; 7.1 s holds 2-3 such blinks.
    assert 10.0 <= metrics["blinks_per_minute"] <= 30.0, metrics["blinks_per_minute"]
