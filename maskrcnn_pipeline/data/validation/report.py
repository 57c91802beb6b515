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
from maskrcnn_pipeline.data.validation.problems import ERRORS, WARNINGS, ProblemLog, fix_of
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_json_atomic

log = logging.getLogger(__name__)

#: Examples per kind of problem shown in the error message (the report keeps more).
MESSAGE_EXAMPLES = 3


@dataclass(frozen=True)
class Split:
    """One split to check: its images folder and (prepared) annotation file; the user's own
    paths they come from (named in every message); the prepare step's changes file; whether a
    run trains on it (then every category needs a trainable instance)."""

    name: str
    images: Path
    annotations: Path
    original_images: Path | None = None
    original_annotations: Path | None = None
    changes: Path | None = None
    trains: bool = False

    def shown(self) -> tuple[Path, Path]:
        """(images, annotations) as the user knows them."""
        return self.original_images or self.images, self.original_annotations or self.annotations


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
        index, digest, changes = _check_split(name, split, problems, settings)
        categories = _category_mapping(index)
        if index is not None and mapping is None:
            mapping = categories
        elif index is not None and categories != mapping:
            problems.add("categories_differ", _difference(mapping or [], categories, splits[0]))
        reports[split.name] = _split_report(split, index, digest, problems, changes)
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
        f"dataset's settings in the config: each kind says how) and run again; your files are "
        f"never modified. Full report: {failed}\n{lines}"
    )


def summary_lines(report: dict[str, Any], severity: str) -> list[str]:
    """Per split and kind: the count and the first examples (for logs and error messages)."""
    meanings = ERRORS if severity == "errors" else WARNINGS
    lines = []
    for name, split in report["splits"].items():
        if not split[severity]:
            continue
        shown = split.get("original", split["paths"])
        lines.append(f"  split {name} ({shown['annotations']}, images in {shown['images']}):")
        for kind, entry in split[severity].items():
            lines.append(f"    {kind}: {entry['count']} ({meanings[kind]})")
            for example in entry["examples"][:MESSAGE_EXAMPLES]:
                lines.append(f"      - {_describe(example)}")
            lines.append(f"      what to do: {fix_of(kind, report['dataset'])}")
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
    dataset: str, split: Split, problems: ProblemLog, settings: ValidationSettings
) -> tuple[CocoIndex | None, str | None, dict[str, Any]]:
    """Check the annotation file, then its image files; also return the file's sha256 and
    what the prepare step changed (``{}`` without a changes file)."""
    prepared = _read_changes(split.changes)
    box_only = prepared.get("settings", {}).get("box_only", "refuse")
    data, digest = _read_json(split.annotations, problems)
    index = None
    if data:
        index = check_coco(
            data, problems, bbox_tolerance=settings.bbox_tolerance, box_only=box_only
        )
    if index is not None:
        check_image_files(
            split.images,
            index.images,
            problems,
            decode=settings.decode_images,
            workers=settings.workers,
            shown_dir=split.original_images,
        )
        _prepare_warnings(prepared.get("changes", {}), problems)
        if split.trains:
            _trainable_errors(dataset, split, index, prepared.get("settings", {}), problems)
    return index, digest, prepared


def _read_changes(path: Path | None) -> dict[str, Any]:
    """The prepare step's changes file (scripts/prepare_dataset.py), or {} without one."""
    if path is None:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: cannot read the prepare step's changes ({exc})") from exc


def _prepare_warnings(changes: dict[str, Any], problems: ProblemLog) -> None:
    """What the prepare step changed, as warnings with counts (nothing changes silently)."""
    for kind, key in (
        ("placeholder_category_dropped", "categories_dropped"),
        ("placeholder_category_kept", "placeholder_categories_kept"),
    ):
        for entry in changes.get(key, []):
            problems.add(kind, f"category {entry['id']} ({entry['name']!r}): {entry['why']}")
    for kind, key, what in (
        ("image_size_filled", "image_sizes_filled", "image(s) got width/height from the file"),
        ("area_recomputed", "areas_recomputed", "area(s) set to the mask's area"),
    ):
        if changes.get(key):
            problems.add(kind, f"{changes[key]} {what}", count=changes[key])


def _trainable_errors(
    dataset: str,
    split: Split,
    index: CocoIndex,
    prepared_settings: dict[str, Any],
    problems: ProblemLog,
) -> None:
    """A category training would never see is an error naming why and the line that fixes it."""
    for category in index.categories:
        counts = index.per_category.get(category["id"], {})
        if counts.get("trainable"):
            continue
        name, total, crowd = category["name"], counts.get("annotations", 0), counts.get("crowd", 0)
        where = f"datasets.{dataset}"
        if not total:
            cause = f"category {category['id']} ({name!r}) has no annotation in split {split.name}"
            fix = (
                f"annotate it, remove it from `categories`, or, if it is a tool's placeholder, "
                f"set {where}.placeholder_categories: drop"
            )
        elif crowd == total and prepared_settings.get("crowd", "ignore") == "ignore":
            cause = (
                f"all {total} {name!r} annotations are iscrowd=1, as CVAT exports masks, and "
                f"crowd objects are ignored regions"
            )
            fix = f"set {where}.crowd: instances (or {where}.format: cvat)"
        else:
            cause = (
                f"none of the {total} {name!r} annotations is trainable ({crowd} iscrowd=1, the "
                f"rest with a box under 1 px)"
            )
            fix = f"redraw them, or set {where}.crowd: instances if the crowd ones are objects"
        problems.add("category_not_trainable", f"{cause}; fix: {fix}")


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
    split: Split,
    index: CocoIndex | None,
    digest: str | None,
    problems: ProblemLog,
    prepared: dict[str, Any],
) -> dict[str, Any]:
    images, annotations = split.shown()
    per_category = []
    if index is not None:
        per_category = [
            {"id": c["id"], "name": c["name"], **index.per_category.get(c["id"], {})}
            for c in sorted(index.categories, key=lambda c: c["id"])
        ]
    return {
        "paths": {"images": str(split.images), "annotations": str(split.annotations)},
        "original": {"images": str(images), "annotations": str(annotations)},
        "annotations_sha256": digest,
        "counts": index.counts if index else {},
        "categories": per_category,
        "prepared": prepared,
        "errors": problems.summary(ERRORS),
        "warnings": problems.summary(WARNINGS),
    }
