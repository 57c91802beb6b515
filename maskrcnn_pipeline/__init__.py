"""A reproducible Mask R-CNN pipeline."""
