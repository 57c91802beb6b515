"""Trust on first use, over real loopback sockets: a file without a published checksum
(Detectron's R-50.pkl) gets its sha256 recorded by its first download, and later downloads
must match it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from maskrcnn_pipeline.data.checksums import ChecksumLock
from maskrcnn_pipeline.data.fetch import ChecksumMismatch, FetchOptions, fetch_trusted
from maskrcnn_pipeline.errors import PipelineError
from tests.support.http_server import FaultyServer
from tests.support.workflow import run_script

DATA = os.urandom(200_000)
SHA256 = hashlib.sha256(DATA).hexdigest()
FAST = FetchOptions(retries=2, timeout=2.0, backoff=0.01, chunk_size=16_384, progress_bar=False)


@pytest.fixture
def server():
    with FaultyServer({"R-50.pkl": DATA}) as running:
        yield running


def test_first_download_records_then_later_ones_are_verified(
    server: FaultyServer, tmp_path: Path
) -> None:
    lock = ChecksumLock(tmp_path / "weights.lock.json")
    target = tmp_path / "weights" / "R-50.pkl"
    first = fetch_trusted(server.url("R-50.pkl"), target, lock, FAST)
    assert target.read_bytes() == DATA and first.digests == {"sha256": SHA256}
    entry = json.loads(lock.path.read_text())["R-50.pkl"]
    assert (entry["sha256"], entry["size"], entry["url"]) == (
        SHA256,
        len(DATA),
        server.url("R-50.pkl"),
    )
    assert entry["recorded"]
    # the file is there and matches its record: nothing is downloaded
    requests = len(server.requests)
    assert fetch_trusted(server.url("R-50.pkl"), target, lock, FAST).skipped
    assert len(server.requests) == requests
    # downloaded again (another machine, same lock file): verified against the record
    target.unlink()
    again = fetch_trusted(server.url("R-50.pkl"), target, lock, FAST)
    assert not again.skipped and again.digests["sha256"] == SHA256
    assert json.loads(lock.path.read_text())["R-50.pkl"] == entry  # not rewritten


def test_a_changed_file_fails_like_any_checksum_mismatch(
    server: FaultyServer, tmp_path: Path
) -> None:
    lock = ChecksumLock(tmp_path / "weights.lock.json")
    target = tmp_path / "R-50.pkl"
    fetch_trusted(server.url("R-50.pkl"), target, lock, FAST)
    target.unlink()
    server.files["R-50.pkl"] = DATA[:-1] + b"x"  # the publisher replaced it
    with pytest.raises(ChecksumMismatch) as error:
        fetch_trusted(server.url("R-50.pkl"), target, lock, FAST)
    message = str(error.value)
    assert f"sha256 {SHA256} expected" in message
    assert "recorded in" in message and "trust on first use" in message
    assert "delete the 'R-50.pkl' entry" in message
    assert not target.exists() and (tmp_path / "R-50.pkl.corrupt").exists()


def test_a_file_already_on_disk_is_trusted_as_it_is_on_first_use(tmp_path: Path) -> None:
    lock = ChecksumLock(tmp_path / "weights.lock.json")
    target = tmp_path / "R-50.pkl"
    target.write_bytes(DATA)
    result = fetch_trusted("http://127.0.0.1:9/unreachable", target, lock, FAST)
    assert result.skipped and lock.checksum("R-50.pkl").expected == SHA256


def test_the_lock_refuses_a_second_digest_and_a_broken_file(tmp_path: Path) -> None:
    lock = ChecksumLock(tmp_path / "weights.lock.json")
    lock.record("a.pkl", sha256="a" * 64, size=1, url="http://x/a.pkl")
    lock.record("a.pkl", sha256="a" * 64, size=1, url="http://x/a.pkl")  # the same: fine
    with pytest.raises(PipelineError, match=r"recorded with sha256 a+, this download is b+"):
        lock.record("a.pkl", sha256="b" * 64, size=1, url="http://x/a.pkl")
    lock.record("b.pkl", sha256="b" * 64, size=2, url="http://x/b.pkl")
    assert list(json.loads(lock.path.read_text())) == ["a.pkl", "b.pkl"]
    lock.path.write_text('{"a.pkl": {"size": 1}}')
    with pytest.raises(PipelineError, match=r"the entry 'a.pkl' has no sha256"):
        lock.checksum("a.pkl")


def test_cli_contract(server: FaultyServer, tmp_path: Path) -> None:
    lock, out = tmp_path / "weights.lock.json", tmp_path / "R-50.pkl"
    args = ["--url", server.url("R-50.pkl"), "--out", str(out), "--trust-on-first-use", str(lock)]
    first = run_script("fetch.py", args)
    assert first.returncode == 0, first.stderr
    assert "now recorded in" in first.stderr and json.loads(lock.read_text())["R-50.pkl"]
    out.unlink()
    server.files["R-50.pkl"] = b"other bytes"
    changed = run_script("fetch.py", args)
    assert changed.returncode != 0 and "trust on first use" in changed.stderr
    assert "Traceback" not in changed.stderr
    both = run_script("fetch.py", [*args, "--sha256", SHA256])
    assert both.returncode != 0 and "give one or the other" in both.stderr
