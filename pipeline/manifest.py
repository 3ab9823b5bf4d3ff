"""The Parquet manifest of a job: one row per request, whatever happened to it.

Column types (``MANIFEST_SCHEMA``) were chosen so the file queries well in pyarrow / DuckDB /
Spark / pandas without parsing:

* ``seconds_per_stage``: ``map<string, double>`` (stage -> wall seconds) -- a map, not a
  struct, because the stage set may grow; ``model_versions``: ``map<string, string>``.
* ``controls``: JSON text of :class:`~core.schemas.RenderControls` (its ``emotion`` is a
  name *or* a vector, which no single Arrow type holds cleanly); ``seed`` is also a column.
* ``warnings``: ``list<string>`` (e.g. "3 faces found; used the largest").
* ``created_at`` / ``finished_at``: ``timestamp[us, UTC]``.
* ``attempt_history``: ``list<string>``, one line per earlier run that ``talkfarm retry`` requeued
  (``failed after 3 attempts: decode: ...``), oldest first.
* ``quality_json``: JSON text of the render's QC metrics (``workers.quality.qc.BatchQC`` in the encoder;
  null = not measured); ``quality_flags``: ``list<string>``, the thresholds it broke.
* ``transcript_json``: JSON text of the render's transcript (text, ``source`` given or
  recognised, language, recogniser confidence, ``used``); null when the audio stage did not run.
* Ids, hashes and errors are nullable strings (a malformed request row has no render id and may
  have no request id -- :meth:`ManifestRow.for_invalid_row` names it ``row-<n>``).

The file carries ``talkfarm.manifest_version`` in its schema metadata (and, from a batch job,
``talkfarm.access``: the JSON access policy the job ran under, ``allow_any`` included); :func:`read_manifest`
fills columns missing from older files with their defaults.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from core.schemas import RenderControls, RenderRequest, RenderResult
from core.storage import Storage

__all__ = ["ManifestRow", "MANIFEST_SCHEMA", "MANIFEST_VERSION", "write_manifest", "read_manifest",
           "manifest_table", "rows_to_jsonl", "history_lines"]

MANIFEST_VERSION = "1"

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("render_id", pa.string()),
        pa.field("image_uri", pa.string()),
        pa.field("image_sha256", pa.string()),
        pa.field("video_uri", pa.string()),
        pa.field("audio_uri", pa.string()),
        pa.field("audio_sha256", pa.string()),
        pa.field("output_uri", pa.string()),
        pa.field("output_sha256", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_stage", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("audio_seconds", pa.float64()),
        pa.field("frames", pa.int64()),
        pa.field("seconds_per_stage", pa.map_(pa.string(), pa.float64())),
        pa.field("total_seconds", pa.float64()),
        pa.field("model_versions", pa.map_(pa.string(), pa.string())),
        pa.field("seed", pa.int64()),
        pa.field("controls", pa.string()),
        pa.field("watermark_payload", pa.string()),
        pa.field("warnings", pa.list_(pa.string())),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("quality_json", pa.string()),
        pa.field("quality_flags", pa.list_(pa.string())),
        pa.field("attempt_history", pa.list_(pa.string())),
        pa.field("transcript_json", pa.string()),
    ],
    metadata={"talkfarm.manifest_version": MANIFEST_VERSION},
)


def _as_utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass
class ManifestRow:
    """One request's line in the manifest (field names = column names of ``MANIFEST_SCHEMA``).

    ``status`` is ``done``, ``failed`` or ``cancelled`` (``pending`` / ``running`` for an
    interim manifest of an unfinished job). ``controls`` is the JSON text of the request's
    :class:`RenderControls`. Naive datetimes are taken as UTC. A dub (a request with a take)
    has ``video_uri`` and no ``image_uri``; its ``image_sha256`` is the take's content hash (the
    face's source, as the render id names it); the frames it passed through unchanged are
    counted in its ``warnings``.
    """

    job_id: str
    request_id: str
    status: str
    render_id: str | None = None
    image_uri: str | None = None
    image_sha256: str | None = None
    video_uri: str | None = None
    audio_uri: str | None = None
    audio_sha256: str | None = None
    output_uri: str | None = None
    output_sha256: str | None = None
    error_stage: str | None = None
    error_message: str | None = None
    attempts: int = 0
    audio_seconds: float | None = None
    frames: int | None = None
    seconds_per_stage: dict[str, float] = field(default_factory=dict)
    total_seconds: float | None = None
    model_versions: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    controls: str | None = None
    watermark_payload: str | None = None
    warnings: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    finished_at: datetime | None = None
    quality_json: str | None = None
    quality_flags: list[str] = field(default_factory=list)
    attempt_history: list[str] = field(default_factory=list)
    transcript_json: str | None = None

    def __post_init__(self) -> None:
        self.created_at = _as_utc(self.created_at)
        self.finished_at = _as_utc(self.finished_at)

    # -- conversions

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (datetimes stay ``datetime``; use ``json.dumps(..., default=str)`` for JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ManifestRow":
        """Build from a dict; unknown keys are ignored, missing optional ones take defaults.

        Arrow map columns arriving as lists of ``(key, value)`` pairs are turned into dicts.
        """
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("seconds_per_stage", "model_versions"):
            value = kwargs.get(key)
            if value is None:
                kwargs.pop(key, None)
            elif isinstance(value, list):
                kwargs[key] = dict(value)
        for key in ("warnings", "quality_flags", "attempt_history"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        if kwargs.get("attempts") is None:
            kwargs.pop("attempts", None)
        return cls(**kwargs)

    @property
    def controls_obj(self) -> RenderControls | None:
        """The ``controls`` column parsed back into :class:`RenderControls`."""
        return None if not self.controls else RenderControls.model_validate_json(self.controls)

    # -- constructors the graph uses

    @classmethod
    def from_result(
        cls,
        job_id: str,
        request: RenderRequest,
        result: RenderResult,
        *,
        render_id: str | None = None,
        image_sha256: str | None = None,
        audio_sha256: str | None = None,
        attempts: int = 1,
        watermark_payload: str | None = None,
        created_at: datetime | None = None,
        finished_at: datetime | None = None,
        attempt_history: list[str] | None = None,
    ) -> "ManifestRow":
        """A row from a request and its :class:`RenderResult` (``total_seconds`` = sum of stages
        unless both times are given, then ``finished_at - created_at``)."""
        finished_at = finished_at or datetime.now(timezone.utc)
        total = sum(result.seconds.values()) if result.seconds else None
        if created_at is not None:
            total = (_as_utc(finished_at) - _as_utc(created_at)).total_seconds()
        return cls(
            job_id=job_id, request_id=request.id, status=result.status, render_id=render_id,
            image_uri=request.image, image_sha256=image_sha256, video_uri=request.video, audio_uri=request.audio,
            audio_sha256=audio_sha256,
            output_uri=result.output if result.status == "done" else request.output,
            output_sha256=result.output_sha256, error_stage=result.error_stage, error_message=result.error_message,
            attempts=attempts, audio_seconds=result.audio_seconds, frames=result.frames,
            seconds_per_stage=dict(result.seconds), total_seconds=total, model_versions=dict(result.model_versions),
            seed=request.controls.seed, controls=request.controls.model_dump_json(),
            watermark_payload=watermark_payload, warnings=list(result.warnings),
            created_at=created_at, finished_at=finished_at,
            quality_json=None if result.quality is None else json.dumps(result.quality, sort_keys=True),
            quality_flags=list(result.quality_flags), attempt_history=list(attempt_history or []),
            transcript_json=None if result.transcript is None else json.dumps(result.transcript, sort_keys=True,
                                                                              ensure_ascii=False),
        )

    @classmethod
    def for_invalid_row(cls, job_id: str, row_number: int, request_id: str | None, message: str,
                        *, stage: str = "request") -> "ManifestRow":
        """A ``failed`` row for a malformed line of the request file (no render happened)."""
        now = datetime.now(timezone.utc)
        return cls(job_id=job_id, request_id=request_id or f"row-{row_number}", status="failed",
                   error_stage=stage, error_message=f"row {row_number}: {message}", attempts=0,
                   created_at=now, finished_at=now)


def history_lines(history: Iterable[dict[str, Any]]) -> list[str]:
    """A request's earlier runs (``RequestState.history``) as ``attempt_history`` lines:
    ``failed after 3 attempts: decode: gpu lost``."""
    return [f"{entry.get('status')} after {entry.get('attempts', 0)} attempts"
            + (f": {entry['stage']}: {entry['message']}" if entry.get("stage") else "") for entry in history]


def manifest_table(rows: Iterable[ManifestRow], metadata: dict[str, str] | None = None) -> pa.Table:
    """The rows as an Arrow table with ``MANIFEST_SCHEMA`` (plus ``metadata`` in its schema metadata)."""
    columns: dict[str, list[Any]] = {f.name: [] for f in MANIFEST_SCHEMA}
    for row in rows:
        for name, value in asdict(row).items():
            if name in ("seconds_per_stage", "model_versions"):
                value = list(value.items()) if value else []
            columns[name].append(value)
    schema = MANIFEST_SCHEMA
    if metadata:
        schema = schema.with_metadata({**schema.metadata, **{key.encode(): value.encode() for key, value in metadata.items()}})
    return pa.Table.from_pydict(columns, schema=schema)


# Rows per Parquet row group: the writer holds one group in memory at a time (~11 KB a row as
# Python objects before it is encoded), so a manifest of any length is written in flat memory
# (~11 MB; 10,000-row groups made the driver's peak grow with the job up to 10,000 rows).
ROW_GROUP_ROWS = 1_000


def write_manifest(rows: Iterable[ManifestRow], uri: str, storage=None, metadata: dict[str, str] | None = None,
                   row_group_rows: int = ROW_GROUP_ROWS) -> str:
    """Write the manifest Parquet file to ``uri`` atomically, streaming: ``rows`` (any iterable,
    e.g. a generator over the job store) are encoded ``row_group_rows`` at a time into a local
    temporary file, which is then put in place (:meth:`Storage.put`: a rename locally, a
    multipart upload and server-side copy on S3).

    ``storage`` defaults to a plain :class:`~core.storage.Storage`; ``metadata`` is added to
    the schema metadata. Returns ``uri``.
    """

    storage = storage or Storage()
    with tempfile.TemporaryDirectory(prefix="talkfarm-manifest-") as folder:
        local = Path(folder) / "manifest.parquet"
        rows = iter(rows)
        schema = manifest_table([], metadata).schema
        with pq.ParquetWriter(local, schema, compression="zstd") as writer:
            while (group := manifest_table(islice(rows, row_group_rows), metadata)).num_rows:
                writer.write_table(group, row_group_size=row_group_rows)
        return storage.put(local, uri)


def read_manifest(uri: str, storage=None) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest` (older files: missing columns default)."""

    storage = storage or Storage()
    table = pq.read_table(pa.BufferReader(storage.read_bytes(uri)))
    return [ManifestRow.from_dict(d) for d in table.to_pylist()]


def _json_default(value: Any) -> Any:  # pragma: no cover - helper for callers dumping rows
    return value.isoformat() if isinstance(value, datetime) else str(value)


def rows_to_jsonl(rows: Iterable[ManifestRow]) -> str:
    """Rows as JSON lines (for ``talkfarm status --json`` style output)."""
    return "".join(json.dumps(r.to_dict(), default=_json_default) + "\n" for r in rows)
