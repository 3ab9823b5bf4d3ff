"""`talkfarm batch / status / cancel / retry`: bulk renders on Ray with job state.

Exit codes (every failure is one line on stderr, never a traceback):

* 0: the job ran to its end; the manifest (printed last) lists every row, failed ones included.
* 1: the job could not finish: its state was lost from the job store, this driver lost its
  lease to another, the cluster could not place the pools, or the manifest could not be written
  (the rows' outcomes stay in the job store: ``talkfarm status JOB``).
* 2: refused before anything ran: bad arguments or request file (unknown columns with
  ``--strict``), an output prefix that cannot be written or lies outside the policy, an unknown
  job, another driver holding the job, or a policy that differs from the one the job was
  created with.

The driver, the graph (its stages load torch and mediapipe) and the Parquet writer are
imported inside the commands that run them, so `talkfarm --help` and validation stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from core.errors import BadInputError, JobFailedError, TalkfarmError
from core.storage import join_uri, parse_uri
from pipeline.access import AccessPolicy, absolute_uri
from pipeline.controls import CONTROL_COLUMNS
from pipeline.jobstate import JobNotFoundError, RequestSpec, open_job_store
from pipeline.lease import DEFAULT_TTL_S, DriverLease
from pipeline.metrics_endpoint import add_metrics_arguments, serve_driver_metrics
from pipeline.request_files import (
    InvalidRow,
    RequestStream,
    open_request_file,
    request_spec,
)

# Rows registered in the job store per create_job call while the request file is read.
REGISTER_ROWS = 1000

DEFAULT_STATE = Path.home() / ".cache" / "talkfarm" / "jobs.sqlite"


def add_batch_commands(commands) -> None:
    """Register the batch subcommands on the CLI's subparsers."""
    state_help = "job state: Redis URL (or TALKFARM_REDIS_URL); default an embedded SQLite file"

    batch = commands.add_parser(
        "batch", help="render every request of a CSV / JSONL / Parquet list on Ray",
        description="Render a request list (columns: id, image, audio, and optional priority and one per render "
                    f"control, as the `talkfarm render` option of the same name: {', '.join(CONTROL_COLUMNS)}; "
                    "an empty cell takes the default) on a local or existing Ray cluster. Writes one video and "
                    "provenance sidecar per request and a Parquet manifest; prints the manifest URI last. "
                    "Confined by default: inputs are read only under the request file's own folder (or bucket "
                    "prefix) and --allow prefixes, outputs written only under --out. One driver per job (a lease in the job store). Exit code 0: the job ran to its "
                    "end (failed rows are in the manifest); 1: the job could not finish; 2: refused (bad input, "
                    "policy, job held by another driver).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    batch.add_argument("requests", help="request list: local path or s3:// URI (.csv, .jsonl, .parquet)")
    batch.add_argument("--out", required=True, help="output prefix: local folder or s3://bucket/prefix")
    batch.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    batch.add_argument("--redis", default=None, help=state_help)
    batch.add_argument("--state", default=str(DEFAULT_STATE), help="SQLite job-state file when no Redis is given")
    batch.add_argument("--job-id", default=None, help="job id (default: derived from the request list and --out)")
    batch.add_argument("--graph", default=None, help="YAML/JSON pool layout (sizes, cpus, gpus, accelerator_type)")
    batch.add_argument("--max-attempts", type=int, default=3, help="runs per request before a failure is final")
    add_policy_arguments(batch)
    batch.add_argument("--strict", action="store_true",
                       help="refuse a request file with columns talkfarm does not know (default: warn)")
    _add_lease_arguments(batch)
    batch.add_argument("--quiet", action="store_true", help="no progress line")
    add_metrics_arguments(batch)
    batch.set_defaults(handler=_batch)

    for name, text in (("status", "show a job's progress, failures and access policy"),
                       ("cancel", "stop scheduling a job's rows"),
                       ("retry", "re-run a job's failed rows under the job's stored access policy")):
        command = commands.add_parser(name, help=text, description=text + ".")
        command.add_argument("job", help="job id (printed by `talkfarm batch`)")
        command.add_argument("--redis", default=None, help=state_help)
        command.add_argument("--state", default=str(DEFAULT_STATE), help="SQLite job-state file")
        if name == "status":
            command.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "retry":
            command.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
            _add_lease_arguments(command)
            add_metrics_arguments(command)
        command.set_defaults(handler={"status": _status, "cancel": _cancel, "retry": _retry}[name])


def add_policy_arguments(parser) -> None:
    """``--allow`` / ``--allow-any``, as `talkfarm batch` and `talkfarm submit` take them."""
    parser.add_argument("--allow", action="append", default=None, metavar="PREFIX",
                        help="also read inputs under this folder or s3://bucket/prefix (repeatable); the request "
                             "file's own folder is always allowed, writes go only under --out")
    parser.add_argument("--allow-any", action="store_true",
                        help="no confinement: rows may read anything the worker's credentials reach (recorded in "
                             "the job and its manifest)")


def _add_lease_arguments(parser) -> None:

    parser.add_argument("--wait", action="store_true",
                        help="if another driver holds the job, wait for it to finish instead of exiting 2")
    parser.add_argument("--lease-seconds", type=float, default=DEFAULT_TTL_S,
                        help="driver lease time-to-live, renewed every third of it: a killed driver's job is taken "
                             "over this long after it died")


def _store(args):

    Path(args.state).parent.mkdir(parents=True, exist_ok=True)
    try:
        return open_job_store(args.redis, args.state)
    except ValueError as err:         # an unsupported job-store URL
        raise BadInputError(str(err)) from None


def _batch(args: argparse.Namespace) -> int:
    from pipeline.batch import default_job_id

    requests_uri, out_prefix = absolute_uri(args.requests), absolute_uri(args.out)
    policy = AccessPolicy.for_job(requests_uri, out_prefix, args.allow or (), args.allow_any)
    graph = None
    if args.graph:
        from pipeline.settings import GraphSettings

        graph = GraphSettings.from_file(args.graph).config()
    job_id = args.job_id or default_job_id(policy.storage(), requests_uri, out_prefix)
    with _store(args) as store:
        stored = _stored_policy(store, job_id)
        if stored is not None and stored != policy:
            raise BadInputError(f"job {job_id} was created with another access policy ({stored.describe()}); "
                                "give the same --allow / --allow-any, or a new --job-id")
        with _lease(args, store, job_id) as lease:
            return _run(args, store, lease, job_id, requests_uri, out_prefix, policy, graph, args.max_attempts)


def _stored_policy(store, job_id: str):

    try:
        return AccessPolicy.from_meta(store.job_status(job_id).meta)
    except JobNotFoundError:
        return None


def _lease(args, store, job_id: str):
    """Take the job's driver lease (waiting with --wait) and return it, held."""

    lease = DriverLease(store, job_id, ttl_s=args.lease_seconds)
    lease.acquire(wait=args.wait, on_wait=lambda holder, left: print(
        f"job {job_id}: driver {holder} holds it; waiting (its lease runs {left:.0f} s more unless renewed)",
        file=sys.stderr))
    return lease


def _check_output_writable(out_prefix: str) -> None:
    """Refuse, before anything runs, a local output folder that cannot be created or written."""


    parsed = parse_uri(out_prefix)
    if parsed.scheme != "file":
        return
    try:
        parsed.path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parsed.path, prefix=".talkfarm-probe-"):
            pass
    except OSError as err:
        raise BadInputError(f"output folder cannot be written ({err.strerror or type(err).__name__})",
                            out_prefix) from None


def _run(args, store, lease, job_id: str, requests_uri: str, out_prefix: str, policy, graph, max_attempts: int,
         before_create=None) -> int:
    """Read the request file, register the job, render what is pending, write the manifest.

    ``before_create`` runs once the request file has been read and before the job is touched
    (`talkfarm retry` requeues there, so a retry that cannot read the file changes nothing).
    """
    from pipeline.graph import GraphConfig

    graph = graph or GraphConfig()
    storage = policy.storage()
    stream = open_request_file(requests_uri, out_prefix, storage)
    if stream.ignored_columns:
        unknown = ", ".join(repr(column) for column in stream.ignored_columns)
        if getattr(args, "strict", False):
            raise BadInputError(f"request file has columns talkfarm does not know: {unknown} (--strict)", requests_uri)
        print(f"talkfarm: warning: ignoring request-file columns talkfarm does not know: {unknown}", file=sys.stderr)
    _check_output_writable(out_prefix)
    if before_create is not None:
        before_create()
    meta = {"requests": requests_uri, "out": out_prefix, "max_attempts": max_attempts, "access": policy.to_meta()}
    rows = OneGraphRows(stream)
    stream.rows = iter(rows)
    valid, invalid_rows = register_request_file(store, job_id, stream, meta)
    graph = rows.graph(graph)
    for state in store.iter_request_states(job_id):
        row = invalid_rows.get(state.request_id)
        if row is not None and state.status == "pending":
            store.mark_failed(job_id, state.request_id, "request", f"row {row.row_number}: {row.message}")
        elif row is None and state.request_id not in stream.first_rows and state.status in ("pending", "running"):
            # the job was given another file under the same --job-id: its rows cannot render now
            store.mark_failed(job_id, state.request_id, "request", "no longer in the request file")
    print(f"job {job_id}: {valid} requests, {len(invalid_rows)} malformed rows; {policy.describe()}",
          file=sys.stderr)
    manifest_uri = _join(out_prefix, f"manifest-{job_id}.parquet")
    counts = store.job_status(job_id).counts
    endpoint = serve_driver_metrics(args)     # before Ray starts: a local Ray's actors inherit the folder
    if counts["pending"] + counts["running"]:      # nothing to render (a header-only file): no Ray
        _render(args, store, lease, storage, graph, job_id, max_attempts, manifest_uri, policy,
                valid + len(invalid_rows), lambda: open_request_file(requests_uri, out_prefix, storage))
    _write_manifest(job_id, store, storage, invalid_rows, manifest_uri, policy)
    status = store.job_status(job_id)
    print(f"job {job_id}: " + (", ".join(f"{count} {name}" for name, count in status.counts.items() if count)
                               or "no rows"), file=sys.stderr)
    print(manifest_uri, flush=True)
    endpoint.linger()
    return 0


class OneGraphRows:
    """A request file's rows as one job runs them: a job runs one graph, named by its first
    valid row (a ``video`` row: the dubbing graph; an ``image`` row: the render graph). A later
    row of the other kind fails as a row of its own, so one stray row never sinks the job, and
    the file is read once (a job of any length is never held to be checked first)."""

    def __init__(self, stream: RequestStream):
        self._stream = stream
        self._rows = stream.rows
        self.dubs: bool | None = None      # None until a valid row is read

    def __iter__(self):
        for item in self._rows:
            if not isinstance(item, InvalidRow):
                request = item[0]
                if self.dubs is None:
                    self.dubs = request.is_dub
                elif request.is_dub != self.dubs:
                    kind, other = ("a render (image)", "dubs") if self.dubs else ("a dub (video)", "renders")
                    item = InvalidRow(self._stream.first_rows.get(request.id, 0), request.id,
                                      f"{kind} in a job of {other}: a job runs one graph, put them in two files")
            yield item

    def graph(self, config):
        """``config`` running the graph the rows need (the dubbing graph's pools from the
        settings file or the take stages' defaults)."""
        from pipeline.graph import DUB_GRAPH, for_graph

        return for_graph(config, DUB_GRAPH) if self.dubs else config


def _join(prefix: str, name: str) -> str:

    return join_uri(prefix, name)


def register_request_file(store, job_id: str, stream: RequestStream, meta: dict) -> tuple[int, dict[str, InvalidRow]]:
    """Register the request file's rows in the job as they are read, ``REGISTER_ROWS`` per call
    (each valid row with its request, so the driver never holds the job's requests). Returns
    how many rows were valid, and the malformed rows by the id they get in the job: their own
    id when they own it, else ``row-<n>`` (a duplicate id, or no id at all), so each is a failed
    row of its own."""
    valid, invalid_rows, specs = 0, {}, []
    for item in stream.rows:
        if isinstance(item, InvalidRow):
            request_id = item.request_id
            if (not request_id or stream.first_rows.get(request_id) != item.row_number
                    or request_id in invalid_rows):
                request_id = f"row-{item.row_number}"
            invalid_rows[request_id] = item
            specs.append(RequestSpec(request_id, None, 0))
        else:
            valid += 1
            specs.append(request_spec(*item))
        if len(specs) >= REGISTER_ROWS:
            store.create_job(job_id, specs, meta)
            specs = []
    store.create_job(job_id, specs, meta)
    return valid, invalid_rows


def _render(args, store, lease, storage, graph, job_id: str, max_attempts: int, manifest_uri: str, policy,
            total: int, reread) -> None:
    from pipeline.batch import BatchConfig, BatchDriver, open_executor

    try:
        executor = open_executor(getattr(args, "address", None), graph, storage)
    except RuntimeError as err:            # pools the cluster cannot place
        raise JobFailedError(f"job {job_id}: {err}") from None
    progress_line = None if getattr(args, "quiet", False) else _progress_printer(total)
    driver = BatchDriver(executor, store, storage, graph, BatchConfig(max_attempts=max_attempts),
                         on_progress=progress_line, lease=lease)
    try:
        driver.run(job_id)
    except JobNotFoundError:
        # The store lost the job (a Redis restarted without its data): what each row came to is
        # unknown here; say so in a manifest rather than guess (its rows read from the file again).
        requests = (item[0] for item in reread().rows if not isinstance(item, InvalidRow))
        written = _write_lost_manifest(job_id, storage, requests, manifest_uri, policy)
        raise JobFailedError(f"job {job_id}: its state vanished from the job store mid-run (restarted without its "
                             f"data?); finished videos stay under {policy.write}; "
                             + (f"manifest with every row 'unknown': {written}" if written else "no manifest written")
                             ) from None
    finally:
        executor.shutdown()
        if progress_line is not None:
            print(file=sys.stderr)


def _manifest_metadata(policy) -> dict[str, str]:
    """The manifest's schema metadata: the job's access policy (``--allow-any`` shows here)."""
    return {"talkfarm.access": json.dumps(policy.to_meta(), sort_keys=True)}


def _write_manifest(job_id, store, storage, invalid_rows, uri: str, policy) -> str:
    from pipeline.batch import write_job_manifest

    try:
        return write_job_manifest(job_id, store, storage, None, uri, invalid_rows,
                                  metadata=_manifest_metadata(policy))
    except (OSError, TalkfarmError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise JobFailedError(f"job {job_id}: cannot write the manifest to {uri} ({reason}); every row's outcome is "
                             f"in the job store: talkfarm status {job_id}") from None


def _write_lost_manifest(job_id, storage, requests, uri: str, policy) -> str | None:

    from pipeline.manifest import ManifestRow, write_manifest

    now = datetime.now(timezone.utc)
    rows = (ManifestRow(job_id=job_id, request_id=request.id, status="unknown", image_uri=request.image,
                        video_uri=request.video, audio_uri=request.audio, output_uri=request.output,
                        error_stage="jobstate",
                        error_message="job state lost from the job store mid-run", seed=request.controls.seed,
                        controls=request.controls.model_dump_json(), created_at=now, finished_at=now)
            for request in requests)
    try:
        return write_manifest(rows, uri, storage, metadata=_manifest_metadata(policy))
    except (OSError, TalkfarmError):
        return None


def _progress_printer(total: int):
    """A one-line progress display, redrawn at most twice a second."""

    last = [0.0, ""]

    def show(progress) -> None:
        line = (f"rows: {progress.done} done, {progress.failed} failed, {progress.running} running of {total}"
                f" | {progress.frames_per_second:5.1f} frames/s")
        now = time.monotonic()
        if line != last[1] and now - last[0] >= 0.5:
            print("\r" + line, end="", file=sys.stderr, flush=True)
            last[:] = [now, line]
    return show


def _job_meta(store, job_id: str) -> dict:

    try:
        return store.job_status(job_id).meta
    except JobNotFoundError:
        raise BadInputError("no such job", job_id) from None


def _status(args: argparse.Namespace) -> int:

    with _store(args) as store:
        meta = _job_meta(store, args.job)
        status = store.job_status(args.job)
        policy = AccessPolicy.from_meta(meta) if "requests" in meta else None
        failures = [state for state in store.iter_request_states(args.job) if state.status == "failed"]
        if args.json:
            print(json.dumps({"job": args.job, "counts": status.counts, "cancelled": status.cancelled,
                              "access": None if policy is None else policy.to_meta(),
                              "failed": [{"id": s.request_id, "stage": s.error_stage, "message": s.error_message,
                                          "history": s.history} for s in failures]}, indent=2))
            return 0
        print(f"job {args.job}{' (cancelled)' if status.cancelled else ''}: "
              + ", ".join(f"{count} {name}" for name, count in status.counts.items()))
        if policy is not None:
            print(f"  {policy.describe()}")
        for state in failures:
            print(f"  failed {state.request_id}: {state.error_stage}: {state.error_message}")
    return 0


def _cancel(args: argparse.Namespace) -> int:

    with _store(args) as store:
        try:
            count = store.cancel(args.job)
        except JobNotFoundError:
            raise BadInputError("no such job", args.job) from None
    print(f"job {args.job}: cancelled; {count} pending rows will not run (finished outputs stay)")
    return 0


def _retry(args: argparse.Namespace) -> int:

    with _store(args) as store:
        meta = _job_meta(store, args.job)
        policy = AccessPolicy.from_meta(meta)

        def requeue() -> None:
            count = store.requeue_failed(args.job)
            print(f"job {args.job}: {count} rows queued again", file=sys.stderr)

        with _lease(args, store, args.job) as lease:
            return _run(args, store, lease, args.job, meta["requests"], meta["out"], policy, None,
                        int(meta.get("max_attempts", 3)), before_create=requeue)
