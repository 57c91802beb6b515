#!/usr/bin/env python3
"""Download a file, verify its checksum while it streams, and put it in place only if it matches.

Resumes a partial download (PATH.part) with HTTP Range, retries connection drops, timeouts and
HTTP 5xx with exponential backoff, and fails at once on 404/403. Exits 0 only when PATH exists
and matches; a mismatch moves the bytes to PATH.corrupt. An existing PATH is verified and kept
when it matches. Examples:

    python scripts/fetch.py --url http://images.cocodataset.org/zips/val2017.zip \\
        --md5 442b8da7639aecaf257c1dceb8ba8c80 --out data/downloads/val2017.zip

    # no published checksum: the first download records its sha256 in the lock file,
    # later ones must match it
    python scripts/fetch.py \\
        --url https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/MSRA/R-50.pkl \\
        --trust-on-first-use weights.lock.json --out data/weights/R-50.pkl
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.data.checksums import ChecksumLock, parse_checksums
from maskrcnn_pipeline.data.fetch import GB, FetchOptions, fetch, fetch_trusted
from maskrcnn_pipeline.workflow.schema import schema_default


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--url", required=True, help="http://, https:// or file:// URL")
    parser.add_argument("--out", type=Path, required=True, metavar="PATH", help="file to write")
    checks = parser.add_argument_group(
        "checksums (at least one, all given are checked; or --trust-on-first-use)"
    )
    checks.add_argument("--md5", metavar="HEX", help="expected MD5 (32 hex digits)")
    checks.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (64 hex digits)")
    checks.add_argument(
        "--sha256-prefix",
        metavar="HEX",
        help="the published first hex digits (>= 8) of the SHA-256, e.g. torchvision's 0676ba61",
    )
    checks.add_argument(
        "--trust-on-first-use",
        type=Path,
        metavar="LOCK",
        help="for a file with no published checksum: the first download records its SHA-256 "
        "under the file's name in the JSON file LOCK (commit it), later downloads must match",
    )
    how = parser.add_argument_group("transfer")
    how.add_argument(
        "--retries",
        type=int,
        default=schema_default("download", "retries"),
        metavar="N",
        help="consecutive failed attempts retried before giving up (default: %(default)s)",
    )
    how.add_argument(
        "--timeout",
        type=float,
        default=schema_default("download", "timeout"),
        metavar="S",
        help="seconds without data before an attempt fails (default: %(default)s)",
    )
    how.add_argument(
        "--backoff",
        type=float,
        default=2.0,
        metavar="S",
        help="wait before the first retry, doubled after each failure (default: %(default)s)",
    )
    how.add_argument(
        "--max-unknown-size-gb",
        type=float,
        default=schema_default("download", "max_unknown_size_gb"),
        metavar="GB",
        help="most GB (10^9 bytes) accepted from a server that announces no size, then the "
        "download fails and its partial file is deleted (default: %(default)s)",
    )
    how.add_argument(
        "--progress",
        choices=("auto", "bar", "log"),
        default="auto",
        help="tqdm bar, or a log line every 30 s; auto: a bar in a terminal (default: auto)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {"md5": args.md5, "sha256": args.sha256, "sha256_prefix": args.sha256_prefix}
    if args.trust_on_first_use and any(given.values()):
        parser.error("--trust-on-first-use is for files without a checksum: give one or the other")
    if not any(given.values()) and not args.trust_on_first_use:
        parser.error(
            "give --md5, --sha256 or --sha256-prefix (or --trust-on-first-use LOCK): a download "
            "must be verified"
        )
    options = FetchOptions(
        retries=args.retries,
        timeout=args.timeout,
        backoff=args.backoff,
        max_unknown_size=int(args.max_unknown_size_gb * GB),
        progress_bar={"auto": None, "bar": True, "log": False}[args.progress],
    )
    if args.trust_on_first_use:
        fetch_trusted(args.url, args.out, ChecksumLock(args.trust_on_first_use), options)
    else:
        fetch(args.url, args.out, parse_checksums(given), options)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
