"""Reading and checking the two inputs of an evaluation: COCO ground truth and results.

pycocotools and faster-coco-eval fail on bad input with a bare ``AssertionError`` or
``KeyError`` deep inside, or, worse, silently ignore detections of unknown categories, or
disagree: on NaN scores faster-coco-eval raises a bare ValueError while pycocotools reports
AP 1.0, and NaN boxes give different numbers on the two. Every check here runs before either
library sees the data and raises a PipelineError that names the file, the first offending
record (its index, and its image_id) and the fix, so both backends fail alike.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import chain, repeat
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.data.formats import is_box_only
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import read_json

IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
# The field of a detection that each iou type evaluates.
RESULT_FIELD: dict[str, str] = {"bbox": "bbox", "segm": "segmentation"}
RESULTS_IN_MEMORY = "<results list>"  # how messages name results passed as a list

_GT_KEYS: dict[str, tuple[str, ...]] = {
    "images": ("id", "height", "width"),
    "categories": ("id", "name"),
    "annotations": ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"),
}
_RESULT_KEYS = ("image_id", "category_id", "score")


def load_ground_truth(path: str | Path) -> dict[str, Any]:
    """Read a COCO annotation file and check the keys that the evaluation relies on."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a COCO annotation object, got {type(data).__name__}")
    for section, keys in _GT_KEYS.items():
        items = data.get(section)
        if not isinstance(items, list):
            raise PipelineError(
                f"{path}: missing list '{section}'; is this a COCO annotation file?"
            )
        _require_keys(items, keys, str(path), section)
    return data


def segm_ground_truth(data: dict[str, Any]) -> dict[str, Any]:
    """The ground truth of the segm evaluation: box-only objects (``segmentation: []``, kept by
    ``box_only: skip_mask``) have no mask to compare with, so they become crowd regions of
    their box: a mask detected on one is neither a false positive nor a found object, and a
    missed one is no miss. ``data`` itself when there is none (the usual case)."""
    if not any(map(is_box_only, data["annotations"])):
        return data
    annotations = []
    for annotation in data["annotations"]:
        if is_box_only(annotation):
            x, y, w, h = annotation["bbox"]
            box = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotation = {**annotation, "segmentation": [box], "iscrowd": 1}
        annotations.append(annotation)
    return {**data, "annotations": annotations}


def load_results(results: str | Path | list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Return the detections and the name that error messages use for them."""
    if isinstance(results, list):
        records, source = results, RESULTS_IN_MEMORY
    else:
        records, source = read_json(results), str(results)
    if not isinstance(records, list):
        raise PipelineError(
            f"{source}: expected a COCO results list [{{image_id, category_id, score, ...}}], "
            f"got {type(records).__name__}"
        )
    _require_keys(records, _RESULT_KEYS, source, "detection")
    check_result_numbers(records, source)
    return records, source


def check_result_numbers(records: Sequence[Mapping[str, Any]], source: str) -> None:
    """Refuse ids that are not integers and scores that are not finite numbers.

    JSON reads ``NaN`` and ``Infinity`` as floats, so a diverged model's output parses fine
    and only the libraries trip over it (or, worse, do not). A bool is no number here.
    Plain ints (ids) and finite floats (scores) pass through builtins that loop in C; only
    when those find something odd are the values looked at one by one.
    """
    for key in ("image_id", "category_id"):
        ids = list(map(operator.itemgetter(key), records))
        if not set(map(type, ids)) <= {int}:
            _refuse_first_bad(records, ids, key, _is_integer_id, source, "an integer id")
    scores = list(map(operator.itemgetter("score"), records))
    if not _all_finite_numbers(lambda: scores):
        expected = (
            "a finite number (a NaN or infinite score usually means the model diverged: check "
            "the loss in the training log)"
        )
        _refuse_first_bad(records, scores, "score", _is_finite_number, source, expected)


def _refuse_first_bad(
    records: Sequence[Mapping[str, Any]],
    values: Sequence[Any],
    key: str,
    valid: Callable[[Any], bool],
    source: str,
    expected: str,
) -> None:
    """Name the first of ``values`` (the records' ``key``) that is not ``valid``, if any."""
    index = next((i for i, value in enumerate(values) if not valid(value)), None)
    if index is not None:
        raise PipelineError(
            f"{_detection(records, index, source, key)} has {key} {_show(values[index])}, "
            f"expected {expected}; write results in the COCO results format"
        )


def _detection(records: Sequence[Mapping[str, Any]], index: int, source: str, key: str) -> str:
    """How a message names a detection: its index and, unless that is at fault, its image."""
    if key == "image_id":
        return f"{source}: detection[{index}]"
    return f"{source}: detection[{index}] (image_id {_show(records[index]['image_id'])})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_integer_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, float) and value.is_integer()  # 139.0, as some tools write ids


def _all_finite_numbers(values: Callable[[], Iterable[Any]]) -> bool:
    """True when every value of ``values()`` is a plain int or float and their sum is finite.

    The common case, through builtins that loop in C (four million box numbers: ~0.3 s); a
    NaN or an infinity makes the sum non-finite. False sends the caller the per-value way,
    which also absolves values whose sum merely overflowed.
    """
    if not set(map(type, values())) <= {int, float}:
        return False
    try:
        return math.isfinite(sum(values(), 0.0))
    except OverflowError:  # an int too large for a float
        return False


def check_result_ids(
    records: Sequence[Mapping[str, Any]], ground_truth: Mapping[str, Any], source: str, gt: str
) -> None:
    """Refuse detections on images or categories that the ground truth does not know.

    pycocotools asserts on unknown images and silently drops unknown categories (which
    lowers no number but hides a label-mapping bug), so both are turned into one error.
    """
    for key, section in (("image_id", "images"), ("category_id", "categories")):
        known = {item["id"] for item in ground_truth[section]}
        ids = list(map(operator.itemgetter(key), records))
        if _all_known(ids, known):
            continue
        index, value = next((i, v) for i, v in enumerate(ids) if not _all_known([v], known))
        raise PipelineError(
            f"{source}: detection[{index}] has {key} {value!r}, which is not in the {section} "
            f"of {gt}; evaluate the results against the annotation file of the split they were "
            f"predicted on (and check the label -> category_id mapping)"
        )


def _all_known(ids: list[Any], known: set[Any]) -> bool:
    try:
        return known.issuperset(ids)
    except TypeError:  # an unhashable id (a list, say) is not a known one
        return False


def resolve_iou_types(
    records: Sequence[Mapping[str, Any]], requested: Iterable[str] | None, source: str
) -> tuple[str, ...]:
    """The iou types to evaluate, in canonical order: those asked for, else those present.

    A type is present when any detection carries its field; every detection must then carry
    it, in the COCO results format, or the first that does not is named here rather than
    failing inside the library.
    Results without any detection get every iou type, so that metrics.json keeps its shape.
    """
    if requested is None:
        present = {t for t in IOU_TYPES if any(RESULT_FIELD[t] in r for r in records)}
        chosen = present if records else set(IOU_TYPES)
    else:
        chosen = set(requested)
        unknown = sorted(chosen - set(IOU_TYPES))
        if unknown:
            raise PipelineError(
                f"unknown iou type(s) {', '.join(unknown)}; choose from {', '.join(IOU_TYPES)}"
            )
    if not chosen:
        raise PipelineError(
            f"{source}: detections carry neither 'bbox' nor 'segmentation'; nothing to evaluate"
        )
    iou_types = tuple(t for t in IOU_TYPES if t in chosen)
    for iou_type in iou_types:
        _check_field(records, iou_type, source)
    return iou_types


def _check_field(records: Sequence[Mapping[str, Any]], iou_type: str, source: str) -> None:
    field = RESULT_FIELD[iou_type]
    values = [record.get(field) for record in records]
    if _all_valid(iou_type, values):
        return
    valid = _finite_box if iou_type == "bbox" else partial(_valid, iou_type)
    bad = next(((i, v) for i, v in enumerate(values) if not valid(v)), None)
    if bad is None:  # valid after all, e.g. a subclass of list
        return
    index, value = bad
    if value is None:
        raise PipelineError(
            f"{source}: iou type '{iou_type}' needs '{field}' in every detection, but "
            f"detection[{index}] has none; predict it or leave '{iou_type}' out of the iou types"
        )
    expected = "[x, y, width, height]" if iou_type == "bbox" else "RLE {size, counts}"
    if iou_type == "bbox" and _valid(iou_type, value):
        expected = "finite numbers [x, y, width, height]"
    raise PipelineError(
        f"{_detection(records, index, source, field)} has '{field}' {str(value)[:60]}, expected "
        f"{expected}; write results in the COCO results format"
    )


def _valid(iou_type: str, value: Any) -> bool:
    if iou_type == "bbox":
        return isinstance(value, list | tuple) and len(value) == 4
    return isinstance(value, dict) and "counts" in value and "size" in value


def _finite_box(value: Any) -> bool:
    return _valid("bbox", value) and all(map(_is_finite_number, value))


def _all_valid(iou_type: str, values: list[Any]) -> bool:
    """``_valid`` for every value, through builtins that loop in C (a million take ~0.1 s)."""
    types = set(map(type, values))
    if iou_type == "bbox":
        return (
            types <= {list, tuple}
            and set(map(len, values)) <= {4}
            and _all_finite_numbers(lambda: chain.from_iterable(values))
        )
    return types <= {dict} and all(
        all(map(operator.contains, values, repeat(key))) for key in ("counts", "size")
    )


def _require_keys(items: Sequence[Any], keys: Sequence[str], source: str, kind: str) -> None:
    required = frozenset(keys)
    for index, item in enumerate(items):
        if isinstance(item, dict) and required <= item.keys():
            continue
        where = f"{source}: {kind}[{index}]"
        if not isinstance(item, dict):
            raise PipelineError(f"{where} is a {type(item).__name__}, expected an object")
        missing = ", ".join(repr(key) for key in keys if key not in item)
        raise PipelineError(f"{where} lacks {missing}; every entry needs {', '.join(keys)}")
