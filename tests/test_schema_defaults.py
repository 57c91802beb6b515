"""Defaults live in the schema only: a script's option for a config key takes its default from
schemas/config.schema.yaml (so a script run by hand behaves as the workflow with that key left
out), and the library's keyword defaults for the same settings equal the schema's."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from maskrcnn_pipeline.data.fetch import FetchOptions
from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset
from maskrcnn_pipeline.data.validation.report import ValidationSettings
from maskrcnn_pipeline.evaluation import DEFAULT_BACKEND
from maskrcnn_pipeline.report.run_report import build_run_report
from maskrcnn_pipeline.workflow import schema
from tests.support.paths import REPO

Keys = tuple[str, ...]


def node(tree: dict[str, Any], keys: Keys) -> dict[str, Any]:
    """The schema node of a key path: from the top level, or from a $defs entry."""
    if keys[0] == "$defs":
        tree, keys = tree["$defs"][keys[1]], keys[2:]
    for key in keys:
        tree = tree["properties"][key]
    return tree


def default(keys: Keys) -> Any:
    return node(schema.load_schema(), keys)["default"]


SYNTHETIC_KEYS = tuple(schema.load_schema()["$defs"]["synthetic"]["properties"])

#: script -> (the arguments it requires, {option's dest: the config key path it stands for}).
SCRIPT_OPTIONS: dict[str, tuple[list[str], dict[str, Keys]]] = {
    "generate_synthetic": (
        ["--out", "x"],
        {key: ("$defs", "synthetic", key) for key in SYNTHETIC_KEYS},
    ),
    "fetch": (
        ["--url", "file:///x", "--out", "x"],
        {"retries": ("download", "retries"), "timeout": ("download", "timeout")},
    ),
    "validate_dataset": (
        ["--out", "x"],
        {"bbox_tolerance": ("$defs", "validation", "bbox_tolerance")},
    ),
    "evaluate": (
        ["--annotations", "a", "--results", "r", "--out", "o"],
        {"backend": ("evaluation", "backend")},
    ),
    "report": (
        ["--run-name", "r", "--out-dir", "o", "--metrics-log", "l", "--metrics", "m"],
        {
            "num_examples": ("report", "num_examples"),
            "score_threshold": ("report", "score_threshold"),
        },
    ),
    "overlay": (
        ["--predictions", "p", "--index", "i", "--images", "d", "--out-dir", "o"],
        {
            "num_examples": ("report", "num_examples"),
            "score_threshold": ("report", "score_threshold"),
        },
    ),
    "nvidia_benchmark": (
        ["train", "d", "--precision", "fp16"],
        {"channels_last": ("$defs", "run", "channels_last")},
    ),
}


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(module: ModuleType, argv: list[str]) -> dict[str, Any]:
    """The script's parsed options, through build_parser() or parse_args(), whichever it has."""
    if hasattr(module, "build_parser"):
        return vars(module.build_parser().parse_args(argv))
    return vars(module.parse_args(argv))


def other_value(entry: dict[str, Any]) -> Any:
    """A valid value unlike the schema's default, to see that the script follows the schema."""
    value = entry["default"]
    if "enum" in entry:
        return next(choice for choice in entry["enum"] if choice != value)
    if isinstance(value, bool):
        return not value
    return value + 1


def matches(parsed: Any, value: Any) -> bool:
    """Options standing for booleans are spelled True/False on the command line."""
    return parsed == value or (isinstance(parsed, str) and parsed == str(value))


@pytest.mark.parametrize("script", sorted(SCRIPT_OPTIONS))
def test_script_options_default_to_the_schema(script: str) -> None:
    argv, options = SCRIPT_OPTIONS[script]
    parsed = parse(load_script(script), argv)
    for dest, keys in options.items():
        assert matches(parsed[dest], default(keys)), f"{script}: --{dest} vs {'.'.join(keys)}"


@pytest.mark.parametrize("script", sorted(SCRIPT_OPTIONS))
def test_script_options_follow_a_changed_schema(
    script: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a copy of today's values: with other defaults in the schema, the options change."""
    argv, options = SCRIPT_OPTIONS[script]
    changed = copy.deepcopy(schema.load_schema())
    expected = {}
    for dest, keys in options.items():
        entry = node(changed, keys)
        entry["default"] = expected[dest] = other_value(entry)
    monkeypatch.setattr(schema, "load_schema", lambda path=schema.SCHEMA_PATH: changed)
    parsed = parse(load_script(script), argv)
    for dest, value in expected.items():
        assert matches(parsed[dest], value), f"{script}: --{dest} does not come from the schema"


def test_generator_offers_every_synthetic_key() -> None:
    """The rule passes each key of datasets.<name>.synthetic as --<key>: the script has all."""
    assert set(load_script("generate_synthetic").OPTIONS) == set(SYNTHETIC_KEYS)


def keyword_defaults(function: Callable[..., Any]) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def field_defaults(cls: type) -> dict[str, Any]:
    return {field.name: field.default for field in dataclasses.fields(cls)}


#: (library default, the config key path it mirrors): the layers below workflow/ cannot read
#: the schema, so their keyword defaults are checked against it instead.
LIBRARY_DEFAULTS = [
    *(
        (keyword_defaults(generate_synthetic_dataset)[key], ("$defs", "synthetic", key))
        for key in SYNTHETIC_KEYS
        if key not in ("train_images", "val_images")  # given as splits=, no default
    ),
    (field_defaults(FetchOptions)["retries"], ("download", "retries")),
    (field_defaults(FetchOptions)["timeout"], ("download", "timeout")),
    *(
        (field_defaults(ValidationSettings)[key], ("$defs", "validation", key))
        for key in ("bbox_tolerance", "decode_images")
    ),
    (DEFAULT_BACKEND, ("evaluation", "backend")),
    (keyword_defaults(build_run_report)["num_examples"], ("report", "num_examples")),
    (keyword_defaults(build_run_report)["score_threshold"], ("report", "score_threshold")),
]


@pytest.mark.parametrize(("value", "keys"), LIBRARY_DEFAULTS, ids=lambda x: str(x))
def test_library_defaults_equal_the_schema(value: Any, keys: Keys) -> None:
    assert value == default(keys), f"the library's default for {'.'.join(keys)} drifted"


def test_schema_default_reads_top_level_keys_and_definitions(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(
        "properties: {report: {properties: {n: {default: 6}}}}\n"
        "$defs: {synthetic: {properties: {seed: {default: [1]}}}}\n"
    )
    assert schema.schema_default("report", "n", schema_path=path) == 6
    seed = schema.schema_default("$defs", "synthetic", "seed", schema_path=path)
    assert seed == [1]
    seed.append(2)  # a copy: the cached schema is not changed by the caller
    assert schema.schema_default("$defs", "synthetic", "seed", schema_path=path) == [1]
