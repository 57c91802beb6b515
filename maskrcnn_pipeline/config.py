"""Validate the pipeline config against schemas/ and fill in its defaults, before any job runs.

The Snakefile calls :func:`validate_config` at parse time, so a typo in a key or a value out
of range stops the workflow with the key's path and what is allowed, instead of failing hours
later inside a training job. Scripts called by hand use :func:`load_config` for the same
checks. This module must stay light (no torch): every ``snakemake`` call imports it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from maskrcnn_pipeline.errors import PipelineError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"

#: Synthetic datasets always have exactly these splits.
SYNTHETIC_SPLITS = ("train", "val")


@cache
def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _extend_with_defaults(validator_class: type) -> type:
    """A validator that fills in ``default`` values while it walks the instance.

    Defaults are set before the properties are validated, so an object default of ``{}``
    is created first and then receives its own nested defaults.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft202012Validator)


def _key_path(path: Any) -> str:
    parts = [str(part) if not isinstance(part, int) else f"[{part}]" for part in path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key and what is allowed there."""
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        known = set(allowed)
        unknown = sorted(key for key in error.instance if key not in known)
        hint = f"allowed keys: {', '.join(allowed)}" if allowed else "no other keys are allowed"
        return f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; {hint}"
    if "propertyNames" in error.absolute_schema_path:
        return f"{where}: name {error.instance!r} must match [A-Za-z0-9_.-]+"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; choose one of {error.validator_value}"
    return f"{where}: {error.message}"


def _schema_errors(config: dict[str, Any], schema: Mapping[str, Any]) -> list[str]:
    validator = _DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(error) for error in errors]


def _cross_check(config: Mapping[str, Any]) -> list[str]:
    """Checks a schema cannot express: names that must refer to each other."""
    problems = []
    datasets = config["datasets"]
    for run_name, run in config["runs"].items():
        dataset_name = run["dataset"]
        if dataset_name not in datasets:
            problems.append(
                f"runs.{run_name}.dataset: {dataset_name!r} is not a dataset; "
                f"defined datasets: {', '.join(sorted(datasets))}"
            )
            continue
        splits = dataset_splits(config, dataset_name)
        for key in ("train_split", "eval_split"):
            if run[key] not in splits:
                problems.append(
                    f"runs.{run_name}.{key}: dataset {dataset_name!r} has no split "
                    f"{run[key]!r}; its splits: {', '.join(splits)}"
                )
        steps = run["solver"]["steps"]
        if steps != sorted(steps):
            problems.append(f"runs.{run_name}.solver.steps: must be increasing, got {steps}")
    for name, entry in config.get("inference", {}).items():
        if entry["run"] not in config["runs"]:
            problems.append(
                f"inference.{name}.run: {entry['run']!r} is not a run; "
                f"defined runs: {', '.join(sorted(config['runs']))}"
            )
    return problems


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config`` in place, fill in the schema's defaults, and return it.

    Raises PipelineError listing every problem, one line each, with its key path.
    """
    problems = _schema_errors(config, load_schema(schema_path))
    if not problems:
        problems = _cross_check(config)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise PipelineError(
            f"invalid configuration ({len(problems)} problem(s)); fix these keys "
            f"(schema: {schema_path}):\n{listing}"
        )
    return config


def schema_default(*keys: str, schema_path: Path = SCHEMA_PATH) -> Any:
    """The schema's default for the top-level key path ``keys`` (e.g. "report", "references"),
    for scripts run by hand without a config: defaults live in the schema only."""
    node = load_schema(schema_path)
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (for scripts run by hand)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise PipelineError(f"{path}: the top level must be a mapping of keys to values")
    try:
        return validate_config(config)
    except PipelineError as exc:
        raise PipelineError(f"{path}: {exc}") from exc


def dataset_splits(config: Mapping[str, Any], dataset: str) -> tuple[str, ...]:
    entry = config["datasets"][dataset]
    if entry["source"] == "synthetic":
        return SYNTHETIC_SPLITS
    return tuple(entry["splits"])


def split_paths(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, str]:
    """Where a split's images folder and annotation file are, whatever the source.

    Generated datasets live under data/<dataset>/ in a fixed layout so that the generating
    rule's outputs and every consumer's inputs are the same paths.
    """
    entry = config["datasets"][dataset]
    if entry["source"] == "synthetic":
        return {
            "images": f"data/{dataset}/{split}",
            "annotations": f"data/{dataset}/annotations/{split}.json",
        }
    return dict(entry["splits"][split])


def run_config(config: Mapping[str, Any], run: str) -> dict[str, Any]:
    try:
        return config["runs"][run]
    except KeyError as exc:
        raise PipelineError(
            f"runs.{run}: no such run; defined runs: {', '.join(sorted(config['runs']))}"
        ) from exc


#: The run keys that change what training produces; predict, evaluate and report settings
#: are left out so that changing them never retrains.
TRAIN_KEYS = (
    "gpus",
    "nodes",
    "precision",
    "channels_last",
    "seed",
    "threads",
    "log_period",
    "model",
    "input",
    "solver",
    "dataloader",
    "checkpoint",
)


def train_settings(config: Mapping[str, Any], run: str) -> dict[str, Any]:
    """The part of a run's config that training depends on (its ``params:``)."""
    settings = run_config(config, run)
    return {key: copy.deepcopy(settings[key]) for key in TRAIN_KEYS}


def predict_settings(config: Mapping[str, Any], run: str) -> dict[str, Any]:
    """The inference settings of a run: what predict depends on besides the model."""
    settings = run_config(config, run)
    return {
        "test": copy.deepcopy(settings["test"]),
        "size_divisibility": settings["input"]["size_divisibility"],
        "precision": settings["precision"],
        "channels_last": settings["channels_last"],
        "threads": settings["threads"],
    }
