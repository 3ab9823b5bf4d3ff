"""Metrics for real: a tiny batch job on a local Ray (stage actors in their own processes), its
/metrics endpoint scraped over HTTP during and after the run, and the deltas checked.

The job: one 3 s clip (Grace Hopper + CMU Arctic a0009, 256 px) and one row whose photo does
not exist. Expected: one render done, one failed and dead-lettered in the stage that failed,
frames and audio seconds equal to the finished render's, and one stage-latency observation per
stage call (alignment 2, audio 1, motion 1, decode and encode one per frame chunk).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.metrics import METRICS, exposed_series

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, fetched over HTTP."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _read_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"driver exited ({proc.returncode}) before {prefix!r}")
            continue
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError(f"no {prefix!r} within {timeout} s")


@pytest.fixture(scope="module")
def live_job(shared_assets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics-live")
    proc = subprocess.Popen([sys.executable, str(HERE / "live_driver.py"), str(shared_assets), str(tmp)],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, bufsize=1)
    try:
        port = int(_read_line(proc, "PORT ", 60))
        before = scrape(port)
        _read_line(proc, "RUNNING", 240)
        during = scrape(port)
        done = json.loads(_read_line(proc, "DONE ", 300))
        after = scrape(port)
        yield {"before": before, "during": during, "after": after, **done}
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_counters_and_histograms_move_by_the_right_amounts(live_job):
    states, before, after = live_job["states"], live_job["before"], live_job["after"]
    assert states["good"]["status"] == "done" and states["bad"]["status"] == "failed"
    result = states["good"]["result"]
    failed_stage = states["bad"]["stage"]
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731

    assert delta("talkfarm_renders_total", status="done") == 1
    assert delta("talkfarm_renders_total", status="failed") == 1
    assert delta("talkfarm_renders_total", status="reused") == 0
    assert delta("talkfarm_dead_letters_total", stage=failed_stage) == 1
    assert sum(v for (name, _), v in after.items() if name == "talkfarm_retries_total") == 0   # bad input: no retry
    assert result["frames"] > 0
    assert delta("talkfarm_frames_rendered_total") == result["frames"]
    assert delta("talkfarm_audio_rendered_seconds_total") == pytest.approx(result["audio_seconds"], rel=1e-6)

    # Stage latency histograms, observed inside the stage actors (other processes).
    chunks = math.ceil(result["frames"] / live_job["chunk_frames"])
    expected_calls = {"alignment": 2, "audio": 1, "motion": 1, "decode": chunks, "encode": chunks}
    for stage, calls in expected_calls.items():
        assert delta("talkfarm_stage_duration_seconds_count", stage=stage) == calls, stage
        assert delta("talkfarm_stage_duration_seconds_bucket", stage=stage, le="+Inf") == calls, stage
        assert delta("talkfarm_stage_duration_seconds_sum", stage=stage) > 0, stage
        buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in after.items()
                          if name == "talkfarm_stage_duration_seconds_bucket" and dict(labels)["stage"] == stage))
        assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"
    # The stage seconds add up to no more than the render's wall time per stage (decode spreads over 2 actors).
    render_seconds = delta("talkfarm_render_duration_seconds_sum")
    assert delta("talkfarm_render_duration_seconds_count") == 1 and render_seconds > 0
    assert delta("talkfarm_render_realtime_ratio_count") == 1
    assert delta("talkfarm_render_realtime_ratio_sum") == pytest.approx(render_seconds / result["audio_seconds"],
                                                                       rel=1e-6)
    # Gauges: the job ran, and nothing is queued any more; pool sizes as configured.
    assert value(live_job["during"], "talkfarm_jobs_running") == 1
    assert value(after, "talkfarm_jobs_running") == 0
    for stage in expected_calls:
        assert value(after, "talkfarm_queue_depth", stage=stage) == 0
    assert value(after, "talkfarm_pool_workers", stage="decode") == 2
    assert value(after, "talkfarm_pool_slots", stage="decode") == 4
    assert time.time() - value(after, "talkfarm_last_progress_timestamp_seconds") < 120


def test_endpoint_exposes_only_defined_talkfarm_series(live_job):
    names = {name for name, _ in live_job["after"]}
    talkfarm = {name for name in names if name.startswith("talkfarm_")}
    assert talkfarm <= exposed_series(), talkfarm - exposed_series()
    assert not names - talkfarm, "only talkfarm_ metrics on this endpoint"
    for (name, labels) in live_job["after"]:
        assert not {key for key, _ in labels} & {"job", "job_id", "request_id", "render_id", "pid"}


def test_naming_conventions():
    for metric in METRICS:
        assert metric.name.startswith("talkfarm_") and metric.name.count("talkfarm") == 1
        assert (metric.kind == "counter") == metric.name.endswith("_total"), metric.name
        if metric.kind == "histogram":
            assert metric.name.endswith(("_seconds", "_ratio", "_bytes")), metric.name
            assert list(metric.buckets) == sorted(metric.buckets)
        assert not set(metric.labels) & {"job", "job_id", "request_id", "render_id"}
        assert "milliseconds" not in metric.name and "_ms" not in metric.name


def test_other_processes_add_up(tmp_path):
    """Two separate processes record storage traffic; one endpoint serves the sum."""
    code = ("import sys; from monitoring.metrics import metrics; m = metrics(); "
            "m.storage_bytes('read', int(sys.argv[1])); m.storage_error('download')")
    env = {**__import__("os").environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (1000, 234):
        subprocess.run([sys.executable, "-c", code, str(n)], env=env, cwd=REPO, check=True, timeout=60)
    server = subprocess.Popen([sys.executable, "-m", "monitoring.metrics", "serve", "--port", "0", "--addr",
                               "127.0.0.1", "--dir", str(tmp_path)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        line = server.stdout.readline()
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        samples = scrape(port)
    finally:
        server.terminate()
        server.wait(10)
    assert value(samples, "talkfarm_storage_bytes_total", direction="read") == 1234
    assert value(samples, "talkfarm_storage_errors_total", op="download") == 2
