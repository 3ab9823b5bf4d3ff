"""A batch job's access policy: reads under the request file's folder and named prefixes,
writes under --out; refusals that never reveal whether an object exists. Local folders and
S3 prefixes on the moto server."""

from __future__ import annotations

import boto3
import pytest

from core.errors import BadInputError
from pipeline.access import AccessPolicy, folder_of
from pipeline.request_files import read_request_file


@pytest.fixture
def folders(tmp_path):
    team, other = tmp_path / "team", tmp_path / "other-team"
    (team / "in").mkdir(parents=True)
    other.mkdir()
    (team / "in" / "a.jpg").write_bytes(b"image")
    secret = other / "secret.jpg"
    secret.write_bytes(b"private")
    secret.chmod(0o600)
    (team / "in" / "link.jpg").symlink_to(secret)
    rows = {"ok": "in/a.jpg", "secret": str(secret), "missing": str(other / "nothing.jpg"),
            "link": "in/link.jpg", "dotdot": "in/../../other-team/secret.jpg", "etc": "/etc/passwd"}
    (team / "r.csv").write_text("id,image,audio\n" + "".join(f"{rid},{image},in/a.wav\n" for rid, image in rows.items()))
    return team, other, tmp_path / "out"


def test_default_policy_reads_only_the_request_folder(folders):
    team, other, out = folders
    policy = AccessPolicy.for_job(str(team / "r.csv"), str(out))
    assert policy.read == (str(team),) and policy.write == str(out) and not policy.allow_any
    result = read_request_file(str(team / "r.csv"), str(out), policy.storage())
    assert [request.id for request, _ in result.valid] == ["ok"]
    messages = {row.request_id: row.message for row in result.invalid}
    assert set(messages) == {"secret", "missing", "link", "dotdot", "etc"}
    assert all(message.endswith(": outside the allowed prefixes") for message in messages.values()), messages
    # the same words whether the file exists or not: the refusal reveals nothing about it
    assert messages["secret"].replace("secret", "X") == messages["missing"].replace("nothing", "X")
    storage = policy.storage()
    for uri in (str(other / "secret.jpg"), str(other / "nothing.jpg")):
        for read in (storage.read_bytes, storage.exists, storage.sha256):
            with pytest.raises(BadInputError, match="^.*: outside the allowed prefixes$"):
                read(uri)


def test_allow_adds_prefixes_and_allow_any_opts_out(folders):
    team, other, out = folders
    allowed = AccessPolicy.for_job(str(team / "r.csv"), str(out), allow=[str(other)])
    result = read_request_file(str(team / "r.csv"), str(out), allowed.storage())
    assert [request.id for request, _ in result.valid] == ["ok", "secret", "missing", "link", "dotdot"]
    assert allowed.storage().read_bytes(str(other / "secret.jpg")) == b"private"
    anything = AccessPolicy.for_job(str(team / "r.csv"), str(out), allow_any=True)
    assert len(read_request_file(str(team / "r.csv"), str(out), anything.storage()).valid) == 6
    assert AccessPolicy.from_meta({"access": anything.to_meta()}) == anything
    assert AccessPolicy.from_meta({"access": allowed.to_meta()}) == allowed
    assert "unconfined" in anything.describe()


def test_writes_only_under_out(folders):
    team, _, out = folders
    storage = AccessPolicy.for_job(str(team / "r.csv"), str(out)).storage()
    assert storage.write_bytes(str(out / "x.bin"), b"1") and storage.read_bytes(str(out / "x.bin")) == b"1"
    for target in (team / "x.bin", out.parent / "out-elsewhere" / "x.bin"):
        with pytest.raises(BadInputError, match="outside the allowed prefixes"):
            storage.write_bytes(str(target), b"1")
        assert not target.exists()
    with pytest.raises(BadInputError, match="outside the allowed prefixes"):
        read_request_file(str(team / "r.csv"), str(team / "elsewhere"), storage)


def test_s3_policy_is_the_request_files_bucket_prefix(s3_bucket):
    s3 = boto3.client("s3")
    for key in ("team-a/jobs/in/a.jpg", "team-b/private.jpg", "team-a/jobsX/a.jpg"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    rows = {"ok": f"s3://{s3_bucket}/team-a/jobs/in/a.jpg", "relative": "in/b.jpg",
            "sibling": f"s3://{s3_bucket}/team-b/private.jpg", "missing": f"s3://{s3_bucket}/team-b/none.jpg",
            "lookalike": f"s3://{s3_bucket}/team-a/jobsX/a.jpg", "other-bucket": "s3://someone-else/x.jpg"}
    request_uri = f"s3://{s3_bucket}/team-a/jobs/r.jsonl"
    s3.put_object(Bucket=s3_bucket, Key="team-a/jobs/r.jsonl", Body="".join(
        f'{{"id": "{rid}", "image": "{image}", "audio": "in/a.wav"}}\n' for rid, image in rows.items()).encode())
    policy = AccessPolicy.for_job(request_uri, f"s3://{s3_bucket}/team-a/out")
    assert policy.read == (f"s3://{s3_bucket}/team-a/jobs",) and folder_of(f"s3://{s3_bucket}/r.csv") == f"s3://{s3_bucket}"
    result = read_request_file(request_uri, f"s3://{s3_bucket}/team-a/out", policy.storage())
    assert [request.id for request, _ in result.valid] == ["ok", "relative"]
    assert {row.request_id for row in result.invalid} == {"sibling", "missing", "lookalike", "other-bucket"}
    assert all(row.message.endswith("outside the allowed prefixes") for row in result.invalid)
    storage = policy.storage()
    for uri in (rows["sibling"], rows["missing"]):
        with pytest.raises(BadInputError, match="outside the allowed prefixes"):
            storage.read_bytes(uri)
    with pytest.raises(BadInputError, match="outside the allowed prefixes"):
        storage.write_bytes(f"s3://{s3_bucket}/team-b/planted.mp4", b"x")
    storage.write_bytes(f"s3://{s3_bucket}/team-a/out/r.mp4", b"x")
    assert storage.read_bytes(f"s3://{s3_bucket}/team-a/out/r.mp4") == b"x"
