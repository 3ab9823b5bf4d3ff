"""Transcript-aware lip sync through the in-process runner and the CLI (real speech)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.manifest import ManifestRow
from pipeline.schemas import RenderControls, RenderRequest
from pipeline.task import RenderTask
from workers.audio.stage import AudioFeatureStage

WRONG_TEXT = "Please pass the big blue book to Bobby before the bus leaves the station."


@pytest.fixture(scope="module")
def librivox(shared_assets):
    return (shared_assets / "speech_librivox_austen_7s.wav",
            (shared_assets / "speech_librivox_austen_7s.txt").read_text().strip())


@pytest.fixture(scope="module")
def runner():
    from pipeline.runner import InProcessRunner
    from workers.decoder.renderer import DecoderConfig

    run = InProcessRunner(DecoderConfig(device="cpu"))
    run.setup()
    return run


def test_transcript_closes_lips_and_raises_articulation_contrast(runner, librivox, shared_assets, tmp_path):
    from workers.quality.qc import evaluate

    audio, text = librivox
    metrics, ids = {}, {}
    for name, transcript in (("audio_only", None), ("transcript", text)):
        request = RenderRequest(id=name, image=str(shared_assets / "face_grace_hopper.jpg"), audio=str(audio),
                                output=str(tmp_path / f"{name}.mp4"),
                                controls=RenderControls(size=256, transcript=transcript))
        result = runner.render(request)
        assert result.status == "done" and result.warnings == [], result
        ids[name] = result.render_id
        metrics[name] = evaluate(result.output, audio, transcript=text).metrics
    assert ids["audio_only"] != ids["transcript"]
    with_text, without = metrics["transcript"], metrics["audio_only"]
    assert with_text["bilabials"] >= 5
    assert with_text["bilabial_closed_fraction"] >= 0.8
    assert with_text["articulation_contrast"] > without["articulation_contrast"], (with_text, without)


def test_text_that_does_not_match_falls_back_with_a_manifest_warning(librivox, shared_assets):
    audio, _ = librivox
    request = RenderRequest(id="wrong", image=str(shared_assets / "face_grace_hopper.jpg"), audio=str(audio),
                            output="/tmp/unused.mp4", controls=RenderControls(size=256, transcript=WRONG_TEXT))
    task = RenderTask(request)
    AudioFeatureStage()([task])
    assert task.failure is None and task.phones is None
    assert task.alignment["used"] is False and task.alignment["confidence"] < 0.18
    assert any("does not match the audio" in w for w in task.warnings), task.warnings
    from pipeline.runner import result_of

    row = ManifestRow.from_result("job", request, result_of(task))
    assert any("lip sync from the audio only" in w for w in row.warnings)


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
