"""Atomic file writes: a file that exists under its final name is always complete.

Snakemake decides what to rerun from which outputs exist, so a half-written output that
survives a crash would be taken for a finished one. Everything is written beside the target
and renamed into place, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same directory so the final rename never crosses file
    systems. On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp's 0600 would hide outputs from a group
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: str | os.PathLike[str], writer: Callable[[BinaryIO], None]) -> None:
    """Call ``writer`` with a binary file handle whose content replaces ``target`` atomically."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        writer(handle)
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Replace ``target`` with ``text`` atomically."""
    write_bytes_atomic(target, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(target: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> None:
    """Replace ``target`` with ``data`` as JSON atomically."""
    write_text_atomic(target, json.dumps(data, indent=indent) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, turning a missing or malformed file into a PipelineError naming it."""
    from maskrcnn_pipeline.errors import PipelineError

    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise PipelineError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
