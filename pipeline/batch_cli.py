"""`talkfarm batch / status / cancel / retry`: bulk renders on Ray with job state."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.errors import BadInputError
from pipeline.metrics_endpoint import add_metrics_arguments, serve_driver_metrics

DEFAULT_STATE = Path.home() / ".cache" / "talkfarm" / "jobs.sqlite"


def add_batch_commands(commands) -> None:
    """Register the batch subcommands on the CLI's subparsers."""
    state_help = "job state: Redis URL (or TALKFARM_REDIS_URL); default an embedded SQLite file"

    batch = commands.add_parser(
        "batch", help="render every request of a CSV / JSONL / Parquet list on Ray",
        description="Render a request list (columns: id, image, audio, and optional seed, gaze_yaw, gaze_pitch, "
                    "distance, emotion, priority) on a local or existing Ray cluster. Writes one video and "
                    "provenance sidecar per request and a Parquet manifest; prints the manifest URI last.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    batch.add_argument("requests", help="request list: local path or s3:// URI (.csv, .jsonl, .parquet)")
    batch.add_argument("--out", required=True, help="output prefix: local folder or s3://bucket/prefix")
    batch.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    batch.add_argument("--redis", default=None, help=state_help)
    batch.add_argument("--state", default=str(DEFAULT_STATE), help="SQLite job-state file when no Redis is given")
    batch.add_argument("--job-id", default=None, help="job id (default: derived from the request list and --out)")
    batch.add_argument("--graph", default=None, help="YAML/JSON pool layout (sizes, cpus, gpus, accelerator_type)")
    batch.add_argument("--max-attempts", type=int, default=3, help="runs per request before a failure is final")
    batch.add_argument("--allow", action="append", default=None, metavar="PREFIX",
                       help="only read and write under these prefixes (repeatable)")
    batch.add_argument("--quiet", action="store_true", help="no progress line")
    add_metrics_arguments(batch)
    batch.set_defaults(handler=_batch)

    for name, text in (("status", "show a job's progress and failures"), ("cancel", "stop scheduling a job's rows"),
                       ("retry", "re-run a job's failed rows")):
        command = commands.add_parser(name, help=text, description=text + ".")
        command.add_argument("job", help="job id (printed by `talkfarm batch`)")
        command.add_argument("--redis", default=None, help=state_help)
        command.add_argument("--state", default=str(DEFAULT_STATE), help="SQLite job-state file")
        if name == "status":
            command.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "retry":
            command.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
            add_metrics_arguments(command)
        command.set_defaults(handler={"status": _status, "cancel": _cancel, "retry": _retry}[name])


def _store(args):
    from pipeline.jobstate import open_job_store

    Path(args.state).parent.mkdir(parents=True, exist_ok=True)
    return open_job_store(args.redis, args.state)


def _batch(args: argparse.Namespace) -> int:
    from pipeline.storage import Storage

    storage = Storage(args.allow)
    graph = None
    if args.graph:
        from pipeline.settings import GraphSettings

        graph = GraphSettings.from_file(args.graph).config()
    with _store(args) as store:
        return _run(args, storage, store, args.requests, args.out, args.job_id, graph, args.max_attempts)


def _run(args, storage, store, requests_uri: str, out_prefix: str, job_id: str | None, graph, max_attempts: int) -> int:
    from pipeline.batch import BatchConfig, BatchDriver, default_job_id, open_executor, write_job_manifest
    from pipeline.graph import GraphConfig
    from pipeline.jobstate import RequestSpec
    from pipeline.manifest import ManifestRow
    from pipeline.request_files import read_request_file
    from pipeline.storage import join_uri

    graph = graph or GraphConfig()
    parsed = read_request_file(requests_uri, out_prefix, storage)
    job_id = job_id or default_job_id(storage, requests_uri, out_prefix)
    requests = {request.id: request for request, _ in parsed.valid}
    specs = [RequestSpec(request.id, None, priority) for request, priority in parsed.valid]
    invalid_ids = {row.request_id or f"row-{row.row_number}": row for row in parsed.invalid}
    specs += [RequestSpec(request_id, None, 0) for request_id in invalid_ids if request_id not in requests]
    store.create_job(job_id, specs, {"requests": requests_uri, "out": out_prefix, "max_attempts": max_attempts})
    for state in store.request_states(job_id):
        row = invalid_ids.get(state.request_id)
        if row is not None and state.request_id not in requests and state.status == "pending":
            store.mark_failed(job_id, state.request_id, "request", f"row {row.row_number}: {row.message}")
    print(f"job {job_id}: {len(requests)} requests, {len(parsed.invalid)} malformed rows", file=sys.stderr)

    endpoint = serve_driver_metrics(args)     # before Ray starts: a local Ray's actors inherit the folder
    executor = open_executor(getattr(args, "address", None), graph, storage)
    progress_line = None if getattr(args, "quiet", False) else _progress_printer(len(specs))
    driver = BatchDriver(executor, store, storage, graph, BatchConfig(max_attempts=max_attempts),
                         on_progress=progress_line)
    try:
        driver.run(job_id, requests)
    finally:
        executor.shutdown()
    if progress_line is not None:
        print(file=sys.stderr)
    extra = [ManifestRow.for_invalid_row(job_id, row.row_number, request_id, row.message)
             for request_id, row in invalid_ids.items() if request_id not in requests]
    manifest = write_job_manifest(job_id, store, storage, requests, join_uri(out_prefix, f"manifest-{job_id}.parquet"),
                                  extra)
    status = store.job_status(job_id)
    print(f"job {job_id}: " + ", ".join(f"{count} {name}" for name, count in status.counts.items() if count),
          file=sys.stderr)
    print(manifest, flush=True)
    endpoint.linger()
    return 0


def _progress_printer(total: int):
    """A one-line progress display, redrawn at most twice a second."""
    import time

    last = [0.0, ""]

    def show(progress) -> None:
        line = (f"rows: {progress.done} done, {progress.failed} failed, {progress.running} running of {total}"
                f" | {progress.frames_per_second:5.1f} frames/s")
        now = time.monotonic()
        if line != last[1] and now - last[0] >= 0.5:
            print("\r" + line, end="", file=sys.stderr, flush=True)
            last[:] = [now, line]
    return show


def _status(args: argparse.Namespace) -> int:
    from pipeline.jobstate import JobNotFoundError

    with _store(args) as store:
        try:
            status = store.job_status(args.job)
        except JobNotFoundError:
            raise BadInputError("no such job", args.job) from None
        failures = [state for state in store.request_states(args.job) if state.status == "failed"]
        if args.json:
            print(json.dumps({"job": args.job, "counts": status.counts, "cancelled": status.cancelled,
                              "failed": [{"id": s.request_id, "stage": s.error_stage, "message": s.error_message}
                                         for s in failures]}, indent=2))
            return 0
        print(f"job {args.job}{' (cancelled)' if status.cancelled else ''}: "
              + ", ".join(f"{count} {name}" for name, count in status.counts.items()))
        for state in failures:
            print(f"  failed {state.request_id}: {state.error_stage}: {state.error_message}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _store(args) as store:
        count = store.cancel(args.job)
    print(f"job {args.job}: cancelled; {count} pending rows will not run (finished outputs stay)")
    return 0


def _retry(args: argparse.Namespace) -> int:
    from pipeline.jobstate import JobNotFoundError
    from pipeline.storage import Storage

    with _store(args) as store:
        try:
            meta = store.job_status(args.job).meta
        except JobNotFoundError:
            raise BadInputError("no such job", args.job) from None
        count = store.requeue_failed(args.job)
        print(f"job {args.job}: {count} rows queued again", file=sys.stderr)
        return _run(args, Storage(), store, meta["requests"], meta["out"], args.job, None,
                    int(meta.get("max_attempts", 3)))
