"""Validate the pipeline config against schemas/ and fill in its defaults, before any job runs.

The Snakefile calls :func:`validate_config` at parse time, so a typo in a key or a value out
of range stops the workflow with the key's path and what is allowed, instead of failing hours
later inside a training job. Scripts called by hand use :func:`load_config` for the same
checks. This module must stay light (no torch): every ``snakemake`` call imports it.
"""

from __future__ import annotations

import copy
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from maskrcnn_pipeline.data.formats import dataset_fixes, split_layout
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.names import SAFE_NAME, SAFE_NAME_RULE, is_safe_name
from maskrcnn_pipeline.nvidia import command as nvidia_command
from maskrcnn_pipeline.train.schedule import mlperf_warmup_problem
from maskrcnn_pipeline.workflow import paths
from maskrcnn_pipeline.workflow.params import run_config
from maskrcnn_pipeline.workflow.schema import SCHEMA_PATH, load_schema

__all__ = ["dataset_fixes"]  # the rules read a dataset's fixes through this module

#: Synthetic datasets always have exactly these splits.
SYNTHETIC_SPLITS = ("train", "val")
#: Where fetched files land: dataset archives, and weight files.
DOWNLOADS_DIR = "data/downloads"
WEIGHTS_DIR = "data/weights"
#: The checksum keys a remote file may carry, strongest first.
CHECKSUM_KEYS = ("sha256", "md5", "sha256_prefix")
#: Names under data/<dataset>/ that a folder source's split cannot take (its links live there).
RESERVED_SPLIT_NAMES = ("annotations",)
#: A run's training engine: ours, or NVIDIA's own code in its image (maskrcnn_pipeline.nvidia).
ENGINES = ("torchvision", "nvidia")
#: Dataset keys that a source ignores: given anyway, they are a mistake worth naming.
UNUSED_KEYS = {
    "synthetic": ("root", "files", "splits"),
    "folder": ("files",),
    "download": ("root",),
}


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
    if "propertyNames" in error.absolute_schema_path or _is_name_error(error):
        return f"{where}: name {error.instance!r} is not allowed: {SAFE_NAME_RULE}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; choose one of {error.validator_value}"
    return f"{where}: {error.message}"


def _is_name_error(error: jsonschema.ValidationError) -> bool:
    return error.validator == "pattern" and error.validator_value == f"^{SAFE_NAME}$"


def _schema_errors(config: dict[str, Any], schema: Mapping[str, Any]) -> list[str]:
    validator = _DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(error) for error in errors]


def _cross_check(config: Mapping[str, Any]) -> list[str]:
    """Checks a schema cannot express: names that must refer to each other."""
    problems = _dataset_problems(config) + _weights_problems(config) + _image_problems(config)
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
        problem = mlperf_warmup_problem(run["solver"])
        if problem:
            problems.append(f"runs.{run_name}.solver: {problem}")
        steps = run["solver"]["steps"]
        if steps != sorted(steps):
            problems.append(f"runs.{run_name}.solver.steps: must be increasing, got {steps}")
        if any(v is not None for v in run["early_stop"].values()) and not run["eval_period"]:
            problems.append(
                f"runs.{run_name}.early_stop: needs runs.{run_name}.eval_period > 0 "
                "(targets are checked at the periodic evaluations)"
            )
        if run["engine"] == "nvidia":
            problems += nvidia_command.problems(run_name, run, _default_run())
    for name, entry in config.get("inference", {}).items():
        if entry["run"] not in config["runs"]:
            problems.append(
                f"inference.{name}.run: {entry['run']!r} is not a run; "
                f"defined runs: {', '.join(sorted(config['runs']))}"
            )
        elif config["runs"][entry["run"]]["engine"] != "torchvision":
            problems.append(
                f"inference.{name}.run: {entry['run']!r} is trained by engine nvidia, whose "
                "checkpoints only NVIDIA's code reads; inference on folders of images runs "
                "models of engine torchvision"
            )
    return problems


@cache
def _default_run() -> dict[str, Any]:
    """A run with nothing but the schema's defaults (read only)."""
    config: dict[str, Any] = {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {}}}
    config["runs"]["r"]["dataset"] = "d"
    _schema_errors(config, load_schema())
    return config["runs"]["r"]


def runs_of_engine(config: Mapping[str, Any], engine: str) -> list[str]:
    """The runs trained by ``engine`` (torchvision or nvidia), in config order."""
    return [name for name, run in config["runs"].items() if run["engine"] == engine]


def images(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The Apptainer images by record name (the .sif's stem): the pipeline's, and NVIDIA's
    when a run needs it. Each entry: image, build, definition, base, build_args."""
    container = config["container"]
    nvidia = container["nvidia"]
    found = {
        Path(container["image"]).stem: {
            "image": container["image"],
            "build": container["build"],
            "definition": container["definition"],
            "base": container["base"],
            "build_args": {},
        }
    }
    if runs_of_engine(config, "nvidia"):
        found[Path(nvidia["image"]).stem] = {
            "image": nvidia["image"],
            "build": nvidia["build"],
            "definition": nvidia["definition"],
            "base": nvidia["base"],
            "build_args": {
                "DLE_REPOSITORY": nvidia["source_repository"],
                "DLE_COMMIT": nvidia["source_commit"],
            },
        }
    return found


def _image_problems(config: Mapping[str, Any]) -> list[str]:
    """A built image lives at results/container/<name>.sif, and two images need two names
    (their records are results/container/<name>.json)."""
    problems = []
    container = config["container"]
    settings = {"container": container, "container.nvidia": container["nvidia"]}
    for where, entry in settings.items():
        name = Path(entry["image"]).stem
        if not is_safe_name(name):
            problems.append(
                f"{where}.image: {entry['image']!r}: its record is "
                f"{paths.image_record('<name>')} and the name {name!r} is not allowed: "
                f"{SAFE_NAME_RULE}"
            )
            continue
        if entry["build"] and posixpath.normpath(entry["image"]) != paths.image(name):
            problems.append(
                f"{where}.image: {entry['image']!r}: an image the workflow builds is "
                f"{paths.image('<name>')}; give such a path, or set {where}.build: false to use "
                "an image elsewhere as it is"
            )
    if Path(container["image"]).stem == Path(container["nvidia"]["image"]).stem:
        problems.append(
            "container.nvidia.image: has the same file name as container.image; both are "
            f"recorded as {paths.image_record('<name>')}: rename one"
        )
    return problems


def _checksum_problems(where: str, entry: Mapping[str, Any]) -> list[str]:
    if any(key in entry for key in CHECKSUM_KEYS):
        return []
    return [
        f"{where}: give md5, sha256 or sha256_prefix; a file without a checksum could pass a "
        "bad download as a good one"
    ]


def _is_inside(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _dataset_problems(config: Mapping[str, Any]) -> list[str]:
    """Keys that only make sense for one source, split paths that cannot work, file clashes."""
    problems: list[str] = []
    fetched: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, entry in config["datasets"].items():
        where, source = f"datasets.{name}", entry["source"]
        for key in UNUSED_KEYS[source]:
            if key in entry:
                problems.append(f"{where}.{key}: not used by source {source}; remove it")
        if source != "synthetic":
            problems += _layout_problems(config, name)
        if source == "download":
            for file, spec in entry.get("files", {}).items():
                problems += _checksum_problems(f"{where}.files.{file}", spec)
                problems += _relative_path_problems(f"{where}.files.{file}.unpack", spec["unpack"])
                same = {k: spec.get(k) for k in ("url", *CHECKSUM_KEYS)}
                if spec["enabled"] and fetched.setdefault(file, (where, same))[1] != same:
                    problems.append(
                        f"{where}.files.{file}: {fetched[file][0]} defines a different file of "
                        f"that name; both would be data/downloads/{file}: rename one"
                    )
            for split in entry.get("splits", {}):
                for key, path in split_layout(entry, split).items():
                    if path is not None:
                        problems += _relative_path_problems(f"{where}.splits.{split}.{key}", path)
        if source == "folder":
            problems += _folder_problems(config, name)
    return problems


def _relative_path_problems(where: str, path: str) -> list[str]:
    """Download datasets live under data/<dataset>/: their paths must stay inside it."""
    if posixpath.isabs(path) or ".." in posixpath.normpath(path).split("/"):
        return [f"{where}: {path!r} must be a relative path inside data/<dataset>/ (no '..')"]
    return []


def _layout_problems(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every split needs its two paths, from the config or the dataset's format; a download
    dataset's annotation file cannot be where its prepared copy goes."""
    entry, problems = config["datasets"][dataset], []
    for split in entry.get("splits", {}):
        where = f"datasets.{dataset}.splits.{split}"
        layout = split_layout(entry, split)
        for key, path in layout.items():
            if path is None:
                problems.append(
                    f"{where}.{key}: missing; give it, or set datasets.{dataset}.format to the "
                    "tool that exported the data (cvat, roboflow, labelstudio, labelme, "
                    "fiftyone), which knows where the tool puts its files"
                )
        if entry["source"] == "download" and layout["annotations"] is not None:
            unpacked = posixpath.normpath(f"{dataset_dir(dataset)}/{layout['annotations']}")
            if unpacked == prepared_annotations(dataset, split):
                problems.append(
                    f"{where}.annotations: {unpacked} is where the prepared copy goes; unpack "
                    "the archive elsewhere (files.<name>.unpack)"
                )
    return problems


def _folder_problems(config: Mapping[str, Any], dataset: str) -> list[str]:
    """A folder source's links must never replace (or sit inside) the data they point at."""
    problems = []
    for split in config["datasets"][dataset]["splits"]:
        where = f"datasets.{dataset}.splits.{split}"
        if split in RESERVED_SPLIT_NAMES:
            problems.append(f"{where}: the split name {split!r} is reserved; rename the split")
            continue
        if None in split_layout(config["datasets"][dataset], split).values():
            continue  # _layout_problems names it
        links = source_split_paths(config, dataset, split)
        for key, target in split_sources(config, dataset, split).items():
            if _is_inside(target, links[key]):
                problems.append(
                    f"{where}.{key}: {target!r} is where the pipeline puts its link "
                    f"({links[key]}); point at the data elsewhere, e.g. set root"
                )
    return problems


def _weights_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, entry in config["weights"].items():
        where = f"weights.{name}"
        if not entry.get("trust_on_first_use"):
            problems += _checksum_problems(where, entry)
        elif any(key in entry for key in CHECKSUM_KEYS):
            problems.append(
                f"{where}: give a checksum or trust_on_first_use: true, not both (with a "
                "published checksum, drop trust_on_first_use)"
            )
    for run_name, run in config["runs"].items():
        paths = {"model.backbone_weights": run["model"]["backbone_weights"]}
        if run["engine"] == "nvidia":
            paths["nvidia.weights"] = run["nvidia"]["weights"]
        for key, path in paths.items():
            if path and posixpath.dirname(posixpath.normpath(path)) == WEIGHTS_DIR:
                name = posixpath.basename(path)
                if name not in config["weights"]:
                    problems.append(
                        f"runs.{run_name}.{key}: {path} is fetched from a weights entry named "
                        f"{name!r}, and there is none; add weights.{name} (url + checksum) or "
                        f"use a path outside {WEIGHTS_DIR}/"
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


def dataset_dir(dataset: str) -> str:
    """data/<dataset>/: a real folder for every source (validation.json is written there)."""
    return f"data/{dataset}"


def validation_report(dataset: str) -> str:
    """The validate rule's full report (what its checks found, with examples)."""
    return f"{dataset_dir(dataset)}/validation.json"


def dataset_record(dataset: str) -> str:
    """The record_dataset rule's output, the verdict and categories of the validation
    report: every consumer of the dataset depends on it (data/dataset_record.py)."""
    return f"{dataset_dir(dataset)}/dataset.json"


def prepared_annotations(dataset: str, split: str) -> str:
    """The prepare rule's copy of a split's annotations, the one every later stage reads."""
    return f"{dataset_dir(dataset)}/annotations/{split}.json"


def prepare_changes(dataset: str, split: str) -> str:
    """What the prepare rule changed in a split's annotations (read by validate)."""
    return f"{dataset_dir(dataset)}/annotations/{split}.changes.json"


def source_split_paths(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, str]:
    """A split's images folder and annotation file as its source leaves them, under
    data/<dataset>/: generated data and a folder source's links use ``<split>/`` and
    ``annotations/source/<split>.json``; a download dataset keeps its archives' layout
    (NVIDIA's ``train2017/``, ``annotations/instances_train2017.json``)."""
    entry, root = config["datasets"][dataset], dataset_dir(dataset)
    if entry["source"] == "download":
        layout = split_layout(entry, split)
        return {key: posixpath.normpath(f"{root}/{path}") for key, path in layout.items()}
    return {"images": f"{root}/{split}", "annotations": f"{root}/annotations/source/{split}.json"}


def split_paths(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, str]:
    """Where train, predict, evaluate and report read a split, whatever the source: the
    source's images folder and the prepared annotations (data/<dataset>/annotations/<split>.json,
    written by the prepare rule from the source's file, which stays as it is)."""
    return {
        "images": source_split_paths(config, dataset, split)["images"],
        "annotations": prepared_annotations(dataset, split),
    }


def original_split_paths(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, str]:
    """A split's files as the user knows them (named in validation messages): a folder
    source's own paths, else where its source put them."""
    if config["datasets"][dataset]["source"] == "folder":
        return split_sources(config, dataset, split)
    return source_split_paths(config, dataset, split)


def split_sources(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, str]:
    """A folder source's split as configured (or as its format lays it out): the paths its
    links in data/<dataset>/ point at.

    Relative paths start from the dataset's ``root`` (default: the working directory).
    """
    entry = config["datasets"][dataset]
    root = entry.get("root", ".")
    return {
        key: os.path.normpath(os.path.join(root, str(path)))
        for key, path in split_layout(entry, split).items()
    }


def download_files(config: Mapping[str, Any], dataset: str | None = None) -> dict[str, Any]:
    """The enabled archives of one download dataset, or of all of them (file name -> entry)."""
    names = [dataset] if dataset else list(config["datasets"])
    files: dict[str, Any] = {}
    for name in names:
        entry = config["datasets"][name]
        if entry["source"] == "download":
            files.update({k: v for k, v in entry["files"].items() if v["enabled"]})
    return files


def source_files(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The files of ``dataset`` as its source leaves them (what prepare reads): a download
    dataset's unpack manifests, else every split's images folder and annotation file."""
    if config["datasets"][dataset]["source"] == "download":
        return [
            f"{dataset_dir(dataset)}/.unpacked/{file}.json"
            for file in download_files(config, dataset)
        ]
    return [
        path
        for split in dataset_splits(config, dataset)
        for path in source_split_paths(config, dataset, split).values()
    ]


def dataset_files(config: Mapping[str, Any], dataset: str) -> list[str]:
    """What validate checks and record_dataset reads: the source's files, every split's
    prepared annotations and the prepare step's changes."""
    return source_files(config, dataset) + [
        path
        for split in dataset_splits(config, dataset)
        for path in (prepared_annotations(dataset, split), prepare_changes(dataset, split))
    ]


def _modified(path: str) -> float:
    """When ``path`` changed: a link's own time or its target's, whichever is later."""
    times = [os.lstat(path).st_mtime]
    if os.path.exists(path):
        times.append(os.stat(path).st_mtime)
    return max(times)


def newer_than_all(path: str, others: Iterable[str]) -> bool:
    """Whether ``path`` exists and changed after every one of ``others`` that exists."""
    if not os.path.lexists(path):
        return False
    when = _modified(path)
    return all(_modified(other) <= when for other in others if os.path.lexists(other))


def remote_url(config: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> str:
    """The URL a file is fetched from: ``<mirror>/<name>`` when a mirror is set, else its url."""
    mirror = config["download"]["mirror"]
    return f"{mirror.rstrip('/')}/{name}" if mirror else entry["url"]


def checksums(entry: Mapping[str, Any]) -> dict[str, str]:
    """The checksums given for a remote file (lower-case hex), by key."""
    return {key: entry[key].lower() for key in CHECKSUM_KEYS if key in entry}


def checksum_options(config: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, str]:
    """fetch.py's checksum options for a remote file: its checksums, or the lock file that
    holds (or will hold) the sha256 of a file trusted on first use."""
    if entry.get("trust_on_first_use"):
        return {"trust_on_first_use": config["download"]["lock_file"]}
    return checksums(entry)


def comparison_run_info(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What the comparison shows about each run from the config, in config order; its
    dataset selects the reference lines (report.references) that apply."""
    info = {}
    for name in config["runs"]:
        run = run_config(config, name)
        info[name] = {
            "dataset": run["dataset"],
            "eval_split": run["eval_split"],
            "engine": run["engine"],
            "gpus": run["gpus"] * run["nodes"],
            "precision": run["precision"],
        }
    return info
