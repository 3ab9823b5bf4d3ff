"""Real servers for the infrastructure tests: a redis-server process and a moto S3 server.

Both listen on free 127.0.0.1 ports. Redis runs with AOF persistence in a temp folder so a
test can stop and restart it (same port, same data) mid-job.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """One redis-server process; ``stop()`` / ``start()`` keep the port and the AOF data."""

    def __init__(self, data_dir: Path):
        self.dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", str(self.dir), "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        """Clean shutdown (SIGTERM: Redis fsyncs the AOF first)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path):
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer(data)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server():
    """A moto S3 server over real HTTP on a free port (session-wide); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_server, monkeypatch) -> str:
    """Standard AWS settings pointing at the moto server, and a fresh bucket; yields its name."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3

    bucket = f"tf-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="module")
def ray_session(moto_server):
    """One local Ray for the module: 2 CPUs, 2 fake GPUs and a custom node resource to pin on;
    yields its address (other drivers join it with ``--address``).

    The moto endpoint and test credentials go to every worker through the runtime env.
    """
    ray = pytest.importorskip("ray")
    env = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1"}
    os.environ.update(env)
    context = ray.init(num_cpus=2, num_gpus=2, resources={"gpu_node": 2}, _node_ip_address="127.0.0.1",
                       include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield context.address_info["gcs_address"]
    ray.shutdown()
    for key in env:
        os.environ.pop(key, None)
