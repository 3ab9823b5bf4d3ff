"""The Parquet manifest: schema, round trip (local and S3), constructors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from core.schemas import RenderControls, RenderRequest, RenderResult
from core.storage import Storage
from pipeline.manifest import (
    MANIFEST_SCHEMA,
    ManifestRow,
    read_manifest,
    write_manifest,
)

COLUMNS = ["job_id", "request_id", "render_id", "image_uri", "image_sha256", "audio_uri", "audio_sha256",
           "output_uri", "output_sha256", "status", "error_stage", "error_message", "attempts", "audio_seconds",
           "frames", "seconds_per_stage", "total_seconds", "model_versions", "seed", "controls",
           "watermark_payload", "created_at", "finished_at"]


def _rows():
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    request = RenderRequest(id="r1", image="s3://in/a.jpg", audio="s3://in/a.wav", output="s3://out/r1.mp4",
                            controls=RenderControls(seed=7, gaze=(5.0, -3.0), emotion=(0.1, 0.2)))
    result = RenderResult(request_id="r1", status="done", output="s3://out/r1.mp4", output_sha256="c" * 64,
                          frames=125, audio_seconds=5.0, seconds={"alignment": 0.5, "decode": 2.25},
                          warnings=["2 faces found; used the largest"], model_versions={"decoder": "v3"})
    done = ManifestRow.from_result("job1", request, result, render_id="f" * 64, image_sha256="a" * 64,
                                   audio_sha256="b" * 64, attempts=2, watermark_payload="ffffffff",
                                   created_at=t0, finished_at=t0 + timedelta(seconds=9))
    failed = ManifestRow(job_id="job1", request_id="r2", status="failed", error_stage="alignment",
                         error_message="no face found", attempts=1, image_uri="/x.png",
                         created_at=datetime(2026, 1, 2, 3, 4, 5), finished_at=None)  # naive = UTC
    invalid = ManifestRow.for_invalid_row("job1", 7, None, "missing image")
    return [done, failed, invalid]


def test_roundtrip_local(tmp_path):
    rows = _rows()
    uri = str(tmp_path / "m" / "manifest.parquet")
    assert write_manifest(rows, uri) == uri
    table = pq.read_table(uri)
    for name in COLUMNS:
        assert name in table.column_names
    assert table.schema.equals(MANIFEST_SCHEMA, check_metadata=False)
    sps = table.schema.field("seconds_per_stage").type
    assert pa.types.is_map(sps) and sps.key_type == pa.string() and sps.item_type == pa.float64()
    back = read_manifest(uri)
    assert back == rows
    assert back[0].total_seconds == 9.0 and back[0].seconds_per_stage == {"alignment": 0.5, "decode": 2.25}
    assert back[0].controls_obj.gaze == (5.0, -3.0) and back[0].seed == 7
    assert back[1].created_at.tzinfo == timezone.utc and back[1].finished_at is None
    assert back[2].request_id == "row-7" and back[2].error_stage == "request"
    assert ManifestRow.from_dict(back[0].to_dict()) == back[0]
    assert not [p for p in (tmp_path / "m").iterdir() if p.name != "manifest.parquet"]


def test_roundtrip_s3(s3_bucket):
    storage = Storage()
    uri = f"s3://{s3_bucket}/jobs/job1/manifest.parquet"
    write_manifest(_rows(), uri, storage)
    assert storage.list(f"s3://{s3_bucket}/jobs/", include_partial=True) == [uri]
    assert [r.status for r in read_manifest(uri, storage)] == ["done", "failed", "failed"]


def test_empty_manifest(tmp_path):
    uri = str(tmp_path / "empty.parquet")
    write_manifest([], uri)
    assert read_manifest(uri) == []


def test_transcript_column_round_trips(tmp_path):
    import json

    request = RenderRequest(id="r1", image="/a.jpg", audio="/a.wav", output="/r1.mp4")
    transcript = {"text": "Marque el número uno", "source": "recognised", "language": "es", "confidence": 0.91,
                  "model": "whisper-base-ct2-d01c3014881c", "words": 4, "used": True, "problem": None}
    result = RenderResult(request_id="r1", status="done", output="/r1.mp4", frames=25, transcript=transcript)
    rows = [ManifestRow.from_result("job1", request, result),
            ManifestRow.from_result("job1", request, RenderResult(request_id="r1", status="failed"))]
    uri = write_manifest(rows, str(tmp_path / "manifest.parquet"))
    assert pq.read_schema(uri).field("transcript_json").type == pa.string()
    done, failed = read_manifest(uri)
    assert json.loads(done.transcript_json) == transcript and failed.transcript_json is None


def test_rows_stream_into_row_groups(tmp_path):
    """A generator of rows is consumed a row group at a time; the file holds them all, in order."""
    done, failed, _ = _rows()
    taken = []

    def rows():
        for index in range(25):
            taken.append(index)
            yield ManifestRow.from_dict({**(done if index % 2 else failed).to_dict(), "request_id": f"r{index:02d}"})

    uri = str(tmp_path / "streamed.parquet")
    write_manifest(rows(), uri, row_group_rows=10)
    meta = pq.ParquetFile(uri).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10, 10, 5]
    assert [row.request_id for row in read_manifest(uri)] == [f"r{index:02d}" for index in range(25)]
    assert taken == list(range(25))
