"""Downloads over real loopback sockets with injected faults (no internet)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskrcnn_pipeline.data.checksums import Checksum, StreamHasher, parse_checksums
from maskrcnn_pipeline.data.fetch import FetchOptions, fetch
from maskrcnn_pipeline.errors import PipelineError
from tests.support.http_server import ETAG, FaultyServer
from tests.support.paths import REPO
from tests.support.workflow import run_script, tool_env

DATA = os.urandom(300_000)
MD5 = hashlib.md5(DATA).hexdigest()
SHA256 = hashlib.sha256(DATA).hexdigest()
FAST = FetchOptions(retries=3, timeout=2.0, backoff=0.01, chunk_size=16_384, progress_bar=False)


@pytest.fixture
def server():
    with FaultyServer({"coco.zip": DATA}) as running:
        yield running


def _quick() -> dict[str, object]:
    return {"timeout": 2.0, "backoff": 0.01, "chunk_size": 16_384, "progress_bar": False}


def md5_check(value: str = MD5) -> list[Checksum]:
    return [Checksum("md5", value)]


def test_plain_download_verifies_both_digests(server: FaultyServer, tmp_path: Path) -> None:
    target = tmp_path / "downloads" / "coco.zip"
    checks = parse_checksums({"md5": MD5, "sha256": SHA256.upper()})
    result = fetch(server.url("coco.zip"), target, checks, FAST)
    assert target.read_bytes() == DATA
    assert result.digests == {"sha256": SHA256, "md5": MD5}
    assert (result.downloaded, result.rehashed, result.attempts) == (len(DATA), 0, 1)
    assert sorted(p.name for p in target.parent.iterdir()) == ["coco.zip"]


def test_dropped_connection_resumes_with_range(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.drop_after, server.faults.drops = 100_000, 2
    target = tmp_path / "coco.zip"
    result = fetch(server.url("coco.zip"), target, md5_check(), FAST)
    assert target.read_bytes() == DATA
    ranges = [(r.range, r.if_range, r.status) for r in server.requests]
    assert ranges == [
        (None, None, 200),
        ("bytes=100000-", ETAG, 206),
        ("bytes=200000-", ETAG, 206),
    ]
    # every byte came over the network once, and none was read back from disk
    assert (result.downloaded, result.rehashed, result.attempts) == (len(DATA), 0, 3)


def test_partial_file_of_an_earlier_run_is_rehashed_once_and_resumed(
    server: FaultyServer, tmp_path: Path
) -> None:
    target = tmp_path / "coco.zip"
    server.faults.drop_after, server.faults.drops = 120_000, 1
    with pytest.raises(PipelineError, match="run again to resume"):
        fetch(server.url("coco.zip"), target, md5_check(), FetchOptions(retries=0, **_quick()))
    assert (tmp_path / "coco.zip.part").stat().st_size == 120_000 and not target.exists()
    result = fetch(server.url("coco.zip"), target, md5_check(), FAST)
    assert target.read_bytes() == DATA
    assert server.requests[-1].range == "bytes=120000-" and server.requests[-1].if_range == ETAG
    assert (result.rehashed, result.downloaded) == (120_000, len(DATA) - 120_000)
    assert not (tmp_path / "coco.zip.part.json").exists()


def test_server_ignoring_range_restarts_from_zero(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.drop_after, server.faults.drops = 100_000, 1
    server.faults.ignore_range = True
    target = tmp_path / "coco.zip"
    result = fetch(server.url("coco.zip"), target, md5_check(), FAST)
    assert target.read_bytes() == DATA
    assert [(r.range, r.status) for r in server.requests] == [
        (None, 200),
        ("bytes=100000-", 200),
    ]
    assert result.downloaded == 100_000 + len(DATA)


def test_changed_file_on_the_server_restarts_from_zero(
    server: FaultyServer, tmp_path: Path
) -> None:
    server.faults.drop_after, server.faults.drops = 100_000, 1
    target = tmp_path / "coco.zip"
    with pytest.raises(PipelineError):
        fetch(server.url("coco.zip"), target, md5_check(), FetchOptions(retries=0, **_quick()))
    server.faults.etag = '"v2"'  # new version: If-Range no longer matches, the server sends all
    fetch(server.url("coco.zip"), target, md5_check(), FAST)
    assert target.read_bytes() == DATA
    assert (server.requests[-1].if_range, server.requests[-1].status) == (ETAG, 200)


def test_corrupted_bytes_fail_and_leave_no_final_file(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.corrupt_at = 12_345
    target = tmp_path / "coco.zip"
    with pytest.raises(PipelineError) as info:
        fetch(server.url("coco.zip"), target, md5_check(), FAST)
    message = str(info.value)
    corrupt = tmp_path / "coco.zip.corrupt"
    actual = hashlib.md5(corrupt.read_bytes()).hexdigest()
    assert f"{target}: checksum mismatch" in message
    assert f"md5 {MD5} expected, got {actual}" in message
    assert str(corrupt) in message
    assert not target.exists() and not (tmp_path / "coco.zip.part").exists()
    # a rerun starts clean and succeeds once the server is healthy again
    server.faults.corrupt_at = None
    fetch(server.url("coco.zip"), target, md5_check(), FAST)
    assert target.read_bytes() == DATA


def test_404_fails_at_once_naming_the_url(server: FaultyServer, tmp_path: Path) -> None:
    url = server.url("missing.zip")
    with pytest.raises(PipelineError, match=f"{url}: HTTP 404"):
        fetch(url, tmp_path / "missing.zip", md5_check(), FAST)
    assert len(server.requests) == 1


def test_403_fails_at_once(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.statuses.extend([403, 403])
    with pytest.raises(PipelineError, match="HTTP 403"):
        fetch(server.url("coco.zip"), tmp_path / "coco.zip", md5_check(), FAST)
    assert len(server.requests) == 1


def test_500_then_success_is_retried(
    server: FaultyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.faults.statuses.extend([500, 503])
    with caplog.at_level(logging.WARNING):
        result = fetch(server.url("coco.zip"), tmp_path / "coco.zip", md5_check(), FAST)
    assert [r.status for r in server.requests] == [500, 503, 200]
    assert result.attempts == 3
    assert "HTTP 500" in caplog.text and "retry 2 of 3" in caplog.text


def test_retries_are_bounded(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.statuses.extend([500] * 10)
    with pytest.raises(PipelineError, match=r"download failed after 4 attempt\(s\): HTTP 500"):
        fetch(server.url("coco.zip"), tmp_path / "coco.zip", md5_check(), FAST)
    assert len(server.requests) == 4


def test_backoff_grows_exponentially(
    server: FaultyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []
    monkeypatch.setattr(time, "sleep", delays.append)
    server.faults.statuses.extend([502, 502, 502])
    options = FetchOptions(retries=3, backoff=1.5, max_backoff=5.0, progress_bar=False)
    fetch(server.url("coco.zip"), tmp_path / "coco.zip", md5_check(), options)
    assert delays == [1.5, 3.0, 5.0]


def test_stalled_server_times_out(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.stall = 30
    options = FetchOptions(retries=1, timeout=0.3, backoff=0.01, progress_bar=False)
    start = time.monotonic()
    with pytest.raises(PipelineError, match=r"after 2 attempt\(s\).*timed out"):
        fetch(server.url("coco.zip"), tmp_path / "coco.zip", md5_check(), options)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "coco.zip").exists()


def test_existing_target_is_verified_not_downloaded(server: FaultyServer, tmp_path: Path) -> None:
    target = tmp_path / "coco.zip"
    target.write_bytes(DATA)
    result = fetch(server.url("coco.zip"), target, md5_check(), FAST)
    assert result.skipped and server.requests == []
    target.write_bytes(b"not the file")
    fetch(server.url("coco.zip"), target, md5_check(), FAST)
    assert target.read_bytes() == DATA
    assert (tmp_path / "coco.zip.corrupt").read_bytes() == b"not the file"


def test_file_urls_and_prefix_checksums(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "weights.pth"
    source.parent.mkdir()
    source.write_bytes(DATA)
    target = tmp_path / "weights" / "weights.pth"
    checks = parse_checksums({"sha256_prefix": SHA256[:8]})
    assert checks[0].is_prefix
    fetch(source.as_uri(), target, checks, FAST)
    assert target.read_bytes() == DATA
    with pytest.raises(PipelineError, match="cannot read"):
        fetch((tmp_path / "nope.pth").as_uri(), tmp_path / "nope.pth", checks, FAST)
    with pytest.raises(PipelineError, match=r"sha256 prefix 00000000 expected, got"):
        fetch(
            source.as_uri(), tmp_path / "x.pth", parse_checksums({"sha256_prefix": "0" * 8}), FAST
        )


@pytest.mark.parametrize("url", ["ftp://example.org/a.zip", "s3://bucket/a.zip", "data/a.zip"])
def test_other_schemes_are_rejected(url: str, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="unsupported URL scheme"):
        fetch(url, tmp_path / "a.zip", md5_check(), FAST)


def test_redirect_to_ftp_is_refused_naming_both_urls(server: FaultyServer, tmp_path: Path) -> None:
    """urllib follows a redirect to ftp:// on its own: "http, https or file only" must hold
    for where a download ends up, not only for the url in the config."""
    server.faults.redirects["coco.zip"] = "ftp://127.0.0.1:1/coco.zip"
    target = tmp_path / "coco.zip"
    with pytest.raises(PipelineError) as info:
        fetch(server.url("coco.zip"), target, md5_check(), FAST)
    message = str(info.value)
    assert message.startswith(f"{server.url('coco.zip')}: the server redirects (HTTP 302)")
    assert "to ftp://127.0.0.1:1/coco.zip; only redirects to http:// or https://" in message
    assert [r.status for r in server.requests] == [302]  # refused at once, not retried
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_redirect_to_http_is_followed(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.redirects["old/coco.zip"] = "/coco.zip"
    fetch(server.url("old/coco.zip"), tmp_path / "coco.zip", md5_check(), FAST)
    assert (tmp_path / "coco.zip").read_bytes() == DATA
    assert [r.status for r in server.requests] == [302, 200]


def test_download_without_content_length(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.no_length = True
    fetch(server.url("coco.zip"), tmp_path / "coco.zip", md5_check(), FAST)
    assert (tmp_path / "coco.zip").read_bytes() == DATA


def test_download_without_content_length_is_capped(server: FaultyServer, tmp_path: Path) -> None:
    """A server announcing no size could send forever: stop at the setting, and the bytes
    so far never pass for the file (no target, no .part to resume from)."""
    server.faults.no_length = True
    target = tmp_path / "coco.zip"
    options = FetchOptions(max_unknown_size=100_000, **_quick())
    with pytest.raises(PipelineError) as info:
        fetch(server.url("coco.zip"), target, md5_check(), options)
    message = str(info.value)
    assert message.startswith(f"{server.url('coco.zip')}: the server announced no size")
    assert "more than 100000 bytes" in message and "download.max_unknown_size_gb" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # not retried
    args = ["--url", server.url("coco.zip"), "--md5", MD5, "--out", str(target)]
    cli = run_script("fetch.py", [*args, "--max-unknown-size-gb", "0.0001"])
    assert cli.returncode == 2 and "download.max_unknown_size_gb" in cli.stderr
    assert "Traceback" not in cli.stderr and not target.exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("md5", "abc", "expected 32 hex digits"), ("sha256", "z" * 64, "expected 64 hex digits")],
)
def test_bad_checksums_are_rejected(key: str, value: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        parse_checksums({key: value})
    with pytest.raises(PipelineError, match="no checksum given"):
        parse_checksums({})


def test_stream_hasher_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    hasher = StreamHasher(["md5", "sha256", "md5"])
    assert hasher.update_from_file(path, chunk_size=1000) == len(DATA)
    assert hasher.hexdigests() == {"md5": MD5, "sha256": SHA256}


def test_progress_is_logged_without_a_terminal(
    server: FaultyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = FetchOptions(chunk_size=16_384, log_interval=0.0, progress_bar=False)
    with caplog.at_level(logging.INFO, logger="maskrcnn_pipeline.data.fetch"):
        fetch(server.url("coco.zip"), tmp_path / "coco.zip", md5_check(), options)
    assert "coco.zip: 293.0 KiB of 293.0 KiB (100.0%)" in caplog.text
    assert "verified (md5 " in caplog.text


def test_cli_contract(server: FaultyServer, tmp_path: Path) -> None:
    out = tmp_path / "coco.zip"
    ok = run_script("fetch.py", ["--url", server.url("coco.zip"), "--md5", MD5, "--out", str(out)])
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes() == DATA
    server.faults.corrupt_at = 1
    bad_out = tmp_path / "bad.zip"
    bad = run_script(
        "fetch.py", ["--url", server.url("coco.zip"), "--sha256", SHA256, "--out", str(bad_out)]
    )
    assert bad.returncode != 0 and not bad_out.exists()
    assert f"sha256 {SHA256} expected, got" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_script("fetch.py", ["--url", server.url("coco.zip"), "--out", str(bad_out)])
    assert missing.returncode != 0 and "--md5" in missing.stderr
    assert "--sha256-prefix" in run_script("fetch.py", ["--help"]).stdout


def test_part_state_survives_between_processes(server: FaultyServer, tmp_path: Path) -> None:
    server.faults.drop_after, server.faults.drops = 50_000, 1
    target = tmp_path / "coco.zip"
    with pytest.raises(PipelineError):
        fetch(server.url("coco.zip"), target, md5_check(), FetchOptions(retries=0, **_quick()))
    state = json.loads((tmp_path / "coco.zip.part.json").read_text())
    assert state == {"url": server.url("coco.zip"), "validator": ETAG, "total": len(DATA)}


def test_checksum_benchmark_runs_and_reports_one_read(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "checksum.py"), "--size-mib", "4", "--repeats", "1"],
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["download"]["network_bytes"] == 4 * 2**20
    assert figures["download"]["times_read"] < 1.05 and figures["throughput_ratio"] > 0
