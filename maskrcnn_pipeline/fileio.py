"""Atomic file writes: a file that exists under its final name is always complete.

Snakemake decides what to rerun from which outputs exist, so a half-written output that
survives a crash would be taken for a finished one. Everything is written beside the target
and renamed into place, which is atomic on POSIX file systems.

A write the file system refuses (disk full, quota, read-only) raises a PipelineError naming the
target and the errno, rather than a bare ``OSError`` naming a temporary file or nothing; the
temporary file is removed and an older complete target stays as it was.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from maskrcnn_pipeline.errors import PipelineError

#: errnos that say the file system takes no more bytes. Inside an ``atomic_path`` block
#: only these are blamed on the target: other OSErrors there may concern an input.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(target, exc) from exc
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp's 0600 would hide it from a group
        finally:
            os.close(fd)
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in STORAGE_ERRNOS:
                raise write_error(target, exc) from exc
            raise
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise write_error(target, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_error(target: Path, exc: OSError) -> PipelineError:
    """The error for a write to ``target`` that the system refused: file, reason, errno."""
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return PipelineError(
        f"{target}: cannot write ({exc.strerror or exc} [{code}]); it was left as it was (no "
        "partial file under its name). Free some space, or check the file system's quota and "
        "permissions, and run again"
    )


def write_bytes_atomic(target: str | os.PathLike[str], writer: Callable[[BinaryIO], None]) -> None:
    """Call ``writer`` with a binary file handle whose content replaces ``target`` atomically."""
    with atomic_path(target) as tmp:
        try:
            with open(tmp, "wb") as handle:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:  # every call here writes the target
            raise write_error(target, exc) from exc


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Replace ``target`` with ``text`` atomically."""
    write_bytes_atomic(target, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(target: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> None:
    """Replace ``target`` with ``data`` as JSON atomically."""
    write_text_atomic(target, json.dumps(data, indent=indent) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, turning a missing or malformed file into a PipelineError naming it."""
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
