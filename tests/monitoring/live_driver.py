"""A tiny batch job on a local Ray with the metrics endpoint up (run by test_metrics_live.py).

Prints ``PORT <n>`` once /metrics is served, ``DONE <json>`` when the job has finished, then
keeps serving until stdin closes, so the test can scrape the live endpoint before and after.

Metrics wiring: if pipeline.graph / pipeline.batch already call monitoring.metrics (the lead's
wiring), they are used as they are; otherwise this script adds exactly the calls the wiring
adds (StageWorker.run timed with ``stage_timer``; BatchDriver reporting finishes, failures,
queue depth and the running job), so the endpoint is exercised through the same API.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from monitoring.metrics import metrics, start_http_server


class TimedStage:
    """What StageWorker.run does once wired: ``with metrics().stage_timer(name): stage(batch)``."""

    def __init__(self, factory):
        self.stage = factory()
        self.name = self.stage.name

    def setup(self):
        self.stage.setup()

    def __call__(self, batch):
        with metrics().stage_timer(self.name):
            return self.stage(batch)


def main() -> int:
    shared, tmp = Path(sys.argv[1]), Path(sys.argv[2])
    port = start_http_server(0)                     # before Ray starts: actors inherit the metrics folder
    print(f"PORT {port}", flush=True)

    import ray

    import pipeline.batch as batch_module
    import pipeline.graph as graph_module
    from pipeline.batch import BatchDriver
    from pipeline.graph import GraphConfig, RayExecutor, stage_factories
    from pipeline.jobstate import RequestSpec, SQLiteJobStore
    from pipeline.schemas import RenderControls, RenderRequest
    from pipeline.storage import Storage

    graph_wired = "monitoring" in inspect.getsource(graph_module.StageWorker)
    driver_wired = "monitoring" in inspect.getsource(batch_module.BatchDriver)

    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    factories = stage_factories(Storage())
    if not graph_wired:
        factories = {name: functools.partial(TimedStage, factory) for name, factory in factories.items()}
    executor = RayExecutor(factories, GraphConfig())

    class WiredDriver(BatchDriver):
        """The driver-side calls of the wiring (only used while pipeline.batch lacks them)."""

        def _finish(self, job_id, item, result, task, active, progress, reused=False):
            super()._finish(job_id, item, result, task, active, progress, reused)
            metrics().render_finished("reused" if reused else "done", result.frames, result.audio_seconds,
                                      seconds=(datetime.now(timezone.utc) - item.created_at).total_seconds())

        def _fail(self, job_id, request_id, active, progress, stage, message, transient):
            failed_before = progress.failed
            cleanup = super()._fail(job_id, request_id, active, progress, stage, message, transient)
            metrics().request_failed(stage, final=progress.failed > failed_before)
            return cleanup

    driver_class = BatchDriver if driver_wired else WiredDriver
    on_progress = None if driver_wired else (lambda progress: metrics().observe_executor(executor))

    small = RenderControls(size=256)
    requests = {
        "good": RenderRequest(id="good", image=str(shared / "face_grace_hopper.jpg"),
                              audio=str(shared / "speech_cmu_arctic_a0009_3s.wav"), output=str(tmp / "good.mp4"),
                              controls=small),
        "bad": RenderRequest(id="bad", image=str(tmp / "no-such-photo.jpg"),
                             audio=str(shared / "speech_cmu_arctic_a0009_3s.wav"), output=str(tmp / "bad.mp4"),
                             controls=small),
    }
    store = SQLiteJobStore(tmp / "jobs.sqlite")
    store.create_job("metrics-live", [RequestSpec(rid, None, 0) for rid in requests])
    driver = driver_class(executor, store, Storage(), GraphConfig(), on_progress=on_progress)
    with metrics().job_running():
        print("RUNNING", flush=True)
        driver.run("metrics-live", requests)
    metrics().observe_executor(executor)
    states = {s.request_id: {"status": s.status, "stage": s.error_stage, "result": (s.result or {}).get("result")}
              for s in store.request_states("metrics-live")}
    print("DONE " + json.dumps({"states": states, "chunk_frames": GraphConfig().chunk_frames,
                                "wired": {"graph": graph_wired, "driver": driver_wired}}), flush=True)
    sys.stdin.read()                                 # keep serving until the test is done scraping
    executor.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
