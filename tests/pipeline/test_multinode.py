"""A real multi-node Ray cluster on 127.0.0.1: `ray start --head` and two `ray start --address`
worker nodes with different resources, the batch driver of this process joined to it through
``open_executor`` (the path `talkfarm batch --address` takes).

* the head offers no CPUs: it only hosts the driver;
* worker "accel" carries a custom GPU-like resource (``accel_slot``), which the motion and
  decode pools are pinned to (as the chart pins them to ``talkfarm_gpu_node``);
* worker "cpu" is CPU-only and carries ``cpu_slot``, which the alignment, audio and encode
  pools are pinned to.

The pools must land on those nodes (checked through each worker's Ray node id), a job must
complete across the nodes, and when the CPU node's processes are all killed mid-job (a pod
lost) and a replacement node joins (the pod's restart), every row still ends done exactly once.
Fractional CPUs: the machine has 2 cores; the nodes' logical CPUs are only scheduler numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from core.schemas import RenderControls, RenderRequest
from core.stage import Resources
from core.storage import Storage
from core.video import probe_video
from pipeline.batch import BatchConfig, BatchDriver, open_executor, write_job_manifest
from pipeline.graph import GraphConfig, PoolSpec
from pipeline.jobstate import RequestSpec, SQLiteJobStore
from pipeline.manifest import read_manifest

ray = pytest.importorskip("ray")
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(RAY is None, reason="ray CLI not installed")]

CPU_POOLS = ("alignment", "audio", "encode")
ACCEL_POOLS = ("motion", "decode")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_ports() -> list[str]:
    """Free ports for one node's agents: the defaults clash between nodes on one machine."""
    return ["--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port()),
            "--metrics-export-port", str(_free_port()), "--runtime-env-agent-port", str(_free_port())]


class Cluster:
    """`ray start` processes, each `--block` in a session of its own, so each node is stopped (or
    killed) as one process group without touching any other Ray on this shared machine."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        # No token auth on this test cluster (tests/jobs/test_nightly.py covers it): the driver is this
        # test process, whose Ray client settled its token on first use.
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        self.env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
                        PATH=f"{Path(sys.executable).parent}:{self.env.get('PATH', '')}")
        self.temp_dir = Path("/tmp") / f"rt{uuid.uuid4().hex[:6]}"    # short: unix socket path limit
        self.gcs_port = _free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.nodes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.tmp / f"ray-{name}.log", "w")
        self.nodes[name] = subprocess.Popen([RAY, "start", "--block", "--node-ip-address", "127.0.0.1",
                                             "--disable-usage-stats", *_node_ports(), *args],
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_head(self) -> None:
        self.start("head", "--head", "--port", str(self.gcs_port), "--num-cpus", "0", "--num-gpus", "0",
                   "--include-dashboard", "false", "--temp-dir", str(self.temp_dir))

    def start_worker(self, name: str, resources: dict[str, float]) -> None:
        self.start(name, "--address", self.address, "--num-cpus", "2", "--num-gpus", "0",
                   "--resources", json.dumps(resources))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.nodes.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        for name in reversed(list(self.nodes)):
            self.kill(name, signal.SIGTERM)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _wait_for_nodes(count: int, timeout: float = 180.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [node for node in ray.nodes() if node.get("Alive")]
        if len(alive) >= count:
            return alive
        assert time.monotonic() < deadline, f"only {len(alive)} of {count} Ray nodes came up"
        time.sleep(1.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if ray.is_initialized():
        ray.shutdown()
    tmp = tmp_path_factory.mktemp("multinode")
    nodes = Cluster(tmp)
    try:
        nodes.start_head()
        deadline = time.monotonic() + 120
        while True:     # the head takes a while to accept drivers on a busy machine
            try:
                ray.init(address=nodes.address, log_to_driver=False)
                break
            except Exception:
                assert time.monotonic() < deadline, (tmp / "ray-head.log").read_text()[-3000:]
                time.sleep(2.0)
        # One node at a time: two raylets registering at once on 2 busy cores time out.
        nodes.start_worker("accel", {"accel_slot": 4})
        _wait_for_nodes(2)
        nodes.start_worker("cpu", {"cpu_slot": 4})
        _wait_for_nodes(3)
        yield nodes
    finally:
        ray.shutdown()
        nodes.stop()


def _graph() -> GraphConfig:
    pools = {name: PoolSpec(1, Resources(cpus=0.2, custom={"cpu_slot": 1})) for name in CPU_POOLS}
    pools["motion"] = PoolSpec(1, Resources(cpus=0.2, custom={"accel_slot": 1}))
    pools["decode"] = PoolSpec(2, Resources(cpus=0.4, custom={"accel_slot": 1}))
    return GraphConfig(pools)


def _nodes_with(resource: str) -> set[str]:
    return {node["NodeID"] for node in ray.nodes() if node.get("Alive") and node["Resources"].get(resource)}


def _placement(executor) -> dict[str, set[str]]:
    return {stage: set(ray.get([actor.node_id.remote() for actor in executor.actors[stage]])) for stage in
            executor.actors}


def test_pools_land_on_their_nodes_and_a_lost_node_loses_no_row(cluster, shared_assets, tmp_path):
    graph = _graph()
    executor = open_executor(cluster.address, graph, Storage(), quality_check=False)
    try:
        accel_node, = _nodes_with("accel_slot")
        cpu_node, = _nodes_with("cpu_slot")
        placement = _placement(executor)
        for stage in ACCEL_POOLS:
            assert placement[stage] == {accel_node}, stage
        for stage in CPU_POOLS:
            assert placement[stage] == {cpu_node}, stage

        out = tmp_path / "out"
        speech = shared_assets / "speech_cmu_arctic_a0009_3s.wav"
        requests = {f"row{i}": RenderRequest(id=f"row{i}", image=str(shared_assets / "face_grace_hopper.jpg"),
                                             audio=str(speech), output=str(out / f"row{i}.mp4"),
                                             controls=RenderControls(size=128, seed=i, motion="procedural"))
                    for i in range(6)}
        store = SQLiteJobStore(tmp_path / "jobs.sqlite")
        store.create_job("multinode", [RequestSpec(rid, None, 0) for rid in requests])

        # Kill the CPU node's processes once the first row is done, then let a replacement join.
        killed = threading.Event()

        def lose_the_cpu_node(progress) -> None:
            if progress.done >= 1 and not killed.is_set():
                killed.set()
                cluster.kill("cpu")
                cluster.start_worker("cpu-replacement", {"cpu_slot": 4})
                _wait_for_nodes(3)

        driver = BatchDriver(executor, store, Storage(), graph,
                             BatchConfig(max_attempts=4, retry_backoff_s=1.0), on_progress=lose_the_cpu_node)
        progress = driver.run("multinode", requests)
        assert killed.is_set(), "the job ended before the node could be killed"

        states = {state.request_id: state for state in store.request_states("multinode")}
        assert {rid: state.status for rid, state in states.items()} == {rid: "done" for rid in requests}
        assert progress.done == len(requests) and progress.failed == 0
        manifest = read_manifest(write_job_manifest("multinode", store, Storage(), requests,
                                                    str(out / "manifest.parquet")), Storage())
        assert sorted(row.request_id for row in manifest) == sorted(requests), "one manifest row per request"
        for rid in requests:
            info = probe_video(out / f"{rid}.mp4")
            assert info["video_codec"] == "h264" and abs(info["duration_s"] - 3.1) < 0.15, (rid, info)
        # Final outputs: one video and one sidecar per row (a killed encoder's temporary file may stay
        # behind on a shared disk under its .partial- name, never under a final name).
        assert sorted(Path(uri).name for uri in Storage().list(str(out)) if uri.endswith((".mp4", ".json"))) == \
            sorted(name for rid in requests for name in (f"{rid}.mp4", f"{rid}.mp4.provenance.json"))

        # The CPU pools came back on the replacement node; the pinned pools never moved.
        replacement, = _nodes_with("cpu_slot")
        assert replacement != cpu_node
        placement = _placement(executor)
        for stage in CPU_POOLS:
            assert placement[stage] == {replacement}, stage
        for stage in ACCEL_POOLS:
            assert placement[stage] == {accel_node}, stage
    finally:
        executor.shutdown()
