"""The control plane at scale: one driver on jobs of 1,000 / 5,000 / 10,000 rows that reuse earlier
renders, as studios resubmit.

    .venv/bin/python bench/scale.py [--rows 1000 5000 10000] [--unique 4] [--size 128] [--redis]

1. Seeds the job store: ``--unique`` distinct rows (the shared portraits x CMU Arctic clips,
   procedural motion) rendered for real through ``open_executor`` + ``BatchDriver``.
2. For each row count, a new job whose rows repeat those inputs under new ids and outputs (what a
   resubmitted list looks like), run by a new ``BatchDriver`` on the same Ray, through the same
   steps as ``talkfarm batch``: parse the request file, create the job, run, write the manifest.

Per job it prints: rows per second, driver CPU milliseconds per row, job-store calls per row
while the job runs (every call is one SQLite transaction or one Redis round trip / script; with
Redis also the commands the server ran, per row), peak driver memory above
its level before the job (sampled every 20 ms), manifest write seconds, job-store growth per row,
and how many rows went through a stage at all. Then the projected ceiling of one driver against
the render rate of a GPU decoder.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import cpu_model  # noqa: E402 - needs the repo on sys.path
from bench.pipeline import AUDIOS, IMAGES, TimedStore  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Current resident memory of this process, MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


class PeakMemory:
    """Samples this process's RSS every ``period`` seconds in a thread; ``peak`` in MiB."""

    def __init__(self, period: float = 0.02):
        self.period, self.peak, self._stop = period, rss_mib(), threading.Event()

    def __enter__(self) -> "PeakMemory":
        self.start = rss_mib()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def request_list(path: Path, assets: Path, rows: int, unique: int, size: int) -> Path:
    """A CSV of ``rows`` requests cycling over ``unique`` (portrait, clip) pairs."""
    pairs = [(image, audio) for image in IMAGES for audio in AUDIOS][:unique]
    lines = ["id,image,audio,size,motion"]
    lines += [f"row{index:07d},{assets / pairs[index % len(pairs)][0]},{assets / pairs[index % len(pairs)][1]},"
              f"{size},procedural" for index in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


class CountingExecutor:
    """Forwards to the real executor and counts the calls submitted to each stage."""

    def __init__(self, inner):
        self._inner = inner
        self.submitted: dict[str, int] = {}

    def submit(self, stage, *args, **kwargs):
        self.submitted[stage] = self.submitted.get(stage, 0) + 1
        return self._inner.submit(stage, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def run_job(store, executor, graph, storage, list_path: Path, out: Path, job_id: str, server_ops=None) -> dict:
    """The steps of `talkfarm batch` on an open executor, measured: the request file streamed into
    the job store, the driver reading each claimed row's request from it, the manifest paged out.
    ``server_ops``: the job store's count of commands it ran (Redis), read around the run."""
    from pipeline.batch import BatchConfig, BatchDriver, write_job_manifest
    from pipeline.batch_cli import register_request_file
    from pipeline.request_files import open_request_file

    timed, executor = TimedStore(store), CountingExecutor(executor)
    with PeakMemory() as memory:
        cpu, started = time.process_time(), time.perf_counter()
        stream = open_request_file(str(list_path), str(out), storage)
        valid, _ = register_request_file(timed, job_id, stream, {"out": str(out)})
        parse_seconds = time.perf_counter() - started
        create_calls = timed.calls
        driver = BatchDriver(executor, timed, storage, graph, BatchConfig())
        ops_before = server_ops() if server_ops else 0
        run_started = time.perf_counter()
        progress = driver.run(job_id)
        run_seconds = time.perf_counter() - run_started
        ops = (server_ops() - ops_before) if server_ops else None
        store_calls = timed.calls - create_calls
        manifest_started = time.perf_counter()
        write_job_manifest(job_id, timed, storage, None, str(out / f"manifest-{job_id}.parquet"))
        manifest_seconds = time.perf_counter() - manifest_started
        manifest_calls = timed.calls - create_calls - store_calls
        cpu = time.process_time() - cpu
    return dict(rows=valid, staged=executor.submitted.get("alignment", 0), done=progress.done,
                reused=progress.reused, failed=progress.failed, parse=parse_seconds, run=run_seconds,
                manifest=manifest_seconds, cpu=cpu, create_calls=create_calls, store_calls=store_calls,
                manifest_calls=manifest_calls, server_ops=ops, store_seconds=timed.seconds, memory_start=memory.start,
                memory_peak=memory.peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--unique", type=int, default=4, help="distinct renders the jobs repeat (1-4)")
    parser.add_argument("--size", type=int, default=128, help="render size of the seeded renders, pixels")
    parser.add_argument("--redis", action="store_true", help="job state in a redis-server started here")
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    args = parser.parse_args(argv)

    from core.storage import Storage
    from pipeline.batch import open_executor
    from pipeline.graph import GraphConfig
    from pipeline.jobstate import open_job_store

    work = Path(tempfile.mkdtemp(prefix="talkfarm-scale-"))
    assets, storage, graph = Path(args.assets), Storage(), GraphConfig()
    redis = None
    if args.redis:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        redis = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
                                  "--bind", "127.0.0.1", "--save", "", "--dir", str(work)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    store = open_job_store(f"redis://127.0.0.1:{port}/0" if redis else None, work / "jobs.sqlite")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; {datetime.datetime.now().isoformat(timespec='seconds')}; "
          f"job state {'Redis' if redis else 'SQLite'}; {args.unique} distinct renders at {args.size} px")
    executor = open_executor(None, graph, storage, quality_check=False)

    def redis_info(field: str) -> int:
        return int(store.redis.info()[field])
    server_ops = (lambda: redis_info("total_commands_processed")) if redis else None
    try:
        seed = run_job(store, executor, graph, storage, request_list(work / "seed.csv", assets, args.unique,
                                                                     args.unique, args.size), work / "seed", "seed")
        print(f"seed job: {seed['done']} renders in {seed['run']:.1f} s, driver CPU "
              f"{1000 * seed['cpu'] / seed['rows']:.0f} ms per rendered row\n")
        rows_out = []
        for count in args.rows:
            state_before = redis_info("used_memory") if redis else (work / "jobs.sqlite").stat().st_size
            figures = run_job(store, executor, graph, storage,
                              request_list(work / f"rows-{count}.csv", assets, count, args.unique, args.size),
                              work / f"out-{count}", f"scale-{count}", server_ops)
            state_after = redis_info("used_memory") if redis else (work / "jobs.sqlite").stat().st_size
            growth = (state_after - state_before) / count
            staged = figures["staged"]
            rows_out.append([f"{count:,}", f"{figures['done']:,} ({figures['reused']:,} reused)", f"{staged}",
                             f"{figures['parse']:.2f}", f"{figures['run']:.1f}", f"{count / figures['run']:.0f}",
                             f"{1000 * figures['cpu'] / count:.2f}", f"{figures['store_calls'] / count:.2f}",
                             "-" if figures["server_ops"] is None else f"{figures['server_ops'] / count:.2f}",
                             f"{1000 * figures['store_seconds'] / count:.2f}",
                             f"{figures['memory_peak'] - figures['memory_start']:.0f} (of {figures['memory_peak']:.0f})",
                             f"{figures['manifest']:.2f}", f"{growth / 1024:.1f}"])
            print(" | ".join(rows_out[-1]), flush=True)
    finally:
        executor.shutdown()
        store.close()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    header = ["rows", "done", "rows sent to alignment", "parse + create s", "run s", "rows/s", "driver CPU ms/row",
              "job-store calls/row", "Redis commands/row", "job-store ms/row",
              "driver memory peak above start MiB (of total)", "manifest s",
              f"{'Redis' if redis else 'SQLite'} KiB/row"]
    print("\n| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|")
    for row in rows_out:
        print("| " + " | ".join(row) + " |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
