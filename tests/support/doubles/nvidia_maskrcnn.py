#!/usr/bin/env python3
"""A stand-in for ``torchrun`` + NVIDIA's tools/train_net.py and test_net.py in tests: NOT
NVIDIA's code, no model, no GPU.

It checks how the pipeline calls NVIDIA's code (our wiring) and writes what their code would
write, in their formats, so the rest of the chain runs for real:

- the command: ``torchrun --standalone --nnodes=1 --nproc_per_node=N
  /workspace/object_detection/tools/<train_net|test_net>.py --config-file ... [options]
  KEY value ...``, run by the apptainer test double in NVIDIA's image, without PYTHONPATH;
- every override is read back as yacs does (literal_eval, else a string) and must have the
  type of NVIDIA's default for that key (maskrcnn_benchmark/config/defaults.py), or it fails
  as yacs would ("Type mismatch");
- the datasets come from the PATHS_CATALOG module the pipeline generated, through its
  DatasetCatalog.get, with /datasets/data mapped back to the bind source the apptainer double
  passes on (APPTAINER_DOUBLE_BINDS); names must contain "coco";
- train_net.py logs dllogger lines (DLLL + JSON, as dllogger's JSONStreamBackend writes them,
  meters as MetricLogger.get_dict's "median (global average)" text) every 20 iterations and
  at the last, checkpoints every SOLVER.CHECKPOINT_PERIOD with last_checkpoint, resumes from
  it, and writes model_final.pth. With $NVIDIA_DOUBLE_FAIL_AT=N it dies once after
  iteration N (a marker file in OUTPUT_DIR remembers), to exercise retries and resume;
- test_net.py "predicts" the ground truth (score 0.9) and writes inference/<name>/bbox.json
  and segm.json as NVIDIA's COCO evaluation does, and logs its AP.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

SOURCE = "/workspace/object_detection"
MOUNT = "/datasets/data"
#: The type of NVIDIA's default for the keys the pipeline sets (defaults.py at the pinned
#: commit), stated here independently of maskrcnn_pipeline/nvidia/command.py.
DEFAULT_TYPES = {
    "DTYPE": str,
    "NHWC": bool,
    "DATALOADER.HYBRID": bool,
    "DATALOADER.NUM_WORKERS": int,
    "DATALOADER.ASPECT_RATIO_GROUPING": bool,
    "DATALOADER.SIZE_DIVISIBILITY": int,
    "SOLVER.BASE_LR": float,
    "SOLVER.IMS_PER_BATCH": int,
    "SOLVER.MAX_ITER": int,
    "SOLVER.STEPS": tuple,
    "SOLVER.GAMMA": float,
    "SOLVER.WARMUP_ITERS": int,
    "SOLVER.WARMUP_FACTOR": float,
    "SOLVER.WARMUP_METHOD": str,
    "SOLVER.MOMENTUM": float,
    "SOLVER.WEIGHT_DECAY": float,
    "SOLVER.WEIGHT_DECAY_BIAS": int,
    "SOLVER.BIAS_LR_FACTOR": int,
    "SOLVER.CHECKPOINT_PERIOD": int,
    "INPUT.MIN_SIZE_TRAIN": int,
    "INPUT.MAX_SIZE_TRAIN": int,
    "INPUT.MIN_SIZE_TEST": int,
    "INPUT.MAX_SIZE_TEST": int,
    "TEST.IMS_PER_BATCH": int,
    "MODEL.ROI_HEADS.SCORE_THRESH": float,
    "MODEL.ROI_HEADS.NMS": float,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG": int,
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES": int,
    "MODEL.WEIGHT": str,
    "PATHS_CATALOG": str,
    "DATASETS.TRAIN": tuple,
    "DATASETS.TEST": tuple,
    "OUTPUT_DIR": str,
    "PER_EPOCH_EVAL": bool,
}


class Logger:
    """dllogger's JSONStreamBackend, as NVIDIA/dllogger's logger.py writes its lines."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - a stream, like theirs
        self.start = datetime.now()

    def log(self, step, data) -> None:
        self.file.write(dllogger_line(step, data, self.start) + "\n")
        self.file.flush()


def dllogger_line(step, data, start: datetime, now: datetime | None = None) -> str:
    """One ``DLLL {...}`` line: timestamp and elapsedtime as strings, type LOG."""
    now = now or datetime.now()
    record = {
        "timestamp": str(now.timestamp()),
        "datetime": str(now),
        "elapsedtime": str((now - start).total_seconds()),
        "type": "LOG",
        "step": step,
        "data": data,
    }
    return "DLLL " + json.dumps(record)


def fail(message: str) -> int:
    print(f"nvidia double: {message}", file=sys.stderr)
    return 3


def yacs_value(key: str, text: str):
    """What yacs merges for ``key``: literal_eval of the text (a string when that fails),
    which must have the default's type (yacs casts only list <-> tuple)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    expected = DEFAULT_TYPES.get(key)
    if expected is None:
        raise ValueError(f"Non-existent config key: {key}")
    if expected is tuple and isinstance(value, list):
        value = tuple(value)
    if type(value) is not expected:
        raise ValueError(
            f"Type mismatch ({expected} vs. {type(value)}) with values ({text}) for config "
            f"key: {key}"
        )
    return value


def parse(argv: list[str]):
    """torchrun's options, the script, its options and the KEY value overrides."""
    launcher = {}
    rest = list(argv)
    while rest and rest[0].startswith("--"):
        name, _, value = rest.pop(0)[2:].partition("=")
        launcher[name] = value
    if not rest:
        raise ValueError("no script")
    script = rest.pop(0)
    options, flags = {}, set()
    while rest and rest[0].startswith("--"):
        name = rest.pop(0)
        if name in ("--config-file", "--json-summary"):
            options[name] = rest.pop(0)
        else:
            flags.add(name)
    if len(rest) % 2:
        raise ValueError(f"overrides must be KEY value pairs: {rest}")
    cfg = {rest[i]: yacs_value(rest[i], rest[i + 1]) for i in range(0, len(rest), 2)}
    return launcher, script, options, flags, cfg


def host_path(path: str) -> Path:
    """/datasets/data/... -> the bind source the apptainer double was given."""
    for bind in filter(None, os.environ.get("APPTAINER_DOUBLE_BINDS", "").split(",")):
        source, target = bind.split(":")[:2]
        if path == target or path.startswith(target + "/"):
            return Path(source + path[len(target) :])
    raise ValueError(
        f"{path}: not under a bound folder ({os.environ.get('APPTAINER_DOUBLE_BINDS')})"
    )


def dataset(cfg, name: str) -> dict:
    """The COCO annotations of catalog entry ``name``, read through the generated catalog."""
    if "coco" not in name:
        raise RuntimeError(f"Dataset not available: {name}")  # their catalog's rule
    spec = importlib.util.spec_from_file_location("paths_catalog", cfg["PATHS_CATALOG"])
    catalog = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(catalog)
    entry = catalog.DatasetCatalog.get(name)
    assert entry["factory"] == "COCODataset", entry
    root, annotations = host_path(entry["args"]["root"]), host_path(entry["args"]["ann_file"])
    assert root.is_dir(), root
    return json.loads(annotations.read_text())


def train(options, flags, cfg, gpus: int) -> int:
    out = Path(cfg["OUTPUT_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    assert "--skip-test" in flags
    assert Path(cfg["MODEL.WEIGHT"]).is_file(), "the weights must be placed before training"
    data = dataset(cfg, cfg["DATASETS.TRAIN"][0])
    categories = len(data["categories"])
    if cfg["MODEL.ROI_BOX_HEAD.NUM_CLASSES"] != categories + 1:
        return fail(f"NUM_CLASSES {cfg['MODEL.ROI_BOX_HEAD.NUM_CLASSES']} for {categories}")
    if cfg["SOLVER.IMS_PER_BATCH"] % gpus:
        return fail("SOLVER.IMS_PER_BATCH must be divisible by the number of GPUs")
    log = Logger(options["--json-summary"])
    log.log("PARAMETER", {"gpu_count": gpus})
    log.log("PARAMETER", {"config_file": options["--config-file"]})
    solver = {
        key.split(".", 1)[1]: value for key, value in cfg.items() if key.startswith("SOLVER.")
    }
    log.log("PARAMETER", {"config": {"SOLVER": {**solver, "STEPS": list(solver["STEPS"])}}})
    start = 0
    last = out / "last_checkpoint"
    if last.is_file():
        start = int(Path(last.read_text().strip()).read_text().split()[1])
    log.log("PARAMETER", {"train_start": True})
    max_iter, period = cfg["SOLVER.MAX_ITER"], cfg["SOLVER.CHECKPOINT_PERIOD"]
    fail_at = int(os.environ.get("NVIDIA_DOUBLE_FAIL_AT", "0"))
    marker = out / "failed-once"
    began = time.time()
    for iteration in range(start + 1, max_iter + 1):
        time.sleep(0.001)
        if iteration % 20 == 0 or iteration == max_iter:
            loss = 2.0 / iteration
            log.log(
                (iteration,),
                {
                    "eta": "0:00:01",
                    "learning_rate": cfg["SOLVER.BASE_LR"],
                    "memory": 1024.0 + iteration,
                    "loss": f"{loss:.4f} ({loss * 1.5:.4f})",
                    "loss_classifier": f"{loss / 2:.4f} ({loss:.4f})",
                    "loss_mask": f"{loss / 2:.4f} ({loss:.4f})",
                    "time": "0.5000 (0.5500)",
                    "data": "0.0100 (0.0200)",
                },
            )
        if iteration % period == 0 or iteration == max_iter:
            name = "model_final" if iteration == max_iter else f"model_{iteration:07d}"
            saved = out / f"{name}.pth"
            saved.write_text(f"iteration {iteration}\n")
            last.write_text(str(saved))
        if iteration == fail_at and not marker.exists():
            marker.write_text("failed once on purpose\n")
            return fail(f"failing after iteration {iteration} on purpose")
    total = time.time() - began
    log.log(
        (),
        {"e2e_train_time": total, "train_perf_fps": max_iter * cfg["SOLVER.IMS_PER_BATCH"] / total},
    )
    log.log((), {})
    return 0


def test(options, flags, cfg) -> int:
    from pycocotools import mask as masks  # the venv's, as their image has NVIDIA's fork

    assert Path(cfg["MODEL.WEIGHT"]).is_file(), cfg["MODEL.WEIGHT"]
    name = cfg["DATASETS.TEST"][0]
    data = dataset(cfg, name)
    log = Logger(options["--json-summary"])
    log.log("PARAMETER", {"config": {}})
    log.log("PARAMETER", {"eval_dataset_name": name, "eval_num_samples": len(data["images"])})
    log.log((), {"e2e_infer_time": 0.5, "inference_perf_fps": len(data["images"]) / 0.5})
    log.log((), {"latency_avg": 0.05, "latency_90": 0.04, "latency_95": 0.045, "latency_99": 0.05})
    if "--skip-eval" in flags:
        return 0
    images = {image["id"]: image for image in data["images"]}
    boxes, segms = [], []
    for ann in data["annotations"]:
        if ann.get("iscrowd"):
            continue
        image = images[ann["image_id"]]
        rle = masks.frPyObjects(ann["segmentation"], image["height"], image["width"])
        rle = masks.merge(rle) if isinstance(rle, list) else rle
        rle["counts"] = (
            rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
        )
        common = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 0.9}
        boxes.append({**common, "bbox": ann["bbox"]})
        segms.append({**common, "segmentation": rle})
    folder = Path(cfg["OUTPUT_DIR"]) / "inference" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bbox.json").write_text(json.dumps(boxes))
    (folder / "segm.json").write_text(json.dumps(segms))
    log.log((), {"BBOX_mAP": 1.0, "MASK_mAP": 1.0})
    log.log((), {})
    return 0


def main(argv: list[str]) -> int:
    if "PYTHONPATH" in os.environ:
        return fail("PYTHONPATH is set: NVIDIA's Python must not see the pipeline's package")
    if not os.environ.get("APPTAINER_CONTAINER", "").endswith("nvidia-maskrcnn.sif"):
        return fail(f"not in NVIDIA's image: {os.environ.get('APPTAINER_CONTAINER')}")
    try:
        launcher, script, options, flags, cfg = parse(argv)
    except ValueError as exc:
        return fail(str(exc))
    if launcher.get("standalone") != "" or launcher.get("nnodes") != "1":
        return fail(f"expected --standalone --nnodes=1, got {launcher}")
    if not options.get("--config-file", "").startswith(f"{SOURCE}/configs/"):
        return fail(f"--config-file {options.get('--config-file')}: not one of theirs")
    gpus = int(launcher["nproc_per_node"])
    if script == f"{SOURCE}/tools/train_net.py":
        return train(options, flags, cfg, gpus)
    if script == f"{SOURCE}/tools/test_net.py":
        return test(options, flags, cfg)
    return fail(f"unknown script {script}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
