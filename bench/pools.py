"""Work in flight follows the pools: decode-pool busy share with 1, 2 and 4 decoders.

    .venv/bin/python bench/pools.py [--decoders 1 2 4] [--requests 8] [--size 256] [--compare-fixed]

For each decoder count, one batch job of distinct real renders (the shared portraits and CMU
Arctic clips, seeds varied so nothing is reused) runs through ``open_executor`` and
``BatchDriver`` on a local Ray, with the driver's request limit derived from the pools
(``GraphConfig.requests_in_flight``). The busy share is the dashboard's own figure: decode
seconds recorded by the decoder actors (``talkfarm_stage_duration_seconds_sum{stage="decode"}``,
read from the metrics folder every process writes to) over decoders x job wall time.
``--compare-fixed`` also runs each layout with the old fixed limit of 4 requests in flight.

Every decoder asks for the same 0.25 logical CPU, so only the count changes; on a 2-core
machine the decoders share the cores with the other stages, which caps the share they can reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import cpu_model  # noqa: E402 - needs the repo on sys.path
from bench.pipeline import make_requests  # noqa: E402


def decode_seconds() -> float:
    """Decode seconds recorded so far by every process writing to this run's metrics folder."""
    from monitoring.metrics import metrics

    registry = metrics().collector_registry()
    return registry.get_sample_value("talkfarm_stage_duration_seconds_sum", {"stage": "decode"}) or 0.0


def run_job(requests, graph, limit: int | None, tag: str) -> dict:
    from core.storage import Storage
    from pipeline.batch import BatchConfig, BatchDriver, open_executor
    from pipeline.jobstate import RequestSpec, SQLiteJobStore

    storage = Storage()
    executor = open_executor(None, graph, storage, quality_check=False)
    try:
        with SQLiteJobStore(Path(tempfile.mkdtemp(prefix="talkfarm-pools-")) / "jobs.sqlite") as store:
            store.create_job(tag, [RequestSpec(request.id, None, 0) for request in requests])
            driver = BatchDriver(executor, store, storage, graph, BatchConfig(max_requests_in_flight=limit))
            busy_before = decode_seconds()
            started = time.perf_counter()
            progress = driver.run(tag, {request.id: request for request in requests})
            wall = time.perf_counter() - started
            busy = decode_seconds() - busy_before
    finally:
        executor.shutdown()
    decoders = graph.pools["decode"].size
    return dict(wall=wall, done=progress.done, frames=progress.frames, busy=busy,
                share=busy / (decoders * wall), limit=limit or graph.requests_in_flight())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoders", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=8, help="distinct renders per job")
    parser.add_argument("--size", type=int, default=256, help="render size, pixels")
    parser.add_argument("--decoder-cpus", type=float, default=0.25, help="logical CPUs per decoder actor")
    parser.add_argument("--compare-fixed", action="store_true", help="also run with the old fixed limit of 4")
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    args = parser.parse_args(argv)

    from monitoring.metrics import enable_multiprocess

    enable_multiprocess(tempfile.mkdtemp(prefix="talkfarm-pools-metrics-"))   # before Ray: actors inherit it
    import ray

    from core.stage import Resources
    from pipeline.graph import GraphConfig, PoolSpec

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; ray {ray.__version__}; "
          f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"{args.requests} distinct renders per job at {args.size} px, decoders at {args.decoder_cpus} logical CPU\n")
    out = Path(tempfile.mkdtemp(prefix="talkfarm-pools-out-"))
    rows = []
    for decoders in args.decoders:
        base = GraphConfig()
        graph = dataclasses.replace(base, pools={**base.pools, "decode": PoolSpec(
            decoders, Resources(cpus=args.decoder_cpus), base.pools["decode"].max_in_flight)})
        for limit in ([None, 4] if args.compare_fixed else [None]):
            tag = f"pools-{decoders}-{limit or 'derived'}"
            requests = make_requests(Path(args.assets), out / tag, args.requests, args.size)
            figures = run_job(requests, graph, limit, tag)
            label = "derived" if limit is None else "fixed (before)"
            rows.append([str(decoders), f"{figures['limit']} ({label})", f"{figures['done']}", f"{figures['wall']:.1f}",
                         f"{figures['frames'] / figures['wall']:.1f}", f"{figures['busy']:.1f}",
                         f"{100 * figures['share']:.0f} %"])
            print(" | ".join(rows[-1]), flush=True)
    ray.shutdown()
    header = ["decoders", "requests in flight", "done", "job wall s", "frames/s", "decode busy s", "decode busy share"]
    print("\n| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
