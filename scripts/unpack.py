#!/usr/bin/env python3
"""Unpack a zip or tar(.gz) archive into a folder, refusing members that would escape it.

Members with absolute paths, '..' components or links leading outside DEST (resolved through
the archive's own links) are refused, as are links in zips and archives declaring more bytes
than DEST has free (the error names the member or the sizes). The archive is extracted into a
temporary folder inside DEST and its top-level entries are renamed into place; an existing
folder is merged into. Example:

    python scripts/unpack.py data/downloads/val2017.zip data/coco2017
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.data.archives import unpack
from maskrcnn_pipeline.fileio import write_json_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("archive", type=Path, metavar="ARCHIVE", help="zip, tar, tar.gz or tgz")
    parser.add_argument("dest", type=Path, metavar="DEST", help="folder to unpack into")
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="JSON",
        help="also write what was unpacked (entries, member count, bytes) to this file, last",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = unpack(args.archive, args.dest)
    if args.manifest:
        write_json_atomic(args.manifest, dataclasses.asdict(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
