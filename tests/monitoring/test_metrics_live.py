"""Metrics for real: `talkfarm batch --metrics-port 0` run as a subprocess (the product's own
command; its stage actors are separate Ray worker processes), its /metrics endpoint scraped
over HTTP before, during and after the job, and the deltas checked. The test only reads.

The job: one 3 s clip (Grace Hopper + CMU Arctic a0009, 256 px) and one row whose photo does
not exist. Expected: one render done, one failed and dead-lettered in the stage that failed,
frames and audio seconds equal to the finished render's, and one stage-latency observation per
stage call (alignment 2, audio 1, motion 1, decode and encode one per frame chunk).
"""

from __future__ import annotations

import math
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.metrics import METRICS, exposed_series
from pipeline.graph import GraphConfig
from pipeline.jobstate import SQLiteJobStore

HERE = Path(__file__).parent
REPO = HERE.parents[1]
TALKFARM = Path(sys.executable).parent / "talkfarm"


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


def _lines(stream, sink: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line)
    sink.put(None)


def _wait_for(lines: queue.Queue, proc: subprocess.Popen, marker: str, timeout: float, seen: list[str]) -> str:
    """The first line containing ``marker``; fails with what the process printed if none comes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError(f"talkfarm batch ended ({proc.poll()}) before {marker!r}:\n{''.join(seen)}")
        seen.append(line)
        if marker in line:
            return line.strip()
    raise AssertionError(f"no {marker!r} within {timeout} s:\n{''.join(seen)}")


@pytest.fixture(scope="module")
def live_job(shared_assets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics-live")
    requests = tmp / "requests.csv"
    requests.write_text("id,image,audio,size\n"
                        f"good,{shared_assets / 'face_grace_hopper.jpg'},{shared_assets / 'speech_cmu_arctic_a0009_3s.wav'},256\n"
                        f"bad,{tmp / 'no-such-photo.jpg'},{shared_assets / 'speech_cmu_arctic_a0009_3s.wav'},256\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PROMETHEUS_MULTIPROC_DIR",
                                                                          "TALKFARM_METRICS_PORT")}
    proc = subprocess.Popen([str(TALKFARM), "batch", str(requests), "--out", str(tmp / "out"), "--state",
                             str(tmp / "jobs.sqlite"), "--job-id", "metrics-live", "--quiet", "--metrics-port", "0",
                             "--allow", str(shared_assets),
                             "--metrics-linger", "120"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    stderr_lines, stdout_lines = queue.Queue(), queue.Queue()
    for stream, sink in ((proc.stderr, stderr_lines), (proc.stdout, stdout_lines)):
        threading.Thread(target=_lines, args=(stream, sink), daemon=True).start()
    seen: list[str] = []
    try:
        banner = _wait_for(stderr_lines, proc, "metrics on http://", 60, seen)
        port = int(banner.rsplit(":", 1)[1].split("/")[0])
        before = scrape(port)
        during = {}
        deadline = time.monotonic() + 300
        while stdout_lines.empty() and time.monotonic() < deadline:   # the manifest line ends the job
            samples = scrape(port)
            if value(samples, "talkfarm_jobs_running") == 1:
                during = samples
                if value(samples, "talkfarm_stage_duration_seconds_count", stage="alignment") > 0:
                    break
            time.sleep(0.3)
        manifest = _wait_for(stdout_lines, proc, "manifest-metrics-live.parquet", 300, seen)
        after = scrape(port)
        with SQLiteJobStore(tmp / "jobs.sqlite") as store:
            states = {s.request_id: {"status": s.status, "stage": s.error_stage,
                                     "result": (s.result or {}).get("result")}
                      for s in store.request_states("metrics-live")}
        yield {"before": before, "during": during, "after": after, "states": states, "manifest": manifest,
               "chunk_frames": GraphConfig().chunk_frames}
    finally:
        proc.terminate()
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
    during = live_job["during"]
    assert value(during, "talkfarm_jobs_running") == 1, "scraped while the job ran"
    assert value(during, "talkfarm_pool_workers", stage="decode") == 2
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
