"""Small generated datasets for the tests that train."""

from __future__ import annotations

from pathlib import Path

from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset


def make_tiny_dataset(root: Path, *, train: int = 12, val: int = 6) -> Path:
    """The tiny config's generated dataset (64 px, 1-2 objects) under ``root``."""
    generate_synthetic_dataset(
        root,
        splits={"train": train, "val": val},
        image_size=64,
        seed=3,
        max_objects=2,
        min_object_size=12,
        max_object_size=40,
    )
    return root
