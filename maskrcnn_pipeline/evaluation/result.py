"""What an evaluation produces, and how it is read off the accumulated precision array.

Both libraries leave ``eval["precision"]`` as a T x R x K x A x M array (IoU thresholds x
101 recall thresholds x categories x area ranges x maxDets) holding -1 where a category has
no ground truth. The per-category table and the PR curves are means over its entries that
are > -1, exactly as COCOeval.summarize() computes AP, so the mean of the per-category AP
over categories with ground truth is the overall AP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip
PR_IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.75)
MAX_DETS = 100  # the maxDets at which COCO reports AP


@dataclass(frozen=True)
class CategoryAP:
    """AP of one category for one iou type; NaN when the category has no (non-crowd) GT."""

    iou_type: str
    category_id: int
    category_name: str
    AP: float
    AP50: float
    AP75: float


@dataclass(frozen=True)
class PRCurve:
    """Precision, averaged over categories with GT, at each of the 101 recall thresholds."""

    iou_type: str
    iou_threshold: float
    recall: tuple[float, ...]
    precision: tuple[float, ...]


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one evaluation produces; ``stats`` is what metrics.json holds."""

    stats: dict[str, dict[str, float]]
    per_category: tuple[CategoryAP, ...]
    pr_curves: tuple[PRCurve, ...]


def read_evaluator(
    iou_type: str, evaluator: Any, names: Mapping[int, str]
) -> tuple[dict[str, float], list[CategoryAP], list[PRCurve]]:
    """Take the 12 stats, per-category AP and PR curves from a summarised COCOeval."""
    params = evaluator.params
    precision = evaluator.eval["precision"][
        :, :, :, params.areaRngLbl.index("all"), params.maxDets.index(MAX_DETS)
    ]  # T x R x K
    stats = dict(zip(STAT_NAMES, (float(v) for v in evaluator.stats[:12]), strict=True))
    categories = category_aps(iou_type, precision, params.iouThrs, params.catIds, names)
    curves = pr_curves(iou_type, precision, params.iouThrs, params.recThrs)
    return stats, categories, curves


def category_aps(
    iou_type: str,
    precision: np.ndarray,
    iou_thresholds: np.ndarray,
    category_ids: Sequence[int],
    names: Mapping[int, str],
) -> list[CategoryAP]:
    """One row per category: AP over all IoU thresholds, AP at 0.5 and at 0.75."""
    by_category = np.moveaxis(precision, 2, 0)  # K x T x R
    ap = _mean_valid(by_category.reshape(len(category_ids), -1))
    ap50 = _mean_valid(by_category[:, _iou_index(iou_thresholds, 0.5)])
    ap75 = _mean_valid(by_category[:, _iou_index(iou_thresholds, 0.75)])
    return [
        CategoryAP(iou_type, int(cat), names[int(cat)], float(a), float(a50), float(a75))
        for cat, a, a50, a75 in zip(category_ids, ap, ap50, ap75, strict=True)
    ]


def pr_curves(
    iou_type: str, precision: np.ndarray, iou_thresholds: np.ndarray, recall_thresholds: np.ndarray
) -> list[PRCurve]:
    """The category-averaged precision/recall curve at each IoU in PR_IOU_THRESHOLDS."""
    recall = tuple(float(r) for r in recall_thresholds)
    return [
        PRCurve(
            iou_type,
            threshold,
            recall,
            tuple(float(p) for p in _mean_valid(precision[_iou_index(iou_thresholds, threshold)])),
        )
        for threshold in PR_IOU_THRESHOLDS
    ]


def mean_category_ap(result: EvaluationResult, iou_type: str) -> float:
    """Mean per-category AP over categories with GT: equals ``stats[iou_type]["AP"]``."""
    values = [
        row.AP for row in result.per_category if row.iou_type == iou_type and not math.isnan(row.AP)
    ]
    return float(np.mean(values)) if values else math.nan


def _iou_index(iou_thresholds: np.ndarray, threshold: float) -> int:
    return int(np.flatnonzero(np.isclose(iou_thresholds, threshold))[0])


def _mean_valid(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the entries > -1 (-1 marks "no GT"); NaN where none are."""
    valid = values > -1
    count = valid.sum(axis=-1)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
