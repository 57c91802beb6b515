"""NVIDIA's dllogger JSON lines, read into our metrics.jsonl records, final metrics and
benchmark figures.

dllogger's JSONStreamBackend (NVIDIA/dllogger, dllogger/logger.py) writes one line per call::

    DLLL {"timestamp": "1653...", "datetime": "2022-05-...", "elapsedtime": "12.3",
          "type": "LOG", "step": <step>, "data": {...}}

(``timestamp`` and ``elapsedtime`` are strings there, seconds since the logger started;
``METADATA`` lines describe a metric and are skipped.) What NVIDIA's Mask R-CNN logs
(tools/train_net.py, maskrcnn_benchmark/engine/trainer.py and inference.py at the pinned
commit), by the kind of ``step``:

- ``"PARAMETER"``: run facts: ``gpu_count``, ``config_file``, ``config`` (the whole yacs
  config, so ``SOLVER.IMS_PER_BATCH``), ``train_start``, ``eval_start``...
- ``[iteration]``, every 20 iterations and at the last: ``learning_rate``, ``memory`` (peak MB),
  ``eta``, and the meters ``loss``, ``loss_*``, ``time`` (seconds per iteration) and ``data``
  (seconds waiting for data), each written by MetricLogger.get_dict as the text
  ``"<median of the last 20> (<average since start>)"``; plain numbers are accepted too;
- ``[iteration, epoch]``: an evaluation during training (``BBOX_mAP``, ``MASK_mAP``);
- ``[]``: summaries: ``e2e_train_time`` and ``train_perf_fps`` (throughput), the final
  ``BBOX_mAP``/``MASK_mAP``, and for inference ``e2e_infer_time``, ``inference_perf_fps`` and
  ``latency_avg``/``latency_90``/``_95``/``_99`` (seconds per batch; the 90 etc. are means of
  the fastest 90% of batches, not percentiles).

A resumed training writes a new file (the rule keeps the earlier ones); the files are read in
order and a later line wins for an iteration logged twice, as metrics_log does for ours.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)

PREFIX = "DLLL "
PARAMETER = "PARAMETER"
#: Their final metric names -> our iou types.
AP_KEYS = {"BBOX_mAP": "bbox", "MASK_mAP": "segm"}
#: Their iteration keys -> ours (metrics.jsonl, see hooks.MetricsWriter).
RENAMED = {
    "learning_rate": "lr",
    "time": "time_per_iter",
    "data": "data_time",
    "memory": "max_memory_mb",
}
#: "0.6931 (0.8012)": MetricLogger's median over its window, then the average since start.
_METER_TEXT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)\s*(?:\(.*\))?\s*")


@dataclass(frozen=True)
class Entry:
    """One LOG line: its step (a string or a tuple of numbers), data, and when it was
    written (seconds since that process's logger started), from which attempt (file)."""

    step: str | tuple[float, ...]
    data: Mapping[str, Any]
    elapsed: float | None
    attempt: int
    where: str

    @property
    def kind(self) -> str:
        """parameter, iteration, evaluation, summary, or other."""
        if self.step == PARAMETER:
            return "parameter"
        if isinstance(self.step, tuple):
            return {0: "summary", 1: "iteration", 2: "evaluation"}.get(len(self.step), "other")
        return "other"


def read_dllogger(paths: Sequence[str | Path]) -> list[Entry]:
    """Every LOG line of ``paths`` (the attempts of one run, oldest first).

    Lines without the ``DLLL`` prefix are skipped (their stdout log has other lines). A
    malformed line is an error naming the file and line, except the very last line of a
    file, which a killed process may have left half-written: it is skipped with a warning.
    """
    entries: list[Entry] = []
    for attempt, path in enumerate(map(Path, paths)):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError as exc:
            raise PipelineError(f"{path}: dllogger file not found; did the job run?") from exc
        tagged = [(n, line) for n, line in enumerate(lines, 1) if line.startswith(PREFIX)]
        for index, (number, line) in enumerate(tagged):
            where = f"{path}, line {number}"
            try:
                record = json.loads(line[len(PREFIX) :])
            except json.JSONDecodeError as exc:
                if index == len(tagged) - 1:
                    log.warning("%s: skipped a truncated last line (%s)", where, exc.msg)
                    continue
                raise PipelineError(f"{where}: not valid JSON after 'DLLL' ({exc.msg})") from exc
            entry = _entry(record, attempt, where)
            if entry is not None:
                entries.append(entry)
    return entries


def _entry(record: Any, attempt: int, where: str) -> Entry | None:
    if not isinstance(record, dict):
        raise PipelineError(f"{where}: expected a JSON object after 'DLLL'")
    if record.get("type") == "METADATA":
        return None
    step, data = record.get("step"), record.get("data")
    if not isinstance(data, dict):
        raise PipelineError(f"{where}: 'data' must be an object, got {data!r}")
    if isinstance(step, list) and all(_is_number(part) for part in step):
        step = tuple(step)
    elif not isinstance(step, str):
        raise PipelineError(f"{where}: 'step' must be \"PARAMETER\" or a list of numbers")
    return Entry(step, data, _seconds(record.get("elapsedtime")), attempt, where)


def _seconds(value: Any) -> float | None:
    """elapsedtime: a string in dllogger 1.0, a number in some versions."""
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def meter_value(value: Any) -> float | None:
    """A logged number: a plain number, or the median of MetricLogger's text "m (avg)"."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        match = _METER_TEXT.fullmatch(value)
        if match:
            return float(match.group(1))
    return None


def parameters(entries: Iterable[Entry]) -> dict[str, Any]:
    """Every PARAMETER value; a later one wins."""
    found: dict[str, Any] = {}
    for entry in entries:
        if entry.kind == "parameter":
            found.update(entry.data)
    return found


def ims_per_batch(entries: Iterable[Entry]) -> int | None:
    """SOLVER.IMS_PER_BATCH (global) from the logged config, when it was logged."""
    config = parameters(entries).get("config")
    try:
        return int(config["SOLVER"]["IMS_PER_BATCH"])
    except (TypeError, KeyError, ValueError):
        return None


def _origins(entries: Sequence[Entry]) -> dict[int, float]:
    """Per attempt, when training started: its train_start PARAMETER line, else its first line."""
    origins: dict[int, float] = {}
    for entry in entries:
        if entry.elapsed is None:
            continue
        if entry.kind == "parameter" and entry.data.get("train_start"):
            origins[entry.attempt] = entry.elapsed
        origins.setdefault(entry.attempt, entry.elapsed)
    return origins


def training_records(
    entries: Sequence[Entry], *, images_per_batch: int | None = None
) -> list[dict[str, Any]]:
    """Our metrics.jsonl records: one per logged iteration, plus evaluation lines.

    ``seconds`` is the wall time since training started, summed over attempts (a resumed
    attempt continues from where the previous one's last line was). ``images_per_s`` is the
    global batch (the logged config, else ``images_per_batch``) over the seconds per
    iteration. The meters are the medians of the last 20 iterations that NVIDIA logs.
    """
    batch = ims_per_batch(entries) or images_per_batch
    origins = _origins(entries)
    offset, last_attempt, last_seconds = 0.0, None, 0.0
    training: dict[int, dict[str, Any]] = {}
    evaluations: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if entry.attempt != last_attempt:
            offset, last_attempt = last_seconds, entry.attempt
        if entry.kind == "iteration":
            record = _iteration_record(entry, batch)
            if entry.elapsed is not None and entry.attempt in origins:
                record["seconds"] = round(offset + entry.elapsed - origins[entry.attempt], 3)
                last_seconds = record["seconds"]
            training[record["iteration"]] = record
        elif entry.kind == "evaluation":
            result = final_ap([entry])
            if result:
                evaluations[int(entry.step[0])] = result
    records = []
    for iteration in sorted(set(training) | set(evaluations)):
        if iteration in training:
            records.append(training[iteration])
        if iteration in evaluations:
            records.append({"iteration": iteration, "eval": evaluations[iteration]})
    return records


def _iteration_record(entry: Entry, batch: int | None) -> dict[str, Any]:
    record: dict[str, Any] = {"iteration": int(entry.step[0])}
    for key, value in entry.data.items():
        name = RENAMED.get(key, key)
        if name not in RENAMED.values() and not key.startswith("loss"):
            continue  # eta and anything else that is not a figure of ours
        number = meter_value(value)
        if number is not None:
            record[name] = number
    seconds = record.get("time_per_iter")
    if batch and seconds and seconds > 0:
        record["images_per_s"] = batch / seconds
    return record


def final_ap(entries: Iterable[Entry]) -> dict[str, dict[str, float]] | None:
    """The last logged BBOX_mAP/MASK_mAP as ``{"bbox": {"AP": ...}, "segm": {"AP": ...}}``."""
    found = None
    for entry in entries:
        values = {
            iou_type: {"AP": meter_value(entry.data[key])}
            for key, iou_type in AP_KEYS.items()
            if key in entry.data and meter_value(entry.data[key]) is not None
        }
        if values and entry.kind in ("summary", "evaluation"):
            found = values
    return found


def summary(entries: Iterable[Entry]) -> dict[str, float]:
    """Every number logged at step ``[]``: throughput, times, final AP, latencies."""
    found: dict[str, float] = {}
    for entry in entries:
        if entry.kind != "summary":
            continue
        for key, value in entry.data.items():
            number = meter_value(value)
            if number is not None:
                found[key] = number
    return found


def _last_iteration(entries: Sequence[Entry]) -> dict[str, Any]:
    lines = [entry for entry in entries if entry.kind == "iteration"]
    return _iteration_record(lines[-1], None) if lines else {}


def train_benchmark(
    entries: Sequence[Entry], *, precision: str, channels_last: bool
) -> dict[str, Any]:
    """train_benchmark.sh's figures, in the shape of scripts/benchmark_train.py's JSON.

    ``images_per_s`` is NVIDIA's train_perf_fps (iterations x global batch / e2e_train_time,
    from before the first iteration to after the last, as their script reports it);
    ``batch_size`` is the global batch, over ``gpus`` GPUs.
    """
    totals = summary(entries)
    if "e2e_train_time" not in totals or "train_perf_fps" not in totals:
        raise PipelineError(
            "no e2e_train_time/train_perf_fps in the training's dllogger file: the benchmark "
            "did not finish (see its log)"
        )
    last = _last_iteration(entries)
    iterations = last.get("iteration") or 0
    seconds = totals["e2e_train_time"]
    figures: dict[str, Any] = {
        "engine": "nvidia",
        "iterations": iterations,
        "batch_size": ims_per_batch(entries),
        "gpus": parameters(entries).get("gpu_count"),
        "seconds": round(seconds, 4),
        "images_per_s": round(totals["train_perf_fps"], 3),
        "ms_per_iteration": round(1000 * seconds / iterations, 3) if iterations else None,
        "precision": precision,
        "channels_last": channels_last,
        "device": "cuda",
        "data": "real",
    }
    if "max_memory_mb" in last:
        figures["max_memory_mb"] = round(last["max_memory_mb"], 1)
    return figures


def inference_result(entries: Sequence[Entry], batch_size: int) -> dict[str, Any]:
    """One batch size of inference_benchmark.sh, in the shape of benchmark_inference.py's
    results. NVIDIA logs a mean latency per batch and means of the fastest 90/95/99% of
    batches, not percentiles: p50/p90/p99 are null and their figures keep their own names."""
    totals = summary(entries)
    if "latency_avg" not in totals or "inference_perf_fps" not in totals:
        raise PipelineError(
            "no latency_avg/inference_perf_fps in the inference's dllogger file: the "
            "benchmark did not finish (see its log)"
        )
    samples = parameters(entries).get("eval_num_samples")
    latency = totals["latency_avg"]
    result: dict[str, Any] = {
        "batch_size": batch_size,
        "iterations": math.ceil(samples / batch_size) if _is_number(samples) else None,
        "latency_ms_mean": round(1000 * latency, 3),
        "latency_ms_p50": None,
        "latency_ms_p90": None,
        "latency_ms_p99": None,
        # the model's own throughput, as ours measures it: images per second of forward passes
        "images_per_s": round(batch_size / latency, 3) if latency > 0 else None,
        # NVIDIA's inference_perf_fps: images over the whole run, data loading included
        "images_per_s_end_to_end": round(totals["inference_perf_fps"], 3),
    }
    for share in (90, 95, 99):
        key = f"latency_{share}"
        if key in totals:
            result[f"latency_ms_fastest_{share}_mean"] = round(1000 * totals[key], 3)
    return result
