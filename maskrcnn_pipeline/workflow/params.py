"""Each stage's settings, split into what can change its outputs and what cannot.

A rule's ``params:`` decide its reruns (Snakemake's params trigger), so they must hold exactly
the settings that can change what the job writes: a stage's *params*. The rest are
*operational*: how the job runs or is watched (threads, checkpoint period, DataLoader
workers ...). They still reach the job (``--operational`` of scripts/train.py and predict.py),
but changing them reruns nothing. This module is the one place that says which is which; the
rules, the scripts and the README's "What triggers a rerun" table all follow it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from maskrcnn_pipeline.errors import PipelineError


def run_config(config: Mapping[str, Any], run: str) -> dict[str, Any]:
    try:
        return config["runs"][run]
    except KeyError as exc:
        raise PipelineError(
            f"runs.{run}: no such run; defined runs: {', '.join(sorted(config['runs']))}"
        ) from exc


#: The run keys that training reads; predict, evaluate and report settings are left out so
#: that changing them never retrains (``test`` joins when the run evaluates periodically).
TRAIN_KEYS = (
    "gpus",
    "nodes",
    "cpu_processes",
    "rendezvous",
    "eval_period",
    "early_stop",
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

#: Per stage, the dotted keys of its settings that cannot change its outputs: how many
#: threads and workers, how often to log and checkpoint, how many checkpoints to keep, how
#: long to wait for a batch, how workers hand over tensors. A resumed training continues the
#: same weights whatever they are (train/run.py), and predictions do not depend on them; nor
#: on how many processes share them (inference/sharding.py deals out whole batches).
OPERATIONAL_KEYS: dict[str, tuple[str, ...]] = {
    "train": (
        "threads",
        "log_period",
        "checkpoint.period",
        "checkpoint.keep",
        "dataloader.workers",
        "dataloader.timeout",
        "dataloader.sharing_strategy",
        "rendezvous.port",
        "rendezvous.timeout",
    ),
    "predict": ("threads", "gpus", "cpu_processes"),
}

#: The stages whose settings are split (the kinds of scripts/train.py and predict.py).
STAGES = tuple(OPERATIONAL_KEYS)


def train_settings(config: Mapping[str, Any], run: str) -> dict[str, Any]:
    """Everything training reads of a run: its params and its operational settings."""
    settings = run_config(config, run)
    selected = {key: copy.deepcopy(settings[key]) for key in TRAIN_KEYS}
    if settings["eval_period"]:
        selected["test"] = copy.deepcopy(settings["test"])  # periodic evaluation uses them
    return selected


def predict_settings(config: Mapping[str, Any], run: str) -> dict[str, Any]:
    """Everything predicting reads of a run besides the model (for evaluation and inference)."""
    settings = run_config(config, run)
    return {
        "test": copy.deepcopy(settings["test"]),
        "size_divisibility": settings["input"]["size_divisibility"],
        "precision": settings["precision"],
        "channels_last": settings["channels_last"],
        "threads": settings["threads"],
        "gpus": settings["gpus"],
        "cpu_processes": settings["cpu_processes"],
    }


_SETTINGS = {"train": train_settings, "predict": predict_settings}


def split_operational(
    settings: Mapping[str, Any], stage: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``settings`` of ``stage`` as (params, operational), both nested like ``settings``.

    A key of OPERATIONAL_KEYS that ``settings`` lacks is skipped (``test`` only exists when
    a run evaluates periodically, and a benchmark's settings may be partial).
    """
    params = copy.deepcopy(dict(settings))
    operational: dict[str, Any] = {}
    for dotted in OPERATIONAL_KEYS[stage]:
        *parents, leaf = dotted.split(".")
        source, target = params, operational
        for part in parents:
            source = source.get(part, {})
            target = target.setdefault(part, {})
        if leaf in source:
            target[leaf] = source.pop(leaf)
    for key in [key for key, value in params.items() if value == {} and key in operational]:
        del params[key]  # a section that held only operational keys (checkpoint)
    return params, operational


def merge_operational(params: Mapping[str, Any], operational: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a job reads: ``params`` with ``operational`` laid over them, section by
    section (the inverse of :func:`split_operational`)."""
    merged = copy.deepcopy(dict(params))
    for key, value in operational.items():
        if isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **copy.deepcopy(dict(value))}
        else:
            merged[key] = value
    return merged


def stage_params(config: Mapping[str, Any], run: str, stage: str) -> dict[str, Any]:
    """The settings of ``stage`` that can change its outputs: its rule's params."""
    return split_operational(_SETTINGS[stage](config, run), stage)[0]


def stage_operational(config: Mapping[str, Any], run: str, stage: str) -> dict[str, Any]:
    """The settings of ``stage`` that cannot change its outputs: passed, never compared."""
    return split_operational(_SETTINGS[stage](config, run), stage)[1]


def stage_settings(config: Mapping[str, Any], run: str, stage: str) -> dict[str, Any]:
    """Every setting ``stage`` reads (params and operational), e.g. for a script run by hand."""
    return _SETTINGS[stage](config, run)
