"""Download one file: resumable, retried, verified while it streams, never left half-done.

COCO is 19 GB fetched over links that drop; a file that exists under its final name must be
complete and correct, because Snakemake (and every later stage) takes its existence as proof.

- The bytes go to ``<name>.part`` and are fed, chunk by chunk, to the digests (md5 and/or
  sha256) as they are written: the file is never read back for the check. Only a ``.part``
  left by an earlier *process* is hashed once from disk before resuming, since a digest's
  state cannot be saved portably; a fresh download reads its bytes exactly once.
- An interrupted transfer resumes with an HTTP ``Range`` request. ``If-Range`` (the ETag, or
  Last-Modified) and the total size make sure the rest belongs to the same file; a server
  that ignores the range (answers 200) or reports another size restarts the file from zero.
- Connection drops, timeouts and HTTP 5xx/408/429 are retried with exponential backoff; the
  count of consecutive failures is bounded, and an attempt that made progress resets it.
  Other 4xx (404, 403) fail at once with the URL in the message.
- After the last byte, the digests are compared: a match renames ``.part`` onto the target;
  a mismatch moves the bytes aside to ``<name>.corrupt`` so a rerun starts clean.

- A server that announces no size (no Content-Length) could send forever: such a body is
  cut off at ``max_unknown_size`` bytes (``download.max_unknown_size_gb``), and its ``.part``
  deleted, so it can neither fill the disk nor pass for a complete file.

Only http, https and file URLs are accepted, and only redirects to http or https are followed
(urllib alone would follow one to ftp://). Progress shows as a tqdm bar in a terminal and as
periodic log lines otherwise (the rules' log files).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from maskrcnn_pipeline.data.checksums import (
    CHUNK_SIZE,
    Checksum,
    ChecksumLock,
    StreamHasher,
    mismatches,
)
from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "file")
#: HTTP statuses worth another try: the server or a proxy is busy or failing for now.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "maskrcnn-pipeline-fetch/1"
#: Redirects may lead to these schemes only (file: never, as urllib also refuses).
REDIRECT_SCHEMES = ("http", "https")
GB = 10**9
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class FetchOptions:
    """How hard to try. ``retries`` bounds consecutive failures without progress."""

    retries: int = 5
    timeout: float = 60.0
    backoff: float = 2.0
    max_backoff: float = 120.0
    chunk_size: int = CHUNK_SIZE
    progress_bar: bool | None = None  # None: a bar when stderr is a terminal
    log_interval: float = 30.0
    #: Bytes accepted from a response that announces no size (download.max_unknown_size_gb).
    max_unknown_size: int = 100 * GB


@dataclass
class FetchResult:
    """What a fetch did: the figures the benchmark and the logs report."""

    path: Path
    digests: dict[str, str]
    size: int
    downloaded: int = 0  # bytes received from the network in this call
    rehashed: int = 0  # bytes read back from disk (a .part of an earlier run, or the target)
    attempts: int = 0
    skipped: bool = False  # the target was already there and matched


class ChecksumMismatch(PipelineError):
    """The downloaded bytes are not the expected ones (moved aside to ``.corrupt``)."""


class _Transient(Exception):
    """A failure worth retrying (the message says what happened)."""


@dataclass
class _PartState:
    """What is known about the bytes in ``.part``: kept beside it as ``.part.json`` so a later
    process can resume with ``If-Range`` and a size check."""

    url: str
    validator: str | None = None  # strong ETag, else Last-Modified
    total: int | None = None
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: Path, url: str) -> _PartState:
        state = cls(url, path=path)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return state
        if isinstance(saved, dict) and saved.get("url") == url:
            state.validator, state.total = saved.get("validator"), saved.get("total")
        return state

    def save(self) -> None:
        assert self.path is not None
        record = {"url": self.url, "validator": self.validator, "total": self.total}
        self.path.write_text(json.dumps(record) + "\n", encoding="utf-8")

    def forget(self) -> None:
        self.validator = self.total = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class _Progress:
    """A tqdm bar in a terminal; otherwise a log line every ``interval`` seconds."""

    def __init__(self, name: str, options: FetchOptions) -> None:
        self.name, self.interval = name, options.log_interval
        use_bar = options.progress_bar
        self.use_bar = sys.stderr.isatty() if use_bar is None else use_bar
        self.bar: Any = None
        self.total: int | None = None
        self.done = 0
        self._last_log = self._start = time.monotonic()
        self._start_bytes = 0

    def begin(self, done: int, total: int | None) -> None:
        self.done, self.total, self._start_bytes = done, total, done
        self._start = self._last_log = time.monotonic()
        if self.use_bar:
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(
                total=total,
                initial=done,
                desc=self.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                leave=False,
            )

    def update(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self._last_log >= self.interval:
            self._last_log = now
            log.info("%s: %s", self.name, self.status(now))

    def status(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._start, 1e-9)
        rate = (self.done - self._start_bytes) / elapsed
        if self.total:
            share = f" of {_size(self.total)} ({100 * self.done / self.total:.1f}%)"
        else:
            share = ""
        return f"{_size(self.done)}{share}, {_size(rate)}/s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _size(count: float) -> str:
    """A byte count for people: 18.0 GiB, 3.2 MiB."""
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def check_url(url: str) -> str:
    """The URL's scheme, if it is one we fetch; a PipelineError naming the URL otherwise."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise PipelineError(
            f"{url}: unsupported URL scheme {scheme or '(none)'!r}; use http://, https:// or "
            "file:// (a local copy: file:///absolute/path, or set download.mirror)"
        )
    return scheme


def _sidecars(target: Path) -> tuple[Path, Path, Path]:
    return (
        target.with_name(target.name + ".part"),
        target.with_name(target.name + ".part.json"),
        target.with_name(target.name + ".corrupt"),
    )


def fetch(
    url: str,
    target: str | os.PathLike[str],
    checksums: Iterable[Checksum],
    options: FetchOptions | None = None,
    *,
    unverified_first_use: bool = False,
) -> FetchResult:
    """Download ``url`` to ``target`` and verify it; PipelineError when that cannot be done.

    An existing ``target`` is verified first and kept when it matches (moved aside when not).
    Only :func:`fetch_trusted` may pass no checksum (``unverified_first_use``): it records
    the sha256 computed here.
    """
    checks = list(checksums)
    if not checks and not unverified_first_use:
        raise PipelineError(f"{target}: no checksum given; a download must be verified")
    download = _Download(url, Path(target), checks, options or FetchOptions())
    existing = download.verify_existing()
    if existing is not None:
        return existing
    return download.run()


class _RangeRefused(Exception):
    """HTTP 416: the requested range starts at or after the end of the file."""

    def __init__(self, total: int | None) -> None:
        super().__init__(total)
        self.total = total


class _Download:
    """The state of one file's download across attempts: ``.part``, digests, validators."""

    def __init__(
        self, url: str, target: Path, checks: list[Checksum], options: FetchOptions
    ) -> None:
        self.url, self.target, self.checks, self.options = url, target, checks, options
        self.scheme = check_url(url)
        self.part, part_json, self.corrupt = _sidecars(target)
        # a file trusted on first use has no checks: its sha256 is computed to be recorded
        self.hasher = StreamHasher([check.algorithm for check in checks] or ["sha256"])
        self.state = _PartState.load(part_json, url)
        self.progress = _Progress(target.name, options)
        self.result = FetchResult(target, {}, 0)

    def verify_existing(self) -> FetchResult | None:
        """A target that is already there and matches is kept; a bad one is moved aside."""
        if not self.target.exists():
            return None
        self.result.rehashed = self.hasher.update_from_file(self.target)
        digests = self.hasher.hexdigests()
        if not mismatches(self.checks, digests):
            log.info("%s: already present and verified", self.target)
            self.result.digests, self.result.size = digests, self.hasher.size
            self.result.skipped = True
            return self.result
        log.warning("%s: does not match its checksum; moved to %s", self.target, self.corrupt)
        os.replace(self.target, self.corrupt)
        self.hasher.reset()
        return None

    def run(self) -> FetchResult:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.part.exists():
            self.result.rehashed += self.hasher.update_from_file(self.part)
            log.info("%s: resuming after %s", self.target, _size(self.hasher.size))
        else:
            self.state.forget()
        try:
            self._attempts()
        finally:
            self.progress.close()
        return self._finish()

    def _attempts(self) -> None:
        """Attempt until complete; bounded by ``retries`` consecutive fruitless failures."""
        failures = 0
        while True:
            self.result.attempts += 1
            received = self.result.downloaded
            try:
                self._attempt()
                return
            except _Transient as exc:
                failures = 1 if self.result.downloaded > received else failures + 1
                if failures > self.options.retries:
                    raise PipelineError(
                        f"{self.url}: download failed after {self.result.attempts} attempt(s): "
                        f"{exc}. {_size(self.hasher.size)} are kept in {self.part}; run again "
                        "to resume (or raise download.retries / download.timeout, or set "
                        "download.mirror)"
                    ) from None
                delay = min(self.options.backoff * 2 ** (failures - 1), self.options.max_backoff)
                log.warning(
                    "%s: %s; retry %d of %d in %.1f s",
                    self.url,
                    exc,
                    failures,
                    self.options.retries,
                    delay,
                )
                time.sleep(delay)

    def _attempt(self) -> None:
        """One request: resume (or start) ``.part`` and stream the rest of the file into it."""
        offset = self.hasher.size
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.state.validator:
                headers["If-Range"] = self.state.validator
        try:
            response = _open(self.url, self.scheme, headers, self.options.timeout)
        except _RangeRefused as refused:
            if offset in (refused.total, self.state.total):
                return  # an earlier attempt had already received every byte
            self._restart("the server refused the range")
            raise _Transient("HTTP 416 for a partial file") from None

        with response:
            status = response.status or 200  # file: URLs have no status
            total = _expected_total(response, status, offset)
            if offset and status != 206:
                self._restart(
                    "the server sent the whole file (it ignores Range, or the file changed)"
                )
            elif offset and self.state.total is not None and total != self.state.total:
                self._restart(f"the file's size changed ({self.state.total} -> {total} bytes)")
                raise _Transient("the file changed on the server")
            self.state.total = total
            self.state.validator = _validator(response) or self.state.validator
            self.state.save()
            size = _size(total) if total is not None else "? bytes"
            done = f"resuming at {_size(self.hasher.size)} of" if self.hasher.size else "fetching"
            log.info("%s: %s %s from %s", self.target.name, done, size, self.url)
            self.progress.begin(self.hasher.size, total)
            self._stream(response, total)

        if total is not None and self.hasher.size != total:
            if self.hasher.size > total:
                self._restart(f"more bytes than the {total} announced")
            raise _Transient(f"connection closed after {self.hasher.size} of {total} bytes")

    def _stream(self, response: BinaryIO, total: int | None) -> None:
        """Append the body to ``.part`` and feed the very same chunks to the digests.

        Without an announced ``total`` the body is cut off past ``max_unknown_size``.
        """
        limit = self.options.max_unknown_size if total is None else None
        try:
            with open(self.part, "ab") as handle:
                while True:
                    try:
                        chunk = response.read(self.options.chunk_size)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Transient(f"transfer interrupted ({exc!r})") from None
                    if not chunk:
                        return
                    if limit is not None and self.hasher.size + len(chunk) > limit:
                        handle.close()
                        self._too_big_unannounced(limit)
                    handle.write(chunk)
                    self.hasher.update(chunk)
                    self.result.downloaded += len(chunk)
                    self.progress.update(len(chunk))
        except OSError as exc:
            raise PipelineError(
                f"{self.part}: cannot write ({exc}); free some space and run again to resume"
            ) from exc

    def _too_big_unannounced(self, limit: int) -> None:
        self.part.unlink(missing_ok=True)
        self.state.forget()
        raise PipelineError(
            f"{self.url}: the server announced no size (no Content-Length) and sent more than "
            f"{limit} bytes ({_size(limit)}), the limit download.max_unknown_size_gb sets; "
            f"stopped, and deleted {self.part}. If the file is really that big, raise "
            "download.max_unknown_size_gb (scripts/fetch.py --max-unknown-size-gb)"
        )

    def _restart(self, why: str) -> None:
        log.warning("%s: %s; starting again from zero", self.url, why)
        self.part.unlink(missing_ok=True)
        self.hasher.reset()
        self.state.forget()

    def _finish(self) -> FetchResult:
        """Compare the digests; rename into place, or move the bad bytes aside."""
        result = self.result
        result.digests, result.size = self.hasher.hexdigests(), self.hasher.size
        bad = mismatches(self.checks, result.digests)
        self.state.forget()
        if bad:
            os.replace(self.part, self.corrupt)
            raise ChecksumMismatch(
                f"{self.target}: checksum mismatch for {self.url}: {'; '.join(bad)}. The bytes "
                f"were moved to {self.corrupt}; run again to download afresh, and if it repeats "
                "check the url, download.mirror and the checksum in the config"
            )
        with open(self.part, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.part, self.target)
        log.info(
            "%s: %s verified (%s) in %d attempt(s)",
            self.target,
            _size(result.size),
            ", ".join(f"{name} {value}" for name, value in result.digests.items()),
            result.attempts,
        )
        return result


def fetch_trusted(
    url: str,
    target: str | os.PathLike[str],
    lock: ChecksumLock,
    options: FetchOptions | None = None,
) -> FetchResult:
    """Download a file whose publisher gives no checksum: trust on first use.

    The first download (no entry for the file's name in ``lock``) is taken as it comes and its
    sha256 recorded in ``lock``; every later download is verified against that record and
    fails like any checksum mismatch (bytes moved to ``.corrupt``).
    """
    name = Path(target).name
    recorded = lock.checksum(name)
    if recorded is None:
        result = fetch(url, target, [], options, unverified_first_use=True)
        lock.record(name, sha256=result.digests["sha256"], size=result.size, url=url)
        log.warning(
            "%s: no published checksum; its sha256 %s is now recorded in %s (trust on first "
            "use): commit that file, and later downloads must match it",
            target,
            result.digests["sha256"],
            lock.path,
        )
        return result
    try:
        return fetch(url, target, [recorded], options)
    except ChecksumMismatch as exc:
        raise ChecksumMismatch(
            f"{exc} The sha256 was recorded in {lock.path} on the first download of {name} "
            "(trust on first use): the file changed since. If its publisher replaced it on "
            f"purpose, delete the {name!r} entry from {lock.path} to trust the new bytes."
        ) from None


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http and https only: urllib's own handler also follows ftp://."""

    def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        location = headers.get("Location") or headers.get("URI")
        if location:
            target = urllib.parse.urljoin(req.full_url, location)
            scheme = urllib.parse.urlsplit(target).scheme.lower()
            if scheme not in REDIRECT_SCHEMES:
                fp.close()
                raise PipelineError(
                    f"{req.full_url}: the server redirects (HTTP {code}) to {target}; only "
                    f"redirects to http:// or https:// are followed, not {scheme or '(none)'}. "
                    "Check the url in the config (or set download.mirror)"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpRedirectsOnly)


def _open(url: str, scheme: str, headers: dict[str, str], timeout: float) -> Any:
    """The response for ``url``; _Transient, _RangeRefused or PipelineError by what failed."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    try:
        return _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 416:
                match = re.fullmatch(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range") or "")
                raise _RangeRefused(int(match.group(1)) if match else None) from None
            if exc.code in TRANSIENT_STATUS:
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
            raise PipelineError(
                f"{url}: HTTP {exc.code} {exc.reason}; the server will not give this file: "
                "check the url (and download.mirror) in the config"
            ) from None
    except urllib.error.URLError as exc:
        if scheme == "file":
            raise PipelineError(f"{url}: cannot read ({exc.reason}); check the path") from None
        raise _Transient(f"cannot connect ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(f"no answer ({exc!r})") from None


def _expected_total(response: Any, status: int, offset: int) -> int | None:
    """The complete file's size, from Content-Range (206) or Content-Length (200)."""
    if status == 206:
        header = (response.headers.get("Content-Range") or "").strip()
        match = _CONTENT_RANGE.fullmatch(header)
        if not match or int(match.group(1)) != offset:
            raise _Transient(f"unusable Content-Range {header!r} for offset {offset}")
        return None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _validator(response: Any) -> str | None:
    """What If-Range can carry: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")
