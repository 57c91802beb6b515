"""The two COCO evaluation libraries behind one small interface.

faster-coco-eval (C++ matching and accumulation) is the default because it is several
times faster on COCO-sized sets; pycocotools is the reference every paper reports and stays
available to cross-check. Both expose the same ``COCO``/``COCOeval`` classes and mask API,
so one code path drives either: only the classes differ. Neither is imported until asked for.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.evaluation.inputs import RESULT_FIELD

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("faster_coco_eval", "pycocotools")
DEFAULT_BACKEND = "faster_coco_eval"


# pycocotools 2.0.11 under numpy 2 raises OverflowError in mask.area() for a list of more
# than 255 masks (it builds a uint8 array from the count), so masks go in batches of 255.
_MASK_BATCH = 255


@dataclass(frozen=True)
class Backend:
    """A COCO evaluation library: its dataset class, evaluator class and mask API."""

    name: str
    coco_class: type
    eval_class: type
    mask_api: ModuleType

    def index(self, dataset: dict[str, Any]) -> Any:
        """Wrap an already-loaded (and checked) annotation dict without reading it again."""
        coco = self.coco_class()
        coco.dataset = dataset
        coco.createIndex()
        return coco

    def load_results(
        self, ground_truth: Any, records: Sequence[Mapping[str, Any]], iou_type: str
    ) -> Any:
        """The detections as a COCO object, as ``loadRes`` builds it, but leaner.

        Each detection keeps only what the evaluation of ``iou_type`` reads, so a segm
        detection loses its ``bbox``: loadRes would take its area from that box, and the
        box's area, not the mask's, would then decide small/medium/large (detectron2
        strips it for the same reason). Mask areas are computed in bulk, where loadRes makes
        one library call per detection (a third of faster-coco-eval's segm time) and fails
        on an empty list. The records themselves are not changed.
        """
        field = RESULT_FIELD[iou_type]
        values = [record[field] for record in records]
        if iou_type == "segm":
            areas = self._masks(self.mask_api.area, values).tolist()
        else:
            areas = [box[2] * box[3] for box in values]
        rows = zip(records, values, areas, strict=True)
        annotations = [
            {
                "image_id": record["image_id"],
                "category_id": record["category_id"],
                "score": record["score"],
                field: value,
                "area": area,
                "id": index,
                "iscrowd": 0,
            }
            for index, (record, value, area) in enumerate(rows, start=1)
        ]
        dataset = ground_truth.dataset
        return self.index(
            {
                "images": dataset["images"],
                "categories": dataset["categories"],
                "annotations": annotations,
            }
        )

    def evaluate(self, ground_truth: Any, detections: Any, iou_type: str) -> Any:
        """Match, accumulate and summarise; return the evaluator.

        The evaluator's ``stats`` hold the 12 summary numbers and ``eval["precision"]`` the
        accumulated T x R x K x A x M precision array, in the same layout for both libraries.
        """
        evaluator = self.eval_class(ground_truth, detections, iou_type)
        evaluator.evaluate()
        # faster-coco-eval already accumulated inside evaluate(); its accumulate() is a no-op.
        evaluator.accumulate()
        evaluator.summarize()
        return evaluator

    @staticmethod
    def _masks(function: Callable[[list[Any]], np.ndarray], rles: list[Any]) -> np.ndarray:
        parts = [function(rles[i : i + _MASK_BATCH]) for i in range(0, len(rles), _MASK_BATCH)]
        return np.concatenate(parts) if parts else np.zeros(0)


def get_backend(name: str) -> Backend:
    """Import and return the named library; an unknown name is a PipelineError."""
    if name == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster
        from faster_coco_eval.core import mask

        return Backend(name, COCO, COCOeval_faster, mask)
    if name == "pycocotools":
        from pycocotools import mask
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return Backend(name, COCO, COCOeval, mask)
    raise PipelineError(f"unknown evaluation backend {name!r}; choose from {', '.join(BACKENDS)}")


class _LogLines(io.TextIOBase):
    """A text stream that turns every complete line written to it into a log record."""

    def __init__(self, log: logging.Logger, level: int) -> None:
        super().__init__()
        self._log, self._level, self._pending = log, level, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self._log.log(self._level, "%s", line.rstrip())
        return len(text)

    def close(self) -> None:
        """Log a last line that had no newline."""
        if self._pending.strip():
            self._log.log(self._level, "%s", self._pending.rstrip())
        self._pending = ""
        super().close()


@contextmanager
def stdout_to_log(log: logging.Logger = logger, level: int = logging.INFO) -> Iterator[None]:
    """Send what the libraries ``print`` (pycocotools prints its summary) to the log instead.

    stdout may be a pipe that a caller parses (the benchmark's last line is JSON), and the
    rules collect logs from stderr; library chatter belongs in the latter.
    """
    stream = _LogLines(log, level)
    try:
        with redirect_stdout(stream):
            yield
    finally:
        stream.close()
