"""Object-storage metrics from the storage layer itself, added up over processes.

Separate processes (as stage actors are) read and write a real S3 (moto over HTTP) through
``Storage`` with one metrics folder; one of them reaches a closed port and gives up. The pod
exporter the Helm chart runs (``python -m monitoring.metrics serve``) serves the sum.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]

READ = "import sys; from core.storage import Storage; Storage().read_bytes(sys.argv[1])"
WRITE = "import sys; from core.storage import Storage; Storage().write_bytes(sys.argv[1], b'x' * int(sys.argv[2]))"
UNREACHABLE = ("import sys; from core.storage import Storage; from core.errors import TransientError\n"
               "try:\n    Storage(endpoint_url=sys.argv[2], max_attempts=2, backoff_s=0.01).read_bytes(sys.argv[1])\n"
               "except TransientError:\n    print('gave up')")


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _samples(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_storage_bytes_and_errors_add_up_over_processes(s3_bucket, tmp_path):
    import boto3

    payload = os.urandom(12_345)
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="in/blob.bin", Body=payload)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def python(code: str, *args: str) -> str:
        return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=REPO, check=True, timeout=120,
                              capture_output=True, text=True).stdout

    for _ in range(2):
        python(READ, f"s3://{s3_bucket}/in/blob.bin")
    python(WRITE, f"s3://{s3_bucket}/out/made.bin", "777")
    assert "gave up" in python(UNREACHABLE, f"s3://{s3_bucket}/in/blob.bin", f"http://127.0.0.1:{_closed_port()}")

    server = subprocess.Popen([sys.executable, "-m", "monitoring.metrics", "serve", "--port", "0", "--addr",
                               "127.0.0.1", "--dir", str(tmp_path)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1].split("/")[0])
        samples = _samples(port)
    finally:
        server.terminate()
        server.wait(10)
    assert samples[("talkfarm_storage_bytes_total", (("direction", "read"),))] == 2 * len(payload)
    assert samples[("talkfarm_storage_bytes_total", (("direction", "write"),))] == 777
    assert samples[("talkfarm_storage_errors_total", (("op", "read"),))] == 1
