"""COCO evaluation of detections and masks: the 12 summary stats, per-category AP, PR curves.

Light on purpose (numpy + a COCO library, no torch), so that evaluating a predictions file
costs no GPU stack. Modules: ``inputs`` (loading and checks), ``backends`` (pycocotools or
faster-coco-eval), ``result`` (what comes out), ``core`` (evaluate_coco), ``writers``.
"""

from maskrcnn_pipeline.evaluation.backends import BACKENDS, DEFAULT_BACKEND
from maskrcnn_pipeline.evaluation.core import evaluate_coco
from maskrcnn_pipeline.evaluation.inputs import IOU_TYPES
from maskrcnn_pipeline.evaluation.result import (
    STAT_NAMES,
    CategoryAP,
    EvaluationResult,
    PRCurve,
    mean_category_ap,
)
from maskrcnn_pipeline.evaluation.writers import (
    write_metrics,
    write_per_category_csv,
    write_pr_curves_csv,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "IOU_TYPES",
    "STAT_NAMES",
    "CategoryAP",
    "EvaluationResult",
    "PRCurve",
    "evaluate_coco",
    "mean_category_ap",
    "write_metrics",
    "write_per_category_csv",
    "write_pr_curves_csv",
]
