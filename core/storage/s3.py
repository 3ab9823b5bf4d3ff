"""The S3 side of :class:`~core.storage.Storage`: the boto3 client, and one retry policy.

Transient S3 failures (throttling, 5xx, connection / read timeouts) are retried with
exponential backoff + jitter, then raised as :class:`~core.errors.TransientError`; botocore's
own retries are switched off so there is one retry policy, this one. A missing object raises
``BadInputError("object not found", uri)``; other 4xx (access denied, no such bucket) raise
``BadInputError`` with S3's message.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, TypeVar

from core.errors import BadInputError, TransientError
from monitoring.metrics import metrics

T = TypeVar("T")

# S3 / botocore error codes that mean "try again later".
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
    "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException", "InternalError", "ServiceUnavailable",
    "RequestTimeout", "RequestTimeoutException", "OperationAborted",
})
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def client_error_info(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def make_client(*, region: str | None, endpoint_url: str | None, connect_timeout: float, read_timeout: float) -> Any:
    """A boto3 S3 client with the standard AWS settings (``region`` falls back to ``AWS_REGION``,
    then ``AWS_DEFAULT_REGION``), botocore's retries off and a pool for concurrent transfers."""
    import boto3
    from botocore.config import Config

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},  # our retry loop is the policy
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=32,
    )
    session = boto3.session.Session()
    return session.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def transfer_config(*, multipart_threshold: int, multipart_chunksize: int) -> Any:
    """boto3's TransferConfig for uploads, downloads and copies (multipart above the threshold)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize,
                          use_threads=True, max_concurrency=4)


def call_with_retries(uri: str, what: str, fn: Callable[[], T], *, max_attempts: int, backoff_s: float,
                      max_backoff_s: float, missing_ok: bool = False) -> T | None:
    """Run one S3 operation ``fn`` up to ``max_attempts`` times; map errors onto talkfarm's
    error types (``missing_ok``: a missing object returns None). The first retry waits about
    ``backoff_s`` seconds, doubling each attempt (with jitter) up to ``max_backoff_s``."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    last: BaseException | None = None
    for attempt in range(max_attempts):
        try:
            return fn()
        except (ClientError, S3UploadFailedError) as exc:
            inner = exc if isinstance(exc, ClientError) else (exc.__context__ or exc)
            code, status = client_error_info(inner)
            if code in NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
                if missing_ok:
                    return None
                raise BadInputError("object not found", uri) from exc
            if code in TRANSIENT_CODES or status >= 500 or status == 429 or (
                    isinstance(exc, S3UploadFailedError) and not code):
                last = exc
            else:
                raise BadInputError(f"{what} failed: {code or status}: {inner}", uri) from exc
        except NoCredentialsError as exc:
            raise BadInputError("no AWS credentials found (set the standard AWS settings)", uri) from exc
        except (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError) as exc:
            last = exc
        except BotoCoreError as exc:  # e.g. IncompleteReadError, checksum errors: worth another go
            last = exc
        except OSError as exc:  # socket errors surfacing raw through s3transfer
            if isinstance(exc, FileNotFoundError):
                raise
            last = exc
        if attempt + 1 < max_attempts:
            delay = min(max_backoff_s, backoff_s * (2 ** attempt))
            time.sleep(delay * (0.5 + random.random() / 2))
    metrics().storage_error(what)
    raise TransientError(f"{uri}: {what} failed after {max_attempts} attempts: {last}") from last
