"""Storage.copy: a finished video reused by another request is linked or copied server-side,
never streamed through the process that asks for it."""

from __future__ import annotations

import os

import boto3

from core.storage import Storage


def test_local_copy_is_a_hard_link(tmp_path):
    source = tmp_path / "renders" / "a.mp4"
    source.parent.mkdir()
    source.write_bytes(os.urandom(4096))
    target = tmp_path / "job2" / "b.mp4"
    assert Storage().copy(str(source), str(target)) == str(target)
    assert target.read_bytes() == source.read_bytes()
    assert os.path.samefile(source, target), "same inode: no bytes copied"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.mp4"], "no temporary name left"


def test_s3_copy_is_server_side(s3_bucket, tmp_path):
    s3 = boto3.client("s3")
    payload = os.urandom(100_000)
    s3.put_object(Bucket=s3_bucket, Key="renders/a.mp4", Body=payload)
    storage = Storage()
    calls = []
    storage.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    storage.copy(f"s3://{s3_bucket}/renders/a.mp4", f"s3://{s3_bucket}/job2/b.mp4")
    assert "CopyObject" in calls and "GetObject" not in calls and "PutObject" not in calls, calls
    assert s3.get_object(Bucket=s3_bucket, Key="job2/b.mp4")["Body"].read() == payload
