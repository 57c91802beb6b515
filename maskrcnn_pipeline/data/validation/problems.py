"""The kinds of problem the validator reports, and how they are counted and exemplified.

Each kind is either an error (training would crash, or learn from wrong labels: the pipeline
stops) or a warning (worth knowing, training goes on). A dataset can have millions of
annotations, so the report keeps a count per kind and only the first few examples, each
naming the image file, image id and annotation id involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Problems that stop the pipeline: kind -> what it means (the README lists these).
ERRORS: dict[str, str] = {
    "not_coco": "the annotation file is unreadable, not JSON, or has no images/annotations/"
    "categories lists",
    "missing_key": "a required key is missing from an image, annotation or category",
    "wrong_type": "a value has the wrong type (e.g. a string id, a bbox that is not 4 numbers)",
    "duplicate_id": "two images, annotations or categories share an id",
    "unknown_image": "an annotation's image_id is not an image of the file",
    "unknown_category": "an annotation's category_id is not a category of the file",
    "bbox_not_positive": "a bbox has zero or negative width or height",
    "bbox_outside_image": "a bbox extends beyond its image (more than the tolerance)",
    "segmentation_empty": "a box-only object (segmentation: []) while box_only is refuse",
    "polygon_odd_coordinates": "a polygon has an odd number of coordinates",
    "polygon_too_short": "a polygon has fewer than 3 points",
    "rle_invalid": "an RLE segmentation lacks size or counts, or its counts do not fit its size",
    "rle_size_mismatch": "an RLE's size is not its image's [height, width]",
    "iscrowd_invalid": "iscrowd is not 0 or 1",
    "file_name_outside_folder": "an image file_name is absolute or climbs out with '..'",
    "image_missing": "an image file referenced by the annotations does not exist",
    "image_unreadable": "an image file cannot be opened as an image",
    "image_truncated": "an image file is cut short (a JPEG without its end marker, a PNG "
    "without its IEND chunk) and does not decode",
    "image_mode_unsupported": "an image's pixels have no fixed range (floating point), so "
    "there is no right way to 8-bit RGB",
    "image_size_mismatch": "an image file's upright size (EXIF orientation applied) differs "
    "from its declared width/height",
    "image_size_stored_frame": "the declared width/height is the size of the stored pixels of "
    "an image whose EXIF orientation turns it by 90 degrees: the annotations were likely made "
    "on the sideways image",
    "categories_differ": "the splits do not have the same categories (ids and names)",
    "empty": "the file has no images or no categories",
    "category_not_trainable": "a category has no trainable instance in a split a run trains on",
}
#: Problems reported while training goes on.
WARNINGS: dict[str, str] = {
    "image_without_annotations": "an image has no annotation (training skips it)",
    "category_without_annotations": "a category has no annotation in this split",
    "area_not_positive": "an annotation's area is 0 or negative (COCO counts it as small)",
    "duplicate_file_name": "two images share a file_name",
    "placeholder_category_dropped": "a placeholder category (no annotation; _background_ or a "
    "tool's root category) was left out of the prepared file",
    "placeholder_category_kept": "a placeholder category is kept (placeholder_categories: keep)",
    "image_size_filled": "an image had no (or a zero) width/height: read from its file",
    "area_recomputed": "an annotation's area disagreed with its mask's: the mask's is used",
    "box_only": "box-only objects (segmentation: []) train the box head, not the mask head",
}
#: What to do about each kind (the README's table of fixes is generated from it; `{dataset}`
#: is the dataset's name, so a message can give the config line itself).
FIXES: dict[str, str] = {
    "not_coco": "export the annotations again as COCO instances JSON (or set the dataset's "
    "`format:` to the tool that wrote them) and check the split's annotations path",
    "missing_key": "add the key in the exporting tool, or set `format:` so the layout and fixes "
    "of your tool apply",
    "wrong_type": "fix the value in the file (ids are integers, bbox is [x, y, w, h])",
    "duplicate_id": "give every image, annotation and category its own id (merged exports "
    "often repeat ids: merge with a tool that renumbers them)",
    "unknown_image": "remove the annotation or add its image to `images`",
    "unknown_category": "add the category to `categories`, or remove its annotations",
    "bbox_not_positive": "remove the degenerate object or redraw it in the tool",
    "bbox_outside_image": "clip the box in the tool, or raise `validation.bbox_tolerance` for "
    "rounding; a whole-image offset means the image was replaced after annotation",
    "segmentation_empty": "set `datasets.{dataset}.box_only: skip_mask` to train the box head "
    "on them (the mask head skips them), or draw their masks",
    "polygon_odd_coordinates": "fix the polygon in the tool (a coordinate is missing)",
    "polygon_too_short": "remove the polygon or redraw it with at least 3 points",
    "rle_invalid": "export the masks again; counts must cover height*width pixels",
    "rle_size_mismatch": "export again from the images you annotated (the RLE was made for an "
    "image of another size)",
    "iscrowd_invalid": "set iscrowd to 0 (an instance) or 1 (a crowd region)",
    "file_name_outside_folder": "point the split's images at a folder that contains the files "
    "and make file_name relative to it",
    "image_missing": "check the split's images folder (for a tool's export set `format:`, "
    "which knows where the tool puts its images) or copy the file there",
    "image_unreadable": "re-export or re-encode the image (e.g. as JPEG or PNG); damage inside a "
    "file shows only with `validation.decode_images: true`",
    "image_truncated": "copy the file again from the original (an interrupted copy or "
    "download cut it), or remove the image from the annotations",
    "image_mode_unsupported": "save the image as 8- or 16-bit (floating-point pixels, e.g. a "
    "depth map, have no range to map to 0..255)",
    "image_size_mismatch": "export again from the images you annotated; the file is not the "
    "image the tool recorded (its size differs in the frame the message names: upright, EXIF "
    "orientation applied)",
    "image_size_stored_frame": "annotate the upright image again; or, if the annotations match "
    "the stored pixels, remove the orientation tag (`exiftool -Orientation=1 -n FILE`) so every "
    "reader sees the stored frame. Never swap width and height: the masks would miss",
    "categories_differ": "export every split from the same project, so their categories agree",
    "empty": "export the split again; it has no images or no categories",
    "category_not_trainable": "the message names the cause and the config line: typically "
    "`datasets.{dataset}.crowd: instances` for masks exported as iscrowd=1 (CVAT), or annotate "
    "the category, or remove it from `categories`",
    "image_without_annotations": "nothing, if the image shows no object (training skips it)",
    "category_without_annotations": "annotate it in this split, or accept that evaluation has "
    "no ground truth for it here",
    "area_not_positive": "redraw the object; COCO counts it as small",
    "duplicate_file_name": "remove the repeated image entry",
    "placeholder_category_dropped": "nothing: the model has no phantom class; set "
    "`datasets.{dataset}.placeholder_categories: keep` to keep it",
    "placeholder_category_kept": "set `placeholder_categories: drop` unless the category is "
    "one you mean to learn",
    "image_size_filled": "nothing (the tool could not read the image when it exported)",
    "area_recomputed": "nothing: COCO's small/medium/large buckets use mask areas",
    "box_only": "nothing, if you drew boxes on purpose; draw masks to train the mask head on "
    "them too",
}


@dataclass
class _Kind:
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


class ProblemLog:
    """Counts per kind plus the first ``max_examples`` examples of each."""

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples
        self._kinds: dict[str, _Kind] = {}

    def add(
        self,
        kind: str,
        message: str,
        *,
        file: str | None = None,
        image_id: Any = None,
        annotation_id: Any = None,
        count: int = 1,
    ) -> None:
        """Count ``count`` problems of ``kind``, ``message`` being the example of them."""
        if kind not in ERRORS and kind not in WARNINGS:
            raise KeyError(f"unknown problem kind {kind!r}")
        entry = self._kinds.setdefault(kind, _Kind())
        entry.count += count
        if len(entry.examples) < self.max_examples:
            example = {"file": file, "image_id": image_id, "annotation_id": annotation_id}
            entry.examples.append(
                {**{k: v for k, v in example.items() if v is not None}, "message": message}
            )

    def count(self, kind: str) -> int:
        return self._kinds[kind].count if kind in self._kinds else 0

    def summary(self, severity: dict[str, str]) -> dict[str, dict[str, Any]]:
        """``{kind: {"count": n, "examples": [...]}}`` for the kinds of one severity."""
        return {
            kind: {"count": entry.count, "examples": entry.examples}
            for kind, entry in sorted(self._kinds.items())
            if kind in severity
        }


def fixes_table() -> str:
    """The README's table: every kind, its severity, what it means and what to do."""
    rows = ["| kind | stops the run | meaning | what to do |", "| --- | --- | --- | --- |"]
    for severity, kinds in (("yes", ERRORS), ("no (warning)", WARNINGS)):
        for kind, meaning in kinds.items():
            fix = FIXES[kind].replace("{dataset}", "<dataset>")
            rows.append(f"| `{kind}` | {severity} | {meaning} | {fix} |")
    return "\n".join(rows)


def fix_of(kind: str, dataset: str) -> str:
    """What to do about ``kind``, with the dataset's name in its config lines."""
    return FIXES[kind].replace("{dataset}", dataset)
