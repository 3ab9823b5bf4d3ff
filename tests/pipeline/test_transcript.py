"""Transcript-aware lip sync through the in-process renderer and the CLI (real speech)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.schemas import RenderControls, RenderRequest
from core.task import RenderTask
from pipeline.manifest import ManifestRow
from workers.audio.stage import AudioFeatureStage

WRONG_TEXT = "Please pass the big blue book to Bobby before the bus leaves the station."


@pytest.fixture(scope="module")
def librivox(shared_assets):
    return (shared_assets / "speech_librivox_austen_7s.wav",
            (shared_assets / "speech_librivox_austen_7s.txt").read_text().strip())


@pytest.fixture(scope="module")
def runner():
    from pipeline.render import LocalRenderer
    from workers.decoder.renderer import DecoderConfig

    run = LocalRenderer(DecoderConfig(device="cpu"))
    return run


def test_recognised_transcript_closes_lips_like_a_given_one(runner, librivox, shared_assets, tmp_path):
    """Without text the speech is recognised and its words shape the lips; the measures are
    taken against the true text."""
    from workers.quality.qc import evaluate

    audio, text = librivox
    metrics, results = {}, {}
    for name, transcript in (("recognised", None), ("given", text)):
        request = RenderRequest(id=name, image=str(shared_assets / "face_grace_hopper.jpg"), audio=str(audio),
                                output=str(tmp_path / f"{name}.mp4"),
                                controls=RenderControls(size=256, transcript=transcript))
        results[name] = result = runner.render(request)
        assert result.status == "done" and result.warnings == [], result
        metrics[name] = evaluate(result.output, audio, transcript=text).metrics
        sidecar = json.loads((tmp_path / f"{name}.mp4.provenance.json").read_text())
        assert sidecar["transcript"] == result.transcript
    assert results["recognised"].render_id != results["given"].render_id
    given, recognised = results["given"].transcript, results["recognised"].transcript
    assert given == {"text": text, "source": "given", "language": "en"}
    assert recognised["source"] == "recognised" and recognised["used"] and recognised["confidence"] >= 0.7
    assert "dashwood" in recognised["text"].lower()
    assert "speech_recognition" in results["recognised"].model_versions
    assert "speech_recognition" not in results["given"].model_versions        # a given transcript wins
    for name, measured in metrics.items():
        assert measured["bilabials"] >= 5, name
        assert measured["bilabial_closed_fraction"] >= 0.8, (name, measured)
    assert metrics["recognised"]["articulation_contrast"] >= 0.8 * metrics["given"]["articulation_contrast"], metrics


def test_text_that_does_not_match_falls_back_with_a_manifest_warning(librivox, shared_assets):
    audio, _ = librivox
    request = RenderRequest(id="wrong", image=str(shared_assets / "face_grace_hopper.jpg"), audio=str(audio),
                            output="/tmp/unused.mp4", controls=RenderControls(size=256, transcript=WRONG_TEXT))
    task = RenderTask(request)
    AudioFeatureStage()([task])
    assert task.failure is None and task.phones is None
    assert task.transcript_alignment.used is False and task.transcript_alignment.confidence < 0.18
    assert any("does not match the audio" in w for w in task.warnings), task.warnings
    # The given text wins: the speech is not recognised in its place.
    assert task.transcript.to_json() == {"text": WRONG_TEXT, "source": "given", "language": "en"}
    assert "speech_recognition" not in task.model_versions

    row = ManifestRow.from_result("job", request, task.result())
    assert any("lip sync from the audio only" in w for w in row.warnings)
    assert json.loads(row.transcript_json) == {"text": WRONG_TEXT, "source": "given", "language": "en"}


def test_recognition_can_be_turned_off(shared_assets):
    audio = shared_assets / "speech_cmu_arctic_a0009_3s.wav"
    request = RenderRequest(id="quiet", image=str(shared_assets / "face_grace_hopper.jpg"), audio=str(audio),
                            output="/tmp/unused.mp4", controls=RenderControls(size=256, recognise=False))
    task = RenderTask(request)
    AudioFeatureStage()([task])
    assert task.failure is None and task.transcript is None and task.phones is None
    assert "speech_recognition" not in task.model_versions and task.audio.speech_probability is not None


def test_transcript_and_language_batch_columns(tmp_path):
    from pipeline.request_files import parse_request_rows

    rows = [{"id": "a", "image": "i.jpg", "audio": "a.wav", "transcript": "Hola, ¿qué tal?", "language": "es"},
            {"id": "b", "image": "i.jpg", "audio": "a.wav", "transcript": "hi", "language": "xx"}]
    parsed = parse_request_rows(enumerate(rows, start=2), str(tmp_path))
    (request, _), = parsed.valid
    assert request.controls.transcript == "Hola, ¿qué tal?" and request.controls.language == "es"
    (invalid,) = parsed.invalid
    assert invalid.request_id == "b" and "unsupported language code 'xx'" in invalid.message


def _talkfarm(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("extra, expected", [
    (["--language", "xx", "--transcript", "hello"], "--language: unsupported language code 'xx'"),
    (["--transcript", "missing_line.txt"], "transcript file not found"),
])
def test_cli_bad_transcript_input_is_one_line_exit_2(extra, expected, librivox, shared_assets, tmp_path):
    audio, _ = librivox
    output = tmp_path / "out.mp4"
    done = _talkfarm("render", "--image", str(shared_assets / "face_grace_hopper.jpg"), "--audio", str(audio),
                     "-o", str(output), "--size", "128", *extra)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("talkfarm: error: ") and expected in lines[0], lines[0]
    assert not output.exists()
