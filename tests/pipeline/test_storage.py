"""Storage against the local filesystem and a real (moto) S3 server over HTTP."""

from __future__ import annotations

import hashlib
import os
import pickle
import time

import pytest

from core.errors import BadInputError, TransientError
from core.storage import PARTIAL_MARKER, Storage, join_uri, parse_uri

MiB = 1024 * 1024


def test_parse_uri():
    assert parse_uri("/a/b.wav").scheme == "file"
    assert parse_uri("file:///a/b%20c.wav").key == "/a/b c.wav"
    p = parse_uri("s3://bucket/dir/x.png")
    assert (p.scheme, p.bucket, p.key) == ("s3", "bucket", "dir/x.png")
    with pytest.raises(BadInputError, match="unsupported URI scheme"):
        parse_uri("gs://bucket/x")
    assert join_uri("s3://b/out/", "job", "r1.mp4") == "s3://b/out/job/r1.mp4"


def test_local_roundtrip(tmp_path):
    st = Storage()
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    dest = tmp_path / "deep" / "dir" / "out.bin"
    assert st.put(src, str(dest)) == str(dest)
    assert st.exists(dest) and st.read_bytes(dest) == b"hello"
    assert st.sha256(f"file://{dest}") == hashlib.sha256(b"hello").hexdigest()
    assert st.fetch(dest, tmp_path / "cache") == dest  # local: returned as-is
    st.write_bytes(str(tmp_path / "deep" / "b.txt"), b"x")
    assert st.list(str(tmp_path / "deep")) == [str(tmp_path / "deep" / "b.txt"), str(dest)]
    assert st.list(f"file://{tmp_path}/deep/dir") == [dest.resolve().as_uri()]
    st.delete(dest)
    st.delete(dest)  # idempotent
    assert not st.exists(dest)
    with pytest.raises(BadInputError, match="object not found"):
        st.fetch(dest, tmp_path)


def test_local_atomic_put_leaves_no_partial(tmp_path):
    st = Storage()
    src = tmp_path / "src.bin"
    src.write_bytes(b"new")
    target = tmp_path / "out" / "video.mp4"
    target.mkdir(parents=True)          # a folder in the way: os.replace fails
    (target / "keep").write_bytes(b"")
    with pytest.raises(OSError):
        st.put(src, target)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["video.mp4"]


def test_allow_list(tmp_path):
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "a.wav").write_bytes(b"a")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "b.wav").write_bytes(b"b")
    st = Storage(allowed_prefixes=[str(inside), "s3://good-bucket/renders"])
    assert st.read_bytes(inside / "a.wav") == b"a"
    for uri in (tmp_path / "inbox" / "b.wav", inside / ".." / "inbox" / "b.wav", "s3://evil/x.wav",
                "s3://good-bucket/rendersX/x.mp4", "s3://good-bucket-2/renders/x.mp4"):
        with pytest.raises(BadInputError, match="outside the allowed prefixes"):
            st.exists(uri)
    assert st.is_allowed("s3://good-bucket/renders/job/x.mp4")


def test_s3_roundtrip(s3_bucket, tmp_path):
    st = Storage()
    src = tmp_path / "face.jpg"
    src.write_bytes(b"\xff\xd8jpeg" * 100)
    uri = f"s3://{s3_bucket}/in/face.jpg"
    assert not st.exists(uri)
    assert st.put(src, uri) == uri
    assert st.exists(uri)
    assert st.size(uri) == src.stat().st_size
    assert st.sha256(uri) == hashlib.sha256(src.read_bytes()).hexdigest()
    local = st.fetch(uri, tmp_path / "cache")
    assert local.suffix == ".jpg" and local.read_bytes() == src.read_bytes()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [local.name]  # no temp left
    st.write_bytes(f"s3://{s3_bucket}/in/b.json", b"{}")
    assert st.list(f"s3://{s3_bucket}/in/") == [f"s3://{s3_bucket}/in/b.json", uri]
    assert st.list(f"s3://{s3_bucket}/in/", include_partial=True) == st.list(f"s3://{s3_bucket}/in/")
    st.delete(uri)
    st.delete(uri)
    assert not st.exists(uri)


def test_s3_missing_object(s3_bucket, tmp_path):
    st = Storage()
    for call in (lambda u: st.fetch(u, tmp_path), st.read_bytes, st.sha256, st.size):
        with pytest.raises(BadInputError, match="object not found") as err:
            call(f"s3://{s3_bucket}/nope.wav")
        assert err.value.path == f"s3://{s3_bucket}/nope.wav"
    with pytest.raises(BadInputError, match="NoSuchBucket"):
        st.read_bytes("s3://no-such-bucket-here/x")


def test_s3_atomic_put_cleans_up_on_failure(s3_bucket, tmp_path, monkeypatch):
    st = Storage(max_attempts=2, backoff_s=0.01)
    uri = f"s3://{s3_bucket}/out/video.mp4"
    old = tmp_path / "old.mp4"
    old.write_bytes(b"old video")
    st.put(old, uri)
    new = tmp_path / "new.mp4"
    new.write_bytes(b"new video")

    def broken_copy(*args, **kwargs):  # fault injection: the upload worked, the final copy dies
        raise ConnectionResetError("connection reset during copy")

    monkeypatch.setattr(st.client, "copy", broken_copy)
    with pytest.raises(TransientError, match="copy failed after 2 attempts"):
        st.put(new, uri)
    monkeypatch.undo()
    assert st.list(f"s3://{s3_bucket}/out/", include_partial=True) == [uri]  # temp key deleted
    assert st.read_bytes(uri) == b"old video"                               # old object intact


def test_s3_multipart(s3_bucket, tmp_path):
    st = Storage(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    src = tmp_path / "big.mp4"
    src.write_bytes(os.urandom(12 * MiB))
    uri = f"s3://{s3_bucket}/out/big.mp4"
    st.put(src, uri)
    head = st.client.head_object(Bucket=s3_bucket, Key="out/big.mp4")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].strip('"').endswith("-3")  # 3 parts of 5/5/2 MiB
    assert st.sha256(uri) == hashlib.sha256(src.read_bytes()).hexdigest()
    assert not [u for u in st.list(f"s3://{s3_bucket}/", include_partial=True) if PARTIAL_MARKER in u]


def test_s3_unreachable_is_transient(monkeypatch, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    st = Storage(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1", max_attempts=3,
                 backoff_s=0.01, connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(TransientError, match="after 3 attempts"):
        st.exists("s3://b/x")
    assert time.monotonic() - start < 10


def test_storage_pickles_without_client(s3_bucket):
    st = Storage(allowed_prefixes=[f"s3://{s3_bucket}"])
    st.write_bytes(f"s3://{s3_bucket}/a", b"1")
    clone = pickle.loads(pickle.dumps(st))
    assert clone._client is None
    assert clone.read_bytes(f"s3://{s3_bucket}/a") == b"1"
