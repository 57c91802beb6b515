"""What annotation tools write when they "export COCO": their folder layouts and the fixes
each needs, so that a user's config is ``format: cvat`` plus a root and split names.

Read from the exporters' own code (README "Your own dataset" has a subsection per tool):
CVAT (datumaro's coco converter) writes every mask as ``iscrowd: 1``; Roboflow adds its
project as category 0, the supercategory of the real classes; labelme2coco starts its ids at
``__ignore__``/``_background_``; CVAT, Label Studio and Roboflow write box-only objects as
``segmentation: []``; FiftyOne writes ``area`` as the box's. The prepare step
(data/prepare.py) applies the fixes a format turns on; a dataset's own keys override them.

Torch-free and dependency-free: the config check (workflow/config.py) reads it at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: What crowd objects (iscrowd: 1) are: ignored regions (COCO's meaning), or instances.
CROWD_CHOICES = ("ignore", "instances")
#: What box-only objects (segmentation: []) do: train the box head only, or stop the run.
BOX_ONLY_CHOICES = ("skip_mask", "refuse")
#: Placeholder categories (no annotation, `_background_`, a tool's root category): drop, keep.
PLACEHOLDER_CHOICES = ("drop", "keep")
#: The dataset keys a format sets when the config leaves them null.
FIX_KEYS = ("crowd", "box_only", "placeholder_categories")


@dataclass(frozen=True)
class Format:
    """One tool's export: where a split's files are (``{split}`` is the split's name; None:
    the config must give them) and the fixes it needs."""

    images: str | None
    annotations: str | None
    crowd: str = "ignore"
    box_only: str = "refuse"
    placeholder_categories: str = "drop"

    def fixes(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in FIX_KEYS}


FORMATS: dict[str, Format] = {
    # plain COCO: paths from the config; box-only objects are a mistake worth stopping for
    "coco": Format(None, None),
    # datumaro coco converter: annotations/instances_<subset>.json, images/<subset>/
    "cvat": Format(
        "images/{split}", "annotations/instances_{split}.json", "instances", "skip_mask"
    ),
    # one folder per split (train/, valid/, test/) with _annotations.coco.json beside images
    "roboflow": Format("{split}", "{split}/_annotations.coco.json", box_only="skip_mask"),
    # an export per split: <split>/result.json + <split>/images/; file_name has images/
    "labelstudio": Format("{split}", "{split}/result.json", box_only="skip_mask"),
    # labelme2coco.py's output folder per split: annotations.json + JPEGImages/
    "labelme": Format("{split}", "{split}/annotations.json"),
    # COCODetectionDatasetExporter per split: <split>/labels.json + <split>/data/
    "fiftyone": Format("{split}/data", "{split}/labels.json", box_only="skip_mask"),
}


def is_box_only(annotation: Mapping[str, Any]) -> bool:
    """Whether an object has a box and no mask (``segmentation: []``, as CVAT, Label Studio
    and Roboflow write boxes; the prepare step turns a missing segmentation into [])."""
    return annotation.get("segmentation") in ([], None)


def split_layout(entry: Mapping[str, Any], split: str) -> dict[str, str | None]:
    """A split's images folder and annotation file as configured, the dataset's format
    filling in what the split leaves out (None: neither says)."""
    layout = FORMATS[entry.get("format", "coco")]
    given = entry["splits"][split] or {}
    found: dict[str, str | None] = {}
    for key in ("images", "annotations"):
        template = getattr(layout, key)
        found[key] = given.get(key) or (template.format(split=split) if template else None)
    return found


def dataset_fixes(entry: Mapping[str, Any]) -> dict[str, str]:
    """crowd, box_only and placeholder_categories of a dataset: its own, else its format's."""
    defaults = FORMATS[entry.get("format", "coco")].fixes()
    return {key: entry.get(key) or defaults[key] for key in FIX_KEYS}
