"""`talkfarm batch` on S3 (moto over real HTTP): the request list, the inputs, the videos and the
manifest all in a bucket, the standard AWS settings only in the command's environment, as a
user runs it. The command's own `open_executor` starts the local Ray and hands those settings
to the stage actors, which fetch the inputs and upload the outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3

from core.storage import Storage
from core.video import probe_video
from pipeline.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
TALKFARM = Path(sys.executable).parent / "talkfarm"


def test_batch_on_s3_through_the_command(shared_assets, s3_bucket, tmp_path):
    s3 = boto3.client("s3")
    s3.upload_file(str(shared_assets / "face_grace_hopper.jpg"), s3_bucket, "in/grace.jpg")
    s3.upload_file(str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"), s3_bucket, "in/a0009.wav")
    s3.put_object(Bucket=s3_bucket, Key="in/requests.csv",
                  Body=b"id,image,audio,size\ns3-row,grace.jpg,a0009.wav,256\n")   # relative to the list
    env = {**os.environ}                 # the AWS_* settings of the s3_bucket fixture, and nothing else
    result = subprocess.run([str(TALKFARM), "batch", f"s3://{s3_bucket}/in/requests.csv", "--out",
                             f"s3://{s3_bucket}/out", "--state", str(tmp_path / "jobs.sqlite"), "--quiet"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = result.stdout.strip().splitlines()[-1]
    assert manifest.startswith(f"s3://{s3_bucket}/out/manifest-") and manifest.endswith(".parquet")
    keys = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=s3_bucket, Prefix="out/")["Contents"])
    assert keys == sorted(["out/s3-row.mp4", "out/s3-row.mp4.provenance.json", manifest.split("/", 3)[3]])
    local = tmp_path / "s3-row.mp4"
    s3.download_file(s3_bucket, "out/s3-row.mp4", str(local))
    assert abs(probe_video(local)["duration_s"] - 3.1) < 0.1
    storage = Storage()
    [row] = read_manifest(manifest, storage)
    assert row.status == "done" and row.output_sha256 == storage.sha256(f"s3://{s3_bucket}/out/s3-row.mp4")
