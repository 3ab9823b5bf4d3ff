"""talkfarm's Prometheus metrics: the single source of truth for names, types, help and labels.

Cross-process design (works on Ray 2.60 here and on KubeRay): prometheus_client's
*multiprocess mode*. Every process that records metrics -- the job driver and every stage
actor -- writes its samples to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``; an HTTP
endpoint reads the whole folder and serves the sum over processes. Ray workers inherit the
raylet's environment, so setting the variable before Ray starts (``start_http_server`` does
it for a local run; the Helm chart sets it on every Ray pod) is all the actors need.

Endpoints:
  * ``talkfarm batch --metrics-port N`` (or ``TALKFARM_METRICS_PORT``): the driver's
    ``start_http_server(port)`` (``pipeline.metrics_endpoint``) serves ``/metrics`` for the driver
    and all actors writing to its folder (a local Ray's actors inherit it).
  * cluster: every Ray pod runs ``python -m monitoring.metrics serve --port 9464`` (the
    chart's ``metrics-exporter`` sidecar) over the pod's shared metrics folder; the
    ServiceMonitor scrapes port ``metrics`` (9464) on head and workers.

Conventions: one ``talkfarm_`` prefix, base units (seconds, bytes), ``_total`` counters,
``_seconds`` histograms, and only low-cardinality labels (stage, status, direction, op):
never a job id or a request id.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PREFIX = "talkfarm_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PORT_ENV = "TALKFARM_METRICS_PORT"
ADDR_ENV = "TALKFARM_METRICS_ADDR"

RENDER_STATUSES = ("done", "reused", "failed")
STORAGE_DIRECTIONS = ("read", "write")

# Seconds. Stage calls range from ~10 ms (motion on a short clip) to minutes (a long decode chunk on CPU).
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RENDER_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Wall seconds per second of audio: < 1 is faster than real time.
REALTIME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


@dataclass(frozen=True)
class MetricDef:
    """One metric: full exposed name (counters end in ``_total``), type, help, label names.

    ``multiprocess_mode`` says how a gauge is combined over processes (prometheus_client).
    """

    name: str
    kind: str                      # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    multiprocess_mode: str | None = None
    recorded_by: str = "driver"    # driver | actor | storage (where the calls live)

    def series(self) -> tuple[str, ...]:
        """The sample names this metric exposes."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


METRICS: tuple[MetricDef, ...] = (
    MetricDef("talkfarm_stage_duration_seconds", "histogram",
              "Wall time of one stage call (one batch) inside a stage worker.", ("stage",), STAGE_BUCKETS,
              recorded_by="actor"),
    MetricDef("talkfarm_stage_errors_total", "counter",
              "Stage calls that raised (worker crash, storage or runtime error; bad input is not an error here).",
              ("stage",), recorded_by="actor"),
    MetricDef("talkfarm_renders_total", "counter",
              "Requests finished, by status: done (rendered), reused (identical render found), failed (final).",
              ("status",)),
    MetricDef("talkfarm_frames_rendered_total", "counter", "Video frames written by finished renders."),
    MetricDef("talkfarm_audio_rendered_seconds_total", "counter", "Seconds of speech audio rendered to video."),
    MetricDef("talkfarm_render_duration_seconds", "histogram",
              "Wall time of one render, from claim to finished video.", (), RENDER_BUCKETS),
    MetricDef("talkfarm_render_realtime_ratio", "histogram",
              "Realtime factor of one render: wall seconds per second of audio (< 1 is faster than real time).",
              (), REALTIME_BUCKETS),
    MetricDef("talkfarm_retries_total", "counter", "Request attempts that failed transiently and were queued again.",
              ("stage",)),
    MetricDef("talkfarm_dead_letters_total", "counter",
              "Requests that failed for good and went to the dead-letter list, by the stage that failed.", ("stage",)),
    MetricDef("talkfarm_queue_depth", "gauge", "Calls submitted to a stage pool and not finished yet.", ("stage",),
              multiprocess_mode="livesum"),
    MetricDef("talkfarm_pool_workers", "gauge", "Workers (actors) in a stage pool.", ("stage",),
              multiprocess_mode="livesum"),
    MetricDef("talkfarm_pool_slots", "gauge", "Call slots of a stage pool (workers x max in flight).", ("stage",),
              multiprocess_mode="livesum"),
    MetricDef("talkfarm_jobs_running", "gauge", "Batch jobs whose driver is running.", (),
              multiprocess_mode="livesum"),
    MetricDef("talkfarm_last_progress_timestamp_seconds", "gauge",
              "Unix time of the last finished stage call or request (any process).", (), multiprocess_mode="max"),
    MetricDef("talkfarm_storage_bytes_total", "counter", "Bytes moved to or from object storage (S3).",
              ("direction",), recorded_by="storage"),
    MetricDef("talkfarm_storage_errors_total", "counter", "Object-storage operations that failed after retries.",
              ("op",), recorded_by="storage"),
)

BY_NAME = {metric.name: metric for metric in METRICS}


def exposed_series() -> set[str]:
    """Every sample name the code can expose (for cross-checking dashboards and alerts)."""
    return {series for metric in METRICS for series in metric.series()}


def series_labels() -> dict[str, set[str]]:
    """Sample name -> allowed label names (histogram buckets add ``le``)."""
    out: dict[str, set[str]] = {}
    for metric in METRICS:
        for series in metric.series():
            out[series] = set(metric.labels) | ({"le"} if series.endswith("_bucket") else set())
    return out


# ---------------------------------------------------------------------------- process setup

_lock = threading.RLock()
_instance: "TalkfarmMetrics | None" = None


def enable_multiprocess(directory: str | os.PathLike | None = None) -> str:
    """Make this process (and every process started from it later, e.g. a local Ray) write
    metrics to a shared folder. Call before ``ray.init`` and before recording anything.

    Uses ``$PROMETHEUS_MULTIPROC_DIR`` if set, else ``directory``, else a fresh temp folder.
    Returns the folder.
    """
    path = os.environ.get(MULTIPROC_ENV) or (os.fspath(directory) if directory else None) \
        or tempfile.mkdtemp(prefix="talkfarm-metrics-")
    os.makedirs(path, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path
    if _instance is not None and not _instance.multiprocess:
        raise RuntimeError("metrics were recorded before enable_multiprocess(); call it first (before ray.init)")
    return path


class TalkfarmMetrics:
    """The metric objects of this process plus the small recording API.

    Get the process-wide instance with :func:`metrics`. All methods are cheap and never raise
    on an unknown stage name (it is recorded as given).
    """

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            values,
        )

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if self.multiprocess:
            os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
            if values.ValueClass is values.MutexValue:
                # prometheus_client picked its value class at import, before the variable was set
                # (Ray imports it early in workers): switch to the mmap-backed class now.
                values.ValueClass = values.MultiProcessValue()
            self.registry = None             # samples go to files; serve them with MultiProcessCollector
            atexit.register(_mark_dead, os.getpid())
        else:
            self.registry = CollectorRegistry()
        kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
        self._m: dict[str, Any] = {}
        for metric in METRICS:
            kwargs: dict[str, Any] = {"labelnames": metric.labels, "registry": self.registry}
            if metric.buckets:
                kwargs["buckets"] = metric.buckets
            if metric.multiprocess_mode:
                kwargs["multiprocess_mode"] = metric.multiprocess_mode
            name = metric.name[: -len("_total")] if metric.kind == "counter" else metric.name
            self._m[metric.name] = kinds[metric.kind](name, metric.help, **kwargs)

    def _get(self, name: str, *labels: str):
        metric = self._m[name]
        return metric.labels(*labels) if labels else metric

    def _progress(self) -> None:
        self._get("talkfarm_last_progress_timestamp_seconds").set(time.time())

    # ---------------------------------------------------------------- stage workers (actors)

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One stage call took ``seconds``."""
        self._get("talkfarm_stage_duration_seconds", stage).observe(seconds)
        self._progress()

    @contextlib.contextmanager
    def stage_timer(self, stage: str) -> Iterator[None]:
        """Time a stage call: observes the duration, counts an error if it raises."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self._get("talkfarm_stage_errors_total", stage).inc()
            raise
        finally:
            self.observe_stage(stage, time.perf_counter() - started)

    # ---------------------------------------------------------------- driver

    def render_finished(self, status: str, frames: int = 0, audio_seconds: float = 0.0,
                        seconds: float | None = None, realtime_factor: float | None = None) -> None:
        """A request finished: ``status`` done / reused / failed; ``seconds`` its wall time
        (claim to finish). The realtime factor is ``seconds / audio_seconds`` unless given."""
        self._get("talkfarm_renders_total", status).inc()
        if status == "done":       # reused renders wrote no frames; failed ones count nothing
            if frames:
                self._get("talkfarm_frames_rendered_total").inc(frames)
            if audio_seconds:
                self._get("talkfarm_audio_rendered_seconds_total").inc(audio_seconds)
            if seconds is not None:
                self._get("talkfarm_render_duration_seconds").observe(seconds)
            if realtime_factor is None and seconds is not None and audio_seconds > 0:
                realtime_factor = seconds / audio_seconds
            if realtime_factor is not None:
                self._get("talkfarm_render_realtime_ratio").observe(realtime_factor)
        self._progress()

    def retry(self, stage: str) -> None:
        """A request failed transiently in ``stage`` and was queued again."""
        self._get("talkfarm_retries_total", stage).inc()
        self._progress()

    def dead_letter(self, stage: str) -> None:
        """A request failed for good in ``stage`` (dead-lettered)."""
        self._get("talkfarm_dead_letters_total", stage).inc()
        self._progress()

    def request_failed(self, stage: str, final: bool) -> None:
        """A failed attempt: final -> dead letter + ``renders_total{status="failed"}``; else a retry."""
        if final:
            self.dead_letter(stage)
            self._get("talkfarm_renders_total", "failed").inc()
        else:
            self.retry(stage)

    def set_queue_depth(self, stage: str, n: int) -> None:
        self._get("talkfarm_queue_depth", stage).set(n)

    def set_pool(self, stage: str, workers: int, slots: int) -> None:
        self._get("talkfarm_pool_workers", stage).set(workers)
        self._get("talkfarm_pool_slots", stage).set(slots)

    def observe_executor(self, executor: Any) -> None:
        """Queue depth and pool size of every stage, read from a RayExecutor / LocalExecutor."""
        in_flight = getattr(executor, "in_flight", None) or {}
        pools = getattr(getattr(executor, "config", None), "pools", None) or {}
        for stage in pools or in_flight:
            self.set_queue_depth(stage, sum(in_flight.get(stage, ())))
            spec = pools.get(stage)
            if spec is not None:
                self.set_pool(stage, spec.size, spec.size * spec.max_in_flight)

    @contextlib.contextmanager
    def job_running(self) -> Iterator[None]:
        """Mark a batch job as running for the duration of the block."""
        gauge = self._get("talkfarm_jobs_running")
        gauge.inc()
        self._progress()
        try:
            yield
        finally:
            gauge.dec()

    # ---------------------------------------------------------------- storage

    def storage_bytes(self, direction: str, n: int) -> None:
        """``n`` bytes read from (``read``) or written to (``write``) object storage."""
        if n:
            self._get("talkfarm_storage_bytes_total", direction).inc(n)

    def storage_error(self, op: str) -> None:
        """An object-storage operation (``read``, ``write``, ``download``, ``delete``...) failed."""
        self._get("talkfarm_storage_errors_total", op).inc()

    # ---------------------------------------------------------------- exposition

    def collector_registry(self):
        """A registry with everything this endpoint should serve."""
        if not self.multiprocess:
            return self.registry
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        registry.register(_TalkfarmOnly(multiprocess.MultiProcessCollector(None)))
        return registry


def metrics() -> TalkfarmMetrics:
    """This process's metrics (created on first use, after the multiprocess setting is read)."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = TalkfarmMetrics()
        return _instance


def _mark_dead(pid: int) -> None:
    """Drop a finished process's live gauges (its counters and histograms stay in the totals)."""
    try:
        from prometheus_client import multiprocess

        if os.environ.get(MULTIPROC_ENV):
            multiprocess.mark_process_dead(pid)
    except Exception:
        pass


class _TalkfarmOnly:
    """Only the talkfarm_ families of the folder. Other prometheus_client users started under the
    same environment (Ray's autoscaler monitor inherits it too) also write files there."""

    def __init__(self, inner):
        self.inner = inner

    def collect(self):
        return [family for family in self.inner.collect() if family.name.startswith(PREFIX)]


def start_http_server(port: int = 9464, addr: str = "127.0.0.1", multiproc_dir: str | None = None) -> int:
    """Serve ``/metrics`` for this process and every process sharing its metrics folder.

    Call in the driver before Ray starts, so the stage actors inherit the folder. ``port=0``
    picks a free port. Returns the bound port.
    """
    from prometheus_client import start_http_server as _serve

    enable_multiprocess(multiproc_dir)
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    registry.register(_TalkfarmOnly(multiprocess.MultiProcessCollector(None)))
    server, _thread = _serve(port, addr=addr, registry=registry)
    return int(server.server_port)


def main(argv: list[str] | None = None) -> int:
    """``python -m monitoring.metrics serve --port 9464 [--addr 0.0.0.0] [--dir PATH]``: the pod
    exporter. Serves the metrics folder shared by every talkfarm process of the pod."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m monitoring.metrics")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the shared metrics folder over HTTP")
    serve.add_argument("--port", type=int, default=9464)
    serve.add_argument("--addr", default="0.0.0.0")
    serve.add_argument("--dir", default=None, help=f"metrics folder (default ${MULTIPROC_ENV})")
    sub.add_parser("list", help="print the metric definitions")
    args = parser.parse_args(argv)
    if args.command == "list":
        for metric in METRICS:
            print(f"{metric.name}\t{metric.kind}\t{','.join(metric.labels)}\t{metric.help}")
        return 0
    port = start_http_server(args.port, args.addr, args.dir)
    print(f"serving {os.environ[MULTIPROC_ENV]} on http://{args.addr}:{port}/metrics", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
