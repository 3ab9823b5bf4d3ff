"""`talkfarm batch / status / cancel / retry` as an operator runs them: the stored access
policy, the driver lease, one-line errors with documented exit codes, nothing lost.

The first tests call the CLI's ``main`` in this process (their jobs have no renderable row,
so no Ray starts); the last ones run real drivers as subprocesses on one local Ray cluster
with a real redis-server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.jobstate import RedisJobStore, SQLiteJobStore
from pipeline.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(monkeypatch, capsys):
    """``talkfarm ...`` in this process: returns (exit code, stdout lines, stderr lines)."""
    monkeypatch.setenv("TALKFARM_DEBUG", "1")       # keep fd 2 (pytest captures it)

    def run(*args: str):
        capsys.readouterr()
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return code, captured.out.splitlines(), captured.err.splitlines()
    return run


@pytest.fixture
def refused_job(tmp_path, shared_assets):
    """A team folder whose request file has no row that may render: rows outside the folder,
    a duplicate id, an undecodable line, a row without an id, and a typo'd column."""
    team = tmp_path / "team"
    (team / "in").mkdir(parents=True)
    face = shared_assets / "face_grace_hopper.jpg"
    shutil.copy(face, team / "in" / "face.jpg")
    (tmp_path / "other").mkdir()
    shutil.copy(face, tmp_path / "other" / "secret.jpg")
    (team / "r.csv").write_bytes(
        b"id,image,audio,sede\n"
        + f"abs,{face},in/a.wav,3\n".encode()                    # 2: outside (the shared assets)
        + b"up,../other/secret.jpg,in/a.wav,\n"                   # 3: outside (another team)
        + b"up,in/face.jpg,in/a.wav,\n"                           # 4: duplicate id
        + b"bytes,in/caf\xe9.jpg,in/a.wav,\n"                     # 5: not UTF-8
        + b",in/face.jpg,in/a.wav,\n")                            # 6: no id
    return team, tmp_path / "state.sqlite"


def _manifest(uri: str) -> dict:
    return {row.request_id: row for row in read_manifest(uri)}


def test_confined_job_loses_no_row_and_retry_keeps_its_policy(refused_job, cli, monkeypatch, tmp_path):
    team, state = refused_job
    monkeypatch.chdir(team)
    code, out, err = cli("batch", "r.csv", "--out", "out", "--state", state)
    assert code == 0, err
    assert any("warning" in line and "'sede'" in line for line in err), err
    rows = _manifest(out[-1])
    assert Path(out[-1]).parent == team / "out"
    assert len(rows) == 5 and {row.status for row in rows.values()} == {"failed"}
    assert rows["abs"].error_message.endswith("outside the allowed prefixes")
    assert rows["up"].error_message.endswith("outside the allowed prefixes")
    assert "duplicate id 'up' (first used on row 3)" in rows["row-4"].error_message
    assert "not UTF-8" in rows["row-5"].error_message and "missing id" in rows["row-6"].error_message
    access = json.loads(pq.read_schema(out[-1]).metadata[b"talkfarm.access"])
    assert access == {"read": [str(team)], "write": str(team / "out"), "allow_any": False}
    job = Path(out[-1]).stem.removeprefix("manifest-")

    # from any folder: status shows the stored policy; retry enforces it and keeps the history
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("status", job, "--state", state)
    assert code == 0 and f"access: reads under {team}; writes under {team / 'out'}" in out[1]
    code, out, err = cli("retry", job, "--state", state)
    assert code == 0, err
    rows = _manifest(out[-1])
    assert len(rows) == 5 and rows["abs"].error_message.endswith("outside the allowed prefixes")
    assert rows["abs"].attempt_history == [f"failed after 0 attempts: request: {rows['abs'].error_message}"]

    # the same job asked to run under another policy is refused; --strict refuses the typo
    monkeypatch.chdir(team)
    for extra, words in ((["--allow", str(tmp_path / "other")], "another access policy"),
                         (["--allow-any"], "another access policy"), (["--strict"], "'sede' (--strict)")):
        code, out, err = cli("batch", "r.csv", "--out", "out", "--state", state, *extra)
        assert (code, out, len(err)) == (2, [], 1) and words in err[0], err

    # a retry that cannot read the request file changes nothing
    (team / "r.csv").rename(team / "moved.csv")
    code, out, err = cli("retry", job, "--state", state)
    assert (code, out, len(err)) == (2, [], 1) and "object not found" in err[0], err
    code, out, _ = cli("status", job, "--state", state, "--json")
    report = json.loads("\n".join(out))
    assert report["counts"]["failed"] == 5 and all(row["message"] for row in report["failed"])
    assert report["access"] == access


def test_unknown_jobs_and_held_jobs_are_one_line_exit_2(refused_job, cli, monkeypatch):
    team, state = refused_job
    for command in ("cancel", "retry", "status"):
        code, out, err = cli(command, "no-such-job", "--state", state)
        assert (code, out) == (2, []) and err == ["talkfarm: error: no-such-job: no such job"], err
    store = SQLiteJobStore(state)
    store.acquire_lease("held", "elsewhere:4242:cafe", 60)
    code, out, err = cli("batch", team / "r.csv", "--out", team / "out", "--state", state, "--job-id", "held")
    assert (code, out, len(err)) == (2, [], 1) and "already being run by driver elsewhere:4242:cafe" in err[0]
    threading.Timer(1.5, store.release_lease, ("held", "elsewhere:4242:cafe")).start()
    started = time.monotonic()
    code, out, err = cli("batch", team / "r.csv", "--out", team / "out", "--state", state, "--job-id", "held",
                         "--wait")
    assert code == 0 and time.monotonic() - started > 1.0 and "waiting" in err[0], err
    assert len(read_manifest(out[-1])) == 5
    code, out, err = cli("batch", team / "r.csv", "--out", "/proc/talkfarm-out", "--state", state, "--allow-any")
    assert code == 2 and err[-1].startswith("talkfarm: error: /proc/talkfarm-out: output folder cannot be written")
    assert [line for line in err if "error" in line] == err[-1:], err


def test_rows_no_longer_in_the_file_fail_instead_of_crashing_the_driver(refused_job, cli):
    from pipeline.access import AccessPolicy

    team, state = refused_job
    policy = AccessPolicy.for_job(str(team / "r.csv"), str(team / "out"))
    SQLiteJobStore(state).create_job("renamed", [("ghost", None, 0)], {"requests": str(team / "old.csv"),
                                                                       "out": str(team / "out"),
                                                                       "access": policy.to_meta()})
    code, out, err = cli("batch", team / "r.csv", "--out", team / "out", "--state", state, "--job-id", "renamed")
    assert code == 0, err
    ghost = next(s for s in SQLiteJobStore(state).request_states("renamed") if s.request_id == "ghost")
    assert (ghost.status, ghost.error_message) == ("failed", "no longer in the request file")


def test_header_only_file_starts_no_ray(tmp_path, cli):
    (tmp_path / "r.csv").write_text("id,image,audio\n")
    code, out, err = cli("batch", tmp_path / "r.csv", "--out", tmp_path / "out", "--state", tmp_path / "s.sqlite")
    assert code == 0 and read_manifest(out[-1]) == []
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


# ---------------------------------------------------------------- real drivers on one Ray cluster

def talkfarm(*args, cwd: Path = REPO, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.fixture
def team_job(tmp_path, shared_assets):
    """Two renderable rows (128 px, 3 s of speech) in a team folder, plus a duplicate id."""
    team = tmp_path / "team"
    (team / "in").mkdir(parents=True)
    shutil.copy(shared_assets / "face_grace_hopper.jpg", team / "in" / "face.jpg")
    shutil.copy(shared_assets / "speech_cmu_arctic_a0009_3s.wav", team / "in" / "a.wav")
    (team / "r.csv").write_text("id,image,audio,size\nr0,in/face.jpg,in/a.wav,128\nr1,in/face.jpg,in/a.wav,128\n"
                                "r0,in/face.jpg,in/a.wav,128\n")
    return team


def _wait_for(predicate, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# Slow (two real drivers on Ray and Redis, ~1 min on 2 cores); the fast tier keeps its parts:
# one lease for drivers started together on both stores (test_lease), the held job's one-line
# refusal and --wait finding the finished job (test_unknown_jobs_and_held_jobs_are_one_line_exit_2).
@pytest.mark.slow
def test_two_drivers_on_one_job_render_each_row_once(ray_session, redis_server, team_job):
    address = ray_session
    common = ("batch", team_job / "r.csv", "--out", team_job / "out", "--redis", redis_server.url,
              "--address", address, "--quiet")
    first, second = talkfarm(*common), talkfarm(*common)
    (out_a, err_a), (out_b, err_b) = first.communicate(timeout=600), second.communicate(timeout=600)
    results = sorted([(first.returncode, out_a, err_a), (second.returncode, out_b, err_b)])
    (code_ok, manifest, _), (code_refused, refused_out, refused_err) = results
    assert (code_ok, code_refused, refused_out) == (0, 2, ""), results
    assert refused_err.strip().count("\n") == 0 and "already being run by driver" in refused_err, refused_err
    rows = _manifest(manifest.strip())
    assert {rid: (row.status, row.attempts) for rid, row in rows.items()} == {
        "r0": ("done", 1), "r1": ("done", 1), "row-4": ("failed", 0)}, rows
    inodes = {rid: (team_job / "out" / f"{rid}.mp4").stat().st_ino for rid in ("r0", "r1")}
    for rid in ("r0", "r1"):
        assert oct((team_job / "out" / f"{rid}.mp4.provenance.json").stat().st_mode & 0o777) == \
            oct((team_job / "out" / f"{rid}.mp4").stat().st_mode & 0o777)
    assert [p.name for p in (team_job / "out").iterdir() if ".partial" in p.name] == []

    # A third driver, waiting, finds the job finished: nothing renders again, no Ray actors start.
    third = talkfarm(*common, "--wait")
    out_c, err_c = third.communicate(timeout=300)
    assert third.returncode == 0, err_c
    assert {rid: (team_job / "out" / f"{rid}.mp4").stat().st_ino for rid in inodes} == inodes
    store = RedisJobStore(redis_server.url)
    job = Path(out_c.strip()).stem.removeprefix("manifest-")
    assert [(s.request_id, s.status, s.attempts) for s in store.request_states(job)] == [
        ("r0", "done", 1), ("r1", "done", 1), ("row-4", "failed", 0)]


@pytest.mark.slow
def test_redis_emptied_mid_run_is_one_line_exit_1(ray_session, redis_server, team_job):
    driver = talkfarm("batch", team_job / "r.csv", "--out", team_job / "out", "--redis", redis_server.url,
                      "--address", ray_session, "--quiet", "--lease-seconds", "3")
    import redis

    client = redis.Redis.from_url(redis_server.url)
    _wait_for(lambda: client.keys("talkfarm:job:*:req:r0") or driver.poll() is not None)
    client.flushall()        # what a Redis restarted without its data looks like to the driver
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 1, (out, err)
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("talkfarm: error: job"), err
    assert [line for line in lines if line.startswith("talkfarm:")] == lines[-1:], err
    assert ("vanished from the job store" in lines[-1]) or ("lost job" in lines[-1]), lines[-1]


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions bind: root's override dropped (setpriv),
    nothing for another user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made to bind")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.mark.slow
def test_output_made_read_only_mid_job(ray_session, team_job, tmp_path):
    out, state = tmp_path / "out", tmp_path / "state.sqlite"
    out.mkdir()
    driver = subprocess.Popen([*_unprivileged(), sys.executable, "-m", "pipeline.cli", "batch",
                               str(team_job / "r.csv"), "--out", str(out), "--state", str(state),
                               "--address", ray_session, "--quiet"], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: any(out.iterdir()) or driver.poll() is not None)
        out.chmod(0o555)
        stdout, err = driver.communicate(timeout=600)
    finally:
        out.chmod(0o755)
    assert (driver.returncode, stdout) == (1, ""), err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "cannot write the manifest" in lines[-1], err
    assert [line for line in lines if line.startswith("talkfarm:")] == lines[-1:], err
    job = lines[-1].split("talkfarm status ")[-1].strip()
    counts = SQLiteJobStore(state).job_status(job).counts
    assert counts["pending"] == counts["running"] == 0 and counts["done"] + counts["failed"] == 3, counts


@pytest.mark.slow
def test_reuse_never_reads_another_jobs_output(ray_session, team_job, tmp_path):
    """Job B renders the same content as job A, into another output prefix that cannot read
    A's: it renders afresh instead of copying A's video (or dying on the refusal)."""
    state = tmp_path / "state.sqlite"
    first = talkfarm("batch", team_job / "r.csv", "--out", tmp_path / "out-a", "--state", state,
                     "--address", ray_session, "--quiet")
    assert first.wait(timeout=600) == 0, first.stderr.read()
    second = talkfarm("batch", team_job / "r.csv", "--out", tmp_path / "out-b", "--state", state,
                      "--address", ray_session, "--quiet")
    stdout, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    assert str(tmp_path / "out-a") not in err
    rows = _manifest(stdout.strip())
    assert {rid: (row.status, row.attempts) for rid, row in rows.items()} == {
        "r0": ("done", 1), "r1": ("done", 1), "row-4": ("failed", 0)}
    store = SQLiteJobStore(state)
    job = Path(stdout.strip()).stem.removeprefix("manifest-")
    # r0 and r1 are the same content: one may reuse the other's render of this job (same
    # prefix), but A's is never the source, so B renders it afresh at least once.
    assert not all(state.result["reused"] for state in store.request_states(job)[:2])
    for rid in ("r0", "r1"):
        assert (tmp_path / "out-b" / f"{rid}.mp4").stat().st_ino != (tmp_path / "out-a" / f"{rid}.mp4").stat().st_ino


@pytest.mark.slow
def test_killed_driver_is_taken_over(ray_session, team_job, tmp_path):
    """kill -9 of a driver mid-render: a second driver, waiting on the lease, takes the job over
    once the lease expires and finishes it; nothing half-written is left."""
    out, state = tmp_path / "out", tmp_path / "state.sqlite"
    common = ("batch", team_job / "r.csv", "--out", out, "--state", state, "--address", ray_session, "--quiet",
              "--lease-seconds", "3")
    doomed = talkfarm(*common)
    _wait_for(lambda: (out.is_dir() and any(out.glob(".*.partial"))) or doomed.poll() is not None)
    assert doomed.poll() is None, doomed.communicate()
    doomed.kill()
    doomed.wait()
    successor = talkfarm(*common, "--wait")
    stdout, err = successor.communicate(timeout=600)
    assert successor.returncode == 0, err
    rows = _manifest(stdout.strip())
    assert {rid: row.status for rid, row in rows.items()} == {"r0": "done", "r1": "done", "row-4": "failed"}
    assert max(rows["r0"].attempts, rows["r1"].attempts) == 2          # the killed driver's attempt counted
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"manifest-{Path(stdout.strip()).stem.removeprefix('manifest-')}.parquet", "r0.mp4", "r1.mp4",
         "r0.mp4.provenance.json", "r1.mp4.provenance.json"])
