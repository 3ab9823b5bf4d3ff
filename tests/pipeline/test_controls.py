"""The render controls are declared once (core.schemas.RenderControls): every field is a
``talkfarm render`` option and a request-file column, read by the same parser, with the
model's own defaults and bounds."""

from __future__ import annotations

import argparse
import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import BadInputError
from core.schemas import RenderControls
from pipeline.cli import build_parser
from pipeline.controls import CONTROLS, _kind, controls_from_args
from pipeline.request_files import (
    REQUEST_COLUMNS,
    parse_request_rows,
    read_request_file,
)

# A value other than the default for every control, as a user writes it on the command line.
# A new RenderControls field must be added here: test_every_field_has_a_test_value says so.
CLI_TEXT = {
    "size": "256", "fps": "30", "seed": "7", "gaze": "10,-5", "distance": "1.2", "emotion": "happy",
    "paste_back": True, "motion": "procedural", "sampling_steps": "3", "audio_guidance": "0.8",
    "gaze_guidance": "1.5", "transcript": "Bob bought a map.", "language": "es", "recognise": False,
}
EXPECTED = RenderControls(size=256, fps=30.0, seed=7, gaze=(10.0, -5.0), distance=1.2, emotion="happy",
                          paste_back=True, motion="procedural", sampling_steps=3, audio_guidance=0.8,
                          gaze_guidance=1.5, transcript="Bob bought a map.", language="es", recognise=False)


def render_args(*options: str) -> argparse.Namespace:
    return build_parser().parse_args(["render", "--image", "i.jpg", "--audio", "a.wav", "-o", "o.mp4", *options])


def cli_options(values: dict) -> list[str]:
    options = []
    for control in CONTROLS:
        if control.name not in values:
            continue
        value = values[control.name]
        if control.kind == "bool":
            options.append(control.flag if value else f"--no-{control.flag[2:]}")
        else:
            options += [control.flag, value]
    return options


def row_cells(values: dict) -> dict[str, str]:
    """The same values as CSV cells: a pair in its two columns, booleans as true/false."""
    cells = {}
    for control in CONTROLS:
        value = values[control.name]
        if control.kind == "pair":
            cells.update(zip(control.columns, value.split(",")))
        else:
            cells[control.name] = str(value).lower() if isinstance(value, bool) else value
    return cells


def test_every_field_has_a_test_value():
    assert set(CLI_TEXT) == set(RenderControls.model_fields)
    for name, value in EXPECTED.model_dump().items():
        assert value != RenderControls.model_fields[name].default, f"{name}: pick a non-default test value"


def test_every_field_is_a_render_option_and_a_request_column():
    render = build_parser()._subparsers._group_actions[0].choices["render"]
    options = {option: action for action in render._actions for option in action.option_strings}
    for name, field in RenderControls.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in options and options[flag].dest == name, flag
        assert field.description and field.description in " ".join(options[flag].help.split()), flag
        if field.annotation is bool:
            assert f"--no-{flag[2:]}" in options, flag
        columns = [column for column in REQUEST_COLUMNS if column == name or column.startswith(name + "_")]
        assert columns, f"{name} is no request-file column"


def test_help_shows_the_models_bounds_and_defaults():
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["render"].format_help().split())
    assert "--sampling-steps N diffusion denoising (DDIM) steps per window (1 to 100; default: 10)" in help_text
    assert "--gaze YAW,PITCH" in help_text and "--no-recognise" in help_text and "--paste-back" in help_text
    assert "neutral, happy, sad, surprised, angry" in help_text


def test_no_option_given_is_the_models_defaults():
    assert controls_from_args(render_args()) == RenderControls()
    row = {"id": "r", "image": "i.jpg", "audio": "a.wav"}
    (request, _), = parse_request_rows(enumerate([row], start=2), "/out").valid
    assert request.controls == RenderControls()


def test_cli_and_row_give_the_same_controls_for_every_field(tmp_path):
    assert controls_from_args(render_args(*cli_options(CLI_TEXT))) == EXPECTED
    cells = {"id": "r1", "image": "i.jpg", "audio": "a.wav", **row_cells(CLI_TEXT)}
    path = tmp_path / "requests.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(cells))
        writer.writeheader()
        writer.writerow(cells)
    parsed = read_request_file(str(path), str(tmp_path / "out"))
    assert parsed.invalid == [] and parsed.ignored_columns == []
    (request, _), = parsed.valid
    assert request.controls == EXPECTED


def test_a_batch_row_sets_sampling_steps_and_guidance_in_every_format(tmp_path):
    rows = [{"id": "steps", "image": "i.jpg", "audio": "a.wav", "sampling_steps": 4, "audio_guidance": 0.0,
             "gaze_guidance": 2.5},
            {"id": "plain", "image": "i.jpg", "audio": "a.wav"}]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    (tmp_path / "r.csv").write_text("id,image,audio,sampling_steps,audio_guidance,gaze_guidance\n"
                                    "steps,i.jpg,a.wav,4,0,2.5\nplain,i.jpg,a.wav,,,\n")
    for name in ("r.csv", "r.jsonl", "r.parquet"):
        parsed = read_request_file(str(tmp_path / name), str(tmp_path / "out"))
        controls = {request.id: request.controls for request, _ in parsed.valid}
        assert controls["steps"] == RenderControls(sampling_steps=4, audio_guidance=0.0, gaze_guidance=2.5), name
        assert controls["plain"] == RenderControls(), name


@pytest.mark.parametrize("options, message", [
    (["--sampling-steps", "many"], "--sampling-steps must be an integer, got 'many'"),
    (["--sampling-steps", "0"], "--sampling-steps: Input should be greater than or equal to 1"),
    (["--audio-guidance", "nan"], "--audio-guidance must be a finite number"),
    (["--gaze", "10"], "--gaze must be two numbers YAW,PITCH"),
    (["--gaze", "50,0"], "--gaze: gaze must be within +-35 degrees yaw"),
    (["--emotion", "furious"], "--emotion: unknown emotion 'furious'"),
    (["--size", "301"], "--size: size must be even"),
    (["--motion", "magic"], "--motion: unknown motion generator 'magic'"),
    (["--transcript", "   "], "transcript is empty"),
])
def test_a_bad_option_is_one_clear_message(options, message):
    with pytest.raises(BadInputError) as caught:
        controls_from_args(render_args(*options))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("cells, message", [
    ({"sampling_steps": "2.5"}, "sampling_steps must be an integer, got '2.5'"),
    ({"gaze_guidance": "9"}, "gaze_guidance: Input should be less than or equal to 5"),
    ({"recognise": "maybe"}, "recognise must be true or false"),
    ({"gaze_yaw": "10"}, "give both gaze_yaw and gaze_pitch, or neither"),
    ({"emotion": "[0.1,"}, "emotion vector is not a valid JSON list"),
])
def test_a_bad_cell_fails_its_row_alone(cells, message):
    rows = [{"id": "bad", "image": "i.jpg", "audio": "a.wav", **cells},
            {"id": "ok", "image": "i.jpg", "audio": "a.wav"}]
    parsed = parse_request_rows(enumerate(rows, start=2), "/out")
    assert [request.id for request, _ in parsed.valid] == ["ok"]
    (invalid,) = parsed.invalid
    assert invalid.request_id == "bad" and message in invalid.message, invalid.message


def test_one_parser_reads_an_emotion_vector_from_the_cli_and_from_csv_or_a_list():
    vector = tuple(round(0.1 * k, 1) for k in range(12))
    text = ",".join(str(v) for v in vector)
    assert controls_from_args(render_args("--emotion", text)).emotion == vector
    rows = [{"id": "csv", "image": "i", "audio": "a", "emotion": json.dumps(list(vector))},
            {"id": "text", "image": "i", "audio": "a", "emotion": text},
            {"id": "list", "image": "i", "audio": "a", "emotion": list(vector)},
            {"id": "name", "image": "i", "audio": "a", "emotion": " Happy "}]
    parsed = parse_request_rows(enumerate(rows, start=1), "/out")
    assert [request.controls.emotion for request, _ in parsed.valid] == [vector, vector, vector, "happy"]


def test_a_field_of_a_type_no_parser_reads_is_refused():
    with pytest.raises(TypeError, match="RenderControls.mask has type"):
        _kind("mask", dict[str, float])


def test_transcript_option_reads_text_or_a_txt_file(tmp_path):
    path = tmp_path / "line.txt"
    path.write_text("Bob bought\n a map.\n", encoding="utf-8")
    assert controls_from_args(render_args("--transcript", str(path))).transcript == "Bob bought a map."
    with pytest.raises(BadInputError, match="transcript file not found"):
        controls_from_args(render_args("--transcript", str(tmp_path / "missing.txt")))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BadInputError, match="not UTF-8"):
        controls_from_args(render_args("--transcript", str(tmp_path / "latin1.txt")))
