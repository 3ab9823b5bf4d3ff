"""Read a job's request list (CSV, JSONL or Parquet; local or ``s3://``) into RenderRequests.

Columns: ``id``, ``image`` or ``video`` and ``audio`` (required), ``priority``, ``fit`` and
``face`` (dubs), and one column per render control, generated from the fields of :class:`~core.schemas.RenderControls` by
:mod:`pipeline.controls` (so every control the CLI has is settable per row, with the same
bounds, defaults and parser):

==============  ========  ===================================================================
column          required  meaning
==============  ========  ===================================================================
id              yes       request id (unique in the file; no ``/``, ``\\``, control characters,
                          no leading ``.``; at most 200 characters) -- names the output file
image           one of    portrait path or URI: a render
video           the two   the actor's take, path or URI: a dub (``talkfarm dub``)
audio           yes       speech path or URI
priority        no        int, higher renders first (default 0)
fit, face       no        a dub's ``--fit`` (trim / hold / error) and ``--face`` (0 the largest)
<control>       no        every other field of ``RenderControls`` under its own name (size,
                          sampling_steps, audio_guidance, ...): the ``talkfarm render`` option
                          of the same name (``--sampling-steps``), same bounds and default
gaze_yaw,       no        the ``gaze`` pair, degrees; give both columns or neither
gaze_pitch
==============  ========  ===================================================================

Booleans are true/false/1/0/yes/no; ``emotion`` is a name (neutral, happy, ...) or a vector:
``0.1,-0.2,...`` or a JSON list ``[0.1, -0.2, ...]`` in CSV, a list in JSONL / Parquet.
``transcript`` is the text of the speech (aligned to the audio for lip shapes; a line that
does not match the audio renders audio-only with a warning).

Empty cells / nulls mean "use the default". Other columns are ignored and reported in
:attr:`RequestFile.ignored_columns` (``talkfarm batch`` warns about them, and refuses the file
with ``--strict``). Relative ``image`` / ``audio`` entries are resolved
against the request file's folder (or its S3 "folder").

A malformed row never sinks the file: it becomes an :class:`InvalidRow` with a message, and
the rest is read; so does a CSV / JSONL line that is not valid UTF-8. Duplicate ids: the first row with an id owns it (valid or not); later rows
with the same id are invalid. Row numbers are the line numbers of CSV / JSONL files (the CSV
header is line 1) and the 1-based row index of Parquet files.

A file-level problem (unreadable file, unknown format, a required column missing from the
header) raises :class:`~core.errors.BadInputError`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, NamedTuple

from pydantic import ValidationError

from core.errors import BadInputError
from core.schemas import RenderControls, RenderRequest, TakeOptions
from core.storage import OUTSIDE_MESSAGE, Storage, join_uri, parse_uri
from pipeline.controls import (
    CONTROL_COLUMNS,
    ControlValueError,
    control_values_from_row,
    parse_int,
    validation_message,
)
from pipeline.controls import is_blank as _blank
from pipeline.jobstate import PRIORITY_LIMIT, RequestSpec

__all__ = ["read_request_file", "open_request_file", "parse_request_rows", "iter_request_rows", "RequestFile",
           "RequestStream", "InvalidRow", "REQUEST_COLUMNS", "request_spec"]

REQUIRED_COLUMNS = ("id", "audio")
SOURCE_COLUMNS = ("image", "video")           # a header has at least one; a row exactly one
TAKE_COLUMNS = tuple(TakeOptions.model_fields)
OPTIONAL_COLUMNS = ("priority",) + TAKE_COLUMNS + CONTROL_COLUMNS
REQUEST_COLUMNS = REQUIRED_COLUMNS[:1] + SOURCE_COLUMNS + REQUIRED_COLUMNS[1:] + OPTIONAL_COLUMNS

_BAD_ID = re.compile(r"[/\\\x00-\x1f\x7f]")
_UNDECODED = re.compile("[\udc80-\udcff]")     # bytes that were not UTF-8 (surrogateescape)
NOT_UTF8 = "row is not UTF-8 text (undecodable bytes)"


class InvalidRow(NamedTuple):
    """A row that could not become a request (unpacks as ``(row_number, request_id, message)``)."""

    row_number: int
    request_id: str | None
    message: str


@dataclass
class RequestFile:
    """What :func:`read_request_file` found.

    Attributes:
        valid: ``(request, priority)`` pairs in file order.
        invalid: malformed rows, in file order.
        ignored_columns: header columns talkfarm does not know (probably typos).
    """

    valid: list[tuple[RenderRequest, int]] = field(default_factory=list)
    invalid: list[InvalidRow] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:  # ``valid, invalid = read_request_file(...)``
        return iter((self.valid, self.invalid))


@dataclass
class RequestStream:
    """A request file read row by row (:func:`open_request_file`), so a job of any length is
    registered without holding its requests.

    Attributes:
        rows: ``(request, priority)`` pairs and :class:`InvalidRow` s, in file order (once).
        ignored_columns: columns talkfarm does not know (known before ``rows`` is read).
        first_rows: request id -> number of the first row that used it (the row that owns the
            id: a later row with it is a duplicate); filled in as ``rows`` is read.
    """

    rows: Iterator[tuple[RenderRequest, int] | InvalidRow]
    ignored_columns: list[str] = field(default_factory=list)
    first_rows: dict[str, int] = field(default_factory=dict)


def request_spec(request: RenderRequest, priority: int = 0) -> RequestSpec:
    """A row to register in a job, carrying what it renders (the batch driver reads it back
    from the job store with each claim)."""
    return RequestSpec(request.id, None, priority, request.model_dump_json())


class _RowError(ValueError):
    pass


def _resolve(ref: str, base: str | None) -> str:
    """Resolve a relative image / audio entry against the request file's folder."""
    if base is None or "://" in ref or Path(ref).is_absolute():
        return ref
    if "://" in base:
        return join_uri(base, ref)
    return str(Path(base) / ref)


def _parse_row(row: dict[str, Any], out_prefix: str, base: str | None,
               defaults: dict[str, Any]) -> tuple[RenderRequest, int]:
    rid = row["id"]
    image, video, audio = row.get("image"), row.get("video"), row.get("audio")
    if _blank(image) and _blank(video):
        raise _RowError("missing image" if "video" not in row else "missing image (a render) or video (a dub)")
    if not _blank(image) and not _blank(video):
        raise _RowError("a row gives an image (a render) or a video (a dub), not both")
    if _blank(audio):
        raise _RowError("missing audio")
    try:
        controls = control_values_from_row(row, defaults)
        priority = 0 if _blank(row.get("priority")) else parse_int(row["priority"], "priority")
    except ControlValueError as exc:
        raise _RowError(str(exc)) from None
    if not -PRIORITY_LIMIT < priority < PRIORITY_LIMIT:
        raise _RowError(f"priority must be within +-{PRIORITY_LIMIT}, got {priority}")
    source = ({"image": _resolve(str(image).strip(), base)} if _blank(video) else
              {"video": _resolve(str(video).strip(), base), "take": _take_options(row)})
    try:
        request = RenderRequest(
            id=rid, **source, audio=_resolve(str(audio).strip(), base),
            output=join_uri(out_prefix, f"{rid}.mp4"), controls=RenderControls(**controls))
    except ValidationError as exc:
        raise _RowError(validation_message(exc)) from None
    return request, priority


def _take_options(row: dict[str, Any]) -> TakeOptions:
    """A dub row's ``fit`` and ``face`` (blank: the defaults)."""
    values: dict[str, Any] = {}
    try:
        if not _blank(row.get("fit")):
            values["fit"] = str(row["fit"]).strip()
        if not _blank(row.get("face")):
            values["face"] = parse_int(row["face"], "face")
        return TakeOptions(**values)
    except ControlValueError as exc:
        raise _RowError(str(exc)) from None
    except ValidationError as exc:
        raise _RowError(validation_message(exc)) from None


def parse_request_rows(
    rows: Iterator[tuple[int, dict[str, Any] | str]],
    out_prefix: str,
    *,
    base: str | None = None,
    defaults: dict[str, Any] | None = None,
    storage: Storage | None = None,
) -> RequestFile:
    """Validate ``(row_number, row)`` pairs (``row`` a dict, or an error message string for a
    row that could not even be decoded). See the module docstring for the rules."""
    result = RequestFile()
    for item in iter_request_rows(rows, out_prefix, base=base, defaults=defaults, storage=storage):
        if isinstance(item, InvalidRow):
            result.invalid.append(item)
        else:
            result.valid.append(item)
    return result


def iter_request_rows(
    rows: Iterator[tuple[int, dict[str, Any] | str]],
    out_prefix: str,
    *,
    base: str | None = None,
    defaults: dict[str, Any] | None = None,
    storage: Storage | None = None,
    seen: dict[str, int] | None = None,
) -> Iterator[tuple[RenderRequest, int] | InvalidRow]:
    """:func:`parse_request_rows` one row at a time: ``(request, priority)`` or an
    :class:`InvalidRow` per row; ``seen`` (id -> first row number) is filled in as it goes."""
    seen = {} if seen is None else seen
    defaults = dict(defaults or {})
    for number, row in rows:
        if isinstance(row, str):
            yield InvalidRow(number, None, row)
            continue
        raw_id = row.get("id")
        rid = None if _blank(raw_id) else str(raw_id).strip()
        if isinstance(raw_id, float) and raw_id.is_integer():
            rid = str(int(raw_id))
        try:
            if rid is None:
                raise _RowError("missing id")
            if rid in seen:
                raise _RowError(f"duplicate id {rid!r} (first used on row {seen[rid]})")
            seen[rid] = number
            if _BAD_ID.search(rid) or rid.startswith(".") or len(rid) > 200:
                raise _RowError(f"bad id {rid!r}: no '/', '\\', control characters or leading '.'; "
                                f"at most 200 characters")
            request, priority = _parse_row({**row, "id": rid}, out_prefix, base, defaults)
            if storage is not None:
                for uri in (request.source, request.audio):
                    if not storage.is_allowed(uri):      # decided on the URI alone: nothing is looked up
                        raise _RowError(f"{uri}: {OUTSIDE_MESSAGE}")
        except _RowError as exc:
            yield InvalidRow(number, rid, str(exc))
            continue
        except BadInputError as exc:  # e.g. an unsupported URI scheme
            yield InvalidRow(number, rid, str(exc))
            continue
        yield request, priority


def _detect_format(uri: str) -> str:
    name = PurePosixPath(parse_uri(uri).key).name.lower()
    for suffixes, fmt in (((".csv",), "csv"), ((".jsonl", ".ndjson", ".json"), "jsonl"),
                          ((".parquet", ".pq"), "parquet")):
        if name.endswith(suffixes):
            return fmt
    raise BadInputError("unknown request file format; use .csv, .jsonl or .parquet (or pass fmt=)", uri)


def _check_header(columns: list[str], uri: str) -> list[str]:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if not any(c in columns for c in SOURCE_COLUMNS):
        missing.insert(1, "image")
        raise BadInputError(f"request file has no {', '.join(repr(c) for c in missing)} column", uri)
    return [c for c in columns if c not in REQUEST_COLUMNS]


def read_request_file(
    uri: str,
    out_prefix: str,
    storage: Storage | None = None,
    *,
    fmt: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> RequestFile:
    """Read and validate a request list, all of it in memory (:func:`open_request_file` reads
    it row by row).

    Args:
        uri: local path, ``file://`` or ``s3://`` URI of a ``.csv``, ``.jsonl`` or ``.parquet`` file.
        out_prefix: where outputs go; request ``id`` renders to ``<out_prefix>/<id>.mp4``.
        storage: used to read ``uri`` and to check input URIs against its allow-list
            (default: a plain :class:`Storage`, everything allowed).
        fmt: ``"csv"``, ``"jsonl"`` or ``"parquet"``; default from the file extension.
        defaults: RenderControls fields applied to every row before the row's own values
            (e.g. ``{"size": 256}`` from a CLI flag).

    Returns:
        A :class:`RequestFile`; ``valid, invalid = read_request_file(...)`` also works.
    """
    stream = open_request_file(uri, out_prefix, storage, fmt=fmt, defaults=defaults)
    result = RequestFile(ignored_columns=stream.ignored_columns)
    for item in stream.rows:
        if isinstance(item, InvalidRow):
            result.invalid.append(item)
        else:
            result.valid.append(item)
    return result


def open_request_file(
    uri: str,
    out_prefix: str,
    storage: Storage | None = None,
    *,
    fmt: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> RequestStream:
    """:func:`read_request_file`, row by row: file-level problems raise here; each row is
    parsed and validated only as :attr:`RequestStream.rows` is read."""
    storage = storage or Storage()
    fmt = (fmt or _detect_format(uri)).lower()
    if fmt not in ("csv", "jsonl", "parquet"):
        raise BadInputError(f"unknown request file format {fmt!r}", uri)
    if not storage.is_writable(out_prefix):
        raise BadInputError(f"output prefix is {OUTSIDE_MESSAGE}", out_prefix)
    data = storage.read_bytes(uri)
    parsed = parse_uri(uri)
    if parsed.scheme == "s3":
        base = uri.rsplit("/", 1)[0]
    else:
        base = str(parsed.path.parent)

    if fmt == "csv":
        # Undecodable bytes become lone surrogates, so one bad byte fails its own row only.
        text = data.decode("utf-8-sig", errors="surrogateescape")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [c.strip() for c in (reader.fieldnames or [])]
        if any(_UNDECODED.search(c) for c in header):
            raise BadInputError("request file header is not UTF-8 text", uri)
        reader.fieldnames = header
        ignored = _check_header(header, uri)

        def rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield reader.line_num, f"unreadable CSV line: {exc}"
                    continue
                if None in row:
                    yield reader.line_num, f"row has {len(header) + len(row[None])} fields; the header has {len(header)}"
                    continue
                if all(_blank(v) for v in row.values()):
                    continue  # blank line
                if any(isinstance(v, str) and _UNDECODED.search(v) for v in row.values()):
                    yield reader.line_num, NOT_UTF8
                    continue
                yield reader.line_num, row

    elif fmt == "jsonl":
        lines = data.decode("utf-8-sig", errors="surrogateescape").splitlines()
        ignored = sorted(_jsonl_keys(lines) - set(REQUEST_COLUMNS))

        def rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                if _UNDECODED.search(line):
                    yield number, NOT_UTF8
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"not valid JSON: {exc.msg} (column {exc.colno})"
                    continue
                if not isinstance(obj, dict):
                    yield number, "not a JSON object"
                    continue
                yield number, obj

    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise BadInputError(f"request file is not a readable Parquet file: {exc}", uri) from None
        ignored = _check_header(table.column_names, uri)

        def rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
            number = 0
            for batch in table.to_batches(max_chunksize=1000):   # Python rows made a batch at a time
                for record in batch.to_pylist():
                    number += 1
                    yield number, record

    stream = RequestStream(iter(()), ignored)
    stream.rows = iter_request_rows(rows(), out_prefix, base=base, defaults=defaults, storage=storage,
                                    seen=stream.first_rows)
    return stream


def _jsonl_keys(lines: list[str]) -> set[str]:
    """Every key of the JSON objects among ``lines`` (a first pass, so unknown columns are
    known before any row is registered)."""
    keys: set[str] = set()
    for line in lines:
        if line.strip() and not _UNDECODED.search(line):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                keys.update(obj)
    return keys
