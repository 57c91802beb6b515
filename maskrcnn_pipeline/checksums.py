"""Checksums of downloaded files: expected digests, and a hasher fed while the bytes stream.

:class:`StreamHasher` computes every wanted digest (md5 and/or sha256) from the chunks it is
given, in one pass: the downloader feeds it the very chunks it writes, so a file is never read
back just to be verified. :class:`Checksum` is an expected digest, full or a published prefix
(torchvision names weight files after the first 8 hex digits of their sha256).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from maskrcnn_pipeline.errors import PipelineError

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
