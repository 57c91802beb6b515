"""Validate a COCO-format dataset before any training job uses it.

:func:`validate_dataset` checks every split (annotation content, then image files) and
returns a report; :func:`write_report` writes it, or raises a PipelineError with the counts
and first examples of each kind of error. Kinds and their meanings: :mod:`.problems`.
"""

from maskrcnn_pipeline.data.validation.problems import ERRORS, WARNINGS
from maskrcnn_pipeline.data.validation.report import (
    Split,
    ValidationSettings,
    errors_path,
    summary_lines,
    validate_dataset,
    write_report,
)

__all__ = [
    "ERRORS",
    "WARNINGS",
    "Split",
    "ValidationSettings",
    "errors_path",
    "summary_lines",
    "validate_dataset",
    "write_report",
]
