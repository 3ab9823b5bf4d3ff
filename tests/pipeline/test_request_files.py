"""Request lists: CSV, JSONL and Parquet, local and S3; bad rows fail alone."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import BadInputError
from core.storage import Storage
from pipeline.request_files import read_request_file

CSV = """id,image,audio,seed,gaze_yaw,gaze_pitch,distance,emotion,priority,paste_back,notes
a,faces/a.jpg,/abs/a.wav,3,,,,happy,5,yes,hello
b,s3://in/b.jpg,s3://in/b.wav,,10,-5,1.2,"[0.1, -0.2]",,,
c,,c.wav,1,,,,,,,
d,d.jpg,d.wav,abc,,,,,,,
e,e.jpg,e.wav,1,,,,furious,,,
a,a2.jpg,a2.wav,,,,,,,,
f,f.jpg,f.wav,-1,,,,,,,
g,g.jpg,g.wav,,40,0,,,,,
h/x,h.jpg,h.wav,,,,,,,,
i,i.jpg,i.wav,2.0,,,,,x,,
"""


def _check_csv_like(result, base):
    valid = {req.id: (req, prio) for req, prio in result.valid}
    assert sorted(valid) == ["a", "b"]
    a, prio = valid["a"]
    assert prio == 5 and a.controls.seed == 3 and a.controls.emotion == "happy" and a.controls.paste_back
    assert a.image == str(base / "faces" / "a.jpg") and a.audio == "/abs/a.wav"
    assert a.output == "s3://out/job1/a.mp4"
    b, prio = valid["b"]
    assert prio == 0 and b.controls.gaze == (10.0, -5.0) and b.controls.emotion == (0.1, -0.2)
    assert b.controls.distance == 1.2 and b.image == "s3://in/b.jpg"
    bad = {(n, rid): msg for n, rid, msg in result.invalid}
    messages = {rid: msg for (_, rid), msg in bad.items()}
    assert "missing image" in messages["c"]
    assert "seed must be an integer" in messages["d"]
    assert "unknown emotion 'furious'" in messages["e"]
    assert "duplicate id 'a'" in messages["a"]
    assert "seed" in messages["f"]
    assert "gaze" in messages["g"]
    assert "bad id" in messages["h/x"]
    assert "priority" in messages["i"]
    return bad


def test_csv(tmp_path):
    path = tmp_path / "reqs.csv"
    path.write_text(CSV)
    result = read_request_file(str(path), "s3://out/job1")
    bad = _check_csv_like(result, tmp_path)
    assert ("c" in {rid for _, rid in bad}) and (4, "c") in bad  # CSV row number = line number
    assert result.ignored_columns == ["notes"]
    valid, invalid = result  # unpacks as a pair
    assert len(valid) == 2 and len(invalid) == 8


def _records():
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(CSV)))
    for row in rows:
        row.pop("notes")
    return rows


def test_jsonl(tmp_path):
    lines = []
    for row in _records():
        obj = {k: v for k, v in row.items() if v != ""}
        if obj["id"] == "b":
            obj["emotion"] = [0.1, -0.2]
            obj["gaze_yaw"], obj["gaze_pitch"] = 10, -5
        lines.append(json.dumps(obj))
    lines.insert(3, "{not json")
    lines.insert(4, "")
    path = tmp_path / "reqs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = read_request_file(str(path), "s3://out/job1")
    bad = _check_csv_like(result, tmp_path)
    assert (4, None) in bad and "not valid JSON" in bad[(4, None)]


def test_parquet_on_s3(s3_bucket):
    records = _records()
    for row in records:
        row["seed"] = row["seed"] or None
    table = pa.Table.from_pylist(records)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage = Storage()
    uri = f"s3://{s3_bucket}/lists/reqs.parquet"
    storage.write_bytes(uri, sink.getvalue().to_pybytes())
    result = read_request_file(uri, "s3://out/job1", storage)
    valid = {req.id: req for req, _ in result.valid}
    assert valid["a"].image == f"s3://{s3_bucket}/lists/faces/a.jpg"  # relative to the file's prefix
    assert len(result.invalid) == 8 and result.invalid[0].row_number == 3  # Parquet: 1-based row index


def test_typed_parquet_and_defaults(tmp_path):
    table = pa.table({"id": ["x", "y"], "image": ["/i/x.jpg", "/i/y.jpg"], "audio": ["/a/x.wav", "/a/y.wav"],
                      "seed": pa.array([4, None], pa.int64()), "priority": pa.array([1, 2], pa.int32()),
                      "size": [256, 301], "fps": [30.0, 25.0]})
    pq.write_table(table, tmp_path / "r.parquet")
    result = read_request_file(str(tmp_path / "r.parquet"), str(tmp_path / "out"), defaults={"seed": 9})
    assert [(r.id, r.controls.seed, r.controls.size, p) for r, p in result.valid] == [("x", 4, 256, 1)]
    assert result.valid[0][0].output == str(tmp_path / "out" / "x.mp4")
    assert "size must be even" in result.invalid[0].message


def test_allow_list_and_file_errors(tmp_path):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "r.csv"
    path.write_text("id,image,audio\nok,a.jpg,a.wav\nout,/etc/x.jpg,a.wav\n")
    storage = Storage(allowed_prefixes=[str(tmp_path)])
    result = read_request_file(str(path), str(tmp_path / "out"), storage)
    assert [r.id for r, _ in result.valid] == ["ok"]
    assert "outside the allowed" in result.invalid[0].message
    with pytest.raises(BadInputError, match="outside the allowed"):
        read_request_file(str(path), "/elsewhere/out", storage)
    (tmp_path / "noimg.csv").write_text("id,audio\na,a.wav\n")
    with pytest.raises(BadInputError, match="no 'image' column"):
        read_request_file(str(tmp_path / "noimg.csv"), "/out")
    with pytest.raises(BadInputError, match="unknown request file format"):
        read_request_file(str(tmp_path / "r.txt"), "/out")
    with pytest.raises(BadInputError, match="object not found"):
        read_request_file(str(tmp_path / "missing.csv"), "/out")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(BadInputError, match="not a readable Parquet"):
        read_request_file(str(tmp_path / "bad.parquet"), "/out")


def test_an_undecodable_row_fails_alone(tmp_path):
    csv_path, jsonl_path = tmp_path / "r.csv", tmp_path / "r.jsonl"
    csv_path.write_bytes(b"id,image,audio\nok,a.jpg,a.wav\nbad,caf\xe9.jpg,a.wav\nalso-ok,b.jpg,b.wav\n")
    jsonl_path.write_bytes(b'{"id": "ok", "image": "a.jpg", "audio": "a.wav"}\n'
                           b'{"id": "bad", "image": "caf\xe9.jpg", "audio": "a.wav"}\n')
    for path, valid in ((csv_path, ["ok", "also-ok"]), (jsonl_path, ["ok"])):
        result = read_request_file(str(path), str(tmp_path / "out"))
        assert [request.id for request, _ in result.valid] == valid
        assert [(row.row_number, row.message) for row in result.invalid] == [
            (3 if path == csv_path else 2, "row is not UTF-8 text (undecodable bytes)")]
    (tmp_path / "h.csv").write_bytes(b"id,ima\xffge,audio\n")
    with pytest.raises(BadInputError, match="header is not UTF-8"):
        read_request_file(str(tmp_path / "h.csv"), str(tmp_path / "out"))
