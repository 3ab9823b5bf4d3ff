"""`talkfarm submit` against a real `ray start --head` cluster on 127.0.0.1 with token auth.

Ray 2.60 runs clusters with token authentication: the test writes its own token file and
starts the head with RAY_AUTH_MODE=token + RAY_AUTH_TOKEN_PATH (the user's ~/.ray is not
touched); the client sends the token as a Bearer header.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAY = shutil.which("ray", path=str(VENV_BIN)) or shutil.which("ray")

pytestmark = pytest.mark.skipif(RAY is None, reason="ray CLI not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_env(tmp: Path, token_file: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file), RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
    return env


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rayhead")
    token_file = tmp / "auth_token"
    token_file.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    env = _ray_env(tmp, token_file)
    gcs, dashboard, agent, agent_grpc, metrics, runtime_env = (_free_port() for _ in range(6))
    temp_dir = Path("/tmp") / f"rt{uuid.uuid4().hex[:6]}"   # short: unix socket paths have a length limit
    # `--block` in a session of its own: teardown ends exactly this cluster's process group.
    # (`ray stop` would stop every Ray cluster of the user on this shared machine.)
    log = open(tmp / "ray-start.log", "w")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--num-cpus", "2", "--num-gpus", "0",
         "--include-dashboard", "true", "--temp-dir", str(temp_dir), "--disable-usage-stats",
         # Free ports for the node's agents too: the defaults (e.g. 52365 for the job agent) clash with
         # any other Ray running on this machine, and the Jobs API then answers "No available agent".
         "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
         "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_jobs_api(address, token_file.read_text(), head)
        yield {"address": address, "token_file": token_file, "env": env}
    finally:
        _stop_group(head)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the head's process group (ray start --block stops its cluster), SIGKILL stragglers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    time.sleep(1.0)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_jobs_api(address: str, token: str, head: subprocess.Popen, timeout: float = 120.0) -> None:
    from pipeline.submit import make_client

    deadline = time.monotonic() + timeout
    while True:
        assert head.poll() is None, "ray start --head exited"
        try:
            make_client(address, token).list_jobs()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _submit(ray_head, request_list: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {key: value for key, value in ray_head["env"].items() if not key.startswith("RAY_AUTH")}
    return subprocess.run(
        [str(VENV_BIN / "talkfarm"), "submit", str(request_list), "--out", "/tmp/unused-out", "--address",
         ray_head["address"], "--token-file", str(ray_head["token_file"]), "--date", "2026-11-21", *extra],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_submit_follow_idempotent_and_failure(ray_head, tmp_path):
    from pipeline.submit import make_client

    request_list = tmp_path / "tonight.csv"
    request_list.write_text(f"id,image,audio\nr1,a.jpg,b.wav\n# {uuid.uuid4().hex}\n")
    marker = uuid.uuid4().hex
    entry = f"python -c \"import os; print('nightly-ok', '{marker}', os.environ['TALKFARM_JOB_PRIORITY'])\""

    first = _submit(ray_head, request_list, "--priority", "7", "--entrypoint", entry, "--env", "EXTRA=1")
    assert first.returncode == 0, first.stdout + first.stderr
    job_id = first.stdout.splitlines()[0]
    assert job_id.startswith("talkfarm-nightly-2026-11-21-") and len(job_id) == len("talkfarm-nightly-2026-11-21-") + 12
    assert f"nightly-ok {marker} 7" in first.stdout, first.stdout     # the followed logs, priority passed through
    client = make_client(ray_head["address"], ray_head["token_file"].read_text())
    info = client.get_job_info(job_id)
    assert info.metadata["priority"] == "7" and info.runtime_env["env_vars"]["EXTRA"] == "1"

    # Same list, same night: no second job.
    again = _submit(ray_head, request_list, "--priority", "7", "--entrypoint", entry, "--no-follow")
    assert again.returncode == 0 and again.stdout.splitlines()[0] == job_id
    assert "already submitted" in again.stderr
    assert [job.submission_id for job in client.list_jobs()].count(job_id) == 1

    # Another night is another job; a failing entrypoint exits non-zero.
    failing = _submit(ray_head, request_list, "--date", "2026-11-22", "--entrypoint",
                      "python -c \"import sys; print('boom'); sys.exit(3)\"")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "boom" in failing.stdout and "FAILED" in failing.stderr


def test_missing_token_is_refused(ray_head, tmp_path):
    """Token auth is really on: without the token the Jobs API refuses the call."""
    from pipeline.submit import make_client

    with pytest.raises(Exception, match="(?i)auth|401|unauthorized"):
        make_client(ray_head["address"], None).list_jobs()
    with pytest.raises(Exception, match="(?i)auth|403|forbidden"):
        make_client(ray_head["address"], "not-the-token").list_jobs()


def test_unreadable_list_is_bad_input(ray_head, tmp_path):
    result = _submit(ray_head, tmp_path / "missing.csv", timeout=60)
    assert result.returncode == 2 and "not found" in result.stderr


def test_the_batch_command_carries_the_access_policy():
    from pipeline.submit import Submission, batch_entrypoint

    plain = batch_entrypoint(Submission("s3://b/lists/x.csv", "s3://b/out"), "job-1")
    assert "--allow" not in plain
    confined = batch_entrypoint(Submission("s3://b/lists/x.csv", "s3://b/out", allow=["s3://b/faces", "s3://b/voices"]),
                                "job-1")
    assert confined.endswith("--allow s3://b/faces --allow s3://b/voices")
    assert batch_entrypoint(Submission("s3://b/x.csv", "s3://b/out", allow_any=True), "job-1").endswith("--allow-any")


def test_nightly_runs_the_real_batch_entrypoint(ray_head, shared_assets, tmp_path):
    """No --entrypoint: the Ray job runs the `talkfarm batch ...` command the CronJob submits, on
    the cluster, and renders the night's list (one small row) into the output prefix."""
    from core.video import probe_video

    request_list = tmp_path / "tonight.csv"
    seed = uuid.uuid4().int % 1_000_000                  # a list of its own: a new submission id every run
    request_list.write_text("id,image,audio,size,motion,seed\n"
                            f"night-row,{shared_assets / 'face_grace_hopper.jpg'},"
                            f"{shared_assets / 'speech_cmu_arctic_a0009_3s.wav'},128,procedural,{seed}\n")
    out = tmp_path / "out"
    env = {key: value for key, value in ray_head["env"].items() if not key.startswith("RAY_AUTH")}
    result = subprocess.run(
        [str(VENV_BIN / "talkfarm"), "submit", str(request_list), "--out", str(out), "--address",
         ray_head["address"], "--token-file", str(ray_head["token_file"]), "--date", "2026-11-23",
         "--allow", str(shared_assets)],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job_id = result.stdout.splitlines()[0]
    manifest = out / f"manifest-{job_id}.parquet"
    assert str(manifest) in result.stdout, result.stdout[-3000:]       # `talkfarm batch` printed it last
    info = probe_video(out / "night-row.mp4")
    assert info["video_codec"] == "h264" and abs(info["duration_s"] - 3.1) < 0.15

    from core.storage import Storage
    from pipeline.manifest import read_manifest

    [row] = read_manifest(str(manifest), Storage())
    assert (row.request_id, row.status) == ("night-row", "done")
