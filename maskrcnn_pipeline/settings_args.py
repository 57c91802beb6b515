"""How scripts receive a run's settings: from the rule, or from a config file by hand.

The Snakemake rules pass exactly the settings a step depends on as JSON (``--settings``), the
same dict that sits in the rule's ``params:`` and decides reruns. A person can instead point
at a config file and a run name (``--config``/``--run``); that file is validated like the
workflow's.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from maskrcnn_pipeline.config import load_config, predict_settings, train_settings
from maskrcnn_pipeline.errors import PipelineError

_SELECTORS = {"train": train_settings, "predict": predict_settings}


def add_settings_arguments(parser: argparse.ArgumentParser, *, kind: str) -> None:
    group = parser.add_argument_group(f"{kind} settings (give --settings, or --config and --run)")
    group.add_argument(
        "--settings", help=f"the {kind} settings as JSON (what the Snakemake rule passes)"
    )
    group.add_argument("--config", help="a pipeline config file (YAML), e.g. config.yaml")
    group.add_argument("--run", help="name of the run under runs: in --config")


def resolve_settings(args: argparse.Namespace, *, kind: str) -> dict[str, Any]:
    if args.settings is not None:
        try:
            settings = json.loads(args.settings)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"--settings: not valid JSON ({exc})") from exc
        if not isinstance(settings, dict):
            raise PipelineError("--settings: must be a JSON object")
        return settings
    if args.config is None or args.run is None:
        raise PipelineError("give --settings JSON, or both --config FILE and --run NAME")
    return _SELECTORS[kind](load_config(args.config), args.run)
