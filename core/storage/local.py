"""Atomic writes of local files: readers see the old file or the whole new one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable

from core.storage.uri import PARTIAL_MARKER


def atomic_write(target: Path, write: Callable[[Any], Any], durable: bool = True) -> None:
    """Write ``target`` through ``write(binary file)``: into ``.<name>.partial-<uuid>`` in the same
    folder (created if missing), fsync, then ``os.replace``; the temporary never outlives the call.

    ``durable=False`` skips the fsync: the write is still atomic for every reader and survives
    the writer being killed (the bytes are in the page cache), but not a power loss."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}{PARTIAL_MARKER}{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
