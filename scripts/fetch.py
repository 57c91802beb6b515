#!/usr/bin/env python3
"""Download a file, verify its checksum while it streams, and put it in place only if it matches.

Resumes a partial download (PATH.part) with HTTP Range, retries connection drops, timeouts and
HTTP 5xx with exponential backoff, and fails at once on 404/403. Exits 0 only when PATH exists
and matches; a mismatch moves the bytes to PATH.corrupt. An existing PATH is verified and kept
when it matches. Example:

    python scripts/fetch.py --url http://images.cocodataset.org/zips/val2017.zip \\
        --md5 442b8da7639aecaf257c1dceb8ba8c80 --out data/downloads/val2017.zip
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.checksums import parse_checksums
from maskrcnn_pipeline.cli import run_cli
from maskrcnn_pipeline.fetch import FetchOptions, fetch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="http://, https:// or file:// URL")
    parser.add_argument("--out", type=Path, required=True, metavar="PATH", help="file to write")
    checks = parser.add_argument_group("checksums (at least one; all given are checked)")
    checks.add_argument("--md5", metavar="HEX", help="expected MD5 (32 hex digits)")
    checks.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (64 hex digits)")
    checks.add_argument(
        "--sha256-prefix",
        metavar="HEX",
        help="the published first hex digits (>= 8) of the SHA-256, e.g. torchvision's 0676ba61",
    )
    how = parser.add_argument_group("transfer")
    how.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="consecutive failed attempts retried before giving up (default: %(default)s)",
    )
    how.add_argument(
        "--timeout",
        type=float,
        default=60.0,
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
    if not any(given.values()):
        parser.error("give --md5, --sha256 or --sha256-prefix: a download must be verified")
    options = FetchOptions(
        retries=args.retries,
        timeout=args.timeout,
        backoff=args.backoff,
        progress_bar={"auto": None, "bar": True, "log": False}[args.progress],
    )
    fetch(args.url, args.out, parse_checksums(given), options)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
