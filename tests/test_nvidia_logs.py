"""NVIDIA's dllogger lines (written to dllogger's documented format) as our metrics.jsonl,
final metrics and benchmark JSON: every kind of step NVIDIA's Mask R-CNN logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.metrics_log import eval_history, read_metrics_log, training_summary
from maskrcnn_pipeline.nvidia.logs import (
    final_ap,
    inference_result,
    meter_value,
    parameters,
    read_dllogger,
    summary,
    train_benchmark,
    training_records,
)
from tests.support.nvidia import dllogger_file, iteration_data
from tests.support.workflow import run_script

CONFIG = {"SOLVER": {"IMS_PER_BATCH": 96, "BASE_LR": 0.12}, "MODEL": {"MASK_ON": True}}


def training_log(path: Path) -> Path:
    """One attempt of train_net.py as it logs: parameters, iterations, an evaluation during
    training (PER_EPOCH_EVAL), the throughput summary, the final AP and the closing line."""
    return dllogger_file(
        path,
        [
            ("PARAMETER", {"gpu_count": 8}, 0.1),
            ("PARAMETER", {"config_file": "configs/e2e_mask_rcnn_R_50_FPN_1x.yaml"}, 0.2),
            ("PARAMETER", {"config": CONFIG}, 0.3),
            ("PARAMETER", {"train_start": True}, 10.0),
            ((20,), iteration_data(2.0, lr=0.01), 20.0),
            ((40,), iteration_data(1.5, lr=0.02, time=0.4), 30.0),
            ("PARAMETER", {"eval_start": True}, 31.0),
            ((40, 1), {"BBOX_mAP": 0.12, "MASK_mAP": 0.1}, 40.0),
            ((60,), iteration_data(1.0, lr=0.03), 50.0),
            ((), {"e2e_train_time": 40.0, "train_perf_fps": 144.0}, 51.0),
            ((), {"BBOX_mAP": 0.3763, "MASK_mAP": 0.3417}, 60.0),
            ((), {}, 61.0),
        ],
    )


def test_every_step_kind_is_read_with_its_time(tmp_path: Path) -> None:
    entries = read_dllogger([training_log(tmp_path / "dllogger.json")])
    kinds = [entry.kind for entry in entries]
    assert kinds.count("parameter") == 5
    assert kinds.count("iteration") == 3 and kinds.count("evaluation") == 1
    assert kinds.count("summary") == 3
    assert entries[4].step == (20,) and entries[4].elapsed == 20.0
    assert parameters(entries) == {
        "gpu_count": 8,
        "config_file": "configs/e2e_mask_rcnn_R_50_FPN_1x.yaml",
        "config": CONFIG,
        "train_start": True,
        "eval_start": True,
    }


def test_iterations_become_our_metrics_lines(tmp_path: Path) -> None:
    records = training_records(read_dllogger([training_log(tmp_path / "dllogger.json")]))
    training = [record for record in records if "eval" not in record]
    assert [record["iteration"] for record in records] == [20, 40, 40, 60]
    first = training[0]
    assert first == {
        "iteration": 20,
        "lr": 0.01,
        "max_memory_mb": 9876.5,
        "loss": 2.0,  # the median of MetricLogger's "median (average)"
        "loss_classifier": 0.5,
        "loss_box_reg": 0.5,
        "loss_mask": 0.5,
        "loss_objectness": 0.25,
        "loss_rpn_box_reg": 0.25,
        "time_per_iter": 0.5,
        "data_time": 0.02,
        "images_per_s": 96 / 0.5,  # the logged config's global batch
        "seconds": 10.0,  # since the train_start parameter, not since the logger started
    }
    assert training[1]["images_per_s"] == pytest.approx(96 / 0.4)
    assert [record["seconds"] for record in training] == [10.0, 20.0, 40.0]
    assert records[2] == {"iteration": 40, "eval": {"bbox": {"AP": 0.12}, "segm": {"AP": 0.1}}}


def test_final_metrics_and_throughput_summary(tmp_path: Path) -> None:
    entries = read_dllogger([training_log(tmp_path / "dllogger.json")])
    assert final_ap(entries) == {"bbox": {"AP": 0.3763}, "segm": {"AP": 0.3417}}
    assert summary(entries) == {
        "e2e_train_time": 40.0,
        "train_perf_fps": 144.0,
        "BBOX_mAP": 0.3763,
        "MASK_mAP": 0.3417,
    }
    figures = train_benchmark(entries, precision="fp16", channels_last=True)
    assert figures["images_per_s"] == 144.0 and figures["seconds"] == 40.0
    assert figures["iterations"] == 60 and figures["ms_per_iteration"] == pytest.approx(666.667)
    assert (figures["batch_size"], figures["gpus"], figures["max_memory_mb"]) == (96, 8, 9876.5)


def test_the_report_reads_what_the_parser_writes(tmp_path: Path) -> None:
    records = training_records(read_dllogger([training_log(tmp_path / "dllogger.json")]))
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    log = read_metrics_log(path)
    assert log.loss_columns()[:2] == ["loss", "loss_classifier"]
    assert training_summary(log) == {
        "iterations": 60.0,
        "seconds": 40.0,
        "images_per_s": 192.0,
        "data_time": 0.02,
        "max_memory_mb": 9876.5,
    }
    assert eval_history(log).loc[40].to_dict() == {"bbox": 0.12, "segm": 0.1}


def test_a_resumed_training_continues_its_time_and_later_lines_win(tmp_path: Path) -> None:
    first = dllogger_file(
        tmp_path / "dllogger.json.20220501T120000",
        [
            ("PARAMETER", {"config": CONFIG}, 0.0),
            ("PARAMETER", {"train_start": True}, 5.0),
            ((20,), iteration_data(3.0), 15.0),
            ((40,), iteration_data(2.5), 25.0),  # after the last checkpoint (20): redone
        ],
    )
    second = dllogger_file(
        tmp_path / "dllogger.json",
        [
            ("PARAMETER", {"train_start": True}, 2.0),
            ((40,), iteration_data(2.0), 12.0),
            ((60,), iteration_data(1.0), 22.0),
        ],
    )
    records = training_records(read_dllogger([first, second]))
    assert [(r["iteration"], r["loss"], r["seconds"]) for r in records] == [
        (20, 3.0, 10.0),
        (40, 2.0, 30.0),  # the second attempt's value; its clock starts where the first ended
        (60, 1.0, 40.0),
    ]


def test_inference_logs_become_the_inference_benchmark_shape(tmp_path: Path) -> None:
    entries = read_dllogger(
        [
            dllogger_file(
                tmp_path / "dllogger.json",
                [
                    ("PARAMETER", {"eval_dataset_name": "coco_val", "eval_num_samples": 5000}, 1),
                    ((), {"e2e_infer_time": 250.0, "inference_perf_fps": 20.0}, 260),
                    ((), {"latency_avg": 0.04, "latency_90": 0.035, "latency_95": 0.037}, 261),
                    ("PARAMETER", {"skip_eval": True, "predictions_saved_path": "x.pth"}, 262),
                    ((), {}, 263),
                ],
            )
        ]
    )
    result = inference_result(entries, batch_size=8)
    assert result == {
        "batch_size": 8,
        "iterations": 625,
        "latency_ms_mean": 40.0,
        "latency_ms_p50": None,  # NVIDIA logs no percentiles
        "latency_ms_p90": None,
        "latency_ms_p99": None,
        "images_per_s": 200.0,
        "images_per_s_end_to_end": 20.0,
        "latency_ms_fastest_90_mean": 35.0,
        "latency_ms_fastest_95_mean": 37.0,
    }


def test_same_keys_as_our_benchmarks() -> None:
    from maskrcnn_pipeline.train.benchmark import (
        latency_figures,  # imports torch (the suite has it)
    )

    ours_inference = set(latency_figures([0.1, 0.2], 1))
    ours_train = {
        "iterations",
        "batch_size",
        "seconds",
        "images_per_s",
        "ms_per_iteration",
        "precision",
        "channels_last",
        "device",
        "max_memory_mb",
        "data",
    }  # scripts/benchmark_train.py on a GPU (maskrcnn_pipeline/train/benchmark.py)
    assert ours_inference <= set(nvidia_inference_keys())
    assert ours_train <= set(nvidia_train_keys())


def nvidia_inference_keys() -> list[str]:
    return list(
        inference_result(
            [_entry((), {"latency_avg": 0.1, "inference_perf_fps": 5.0})], batch_size=1
        )
    )


def nvidia_train_keys() -> list[str]:
    entries = [
        _entry((20,), iteration_data(1.0)),
        _entry((), {"e2e_train_time": 1.0, "train_perf_fps": 2.0}),
    ]
    return list(train_benchmark(entries, precision="fp16", channels_last=True))


def _entry(step, data):
    from maskrcnn_pipeline.nvidia.logs import Entry

    return Entry(step, data, 0.0, 0, "test")


def test_meter_values_are_numbers_or_their_median() -> None:
    assert meter_value(0.5) == 0.5 and meter_value(3) == 3.0
    assert meter_value("0.6931 (0.8012)") == 0.6931
    assert meter_value("1e-05 (2e-05)") == 1e-05
    assert meter_value("nan (nan)") != meter_value("nan (nan)")  # NaN: a diverged loss is data
    assert meter_value("0:01:02") is None and meter_value(True) is None


def test_metadata_and_other_lines_are_skipped(tmp_path: Path) -> None:
    path = training_log(tmp_path / "dllogger.json")
    text = path.read_text()
    metadata = {"timestamp": "1", "elapsedtime": "0", "datetime": "x", "type": "METADATA"}
    metadata.update(metric="loss", metadata={"unit": None})
    path.write_text(
        "INFO starting\n" + "DLLL " + json.dumps(metadata) + "\n" + text + "not a DLLL line\n"
    )
    assert len(read_dllogger([path])) == 12


def test_a_truncated_last_line_is_skipped_a_broken_one_inside_is_an_error(tmp_path: Path) -> None:
    path = training_log(tmp_path / "dllogger.json")
    path.write_text(path.read_text() + 'DLLL {"timestamp": "17')  # killed mid-write
    assert len(read_dllogger([path])) == 12
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match=r"dllogger.json, line 4: not valid JSON"):
        read_dllogger([path])


def test_bad_records_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "dllogger.json"
    path.write_text('DLLL {"type": "LOG", "step": [1], "data": [1, 2]}\nDLLL {}\n')
    with pytest.raises(PipelineError, match=r"line 1: 'data' must be an object"):
        read_dllogger([path])
    path.write_text('DLLL {"type": "LOG", "step": {"epoch": 1}, "data": {}}\nDLLL {}\n')
    with pytest.raises(PipelineError, match=r"'step' must be"):
        read_dllogger([path])
    with pytest.raises(PipelineError, match=r"not found; did the job run"):
        read_dllogger([tmp_path / "missing.json"])


def test_benchmarks_that_did_not_finish_say_so(tmp_path: Path) -> None:
    entries = [_entry((20,), iteration_data(1.0))]
    with pytest.raises(PipelineError, match="did not finish"):
        train_benchmark(entries, precision="fp16", channels_last=True)
    with pytest.raises(PipelineError, match="did not finish"):
        inference_result(entries, batch_size=1)


def test_cli_writes_metrics_and_benchmark_json(tmp_path: Path) -> None:
    train_dir = tmp_path / "nvidia"
    training_log(train_dir / "dllogger.json")
    out = tmp_path / "metrics.jsonl"
    result = run_script(
        "nvidia_metrics.py", ["--train-dir", str(train_dir), "--out", str(out)], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["iteration"] for line in out.read_text().splitlines()] == [
        20,
        40,
        40,
        60,
    ]
    bench = run_script(
        "nvidia_benchmark.py",
        ["train", str(train_dir), "--precision", "fp16", "--out", str(tmp_path / "b.json")],
    )
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout.splitlines()[-1])["images_per_s"] == 144.0
    empty = run_script("nvidia_metrics.py", ["--train-dir", str(tmp_path), "--out", str(out)])
    assert empty.returncode != 0 and "no dllogger.json" in empty.stderr
    assert "Traceback" not in empty.stderr
