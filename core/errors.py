"""Errors that carry the failing stage and input, so one bad request fails alone and clearly."""

from __future__ import annotations


class TalkfarmError(Exception):
    """Base class for errors talkfarm reports to users without a traceback."""


class BadInputError(TalkfarmError):
    """The request's input is unusable (no face, corrupt audio, missing file...).

    Retrying will not help; the request fails with this message in its result.

    Args:
        message: one plain sentence saying what is wrong.
        path: the file or URI at fault, if any.
        stage: the stage that found it (filled in by the stage runner when left empty).
    """

    def __init__(self, message: str, path: str | None = None, stage: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.stage = stage

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class TransientError(TalkfarmError):
    """A failure that may pass on retry (storage hiccup, worker lost)."""


class JobFailedError(TalkfarmError):
    """A batch job could not finish (state lost, lease lost, manifest unwritable): exit code 1."""
