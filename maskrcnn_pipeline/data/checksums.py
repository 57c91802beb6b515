"""Checksums of downloaded files: expected digests, and a hasher fed while the bytes stream.

:class:`StreamHasher` computes every wanted digest (md5 and/or sha256) from the chunks it is
given, in one pass: the downloader feeds it the very chunks it writes, so a file is never read
back just to be verified. :class:`Checksum` is an expected digest, full or a published prefix
(torchvision names weight files after the first 8 hex digits of their sha256).
:class:`ChecksumLock` holds the sha256 of files whose publisher gives none (Detectron's
R-50.pkl), recorded on their first download: trust on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import read_json, write_json_atomic

#: Bytes per read: large enough that hashing runs at full speed, small enough for progress.
CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class Checksum:
    """An expected digest: the full hex digest, or a published prefix of it (``prefix``)."""

    algorithm: str
    expected: str

    def __post_init__(self) -> None:
        if self.algorithm not in ("md5", "sha256"):
            raise PipelineError(f"checksum algorithm {self.algorithm!r}: use md5 or sha256")
        length = hashlib.new(self.algorithm).digest_size * 2
        if not re.fullmatch(r"[0-9a-f]+", self.expected) or not (8 <= len(self.expected) <= length):
            raise PipelineError(
                f"{self.algorithm} {self.expected!r}: expected {length} hex digits "
                "(or a prefix of at least 8)"
            )

    @classmethod
    def from_key(cls, key: str, value: str) -> Checksum:
        """From a config key: ``md5``, ``sha256`` or ``sha256_prefix``."""
        return cls(key.removesuffix("_prefix"), value.lower())

    @property
    def is_prefix(self) -> bool:
        return len(self.expected) < hashlib.new(self.algorithm).digest_size * 2

    def matches(self, actual: str) -> bool:
        return actual.startswith(self.expected) if self.is_prefix else actual == self.expected

    def describe(self) -> str:
        return f"{self.algorithm}{' prefix' if self.is_prefix else ''} {self.expected}"


def parse_checksums(entries: Mapping[str, str]) -> list[Checksum]:
    """``{"md5": ..., "sha256_prefix": ...}`` (config keys) -> checksums; at least one."""
    checks = [Checksum.from_key(key, value) for key, value in entries.items() if value]
    if not checks:
        raise PipelineError("no checksum given: a download must be verified (md5 or sha256)")
    return checks


class StreamHasher:
    """Every wanted digest, fed from the same chunks that are written: one pass over the bytes."""

    def __init__(self, algorithms: Iterable[str]) -> None:
        self.algorithms = tuple(dict.fromkeys(algorithms))
        self.reset()

    def reset(self) -> None:
        self._digests = {name: hashlib.new(name) for name in self.algorithms}
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        for digest in self._digests.values():
            digest.update(chunk)
        self.size += len(chunk)

    def update_from_file(self, path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> int:
        """Hash a file's bytes (an earlier run's ``.part``); returns how many were read."""
        before = self.size
        with open(path, "rb") as handle:
            buffer = bytearray(chunk_size)
            view = memoryview(buffer)
            while count := handle.readinto(buffer):
                self.update(view[:count])
        return self.size - before

    def hexdigests(self) -> dict[str, str]:
        return {name: digest.hexdigest() for name, digest in self._digests.items()}


def mismatches(checks: Iterable[Checksum], actual: Mapping[str, str]) -> list[str]:
    """One line per checksum that does not match: expected and actual digest."""
    return [
        f"{check.describe()} expected, got {actual[check.algorithm]}"
        for check in checks
        if not check.matches(actual[check.algorithm])
    ]


class ChecksumLock:
    """A JSON file (name -> sha256, size, url, when) of files trusted on their first download.

    The first download of such a file records its sha256 here; every later download, on any
    machine with the same lock file, must match it, so the file cannot change unnoticed after
    that first download. Commit the file: it is what makes the trust last. Writers hold an
    exclusive flock on the lock file's folder (where the file system allows it), so two
    fetch jobs recording at once do not lose an entry.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def entries(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        data = read_json(self.path)
        if not isinstance(data, dict):
            raise PipelineError(f"{self.path}: expected a JSON object of file name -> sha256")
        return data

    def entry(self, name: str) -> dict[str, Any] | None:
        entry = self.entries().get(name)
        if entry is not None and not (isinstance(entry, dict) and "sha256" in entry):
            raise PipelineError(f"{self.path}: the entry {name!r} has no sha256; delete it")
        return entry

    def checksum(self, name: str) -> Checksum | None:
        """The recorded sha256 of ``name``, or None before its first download."""
        entry = self.entry(name)
        return None if entry is None else Checksum("sha256", str(entry["sha256"]).lower())

    def record(self, name: str, *, sha256: str, size: int, url: str) -> dict[str, Any]:
        """Record the first download of ``name``; a different digest already there is an error
        (another job recorded other bytes under that name meanwhile)."""
        with self._locked():
            entries = self.entries()
            known = entries.get(name)
            if known is not None:
                if known.get("sha256") != sha256:
                    raise PipelineError(
                        f"{self.path}: {name} is recorded with sha256 {known.get('sha256')}, "
                        f"this download is {sha256}"
                    )
                return known
            entries[name] = {
                "sha256": sha256,
                "size": size,
                "url": url,
                "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_json_atomic(self.path, dict(sorted(entries.items())))
            return entries[name]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):  # not every file system locks; then best effort
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)
