"""How scripts receive a run's settings: from the rule, or from a config file by hand.

The Snakemake rules pass exactly the settings a step depends on as JSON (``--settings``), the
same dict that sits in the rule's ``params:`` and decides reruns, and, for train and predict,
the settings that cannot change the outputs apart (``--operational``, workflow/params.py), so
that changing those reruns nothing. A person can instead point at a config file and a run
name (``--config``/``--run``); that file is validated like the workflow's.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import yaml

from maskrcnn_pipeline.cli import json_option
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.workflow.params import (
    STAGES,
    merge_operational,
    run_config,
    split_operational,
    stage_settings,
)


def add_settings_arguments(parser: argparse.ArgumentParser, *, kind: str) -> None:
    group = parser.add_argument_group(f"{kind} settings (give --settings, or --config and --run)")
    group.add_argument(
        "--settings", help=f"the {kind} settings as JSON (what the Snakemake rule passes)"
    )
    if kind in STAGES:
        group.add_argument(
            "--operational",
            help=f"with --settings: the {kind} settings that cannot change the outputs "
            "(threads, ...) as JSON",
        )
    group.add_argument("--config", help="a pipeline config file (YAML), e.g. config.yaml")
    group.add_argument(
        "--run",
        help="name of the run under runs: in --config (beside --settings: the run's name in "
        "messages, what the rule passes)",
    )


def resolve_settings(args: argparse.Namespace, *, kind: str) -> dict[str, Any]:
    """Every setting of ``kind`` the job reads (for train and predict: params and
    operational merged)."""
    return merge_operational(*resolve_split_settings(args, kind=kind))


def resolve_split_settings(
    args: argparse.Namespace, *, kind: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of ``kind`` as (params, operational): from --settings and --operational,
    or split from --config/--run (the "run" kind of the benchmarks has no operational part).

    The config's validation is imported only by hand: a rule always passes --settings, so
    the validation code is no code input of the rules' jobs (workflow/code_inputs.py
    BY_HAND_ONLY) and editing it reruns nothing; the settings it selects are params.
    """
    if args.settings is not None:
        settings = json_option(args.settings, "--settings")
        if kind not in STAGES:
            return settings, {}
        if args.operational is None:
            raise PipelineError(
                "--settings needs --operational JSON beside it (what the rule passes); by "
                "hand, give --config FILE and --run NAME instead"
            )
        return settings, json_option(args.operational, "--operational")
    if args.config is None or args.run is None:
        raise PipelineError("give --settings JSON, or both --config FILE and --run NAME")
    from maskrcnn_pipeline.workflow.config import load_config

    config = load_config(args.config)
    if kind not in STAGES:
        return copy.deepcopy(run_config(config, args.run)), {}
    return split_operational(stage_settings(config, args.run, kind), kind)


def worker_arguments(
    params: dict[str, Any], operational: dict[str, Any], options: dict[str, object | None]
) -> list[str]:
    """The arguments a script passes to the copies of itself that torchrun starts: the
    settings it resolved (so every worker uses the same, and a config file is read once),
    then each of ``options`` (flag -> value) that has a value."""
    arguments = ["--settings", json.dumps(params), "--operational", json.dumps(operational)]
    for flag, value in options.items():
        if value is not None:
            arguments += [flag, str(value)]
    return arguments


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting, dotted key and YAML value "
        "(e.g. --set precision=bf16 --set solver.ims_per_gpu=12); repeatable",
    )


def apply_overrides(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Apply ``--set`` overrides; an unknown key is an error naming the keys there are."""
    for item in args.set:
        key, separator, raw = item.partition("=")
        if not separator:
            raise PipelineError(f"--set {item!r}: expected KEY=VALUE")
        node = settings
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise PipelineError(f"--set {key}: no section {part!r}; sections: {sorted(node)}")
            node = node[part]
        if leaf not in node:
            raise PipelineError(f"--set {key}: unknown key {leaf!r}; keys: {sorted(node)}")
        node[leaf] = yaml.safe_load(raw)
    return settings


def add_benchmark_arguments(
    parser: argparse.ArgumentParser, *, iterations: int, warmup: int
) -> None:
    """What both benchmark CLIs take: run settings, overrides, counts, synthetic image size."""
    add_settings_arguments(parser, kind="run")
    add_override_arguments(parser)
    parser.add_argument(
        "--iterations", type=int, default=iterations, help=f"timed steps ({iterations})"
    )
    parser.add_argument(
        "--warmup", type=int, default=warmup, help=f"untimed steps first ({warmup})"
    )
    parser.add_argument("--height", type=int, default=800, help="synthetic image height (800)")
    parser.add_argument("--width", type=int, default=1333, help="synthetic image width (1333)")
    parser.add_argument(
        "--classes", type=int, default=80, help="classes of synthetic data / a random model (80)"
    )
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
