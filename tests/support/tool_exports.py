"""Exports written as annotation tools write them, from one small synthetic scene set.

Each writer lays out the folder and fills the JSON the way the tool's own exporter does (read
from its source; the quirks the pipeline must handle are marked), so the end-to-end test trains
on what a user would bring:

- CVAT "COCO 1.0": datumaro's coco exporter (datumaro/plugins/data_formats/coco/exporter.py):
  ``annotations/instances_<subset>.json`` + ``images/<subset>/``; category ids 1 + index,
  ``supercategory: ""``; an object stored as a mask is ``iscrowd: 1`` with uncompressed RLE
  (``counts`` a list of ints, column-major runs starting with the zeros); a box is
  ``segmentation: []`` with area w*h; every annotation has ``attributes``.
- Roboflow COCO (its format docs): ``<split>/_annotations.coco.json`` beside the images, named
  ``<stem>_jpg.rf.<hash>.jpg``; category 0 is the project (``supercategory: "none"``), the
  supercategory of the real classes; image and annotation ids from 0; box-only ``[]``.
- Label Studio (label-studio-sdk converter.py, convert_to_coco): ``result.json`` + ``images/``,
  file_name ``images/...``; categories 0-based over sorted label names, no supercategory;
  ``ignore: 0``; rectangles ``segmentation: []``, area w*h; an image it could not open has
  null width/height.
- labelme (wkentaro/labelme examples/instance_segmentation/labelme2coco.py): ``labels.txt``
  starts ``__ignore__``, ``_background_``, so ``_background_`` is category 0; file_name
  ``JPEGImages/<base>.jpg``; ``info``/``licenses`` values null, ``type: instances``; a
  rectangle comes out as its two corner points, ``[[x1, y1, x2, y2]]`` (the rectangle branch's
  polygon is overwritten by the ``else`` of the circle test), area and bbox from its mask.
- FiftyOne (fiftyone/utils/coco.py, COCODetectionDatasetExporter): ``labels.json`` + ``data/``;
  category ids ``enumerate(classes)`` (0-based); image and annotation ids from 1; ``area`` is
  the box's w*h; no ``iscrowd`` key when the label has none; a detection without a mask has no
  ``segmentation`` key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from maskrcnn_pipeline.data.synthetic import CATEGORIES, generate_synthetic_dataset

#: The scenes: one object each (tools write polygons; occluded synthetic objects are RLE),
#: every category in train (checked), images small enough for seconds.
SCENES = {"splits": {"train": 10, "val": 4}, "image_size": 64, "seed": 19, "max_objects": 1}
#: The Roboflow project's name: its category 0.
ROBOFLOW_PROJECT = "shapes-x1y2z"


def base_scenes(root: Path) -> dict[str, dict[str, Any]]:
    """Generate the scenes under ``root``; return each split's COCO document."""
    generate_synthetic_dataset(
        root,
        splits=SCENES["splits"],
        image_size=SCENES["image_size"],
        seed=SCENES["seed"],
        max_objects=SCENES["max_objects"],
        min_object_size=14,
        max_object_size=40,
    )
    documents = {
        split: json.loads((root / "annotations" / f"{split}.json").read_text())
        for split in SCENES["splits"]
    }
    present = {a["category_id"] for a in documents["train"]["annotations"]}
    assert present == set(range(1, len(CATEGORIES) + 1)), f"train lacks a category: {present}"
    return documents


def _mask(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    rles = mask_utils.frPyObjects(annotation["segmentation"], height, width)
    return mask_utils.decode(mask_utils.merge(rles))


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """Column-major runs starting with the zeros, as datumaro's mask_to_rle writes them."""
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"counts": [int(c) for c in counts], "size": list(mask.shape)}


def _copy_images(source: Path, dest: Path, names: dict[str, str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for old, new in names.items():
        (dest / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / old, dest / new)


def write_cvat(base: Path, documents: dict[str, Any], root: Path) -> dict[str, Any]:
    """CVAT: circles drawn with the brush (masks, so iscrowd=1), one square as a box."""
    expected: dict[str, Any] = {"splits": ["train", "val"], "ids": [1, 2, 3, 4]}
    for split, document in documents.items():
        images = []
        for number, image in enumerate(document["images"], 1):
            images.append(
                {
                    "id": number,
                    "width": image["width"],
                    "height": image["height"],
                    "file_name": image["file_name"],
                    "license": 0,
                    "flickr_url": "",
                    "coco_url": "",
                    "date_captured": 0,
                }
            )
        new_id = {old["id"]: new["id"] for old, new in zip(document["images"], images, strict=True)}
        sizes = {i["id"]: (i["height"], i["width"]) for i in document["images"]}
        annotations = []
        box_made = False
        for number, old in enumerate(document["annotations"], 1):
            annotation = {
                "id": number,
                "image_id": new_id[old["image_id"]],
                "category_id": old["category_id"],
                "segmentation": old["segmentation"],
                "area": old["area"],
                "bbox": [round(float(v), 2) for v in old["bbox"]],
                "iscrowd": 0,
                "attributes": {"occluded": False},
            }
            if old["category_id"] == 1:  # a mask: uncompressed RLE, iscrowd=1
                annotation["segmentation"] = _uncompressed_rle(_mask(old, *sizes[old["image_id"]]))
                annotation["iscrowd"] = 1
            elif old["category_id"] == 2 and split == "train" and not box_made:
                annotation["segmentation"] = []  # a rectangle drawn as a box
                annotation["area"] = old["bbox"][2] * old["bbox"][3]
                box_made = True
            annotations.append(annotation)
        payload = {
            "licenses": [{"name": "", "id": 0, "url": ""}],
            "info": dict.fromkeys(
                ("contributor", "date_created", "description", "url", "version", "year"), ""
            ),
            "categories": [
                {"id": i, "name": name, "supercategory": ""} for i, name in enumerate(CATEGORIES, 1)
            ],
            "images": images,
            "annotations": annotations,
        }
        _write(root / "annotations" / f"instances_{split}.json", payload)
        _copy_images(
            base / split, root / "images" / split, {i["file_name"]: i["file_name"] for i in images}
        )
        if split == "train":
            expected["crowd"] = sum(a["iscrowd"] for a in annotations)
            expected["box_only"] = 1
            expected["trainable"] = _per_category(annotations)
    return expected


def _roboflow_name(file_name: str) -> str:
    stem = Path(file_name).stem
    digest = hashlib.md5(file_name.encode()).hexdigest()[:20]
    return f"{stem}_jpg.rf.{digest}.jpg"


def write_roboflow(base: Path, documents: dict[str, Any], root: Path) -> dict[str, Any]:
    """Roboflow: its project as category 0; a split named valid; one box-only object."""
    expected: dict[str, Any] = {"splits": ["train", "valid"], "ids": [1, 2, 3, 4]}
    for split, document in documents.items():
        folder = "valid" if split == "val" else split
        names = {i["file_name"]: _roboflow_name(i["file_name"]) for i in document["images"]}
        images = [
            {
                "id": number,
                "license": 1,
                "file_name": names[image["file_name"]],
                "height": image["height"],
                "width": image["width"],
                "date_captured": "2024-05-01T10:00:00+00:00",
            }
            for number, image in enumerate(document["images"])
        ]
        new_id = {old["id"]: new["id"] for old, new in zip(document["images"], images, strict=True)}
        annotations = []
        for number, old in enumerate(document["annotations"]):
            bbox = [round(v) for v in old["bbox"]]
            annotation = {
                "id": number,
                "image_id": new_id[old["image_id"]],
                "category_id": old["category_id"],
                "bbox": bbox,
                "area": old["area"],
                "segmentation": old["segmentation"],
                "iscrowd": 0,
            }
            if number == 0 and split == "train":
                annotation["segmentation"], annotation["area"] = [], bbox[2] * bbox[3]
            annotations.append(annotation)
        payload = {
            "info": {"year": "2024", "version": "1", "description": "Exported from roboflow.com"},
            "licenses": [
                {
                    "id": 1,
                    "url": "https://creativecommons.org/licenses/by/4.0/",
                    "name": "CC BY 4.0",
                }
            ],
            "categories": [{"id": 0, "name": ROBOFLOW_PROJECT, "supercategory": "none"}]
            + [
                {"id": i, "name": name, "supercategory": ROBOFLOW_PROJECT}
                for i, name in enumerate(CATEGORIES, 1)
            ],
            "images": images,
            "annotations": annotations,
        }
        _copy_images(base / split, root / folder, names)
        _write(root / folder / "_annotations.coco.json", payload)
        if split == "train":
            expected["box_only"] = 1
            expected["trainable"] = _per_category(annotations)
    return expected


def _shoelace(polygon: list[float]) -> float:
    x, y = np.array(polygon[0::2]), np.array(polygon[1::2])
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def write_labelstudio(base: Path, documents: dict[str, Any], root: Path) -> dict[str, Any]:
    """Label Studio: squares are RectangleLabels (box-only); one image's size unknown."""
    order = sorted(CATEGORIES)
    ids = {name: order.index(name) for name in CATEGORIES}  # 0-based over sorted names
    expected: dict[str, Any] = {"splits": ["train", "val"], "ids": sorted(ids.values())}
    for split, document in documents.items():
        names = {
            i["file_name"]: f"images/{i['id']:08x}-{i['file_name']}" for i in document["images"]
        }
        images = [
            {
                "width": image["width"],
                "height": image["height"],
                "id": number,
                "file_name": names[image["file_name"]],
            }
            for number, image in enumerate(document["images"])
        ]
        new_id = {old["id"]: new["id"] for old, new in zip(document["images"], images, strict=True)}
        if split == "train":
            unopened = images[-1]["id"]  # the converter could not open it: no size, no labels
            images[-1]["width"] = images[-1]["height"] = None
        annotations = []
        for old in document["annotations"]:
            image_id = new_id[old["image_id"]]
            if split == "train" and image_id == unopened:
                continue
            name = CATEGORIES[old["category_id"] - 1]
            annotation = {
                "id": len(annotations),
                "image_id": image_id,
                "category_id": ids[name],
                "segmentation": old["segmentation"],
                "bbox": old["bbox"],
                "ignore": 0,
                "iscrowd": 0,
                "area": _shoelace(old["segmentation"][0]),
            }
            if name == "square":
                annotation["segmentation"], annotation["area"] = [], old["bbox"][2] * old["bbox"][3]
            annotations.append(annotation)
        payload = {
            "images": images,
            "categories": [{"id": ids[n], "name": n} for n in order],
            "annotations": annotations,
            "info": {
                "year": 2024,
                "version": "1.0",
                "description": "",
                "contributor": "Label Studio",
                "url": "",
                "date_created": "2024-05-01 10:00:00",
            },
        }
        _copy_images(base / split, root / split, names)
        _write(root / split / "result.json", payload)
        if split == "train":
            expected["box_only"] = sum(a["segmentation"] == [] for a in annotations)
            expected["sizes_filled"] = 1
            expected["trainable"] = _per_category(annotations)
    return expected


def write_labelme(base: Path, documents: dict[str, Any], root: Path) -> dict[str, Any]:
    """labelme2coco: ``_background_`` as category 0; squares drawn as rectangles."""
    labels = ["__ignore__", "_background_", *CATEGORIES]  # labels.txt
    ids = {name: i - 1 for i, name in enumerate(labels) if i}  # class_id = line - 1
    expected: dict[str, Any] = {"splits": ["train", "val"], "ids": [ids[n] for n in CATEGORIES]}
    for split, document in documents.items():
        names = {
            i["file_name"]: f"JPEGImages/{Path(i['file_name']).stem}.jpg"
            for i in document["images"]
        }
        images = [
            {
                "license": 0,
                "url": None,
                "file_name": names[image["file_name"]],
                "height": image["height"],
                "width": image["width"],
                "date_captured": None,
                "id": number,
            }
            for number, image in enumerate(document["images"])
        ]
        new_id = {old["id"]: new["id"] for old, new in zip(document["images"], images, strict=True)}
        annotations = []
        rectangles = 0
        for old in document["annotations"]:
            name = CATEGORIES[old["category_id"] - 1]
            annotation = {
                "id": len(annotations),
                "image_id": new_id[old["image_id"]],
                "category_id": ids[name],
                "segmentation": old["segmentation"],
                "area": old["area"],
                "bbox": old["bbox"],
                "iscrowd": 0,
            }
            if name == "square":  # drawn from the bottom-right corner: two points, unsorted
                x, y, w, h = old["bbox"]
                annotation["segmentation"] = [[x + w, y + h, x, y]]
                annotation["area"] = float((round(w) + 1) * (round(h) + 1))  # its mask's
                rectangles += 1
            annotations.append(annotation)
        payload = {
            "info": {
                "description": None,
                "url": None,
                "version": None,
                "year": 2024,
                "contributor": None,
                "date_created": "2024-05-01 10:00:00.000000",
            },
            "licenses": [{"url": None, "id": 0, "name": None}],
            "type": "instances",
            "images": images,
            "categories": [
                {"supercategory": None, "id": i, "name": name} for name, i in ids.items()
            ],
            "annotations": annotations,
        }
        _copy_images(base / split, root / split, names)
        _write(root / split / "annotations.json", payload)
        if split == "train":
            expected["rectangles"] = rectangles
            expected["trainable"] = _per_category(annotations)
    return expected


def write_fiftyone(base: Path, documents: dict[str, Any], root: Path) -> dict[str, Any]:
    """FiftyOne: 0-based ids, area = box, no iscrowd key, one detection without a mask."""
    ids = {name: i for i, name in enumerate(CATEGORIES)}  # classes in the dataset's order
    expected: dict[str, Any] = {"splits": ["train", "val"], "ids": list(ids.values())}
    for split, document in documents.items():
        images = [
            {
                "id": number,
                "file_name": image["file_name"],
                "height": image["height"],
                "width": image["width"],
                "license": None,
                "coco_url": None,
            }
            for number, image in enumerate(document["images"], 1)
        ]
        new_id = {old["id"]: new["id"] for old, new in zip(document["images"], images, strict=True)}
        annotations = []
        for number, old in enumerate(document["annotations"], 1):
            x, y, w, h = old["bbox"]
            annotation = {
                "id": number,
                "image_id": new_id[old["image_id"]],
                "category_id": ids[CATEGORIES[old["category_id"] - 1]],
                "bbox": [x, y, w, h],
                "segmentation": old["segmentation"],
                "area": w * h,
            }
            if number == 1 and split == "train":
                del annotation["segmentation"]  # a Detection without a mask
            annotations.append(annotation)
        payload = {
            "info": {
                "year": "",
                "version": "",
                "description": "Exported from FiftyOne",
                "contributor": "",
                "url": "https://voxel51.com/fiftyone",
                "date_created": "2024-05-01T10:00:00",
            },
            "licenses": [],
            "categories": [{"id": i, "name": n, "supercategory": None} for n, i in ids.items()],
            "images": images,
            "annotations": annotations,
        }
        _copy_images(
            base / split, root / split / "data", {i["file_name"]: i["file_name"] for i in images}
        )
        _write(root / split / "labels.json", payload)
        if split == "train":
            expected["areas_recomputed"] = sum("segmentation" in a for a in annotations)
            expected["box_only"] = 1
            expected["trainable"] = _per_category(annotations)
    return expected


def _per_category(annotations: list[dict[str, Any]]) -> dict[int, int]:
    """Annotations per category id: each one is a training instance once prepared."""
    counts: dict[int, int] = {}
    for annotation in annotations:
        counts[annotation["category_id"]] = counts.get(annotation["category_id"], 0) + 1
    return counts


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(copy.deepcopy(payload)), encoding="utf-8")


#: format name -> writer(base images root, base documents, export root) -> what to expect
WRITERS: dict[str, Callable[[Path, dict[str, Any], Path], dict[str, Any]]] = {
    "cvat": write_cvat,
    "roboflow": write_roboflow,
    "labelstudio": write_labelstudio,
    "labelme": write_labelme,
    "fiftyone": write_fiftyone,
}
