"""Validate every split of a dataset and write the report the train rule depends on.

The report (``data/<dataset>/validation.json``) exists only for a dataset without errors:
Snakemake takes an existing output as done, so a failing dataset must leave no file under
that name. Its errors go to ``validation.errors.json`` beside it (not a rule output, so it
survives the failed job) and, summarised, into the error message: counts per kind and the
first examples, each with its file, image id and annotation id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.data.categories import Categories
from maskrcnn_pipeline.data.validation.annotations import CocoIndex, check_coco
from maskrcnn_pipeline.data.validation.images import check_image_files
from maskrcnn_pipeline.data.validation.problems import ERRORS, WARNINGS, ProblemLog
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_json_atomic

log = logging.getLogger(__name__)

#: Examples per kind of problem shown in the error message (the report keeps more).
MESSAGE_EXAMPLES = 3


@dataclass(frozen=True)
class Split:
    """One split to check: its images folder and annotation file."""

    name: str
    images: Path
    annotations: Path


@dataclass(frozen=True)
class ValidationSettings:
    bbox_tolerance: float = 1.0
    decode_images: bool = False
    max_examples: int = 5
    workers: int = 4


def errors_path(report: Path) -> Path:
    """Where the report of a failed validation goes: ``<report stem>.errors.json``."""
    return report.with_name(f"{report.stem}.errors.json")


def validate_dataset(
    name: str, splits: list[Split], settings: ValidationSettings | None = None
) -> dict[str, Any]:
    """Check every split; return the report (``valid`` says whether there is any error)."""
    settings = settings or ValidationSettings()
    reports: dict[str, Any] = {}
    mapping: list[dict[str, Any]] | None = None
    for split in splits:
        problems = ProblemLog(settings.max_examples)
        index, digest = _check_split(split, problems, settings)
        categories = _category_mapping(index)
        if index is not None and mapping is None:
            mapping = categories
        elif index is not None and categories != mapping:
            problems.add("categories_differ", _difference(mapping or [], categories, splits[0]))
        reports[split.name] = _split_report(split, index, digest, problems)
    errors = sum(kind["count"] for r in reports.values() for kind in r["errors"].values())
    warnings = sum(kind["count"] for r in reports.values() for kind in r["warnings"].values())
    return {
        "dataset": name,
        "valid": errors == 0,
        "error_count": errors,
        "warning_count": warnings,
        "num_categories": len(mapping or []),
        "num_classes": len(mapping or []) + 1,  # the model's classes: categories + background
        "categories": mapping or [],
        "settings": {k: v for k, v in asdict(settings).items() if k != "workers"},
        "splits": reports,
    }


def write_report(report: dict[str, Any], out: str | os.PathLike[str]) -> None:
    """Write the report of a valid dataset to ``out``; raise a PipelineError otherwise.

    Either way the other file (a stale report, or stale errors) is removed, so what is on disk
    always describes the last validation.
    """
    out = Path(out)
    failed = errors_path(out)
    if report["valid"]:
        failed.unlink(missing_ok=True)
        write_json_atomic(out, report)
        log.info(
            "%s: valid (%d warning(s)); %d categories: %s",
            out,
            report["warning_count"],
            report["num_categories"],
            ", ".join(f"{c['id']}:{c['name']}" for c in report["categories"][:10])
            + (", ..." if report["num_categories"] > 10 else ""),
        )
        for line in summary_lines(report, "warnings"):
            log.warning("%s", line)
        return
    out.unlink(missing_ok=True)
    write_json_atomic(failed, report)
    lines = "\n".join(summary_lines(report, "errors"))
    raise PipelineError(
        f"dataset {report['dataset']!r}: {report['error_count']} error(s) in its annotations "
        f"or images; training would crash or learn from broken labels. Fix the files (or the "
        f"dataset's paths in the config) and run again. Full report: {failed}\n{lines}"
    )


def summary_lines(report: dict[str, Any], severity: str) -> list[str]:
    """Per split and kind: the count and the first examples (for logs and error messages)."""
    meanings = ERRORS if severity == "errors" else WARNINGS
    lines = []
    for name, split in report["splits"].items():
        if not split[severity]:
            continue
        lines.append(f"  split {name} ({split['paths']['annotations']}):")
        for kind, entry in split[severity].items():
            lines.append(f"    {kind}: {entry['count']} ({meanings[kind]})")
            for example in entry["examples"][:MESSAGE_EXAMPLES]:
                lines.append(f"      - {_describe(example)}")
    return lines


def _describe(example: dict[str, Any]) -> str:
    where = [
        f"{key.replace('_', ' ')} {example[key]}"
        for key in ("annotation_id", "image_id")
        if key in example
    ]
    if "file" in example:
        where.append(str(example["file"]))
    return f"{', '.join(where)}: {example['message']}" if where else example["message"]


def _check_split(
    split: Split, problems: ProblemLog, settings: ValidationSettings
) -> tuple[CocoIndex | None, str | None]:
    """Check the annotation file, then its image files; also return the file's sha256."""
    data, digest = _read_json(split.annotations, problems)
    index = check_coco(data, problems, bbox_tolerance=settings.bbox_tolerance) if data else None
    if index is not None:
        check_image_files(
            split.images,
            index.images,
            problems,
            decode=settings.decode_images,
            workers=settings.workers,
        )
    return index, digest


def _read_json(path: Path, problems: ProblemLog) -> tuple[Any, str | None]:
    """The parsed file and its sha256 (one read: the bytes are hashed, then parsed)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.add("not_coco", f"cannot read {path} ({exc.strerror or exc})")
        return None, None
    try:
        return json.loads(raw), hashlib.sha256(raw).hexdigest()
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.add("not_coco", f"{path} is not valid JSON ({exc})")
        return None, None


def _category_mapping(index: CocoIndex | None) -> list[dict[str, Any]]:
    """Each category with the label training gives it (ascending ids from 1)."""
    return Categories.from_records(index.categories).labelled() if index is not None else []


def _difference(first: list[dict[str, Any]], other: list[dict[str, Any]], reference: Split) -> str:
    a = {(c["id"], c["name"]) for c in first}
    b = {(c["id"], c["name"]) for c in other}
    return (
        f"categories differ from split {reference.name!r}: only here {sorted(b - a)[:5]}, "
        f"missing here {sorted(a - b)[:5]}; the model's labels come from one list, so every "
        "split needs the same categories"
    )


def _split_report(
    split: Split, index: CocoIndex | None, digest: str | None, problems: ProblemLog
) -> dict[str, Any]:
    return {
        "paths": {"images": str(split.images), "annotations": str(split.annotations)},
        "annotations_sha256": digest,
        "counts": index.counts if index else {},
        "errors": problems.summary(ERRORS),
        "warnings": problems.summary(WARNINGS),
    }
