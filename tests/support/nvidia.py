"""What the tests of engine nvidia share: the stand-in for NVIDIA's code and its log format.

tests/support/doubles/nvidia_maskrcnn.py plays ``torchrun`` + NVIDIA's train_net.py/test_net.py; it
also writes dllogger lines, which the parser tests reuse so both follow one statement of
NVIDIA's format.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.support.paths import REPO

#: tests/support/doubles/nvidia_maskrcnn.py: NOT NVIDIA's code; checks our calls, writes
#: their files.
NVIDIA_DOUBLE = REPO / "tests" / "support" / "doubles" / "nvidia_maskrcnn.py"


#: train.sh's command for the recipe (8 GPUs x 12 images), every setting explicit.
RECIPE_COMMAND = [
    "torchrun",
    "--standalone",
    "--nnodes=1",
    "--nproc_per_node=8",
    "/workspace/object_detection/tools/train_net.py",
    "--config-file",
    "/workspace/object_detection/configs/e2e_mask_rcnn_R_50_FPN_1x.yaml",
    "--skip-test",
    "--json-summary",
    "results/nv/train/nvidia/dllogger.json",
    *("DTYPE", "float16", "NHWC", "True", "DATALOADER.HYBRID", "True"),
    *("SOLVER.BASE_LR", "0.12", "SOLVER.IMS_PER_BATCH", "96", "SOLVER.MAX_ITER", "16667"),
    *("SOLVER.STEPS", "(12000, 16000)", "SOLVER.GAMMA", "0.1", "SOLVER.WARMUP_ITERS", "800"),
    *("SOLVER.WARMUP_FACTOR", "0.0001", "SOLVER.WARMUP_METHOD", "mlperf_linear"),
    *("SOLVER.MOMENTUM", "0.9", "SOLVER.WEIGHT_DECAY", "0.0001"),
    *("SOLVER.WEIGHT_DECAY_BIAS", "0", "SOLVER.BIAS_LR_FACTOR", "2"),
    *("SOLVER.CHECKPOINT_PERIOD", "2500", "DATALOADER.NUM_WORKERS", "4"),
    *("DATALOADER.ASPECT_RATIO_GROUPING", "True", "DATALOADER.SIZE_DIVISIBILITY", "32"),
    *("INPUT.MIN_SIZE_TRAIN", "800", "INPUT.MAX_SIZE_TRAIN", "1333"),
    *("MODEL.ROI_BOX_HEAD.NUM_CLASSES", "81", "MODEL.WEIGHT", "data/weights/R-50.pkl"),
    *("PATHS_CATALOG", "results/nv/train/nvidia_paths_catalog.py"),
    *("DATASETS.TRAIN", '("coco_train",)', "DATASETS.TEST", '("coco_val",)'),
    *("OUTPUT_DIR", "results/nv/train/nvidia"),
]


@cache
def double() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvidia_double", NVIDIA_DOUBLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


START = datetime(2022, 5, 1, 12, 0, 0)


def dllogger_file(path: Path, lines: list[tuple[Any, dict, float]]) -> Path:
    """A --json-summary file: (step, data, seconds after the logger started) per line."""
    text = "".join(
        double().dllogger_line(step, data, START, START + timedelta(seconds=seconds)) + "\n"
        for step, data, seconds in lines
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def iteration_data(loss: float, *, lr: float = 0.12, time: float = 0.5) -> dict[str, Any]:
    """What NVIDIA's trainer logs every 20 iterations (MetricLogger's text for the meters)."""
    return {
        "eta": "1:02:03",
        "learning_rate": lr,
        "memory": 9876.5,
        "loss": f"{loss:.4f} ({loss + 1:.4f})",
        "loss_classifier": f"{loss / 4:.4f} ({loss:.4f})",
        "loss_box_reg": f"{loss / 4:.4f} ({loss:.4f})",
        "loss_mask": f"{loss / 4:.4f} ({loss:.4f})",
        "loss_objectness": f"{loss / 8:.4f} ({loss:.4f})",
        "loss_rpn_box_reg": f"{loss / 8:.4f} ({loss:.4f})",
        "time": f"{time:.4f} ({time + 0.1:.4f})",
        "data": "0.0200 (0.0300)",
    }
