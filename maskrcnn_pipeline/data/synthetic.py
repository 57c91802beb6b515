"""A synthetic COCO-format instance-segmentation dataset: shapes on textured backgrounds.

The demo, the tests and the end-to-end checks need a dataset that needs no download and that
a from-scratch Mask R-CNN learns on a laptop CPU in minutes (configs/demo.yaml). Four shape
classes are drawn on a noisy, textured background in random colours, so that only the shape
tells the class apart.

Three properties matter downstream and are kept by construction:

- Determinism: every image is a pure function of ``(seed, split, index)``, so the same seed
  gives byte-identical files (Snakemake sees no spurious change) and a split's images do not
  depend on the size of any split.
- Exact annotations: every shape is a polygon rasterised by pycocotools, the same code that
  ``COCO.annToMask`` runs, so a stored polygon decodes to exactly the painted pixels and the
  stored ``area`` and ``bbox`` match the decoded mask to the pixel.
- Atomic output: a split's image folder and annotation file exist under their final names
  only when complete.
"""

from __future__ import annotations

import hashlib
import operator
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_json_atomic
from maskrcnn_pipeline.names import SAFE_NAME_RULE, is_safe_name

CATEGORIES: tuple[str, ...] = ("circle", "square", "triangle", "star")
"""Class names; category ids are their position + 1 (COCO ids start at 1, 0 is background)."""

JPEG_QUALITY = 90
"""Fixed so that the same seed gives the same bytes; high enough that edges stay crisp."""

MIN_VISIBLE_FRACTION = 0.5
"""An occluded object keeps at least this share of its pixels, so it stays recognisable."""

MIN_COLOUR_DISTANCE = 90.0
"""RGB distance an object's colour keeps from the background and earlier objects' colours."""

PLACEMENT_ATTEMPTS = 50
"""Random placements tried for one object before it is left out of the image."""

LAYOUT_ATTEMPTS = 100
"""Whole layouts tried before giving up on fitting ``min_objects`` objects into an image."""

ANNOTATIONS_DIR = "annotations"
"""Folder under the dataset root that holds ``<split>.json``; not usable as a split name."""

_STAR_INNER_RADIUS = 0.45  # deep enough notches that a small star is no blob
_CIRCLE_VERTICES = 32  # under 0.25 px from a true circle at 90 px


def _regular_polygon(vertices: int, start_angle: float) -> np.ndarray:
    """Vertices of a regular polygon with circumradius 1, as an ``(n, 2)`` array."""
    angles = start_angle + 2 * np.pi * np.arange(vertices) / vertices
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int, inner_radius: float) -> np.ndarray:
    """Vertices of a star with circumradius 1, alternating outer and inner corners."""
    outer = _regular_polygon(2 * points, -np.pi / 2)
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner_radius)
    return outer * radii[:, None]


# Every shape fits the unit circle, so an object's size is the diameter of its circumcircle
# and a whole object always fits the image when its circumcircle does.
_UNIT_SHAPES: dict[str, np.ndarray] = {
    "circle": _regular_polygon(_CIRCLE_VERTICES, 0.0),
    "square": _regular_polygon(4, np.pi / 4),
    "triangle": _regular_polygon(3, -np.pi / 2),
    "star": _star(5, _STAR_INNER_RADIUS),
}


@dataclass(frozen=True)
class SceneConfig:
    """What one image may contain; sizes are circumcircle diameters in pixels."""

    image_size: int = 160
    min_objects: int = 1
    max_objects: int = 4
    min_object_size: int = 10
    max_object_size: int = 90

    def __post_init__(self) -> None:
        """Reject settings that cannot give a valid image, naming the argument to change."""
        for name, minimum in (
            ("image_size", 8),
            ("min_objects", 1),
            ("max_objects", 1),
            ("min_object_size", 4),
            ("max_object_size", 4),
        ):
            # Stored back as a plain int: NumPy integers would not serialise into the JSON.
            object.__setattr__(self, name, _require_int(name, getattr(self, name), minimum))
        if self.min_objects > self.max_objects:
            raise PipelineError(
                f"min_objects={self.min_objects} is larger than max_objects={self.max_objects}:"
                " lower min_objects or raise max_objects"
            )
        if self.min_object_size > self.max_object_size:
            raise PipelineError(
                f"min_object_size={self.min_object_size} is larger than max_object_size="
                f"{self.max_object_size}: lower min_object_size or raise max_object_size"
            )
        if self.max_object_size > self.image_size:
            raise PipelineError(
                f"image_size={self.image_size} is smaller than max_object_size="
                f"{self.max_object_size}: raise image_size or lower max_object_size"
            )


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: its stored polygon, its whole mask and the part left visible."""

    category_id: int
    polygon: list[float]
    full_mask: np.ndarray
    visible_mask: np.ndarray

    @property
    def occluded(self) -> bool:
        """True when a later object hides some of it (then only an RLE describes it)."""
        return int(self.visible_mask.sum()) < int(self.full_mask.sum())


@dataclass(frozen=True)
class Scene:
    """One rendered image (uint8, ``(h, w, 3)``) and its objects in drawing order."""

    image: np.ndarray
    objects: list[SceneObject]


def _require_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int, or raise a PipelineError naming ``name``."""
    if isinstance(value, bool):
        raise PipelineError(f"{name}={value!r} must be an integer >= {minimum}")
    try:
        number = operator.index(value)
    except TypeError:
        raise PipelineError(f"{name}={value!r} must be an integer >= {minimum}") from None
    if number < minimum:
        raise PipelineError(f"{name}={number} must be an integer >= {minimum}")
    return number


def rasterise_polygon(polygon: list[float], image_size: int) -> np.ndarray:
    """Rasterise a flat ``[x0, y0, x1, y1, ...]`` polygon exactly as ``COCO.annToMask`` does."""
    rles = mask_utils.frPyObjects([polygon], image_size, image_size)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _sample_polygon(rng: np.random.Generator, config: SceneConfig) -> tuple[int, list[float]]:
    """Draw a class, size, rotation and position; return the category id and the polygon.

    Coordinates are rounded before anything is rasterised, so the stored polygon is the one
    whose pixels get painted.
    """
    category_index = int(rng.integers(len(CATEGORIES)))
    radius = rng.uniform(config.min_object_size, config.max_object_size) / 2
    centre = rng.uniform(radius, config.image_size - radius, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    vertices = _UNIT_SHAPES[CATEGORIES[category_index]] @ rotation.T * radius + centre
    return category_index + 1, np.round(vertices, 2).ravel().tolist()


def _leaves_enough_visible(
    new_mask: np.ndarray, visible: list[np.ndarray], full_areas: list[int]
) -> bool:
    """True when covering by ``new_mask`` keeps every earlier object at least half visible."""
    for mask, full_area in zip(visible, full_areas, strict=True):
        remaining = int(np.count_nonzero(mask & ~new_mask))
        if remaining < MIN_VISIBLE_FRACTION * full_area:
            return False
    return True


def _layout(
    rng: np.random.Generator, config: SceneConfig
) -> list[tuple[int, list[float], np.ndarray]]:
    """Place objects one on top of the other; return ``(category, polygon, full mask)``.

    An object that finds no admissible place within PLACEMENT_ATTEMPTS is left out; a layout
    with fewer than ``min_objects`` objects is drawn again from scratch.
    """
    for _ in range(LAYOUT_ATTEMPTS):
        wanted = int(rng.integers(config.min_objects, config.max_objects + 1))
        placed: list[tuple[int, list[float], np.ndarray]] = []
        visible: list[np.ndarray] = []
        full_areas: list[int] = []
        for _ in range(wanted):
            for _ in range(PLACEMENT_ATTEMPTS):
                category_id, polygon = _sample_polygon(rng, config)
                mask = rasterise_polygon(polygon, config.image_size)
                area = int(np.count_nonzero(mask))
                if area > 0 and _leaves_enough_visible(mask, visible, full_areas):
                    visible = [earlier & ~mask for earlier in visible] + [mask]
                    full_areas.append(area)
                    placed.append((category_id, polygon, mask))
                    break
        if len(placed) >= config.min_objects:
            return placed
    raise PipelineError(
        f"could not fit min_objects={config.min_objects} objects of up to max_object_size="
        f"{config.max_object_size} px into a {config.image_size} px image with at least half of"
        " each visible: lower min_objects or max_object_size, or raise image_size"
    )


def _random_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A random RGB colour far enough from ``avoid`` to stand out (best of a few tries)."""
    best, best_distance = rng.uniform(0, 255, 3), -1.0
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        distance = min((float(np.linalg.norm(colour - other)) for other in avoid), default=np.inf)
        if distance >= MIN_COLOUR_DISTANCE:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _background(rng: np.random.Generator, size: int, base: np.ndarray) -> np.ndarray:
    """A float ``(size, size, 3)`` background: base colour, colour blotches and stripes.

    Texture on the background makes the network learn shapes instead of "anything that is
    not flat".
    """
    cells = int(rng.integers(2, 7))
    coarse = np.clip(128 + rng.normal(0, 30, (cells, cells, 3)), 0, 255).astype(np.uint8)
    blotches = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    image = base + np.asarray(blotches, dtype=np.float32) - 128
    frequency, direction, phase = rng.uniform(0.1, 0.8), rng.uniform(0, np.pi), rng.uniform(0, 7)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    wave = np.sin(frequency * (xs * np.cos(direction) + ys * np.sin(direction)) + phase)
    tint = rng.uniform(-1, 1, 3) * rng.uniform(0, 25)
    return image + wave[:, :, None] * tint


def _paint(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, colour: np.ndarray
) -> None:
    """Paint ``mask`` onto ``image`` in ``colour`` with a random linear shading."""
    ys, xs = np.nonzero(mask)
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 40)
    extent = max(float(np.ptp(xs)), float(np.ptp(ys)), 1.0)
    ramp = ((xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle)) / extent
    image[ys, xs] = colour + (strength * ramp)[:, None]


def render_scene(rng: np.random.Generator, config: SceneConfig) -> Scene:
    """Render one image and its objects; later objects occlude earlier ones."""
    layout = _layout(rng, config)
    base = rng.uniform(0, 255, 3)
    image = _background(rng, config.image_size, base)
    colours: list[np.ndarray] = [base]
    for _, _, mask in layout:
        colours.append(_random_colour(rng, colours))
        _paint(rng, image, mask, colours[-1])
    noise = rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(3, 10)
    pixels = np.clip(image + noise, 0, 255).round().astype(np.uint8)
    return Scene(image=pixels, objects=_with_visibility(layout))


def _with_visibility(layout: list[tuple[int, list[float], np.ndarray]]) -> list[SceneObject]:
    """Each object's visible mask is its own minus everything drawn after it."""
    objects: list[SceneObject] = []
    covered = np.zeros_like(layout[0][2])
    for category_id, polygon, mask in reversed(layout):
        objects.append(SceneObject(category_id, polygon, mask, mask & ~covered))
        covered = covered | mask
    return objects[::-1]


def _annotation(obj: SceneObject, annotation_id: int, image_id: int) -> dict[str, Any]:
    """The COCO annotation of one object: area and bbox of what is visible.

    An unoccluded object keeps its exact polygon; an occluded one gets the RLE of its visible
    pixels, since a polygon would claim the hidden part too.
    """
    ys, xs = np.nonzero(obj.visible_mask)
    x0, y0 = int(xs.min()), int(ys.min())
    bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
    if obj.occluded:
        rle = mask_utils.encode(np.asfortranarray(obj.visible_mask, dtype=np.uint8))
        segmentation: Any = {
            "size": [int(s) for s in rle["size"]],
            "counts": rle["counts"].decode(),
        }
    else:
        segmentation = [obj.polygon]
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": obj.category_id,
        "segmentation": segmentation,
        "area": len(xs),
        "bbox": bbox,
        "iscrowd": 0,
    }


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image: independent of every other image and split.

    The split name is hashed into the entropy and the index is the spawn key, so adding
    images to one split, or changing another split's size, leaves existing images unchanged.
    """
    split_key = int.from_bytes(hashlib.sha256(split.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, split_key], spawn_key=(index,)))


def _replace_dir(source: Path, target: Path) -> None:
    """Move the finished folder ``source`` onto ``target``, replacing an old one.

    A directory cannot be renamed onto a non-empty one, so the old folder is first renamed
    aside; at no moment does ``target`` name an incomplete folder.
    """
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        os.replace(target, old)
        os.replace(source, target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        os.replace(source, target)


def _write_images(
    folder: Path, split: str, count: int, config: SceneConfig, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Render ``count`` images into ``folder``; return their COCO images and annotations."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(count):
        scene = render_scene(image_rng(seed, split, index), config)
        image_id, file_name = index + 1, f"{index:06d}.jpg"
        Image.fromarray(scene.image).save(
            folder / file_name, format="JPEG", quality=JPEG_QUALITY, subsampling=0
        )
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": config.image_size,
                "height": config.image_size,
            }
        )
        for obj in scene.objects:
            annotations.append(_annotation(obj, len(annotations) + 1, image_id))
    return images, annotations


def _coco_document(
    split: str,
    seed: int,
    config: SceneConfig,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
) -> dict[str, Any]:
    """The annotation file; ``info`` records how it was made, without timestamps."""
    return {
        "info": {
            "description": f"synthetic shapes, split {split!r}",
            "generator": __name__,
            "seed": seed,
            "image_size": config.image_size,
            "objects_per_image": [config.min_objects, config.max_objects],
            "object_size": [config.min_object_size, config.max_object_size],
        },
        "licenses": [],
        "categories": [
            {"id": index + 1, "name": name, "supercategory": "shape"}
            for index, name in enumerate(CATEGORIES)
        ],
        "images": images,
        "annotations": annotations,
    }


def _write_split(
    root: Path, split: str, count: int, config: SceneConfig, seed: int, annotations_dir: str
) -> int:
    """Write ``root/<split>/`` and ``root/<annotations_dir>/<split>.json``; return the object
    count."""
    staging = root / f".{split}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        images, annotations = _write_images(staging, split, count, config, seed)
        _replace_dir(staging, root / split)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    document = _coco_document(split, seed, config, images, annotations)
    # Compact: indenting puts every polygon coordinate on its own line (2x the size).
    write_json_atomic(root / annotations_dir / f"{split}.json", document, indent=None)
    return len(annotations)


def _check_splits(splits: Mapping[str, int]) -> dict[str, int]:
    """Validate split names (they become folder names and wildcards) and image counts."""
    if not splits:
        raise PipelineError("splits is empty: give at least one split, e.g. {'train': 800}")
    checked: dict[str, int] = {}
    for name, count in splits.items():
        if not isinstance(name, str) or not is_safe_name(name) or name == ANNOTATIONS_DIR:
            raise PipelineError(
                f"splits: bad split name {name!r}: {SAFE_NAME_RULE} (and not {ANNOTATIONS_DIR!r})"
            )
        checked[name] = _require_int(f"splits[{name!r}]", count, 1)
    return checked


def generate_synthetic_dataset(
    root: Path,
    *,
    splits: Mapping[str, int],
    image_size: int = 160,
    seed: int = 0,
    min_objects: int = 1,
    max_objects: int = 4,
    min_object_size: int = 10,
    max_object_size: int = 90,
    annotations_dir: str = ANNOTATIONS_DIR,
) -> dict[str, int]:
    """Write a synthetic COCO dataset under ``root``; return the annotation count per split.

    Layout: ``root/<split>/NNNNNN.jpg`` and ``root/<annotations_dir>/<split>.json`` (the
    workflow writes them to annotations/source/, from which the prepare rule reads). Existing
    splits of the same name are replaced; other files under ``root`` are left alone. All
    arguments are checked before anything is written.
    """
    config = SceneConfig(image_size, min_objects, max_objects, min_object_size, max_object_size)
    seed = _require_int("seed", seed, 0)
    checked = _check_splits(splits)
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"{root}: cannot create the output folder ({exc})") from exc
    return {
        name: _write_split(root, name, count, config, seed, annotations_dir)
        for name, count in checked.items()
    }
