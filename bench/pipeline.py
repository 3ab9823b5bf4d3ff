"""Batch pipeline benchmark: N short real renders through local Ray vs one after another in-process.

    .venv/bin/python bench/pipeline.py [--requests 40] [--size 512] [--out out/bench-pipeline]
                                       [--graph graph.yaml] [--no-baseline] [--threads N]
                                       [--assets /work/shared/assets] [--no-qc]

Builds N distinct requests from the shared assets (2 portraits x 2 short CMU Arctic clips,
seed varied so every render id differs and nothing is reused), then

1. renders them one after another in this process with ``pipeline.render.LocalRenderer``
   (the same stages as ``talkfarm render``), and
2. runs them as one batch job the way ``talkfarm batch`` does with its embedded defaults:
   SQLite job state (``open_job_store``), local storage, a local Ray started by
   ``pipeline.batch.open_executor``, ``BatchDriver.run`` and ``write_job_manifest``.

Like with like: both sides run with the same OpenMP / torch threads per process, set the way
Ray sets them for an actor: ``OMP_NUM_THREADS`` before torch loads, by default what Ray gives
a decode actor (``max(1, floor(cpus))``, 1 for the default 0.5 CPU); Ray keeps a value already
set, so ``--threads N`` sets both sides. (Not ``torch.set_num_threads``: once CTranslate2, the
recogniser, has set the process's OpenMP threads, a later call breaks MKL's LU solve in the
decoder.) Both sides are timed twice: from first render to last result, and with their
start-up and end counted (in-process: importing torch and the stages, model loading;
pipeline: Ray start, actor start-up and model loading, Ray shutdown, the manifest).

The executor and the job store handed to the driver are thin timing proxies (they forward
every call unchanged): they time the driver's calls into Ray and into the job store, and read
each call's own stage seconds off the results it returns (on Ray every frame chunk carries its
own copy of the task, so the per-chunk decode/encode seconds are only visible there; the
manifest keeps the last chunk's only, see the note printed at the end).

Prints renders/min, frames/s, the busy share of every stage pool, the pipeline overhead
(defined in the printout), peak memory and the machine. Copy the tables into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import cpu_model, peak_rss_mib  # noqa: E402 - needs the repo on sys.path
from pipeline.graph import STAGES  # noqa: E402

IMAGES = ("face_grace_hopper.jpg", "face_astronaut_eileen_collins.png")
AUDIOS = ("speech_cmu_arctic_a0007_4s.wav", "speech_cmu_arctic_a0009_3s.wav")


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict ({} if the process is gone)."""
    try:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in
                                               Path(f"/proc/{pid}/status").read_text().splitlines())}
    except OSError:
        return {}


class _ThreadProbe:
    def threads(self) -> str:
        import cv2
        import torch

        return f"torch {torch.get_num_threads()}, cv2 {cv2.getNumThreads()}"


def probe_threads(cpus_values) -> dict[float, str]:
    """Torch / OpenCV threads Ray gives an actor of each pool's CPU size (Ray sets
    OMP_NUM_THREADS inside the worker, so /proc/<pid>/environ does not show it)."""
    import ray

    found = {}
    for cpus in cpus_values:
        actor = ray.remote(num_cpus=cpus)(_ThreadProbe).remote()
        try:
            found[cpus] = ray.get(actor.threads.remote(), timeout=60)
        except Exception as err:  # cluster still busy releasing the pools
            found[cpus] = f"? ({type(err).__name__})"
        ray.kill(actor)
    return found


def kib(text: str | None) -> float:
    return float(text.split()[0]) / 1024.0 if text else float("nan")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def make_requests(assets: Path, out: Path, count: int, size: int):
    from core.schemas import RenderControls, RenderRequest

    pairs = [(image, audio) for image in IMAGES for audio in AUDIOS]
    requests = []
    for index in range(count):
        image, audio = pairs[index % len(pairs)]
        seed = index // len(pairs)
        rid = f"r{index:03d}-{Path(image).stem.removeprefix('face_')[:9]}-{Path(audio).stem[-8:]}-s{seed}"
        requests.append(RenderRequest(id=rid, image=str(assets / image), audio=str(assets / audio),
                                      output=str(out / f"{rid}.mp4"), controls=RenderControls(size=size, seed=seed)))
    return requests


class TimedExecutor:
    """Forwards to the real executor; times submit/wait/result and collects per-call stage seconds."""

    def __init__(self, inner):
        self.inner = inner
        self.driver_seconds = defaultdict(float)      # submit / wait / result -> seconds in the driver
        self.stage_seconds = defaultdict(float)       # stage -> seconds measured inside the workers
        self.calls = defaultdict(int)
        self.first_submit: float | None = None

    def capacity(self, stage):
        return self.inner.capacity(stage)

    def submit(self, stage, batch, key=None, tag=None):
        started = time.perf_counter()
        self.first_submit = self.first_submit or started
        try:
            return self.inner.submit(stage, batch, key=key, tag=tag)
        finally:
            self.driver_seconds["submit"] += time.perf_counter() - started

    def wait(self, handles, timeout=None):
        started = time.perf_counter()
        try:
            return self.inner.wait(handles, timeout=timeout)
        finally:
            self.driver_seconds["wait (blocked)"] += time.perf_counter() - started

    def result(self, handle):
        started = time.perf_counter()
        try:
            batch = self.inner.result(handle)
        finally:
            self.driver_seconds["result (ray.get)"] += time.perf_counter() - started
        # Each call returns its own copy of the task: seconds[stage] is this call's time
        # (decode and encode calls get a fresh copy of the motion-stage task per chunk).
        item = batch[0] if batch else None
        task = getattr(item, "task", item)
        if task is not None and getattr(task, "seconds", None) is not None:
            self.stage_seconds[handle.stage] += task.seconds.get(handle.stage, 0.0)
            self.calls[handle.stage] += 1
        return batch

    def __getattr__(self, name):
        return getattr(self.inner, name)


class TimedStore:
    """Forwards every job-store call and adds up the seconds the driver spends in them."""

    def __init__(self, inner):
        self._inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1
        return timed


def actor_threads(cpus: float) -> int:
    """Torch / OpenMP threads Ray gives an actor of ``cpus`` CPUs (``OMP_NUM_THREADS``, set by
    ``ray._private.utils.set_omp_num_threads_if_unset``): the floor of its CPUs, at least 1."""
    return max(1, math.floor(cpus))


def run_inprocess(requests, size: int, torch_import_seconds: float):
    started = time.perf_counter()
    from pipeline.render import LocalRenderer

    runner = LocalRenderer()
    # Start-up as a fresh process pays it: torch's import (timed in main) + the stages' + model loading.
    startup = torch_import_seconds + time.perf_counter() - started
    stage = defaultdict(float)
    frames = done = 0
    started = time.perf_counter()
    for request in requests:
        result = runner.render(request)
        if result.status != "done":
            print(f"  in-process {request.id}: FAILED in {result.error_stage}: {result.error_message}")
            continue
        done += 1
        frames += result.frames
        for name, seconds in result.seconds.items():
            stage[name] += seconds
    wall = time.perf_counter() - started
    return dict(setup=runner.setup_seconds, startup=startup, end=0.0, wall=wall, done=done, frames=frames,
                stage=dict(stage), peak_rss=peak_rss_mib())


def load_graph(graph_file: str | None):
    """The pool layout: the default ``GraphConfig``, or a ``talkfarm batch --graph`` file."""
    from pipeline.graph import GraphConfig

    if not graph_file:
        return GraphConfig()
    from pipeline.settings import GraphSettings

    return GraphSettings.from_file(graph_file).config()


def run_pipeline(requests, out: Path, graph, quality_check: bool = True):
    from core.storage import Storage, join_uri
    from pipeline.batch import (
        BatchConfig,
        BatchDriver,
        open_executor,
        write_job_manifest,
    )
    from pipeline.jobstate import RequestSpec, open_job_store
    from pipeline.manifest import read_manifest

    storage = Storage()
    by_id = {request.id: request for request in requests}
    state = Path(tempfile.mkdtemp(prefix="talkfarm-bench-")) / "jobs.sqlite"
    job_id = f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    with open_job_store(None, state) as raw_store:
        raw_store.create_job(job_id, [RequestSpec(rid, None, 0) for rid in by_id], {"out": str(out)})
        started = time.perf_counter()
        executor = TimedExecutor(open_executor(None, graph, storage, quality_check=quality_check))
        startup = time.perf_counter() - started

        import ray

        pools = {}
        for name in STAGES:
            pids = executor.workers_pids(name)
            pools[name] = dict(size=graph.pools[name].size, cpus=graph.pools[name].resources.cpus,
                               max_in_flight=graph.pools[name].max_in_flight, pids=pids)
        store = TimedStore(raw_store)
        driver = BatchDriver(executor, store, storage, graph, BatchConfig())
        cpu0 = time.process_time()
        started = time.perf_counter()
        progress = driver.run(job_id, by_id)
        wall = time.perf_counter() - started
        driver_cpu = time.process_time() - cpu0
        for name in STAGES:          # per-process peak RSS (VmHWM) and thread counts, before the actors go
            statuses = [proc_status(pid) for pid in pools[name]["pids"]]
            pools[name]["peak_rss"] = [kib(s.get("VmHWM")) for s in statuses]
            pools[name]["threads"] = [s.get("Threads", "?") for s in statuses]
        started = time.perf_counter()
        executor.shutdown()
        shutdown_seconds = time.perf_counter() - started
        threads = probe_threads(sorted({pool["cpus"] for pool in pools.values()}))
        for pool in pools.values():
            pool["torch_threads"] = threads.get(pool["cpus"], "?")
        started = time.perf_counter()
        manifest = write_job_manifest(job_id, raw_store, storage, by_id, join_uri(str(out), f"manifest-{job_id}.parquet"))
        manifest_seconds = time.perf_counter() - started
        counts = raw_store.job_status(job_id).counts
    rows = read_manifest(manifest, storage)
    manifest_stage = defaultdict(float)
    for row in rows:
        for name, seconds in (row.seconds_per_stage or {}).items():
            manifest_stage[name] += seconds
    cluster = ray.cluster_resources()
    started = time.perf_counter()
    ray.shutdown()
    shutdown_seconds += time.perf_counter() - started   # actors killed + Ray stopped (the thread probe not counted)
    return dict(startup=startup, end=shutdown_seconds + manifest_seconds, shutdown_seconds=shutdown_seconds,
                wall=wall, done=progress.done, failed=progress.failed, reused=progress.reused, frames=progress.frames, stage=dict(executor.stage_seconds), calls=dict(executor.calls),
                manifest_stage=dict(manifest_stage), driver=dict(executor.driver_seconds), store_seconds=store.seconds,
                store_calls=store.calls, driver_cpu=driver_cpu, manifest_seconds=manifest_seconds, manifest=manifest,
                counts=counts, pools=pools, cluster_cpus=cluster.get("CPU"), driver_peak_rss=peak_rss_mib())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="number of distinct requests")
    parser.add_argument("--size", type=int, default=512, help="render size, pixels")
    parser.add_argument("--out", default=str(REPO / "out" / "bench-pipeline"))
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    parser.add_argument("--graph", default=None, help="YAML/JSON pool layout, as `talkfarm batch --graph`")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-after-another in-process run")
    parser.add_argument("--no-qc", action="store_true",
                        help="encoders skip the batch QC (run with and without to measure its cost to a job)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OpenMP / torch threads per process on both sides (OMP_NUM_THREADS; default: what Ray "
                             "gives a decode actor)")
    args = parser.parse_args(argv)

    graph = load_graph(args.graph)
    decode_cpus = graph.pools["decode"].resources.cpus
    threads = args.threads or actor_threads(decode_cpus)
    # Before torch loads, here and (inherited, kept by Ray) in every actor.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    import torch

    torch_import_seconds = time.perf_counter() - started
    assets, out = Path(args.assets), Path(args.out)
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
          f"torch {torch.__version__} threads {torch.get_num_threads()} in this process (in-process run) "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print(f"threads: OMP_NUM_THREADS={threads} in this process and every actor (Ray's own rule would give a decode "
          f"actor of {decode_cpus:g} CPU {actor_threads(decode_cpus)}); the table of pools shows what the actors ran with")
    import ray

    print(f"python {platform.python_version()}, ray {ray.__version__}, {platform.platform()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}, load average at start {load_average()}")
    requests = make_requests(assets, out / stamp / "pipeline", args.requests, args.size)
    print(f"{len(requests)} requests: {len(IMAGES)} portraits x {len(AUDIOS)} clips x seeds "
          f"0..{(len(requests) - 1) // (len(IMAGES) * len(AUDIOS))}, {args.size} px, 25 fps\n")

    base = None
    if not args.no_baseline:
        base_requests = make_requests(assets, out / stamp / "inprocess", args.requests, args.size)
        print("one after another in-process (LocalRenderer) ...", flush=True)
        base = run_inprocess(base_requests, args.size, torch_import_seconds)
        print(f"  {base['done']} done in {base['wall']:.1f} s, start-up {base['startup']:.1f} s (torch and stage "
              f"imports, model loading {base['setup']:.2f} s), load average now {load_average()}", flush=True)
    print(f"batch pipeline on local Ray (open_executor + BatchDriver + SQLite state + local storage), "
          f"batch QC {'off' if args.no_qc else 'on'} ...", flush=True)
    pipe = run_pipeline(requests, out / stamp / "pipeline", graph, quality_check=not args.no_qc)
    print(f"  {pipe['done']} done, {pipe['failed']} failed, {pipe['reused']} reused in {pipe['wall']:.1f} s, "
          f"start-up {pipe['startup']:.1f} s (Ray start + actor setup), end {pipe['end']:.1f} s (actors and Ray stopped "
          f"{pipe['shutdown_seconds']:.1f} s, manifest {pipe['manifest_seconds']:.2f} s), "
          f"load average now {load_average()}\n")

    # ---- throughput
    wall = pipe["wall"]

    def whole(run: dict) -> float:
        return run["startup"] + run["wall"] + run["end"]

    rows = []
    for label, run in ((f"one after another, in-process ({threads} thread(s))", base),
                       (f"batch pipeline, local Ray ({threads} thread(s) per actor)", pipe)):
        if run is None:
            continue
        rows.append([label, str(run["done"]), str(run["frames"]), f"{run['wall']:.1f}",
                     f"{60 * run['done'] / run['wall']:.1f}", f"{run['frames'] / run['wall']:.1f}",
                     f"{base['wall'] / run['wall']:.2f}" if base else "-",
                     f"{run['startup']:.1f} + {run['end']:.1f}", f"{whole(run):.1f}",
                     f"{60 * run['done'] / whole(run):.1f}", f"{whole(base) / whole(run):.2f}" if base else "-"])
    print("Throughput. wall: first render to last result; whole: with start-up (in-process: torch and stage "
          "imports, model loading; pipeline: Ray start, actor start-up) and end (pipeline: actors and Ray stopped, manifest)\n")
    print(table(["run", "renders", "frames", "wall s", "renders/min", "frames/s", "speedup", "start-up + end s",
                 "whole s", "renders/min, whole", "speedup, whole"], rows))

    # ---- stage pools
    rows = []
    bottleneck = 0.0
    for name in STAGES:
        pool = pipe["pools"][name]
        seconds = pipe["stage"].get(name, 0.0)
        per_worker = seconds / pool["size"]
        bottleneck = max(bottleneck, per_worker)
        in_proc = base["stage"].get(name, 0.0) if base else None
        rows.append([name, str(pool["size"]), f"{pool['cpus']:g}", str(pool["max_in_flight"]),
                     pool["torch_threads"], str(pipe["calls"].get(name, 0)), f"{seconds:.1f}",
                     f"{100 * seconds / (pool['size'] * wall):.0f}%",
                     f"{in_proc:.1f}" if base else "-", f"{seconds / in_proc:.2f}" if base and in_proc else "-"])
    total = sum(pipe["stage"].values())
    base_total = sum(base["stage"].values()) if base else None
    rows.append(["all stages", "", f"{sum(p['cpus'] * p['size'] for p in pipe['pools'].values()):g}", "", "",
                 str(sum(pipe["calls"].values())), f"{total:.1f}", f"{100 * total / (2 * wall):.0f}% of 2 cores",
                 f"{base_total:.1f}" if base else "-", f"{total / base_total:.2f}" if base else "-"])
    print("\nStage pools (stage seconds = wall seconds measured inside the workers, summed over all calls;"
          "\nbusy share = stage seconds / (pool size x pipeline wall))\n")
    print(table(["pool", "workers", "CPUs each", "max in flight", "threads per actor", "calls", "stage s",
                 "busy share", "in-process stage s", "pipeline / in-process"], rows))

    # ---- overhead
    driver = pipe["driver"]
    direct = pipe["store_seconds"] + driver.get("submit", 0.0) + driver.get("result (ray.get)", 0.0)
    idle = wall - bottleneck
    print("\nOverhead of the pipeline\n")
    lines = [
        ["driver time in the job store (SQLite), "
         f"{pipe['store_calls']} calls", f"{pipe['store_seconds']:.2f}", f"{100 * pipe['store_seconds'] / wall:.1f}%"],
        ["driver time in Ray submit", f"{driver.get('submit', 0.0):.2f}", f"{100 * driver.get('submit', 0.0) / wall:.1f}%"],
        ["driver time in Ray result (ray.get, incl. decoded frames)", f"{driver.get('result (ray.get)', 0.0):.2f}",
         f"{100 * driver.get('result (ray.get)', 0.0) / wall:.1f}%"],
        ["(A) direct driver-side overhead: state + Ray calls", f"{direct:.2f}", f"{100 * direct / wall:.1f}%"],
        ["driver CPU seconds during the run (all of it is overhead)", f"{pipe['driver_cpu']:.2f}",
         f"{100 * pipe['driver_cpu'] / wall:.1f}%"],
        ["bottleneck pool work (max over pools of stage s / workers)", f"{bottleneck:.1f}",
         f"{100 * bottleneck / wall:.0f}%"],
        ["(B) bottleneck idle = wall - bottleneck work (scheduling gaps, backpressure, fill/drain, Ray)",
         f"{idle:.1f}", f"{100 * idle / wall:.0f}%"],
    ]
    if base:
        inflation = total - base_total
        lines.append(["(C) stage work inflation = pipeline stage s - in-process stage s (contention, cold actors)",
                      f"{inflation:+.1f}", f"{100 * inflation / base_total:+.0f}% of in-process stage s"])
    lines.append(["not in the wall (in the whole): Ray start + actor setup", f"{pipe['startup']:.1f}", "-"])
    lines.append(["not in the wall (in the whole): actors and Ray stopped", f"{pipe['shutdown_seconds']:.1f}", "-"])
    lines.append(["not in the wall (in the whole): manifest write", f"{pipe['manifest_seconds']:.2f}", "-"])
    print(table(["item", "seconds", "share of pipeline wall"], lines))

    # ---- memory and workers
    rows = [["driver (this process; includes the in-process run)" if base else "driver (this process)", "1",
             f"{pipe['driver_peak_rss']:.0f}", "-"]]
    for name in STAGES:
        pool = pipe["pools"][name]
        rows.append([f"{name} actor", str(pool["size"]), " / ".join(f"{r:.0f}" for r in pool["peak_rss"]),
                     " / ".join(pool["threads"])])
    all_actors = sum(r for p in pipe["pools"].values() for r in p["peak_rss"])
    print("\nPeak memory (VmHWM per process; ffmpeg encoder subprocesses not included)\n")
    print(table(["process", "count", "peak RSS MiB", "OS threads at end"], rows))
    print(f"\nsum of actor peaks {all_actors:.0f} MiB; in-process peak RSS "
          f"{base['peak_rss']:.0f} MiB" if base else f"\nsum of actor peaks {all_actors:.0f} MiB")
    print(f"Ray cluster CPUs {pipe['cluster_cpus']:g}; job counts {pipe['counts']}; manifest {pipe['manifest']}")
    ms = pipe["manifest_stage"]
    print("\nnote: the manifest's seconds_per_stage sums to "
          + ", ".join(f"{name} {ms.get(name, 0.0):.1f}" for name in STAGES)
          + " s: on Ray each frame chunk carries its own copy of the task, so the manifest keeps only the"
            " last chunk's decode/encode seconds; the table above sums every call's own seconds instead.")
    if base:
        speedup = base["wall"] / wall
        print(f"\ngoals: speedup {speedup:.2f}x, {whole(base) / whole(pipe):.2f}x with start-up and end counted on "
              f"both sides (goal >= 1.5x: {'met' if speedup >= 1.5 else 'NOT met'}); "
              f"overhead (A) {100 * direct / wall:.1f}% of wall, (B) {100 * idle / wall:.0f}% of wall "
              f"(goal < 10%: A {'met' if direct / wall < 0.1 else 'NOT met'}, B {'met' if idle / wall < 0.1 else 'NOT met'})")
    print(f"load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
