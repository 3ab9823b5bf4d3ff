"""Submit a request list to a Ray cluster through the Ray Jobs API (`talkfarm submit`, the nightly batch).

    talkfarm submit s3://bucket/lists/2026-11-21.csv --out s3://bucket/renders/2026-11-21 \
        --address http://ray-head:8265 --priority 5 --redis redis://redis:6379/0
    python -m jobs.nightly ...            # the same, as the nightly CronJob's entry point

What it does:
  * reads the request list (local path or s3:// URI) and names the submission
    ``talkfarm-nightly-<date>-<sha256 of the list, 12 hex>``: the same list on the same night
    is the same Ray job, so a re-run of the CronJob (or of this command) never submits it
    twice -- it reports / follows the job that already exists instead;
  * submits ``talkfarm batch <list> --out <prefix> --job-id <submission id> ...`` (or any
    ``--entrypoint``), with the job's access policy (``--allow PREFIX``, ``--allow-any``: the
    batch is confined to the list's own folder, the allowed prefixes and ``--out`` otherwise) with a runtime env (``--runtime-env`` YAML/JSON file and ``--env K=V``)
    and the priority (job metadata ``priority`` and ``TALKFARM_JOB_PRIORITY`` in its env);
  * follows the job's logs until it ends (``--no-follow`` to return right after submitting);
  * exit code 0 when the job succeeded (or was submitted, with ``--no-follow``), 1 when it
    failed or was stopped, 2 on bad input (unreadable list, bad runtime env file).

Authentication: Ray 2.60 clusters run with token authentication (``RAY_AUTH_MODE=token``).
The token is taken from ``--token-file``, else ``$RAY_AUTH_TOKEN``, else the file at
``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``, and sent as ``Authorization: Bearer``
on every Jobs API call (including the log stream). With no token found, nothing is sent
(a cluster without token auth).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BadInputError
from pipeline.batch_cli import add_policy_arguments

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass
class Submission:
    """A nightly submission as asked for on the command line."""

    requests_uri: str
    out_prefix: str
    address: str = DEFAULT_ADDRESS
    date: str | None = None                 # YYYY-MM-DD; default: today (UTC)
    priority: int = 0
    runtime_env: dict[str, Any] = field(default_factory=dict)
    redis_url: str | None = None
    graph: str | None = None
    max_attempts: int = 3
    entrypoint: str | None = None           # default: the talkfarm batch command
    allow: list[str] = field(default_factory=list)      # extra prefixes the batch may read
    allow_any: bool = False                 # no confinement (recorded in the job and its manifest)
    token: str | None = None
    name: str = "talkfarm-nightly"
    agent_wait_s: float = 120.0             # how long to retry while the head's job agent starts


def submission_id(list_bytes: bytes, date: str, name: str = "talkfarm-nightly") -> str:
    """``<name>-<date>-<sha256(list)[:12]>``: stable for one list on one night."""
    return f"{name}-{date}-{hashlib.sha256(list_bytes).hexdigest()[:12]}"


def find_token(token_file: str | None = None) -> str | None:
    """The Ray auth token: explicit file, $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if token_file:
        return Path(token_file).read_text().strip()
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    for candidate in (os.environ.get("RAY_AUTH_TOKEN_PATH"), Path.home() / ".ray" / "auth_token"):
        if candidate and Path(candidate).is_file():
            text = Path(candidate).read_text().strip()
            if text:
                return text
    return None


def load_runtime_env(path: str | None, env: list[str] | None) -> dict[str, Any]:
    """A runtime env from a YAML / JSON file plus ``KEY=VALUE`` environment variables."""
    runtime_env: dict[str, Any] = {}
    if path:
        import yaml

        try:
            runtime_env = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise BadInputError(f"cannot read runtime env: {err}", path) from None
        if not isinstance(runtime_env, dict):
            raise BadInputError("runtime env must be a mapping", path)
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInputError("expected KEY=VALUE", item)
        runtime_env.setdefault("env_vars", {})[key] = value
    return runtime_env


def batch_entrypoint(sub: Submission, job_id: str) -> str:
    """The command the Ray job runs on the cluster."""
    command = ["talkfarm", "batch", sub.requests_uri, "--out", sub.out_prefix, "--job-id", job_id,
               "--max-attempts", str(sub.max_attempts), "--quiet"]
    if sub.redis_url:
        command += ["--redis", sub.redis_url]
    if sub.graph:
        command += ["--graph", sub.graph]
    for prefix in sub.allow:
        command += ["--allow", prefix]
    if sub.allow_any:
        command.append("--allow-any")
    return shlex.join(command)


def make_client(address: str, token: str | None):
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {token}"} if token else None
    return JobSubmissionClient(address, headers=headers)


def submit(sub: Submission, client=None, log=None) -> tuple[str, bool]:
    """Submit unless this list was already submitted tonight; returns (submission id, newly submitted)."""
    log = log or sys.stderr          # looked up now: the CLI swaps sys.stderr after import
    from core.storage import Storage

    date = sub.date or dt.datetime.now(dt.timezone.utc).date().isoformat()
    # `{date}` in the list URI / output prefix is the night (e.g. s3://bucket/lists/{date}.csv).
    sub = dataclasses.replace(sub, requests_uri=sub.requests_uri.replace("{date}", date),
                              out_prefix=sub.out_prefix.replace("{date}", date),
                              allow=[prefix.replace("{date}", date) for prefix in sub.allow])
    job_id = submission_id(Storage().read_bytes(sub.requests_uri), date, sub.name)
    client = client or make_client(sub.address, sub.token)
    existing = _job_info(client, job_id)
    if existing is not None:
        print(f"{job_id}: already submitted ({existing.status}); not submitting again", file=log)
        return job_id, False
    runtime_env = json.loads(json.dumps(sub.runtime_env))       # a copy
    runtime_env.setdefault("env_vars", {})["TALKFARM_JOB_PRIORITY"] = str(sub.priority)
    metadata = {"priority": str(sub.priority), "requests": sub.requests_uri, "out": sub.out_prefix, "date": date,
                "submitted_by": "talkfarm-nightly"}
    deadline = time.monotonic() + sub.agent_wait_s
    while True:
        try:
            client.submit_job(entrypoint=sub.entrypoint or batch_entrypoint(sub, job_id), submission_id=job_id,
                              runtime_env=runtime_env, metadata=metadata)
            break
        except RuntimeError as err:
            if "already exists" in str(err):   # a concurrent submitter won the race: same job, fine
                print(f"{job_id}: already submitted; not submitting again", file=log)
                return job_id, False
            # A head that has just started answers 500 until its job agent is up: wait for it.
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)
    print(f"{job_id}: submitted (priority {sub.priority})", file=log)
    return job_id, True


def _job_info(client, job_id: str):
    try:
        return client.get_job_info(job_id)
    except RuntimeError as err:
        if "does not exist" in str(err) or "404" in str(err) or "not found" in str(err).lower():
            return None
        raise


def follow(client, job_id: str, out=None, poll_s: float = 1.0, timeout_s: float | None = None) -> str:
    """Stream the job's logs until it ends; returns its final status (SUCCEEDED / FAILED / STOPPED)."""

    out = out or sys.stdout

    async def _tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    try:
        asyncio.run(_tail())
    except Exception as err:   # the log stream dropped: fall back to polling the status
        print(f"{job_id}: log stream ended ({type(err).__name__}: {err}); polling status", file=sys.stderr)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(job_id)
        status = str(getattr(status, "value", status))
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(poll_s)


def run(sub: Submission, follow_logs: bool = True, client=None) -> int:
    """Submit (idempotently) and, with ``follow_logs``, wait; returns the process exit code."""
    client = client or make_client(sub.address, sub.token)
    job_id, _new = submit(sub, client)
    print(job_id, flush=True)
    if not follow_logs:
        return EXIT_OK
    status = follow(client, job_id)
    info = client.get_job_info(job_id)
    print(f"{job_id}: {status}" + (f" ({info.message})" if status != "SUCCEEDED" and info.message else ""),
          file=sys.stderr)
    return EXIT_OK if status == "SUCCEEDED" else EXIT_JOB_FAILED


# ---------------------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("requests", help="request list: local path or s3:// URI (.csv, .jsonl, .parquet)")
    parser.add_argument("--out", required=True, help="output prefix on the cluster: folder or s3://bucket/prefix")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", DEFAULT_ADDRESS),
                        help="Ray dashboard / Jobs API address (or $RAY_ADDRESS)")
    parser.add_argument("--date", default=None, help="night of the batch, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--priority", type=int, default=0, help="job priority (job metadata and $TALKFARM_JOB_PRIORITY)")
    parser.add_argument("--runtime-env", default=None, help="Ray runtime env, YAML or JSON file")
    parser.add_argument("--env", action="append", default=None, metavar="KEY=VALUE",
                        help="environment variable for the job (repeatable)")
    parser.add_argument("--redis", default=os.environ.get("TALKFARM_REDIS_URL"),
                        help="job state Redis URL on the cluster (or $TALKFARM_REDIS_URL)")
    parser.add_argument("--graph", default=None, help="pool layout YAML path on the cluster")
    parser.add_argument("--max-attempts", type=int, default=3, help="runs per request before a failure is final")
    parser.add_argument("--entrypoint", default=None, help="run this command instead of `talkfarm batch ...`")
    add_policy_arguments(parser)
    parser.add_argument("--token-file", default=None,
                        help="Ray auth token file (default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)")
    parser.add_argument("--name", default="talkfarm-nightly", help="submission id prefix")
    parser.add_argument("--no-follow", action="store_true", help="return once submitted; do not wait for the job")


def from_args(args: argparse.Namespace) -> Submission:
    return Submission(
        requests_uri=args.requests, out_prefix=args.out, address=args.address, date=args.date,
        priority=args.priority, runtime_env=load_runtime_env(args.runtime_env, args.env), redis_url=args.redis,
        graph=args.graph, max_attempts=args.max_attempts, entrypoint=args.entrypoint,
        allow=list(args.allow or []), allow_any=args.allow_any,
        token=find_token(args.token_file), name=args.name)


def handle(args: argparse.Namespace) -> int:
    return run(from_args(args), follow_logs=not args.no_follow)


def add_submit_command(commands) -> None:
    """Register ``talkfarm submit`` on the CLI's subparsers."""
    submit = commands.add_parser(
        "submit", help="submit a request list to a Ray cluster (Ray Jobs API), idempotently per night",
        description="Submit `talkfarm batch` for a request list to a Ray cluster through the Ray Jobs API. The "
                    "submission id is talkfarm-nightly-<date>-<sha256 of the list>: the same list on the same night "
                    "is never submitted twice. Follows the job's logs; exit code 1 if the job failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(submit)
    submit.set_defaults(handler=handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.nightly", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return handle(args)
    except BadInputError as err:
        print(f"nightly: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
